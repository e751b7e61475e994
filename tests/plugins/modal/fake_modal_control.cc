// The fake's control plane: auth tokens, apps, environments, images,
// secrets, and sandboxes (create, task id, router access, terminate, wait,
// list).
#include "fake_modal_impl.h"

#include <signal.h>

namespace sandrun::modal::fake {

// Records an environment name; unknown ("missing...") ones are NOT_FOUND.
grpc::Status FakeModalServer::Impl::SeeEnvironment(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  environments_seen_.push_back(name);
  if (name.rfind("missing", 0) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "environment '" + name + "' not found");
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::AuthTokenGet(grpc::ServerContext* context,
                                                 const mc::AuthTokenGetRequest*,
                                                 mc::AuthTokenGetResponse* response) {
  FAKE_ENTER("AuthTokenGet", true, false);
  std::lock_guard<std::mutex> lock(mu_);
  double exp = NowSeconds() + 1200;
  if (expired_tokens_ > 0) {
    --expired_tokens_;
    exp = NowSeconds() - 60;
  }
  std::string token = MakeJwt(exp, "auth");
  auth_tokens_[token] = exp;
  response->set_token(token);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::AppGetOrCreate(grpc::ServerContext* context,
                                                   const mc::AppGetOrCreateRequest* request,
                                                   mc::AppGetOrCreateResponse* response) {
  FAKE_ENTER("AppGetOrCreate", true, true);
  if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
  if (request->app_name().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "app_name is empty");
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = apps_.find(request->app_name());
  if (it == apps_.end()) {
    if (request->object_creation_type() != mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "app not found");
    }
    it = apps_.emplace(request->app_name(), RandomId("ap-", 22)).first;
  }
  app_environments_[it->second] = request->environment_name();
  response->set_app_id(it->second);
  return Leave("AppGetOrCreate", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::EnvironmentGetOrCreate(grpc::ServerContext* context,
                                                           const mc::EnvironmentGetOrCreateRequest*,
                                                           mc::EnvironmentGetOrCreateResponse* response) {
  FAKE_ENTER("EnvironmentGetOrCreate", true, true);
  response->mutable_metadata()->mutable_settings()->set_image_builder_version("2024.10");
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::ImageGetOrCreate(grpc::ServerContext* context,
                                                     const mc::ImageGetOrCreateRequest* request,
                                                     mc::ImageGetOrCreateResponse* response) {
  FAKE_ENTER("ImageGetOrCreate", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  if (!AppExistsLocked(request->app_id())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "app not found");
  }
  const auto& commands = request->image().dockerfile_commands();
  if (commands.empty() || commands[0].rfind("FROM ", 0) != 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first command must be FROM");
  }
  // Modal builds a definition once: asked again, it answers the cached image
  // with its result, and the client need not join a build.
  std::string definition;
  request->image().SerializeToString(&definition);
  definition += "\n" + request->builder_version();
  auto cached = built_images_.find(definition);
  if (cached != built_images_.end() && !request->force_build()) {
    response->set_image_id(cached->second);
    response->mutable_result()->set_status(static_cast<decltype(response->result().status())>(1));
    return grpc::Status::OK;
  }
  std::string id = RandomId("im-", 22);
  bool fails = false;
  for (const auto& c : commands) fails = fails || c.find("sandrun-fake-fail-build") != std::string::npos;
  images_[id] = fails ? 2 : 1;
  if (!fails) built_images_[definition] = id;
  response->set_image_id(id);  // no result yet: the client must join the build
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::ImageJoinStreaming(grpc::ServerContext* context,
                                                       const mc::ImageJoinStreamingRequest* request,
                                                       grpc::ServerWriter<mc::ImageJoinStreamingResponse>* writer) {
  FAKE_ENTER("ImageJoinStreaming", true, false);
  int status;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = images_.find(request->image_id());
    if (it == images_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "image not found");
    status = it->second;
  }
  mc::ImageJoinStreamingResponse log;
  log.add_task_logs()->set_data("fake build: step 1/1\n");
  log.set_entry_id("1-0");
  writer->Write(log);
  mc::ImageJoinStreamingResponse done;
  done.mutable_result()->set_status(static_cast<mc::GenericResult::GenericStatus>(status));
  if (status != 1) done.mutable_result()->set_exception("fake build failed on purpose");
  done.set_entry_id("2-0");
  done.set_eof(true);
  writer->Write(done);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::SecretGetOrCreate(grpc::ServerContext* context,
                                                      const mc::SecretGetOrCreateRequest* request,
                                                      mc::SecretGetOrCreateResponse* response) {
  FAKE_ENTER("SecretGetOrCreate", true, true);
  if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
  if (request->deployment_name().rfind("missing", 0) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "secret not found");
  }
  response->set_secret_id("st-" + request->deployment_name());
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::SandboxCreate(grpc::ServerContext* context,
                                                  const mc::SandboxCreateRequest* request,
                                                  mc::SandboxCreateResponse* response) {
  FAKE_ENTER("SandboxCreate", true, true);
  const mc::Sandbox& def = request->definition();
  std::lock_guard<std::mutex> lock(mu_);
  if (!AppExistsLocked(request->app_id())) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "app not found");
  }
  if (images_.count(def.image_id()) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "image not found");
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
    if (id.rfind("st-", 0) != 0) return grpc::Status(grpc::StatusCode::NOT_FOUND, "secret not found");
    sandbox->definition.secret_ids.push_back(id);
    auto known = options_.secrets.find(id.substr(3));
    if (known != options_.secrets.end()) {
      for (const auto& [k, v] : known->second) sandbox->secret_env[k] = v;
    }
  }
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
  sandbox->definition.environment = app_environments_[request->app_id()];
  sandbox->id = RandomId("sb-", 22);
  sandbox->task_id = RandomId("ta-", 22);
  sandbox->app_id = request->app_id();
  for (const auto& tag : request->tags()) sandbox->tags[tag.tag_name()] = tag.tag_value();
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
  response->set_sandbox_id(sandbox->id);
  return Leave("SandboxCreate", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::SandboxGetTaskId(grpc::ServerContext* context,
                                                     const mc::SandboxGetTaskIdRequest* request,
                                                     mc::SandboxGetTaskIdResponse* response) {
  FAKE_ENTER("SandboxGetTaskId", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sandboxes_.find(request->sandbox_id());
  if (it == sandboxes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
  FakeSandbox& sandbox = *it->second;
  if (!sandbox.running) {
    response->mutable_task_result()->set_status(
        static_cast<mc::GenericResult::GenericStatus>(sandbox.result_status));
    return grpc::Status::OK;
  }
  if (Clock::now() >= sandbox.ready_at) response->set_task_id(sandbox.task_id);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TaskGetCommandRouterAccess(grpc::ServerContext* context,
                                                               const mc::TaskGetCommandRouterAccessRequest* request,
                                                               mc::TaskGetCommandRouterAccessResponse* response) {
  FAKE_ENTER("TaskGetCommandRouterAccess", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  FakeSandbox* sandbox = ByTaskLocked(request->task_id());
  if (sandbox == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "task not found");
  sandbox->jwt = MakeJwt(NowSeconds() + 3600, sandbox->task_id);
  response->set_jwt(sandbox->jwt);
  response->set_url((options_.lenient.http_router_url ? "http://127.0.0.1:" : "https://127.0.0.1:") +
                    std::to_string(router_port_));
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::SandboxTerminate(grpc::ServerContext* context,
                                                     const mc::SandboxTerminateRequest* request,
                                                     mc::SandboxTerminateResponse* response) {
  FAKE_ENTER("SandboxTerminate", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sandboxes_.find(request->sandbox_id());
  if (it == sandboxes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
  if (!it->second->running) {
    response->mutable_existing_result()->set_status(
        static_cast<mc::GenericResult::GenericStatus>(it->second->result_status));
    return grpc::Status::OK;
  }
  KillLocked(*it->second, 3);
  ++stats_.sandboxes_terminated;
  return Leave("SandboxTerminate", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::SandboxWait(grpc::ServerContext* context,
                                                const mc::SandboxWaitRequest* request,
                                                mc::SandboxWaitResponse* response) {
  FAKE_ENTER("SandboxWait", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sandboxes_.find(request->sandbox_id());
  if (it == sandboxes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
  if (!it->second->running) {
    response->mutable_result()->set_status(static_cast<mc::GenericResult::GenericStatus>(it->second->result_status));
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::SandboxList(grpc::ServerContext* context,
                                                const mc::SandboxListRequest* request,
                                                mc::SandboxListResponse* response) {
  FAKE_ENTER("SandboxList", true, true);
  if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::shared_ptr<FakeSandbox>> matches;
  for (const auto& [id, sandbox] : sandboxes_) {
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
    if (!options_.lenient.tags_in_sandbox_list) continue;  // upstream: "not exposed"
    for (const auto& [name, value] : matches[i]->tags) {
      mc::SandboxTag* tag = info->add_tags();
      tag->set_tag_name(name);
      tag->set_tag_value(value);
    }
  }
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
  exec_cv_.notify_all();
}

}  // namespace sandrun::modal::fake
