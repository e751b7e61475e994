// The fake's sandboxes, V1 and V2: create, task id, command-router access,
// terminate, wait, list and tags. A V1 sandbox id is "sb-" and 22 base62
// characters; a V2 id has another shape. Modal's SDKs pick the V1 or V2 RPCs
// by that shape, and here each family's RPCs find only their own sandboxes.
#include "fake_modal_impl.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include "fake_modal_sdk_fields.pb.h"

namespace sandrun::modal::fake {

namespace {

mc::GenericResult::GenericStatus AsGenericStatus(int status) {
  return static_cast<mc::GenericResult::GenericStatus>(status);
}

std::string NewSandboxId(bool v2) { return v2 ? RandomId("sb-", 26) : RandomId("sb-", 22); }

}  // namespace

grpc::Status FakeModalServer::Impl::CreateSandboxLocked(
    const std::string& app_id, const mc::Sandbox& def,
    const google::protobuf::RepeatedPtrField<mc::SandboxTag>& tags, bool v2,
    const std::map<std::string, std::string>& env, std::shared_ptr<FakeSandbox>* out) {
  if (!AppExistsLocked(app_id)) return grpc::Status(grpc::StatusCode::NOT_FOUND, "app not found");
  if (images_.count(def.image_id()) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "image not found");
  }
  if (images_[def.image_id()] != 1) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "the image's build failed");
  }
  if (def.timeout_secs() == 0 || def.timeout_secs() > 24 * 3600) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "timeout_secs out of range");
  }
  if (def.has_workdir() && (def.workdir().empty() || def.workdir()[0] != '/')) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "workdir must be absolute");
  }
  for (const auto& mount : def.volume_mounts()) {
    bool known = false;
    for (const auto& [name, id] : volume_ids_) known = known || id == mount.volume_id();
    if (!known) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
  }
  auto sandbox = std::make_shared<FakeSandbox>();
  for (const auto& id : def.secret_ids()) {
    if (grpc::Status found = SecretEnvLocked(id, &sandbox->secret_env); !found.ok()) return found;
    sandbox->definition.secret_ids.push_back(id);
  }
  for (const auto& [k, v] : env) sandbox->secret_env[k] = v;
  for (const auto& mount : def.volume_mounts()) {
    sandbox->definition.volume_mount_paths.push_back(mount.mount_path());
  }
  for (const auto& cidr : def.network_access().allowed_cidrs()) {
    sandbox->definition.allowed_cidrs.push_back(cidr);
  }
  if (def.resources().has_gpu_config()) {
    sandbox->definition.gpu_type = def.resources().gpu_config().gpu_type();
    sandbox->definition.gpu_count = static_cast<int>(def.resources().gpu_config().count());
  }
  sandbox->definition.environment = app_environments_[app_id];
  sandbox->v2 = v2;
  sandbox->id = NewSandboxId(v2);
  sandbox->task_id = RandomId("ta-", 22);
  sandbox->app_id = app_id;
  for (const auto& tag : tags) sandbox->tags[tag.tag_name()] = tag.tag_value();
  sandbox->root = scratch_ / sandbox->id;
  sandbox->workdir = def.has_workdir() ? def.workdir() : "/";
  sandbox->network_type = def.network_access().network_access_type();
  sandbox->created_at = NowSeconds();
  sandbox->ready_at = Clock::now() + creation_delay_;
  sandbox->router_ready_at = sandbox->ready_at + options_.router_ready_delay;
  std::error_code ec;
  fs::create_directories(MapPath(*sandbox, sandbox->workdir), ec);
  fs::create_directories(sandbox->root / "sandrun/results", ec);
  fs::create_directories(sandbox->root / ".execs", ec);
  sandboxes_[sandbox->id] = sandbox;
  ++stats_.sandboxes_created;
  if (options_.containers) {
    sandbox->container_state = ContainerState::kStarting;
    threads_.emplace_back(&Impl::StartContainer, this, sandbox, local_images_[def.image_id()],
                          ContainerRunArgs(def, *sandbox));
    WatchLifetimeLocked(sandbox, def.timeout_secs(),
                        def.has_idle_timeout_secs() ? def.idle_timeout_secs() : 0);
  }
  *out = sandbox;
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::FindSandboxLocked(const std::string& sandbox_id, bool v2,
                                                      std::shared_ptr<FakeSandbox>* out) {
  auto it = sandboxes_.find(sandbox_id);
  if (it == sandboxes_.end() || it->second->v2 != v2) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, std::string("sandbox not found") +
                                                         (it == sandboxes_.end() ? ""
                                                          : v2 ? " (a V1 sandbox; use the V1 call)"
                                                               : " (a V2 sandbox; use the V2 call)"));
  }
  *out = it->second;
  return grpc::Status::OK;
}

void FakeModalServer::Impl::GrantRouterAccessLocked(FakeSandbox& sandbox, std::string* jwt,
                                                    std::string* url) {
  sandbox.jwt = MakeJwt(NowSeconds() + 3600, sandbox.task_id);
  *jwt = sandbox.jwt;
  *url = "https://127.0.0.1:" + std::to_string(router_port_);
}

grpc::Status FakeModalServer::Impl::SandboxCreate(grpc::ServerContext* context,
                                                  const mc::SandboxCreateRequest* request,
                                                  mc::SandboxCreateResponse* response) {
  FAKE_ENTER("SandboxCreate", true, true);
  std::string build_log;  // A sandbox on an image nobody joined waits for its build.
  BuildImageOnce(request->definition().image_id(), &build_log);
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<FakeSandbox> sandbox;
  grpc::Status created = CreateSandboxLocked(request->app_id(), request->definition(),
                                             request->tags(), false, {}, &sandbox);
  if (!created.ok()) return created;
  response->set_sandbox_id(sandbox->id);
  response->mutable_metadata()->set_app_id(sandbox->app_id);
  return Leave("SandboxCreate", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::SandboxCreateV2(grpc::ServerContext* context,
                                                    const mc::SandboxCreateV2Request* request,
                                                    mc::SandboxCreateV2Response* response) {
  FAKE_ENTER("SandboxCreateV2", true, true);
  if (!request->definition().resources().gpu_config().gpu_type().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "V2 sandboxes cannot have GPUs");
  }
  sandrun::fake_modal::SandboxCreateV2SecretSources extra;
  extra.ParseFromString(request->SerializeAsString());
  std::string build_log;  // A sandbox on an image nobody joined waits for its build.
  BuildImageOnce(request->definition().image_id(), &build_log);
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string> env(request->ephemeral_secrets().contents().begin(),
                                         request->ephemeral_secrets().contents().end());
  if (grpc::Status sources = AddSecretSourcesLocked(extra.secret_sources(), &env); !sources.ok()) {
    return sources;
  }
  std::shared_ptr<FakeSandbox> sandbox;
  grpc::Status created = CreateSandboxLocked(request->app_id(), request->definition(),
                                             request->tags(), true, env, &sandbox);
  if (!created.ok()) return created;
  // A V2 create answers with the task and its router: no round trip needed.
  response->set_sandbox_id(sandbox->id);
  response->set_task_id(sandbox->task_id);
  response->mutable_metadata()->set_app_id(sandbox->app_id);
  GrantRouterAccessLocked(*sandbox, response->mutable_command_router_access()->mutable_jwt(),
                          response->mutable_command_router_access()->mutable_url());
  return Leave("SandboxCreateV2", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::GetTaskId(grpc::ServerContext* context,
                                              const mc::SandboxGetTaskIdRequest* request,
                                              mc::SandboxGetTaskIdResponse* response, bool v2) {
  FAKE_ENTER(v2 ? "SandboxGetTaskIdV2" : "SandboxGetTaskId", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<FakeSandbox> sandbox;
  if (grpc::Status found = FindSandboxLocked(request->sandbox_id(), v2, &sandbox); !found.ok()) {
    return found;
  }
  if (!sandbox->running) {
    response->mutable_task_result()->set_status(AsGenericStatus(sandbox->result_status));
    response->mutable_task_result()->set_exception(sandbox->container_error);
    return grpc::Status::OK;
  }
  if (Clock::now() >= sandbox->ready_at && sandbox->container_state != ContainerState::kStarting) {
    response->set_task_id(sandbox->task_id);
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TaskGetCommandRouterAccess(
    grpc::ServerContext* context, const mc::TaskGetCommandRouterAccessRequest* request,
    mc::TaskGetCommandRouterAccessResponse* response) {
  FAKE_ENTER("TaskGetCommandRouterAccess", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  FakeSandbox* sandbox = ByTaskLocked(request->task_id());
  if (sandbox == nullptr || sandbox->v2) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "task not found");
  }
  GrantRouterAccessLocked(*sandbox, response->mutable_jwt(), response->mutable_url());
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::SandboxGetCommandRouterAccess(
    grpc::ServerContext* context, const mc::SandboxGetCommandRouterAccessRequest* request,
    mc::SandboxGetCommandRouterAccessResponse* response) {
  FAKE_ENTER("SandboxGetCommandRouterAccess", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  FakeSandbox* sandbox = nullptr;
  if (request->has_task_id()) {
    sandbox = ByTaskLocked(request->task_id());
  } else {
    auto it = sandboxes_.find(request->sandbox_id());
    if (it != sandboxes_.end() && it->second->running) sandbox = it->second.get();
  }
  if (sandbox == nullptr || !sandbox->v2) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
  }
  GrantRouterAccessLocked(*sandbox, response->mutable_jwt(), response->mutable_url());
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::Terminate(grpc::ServerContext* context,
                                              const mc::SandboxTerminateRequest* request,
                                              mc::SandboxTerminateResponse* response, bool v2) {
  const char* rpc = v2 ? "SandboxTerminateV2" : "SandboxTerminate";
  FAKE_ENTER(rpc, true, true);
  std::unique_lock<std::mutex> lock(mu_);
  std::shared_ptr<FakeSandbox> sandbox;
  if (grpc::Status found = FindSandboxLocked(request->sandbox_id(), v2, &sandbox); !found.ok()) {
    return found;
  }
  if (!sandbox->running) {
    response->mutable_existing_result()->set_status(AsGenericStatus(sandbox->result_status));
    return grpc::Status::OK;
  }
  KillLocked(*sandbox, 3);
  ++stats_.sandboxes_terminated;
  AwaitContainerGone(lock, *sandbox);
  return Leave(rpc, grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::Wait(grpc::ServerContext* context,
                                         const mc::SandboxWaitRequest* request,
                                         mc::SandboxWaitResponse* response, bool v2) {
  FAKE_ENTER(v2 ? "SandboxWaitV2" : "SandboxWait", true, true);
  std::unique_lock<std::mutex> lock(mu_);
  std::shared_ptr<FakeSandbox> sandbox;
  if (grpc::Status found = FindSandboxLocked(request->sandbox_id(), v2, &sandbox); !found.ok()) {
    return found;
  }
  // A long poll: up to `timeout` seconds (at most 55) for the sandbox to end.
  const auto until = Clock::now() + milliseconds(static_cast<long>(
                                        std::clamp(request->timeout(), 0.0f, 55.0f) * 1000));
  while (sandbox->running && Clock::now() < until && !context->IsCancelled()) {
    exec_cv_.wait_for(lock, milliseconds(50));
  }
  response->mutable_metadata()->set_app_id(sandbox->app_id);
  if (!sandbox->running) response->mutable_result()->set_status(AsGenericStatus(sandbox->result_status));
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::List(grpc::ServerContext* context,
                                         const mc::SandboxListRequest* request,
                                         mc::SandboxListResponse* response, bool v2) {
  FAKE_ENTER(v2 ? "SandboxListV2" : "SandboxList", true, true);
  if (!v2 || request->app_id().empty()) {
    if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
  }
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<FakeSandbox>> matches;
  for (const auto& [id, sandbox] : sandboxes_) {
    if (sandbox->v2 && !v2) continue;  // SandboxListV2 lists both; SandboxList only V1
    if (!request->app_id().empty() && sandbox->app_id != request->app_id()) continue;
    if (!request->include_finished() && !sandbox->running) continue;
    if (request->before_timestamp() > 0 && sandbox->created_at >= request->before_timestamp()) continue;
    bool tags_match = true;
    for (const auto& tag : request->tags()) {
      auto t = sandbox->tags.find(tag.tag_name());
      tags_match = tags_match && t != sandbox->tags.end() && t->second == tag.tag_value();
    }
    if (tags_match) matches.push_back(sandbox);
  }
  std::sort(matches.begin(), matches.end(),
            [](const auto& a, const auto& b) { return a->created_at > b->created_at; });
  // Small pages, so clients must page with before_timestamp.
  for (std::size_t i = 0; i < matches.size() && i < 3; ++i) {
    mc::SandboxInfo* info = response->add_sandboxes();
    info->set_id(matches[i]->id);
    info->set_created_at(matches[i]->created_at);
    info->set_app_id(matches[i]->app_id);
    // No tags: upstream's SandboxInfo says they are "not yet exposed".
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TagsGet(grpc::ServerContext* context,
                                            const mc::SandboxTagsGetRequest* request,
                                            mc::SandboxTagsGetResponse* response, bool v2) {
  FAKE_ENTER(v2 ? "SandboxTagsGetV2" : "SandboxTagsGet", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<FakeSandbox> sandbox;
  if (grpc::Status found = FindSandboxLocked(request->sandbox_id(), v2, &sandbox); !found.ok()) {
    return found;
  }
  for (const auto& [name, value] : sandbox->tags) {
    mc::SandboxTag* tag = response->add_tags();
    tag->set_tag_name(name);
    tag->set_tag_value(value);
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TagsSet(grpc::ServerContext* context,
                                            const mc::SandboxTagsSetRequest* request, bool v2) {
  FAKE_ENTER(v2 ? "SandboxTagsSetV2" : "SandboxTagsSet", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<FakeSandbox> sandbox;
  if (grpc::Status found = FindSandboxLocked(request->sandbox_id(), v2, &sandbox); !found.ok()) {
    return found;
  }
  std::map<std::string, std::string> tags;  // the whole set is replaced
  for (const auto& tag : request->tags()) {
    if (tag.tag_name().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "empty tag name");
    tags[tag.tag_name()] = tag.tag_value();
  }
  sandbox->tags = std::move(tags);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::RouterReady(const FakeSandbox& sandbox) {
  if (Clock::now() >= sandbox.router_ready_at) return grpc::Status::OK;
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "failed to connect to all addresses (the sandbox's command router is not up yet)");
}

bool FakeModalServer::Impl::AppExistsLocked(const std::string& app_id) {
  for (const auto& [name, id] : apps_) {
    if (id == app_id) return true;
  }
  return false;
}

void FakeModalServer::Impl::KillLocked(FakeSandbox& sandbox, int status) {
  if (!sandbox.running) return;
  sandbox.running = false;
  sandbox.result_status = status;
  for (auto& [id, exec] : sandbox.execs) {
    // The whole group, even after its leader exited: leftovers die too.
    if (exec->pid > 0) ::kill(-exec->pid, SIGKILL);
    if (exec->stdin_fd >= 0) {
      ::close(exec->stdin_fd);
      exec->stdin_fd = -1;
    }
    if (exec->is_virtual && !exec->finished) {
      exec->finished = true;
      exec->signal = SIGKILL;
    }
  }
  RemoveContainerLocked(sandbox);
  exec_cv_.notify_all();
}

}  // namespace sandrun::modal::fake
