// The Modal Backend: connecting (App, credentials), creating sandboxes
// (image, secrets, resources, network, tags), terminating them, listing and
// removing leftovers, and the archive on the results Volume. A sandbox's
// exec and files live in modal_exec.cc and modal_files.cc, images in
// modal_images.cc, settings in modal_options.cc.
#include "modal_backend.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <set>
#include <thread>

#include "modal_archive_store.h"
#include "modal_client.h"
#include "modal_credentials.h"
#include "modal_images.h"
#include "modal_sandbox.h"
#include "sandrun/archive_store.h"
#include "sandrun/config.h"
#include "sandrun/owner_labels.h"
#include "sandrun/util.h"

namespace sandrun {
namespace modal {

Result<std::string> VolumeIdFor(Shared& shared, const std::string& name,
                                std::string_view setting) {
  return shared.volume_ids.Get(name, [&]() -> Result<std::string> {
    mc::VolumeGetOrCreateRequest request;
    request.set_deployment_name(name);
    request.set_environment_name(shared.environment);
    request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
    request.set_version(mc::VOLUME_FS_VERSION_V2);
    mc::VolumeGetOrCreateResponse response;
    SANDRUN_RETURN_IF_ERROR(shared.control->Unary("VolumeGetOrCreate", [&](grpc::ClientContext* c) {
      return shared.control->stub().VolumeGetOrCreate(c, request, &response);
    }));
    // An existing Volume keeps its own version whatever we ask for.
    SANDRUN_RETURN_IF_ERROR(
        CheckArchiveVolumeVersion(response.metadata().version(), name, setting));
    return response.volume_id();
  });
}

Status ModalSandbox::Terminate() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) return OkStatus();
    terminated_ = true;
    for (CallCanceller* canceller : active_) canceller->Cancel();
  }
  Status status = TerminateSandbox(*shared_->control, id_);
  if (status.code() == StatusCode::kNotFound) return OkStatus();  // already gone
  return status;
}

namespace {

// A sandbox Modal accepted, with what exec needs to reach it.
struct CreatedSandbox {
  std::string sandbox_id;
  std::string task_id;
  RouterAccess access;
};

std::string UpperCase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

class ModalBackend : public Backend {
 public:
  ModalBackend(ModalOptions options, std::map<std::string, std::string> env)
      : options_(std::move(options)), env_(std::move(env)) {}

  std::string_view Name() const override { return "modal"; }
  Capabilities GetCapabilities() const override {
    Capabilities caps;
    caps.isolates_network = true;   // NetworkAccess BLOCKED
    caps.limits_memory = true;      // memory_mb_max = memory_mb
    caps.limits_cpu = true;         // milli_cpu_max = milli_cpu
    caps.supports_gpu = true;
    caps.supports_images = true;
    caps.reports_oom = false;       // an exec's OOM kill is not told apart
    caps.max_parallel = options_.max_parallel;
    // Each command is its own exec, which the sandbox runs side by side;
    // fewer sandboxes means fewer paid creations.
    caps.tasks_per_sandbox = 8;
    return caps;
  }
  Status CheckAvailable() override;
  Status ValidateSpec(const SandboxSpec& spec) override;
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  Result<std::vector<Leftover>> ListLeftovers() override;
  Status RemoveLeftover(const std::string& id) override;
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override;

  std::uint64_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return (shared_ ? shared_->control->calls() : 0) + router_calls_.load();
  }
  std::atomic<std::uint64_t> router_calls_{0};

 private:
  Result<std::shared_ptr<Shared>> Connect();
  Result<std::vector<std::string>> SecretIds(Shared& shared);
  /// SandboxCreateV2: the answer carries the task id and router access.
  Result<CreatedSandbox> CreateV2(Shared& shared, const mc::Sandbox& definition,
                                  const std::map<std::string, std::string>& tags);
  /// SandboxCreate, then SandboxGetTaskId until the sandbox is scheduled,
  /// then TaskGetCommandRouterAccess (AwaitRouter).
  Result<CreatedSandbox> CreateV1(Shared& shared, const mc::Sandbox& definition,
                                  const std::map<std::string, std::string>& tags);
  /// Fills in what `created` lacks: its task id (polled until the sandbox is
  /// scheduled), then its router access. Terminates the sandbox on failure.
  Status AwaitRouter(Shared& shared, CreatedSandbox* created);
  /// Polls the task id of a created sandbox until it is scheduled.
  Result<std::string> AwaitTaskId(Shared& shared, const std::string& sandbox_id);
  /// Running sandboxes of this App tagged managed-by=sandrun, from
  /// SandboxList (V1 sandboxes) or SandboxListV2 (both generations).
  Status ListManaged(Shared& shared, bool v2, std::vector<std::string>* ids);

  ModalOptions options_;
  std::map<std::string, std::string> env_;
  std::mutex mu_;
  std::shared_ptr<Shared> shared_;  // Guarded by mu_.
};

Result<std::shared_ptr<Shared>> ModalBackend::Connect() {
  std::lock_guard<std::mutex> lock(mu_);
  if (shared_) return shared_;
  SANDRUN_ASSIGN_OR_RETURN(ModalCredentials creds, LoadModalCredentials(env_));
  if (!options_.server_url.empty() && env_.count("MODAL_SERVER_URL") == 0) {
    creds.server_url = options_.server_url;
  }
  auto shared = std::make_shared<Shared>();
  shared->options = options_;
  shared->environment = options_.environment_set ? options_.environment : creds.environment;
  shared->profile_builder_version = creds.image_builder_version;
  shared->plaintext = creds.server_url.rfind("http://", 0) == 0;
  shared->sandbox_v2 = creds.sandbox_v2;
  shared->router_dial.allow_plaintext = shared->plaintext;
  shared->router_dial.plaintext_for_loopback = IsLoopbackUrl(creds.server_url);
  shared->router_dial.ready_timeout = std::chrono::seconds(options_.router_ready_timeout_s);
  bool tls = true;
  SANDRUN_RETURN_IF_ERROR(GrpcTarget(creds.server_url, &tls).status());
  shared->control = std::make_shared<ControlPlane>(std::move(creds));
  if (!options_.exe_cache_volume.empty()) {
    PortableOptions portable;
    portable.ld_library_path = options_.host_library_path;
    // The cache lives in Shared, so the raw pointer outlives every lookup.
    Shared* raw = shared.get();
    shared->exe_cache = std::make_unique<ExeCache>(
        shared->control, options_.exe_cache_volume,
        [raw] { return VolumeIdFor(*raw, raw->options.exe_cache_volume, "exe_cache_volume"); },
        portable);
  }
  mc::AppGetOrCreateRequest request;
  request.set_app_name(options_.app_name);
  request.set_environment_name(shared->environment);
  request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  mc::AppGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(shared->control->Unary("AppGetOrCreate", [&](grpc::ClientContext* c) {
    return shared->control->stub().AppGetOrCreate(c, request, &response);
  }));
  shared->app_id = response.app_id();
  shared_ = shared;
  return shared;
}

Status ModalBackend::CheckAvailable() {
  // Missing credentials are kFailedPrecondition, an unreachable server
  // kUnavailable, rejected credentials kPermissionDenied (MapGrpcStatus).
  SANDRUN_RETURN_IF_ERROR(LoadModalCredentials(env_).status());
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  // A cheap authenticated call: the auth token (cached after the first).
  return shared->control->AuthToken().status();
}

// Bad input that only Modal's side shows, found before a run exists: a
// Dockerfile this backend cannot build, a Secret the environment lacks (the
// lookup is the one Create uses, so it costs nothing more).
Status ModalBackend::ValidateSpec(const SandboxSpec& spec) {
  if (!spec.dockerfile.empty()) {
    auto commands = DockerfileCommands(spec.dockerfile);
    if (!commands.ok()) return InvalidArgumentError(commands.status().message());
  }
  if (options_.secrets.empty()) return OkStatus();
  auto shared = Connect();
  if (!shared.ok()) return OkStatus();  // Create will say what is wrong.
  auto ids = SecretIds(**shared);
  if (!ids.ok() && ids.status().code() == StatusCode::kNotFound) {
    const std::string& environment = (*shared)->environment;
    return InvalidArgumentError(ids.status().message() + " (in " +
                                (environment.empty() ? std::string("the default environment")
                                                     : "environment '" + environment + "'") +
                                "; `modal secret list` shows what exists)");
  }
  return OkStatus();
}

Result<std::vector<std::string>> ModalBackend::SecretIds(Shared& shared) {
  return shared.secret_ids.Get("", [&]() -> Result<std::vector<std::string>> {
    std::vector<std::string> ids;
    for (const auto& name : shared.options.secrets) {
      mc::SecretGetOrCreateRequest request;
      request.set_deployment_name(name);
      request.set_environment_name(shared.environment);
      mc::SecretGetOrCreateResponse response;
      Status status = shared.control->Unary("SecretGetOrCreate", [&](grpc::ClientContext* c) {
        return shared.control->stub().SecretGetOrCreate(c, request, &response);
      });
      if (!status.ok()) return status.WithContext("modal secret '" + name + "'");
      ids.push_back(response.secret_id());
    }
    return ids;
  });
}

Result<std::unique_ptr<Sandbox>> ModalBackend::Create(const SandboxSpec& spec) {
  const auto lifetime = std::chrono::seconds(std::max<std::int64_t>(1, spec.lifetime.count()));
  const Clock::time_point expires = Clock::now() + lifetime;
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  Shared& s = *shared;
  std::string gpu_type;
  int gpu_count = 0;
  if (!spec.gpu.empty()) SANDRUN_RETURN_IF_ERROR(ParseGpuSpec(spec.gpu, &gpu_type, &gpu_count));
  // Modal's GPU names are upper case; the SDKs upper-case what they are given.
  gpu_type = UpperCase(gpu_type);
  SANDRUN_ASSIGN_OR_RETURN(std::string image_id, ImageIdFor(s, spec));
  SANDRUN_ASSIGN_OR_RETURN(const std::vector<std::string> secret_ids, SecretIds(s));

  SANDRUN_ASSIGN_OR_RETURN(const std::string workdir,
                           JoinSandboxPath("workdir", kDefaultWorkdir, spec.workdir,
                                           EmptySandboxPath::kIsBase));
  mc::Sandbox definition;
  mc::Sandbox* def = &definition;
  def->set_image_id(image_id);
  for (const auto& id : secret_ids) def->add_secret_ids(id);
  mc::Resources* resources = def->mutable_resources();
  if (spec.cpu > 0) {
    auto milli = static_cast<std::uint32_t>(std::llround(spec.cpu * 1000));
    resources->set_milli_cpu(milli);
    resources->set_milli_cpu_max(milli);
  }
  if (spec.memory_mb > 0) {
    resources->set_memory_mb(static_cast<std::uint32_t>(spec.memory_mb));
    resources->set_memory_mb_max(static_cast<std::uint32_t>(spec.memory_mb));
  }
  if (gpu_count > 0) {
    resources->mutable_gpu_config()->set_type(mc::GPU_TYPE_UNSPECIFIED);
    resources->mutable_gpu_config()->set_gpu_type(gpu_type);
    resources->mutable_gpu_config()->set_count(static_cast<std::uint32_t>(gpu_count));
  }
  def->set_timeout_secs(static_cast<std::uint32_t>(std::max<std::int64_t>(1, spec.lifetime.count())));
  if (s.options.idle_timeout_s > 0) {
    def->set_idle_timeout_secs(static_cast<std::uint32_t>(s.options.idle_timeout_s));
  }
  def->set_workdir(workdir);
  // Never the results Volume: it would let a task read and rewrite every
  // record of the archive. Records and spills reach it only through
  // sandrun's own Volume API calls (modal_archive_store.h). Portable
  // executables come from their cache Volume, read-only.
  ExeCache::Mount exe_mount;
  if (s.exe_cache) {
    SANDRUN_ASSIGN_OR_RETURN(exe_mount, s.exe_cache->Prepare(spec));
  }
  if (!exe_mount.volume_id.empty()) {
    mc::VolumeMount* mount = def->add_volume_mounts();
    mount->set_volume_id(exe_mount.volume_id);
    mount->set_mount_path(kPortableExeRoot);
    mount->set_read_only(true);
  }
  mc::NetworkAccess* network = def->mutable_network_access();
  // An allowlist narrows either mode to exactly its CIDRs, as Modal's own
  // cidr_allowlist does; without one, "open" is OPEN and "none" BLOCKED.
  if (!s.options.cidr_allowlist.empty()) {
    network->set_network_access_type(mc::NetworkAccess::ALLOWLIST);
    for (const auto& cidr : s.options.cidr_allowlist) network->add_allowed_cidrs(cidr);
  } else if (spec.network == NetworkMode::kOpen) {
    network->set_network_access_type(mc::NetworkAccess::OPEN);
  } else {
    network->set_network_access_type(mc::NetworkAccess::BLOCKED);
  }
  std::map<std::string, std::string> tags = spec.labels;
  tags["managed-by"] = "sandrun";
  for (auto& [name, value] : OwnerLabels("", lifetime)) tags[name] = value;
  // V2 by default; V1 when switched off (MODAL_SANDBOX_V2=0, the profile's
  // sandbox_v2 = false) and always for GPUs, as the JS SDK decides.
  const bool v2 = s.sandbox_v2 && gpu_count == 0;
  SANDRUN_ASSIGN_OR_RETURN(CreatedSandbox created,
                           v2 ? CreateV2(s, definition, tags) : CreateV1(s, definition, tags));
  const std::string sandbox_id = created.sandbox_id;
  const std::string task_id = created.task_id;
  auto access = [shared, sandbox_id, task_id]() {
    return SandboxRouterAccess(*shared->control, sandbox_id, task_id);
  };
  auto router = CommandRouter::Connect(created.access, s.router_dial, access);
  if (!router.ok()) {
    TerminateSandbox(*s.control, sandbox_id).IgnoreError();
    return router.status();
  }
  std::vector<std::string> notes;
  if (!spec.gpu.empty()) notes.push_back("modal: gpu " + gpu_type + " x" + std::to_string(gpu_count));
  return std::unique_ptr<Sandbox>(new ModalSandbox(shared, sandbox_id, task_id,
                                                   std::move(router).value(), workdir, spec.env,
                                                   std::move(notes), lifetime, expires,
                                                   std::move(exe_mount.served)));
}

void AddTags(const std::map<std::string, std::string>& tags,
             google::protobuf::RepeatedPtrField<mc::SandboxTag>* out) {
  for (const auto& [name, value] : tags) {
    mc::SandboxTag* tag = out->Add();
    tag->set_tag_name(name);
    tag->set_tag_value(value);
  }
}

Result<CreatedSandbox> ModalBackend::CreateV2(Shared& s, const mc::Sandbox& definition,
                                              const std::map<std::string, std::string>& tags) {
  mc::SandboxCreateV2Request request;
  request.set_app_id(s.app_id);
  *request.mutable_definition() = definition;
  AddTags(tags, request.mutable_tags());
  mc::SandboxCreateV2Response response;
  SANDRUN_RETURN_IF_ERROR(s.control->Unary("SandboxCreateV2", [&](grpc::ClientContext* c) {
    return s.control->stub().SandboxCreateV2(c, request, &response);
  }));
  CreatedSandbox created;
  created.sandbox_id = response.sandbox_id();
  created.task_id = response.task_id();
  created.access.jwt = response.command_router_access().jwt();
  created.access.url = response.command_router_access().url();
  // The answer normally carries both; should it not, ask as V1 asks.
  SANDRUN_RETURN_IF_ERROR(AwaitRouter(s, &created));
  return created;
}

Result<CreatedSandbox> ModalBackend::CreateV1(Shared& s, const mc::Sandbox& definition,
                                              const std::map<std::string, std::string>& tags) {
  mc::SandboxCreateRequest request;
  request.set_app_id(s.app_id);
  *request.mutable_definition() = definition;
  AddTags(tags, request.mutable_tags());
  mc::SandboxCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(s.control->Unary("SandboxCreate", [&](grpc::ClientContext* c) {
    return s.control->stub().SandboxCreate(c, request, &response);
  }));
  CreatedSandbox created;
  created.sandbox_id = response.sandbox_id();
  SANDRUN_RETURN_IF_ERROR(AwaitRouter(s, &created));
  return created;
}

Status ModalBackend::AwaitRouter(Shared& s, CreatedSandbox* created) {
  if (created->task_id.empty()) {
    SANDRUN_ASSIGN_OR_RETURN(created->task_id, AwaitTaskId(s, created->sandbox_id));
  }
  if (!created->access.jwt.empty() && !created->access.url.empty()) return OkStatus();
  auto access = SandboxRouterAccess(*s.control, created->sandbox_id, created->task_id);
  if (!access.ok()) {
    TerminateSandbox(*s.control, created->sandbox_id).IgnoreError();
    return access.status();
  }
  created->access = *access;
  return OkStatus();
}

Result<std::string> ModalBackend::AwaitTaskId(Shared& s, const std::string& sandbox_id) {
  // The task id appears once the sandbox is scheduled.
  milliseconds poll(50);
  const Clock::time_point give_up = Clock::now() + std::chrono::minutes(5);
  while (true) {
    auto response = SandboxTaskId(*s.control, sandbox_id);
    if (!response.ok()) {
      TerminateSandbox(*s.control, sandbox_id).IgnoreError();
      return response.status();
    }
    if (response->has_task_result()) {
      TerminateSandbox(*s.control, sandbox_id).IgnoreError();
      return UnavailableError("modal: sandbox " + sandbox_id + " ended before it started: " +
                              GenericStatusName(response->task_result().status()) + " " +
                              response->task_result().exception());
    }
    if (response->has_task_id() && !response->task_id().empty()) return response->task_id();
    if (Clock::now() > give_up) {
      TerminateSandbox(*s.control, sandbox_id).IgnoreError();
      return DeadlineExceededError("modal: sandbox " + sandbox_id + " was not scheduled in 5 minutes");
    }
    std::this_thread::sleep_for(poll);
    poll = std::min(poll * 2, milliseconds(500));
  }
}

Status ModalBackend::ListManaged(Shared& shared, bool v2, std::vector<std::string>* ids) {
  double before = 0;
  for (int page = 0; page < 1000; ++page) {
    mc::SandboxListRequest request;
    request.set_app_id(shared.app_id);
    request.set_environment_name(shared.environment);
    request.set_include_finished(false);
    if (before > 0) request.set_before_timestamp(before);
    AddTags({{"managed-by", "sandrun"}}, request.mutable_tags());
    mc::SandboxListResponse response;
    SANDRUN_RETURN_IF_ERROR(shared.control->Unary(
        v2 ? "SandboxListV2" : "SandboxList", [&](grpc::ClientContext* c) {
          return v2 ? shared.control->stub().SandboxListV2(c, request, &response)
                    : shared.control->stub().SandboxList(c, request, &response);
        }));
    if (response.sandboxes().empty()) break;
    for (const auto& info : response.sandboxes()) {
      before = before == 0 ? info.created_at() : std::min(before, info.created_at());
      if (!info.app_id().empty() && info.app_id() != shared.app_id) continue;
      ids->push_back(info.id());
    }
  }
  return OkStatus();
}

Result<std::vector<Leftover>> ModalBackend::ListLeftovers() {
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  // Leftovers of either generation may exist whatever this run creates (GPU
  // sandboxes are always V1). SandboxListV2 lists both (the JS SDK's list
  // says so), SandboxList the V1 ones, and a server may lack the V2 call:
  // both are asked, and a sandbox both name is one leftover.
  std::vector<std::string> ids;
  SANDRUN_RETURN_IF_ERROR(ListManaged(*shared, /*v2=*/false, &ids));
  Status v2 = ListManaged(*shared, /*v2=*/true, &ids);
  if (!v2.ok() && v2.code() != StatusCode::kUnimplemented) return v2;
  std::set<std::string> seen;
  ids.erase(std::remove_if(ids.begin(), ids.end(),
                           [&](const std::string& id) { return !seen.insert(id).second; }),
            ids.end());
  std::vector<Leftover> out;
  const std::int64_t now = UnixSecondsNow();
  for (const std::string& id : ids) {
    Leftover l;
    l.id = id;
    // SandboxList does not expose tags (api.proto: "not yet exposed"); the
    // SDKs read them with SandboxTagsGet, one sandbox at a time.
    auto tags = SandboxTags(*shared->control, id);
    if (tags.status().code() == StatusCode::kNotFound) continue;  // gone meanwhile
    SANDRUN_RETURN_IF_ERROR(tags.status());
    l.labels = *tags;
    // Trust nothing the filter let through by mistake.
    if (l.labels["managed-by"] != "sandrun") continue;
    ReadOwnerLabels("", now, l);
    l.description = l.id + " run " + l.labels["run"] + " task " + l.labels["task"] +
                    " (owner pid " + l.labels["owner-pid"] + "@" + l.labels["owner-host"] +
                    (l.owner_alive ? " alive" : " gone") + (l.expired ? ", expired" : "") + ")";
    out.push_back(std::move(l));
  }
  return out;
}

Status ModalBackend::RemoveLeftover(const std::string& id) {
  SANDRUN_ASSIGN_OR_RETURN(std::vector<Leftover> ours, ListLeftovers());
  bool found = std::any_of(ours.begin(), ours.end(), [&](const Leftover& l) { return l.id == id; });
  if (!found) {
    return NotFoundError("modal: " + id + " is not a running sandbox tagged managed-by=sandrun in app '" +
                         options_.app_name + "'");
  }
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  return TerminateSandbox(*shared->control, id);
}

Result<std::unique_ptr<ArchiveStore>> ModalBackend::OpenArchive() {
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  SANDRUN_ASSIGN_OR_RETURN(std::string volume_id,
                           VolumeIdFor(*shared, shared->options.volume, "volume"));
  return CreateModalArchiveStore(shared->control, volume_id, shared->options.volume);
}

}  // namespace

std::unique_ptr<Backend> CreateModalBackend(ModalOptions options,
                                            std::map<std::string, std::string> env) {
  return std::make_unique<ModalBackend>(std::move(options), std::move(env));
}

std::uint64_t ModalCallCount(Backend& backend) {
  auto* modal = dynamic_cast<ModalBackend*>(&backend);
  return modal == nullptr ? 0 : modal->calls();
}

}  // namespace modal

void RegisterModalBackend(BackendRegistry& registry) {
  BackendInfo info;
  info.name = "modal";
  info.description =
      "Modal sandboxes over Modal's gRPC API (credentials from MODAL_TOKEN_* or ~/.modal.toml)";
  info.auto_rank = 30;  // "auto": remote capacity first
  info.flags = {
      {"secret", "secrets",
       "Attach this Modal Secret, by name, to every sandbox (repeatable; modal only)",
       /*list=*/true, {"SANDRUN_MODAL_SECRETS"}},
      {"allow-cidr", "cidr_allowlist",
       "Let sandboxes reach this CIDR, and only the listed ones (repeatable; modal only)",
       /*list=*/true, {"SANDRUN_MODAL_CIDR_ALLOWLIST"}},
      {"modal-environment", "environment", "Modal environment to use (modal only; -e is --env)",
       /*list=*/false, {"SANDRUN_MODAL_ENVIRONMENT", "MODAL_ENVIRONMENT"},
       /*every_command=*/true},
  };
  registry
      .Register(std::move(info),
                [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                  SANDRUN_ASSIGN_OR_RETURN(modal::ModalOptions options,
                                           modal::ParseModalOptions(context.section_json));
                  if (auto path = context.env.find("LD_LIBRARY_PATH"); path != context.env.end()) {
                    options.host_library_path = path->second;
                  }
                  return modal::CreateModalBackend(std::move(options), context.env);
                })
      .IgnoreError();
}

}  // namespace sandrun
