// The Engine API client: version negotiation, tcp:// hosts (through a loopback
// forwarder to the engine's unix socket), and hijacked streams.
#include "docker_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "docker_test_env.h"

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
  Availability a = over_tcp->CheckAvailable();
  ASSERT_TRUE(a.available) << a.reason;
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
  Availability a = backend->CheckAvailable();
  EXPECT_FALSE(a.available);
  EXPECT_NE(a.reason.find("DOCKER_HOST=tcp://127.0.0.1:1"), std::string::npos) << a.reason;
}

}  // namespace
}  // namespace sandrun::docker
