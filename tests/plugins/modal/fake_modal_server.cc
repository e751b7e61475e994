// The fake Modal server's start and stop, the helpers its rooms share, and
// the public API's inspection calls. See fake_modal_impl.h for the rooms.
#include "fake_modal_impl.h"

#include <openssl/evp.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>

namespace sandrun::modal::fake {

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

FakeModalServer::Impl::~Impl() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
  if (router_server_) router_server_->Shutdown(std::chrono::system_clock::now() + milliseconds(500));
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    for (auto& [id, sandbox] : sandboxes_) KillLocked(*sandbox, 3);
    exec_cv_.notify_all();
  }
  // Reapers end once their process is gone; timers once it is reaped. A
  // container that was still starting is removed by a thread of its own.
  while (true) {
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      threads.swap(threads_);
    }
    if (threads.empty()) break;
    for (auto& thread : threads) thread.join();
  }
  RemoveBuiltImages();
  if (http_) http_->Stop();
  std::error_code ec;
  if (!scratch_.empty()) fs::remove_all(scratch_, ec);
}

bool FakeModalServer::Impl::Start() {
  ::signal(SIGPIPE, SIG_IGN);
  if (options_.containers && !DockerEngineAnswers()) {
    std::cerr << "fake modal server: container mode needs a Docker engine, and none answers "
                 "(run scripts/docker-test-env)\n";
    return false;
  }
  fs::path base = options_.scratch_dir.empty()
                      ? fs::path(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp")
                      : fs::path(options_.scratch_dir);
  instance_ = RandomId("", 10);
  scratch_ = base / ("fake-modal-" + instance_);
  fs::create_directories(scratch_);
  http_ = std::make_unique<BlockHttpServer>(
      [this](const std::string& hex, std::string* data, bool put) {
        return BlockStore(hex, data, put);
      });
  if (!http_->Start()) return false;
  // The control plane on the port asked for; the command router, as on
  // Modal's workers, on a server of its own.
  auto serve = [](grpc::Service* service, int port, int* bound) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), grpc::InsecureServerCredentials(),
                             bound);
    builder.RegisterService(service);
    builder.SetMaxReceiveMessageSize(100 * 1024 * 1024);
    builder.SetMaxSendMessageSize(100 * 1024 * 1024);
    return builder.BuildAndStart();
  };
  server_ = serve(static_cast<mc::ModalClient::Service*>(this), options_.port, &port_);
  if (!server_ || port_ == 0) {
    std::cerr << "fake modal server: cannot listen on 127.0.0.1:" << options_.port << "\n";
    return false;
  }
  router_server_ = serve(static_cast<tcr::TaskCommandRouter::Service*>(this), 0, &router_port_);
  if (!router_server_ || router_port_ == 0) {
    std::cerr << "fake modal server: cannot start the command router\n";
    return false;
  }
  return true;
}

bool FakeModeFromEnvironment() {
  const char* mode = std::getenv("SANDRUN_FAKE_MODAL_MODE");
  if (mode == nullptr || *mode == '\0' || std::string(mode) == "process") return false;
  if (std::string(mode) == "containers") return true;
  std::cerr << "SANDRUN_FAKE_MODAL_MODE='" << mode << "': expected 'containers' or 'process'\n";
  std::abort();
}

namespace {
FakeOptions WithModeFromEnvironment(FakeOptions options) {
  if (FakeModeFromEnvironment()) options.containers = true;
  return options;
}
}  // namespace

FakeModalServer::FakeModalServer(FakeOptions options)
    : impl_(std::make_unique<Impl>(WithModeFromEnvironment(std::move(options)))) {}
FakeModalServer::~FakeModalServer() = default;
bool FakeModalServer::Start() { return impl_->Start(); }
int FakeModalServer::port() const { return impl_->port_; }
std::string FakeModalServer::url() const { return "http://127.0.0.1:" + std::to_string(port()); }
const FakeOptions& FakeModalServer::options() const { return impl_->options_; }

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
int FakeModalServer::router_port() const { return impl_->router_port_; }
std::string FakeModalServer::AddVolume(const std::string& name, int version) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->volume_ids_.find(name);
  if (it == impl_->volume_ids_.end()) it = impl_->volume_ids_.emplace(name, RandomId("vo-", 22)).first;
  impl_->volumes_[it->second];
  impl_->volume_versions_[it->second] = version;
  return it->second;
}
std::vector<std::string> FakeModalServer::VolumeFiles(const std::string& name) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  std::vector<std::string> paths;
  auto id = impl_->volume_ids_.find(name);
  if (id == impl_->volume_ids_.end()) return paths;
  for (const auto& [path, data] : impl_->volumes_[id->second]) paths.push_back(path);
  return paths;
}
std::string FakeModalServer::AppId(const std::string& app_name) const {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->apps_.find(app_name);
  return it == impl_->apps_.end() ? "" : it->second;
}

}  // namespace sandrun::modal::fake
