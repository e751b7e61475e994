// The only file of the plugin that includes Boost.Beast/Asio (they compile
// slowly). Each request runs its own io_context with asynchronous operations so
// that beast::basic_stream's expiry gives every step a deadline; a hijacked
// connection is then released from Asio and driven with poll(2), which gives
// a thread-safe Abort() via shutdown(2).
#include "docker_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <nlohmann/json.hpp>

namespace sandrun::docker {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Runs one asynchronous operation to completion on `ioc`.
template <typename Start>
error_code RunOp(asio::io_context& ioc, Start&& start) {
  error_code result = asio::error::would_block;
  start([&result](error_code ec, auto&&...) { result = ec; });
  ioc.restart();
  ioc.run();
  return result;
}

std::chrono::milliseconds Remaining(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

Status ConnectionError(const DockerHost& host, std::string_view what, const error_code& ec) {
  if (ec == beast::error::timeout) {
    return DeadlineExceededError("docker: " + std::string(what) + " " + host.text +
                                 " timed out");
  }
  return UnavailableError("docker: cannot " + std::string(what) + " " + host.text + ": " +
                          ec.message());
}

// How long a request waits for a ping before it calls an engine that stopped
// answering earlier still silent. /_ping costs the engine nothing, so an
// engine that is merely busy answers it well within this.
constexpr std::chrono::seconds kStalledPing(2);

Status CancelledCall(const DockerHost& host) {
  return CancelledError("docker: request to " + host.text + " abandoned (cancelled)");
}

// Registers a connected request's socket with its canceller for as long as
// the request runs. Declared after the Connection, so it unregisters before
// the socket closes and Cancel() never shuts down a reused descriptor.
class Registration {
 public:
  explicit Registration(CallCanceller* canceller) : canceller_(canceller) {}
  ~Registration() { Detach(); }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;

  bool Attach(int fd) {
    if (canceller_ == nullptr) return true;
    if (!canceller_->Register(fd)) return false;
    fd_ = fd;
    return true;
  }
  void Detach() {
    if (canceller_ != nullptr && fd_ >= 0) canceller_->Unregister(fd_);
    fd_ = -1;
  }
  bool cancelled() const { return canceller_ != nullptr && canceller_->cancelled(); }

 private:
  CallCanceller* canceller_;
  int fd_ = -1;
};

// A connected beast stream over either protocol, plus the context it runs on.
template <typename Protocol>
struct Connection {
  asio::io_context ioc;
  beast::basic_stream<Protocol> stream{ioc};
};

Status Connect(Connection<asio::local::stream_protocol>& c, const DockerHost& host,
               Clock::time_point deadline) {
  c.stream.expires_after(Remaining(deadline));
  error_code ec = RunOp(c.ioc, [&](auto handler) {
    c.stream.async_connect(asio::local::stream_protocol::endpoint(host.unix_path),
                           std::move(handler));
  });
  return ec ? ConnectionError(host, "connect to", ec) : OkStatus();
}

Status Connect(Connection<asio::ip::tcp>& c, const DockerHost& host,
               Clock::time_point deadline) {
  asio::ip::tcp::resolver resolver(c.ioc);
  error_code ec;
  auto endpoints = resolver.resolve(host.tcp_host, host.tcp_port, ec);
  if (ec) return ConnectionError(host, "resolve", ec);
  c.stream.expires_after(Remaining(deadline));
  ec = RunOp(c.ioc, [&](auto handler) {
    c.stream.async_connect(endpoints, [h = std::move(handler)](error_code e, auto&&) mutable {
      h(e);
    });
  });
  return ec ? ConnectionError(host, "connect to", ec) : OkStatus();
}

// Method, target and the headers every request carries.
template <typename Body>
http::request<Body> NewRequest(std::string_view method, const std::string& target) {
  http::request<Body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(http::field::host, "docker");
  req.set(http::field::user_agent, "sandrun");
  return req;
}

http::request<http::string_body> MakeRequest(std::string_view method, const std::string& target,
                                             std::string body, std::string_view content_type) {
  auto req = NewRequest<http::string_body>(method, target);
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = std::move(body);
    req.prepare_payload();
  }
  return req;
}

// Status and headers (names lowercased) of any Beast answer.
template <typename Fields>
HttpResponse ResponseHead(const http::response_header<Fields>& res) {
  HttpResponse out;
  out.status = static_cast<int>(res.result_int());
  for (const auto& field : res) {
    std::string name(field.name_string());
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    out.headers[name] = std::string(field.value());
  }
  return out;
}

HttpResponse ToHttpResponse(http::response<http::string_body>& res) {
  HttpResponse out = ResponseHead(res);
  out.body = std::move(res.body());
  return out;
}

// Connects and sends `req`; the connection is then ready for the answer, and
// registered with `reg`'s canceller.
template <typename Protocol>
Status SendRequest(Connection<Protocol>& c, const DockerHost& host,
                   const http::request<http::string_body>& req, Clock::time_point deadline,
                   Registration& reg) {
  if (reg.cancelled()) return CancelledCall(host);
  SANDRUN_RETURN_IF_ERROR(Connect(c, host, deadline));
  if (!reg.Attach(c.stream.socket().native_handle())) return CancelledCall(host);
  c.stream.expires_after(Remaining(deadline));
  error_code ec = RunOp(c.ioc, [&](auto handler) {
    http::async_write(c.stream, req, std::move(handler));
  });
  if (ec && reg.cancelled()) return CancelledCall(host);
  return ec ? ConnectionError(host, "send to", ec) : OkStatus();
}

template <typename Protocol>
Result<HttpResponse> DoRequest(const DockerHost& host,
                               http::request<http::string_body> req,
                               std::chrono::milliseconds timeout, CallCanceller* canceller) {
  const auto deadline = Clock::now() + timeout;
  Connection<Protocol> c;
  Registration reg(canceller);
  req.keep_alive(false);
  SANDRUN_RETURN_IF_ERROR(SendRequest(c, host, req, deadline, reg));
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit((std::numeric_limits<std::uint64_t>::max)());
  // A HEAD answer carries the Content-Length of a body that never comes.
  if (req.method() == http::verb::head) parser.skip(true);
  c.stream.expires_after(Remaining(deadline));
  error_code ec = RunOp(c.ioc, [&](auto handler) {
    http::async_read(c.stream, buffer, parser, std::move(handler));
  });
  if (ec && reg.cancelled()) return CancelledCall(host);
  if (ec) return ConnectionError(host, "read from", ec);
  HttpResponse out = ToHttpResponse(parser.get());
  error_code ignored;
  c.stream.socket().shutdown(Protocol::socket::shutdown_both, ignored);
  return out;
}

// A hijacked connection driven with poll(2) on the raw descriptor.
class FdStream : public HijackedStream {
 public:
  FdStream(int fd, std::string pending) : fd_(fd), pending_(std::move(pending)) {}
  ~FdStream() override { ::close(fd_); }

  Result<std::size_t> Read(char* data, std::size_t size,
                           Clock::time_point deadline) override {
    if (aborted_) return CancelledError("docker: stream closed");
    if (!pending_.empty()) {
      std::size_t n = std::min(size, pending_.size());
      std::memcpy(data, pending_.data(), n);
      pending_.erase(0, n);
      return n;
    }
    for (;;) {
      int wait_ms = -1;
      if (deadline != Clock::time_point::max()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0) return DeadlineExceededError("docker: read deadline");
        wait_ms = static_cast<int>(std::min<std::int64_t>(left.count() + 1, 1 << 30));
      }
      pollfd pfd{fd_, POLLIN, 0};
      int rc = ::poll(&pfd, 1, wait_ms);
      if (aborted_) return CancelledError("docker: stream closed");
      if (rc < 0) {
        if (errno == EINTR) continue;
        return UnavailableError(std::string("docker: poll: ") + std::strerror(errno));
      }
      if (rc == 0) continue;  // Loop re-checks the deadline.
      ssize_t n = ::recv(fd_, data, size, MSG_DONTWAIT);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      if (aborted_) return CancelledError("docker: stream closed");
      return UnavailableError(std::string("docker: connection to the daemon broke: ") +
                              std::strerror(errno));
    }
  }

  Status WriteAll(std::string_view data) override {
    while (!data.empty()) {
      if (aborted_) return CancelledError("docker: stream closed");
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data.remove_prefix(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        pollfd pfd{fd_, POLLOUT, 0};
        ::poll(&pfd, 1, 1000);
        continue;
      }
      return UnavailableError(std::string("docker: writing stdin failed: ") +
                              std::strerror(errno));
    }
    return OkStatus();
  }

  void CloseWrite() override { ::shutdown(fd_, SHUT_WR); }

  void Abort() override {
    aborted_ = true;
    ::shutdown(fd_, SHUT_RDWR);
  }

 private:
  int fd_;
  std::string pending_;
  std::atomic<bool> aborted_{false};
};

template <typename Protocol>
Result<std::unique_ptr<HijackedStream>> DoHijack(const DockerHost& host,
                                                 http::request<http::string_body> req,
                                                 std::chrono::milliseconds timeout,
                                                 CallCanceller* canceller) {
  const auto deadline = Clock::now() + timeout;
  Connection<Protocol> c;
  Registration reg(canceller);
  req.set(http::field::connection, "Upgrade");
  req.set(http::field::upgrade, "tcp");
  SANDRUN_RETURN_IF_ERROR(SendRequest(c, host, req, deadline, reg));
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  c.stream.expires_after(Remaining(deadline));
  error_code ec = RunOp(c.ioc, [&](auto handler) {
    http::async_read_header(c.stream, buffer, parser, std::move(handler));
  });
  if (ec && reg.cancelled()) return CancelledCall(host);
  if (ec) return ConnectionError(host, "read from", ec);
  int status = static_cast<int>(parser.get().result_int());
  if (status != 101 && status != 200) {
    // An error: the body is a JSON message.
    c.stream.expires_after(Remaining(deadline));
    RunOp(c.ioc, [&](auto handler) {
      http::async_read(c.stream, buffer, parser, std::move(handler));
    });
    HttpResponse res;
    res.status = status;
    res.body = parser.get().body();
    std::string message = "docker: " + DockerErrorMessage(res);
    if (status == 404) return NotFoundError(message);
    if (status == 409) return Status(StatusCode::kFailedPrecondition, message, true);
    return UnavailableError(message);
  }
  auto bytes = buffer.data();
  std::string pending(static_cast<const char*>(bytes.data()), bytes.size());
  c.stream.expires_never();
  reg.Detach();  // The stream has its own Abort().
  auto socket = c.stream.release_socket();
  int fd = socket.release(ec);
  if (ec) return InternalError("docker: cannot release socket: " + ec.message());
  return std::unique_ptr<HijackedStream>(new FdStream(fd, std::move(pending)));
}

http::request<http::empty_body> MakeHeadOnly(std::string_view method, const std::string& target) {
  auto req = NewRequest<http::empty_body>(method, target);
  req.keep_alive(false);
  return req;
}

// Reads a streamed answer's body into the caller's buffer, one read_some at a
// time: nothing but Beast's small read buffer is held between calls.
template <typename Protocol>
class StreamedBody : public ResponseBody {
 public:
  StreamedBody(const DockerHost& host, std::chrono::milliseconds idle)
      : host_(host), idle_(idle) {
    parser_.body_limit((std::numeric_limits<std::uint64_t>::max)());
  }

  // Connects, sends `req` and reads the answer's header.
  Status Start(const http::request<http::empty_body>& req) {
    SANDRUN_RETURN_IF_ERROR(Connect(c_, host_, Clock::now() + idle_));
    c_.stream.expires_after(idle_);
    error_code ec = RunOp(c_.ioc, [&](auto handler) {
      http::async_write(c_.stream, req, std::move(handler));
    });
    if (ec) return ConnectionError(host_, "send to", ec);
    c_.stream.expires_after(idle_);
    ec = RunOp(c_.ioc, [&](auto handler) {
      http::async_read_header(c_.stream, buffer_, parser_, std::move(handler));
    });
    if (ec) return ConnectionError(host_, "read from", ec);
    return OkStatus();
  }

  HttpResponse Head() { return ResponseHead(parser_.get()); }

  Result<std::size_t> Read(char* data, std::size_t size) override {
    while (!parser_.is_done()) {
      parser_.get().body().data = data;
      parser_.get().body().size = size;
      c_.stream.expires_after(idle_);
      error_code ec = RunOp(c_.ioc, [&](auto handler) {
        http::async_read_some(c_.stream, buffer_, parser_, std::move(handler));
      });
      if (ec == http::error::need_buffer) ec = {};
      if (ec) return ConnectionError(host_, "read from", ec);
      std::size_t got = size - parser_.get().body().size;
      if (got > 0) return got;
    }
    return std::size_t{0};
  }

 private:
  DockerHost host_;
  std::chrono::milliseconds idle_;
  Connection<Protocol> c_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
};

template <typename Protocol>
Result<StreamedResponse> DoOpenStream(const DockerHost& host,
                                      const http::request<http::empty_body>& req,
                                      std::chrono::milliseconds idle) {
  auto body = std::make_unique<StreamedBody<Protocol>>(host, idle);
  SANDRUN_RETURN_IF_ERROR(body->Start(req));
  StreamedResponse out;
  out.head = body->Head();
  if (out.head.status >= 200 && out.head.status < 300) {
    out.body = std::move(body);
    return out;
  }
  // An error answer is a short JSON message.
  char piece[4096];
  for (;;) {
    SANDRUN_ASSIGN_OR_RETURN(std::size_t n, body->Read(piece, sizeof piece));
    if (n == 0) break;
    if (out.head.body.size() < (1 << 20)) out.head.body.append(piece, n);
  }
  return out;
}

// Sends the header, then every piece `write_body` produces as one chunk, then
// the last chunk; reads the whole (small) answer.
template <typename Protocol>
Result<HttpResponse> DoStreamingBody(const DockerHost& host, http::request<http::empty_body> req,
                                     const BodyWriter& write_body,
                                     std::chrono::milliseconds idle) {
  Connection<Protocol> c;
  SANDRUN_RETURN_IF_ERROR(Connect(c, host, Clock::now() + idle));
  req.chunked(true);
  http::request_serializer<http::empty_body> serializer(req);
  c.stream.expires_after(idle);
  error_code ec = RunOp(c.ioc, [&](auto handler) {
    http::async_write_header(c.stream, serializer, std::move(handler));
  });
  if (ec) return ConnectionError(host, "send to", ec);
  auto send = [&](std::string_view piece) -> Status {
    if (piece.empty()) return OkStatus();
    c.stream.expires_after(idle);
    error_code wec = RunOp(c.ioc, [&](auto handler) {
      asio::async_write(c.stream, http::make_chunk(asio::const_buffer(piece.data(), piece.size())),
                        std::move(handler));
    });
    return wec ? ConnectionError(host, "send to", wec) : OkStatus();
  };
  Status written = write_body(send);
  if (written.ok()) {
    c.stream.expires_after(idle);
    ec = RunOp(c.ioc, [&](auto handler) {
      asio::async_write(c.stream, http::make_chunk_last(), std::move(handler));
    });
    if (ec) written = ConnectionError(host, "send to", ec);
  }
  // The daemon may have answered early (an error) and closed: its answer says
  // more than the broken pipe, so read it whatever happened above.
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  c.stream.expires_after(written.ok() ? idle : std::chrono::milliseconds(2000));
  ec = RunOp(c.ioc, [&](auto handler) {
    http::async_read(c.stream, buffer, parser, std::move(handler));
  });
  if (ec) {
    if (!written.ok()) return written;
    return ConnectionError(host, "read from", ec);
  }
  HttpResponse out = ToHttpResponse(parser.get());
  if (!written.ok() && out.status >= 200 && out.status < 300) return written;
  return out;
}

// "1.41" -> {1, 41}.
std::pair<int, int> ParseVersion(std::string_view v) {
  int major = 0, minor = 0;
  std::size_t dot = v.find('.');
  try {
    major = std::stoi(std::string(v.substr(0, dot)));
    if (dot != std::string_view::npos) minor = std::stoi(std::string(v.substr(dot + 1)));
  } catch (...) {
    return {0, 0};
  }
  return {major, minor};
}

}  // namespace

Result<DockerHost> ParseDockerHost(std::string_view text) {
  DockerHost host;
  host.text = std::string(text);
  if (text.rfind("unix://", 0) == 0) {
    host.unix_path = std::string(text.substr(7));
    if (host.unix_path.empty()) return InvalidArgumentError("docker: empty socket path in '" + host.text + "'");
    return host;
  }
  if (text.rfind("tcp://", 0) == 0 || text.rfind("http://", 0) == 0) {
    std::string_view rest = text.substr(text.find("://") + 3);
    if (std::size_t slash = rest.find('/'); slash != std::string_view::npos) rest = rest.substr(0, slash);
    std::size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      host.tcp_host = std::string(rest);
      host.tcp_port = "2375";
    } else {
      host.tcp_host = std::string(rest.substr(0, colon));
      host.tcp_port = std::string(rest.substr(colon + 1));
    }
    if (host.tcp_host.size() > 2 && host.tcp_host.front() == '[') {
      host.tcp_host = host.tcp_host.substr(1, host.tcp_host.size() - 2);
    }
    if (host.tcp_host.empty()) return InvalidArgumentError("docker: no host in '" + host.text + "'");
    return host;
  }
  return InvalidArgumentError("docker: DOCKER_HOST '" + host.text +
                              "' is neither unix:///path nor tcp://host:port");
}

void CallCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  // shutdown(2), not close: the request's own thread still owns the
  // descriptor, and its pending operation completes with an error at once.
  for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
}

bool CallCanceller::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool CallCanceller::Register(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  fds_.insert(fd);
  return true;
}

void CallCanceller::Unregister(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  fds_.erase(fd);
}

DockerClient::DockerClient(DockerHost host) : host_(std::move(host)), api_version_(kMinApiVersion) {}
DockerClient::~DockerClient() = default;

std::string DockerClient::api_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return api_version_;
}

std::string DockerClient::Prefixed(const std::string& target) const {
  if (target == "/_ping" || target.rfind("/version", 0) == 0) return target;
  return "/v" + api_version() + target;
}

Status DockerClient::NegotiateVersion() {
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           Request("GET", "/version", {}, {}, std::chrono::seconds(10)));
  if (res.status != 200) {
    return UnavailableError("docker: GET /version on " + host_.text + " answered " +
                            std::to_string(res.status) + ": " + DockerErrorMessage(res));
  }
  std::string server;
  try {
    server = nlohmann::json::parse(res.body).value("ApiVersion", "");
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad /version answer: ") + e.what());
  }
  auto have = ParseVersion(server);
  if (have < ParseVersion(kMinApiVersion)) {
    return FailedPreconditionError("docker: the daemon at " + host_.text + " speaks API " + server +
                                   "; sandrun needs at least " + std::string(kMinApiVersion));
  }
  std::string chosen = have < ParseVersion(kMaxApiVersion) ? server : std::string(kMaxApiVersion);
  std::lock_guard<std::mutex> lock(mu_);
  api_version_ = chosen;
  return OkStatus();
}

std::string DockerClient::StoppedAnsweringMessage() const {
  return "docker: the engine at " + host_.text +
         " stopped answering (a request and a ping went unanswered)";
}

void DockerClient::NoteTimeout(const Status& status) {
  if (status.code() == StatusCode::kDeadlineExceeded) stalled_ = true;
}

bool DockerClient::Responsive(std::chrono::milliseconds timeout) {
  auto res = RawRequest("GET", "/_ping", {}, {}, timeout, nullptr);
  // A refused connection is a restart, not a stall: later requests then fail
  // (and are retried) as they would against a stopped engine.
  stalled_ = !res.ok() && res.status().code() == StatusCode::kDeadlineExceeded;
  return res.ok() && res->status == 200;
}

Status DockerClient::CheckNotStalled(std::chrono::milliseconds timeout) {
  // Waiting out every request's own deadline against a frozen engine would
  // cost minutes; a short ping tells a frozen engine from a slow one.
  if (!stalled_) return OkStatus();
  Responsive(std::min<std::chrono::milliseconds>(kStalledPing, timeout));
  if (!stalled_) return OkStatus();
  return Status(StatusCode::kDeadlineExceeded, StoppedAnsweringMessage(), true);
}

Result<HttpResponse> DockerClient::RawRequest(std::string_view method, const std::string& target,
                                              std::string body, std::string_view content_type,
                                              std::chrono::milliseconds timeout,
                                              CallCanceller* canceller) {
  try {
    auto req = MakeRequest(method, Prefixed(target), std::move(body), content_type);
    if (!host_.unix_path.empty()) {
      return DoRequest<asio::local::stream_protocol>(host_, std::move(req), timeout, canceller);
    }
    return DoRequest<asio::ip::tcp>(host_, std::move(req), timeout, canceller);
  } catch (const std::exception& e) {
    return UnavailableError("docker: " + std::string(method) + " " + target + " on " +
                            host_.text + ": " + e.what());
  }
}

Result<HttpResponse> DockerClient::Request(std::string_view method, const std::string& target,
                                           std::string body, std::string_view content_type,
                                           std::chrono::milliseconds timeout,
                                           CallCanceller* canceller) {
  SANDRUN_RETURN_IF_ERROR(CheckNotStalled(timeout));
  auto res = RawRequest(method, target, std::move(body), content_type, timeout, canceller);
  if (!res.ok()) NoteTimeout(res.status());
  return res;
}

Result<StreamedResponse> DockerClient::OpenStream(std::string_view method,
                                                  const std::string& target,
                                                  std::chrono::milliseconds idle_timeout) {
  SANDRUN_RETURN_IF_ERROR(CheckNotStalled(idle_timeout));
  Result<StreamedResponse> out = InternalError("docker: request not attempted");
  try {
    auto req = MakeHeadOnly(method, Prefixed(target));
    if (!host_.unix_path.empty()) {
      out = DoOpenStream<asio::local::stream_protocol>(host_, req, idle_timeout);
    } else {
      out = DoOpenStream<asio::ip::tcp>(host_, req, idle_timeout);
    }
  } catch (const std::exception& e) {
    return UnavailableError("docker: " + std::string(method) + " " + target + " on " +
                            host_.text + ": " + e.what());
  }
  if (!out.ok()) NoteTimeout(out.status());
  return out;
}

Result<HttpResponse> DockerClient::RequestStreamingBody(std::string_view method,
                                                        const std::string& target,
                                                        std::string_view content_type,
                                                        const BodyWriter& write_body,
                                                        std::chrono::milliseconds idle_timeout) {
  SANDRUN_RETURN_IF_ERROR(CheckNotStalled(idle_timeout));
  Result<HttpResponse> out = InternalError("docker: request not attempted");
  try {
    auto req = MakeHeadOnly(method, Prefixed(target));
    req.set(http::field::content_type, content_type);
    if (!host_.unix_path.empty()) {
      out = DoStreamingBody<asio::local::stream_protocol>(host_, std::move(req), write_body,
                                                          idle_timeout);
    } else {
      out = DoStreamingBody<asio::ip::tcp>(host_, std::move(req), write_body, idle_timeout);
    }
  } catch (const std::exception& e) {
    return UnavailableError("docker: " + std::string(method) + " " + target + " on " +
                            host_.text + ": " + e.what());
  }
  if (!out.ok()) NoteTimeout(out.status());
  return out;
}

Result<std::unique_ptr<HijackedStream>> DockerClient::Hijack(const std::string& target,
                                                             const std::string& body,
                                                             std::chrono::milliseconds timeout,
                                                             CallCanceller* canceller) {
  SANDRUN_RETURN_IF_ERROR(CheckNotStalled(timeout));
  Result<std::unique_ptr<HijackedStream>> out = InternalError("docker: hijack not attempted");
  try {
    auto req = MakeRequest("POST", Prefixed(target), body, "application/json");
    if (!host_.unix_path.empty()) {
      out = DoHijack<asio::local::stream_protocol>(host_, std::move(req), timeout, canceller);
    } else {
      out = DoHijack<asio::ip::tcp>(host_, std::move(req), timeout, canceller);
    }
  } catch (const std::exception& e) {
    return UnavailableError("docker: POST " + target + " on " + host_.text + ": " + e.what());
  }
  if (!out.ok()) NoteTimeout(out.status());
  return out;
}

std::string DockerErrorMessage(const HttpResponse& response) {
  try {
    auto j = nlohmann::json::parse(response.body);
    if (j.is_object() && j.contains("message") && j["message"].is_string()) {
      return j["message"].get<std::string>();
    }
  } catch (...) {
  }
  std::string body = response.body;
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  return body.empty() ? "HTTP " + std::to_string(response.status) : body;
}

std::string UrlEncode(std::string_view value) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : value) {
    if (std::isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == '/') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

}  // namespace sandrun::docker
