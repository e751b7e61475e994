#include "modal_images.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <thread>

namespace sandrun::modal {

// The image builder version: the profile's, else the environment's (asked
// once per environment).
static Result<std::string> BuilderVersion(Shared& shared);
// ImageGetOrCreate for `commands`, joined until the build ends.
static Result<std::string> BuildImage(Shared& shared, const std::vector<std::string>& commands);

Result<std::vector<std::string>> DockerfileCommands(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("modal: cannot read Dockerfile " + path);
  std::vector<std::string> commands;
  std::string line, pending;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t first = line.find_first_not_of(" \t");
    if (pending.empty() && (first == std::string::npos || line[first] == '#')) continue;
    bool continued = !line.empty() && line.back() == '\\';
    if (continued) line.pop_back();
    pending += line;
    if (continued) {
      pending += ' ';
      continue;
    }
    std::string upper = pending.substr(pending.find_first_not_of(" \t"));
    std::string keyword = upper.substr(0, upper.find_first_of(" \t"));
    std::transform(keyword.begin(), keyword.end(), keyword.begin(), ::toupper);
    // COPY --from=<stage or image> needs no build context, and Modal's Go
    // SDK lets it through (go/image.go); other COPY and ADD would need one.
    std::string arguments = upper.substr(keyword.size());
    arguments.erase(0, arguments.find_first_not_of(" \t"));
    const bool copy_from = keyword == "COPY" && arguments.rfind("--from=", 0) == 0;
    if ((keyword == "COPY" && !copy_from) || keyword == "ADD") {
      return UnimplementedError("modal: " + path + ": " + keyword +
                                " needs a build context, which the modal backend does not upload "
                                "yet; use RUN steps, COPY --from=, or a registry image");
    }
    commands.push_back(pending);
    pending.clear();
  }
  if (!pending.empty()) commands.push_back(pending);
  if (commands.empty()) return InvalidArgumentError("modal: empty Dockerfile " + path);
  return commands;
}

Result<std::string> ImageIdFor(Shared& shared, const SandboxSpec& spec) {
  std::vector<std::string> commands;
  if (!spec.dockerfile.empty()) {
    SANDRUN_ASSIGN_OR_RETURN(commands, DockerfileCommands(spec.dockerfile));
  } else {
    commands = {"FROM " + (spec.image.empty() ? shared.options.default_image : spec.image)};
  }
  std::string key;
  for (const auto& c : commands) key += c + "\n";
  // One build per definition however many sandboxes ask for it at once.
  return shared.images.Get(key, [&]() { return BuildImage(shared, commands); });
}

static Result<std::string> BuilderVersion(Shared& shared) {
  if (!shared.profile_builder_version.empty()) return shared.profile_builder_version;
  return shared.builder_versions.Get(shared.environment, [&]() -> Result<std::string> {
    mc::EnvironmentGetOrCreateRequest request;
    request.set_deployment_name(shared.environment);
    mc::EnvironmentGetOrCreateResponse response;
    SANDRUN_RETURN_IF_ERROR(shared.control->Unary(
        "EnvironmentGetOrCreate",
        [&](grpc::ClientContext* c) {
          return shared.control->stub().EnvironmentGetOrCreate(c, request, &response);
        },
        nullptr, milliseconds(30000)));
    return response.metadata().settings().image_builder_version();
  });
}

static Result<std::string> BuildImage(Shared& shared, const std::vector<std::string>& commands) {
  SANDRUN_ASSIGN_OR_RETURN(const std::string builder_version, BuilderVersion(shared));
  mc::ImageGetOrCreateRequest request;
  for (const auto& c : commands) request.mutable_image()->add_dockerfile_commands(c);
  request.set_app_id(shared.app_id);
  request.set_builder_version(builder_version);
  mc::ImageGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(shared.control->Unary("ImageGetOrCreate", [&](grpc::ClientContext* c) {
    return shared.control->stub().ImageGetOrCreate(c, request, &response);
  }));
  const std::string image_id = response.image_id();
  mc::GenericResult result = response.result();
  std::string logs;  // kept for the error message of a failed build
  std::string last_entry;
  int stream_failures = 0;
  while (result.status() == mc::GenericResult::GENERIC_STATUS_UNSPECIFIED) {
    grpc::ClientContext context;
    SANDRUN_RETURN_IF_ERROR(shared.control->PrepareStream(&context));
    mc::ImageJoinStreamingRequest join;
    join.set_image_id(image_id);
    join.set_timeout(55);
    join.set_last_entry_id(last_entry);
    auto reader = shared.control->stub().ImageJoinStreaming(&context, join);
    mc::ImageJoinStreamingResponse item;
    bool done = false;
    while (reader->Read(&item)) {
      for (const auto& log : item.task_logs()) {
        logs += log.data();
        if (logs.size() > 65536) logs = logs.substr(logs.size() - 32768);
      }
      if (!item.entry_id().empty()) last_entry = item.entry_id();
      if (item.has_result() && item.result().status() != mc::GenericResult::GENERIC_STATUS_UNSPECIFIED) {
        result = item.result();
        done = true;
      }
      if (item.eof()) break;
    }
    grpc::Status status = reader->Finish();
    if (done) break;
    if (!status.ok()) {
      if (!IsRetryableGrpcCode(status.error_code()) || ++stream_failures > 10) {
        return MapGrpcStatus(status, "ImageJoinStreaming");
      }
      std::this_thread::sleep_for(milliseconds(100 * stream_failures));
    }
  }
  if (result.status() != mc::GenericResult::GENERIC_STATUS_SUCCESS) {
    return FailedPreconditionError(
        "modal: image build " + GenericStatusName(result.status()) + " for '" +
        commands.front() + "'" + (result.exception().empty() ? "" : ": " + result.exception()) +
        (logs.empty() ? "" : "\nbuild log (tail):\n" + Tail(logs, 4000)));
  }
  return image_id;
}

}  // namespace sandrun::modal
