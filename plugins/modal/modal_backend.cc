// The Modal Backend: connecting (App, credentials), creating sandboxes
// (image, secrets, resources, network, tags), terminating them, listing and
// removing leftovers, and the archive on the results Volume. A sandbox's
// exec and files live in modal_exec.cc and modal_files.cc, images in
// modal_images.cc, settings in modal_options.cc.
#include "modal_backend.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
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

Status ModalSandbox::Terminate() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) return OkStatus();
    terminated_ = true;
    for (CallCanceller* canceller : active_) canceller->Cancel();
  }
  mc::SandboxTerminateRequest request;
  request.set_sandbox_id(id_);
  mc::SandboxTerminateResponse response;
  Status status = shared_->control->Unary(
      "SandboxTerminate", [&](grpc::ClientContext* context) {
        return shared_->control->stub().SandboxTerminate(context, request, &response);
      });
  if (status.code() == StatusCode::kNotFound) return OkStatus();  // already gone
  return status;
}

namespace {

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
    return caps;
  }
  Status CheckAvailable() override;
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
  Result<std::string> VolumeId(Shared& shared);
  Status ResolveSecrets(Shared& shared);

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
  shared->builder_version = creds.image_builder_version;
  shared->plaintext = creds.server_url.rfind("http://", 0) == 0;
  bool tls = true;
  SANDRUN_RETURN_IF_ERROR(GrpcTarget(creds.server_url, &tls).status());
  shared->control = std::make_shared<ControlPlane>(std::move(creds));
  if (!options_.exe_cache_volume.empty()) {
    PortableOptions portable;
    portable.ld_library_path = options_.host_library_path;
    shared->exe_cache = std::make_unique<ExeCache>(shared->control, options_.exe_cache_volume,
                                                   shared->environment, portable);
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

Result<std::string> ModalBackend::VolumeId(Shared& shared) {
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (!shared.volume_id.empty()) return shared.volume_id;
  }
  mc::VolumeGetOrCreateRequest request;
  request.set_deployment_name(shared.options.volume);
  request.set_environment_name(shared.environment);
  request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  request.set_version(mc::VOLUME_FS_VERSION_V2);
  mc::VolumeGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(shared.control->Unary("VolumeGetOrCreate", [&](grpc::ClientContext* c) {
    return shared.control->stub().VolumeGetOrCreate(c, request, &response);
  }));
  // An existing Volume keeps its own version whatever we ask for.
  SANDRUN_RETURN_IF_ERROR(
      CheckArchiveVolumeVersion(response.metadata().version(), shared.options.volume));
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.volume_id = response.volume_id();
  return shared.volume_id;
}

Status ModalBackend::ResolveSecrets(Shared& shared) {
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (shared.secrets_resolved) return OkStatus();
  }
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
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.secret_ids = ids;
  shared.secrets_resolved = true;
  return OkStatus();
}

Result<std::unique_ptr<Sandbox>> ModalBackend::Create(const SandboxSpec& spec) {
  const auto lifetime = std::chrono::seconds(std::max<std::int64_t>(1, spec.lifetime.count()));
  const Clock::time_point expires = Clock::now() + lifetime;
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  Shared& s = *shared;
  std::string gpu_type;
  int gpu_count = 0;
  if (!spec.gpu.empty()) SANDRUN_RETURN_IF_ERROR(ParseGpuSpec(spec.gpu, &gpu_type, &gpu_count));
  SANDRUN_ASSIGN_OR_RETURN(std::string image_id, ImageIdFor(s, spec));
  SANDRUN_RETURN_IF_ERROR(ResolveSecrets(s));

  SANDRUN_ASSIGN_OR_RETURN(const std::string workdir,
                           JoinSandboxPath("workdir", kDefaultWorkdir, spec.workdir,
                                           EmptySandboxPath::kIsBase));
  mc::SandboxCreateRequest request;
  request.set_app_id(s.app_id);
  mc::Sandbox* def = request.mutable_definition();
  def->set_image_id(image_id);
  for (const auto& id : s.secret_ids) def->add_secret_ids(id);
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
  for (const auto& [name, value] : tags) {
    mc::SandboxTag* tag = request.add_tags();
    tag->set_tag_name(name);
    tag->set_tag_value(value);
  }
  mc::SandboxCreateResponse created;
  SANDRUN_RETURN_IF_ERROR(s.control->Unary("SandboxCreate", [&](grpc::ClientContext* c) {
    return s.control->stub().SandboxCreate(c, request, &created);
  }));
  const std::string sandbox_id = created.sandbox_id();
  auto terminate = [&] {
    mc::SandboxTerminateRequest t;
    t.set_sandbox_id(sandbox_id);
    mc::SandboxTerminateResponse ignored;
    s.control->Unary("SandboxTerminate", [&](grpc::ClientContext* c) {
      return s.control->stub().SandboxTerminate(c, t, &ignored);
    }).IgnoreError();
  };

  // The task id appears once the sandbox is scheduled.
  std::string task_id;
  milliseconds poll(50);
  const Clock::time_point give_up = Clock::now() + std::chrono::minutes(5);
  while (task_id.empty()) {
    mc::SandboxGetTaskIdRequest get;
    get.set_sandbox_id(sandbox_id);
    get.set_wait_until_ready(false);
    mc::SandboxGetTaskIdResponse response;
    Status status = s.control->Unary("SandboxGetTaskId", [&](grpc::ClientContext* c) {
      return s.control->stub().SandboxGetTaskId(c, get, &response);
    });
    if (!status.ok()) {
      terminate();
      return status;
    }
    if (response.has_task_result()) {
      terminate();
      return UnavailableError("modal: sandbox " + sandbox_id + " ended before it started: " +
                              GenericStatusName(response.task_result().status()) + " " +
                              response.task_result().exception());
    }
    if (response.has_task_id() && !response.task_id().empty()) {
      task_id = response.task_id();
      break;
    }
    if (Clock::now() > give_up) {
      terminate();
      return DeadlineExceededError("modal: sandbox " + sandbox_id + " was not scheduled in 5 minutes");
    }
    std::this_thread::sleep_for(poll);
    poll = std::min(poll * 2, milliseconds(500));
  }

  auto access = [shared, task_id]() -> Result<mc::TaskGetCommandRouterAccessResponse> {
    mc::TaskGetCommandRouterAccessRequest request;
    request.set_task_id(task_id);
    mc::TaskGetCommandRouterAccessResponse response;
    SANDRUN_RETURN_IF_ERROR(shared->control->Unary(
        "TaskGetCommandRouterAccess", [&](grpc::ClientContext* c) {
          return shared->control->stub().TaskGetCommandRouterAccess(c, request, &response);
        }));
    return response;
  };
  auto first_access = access();
  if (!first_access.ok()) {
    terminate();
    return first_access.status();
  }
  auto router = CommandRouter::Connect(*first_access, s.plaintext, access);
  if (!router.ok()) {
    terminate();
    return router.status();
  }
  std::vector<std::string> notes;
  if (!spec.gpu.empty()) notes.push_back("modal: gpu " + gpu_type + " x" + std::to_string(gpu_count));
  return std::unique_ptr<Sandbox>(new ModalSandbox(shared, sandbox_id, task_id,
                                                   std::move(router).value(), workdir, spec.env,
                                                   std::move(notes), lifetime, expires,
                                                   std::move(exe_mount.served)));
}

Result<std::vector<Leftover>> ModalBackend::ListLeftovers() {
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  std::vector<Leftover> out;
  double before = 0;
  const std::int64_t now = UnixSecondsNow();
  for (int page = 0; page < 1000; ++page) {
    mc::SandboxListRequest request;
    request.set_app_id(shared->app_id);
    request.set_environment_name(shared->environment);
    request.set_include_finished(false);
    if (before > 0) request.set_before_timestamp(before);
    mc::SandboxTag* tag = request.add_tags();
    tag->set_tag_name("managed-by");
    tag->set_tag_value("sandrun");
    mc::SandboxListResponse response;
    SANDRUN_RETURN_IF_ERROR(shared->control->Unary("SandboxList", [&](grpc::ClientContext* c) {
      return shared->control->stub().SandboxList(c, request, &response);
    }));
    if (response.sandboxes().empty()) break;
    for (const auto& info : response.sandboxes()) {
      before = before == 0 ? info.created_at() : std::min(before, info.created_at());
      Leftover l;
      l.id = info.id();
      for (const auto& t : info.tags()) l.labels[t.tag_name()] = t.tag_value();
      // Trust nothing the filter let through by mistake.
      if (l.labels["managed-by"] != "sandrun" ||
          (!info.app_id().empty() && info.app_id() != shared->app_id)) {
        continue;
      }
      ReadOwnerLabels("", now, l);
      l.description = l.id + " run " + l.labels["run"] + " task " + l.labels["task"] +
                      " (owner pid " + l.labels["owner-pid"] + "@" + l.labels["owner-host"] +
                      (l.owner_alive ? " alive" : " gone") + (l.expired ? ", expired" : "") + ")";
      out.push_back(std::move(l));
    }
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
  mc::SandboxTerminateRequest request;
  request.set_sandbox_id(id);
  mc::SandboxTerminateResponse response;
  return shared->control->Unary("SandboxTerminate", [&](grpc::ClientContext* c) {
    return shared->control->stub().SandboxTerminate(c, request, &response);
  });
}

Result<std::unique_ptr<ArchiveStore>> ModalBackend::OpenArchive() {
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  SANDRUN_ASSIGN_OR_RETURN(std::string volume_id, VolumeId(*shared));
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
