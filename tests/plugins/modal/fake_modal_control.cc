// The fake's control plane: auth tokens, apps, environments, images and
// secrets. Sandboxes are in fake_modal_sandboxes.cc.
#include "fake_modal_impl.h"

#include "fake_modal_sdk_fields.pb.h"

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
  // (In container mode a definition is cached once its first build, made
  // when joined, has succeeded.)
  if (cached != built_images_.end() && !request->force_build() && images_[cached->second] == 1) {
    response->set_image_id(cached->second);
    response->mutable_result()->set_status(static_cast<decltype(response->result().status())>(1));
    return grpc::Status::OK;
  }
  std::string id = RandomId("im-", 22);
  if (options_.containers) {
    image_commands_[id].assign(commands.begin(), commands.end());
    images_[id] = kImagePending;  // built (or resolved) when joined
    built_images_[definition] = id;
  } else {
    bool fails = false;
    for (const auto& c : commands) fails = fails || c.find("sandrun-fake-fail-build") != std::string::npos;
    images_[id] = fails ? 2 : 1;
    if (!fails) built_images_[definition] = id;
  }
  response->set_image_id(id);  // no result yet: the client must join the build
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::ImageJoinStreaming(grpc::ServerContext* context,
                                                       const mc::ImageJoinStreamingRequest* request,
                                                       grpc::ServerWriter<mc::ImageJoinStreamingResponse>* writer) {
  FAKE_ENTER("ImageJoinStreaming", true, false);
  int status;
  std::string build_log = "fake build: step 1/1\n";
  bool build = false;
  std::vector<std::string> commands;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = images_.find(request->image_id());
    if (it == images_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "image not found");
    if (it->second == kImagePending) {  // container mode: this join builds it
      it->second = kImageBuilding;
      build = true;
      commands = image_commands_[request->image_id()];
    }
    exec_cv_.wait(lock, [&] { return build || images_[request->image_id()] != kImageBuilding; });
    status = images_[request->image_id()];
  }
  if (build) {
    status = BuildContainerImage(request->image_id(), commands, &build_log) ? 1 : 2;
    std::lock_guard<std::mutex> lock(mu_);
    images_[request->image_id()] = status;
    exec_cv_.notify_all();
  }
  mc::ImageJoinStreamingResponse log;
  log.add_task_logs()->set_data(build_log);
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
  if (request->object_creation_type() == mc::OBJECT_CREATION_TYPE_EPHEMERAL) {
    // A secret from values (env_dict), as the SDKs make for a V1 sandbox's env.
    sandrun::fake_modal::SecretGetOrCreateEnvDict values;
    values.ParseFromString(request->SerializeAsString());
    std::lock_guard<std::mutex> lock(mu_);
    std::string id = RandomId("st-", 22);
    ephemeral_secrets_[id] = {values.env_dict().begin(), values.env_dict().end()};
    response->set_secret_id(id);
    return grpc::Status::OK;
  }
  if (request->deployment_name().rfind("missing", 0) == 0) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "secret not found");
  }
  response->set_secret_id("st-" + request->deployment_name());
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::SecretEnvLocked(const std::string& secret_id,
                                                    std::map<std::string, std::string>* env) {
  auto ephemeral = ephemeral_secrets_.find(secret_id);
  if (ephemeral != ephemeral_secrets_.end()) {
    for (const auto& [k, v] : ephemeral->second) (*env)[k] = v;
    return grpc::Status::OK;
  }
  if (secret_id.rfind("st-", 0) != 0) return grpc::Status(grpc::StatusCode::NOT_FOUND, "secret not found");
  auto known = options_.secrets.find(secret_id.substr(3));
  if (known != options_.secrets.end()) {
    for (const auto& [k, v] : known->second) (*env)[k] = v;
  }
  return grpc::Status::OK;
}

}  // namespace sandrun::modal::fake
