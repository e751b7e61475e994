#include "fake_modal_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <net/if.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "modal_client.grpc.pb.h"
#include "task_command_router.grpc.pb.h"

extern char** environ;

namespace sandrun::modal::fake {
namespace {

namespace fs = std::filesystem;
namespace mc = ::modal::client;
namespace tcr = ::modal::task_command_router;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kFsTools = "/__modal/.bin/modal-sandbox-fs-tools";
constexpr std::size_t kChunk = 64 * 1024;
constexpr std::size_t kBlock = 8 * 1024 * 1024;

std::string Hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

std::string RandomId(const std::string& prefix, int n) {
  static std::mutex mu;
  static std::uint64_t counter = 0;
  static const char* alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::lock_guard<std::mutex> lock(mu);
  std::uint64_t x = (static_cast<std::uint64_t>(::getpid()) << 32) ^ ++counter ^
                    static_cast<std::uint64_t>(Clock::now().time_since_epoch().count());
  std::string out = prefix;
  for (int i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out.push_back(alphabet[x % 62]);
  }
  return out;
}

std::string Base64Url(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

std::string MakeJwt(double exp, const std::string& subject) {
  return Base64Url(R"({"alg":"none","typ":"JWT"})") + "." +
         Base64Url(json{{"exp", exp}, {"sub", subject}, {"n", RandomId("", 8)}}.dump()) + ".fake";
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string Metadata(const grpc::ServerContext* context, const std::string& key) {
  auto range = context->client_metadata().equal_range(key);
  if (range.first == range.second) return "";
  return std::string(range.first->second.data(), range.first->second.size());
}

struct Exec {
  std::string id;
  pid_t pid = -1;
  bool is_virtual = false;   // fs-tool op handled in-process
  std::string stdout_path, stderr_path;
  int stdin_fd = -1;         // write end of the child's stdin pipe
  int write_file_fd = -1;    // WriteFile target for virtual execs
  std::uint64_t stdin_offset = 0;
  bool stdin_closed = false;
  bool finished = false;
  bool has_code = false;
  int code = 0;
  int signal = 0;
  std::mutex stdin_mu;
};

struct FakeSandbox {
  std::string id, task_id, app_id, jwt;
  std::map<std::string, std::string> tags;
  fs::path root;
  std::string workdir = "/";
  int network_type = 0;
  double created_at = 0;
  Clock::time_point ready_at;
  bool running = true;
  int result_status = 0;
  bool foreign = false;
  std::map<std::string, std::shared_ptr<Exec>> execs;
  FakeSandboxDefinition definition;
  std::map<std::string, std::string> secret_env;  // from the attached secrets
};

struct Fault {
  int fail_before = 0, fail_before_code = 14;
  int fail_after = 0, fail_after_code = 14;
  int throttle = 0;
  double retry_after = 0;
};

// A tiny HTTP/1.1 server for volume block URLs: GET /block/<hex> and
// PUT /put/<hex>; one thread per connection.
class BlockHttpServer {
 public:
  using Store = std::function<bool(const std::string& hash_hex, std::string* data, bool put)>;
  explicit BlockHttpServer(Store store) : store_(std::move(store)) {}
  ~BlockHttpServer() { Stop(); }
  bool Start() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 64) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return false;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Loop(); });
    return true;
  }
  void Stop() {
    if (fd_ >= 0) {
      stopping_ = true;
      ::shutdown(fd_, SHUT_RDWR);
      ::close(fd_);
      fd_ = -1;
    }
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }

 private:
  void Loop() {
    while (!stopping_) {
      int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        if (stopping_) return;
        continue;
      }
      std::thread([this, client] { Serve(client); }).detach();
    }
  }
  void Serve(int client) {
    std::string buffer;
    char chunk[65536];
    std::size_t header_end;
    while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::read(client, chunk, sizeof chunk);
      if (n <= 0) {
        ::close(client);
        return;
      }
      buffer.append(chunk, static_cast<std::size_t>(n));
    }
    std::string head = buffer.substr(0, header_end);
    std::string body = buffer.substr(header_end + 4);
    std::size_t length = 0;
    std::istringstream lines(head);
    std::string line, method, target;
    std::getline(lines, line);
    std::istringstream(line) >> method >> target;
    target = target.substr(0, target.find('?'));  // presigned-URL style query
    while (std::getline(lines, line)) {
      std::string lower = line;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower.rfind("content-length:", 0) == 0) length = std::stoull(line.substr(15));
    }
    while (body.size() < length) {
      ssize_t n = ::read(client, chunk, sizeof chunk);
      if (n <= 0) break;
      body.append(chunk, static_cast<std::size_t>(n));
    }
    int status = 404;
    std::string answer;
    if (method == "GET" && target.rfind("/block/", 0) == 0) {
      if (store_(target.substr(7), &answer, false)) status = 200;
    } else if (method == "PUT" && target.rfind("/put/", 0) == 0) {
      std::string data = body;
      if (store_(target.substr(5), &data, true)) {
        status = 200;
        answer = "stored-" + target.substr(5);
      } else {
        status = 400;
      }
    }
    std::string response = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " ERR") +
                           "\r\nContent-Length: " + std::to_string(answer.size()) +
                           "\r\nConnection: close\r\n\r\n" + answer;
    std::size_t sent = 0;
    while (sent < response.size()) {
      ssize_t n = ::write(client, response.data() + sent, response.size() - sent);
      if (n <= 0) break;
      sent += static_cast<std::size_t>(n);
    }
    ::close(client);
  }

  Store store_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace

class FakeModalServer::Impl final : public mc::ModalClient::Service,
                                    public tcr::TaskCommandRouter::Service {
 public:
  explicit Impl(FakeOptions options) : options_(std::move(options)) {}

  ~Impl() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [id, sandbox] : sandboxes_) KillLocked(*sandbox, 3);
      threads.swap(threads_);
    }
    // Reapers end once their process is gone; timers once it is reaped.
    for (auto& thread : threads) thread.join();
    if (http_) http_->Stop();
    std::error_code ec;
    if (!scratch_.empty()) fs::remove_all(scratch_, ec);
  }

  bool Start() {
    ::signal(SIGPIPE, SIG_IGN);
    fs::path base = options_.scratch_dir.empty()
                        ? fs::path(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp")
                        : fs::path(options_.scratch_dir);
    scratch_ = base / ("fake-modal-" + RandomId("", 10));
    fs::create_directories(scratch_);
    http_ = std::make_unique<BlockHttpServer>(
        [this](const std::string& hex, std::string* data, bool put) {
          std::lock_guard<std::mutex> lock(mu_);
          if (put) {
            std::string hash = BlockHash(*data);
            if (Hex(hash) != hex) return false;
            blocks_[hash] = *data;
            return true;
          }
          for (const auto& [hash, bytes] : blocks_) {
            if (Hex(hash) == hex) {
              *data = bytes;
              return true;
            }
          }
          return false;
        });
    if (!http_->Start()) return false;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(options_.port),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(static_cast<mc::ModalClient::Service*>(this));
    builder.RegisterService(static_cast<tcr::TaskCommandRouter::Service*>(this));
    builder.SetMaxReceiveMessageSize(100 * 1024 * 1024);
    builder.SetMaxSendMessageSize(100 * 1024 * 1024);
    server_ = builder.BuildAndStart();
    if (!server_ || port_ == 0) {
      std::cerr << "fake modal server: cannot listen on 127.0.0.1:" << options_.port << "\n";
      return false;
    }
    return true;
  }

  static std::string BlockHash(std::string_view block) {
    std::size_t end = block.size();
    while (end > 0 && block[end - 1] == '\0') --end;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(block.data()), end, digest);
    return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
  }

  // ---------------- common checks and faults ----------------

  // Records an environment name; unknown ("missing...") ones are NOT_FOUND.
  grpc::Status SeeEnvironment(const std::string& name) {
    std::lock_guard<std::mutex> lock(mu_);
    environments_seen_.push_back(name);
    if (name.rfind("missing", 0) == 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "environment '" + name + "' not found");
    }
    return grpc::Status::OK;
  }

  // Called first by every handler: latency, counting, credentials, faults.
  grpc::Status Enter(grpc::ServerContext* context, const std::string& rpc, bool control,
                     bool needs_auth_token) {
    milliseconds latency;
    {
      std::lock_guard<std::mutex> lock(mu_);
      latency = latency_;
      ++stats_.calls[rpc];
    }
    if (latency.count() > 0) std::this_thread::sleep_for(latency);
    if (control) {
      if (Metadata(context, "x-modal-token-id") != options_.token_id ||
          Metadata(context, "x-modal-token-secret") != options_.token_secret) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "invalid token id or secret");
      }
      if (Metadata(context, "x-modal-client-type").empty() ||
          Metadata(context, "x-modal-client-version").empty()) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "missing client metadata");
      }
      if (needs_auth_token) {
        std::string token = Metadata(context, "x-modal-auth-token");
        std::lock_guard<std::mutex> lock(mu_);
        auto it = auth_tokens_.find(token);
        if (it == auth_tokens_.end()) {
          return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "missing or unknown auth token");
        }
        if (it->second < NowSeconds()) {
          return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "auth token expired");
        }
      }
    } else if (!Metadata(context, "x-modal-token-secret").empty() ||
               !Metadata(context, "x-modal-token-id").empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "router calls must not carry control-plane credentials");
    }
    std::lock_guard<std::mutex> lock(fault_mu_);
    Fault& fault = faults_[rpc];
    if (fault.throttle > 0) {
      --fault.throttle;
      mc::RPCRetryPolicy policy;
      policy.set_retry_after_secs(static_cast<float>(fault.retry_after));
      mc::RPCStatus status;
      status.set_code(8);
      status.set_message("throttled");
      auto* any = status.add_details();
      any->set_type_url("type.modal.com/modal.client.RPCRetryPolicy");
      any->set_value(policy.SerializeAsString());
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "throttled",
                          status.SerializeAsString());
    }
    if (fault.fail_before > 0) {
      --fault.fail_before;
      return grpc::Status(static_cast<grpc::StatusCode>(fault.fail_before_code),
                          "injected failure of " + rpc);
    }
    return grpc::Status::OK;
  }

  // After a handler did its work: a lost response, if injected.
  grpc::Status Leave(const std::string& rpc, grpc::Status status) {
    std::lock_guard<std::mutex> lock(fault_mu_);  // handlers may hold mu_
    Fault& fault = faults_[rpc];
    if (status.ok() && fault.fail_after > 0) {
      --fault.fail_after;
      return grpc::Status(static_cast<grpc::StatusCode>(fault.fail_after_code),
                          "injected lost response of " + rpc);
    }
    return status;
  }

#define FAKE_ENTER(rpc, control, token)                                 \
  do {                                                                  \
    grpc::Status entered = Enter(context, rpc, control, token);         \
    if (!entered.ok()) return entered;                                  \
  } while (0)

  // ---------------- control plane ----------------

  grpc::Status AuthTokenGet(grpc::ServerContext* context, const mc::AuthTokenGetRequest*,
                            mc::AuthTokenGetResponse* response) override {
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

  grpc::Status AppGetOrCreate(grpc::ServerContext* context, const mc::AppGetOrCreateRequest* request,
                              mc::AppGetOrCreateResponse* response) override {
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

  grpc::Status EnvironmentGetOrCreate(grpc::ServerContext* context,
                                      const mc::EnvironmentGetOrCreateRequest*,
                                      mc::EnvironmentGetOrCreateResponse* response) override {
    FAKE_ENTER("EnvironmentGetOrCreate", true, true);
    response->mutable_metadata()->mutable_settings()->set_image_builder_version("2024.10");
    return grpc::Status::OK;
  }

  grpc::Status ImageGetOrCreate(grpc::ServerContext* context,
                                const mc::ImageGetOrCreateRequest* request,
                                mc::ImageGetOrCreateResponse* response) override {
    FAKE_ENTER("ImageGetOrCreate", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    if (!AppExistsLocked(request->app_id())) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "app not found");
    }
    const auto& commands = request->image().dockerfile_commands();
    if (commands.empty() || commands[0].rfind("FROM ", 0) != 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first command must be FROM");
    }
    std::string id = RandomId("im-", 22);
    bool fails = false;
    for (const auto& c : commands) fails = fails || c.find("sandrun-fake-fail-build") != std::string::npos;
    images_[id] = fails ? 2 : 1;
    response->set_image_id(id);  // no result yet: the client must join the build
    return grpc::Status::OK;
  }

  grpc::Status ImageJoinStreaming(grpc::ServerContext* context,
                                  const mc::ImageJoinStreamingRequest* request,
                                  grpc::ServerWriter<mc::ImageJoinStreamingResponse>* writer) override {
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
    done.mutable_result()->set_status(static_cast<mc::GenericStatus>(status));
    if (status != 1) done.mutable_result()->set_exception("fake build failed on purpose");
    done.set_entry_id("2-0");
    done.set_eof(true);
    writer->Write(done);
    return grpc::Status::OK;
  }

  grpc::Status VolumeGetOrCreate(grpc::ServerContext* context,
                                 const mc::VolumeGetOrCreateRequest* request,
                                 mc::VolumeGetOrCreateResponse* response) override {
    FAKE_ENTER("VolumeGetOrCreate", true, true);
    if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = volume_ids_.find(request->deployment_name());
    if (it == volume_ids_.end()) {
      if (request->object_creation_type() != mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
      }
      it = volume_ids_.emplace(request->deployment_name(), RandomId("vo-", 22)).first;
      volumes_[it->second];
    }
    response->set_volume_id(it->second);
    response->mutable_metadata()->set_name(request->deployment_name());
    response->mutable_metadata()->set_version(mc::VOLUME_FS_VERSION_V2);
    return grpc::Status::OK;
  }

  grpc::Status SecretGetOrCreate(grpc::ServerContext* context,
                                 const mc::SecretGetOrCreateRequest* request,
                                 mc::SecretGetOrCreateResponse* response) override {
    FAKE_ENTER("SecretGetOrCreate", true, true);
    if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
    if (request->deployment_name().rfind("missing", 0) == 0) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "secret not found");
    }
    response->set_secret_id("st-" + request->deployment_name());
    return grpc::Status::OK;
  }

  grpc::Status SandboxCreate(grpc::ServerContext* context, const mc::SandboxCreateRequest* request,
                             mc::SandboxCreateResponse* response) override {
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
    std::error_code ec;
    fs::create_directories(MapPath(*sandbox, sandbox->workdir), ec);
    fs::create_directories(sandbox->root / "sandrun/results", ec);
    fs::create_directories(sandbox->root / ".execs", ec);
    sandboxes_[sandbox->id] = sandbox;
    ++stats_.sandboxes_created;
    response->set_sandbox_id(sandbox->id);
    return Leave("SandboxCreate", grpc::Status::OK);
  }

  grpc::Status SandboxGetTaskId(grpc::ServerContext* context,
                                const mc::SandboxGetTaskIdRequest* request,
                                mc::SandboxGetTaskIdResponse* response) override {
    FAKE_ENTER("SandboxGetTaskId", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(request->sandbox_id());
    if (it == sandboxes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
    FakeSandbox& sandbox = *it->second;
    if (!sandbox.running) {
      response->mutable_task_result()->set_status(
          static_cast<mc::GenericStatus>(sandbox.result_status));
      return grpc::Status::OK;
    }
    if (Clock::now() >= sandbox.ready_at) response->set_task_id(sandbox.task_id);
    return grpc::Status::OK;
  }

  grpc::Status TaskGetCommandRouterAccess(grpc::ServerContext* context,
                                          const mc::TaskGetCommandRouterAccessRequest* request,
                                          mc::TaskGetCommandRouterAccessResponse* response) override {
    FAKE_ENTER("TaskGetCommandRouterAccess", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    FakeSandbox* sandbox = ByTaskLocked(request->task_id());
    if (sandbox == nullptr) return grpc::Status(grpc::StatusCode::NOT_FOUND, "task not found");
    sandbox->jwt = MakeJwt(NowSeconds() + 3600, sandbox->task_id);
    response->set_jwt(sandbox->jwt);
    response->set_url("http://127.0.0.1:" + std::to_string(port_));
    return grpc::Status::OK;
  }

  grpc::Status SandboxTerminate(grpc::ServerContext* context,
                                const mc::SandboxTerminateRequest* request,
                                mc::SandboxTerminateResponse* response) override {
    FAKE_ENTER("SandboxTerminate", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(request->sandbox_id());
    if (it == sandboxes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
    if (!it->second->running) {
      response->mutable_existing_result()->set_status(
          static_cast<mc::GenericStatus>(it->second->result_status));
      return grpc::Status::OK;
    }
    KillLocked(*it->second, 3);
    ++stats_.sandboxes_terminated;
    return Leave("SandboxTerminate", grpc::Status::OK);
  }

  grpc::Status SandboxWait(grpc::ServerContext* context, const mc::SandboxWaitRequest* request,
                           mc::SandboxWaitResponse* response) override {
    FAKE_ENTER("SandboxWait", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(request->sandbox_id());
    if (it == sandboxes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "sandbox not found");
    if (!it->second->running) {
      response->mutable_result()->set_status(static_cast<mc::GenericStatus>(it->second->result_status));
    }
    return grpc::Status::OK;
  }

  grpc::Status SandboxList(grpc::ServerContext* context, const mc::SandboxListRequest* request,
                           mc::SandboxListResponse* response) override {
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
      for (const auto& [name, value] : matches[i]->tags) {
        mc::SandboxTag* tag = info->add_tags();
        tag->set_tag_name(name);
        tag->set_tag_value(value);
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status VolumeListFiles2(grpc::ServerContext* context,
                                const mc::VolumeListFiles2Request* request,
                                grpc::ServerWriter<mc::VolumeListFiles2Response>* writer) override {
    FAKE_ENTER("VolumeListFiles2", true, false);
    mc::VolumeListFiles2Response response;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto volume = volumes_.find(request->volume_id());
      if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
      std::string dir = request->path();
      while (!dir.empty() && dir.front() == '/') dir.erase(0, 1);
      while (!dir.empty() && dir.back() == '/') dir.pop_back();
      std::set<std::string> dirs;
      bool found = dir.empty();
      for (const auto& [path, data] : volume->second) {
        if (path == dir) {
          found = true;
          auto* entry = response.add_entries();
          entry->set_path(path);
          entry->set_type(mc::FILE_ENTRY_TYPE_FILE);
          entry->set_size(data.size());
          continue;
        }
        if (!dir.empty() && path.rfind(dir + "/", 0) != 0) continue;
        found = true;
        std::string rel = dir.empty() ? path : path.substr(dir.size() + 1);
        std::string prefix = dir.empty() ? "" : dir + "/";
        // Directories implied by the file's path.
        for (std::size_t slash = rel.find('/'); slash != std::string::npos;
             slash = rel.find('/', slash + 1)) {
          if (!request->recursive() && dirs.size() && rel.find('/') < slash) break;
          dirs.insert(prefix + rel.substr(0, slash));
          if (!request->recursive()) break;
        }
        if (!request->recursive() && rel.find('/') != std::string::npos) continue;
        auto* entry = response.add_entries();
        entry->set_path(prefix + rel);
        entry->set_type(mc::FILE_ENTRY_TYPE_FILE);
        entry->set_size(data.size());
      }
      if (!found) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such path in volume");
      for (const auto& d : dirs) {
        auto* entry = response.add_entries();
        entry->set_path(d);
        entry->set_type(mc::FILE_ENTRY_TYPE_DIRECTORY);
      }
    }
    writer->Write(response);
    return grpc::Status::OK;
  }

  grpc::Status VolumeGetFile2(grpc::ServerContext* context, const mc::VolumeGetFile2Request* request,
                              mc::VolumeGetFile2Response* response) override {
    FAKE_ENTER("VolumeGetFile2", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    auto volume = volumes_.find(request->volume_id());
    if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
    std::string path = request->path();
    while (!path.empty() && path.front() == '/') path.erase(0, 1);
    auto file = volume->second.find(path);
    if (file == volume->second.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "file not found");
    const std::string& data = file->second;
    for (std::size_t offset = 0; offset < data.size(); offset += kBlock) {
      std::string block = data.substr(offset, kBlock);
      std::string hash = BlockHash(block);
      blocks_[hash] = block;
      response->add_get_urls("http://127.0.0.1:" + std::to_string(http_->port()) + "/block/" +
                             Hex(hash) + "?X-Fake-Signature=secret");
    }
    response->set_size(data.size());
    response->set_len(data.size());
    return grpc::Status::OK;
  }

  grpc::Status VolumePutFiles2(grpc::ServerContext* context, const mc::VolumePutFiles2Request* request,
                               mc::VolumePutFiles2Response* response) override {
    FAKE_ENTER("VolumePutFiles2", true, true);
    std::lock_guard<std::mutex> lock(mu_);
    auto volume = volumes_.find(request->volume_id());
    if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
    bool complete = true;
    for (int f = 0; f < request->files_size(); ++f) {
      const auto& file = request->files(f);
      if (file.path().empty() || file.path().find("..") != std::string::npos) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad path");
      }
      for (int b = 0; b < file.blocks_size(); ++b) {
        const auto& block = file.blocks(b);
        if (block.contents_sha256().size() != 32) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "block hash must be 32 bytes");
        }
        if (blocks_.count(block.contents_sha256())) continue;
        complete = false;
        auto* missing = response->add_missing_blocks();
        missing->set_file_index(static_cast<std::uint64_t>(f));
        missing->set_block_index(static_cast<std::uint64_t>(b));
        missing->set_put_url("http://127.0.0.1:" + std::to_string(http_->port()) + "/put/" +
                             Hex(block.contents_sha256()));
      }
    }
    if (!complete) return grpc::Status::OK;
    for (const auto& file : request->files()) {
      std::string data;
      for (const auto& block : file.blocks()) data += blocks_[block.contents_sha256()];
      // Blocks were hashed without trailing zeros; the size restores them.
      data.resize(file.size(), '\0');
      std::string path = file.path();
      while (!path.empty() && path.front() == '/') path.erase(0, 1);
      if (request->disallow_overwrite_existing_files() && volume->second.count(path)) {
        return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "file exists");
      }
      volume->second[path] = data;
    }
    return grpc::Status::OK;
  }

  // ---------------- task command router ----------------

  // Router auth: the bearer JWT of the task's sandbox.
  grpc::Status RouterSandbox(grpc::ServerContext* context, const std::string& task_id,
                             std::shared_ptr<FakeSandbox>* out) {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, sandbox] : sandboxes_) {
      if (sandbox->task_id != task_id) continue;
      if (sandbox->jwt.empty() || Metadata(context, "authorization") != "Bearer " + sandbox->jwt) {
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad router token");
      }
      if (!sandbox->running) return grpc::Status(grpc::StatusCode::NOT_FOUND, "task has finished");
      *out = sandbox;
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "task not found");
  }

  grpc::Status TaskExecStart(grpc::ServerContext* context, const tcr::TaskExecStartRequest* request,
                             tcr::TaskExecStartResponse*) override {
    FAKE_ENTER("TaskExecStart", false, false);
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.exec_start_calls;
    }
    std::shared_ptr<FakeSandbox> sandbox;
    grpc::Status auth = RouterSandbox(context, request->task_id(), &sandbox);
    if (!auth.ok()) return auth;
    if (request->exec_id().empty() || request->command_args().empty()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "exec_id and command_args are required");
    }
    if (request->stdout_config() != tcr::TASK_EXEC_STDOUT_CONFIG_PIPE ||
        request->stderr_config() != tcr::TASK_EXEC_STDERR_CONFIG_PIPE) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the fake expects stdout and stderr PIPE (0 means DEVNULL)");
    }
    std::lock_guard<std::mutex> lock(mu_);
    {
      std::string seen;
      for (const auto& arg : request->command_args()) seen += arg + " ";
      for (const auto& [k, v] : request->env()) seen += k + "=" + v + " ";
      exec_requests_.push_back(seen);
    }
    if (sandbox->execs.count(request->exec_id())) {
      return Leave("TaskExecStart", grpc::Status::OK);  // idempotent by exec id
    }
    auto exec = std::make_shared<Exec>();
    exec->id = request->exec_id();
    fs::path dir = sandbox->root / ".execs" / exec->id;
    std::error_code ec;
    fs::create_directories(dir, ec);
    exec->stdout_path = (dir / "stdout").string();
    exec->stderr_path = (dir / "stderr").string();
    std::vector<std::string> argv(request->command_args().begin(), request->command_args().end());
    std::string workdir = request->has_workdir() ? request->workdir() : sandbox->workdir;
    if (argv[0] == kFsTools) {
      StartFsToolLocked(*sandbox, *exec, argv);
    } else {
      std::map<std::string, std::string> env(request->env().begin(), request->env().end());
      StartProcessLocked(*sandbox, exec, argv, MapPath(*sandbox, workdir), env,
                         request->has_timeout_secs() ? request->timeout_secs() : 0);
    }
    sandbox->execs[exec->id] = exec;
    return Leave("TaskExecStart", grpc::Status::OK);
  }

  grpc::Status FindExec(grpc::ServerContext* context, const std::string& task_id,
                        const std::string& exec_id, std::shared_ptr<Exec>* out) {
    std::shared_ptr<FakeSandbox> sandbox;
    grpc::Status auth = RouterSandbox(context, task_id, &sandbox);
    if (!auth.ok()) return auth;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandbox->execs.find(exec_id);
    if (it == sandbox->execs.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "exec not found");
    *out = it->second;
    return grpc::Status::OK;
  }

  grpc::Status TaskExecStdioRead(grpc::ServerContext* context,
                                 const tcr::TaskExecStdioReadRequest* request,
                                 grpc::ServerWriter<tcr::TaskExecStdioReadResponse>* writer) override {
    FAKE_ENTER("TaskExecStdioRead", false, false);
    std::shared_ptr<Exec> exec;
    grpc::Status found = FindExec(context, request->task_id(), request->exec_id(), &exec);
    if (!found.ok()) return found;
    std::uint64_t cut_after = 0;
    bool cut = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (cut_streams_ > 0) {
        --cut_streams_;
        cut = true;
        cut_after = cut_bytes_;
      }
    }
    const std::string path = request->file_descriptor() == tcr::TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
                                 ? exec->stdout_path
                                 : exec->stderr_path;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot open output");
    std::uint64_t offset = request->offset();
    std::uint64_t sent = 0;
    std::string buffer(kChunk, '\0');
    grpc::Status result = grpc::Status::OK;
    while (true) {
      if (context->IsCancelled()) {
        result = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
        break;
      }
      bool finished;
      {
        std::lock_guard<std::mutex> lock(mu_);
        finished = exec->finished;
      }
      std::size_t want = kChunk;
      if (cut && cut_after - sent < want) want = static_cast<std::size_t>(cut_after - sent);
      ssize_t n = want == 0 ? 0 : ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
      if (cut && sent >= cut_after) {
        result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected stream cut");
        break;
      }
      if (n > 0) {
        tcr::TaskExecStdioReadResponse response;
        response.set_data(buffer.data(), static_cast<std::size_t>(n));
        if (!writer->Write(response)) {
          result = grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
          break;
        }
        offset += static_cast<std::uint64_t>(n);
        sent += static_cast<std::uint64_t>(n);
        continue;
      }
      if (finished) break;  // everything written before the exit was sent
      std::this_thread::sleep_for(milliseconds(2));
    }
    ::close(fd);
    return result;
  }

  grpc::Status TaskExecStdinWrite(grpc::ServerContext* context,
                                  const tcr::TaskExecStdinWriteRequest* request,
                                  tcr::TaskExecStdinWriteResponse*) override {
    FAKE_ENTER("TaskExecStdinWrite", false, false);
    std::shared_ptr<Exec> exec;
    grpc::Status found = FindExec(context, request->task_id(), request->exec_id(), &exec);
    if (!found.ok()) return found;
    std::lock_guard<std::mutex> lock(exec->stdin_mu);
    if (exec->stdin_closed) {
      if (request->data().empty() && request->eof()) return grpc::Status::OK;
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "stdin is closed");
    }
    if (request->offset() > exec->stdin_offset) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "stdin offset skips data");
    }
    // A retried write: skip what already arrived.
    std::size_t skip = static_cast<std::size_t>(exec->stdin_offset - request->offset());
    std::string_view data = request->data();
    data = skip >= data.size() ? std::string_view() : data.substr(skip);
    int fd = exec->is_virtual ? exec->write_file_fd : exec->stdin_fd;
    std::size_t done = 0;
    while (done < data.size() && fd >= 0) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // the command closed its stdin; drop the rest
      done += static_cast<std::size_t>(n);
    }
    exec->stdin_offset += data.size();
    if (request->eof()) {
      exec->stdin_closed = true;
      if (fd >= 0) ::close(fd);
      if (exec->is_virtual) {
        exec->write_file_fd = -1;
        std::lock_guard<std::mutex> lock(mu_);
        exec->finished = true;
        exec->has_code = true;
        exec_cv_.notify_all();
      } else {
        exec->stdin_fd = -1;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status WaitFor(grpc::ServerContext* context, const std::string& task_id,
                       const std::string& exec_id, bool block, bool* has_code, int* code,
                       int* signal, bool* finished) {
    std::shared_ptr<Exec> exec;
    grpc::Status found = FindExec(context, task_id, exec_id, &exec);
    if (!found.ok()) return found;
    std::unique_lock<std::mutex> lock(mu_);
    while (block && !exec->finished) {
      if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      exec_cv_.wait_for(lock, milliseconds(50));
    }
    *finished = exec->finished;
    *has_code = exec->has_code;
    *code = exec->code;
    *signal = exec->signal;
    return grpc::Status::OK;
  }

  grpc::Status TaskExecWait(grpc::ServerContext* context, const tcr::TaskExecWaitRequest* request,
                            tcr::TaskExecWaitResponse* response) override {
    FAKE_ENTER("TaskExecWait", false, false);
    bool has_code, finished;
    int code, signal;
    grpc::Status status =
        WaitFor(context, request->task_id(), request->exec_id(), true, &has_code, &code, &signal, &finished);
    if (!status.ok()) return status;
    if (has_code) {
      response->set_code(code);
    } else {
      response->set_signal(signal);
    }
    return Leave("TaskExecWait", grpc::Status::OK);
  }

  grpc::Status TaskExecPoll(grpc::ServerContext* context, const tcr::TaskExecPollRequest* request,
                            tcr::TaskExecPollResponse* response) override {
    FAKE_ENTER("TaskExecPoll", false, false);
    bool has_code, finished;
    int code, signal;
    grpc::Status status = WaitFor(context, request->task_id(), request->exec_id(), false, &has_code,
                                  &code, &signal, &finished);
    if (!status.ok()) return status;
    if (finished) {
      if (has_code) {
        response->set_code(code);
      } else {
        response->set_signal(signal);
      }
    }
    return grpc::Status::OK;
  }

  // ---------------- helpers ----------------

  bool AppExistsLocked(const std::string& app_id) {
    for (const auto& [name, id] : apps_) {
      if (id == app_id) return true;
    }
    return false;
  }

  FakeSandbox* ByTaskLocked(const std::string& task_id) {
    for (const auto& [id, sandbox] : sandboxes_) {
      if (sandbox->task_id == task_id && sandbox->running) return sandbox.get();
    }
    return nullptr;
  }

  // Paths under /sandrun/ live in the sandbox's root directory.
  static std::string MapPath(const FakeSandbox& sandbox, const std::string& path) {
    if (path == "/sandrun" || path.rfind("/sandrun/", 0) == 0) {
      return (sandbox.root.string() + path);
    }
    return path;
  }

  void FinishVirtual(Exec& exec, int code, const std::string& err_json) {
    if (!err_json.empty()) {
      std::ofstream(exec.stderr_path, std::ios::binary) << err_json;
    }
    exec.finished = true;
    exec.has_code = true;
    exec.code = code;
    exec.stdin_closed = true;
    exec_cv_.notify_all();
  }

  static std::string FsError(const std::string& kind, const std::string& message) {
    return json{{"error_kind", kind}, {"message", message}, {"detail", nullptr}}.dump();
  }

  void StartFsToolLocked(FakeSandbox& sandbox, Exec& exec, const std::vector<std::string>& argv) {
    exec.is_virtual = true;
    std::ofstream(exec.stdout_path).close();
    std::ofstream(exec.stderr_path).close();
    json command = argv.size() > 1 ? json::parse(argv[1], nullptr, false) : json();
    if (!command.is_object() || command.size() != 1) {
      FinishVirtual(exec, 2, FsError("NotSupported", "bad command"));
      return;
    }
    const std::string op = command.begin().key();
    const json& args = command.begin().value();
    const std::string path = MapPath(sandbox, args.value("path", ""));
    std::error_code ec;
    if (op == "ReadFile") {
      if (!fs::exists(path, ec)) return FinishVirtual(exec, 1, FsError("NotFound", path + " not found"));
      if (fs::is_directory(path, ec)) return FinishVirtual(exec, 1, FsError("IsDirectory", "is a directory"));
      exec.stdout_path = path;  // the file itself is the output
      FinishVirtual(exec, 0, "");
    } else if (op == "WriteFile") {
      if (fs::is_directory(path, ec)) return FinishVirtual(exec, 1, FsError("IsDirectory", "is a directory"));
      exec.write_file_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (exec.write_file_fd < 0) {
        return FinishVirtual(exec, 1, FsError(errno == ENOENT ? "NotFound" : "PermissionDenied",
                                              std::strerror(errno)));
      }
      // Finishes when stdin reaches EOF.
    } else if (op == "MakeDirectory") {
      if (args.value("parents", false)) {
        fs::create_directories(path, ec);
      } else {
        fs::create_directory(path, ec);
      }
      if (ec) return FinishVirtual(exec, 1, FsError("NotFound", ec.message()));
      FinishVirtual(exec, 0, "");
    } else {
      FinishVirtual(exec, 2, FsError("NotSupported", op + " is not emulated by the fake"));
    }
  }

  void StartProcessLocked(FakeSandbox& sandbox, const std::shared_ptr<Exec>& exec,
                          std::vector<std::string> argv, const std::string& cwd,
                          const std::map<std::string, std::string>& env, std::uint32_t timeout_secs) {
    for (auto& arg : argv) arg = MapPath(sandbox, arg);
    // Everything the child needs, prepared before fork.
    std::vector<std::string> env_strings;
    std::map<std::string, std::string> merged;
    for (char** e = environ; *e != nullptr; ++e) {
      std::string entry(*e);
      std::size_t eq = entry.find('=');
      if (eq != std::string::npos) merged[entry.substr(0, eq)] = entry.substr(eq + 1);
    }
    for (const auto& [k, v] : sandbox.secret_env) merged[k] = v;
    for (const auto& [k, v] : env) merged[k] = v;
    for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : argv) args.push_back(s.data());
    args.push_back(nullptr);
    const std::string not_found = argv[0] + ": not found\n";
    const std::string denied = argv[0] + ": Permission denied\n";
    const std::string bad_cwd = "cannot enter " + cwd + "\n";
    const bool block_network = sandbox.network_type == 2 || sandbox.network_type == 3;

    int out = ::open(exec->stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = ::open(exec->stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int in[2];
    if (out < 0 || err < 0 || ::pipe2(in, O_CLOEXEC) != 0) {
      if (out >= 0) ::close(out);
      if (err >= 0) ::close(err);
      exec->finished = true;
      exec->has_code = true;
      exec->code = 125;
      return;
    }
    pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, 0);
      ::dup2(in[0], 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::signal(SIGPIPE, SIG_DFL);
      if (block_network) {
        if (::unshare(CLONE_NEWNET) == 0) {
          // Bring up lo so local-only programs behave; nothing else exists.
          int s = ::socket(AF_INET, SOCK_DGRAM, 0);
          if (s >= 0) {
            struct ifreq ifr;
            std::memset(&ifr, 0, sizeof ifr);
            std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
            if (::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
              ifr.ifr_flags |= IFF_UP;
              ::ioctl(s, SIOCSIFFLAGS, &ifr);
            }
            ::close(s);
          }
        } else {
          static const char msg[] = "fake modal: cannot block the network (unshare failed)\n";
          ::write(2, msg, sizeof msg - 1);
          ::_exit(125);
        }
      }
      if (::chdir(cwd.c_str()) != 0) {
        ::write(2, bad_cwd.data(), bad_cwd.size());
        ::_exit(125);
      }
      ::execvpe(args[0], args.data(), envp.data());
      int e = errno;
      if (e == ENOENT) {
        ::write(2, not_found.data(), not_found.size());
        ::_exit(127);
      }
      ::write(2, denied.data(), denied.size());
      ::_exit(126);
    }
    ::close(in[0]);
    ::close(out);
    ::close(err);
    if (pid < 0) {
      ::close(in[1]);
      exec->finished = true;
      exec->has_code = true;
      exec->code = 125;
      return;
    }
    ::setpgid(pid, pid);
    exec->pid = pid;
    exec->stdin_fd = in[1];
    ++stats_.exec_processes_started;
    threads_.emplace_back([this, exec, pid] {
      int status = 0;
      while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      std::lock_guard<std::mutex> lock(mu_);
      exec->finished = true;
      if (WIFSIGNALED(status)) {
        exec->signal = WTERMSIG(status);
      } else {
        exec->has_code = true;
        exec->code = WEXITSTATUS(status);
      }
      exec_cv_.notify_all();
    });
    if (timeout_secs > 0) {
      threads_.emplace_back([this, exec, pid, timeout_secs] {
        std::unique_lock<std::mutex> lock(mu_);
        exec_cv_.wait_for(lock, std::chrono::seconds(timeout_secs), [&] { return exec->finished; });
        if (!exec->finished) ::kill(-pid, SIGKILL);  // the whole process group
      });
    }
  }

  void KillLocked(FakeSandbox& sandbox, int status) {
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

  FakeOptions options_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<BlockHttpServer> http_;
  fs::path scratch_;

  mutable std::mutex mu_;
  std::condition_variable exec_cv_;
  std::vector<std::thread> threads_;  // reapers and timers, joined at the end
  FakeStats stats_;
  std::mutex fault_mu_;
  std::map<std::string, Fault> faults_;  // Guarded by fault_mu_.
  int cut_streams_ = 0;
  std::uint64_t cut_bytes_ = 0;
  int expired_tokens_ = 0;
  milliseconds creation_delay_{0};
  milliseconds latency_{0};
  std::map<std::string, double> auth_tokens_;
  std::map<std::string, std::string> apps_;        // name -> id
  std::map<std::string, std::string> app_environments_;  // app id -> environment
  std::vector<std::string> environments_seen_;
  std::vector<std::string> exec_requests_;  // argv and env of every TaskExecStart
  std::map<std::string, int> images_;              // id -> final status
  std::map<std::string, std::string> volume_ids_;  // name -> id
  std::map<std::string, std::map<std::string, std::string>> volumes_;  // id -> path -> data
  std::map<std::string, std::string> blocks_;      // raw sha256 -> bytes
  std::map<std::string, std::shared_ptr<FakeSandbox>> sandboxes_;

  friend class FakeModalServer;
};

FakeModalServer::FakeModalServer(FakeOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
FakeModalServer::~FakeModalServer() = default;
bool FakeModalServer::Start() { return impl_->Start(); }
int FakeModalServer::port() const { return impl_->port_; }
std::string FakeModalServer::url() const { return "http://127.0.0.1:" + std::to_string(port()); }
const FakeOptions& FakeModalServer::options() const { return impl_->options_; }

void FakeModalServer::FailNext(const std::string& rpc, int n, int code) {
  std::lock_guard<std::mutex> lock(impl_->fault_mu_);
  impl_->faults_[rpc].fail_before = n;
  impl_->faults_[rpc].fail_before_code = code;
}
void FakeModalServer::FailAfterNext(const std::string& rpc, int n, int code) {
  std::lock_guard<std::mutex> lock(impl_->fault_mu_);
  impl_->faults_[rpc].fail_after = n;
  impl_->faults_[rpc].fail_after_code = code;
}
void FakeModalServer::ThrottleNext(const std::string& rpc, int n, double retry_after_secs) {
  std::lock_guard<std::mutex> lock(impl_->fault_mu_);
  impl_->faults_[rpc].throttle = n;
  impl_->faults_[rpc].retry_after = retry_after_secs;
}
void FakeModalServer::CutStdioAfter(std::uint64_t bytes, int n) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->cut_bytes_ = bytes;
  impl_->cut_streams_ = n;
}
void FakeModalServer::IssueExpiredTokens(int n) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->expired_tokens_ = n;
}
void FakeModalServer::SetCreationDelay(milliseconds delay) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->creation_delay_ = delay;
}
void FakeModalServer::SetLatency(milliseconds latency) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->latency_ = latency;
}
void FakeModalServer::KillSandbox(const std::string& sandbox_id) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->sandboxes_.find(sandbox_id);
  if (it != impl_->sandboxes_.end()) impl_->KillLocked(*it->second, 2);
}

FakeStats FakeModalServer::Stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->stats_;
}
std::vector<std::string> FakeModalServer::SandboxIds(bool running_only) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  std::vector<std::string> ids;
  for (const auto& [id, sandbox] : impl_->sandboxes_) {
    if (!running_only || sandbox->running) ids.push_back(id);
  }
  return ids;
}
bool FakeModalServer::SandboxRunning(const std::string& sandbox_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->sandboxes_.find(sandbox_id);
  return it != impl_->sandboxes_.end() && it->second->running;
}
std::map<std::string, std::string> FakeModalServer::SandboxTags(const std::string& sandbox_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->sandboxes_.find(sandbox_id);
  return it == impl_->sandboxes_.end() ? std::map<std::string, std::string>() : it->second->tags;
}
int FakeModalServer::SandboxNetworkType(const std::string& sandbox_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->sandboxes_.find(sandbox_id);
  return it == impl_->sandboxes_.end() ? -1 : it->second->network_type;
}
std::string FakeModalServer::AddForeignSandbox(const std::string& app_name,
                                               const std::map<std::string, std::string>& tags) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto app = impl_->apps_.find(app_name);
  if (app == impl_->apps_.end()) app = impl_->apps_.emplace(app_name, RandomId("ap-", 22)).first;
  auto sandbox = std::make_shared<FakeSandbox>();
  sandbox->id = RandomId("sb-", 22);
  sandbox->task_id = RandomId("ta-", 22);
  sandbox->app_id = app->second;
  sandbox->tags = tags;
  sandbox->created_at = NowSeconds();
  sandbox->foreign = true;
  impl_->sandboxes_[sandbox->id] = sandbox;
  return sandbox->id;
}
FakeSandboxDefinition FakeModalServer::SandboxDefinition(const std::string& sandbox_id) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->sandboxes_.find(sandbox_id);
  return it == impl_->sandboxes_.end() ? FakeSandboxDefinition() : it->second->definition;
}
std::vector<std::string> FakeModalServer::EnvironmentsSeen() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->environments_seen_;
}
std::vector<std::string> FakeModalServer::ExecRequestsSeen() const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  return impl_->exec_requests_;
}
std::string FakeModalServer::AppId(const std::string& app_name) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->apps_.find(app_name);
  return it == impl_->apps_.end() ? "" : it->second;
}

}  // namespace sandrun::modal::fake
