// The fake's control plane: auth tokens, apps, environments, images and
// secrets. Sandboxes are in fake_modal_sandboxes.cc.
#include "fake_modal_impl.h"

#include <exception>

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
  // Modal builds a definition once: asked again, it answers the same image,
  // with its result once the build has succeeded (then the client need not
  // join). A failed build is forgotten, and a forced one is a new image.
  std::string definition;
  request->image().SerializeToString(&definition);
  definition += "\n" + request->builder_version();
  auto known = images_by_definition_.find(definition);
  if (known != images_by_definition_.end() && !request->force_build()) {
    response->set_image_id(known->second);
    if (images_[known->second] == 1) {
      response->mutable_result()->set_status(mc::GenericResult::GENERIC_STATUS_SUCCESS);
    }
    return grpc::Status::OK;
  }
  std::string id = RandomId("im-", 22);
  image_commands_[id].assign(commands.begin(), commands.end());
  image_definitions_[id] = definition;
  images_[id] = kImagePending;
  images_by_definition_[definition] = id;
  response->set_image_id(id);  // no result yet: the client joins the build
  return grpc::Status::OK;
}

int FakeModalServer::Impl::BuildImageOnce(const std::string& image_id, std::string* log) {
  std::vector<std::string> commands;
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = images_.find(image_id);
    if (it == images_.end()) return 0;
    if (it->second != kImagePending) {
      exec_cv_.wait(lock, [&] { return images_[image_id] != kImageBuilding; });
      *log = image_logs_[image_id];
      return images_[image_id];
    }
    it->second = kImageBuilding;
    commands = image_commands_[image_id];
  }
  bool built = true;
  if (options_.containers) {
    try {  // Whatever happens, the waiters below must hear an end.
      built = BuildContainerImage(image_id, commands, log);
    } catch (const std::exception& e) {
      *log += std::string("fake build: ") + e.what() + "\n";
      built = false;
    }
  } else {
    for (std::size_t i = 0; i < commands.size() && built; ++i) {
      *log += "fake build: Step " + std::to_string(i + 1) + "/" + std::to_string(commands.size()) +
              " : " + commands[i] + "\n";
      if (commands[i].find("sandrun-fake-fail-build") != std::string::npos) {
        *log += "fake build: this step fails on purpose\n";
        built = false;
      }
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  images_[image_id] = built ? 1 : 2;
  image_logs_[image_id] = *log;
  auto known = images_by_definition_.find(image_definitions_[image_id]);
  if (!built && known != images_by_definition_.end() && known->second == image_id) {
    images_by_definition_.erase(known);
  }
  exec_cv_.notify_all();
  return images_[image_id];
}

grpc::Status FakeModalServer::Impl::ImageJoinStreaming(grpc::ServerContext* context,
                                                       const mc::ImageJoinStreamingRequest* request,
                                                       grpc::ServerWriter<mc::ImageJoinStreamingResponse>* writer) {
  FAKE_ENTER("ImageJoinStreaming", true, false);
  std::string build_log;
  int status = BuildImageOnce(request->image_id(), &build_log);
  if (status == 0) return grpc::Status(grpc::StatusCode::NOT_FOUND, "image not found");
  mc::ImageJoinStreamingResponse log;
  log.add_task_logs()->set_data(build_log);
  log.set_entry_id("1-0");
  writer->Write(log);
  mc::ImageJoinStreamingResponse done;
  done.mutable_result()->set_status(static_cast<mc::GenericResult::GenericStatus>(status));
  if (status != 1) done.mutable_result()->set_exception("the image build failed (see its log)");
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
