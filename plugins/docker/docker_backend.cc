// The Docker backend: the Backend (capabilities, availability, images,
// sandbox creation and removal, leftovers, the archive) and the start and
// end of each sandbox. See docker_backend.h for the contract and
// docs/docker.md for the user's view; commands run in docker_exec.cc, files
// move in docker_files.cc, the configuration and the container's definition
// are in docker_options.cc.
#include "docker_backend.h"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "docker_archive_store.h"
#include "docker_client.h"
#include "docker_images.h"
#include "docker_sandbox.h"
#include "docker_volume_helper.h"
#include "sandrun/archive_store.h"
#include "sandrun/owner_labels.h"
#include "sandrun/util.h"

namespace sandrun::docker {

Status HttpError(const HttpResponse& res, std::string_view what, StatusCode otherwise) {
  std::string message = "docker: " + std::string(what) + ": " + DockerErrorMessage(res);
  if (res.status == 404) return NotFoundError(message);
  if (res.status >= 500) return UnavailableError(message);
  return Status(otherwise, message);
}

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// Commands one warm container runs at once through its agents (one agent,
// and so one exec, per command running).
constexpr int kTasksPerSandbox = 8;

std::string FiltersQuery(const std::vector<std::string>& labels) {
  json filters = {{"label", labels}};
  return "filters=" + UrlEncode(filters.dump());
}

class DockerBackend : public Backend {
 public:
  explicit DockerBackend(DockerOptions options)
      : options_(std::move(options)),
        client_(std::make_shared<DockerClient>(ParseDockerHost(options_.host).ok()
                                                   ? ParseDockerHost(options_.host).value()
                                                   : DockerHost{options_.host, "", "", ""})),
        exe_cache_(std::make_shared<ExeCache>(
            client_, options_.exe_cache_volume, PortableOptions{options_.host_library_path},
            // No tool image set: the sandboxes' own (never "busybox" pulled).
            ExeCacheRetention{std::chrono::hours(24) * options_.exe_cache_keep_days,
                              options_.tool_image.empty() ? options_.default_image
                                                          : options_.tool_image})) {}

  std::string_view Name() const override { return "docker"; }

  Capabilities GetCapabilities() const override {
    Capabilities caps;
    caps.isolates_network = true;
    caps.limits_memory = true;
    caps.limits_cpu = true;
    caps.supports_images = true;
    caps.reports_oom = true;
    caps.max_parallel = options_.max_parallel > 0 ? options_.max_parallel : EngineParallelism();
    // With the agent, a command costs the engine nothing and its timeout
    // ends only its own tree: a few containers carry many commands at once
    // (container starts are what a small engine runs out of).
    caps.tasks_per_sandbox = options_.agent && !options_.agent_path.empty() ? kTasksPerSandbox : 1;
    // With the agent a command ends alone; through the engine, its sandbox.
    caps.cancels_one_command = true;
    return caps;
  }

  Status CheckAvailable() override {
    auto parsed = ParseDockerHost(options_.host);
    if (!parsed.ok()) return FailedPreconditionError(parsed.status().message());
    auto res = client_->Request("GET", "/_ping", {}, {}, std::chrono::seconds(5));
    if (!res.ok()) {
      std::string why = FirstLine(res.status().message());
      if (why.rfind("docker: ", 0) == 0) why = why.substr(8);
      return UnavailableError("docker: cannot reach the engine at DOCKER_HOST=" + options_.host +
                              ": " + why);
    }
    if (res->status != 200) {
      return UnavailableError("docker: engine at DOCKER_HOST=" + options_.host +
                              " answered /_ping with " + std::to_string(res->status));
    }
    Status st = EnsureVersion();
    if (!st.ok()) return Status(st.code(), FirstLine(st.message()), st.retryable());
    return OkStatus();
  }

  Status ValidateSpec(const SandboxSpec& spec) override;
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  Result<std::vector<Leftover>> ListLeftovers() override;
  Status RemoveLeftover(const std::string& id) override;
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override;

  const DockerOptions& options() const { return options_; }
  DockerClient& client() { return *client_; }

 private:
  static std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

  // The engine's CPUs (GET /info NCPU), asked once; 2 when it does not say
  // (and then *known is false).
  int EngineCpus(bool* known = nullptr) const {
    std::call_once(cpus_once_, [this] {
      cpus_ = 2;
      auto res = client_->Request("GET", "/info", {}, {}, std::chrono::seconds(5));
      if (!res.ok() || res->status != 200) return;
      try {
        int cpus = json::parse(res->body).value("NCPU", 0);
        if (cpus > 0) {
          cpus_ = cpus;
          cpus_known_ = true;
        }
      } catch (const std::exception&) {
      }
    });
    if (known != nullptr) *known = cpus_known_;
    return cpus_;
  }

  // Each container start costs the engine a few hundred ms of CPU: more
  // sandboxes at once than it has cores to start them only queues them.
  // 4 per engine CPU, between 4 and 64.
  int EngineParallelism() const { return std::clamp(4 * EngineCpus(), 4, 64); }

  Status EnsureVersion() {
    std::lock_guard<std::mutex> lock(mu_);
    if (version_ok_) return OkStatus();
    Status st = client_->NegotiateVersion();
    if (st.ok()) version_ok_ = true;
    return st;
  }

  Status EnsureVolume() {
    std::lock_guard<std::mutex> lock(mu_);
    if (volume_ok_) return OkStatus();
    Status st = docker::EnsureVolume(*client_, options_.volume);
    if (st.ok()) st = docker::EnsureVolume(*client_, options_.exe_cache_volume);
    if (st.ok()) volume_ok_ = true;
    return st;
  }

  Result<std::string> ResolveImage(const SandboxSpec& spec);
  // The image is on the engine, or pulled now. kInvalidArgument when it
  // exists neither here nor where the engine pulls from.
  Status EnsureImage(const std::string& image);

  DockerOptions options_;
  std::shared_ptr<DockerClient> client_;
  std::mutex mu_;
  bool version_ok_ = false;
  bool volume_ok_ = false;  // Both the archive and the exe cache volume exist.
  mutable std::once_flag cpus_once_;
  mutable int cpus_ = 0;
  mutable bool cpus_known_ = false;
  std::set<std::string> images_ok_;  // Present on the engine. Guarded by mu_.
  // Starts and removals at once: one per engine CPU, at least 2.
  std::shared_ptr<EngineGate> gate_ =
      std::make_shared<EngineGate>([this] { return std::max(2, EngineCpus()); });
  std::shared_ptr<ExeCache> exe_cache_;
};

// Cores as the user wrote them: "1000", "0.001".
std::string Cores(double cpu) {
  std::ostringstream out;
  out << cpu;
  return out.str();
}

}  // namespace

Status DockerSandbox::Terminate() {
  terminated_ = true;
  bool removing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    removing = !removed_;
  }
  // Before the calls in flight are abandoned (and Exec returns): a frozen
  // engine is found out here, so the requests that follow (the record, the
  // next sandbox) fail in seconds instead of waiting out their deadlines.
  if (removing && !client_->Responsive(3s) && client_->stalled()) engine_silent_ = true;
  calls_.Cancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (HijackedStream* stream : active_streams_) stream->Abort();
    for (const auto& agent : agents_) agent->Abort();
    if (removed_) return OkStatus();
    removed_ = true;
  }
  if (engine_silent_) {
    // Not retried: the container ends with its lifetime, and `sandrun
    // cleanup` removes what is left.
    return DeadlineExceededError(client_->StoppedAnsweringMessage() + "; container " +
                                 id_.substr(0, 12) + " is left to its lifetime");
  }
  EngineGate::Pass pass(*gate_);
  auto res = client_->Request("DELETE", "/containers/" + id_ + "?force=1&v=1", {}, {},
                              std::chrono::seconds(60));
  // An engine that is restarting refuses connections for a few seconds;
  // waiting for it here beats leaving the container to `sandrun cleanup`.
  for (int i = 0; i < 10 && !res.ok() && res.status().code() == StatusCode::kUnavailable; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    res = client_->Request("DELETE", "/containers/" + id_ + "?force=1&v=1", {}, {},
                           std::chrono::seconds(60));
  }
  if (!res.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    removed_ = false;
    return res.status();
  }
  if (res->status == 204 || res->status == 404) return OkStatus();
  if (res->status == 409) return OkStatus();  // Removal already in progress.
  std::lock_guard<std::mutex> lock(mu_);
  removed_ = false;
  return HttpError(*res, "remove container " + id_.substr(0, 12), StatusCode::kUnavailable);
}

Result<std::string> DockerBackend::ResolveImage(const SandboxSpec& spec) {
  if (!spec.dockerfile.empty()) return BuildImage(*client_, spec.dockerfile);
  if (!spec.image.empty()) return spec.image;
  if (!options_.default_image.empty()) return options_.default_image;
  return InvalidArgumentError("docker backend needs an image (--image)");
}

Status DockerBackend::EnsureImage(const std::string& image) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (images_ok_.count(image) > 0) return OkStatus();
  }
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("GET", "/images/" + UrlEncode(image) + "/json", {}, {},
                       std::chrono::seconds(30)));
  if (res.status == 404) {
    Status pulled = PullImage(*client_, image);
    if (!pulled.ok()) return Status(pulled.code(), ImageUnavailableMessage(image, pulled),
                                    pulled.retryable());
  } else if (res.status == 400) {
    return InvalidArgumentError("docker: image '" + image + "': " + DockerErrorMessage(res));
  } else if (res.status != 200) {
    return HttpError(res, "inspect image '" + image + "'", StatusCode::kUnavailable);
  }
  std::lock_guard<std::mutex> lock(mu_);
  images_ok_.insert(image);
  return OkStatus();
}

Status DockerBackend::ValidateSpec(const SandboxSpec& spec) {
  if (spec.cpu > 0) {
    // Docker's own bounds (NanoCpus): at least 0.01 cores, at most the
    // engine's CPUs. Its refusal would come only when the container is made.
    if (spec.cpu < 0.01) {
      return InvalidArgumentError("docker: cpu " + Cores(spec.cpu) +
                                  " is below the engine's minimum of 0.01 cores");
    }
    bool known = false;
    int cpus = EngineCpus(&known);
    if (known && spec.cpu > cpus) {
      return InvalidArgumentError("docker: cpu " + Cores(spec.cpu) + " is more than the " +
                                  std::to_string(cpus) + " CPU(s) of the engine at " +
                                  options_.host);
    }
  }
  if (spec.memory_mb > 0 && spec.memory_mb < 6) {
    return InvalidArgumentError("docker: memory " + std::to_string(spec.memory_mb) +
                                " MiB is below Docker's minimum of 6 MiB");
  }
  if (!spec.dockerfile.empty()) return OkStatus();  // Built when the sandbox is made.
  SANDRUN_ASSIGN_OR_RETURN(std::string image, ResolveImage(spec));
  return EnsureImage(image);
}

Result<std::unique_ptr<Sandbox>> DockerBackend::Create(const SandboxSpec& spec) {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  SANDRUN_ASSIGN_OR_RETURN(std::string image, ResolveImage(spec));
  SANDRUN_RETURN_IF_ERROR(EnsureVolume());
  SANDRUN_ASSIGN_OR_RETURN(const std::string workdir, ContainerWorkdir(spec));
  const std::int64_t lifetime = LifetimeSeconds(spec);
  // Taken before the container exists, so the host acts on the lifetime
  // before the container's own `sleep` ends.
  const Clock::time_point expires_at = Clock::now() + std::chrono::seconds(lifetime);
  ContainerFacts facts{image, OwnerLabels(kLabelPrefix, std::chrono::seconds(lifetime))};
  exe_cache_->NoteSandboxImage(image);
  SANDRUN_ASSIGN_OR_RETURN(json body, ContainerCreateBody(spec, options_, facts));
  const std::string target = "/containers/create?name=sandrun-" + RandomHex(12);
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, client_->Request("POST", target, body.dump()));
  if (res.status == 404) {
    Status pulled = PullImage(*client_, image);
    if (!pulled.ok()) {
      return FailedPreconditionError(ImageUnavailableMessage(image, pulled));
    }
    SANDRUN_ASSIGN_OR_RETURN(res, client_->Request("POST", target, body.dump()));
  }
  if (res.status != 201) {
    return HttpError(res, "create container from '" + image + "'",
                     res.status == 400 ? StatusCode::kInvalidArgument
                                       : StatusCode::kFailedPrecondition);
  }
  std::string id;
  try {
    id = json::parse(res.body).at("Id").get<std::string>();
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad create answer: ") + e.what());
  }
  auto sandbox = std::make_unique<DockerSandbox>(client_, exe_cache_, gate_, id, workdir,
                                                 options_.kill_grace_ms,
                                                 std::chrono::seconds(lifetime), expires_at);
  if (options_.agent) sandbox->UseAgent(options_.agent_path, options_.agent_missing);
  Result<HttpResponse> start_answer = [&] {
    EngineGate::Pass pass(*gate_);
    return client_->Request("POST", "/containers/" + id + "/start");
  }();
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse started, std::move(start_answer));
  if (started.status != 204 && started.status != 304) {
    Status st = HttpError(started, "start container from '" + image + "'");
    sandbox->Terminate().IgnoreError();
    return st;
  }
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

Result<std::vector<Leftover>> DockerBackend::ListLeftovers() {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("GET", "/containers/json?all=1&" +
                                  FiltersQuery({std::string(kManagedLabel) + "=1"})));
  if (res.status != 200) return HttpError(res, "list containers", StatusCode::kUnavailable);
  std::vector<Leftover> out;
  const std::int64_t now = UnixSecondsNow();
  try {
    for (const auto& c : json::parse(res.body)) {
      Leftover l;
      l.id = c.at("Id").get<std::string>();
      const json container_labels = c.value("Labels", json::object());
      // Both the raw Docker labels and the spec's own (prefix stripped).
      static constexpr std::string_view kSpecPrefix = "dev.sandrun.label.";
      for (const auto& [k, v] : container_labels.items()) {
        if (!v.is_string()) continue;
        l.labels[k] = v.get<std::string>();
        if (k.rfind(kSpecPrefix, 0) == 0) l.labels[k.substr(kSpecPrefix.size())] = v.get<std::string>();
      }
      if (l.labels[std::string(kManagedLabel)] != "1") continue;  // Belt and braces.
      const std::string state = c.value("State", "");
      if (IsVolumeHelperRole(l.labels["dev.sandrun.role"])) {
        l.owner_alive = true;  // Shared and never started: kept.
        l.description = l.id.substr(0, 12) + " " + l.labels["dev.sandrun.role"] +
                        " helper for volume " + l.labels["dev.sandrun.volume"];
        l.keep_reason = "shared by every run to reach the volume; never started, not a sandbox";
        out.push_back(std::move(l));
        continue;
      }
      ReadOwnerLabels(kLabelPrefix, now, l);
      l.expired = l.expired || state == "exited" || state == "dead";
      l.description = l.id.substr(0, 12) + " run " + l.labels["dev.sandrun.run"] + " task " +
                      l.labels["dev.sandrun.task"] + " (" + state + ", owner pid " +
                      l.labels["dev.sandrun.owner-pid"] + "@" +
                      l.labels["dev.sandrun.owner-host"] +
                      (l.owner_alive ? " alive" : " gone") + (l.expired ? ", expired" : "") + ")";
      out.push_back(std::move(l));
    }
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad container list: ") + e.what());
  }
  return out;
}

Status DockerBackend::RemoveLeftover(const std::string& id) {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  // Check the label on the object itself: an id from elsewhere is refused.
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           client_->Request("GET", "/containers/" + UrlEncode(id) + "/json"));
  if (res.status == 404) return OkStatus();
  if (res.status != 200) return HttpError(res, "inspect " + id, StatusCode::kUnavailable);
  try {
    auto labels = json::parse(res.body).at("Config").value("Labels", json::object());
    if (!labels.is_object() || labels.value(std::string(kManagedLabel), "") != "1") {
      return PermissionDeniedError("docker: container " + id +
                                   " is not managed by sandrun; not removing it");
    }
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad inspect answer: ") + e.what());
  }
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse del,
                           client_->Request("DELETE", "/containers/" + UrlEncode(id) + "?force=1&v=1"));
  if (del.status == 204 || del.status == 404) return OkStatus();
  return HttpError(del, "remove " + id, StatusCode::kUnavailable);
}

Result<std::unique_ptr<ArchiveStore>> DockerBackend::OpenArchive() {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  SANDRUN_RETURN_IF_ERROR(EnsureVolume());
  return OpenVolumeArchive(client_, options_.volume, ToolImage(options_));
}

std::unique_ptr<Backend> CreateDockerBackend(DockerOptions options) {
  return std::make_unique<DockerBackend>(std::move(options));
}

}  // namespace sandrun::docker

namespace sandrun {

void RegisterDockerBackend(BackendRegistry& registry) {
  BackendInfo info;
  info.name = "docker";
  info.description = "containers on a Docker engine (DOCKER_HOST), via the Engine API";
  info.auto_rank = 20;  // "auto": after remote capacity, before host processes
  info.unavailable_hint = "start a Docker engine or set DOCKER_HOST";
  registry
      .Register(std::move(info),
                [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                  SANDRUN_ASSIGN_OR_RETURN(
                      docker::DockerOptions options,
                      docker::ParseDockerOptions(context.section_json, context.env));
                  if (auto path = context.env.find("LD_LIBRARY_PATH"); path != context.env.end()) {
                    options.host_library_path = path->second;
                  }
                  return docker::CreateDockerBackend(std::move(options));
                })
      .IgnoreError();
}

}  // namespace sandrun
