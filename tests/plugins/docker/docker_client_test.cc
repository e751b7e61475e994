// The Engine API client: version negotiation, tcp:// hosts (through a loopback
// forwarder to the engine's unix socket), hijacked streams, and deadlines and
// cancellation against an engine of the test's own that stops answering.
#include "docker_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "docker_test_env.h"
#include "support/test_util.h"

namespace sandrun::docker {
namespace {

// Forwards 127.0.0.1:<port> to a unix socket, one thread per connection.
class LoopbackForwarder {
 public:
  explicit LoopbackForwarder(std::string unix_path) : unix_path_(std::move(unix_path)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~LoopbackForwarder() {
    stop_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    acceptor_.join();
    for (auto& t : pumps_) t.join();
    ::close(listener_);
  }
  int port() const { return port_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd pfd{listener_, POLLIN, 0};
      if (::poll(&pfd, 1, 100) <= 0) continue;
      int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      int upstream = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un ua{};
      ua.sun_family = AF_UNIX;
      std::snprintf(ua.sun_path, sizeof ua.sun_path, "%s", unix_path_.c_str());
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&ua), sizeof ua) != 0) {
        ::close(client);
        ::close(upstream);
        continue;
      }
      pumps_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }
  void Pump(int a, int b) {
    char buf[65536];
    bool a_open = true, b_open = true;
    while (!stop_ && (a_open || b_open)) {
      pollfd fds[2] = {{a, static_cast<short>(a_open ? POLLIN : 0), 0},
                       {b, static_cast<short>(b_open ? POLLIN : 0), 0}};
      if (::poll(fds, 2, 100) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        int from = i == 0 ? a : b, to = i == 0 ? b : a;
        ssize_t n = ::read(from, buf, sizeof buf);
        if (n <= 0) {
          ::shutdown(to, SHUT_WR);
          (i == 0 ? a_open : b_open) = false;
          continue;
        }
        for (ssize_t off = 0; off < n;) {
          ssize_t w = ::write(to, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
    }
    ::close(a);
    ::close(b);
  }

  std::string unix_path_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread acceptor_;
  std::vector<std::thread> pumps_;
};

TEST(DockerClientTest, NegotiatesTheApiVersion) {
  auto backend = CreateDockerBackend(testing::TestOptions());
  SANDRUN_REQUIRE_DOCKER(*backend);
  DockerClient client(ParseDockerHost(testing::TestOptions().host).value());
  EXPECT_EQ(client.api_version(), kMinApiVersion);
  ASSERT_TRUE(client.NegotiateVersion().ok());
  auto version = client.Request("GET", "/version");
  ASSERT_TRUE(version.ok());
  std::string server = nlohmann::json::parse(version->body)["ApiVersion"];
  // min(server, ours): this project's engines speak 1.41.
  EXPECT_LE(client.api_version(), std::string(kMaxApiVersion));
  EXPECT_LE(client.api_version(), server);
  auto info = client.Request("GET", "/info");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->status, 200);
}

TEST(DockerClientTest, TcpHostWorksEndToEnd) {
  auto backend = CreateDockerBackend(testing::TestOptions());
  SANDRUN_REQUIRE_DOCKER(*backend);
  auto unix_host = ParseDockerHost(testing::TestOptions().host).value();
  if (unix_host.unix_path.empty()) GTEST_SKIP() << "engine is not on a unix socket";
  LoopbackForwarder forwarder(unix_host.unix_path);
  const std::string tcp = "tcp://127.0.0.1:" + std::to_string(forwarder.port());
  auto options = testing::TestOptions();
  options.host = tcp;
  auto over_tcp = CreateDockerBackend(options);
  Status available = over_tcp->CheckAvailable();
  ASSERT_TRUE(available.ok()) << available.ToString();
  auto sandbox = over_tcp->Create(testing::ImageSpec(testing::kBusybox));
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  ExecRequest request;
  request.argv = {"sh", "-c", "cat; echo err >&2"};
  request.stdin_data = std::string("through tcp\n");
  auto r = (*sandbox)->Exec(request);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_stream.text, "through tcp\n");
  EXPECT_EQ(r->stderr_stream.text, "err\n");
  EXPECT_TRUE((*sandbox)->Terminate().ok());
}

TEST(DockerClientTest, ClosedTcpPortIsUnavailable) {
  auto options = testing::TestOptions();
  options.host = "tcp://127.0.0.1:1";
  auto backend = CreateDockerBackend(options);
  Status available = backend->CheckAvailable();
  EXPECT_EQ(available.code(), StatusCode::kUnavailable) << available.ToString();
  EXPECT_NE(available.message().find("DOCKER_HOST=tcp://127.0.0.1:1"), std::string::npos)
      << available.message();
}

// An engine on a unix socket in the test's own directory that answers every
// request with 200 "OK" while answering(), and otherwise accepts connections
// and never says a word (as a SIGSTOPped dockerd does).
class FakeEngine {
 public:
  FakeEngine() {
    path_ = (dir_.path() / "e.sock").string();
    listener_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(listener_, 64);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~FakeEngine() {
    stop_ = true;
    acceptor_.join();
    ::close(listener_);
    for (int fd : held_) ::close(fd);
  }
  DockerHost host() const { return ParseDockerHost("unix://" + path_).value(); }
  void set_answering(bool answering) { answering_ = answering; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd pfd{listener_, POLLIN, 0};
      if (::poll(&pfd, 1, 50) <= 0) continue;
      int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      if (!answering_) {
        held_.push_back(fd);  // Silent: kept open, never answered.
        continue;
      }
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      static constexpr char kAnswer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK";
      ssize_t ignored = ::write(fd, kAnswer, sizeof kAnswer - 1);
      (void)ignored;
      ::close(fd);
    }
  }

  sandrun::testing::TempDir dir_;
  std::string path_;
  int listener_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> answering_{true};
  std::vector<int> held_;  // Only the acceptor thread touches it until ~FakeEngine.
  std::thread acceptor_;
};

using std::chrono::steady_clock;

TEST(DockerClientDeadlineTest, ASilentEngineCostsOneTimeoutThenFailsFast) {
  FakeEngine engine;
  DockerClient client(engine.host());
  ASSERT_TRUE(client.Request("GET", "/containers/json").ok()) << "the fake answers at first";

  engine.set_answering(false);
  auto first = client.Request("GET", "/containers/json", {}, {}, std::chrono::seconds(1));
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), StatusCode::kDeadlineExceeded) << first.status().ToString();
  EXPECT_TRUE(client.stalled());

  // The next call's own deadline is two minutes; a short ping gives it up.
  auto start = steady_clock::now();
  auto second = client.Request("DELETE", "/containers/x?force=1");
  auto took = steady_clock::now() - start;
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(second.status().message().find("stopped answering"), std::string::npos)
      << second.status().ToString();
  EXPECT_NE(second.status().message().find(engine.host().text), std::string::npos);
  EXPECT_LT(took, std::chrono::seconds(30)) << "waited out the request's own deadline";
  auto hijack = client.Hijack("/exec/x/start", "{}");
  EXPECT_EQ(hijack.status().code(), StatusCode::kDeadlineExceeded);

  // Once it answers again, requests go through as before.
  engine.set_answering(true);
  auto third = client.Request("GET", "/containers/json");
  ASSERT_TRUE(third.ok()) << third.status().ToString();
  EXPECT_EQ(third->body, "OK");
  EXPECT_FALSE(client.stalled());
}

TEST(DockerClientDeadlineTest, CancellerAbandonsARequestBlockedOnASilentEngine) {
  FakeEngine engine;
  engine.set_answering(false);
  DockerClient client(engine.host());
  CallCanceller canceller;
  Result<HttpResponse> blocked = InternalError("not run");
  auto start = steady_clock::now();
  std::thread caller([&] {
    blocked = client.Request("POST", "/containers/x/exec", "{}", "application/json",
                             std::chrono::seconds(120), &canceller);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  canceller.Cancel();
  caller.join();
  EXPECT_LT(steady_clock::now() - start, std::chrono::seconds(30));
  ASSERT_FALSE(blocked.ok());
  EXPECT_EQ(blocked.status().code(), StatusCode::kCancelled) << blocked.status().ToString();
  EXPECT_FALSE(client.stalled()) << "an abandoned call says nothing about the engine";

  // Later calls with it fail at once; calls without it are unaffected.
  engine.set_answering(true);
  auto later = client.Request("GET", "/_ping", {}, {}, std::chrono::seconds(5), &canceller);
  EXPECT_EQ(later.status().code(), StatusCode::kCancelled);
  EXPECT_TRUE(client.Request("GET", "/_ping").ok());
}

}  // namespace
}  // namespace sandrun::docker
