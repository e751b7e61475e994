// DockerClient: HTTP/1.1 to a Docker Engine API (or a compatible one, such as
// Podman's) over a unix socket or TCP, with Boost.Beast. Boost stays inside
// docker_client.cc; this header is plain C++.
//
// Every request opens its own connection (a unix socket connect costs a few
// microseconds), so one client is safe to share between threads. Failures to
// reach the daemon are kUnavailable (retryable) and name the host; HTTP error
// statuses are returned as responses for the caller to map, because what a 404
// means depends on the endpoint.
//
// Every request has a deadline. An engine that accepts connections but never
// answers (a frozen dockerd) is detected by the first request that times out;
// from then on each request first pings the engine briefly and fails fast with
// kDeadlineExceeded ("stopped answering") until it answers again, so one hung
// engine costs seconds per call, not minutes.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_CLIENT_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_CLIENT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "sandrun/status.h"

namespace sandrun::docker {

/// Highest Engine API version this plugin speaks; the daemon's own version is
/// used when it is lower.
inline constexpr std::string_view kMaxApiVersion = "1.43";
/// Lowest version we accept (Docker 20.10).
inline constexpr std::string_view kMinApiVersion = "1.41";

struct HttpResponse {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;  ///< Names lowercased.
};

/// The raw byte stream of a hijacked connection (exec start, attach). Read and
/// write are used by one thread; Abort() may be called from any thread and makes
/// a blocked Read return kCancelled promptly.
class HijackedStream {
 public:
  virtual ~HijackedStream() = default;
  /// Reads up to `size` bytes; 0 means end of stream. kDeadlineExceeded when
  /// `deadline` passes first, kCancelled after Abort(), kUnavailable on a
  /// connection error.
  virtual Result<std::size_t> Read(char* data, std::size_t size,
                                   std::chrono::steady_clock::time_point deadline) = 0;
  virtual Status WriteAll(std::string_view data) = 0;
  /// Half-closes: the remote side sees end of input (the command's stdin ends).
  virtual void CloseWrite() = 0;
  /// Thread-safe: shuts the connection down both ways.
  virtual void Abort() = 0;
};

/// The body of a streamed answer (DockerClient::OpenStream), read piece by
/// piece so memory stays bounded whatever its size. One thread.
class ResponseBody {
 public:
  virtual ~ResponseBody() = default;
  /// Reads up to `size` bytes; 0 means the body ended. kUnavailable when the
  /// connection breaks, kDeadlineExceeded when no byte came for the timeout.
  virtual Result<std::size_t> Read(char* data, std::size_t size) = 0;
};

/// An answer whose 2xx body is left to read through `body`. Any other status
/// has its (small, JSON) body read whole into head.body and `body` null.
struct StreamedResponse {
  HttpResponse head;
  std::unique_ptr<ResponseBody> body;
};

/// Writes a request body piece by piece through `send`; a non-OK from `send`
/// must be returned (the connection broke).
using BodyWriter =
    std::function<Status(const std::function<Status(std::string_view)>& send)>;

/// Lets one thread abandon the requests another thread is blocked in: Cancel()
/// shuts down the connection of every request made with this canceller (the
/// request returns kCancelled at once, whatever its deadline) and makes later
/// requests fail with kCancelled before they connect. Thread-safe.
class CallCanceller {
 public:
  void Cancel();
  bool cancelled() const;

  /// For DockerClient: registers the socket of a connected request; false
  /// (and nothing registered) when already cancelled.
  bool Register(int fd);
  void Unregister(int fd);

 private:
  mutable std::mutex mu_;
  std::set<int> fds_;
  bool cancelled_ = false;
};

/// Parsed DOCKER_HOST: "unix:///path" or "tcp://host:port".
struct DockerHost {
  std::string text;        ///< As given, for messages.
  std::string unix_path;   ///< Set for unix://.
  std::string tcp_host;    ///< Set for tcp://.
  std::string tcp_port;
};
Result<DockerHost> ParseDockerHost(std::string_view text);

class DockerClient {
 public:
  explicit DockerClient(DockerHost host);
  ~DockerClient();

  const DockerHost& host() const { return host_; }

  /// GET /version; picks min(daemon ApiVersion, kMaxApiVersion) as the prefix
  /// of every later call. kFailedPrecondition when the daemon is older than
  /// kMinApiVersion. Until called (or when it fails), requests use kMinApiVersion.
  Status NegotiateVersion();
  std::string api_version() const;

  /// One request. `target` is the API path without the version prefix
  /// ("/containers/json?all=1"); "/_ping" and "/version" go unprefixed.
  /// kDeadlineExceeded when no answer came within `timeout` (or, while the
  /// engine is known to have stopped answering, within a short ping);
  /// kCancelled when `canceller` (may be null) cancelled it.
  Result<HttpResponse> Request(std::string_view method, const std::string& target,
                               std::string body = {},
                               std::string_view content_type = "application/json",
                               std::chrono::milliseconds timeout = std::chrono::seconds(120),
                               CallCanceller* canceller = nullptr);

  /// A bodiless request whose answer body is streamed. `idle_timeout` bounds
  /// each wait for bytes, not the whole transfer.
  Result<StreamedResponse> OpenStream(std::string_view method, const std::string& target,
                                      std::chrono::milliseconds idle_timeout =
                                          std::chrono::seconds(120));

  /// A request whose body `write_body` produces as it goes, sent with chunked
  /// transfer encoding (its size need not be known, nor held in memory). The
  /// answer is read whole.
  Result<HttpResponse> RequestStreamingBody(std::string_view method, const std::string& target,
                                            std::string_view content_type,
                                            const BodyWriter& write_body,
                                            std::chrono::milliseconds idle_timeout =
                                                std::chrono::seconds(120));

  /// Sends a POST with "Upgrade: tcp" and returns the hijacked stream once the
  /// daemon answered 101 (or 200) within `timeout`. An HTTP error status is
  /// returned as kUnavailable/kNotFound with the daemon's message. The stream
  /// itself is not covered by `canceller`; use HijackedStream::Abort().
  Result<std::unique_ptr<HijackedStream>> Hijack(
      const std::string& target, const std::string& body,
      std::chrono::milliseconds timeout = std::chrono::seconds(60),
      CallCanceller* canceller = nullptr);

  /// Pings the engine; true when it answered within `timeout`. Records the
  /// answer: a silent engine makes later requests fail fast (see above).
  bool Responsive(std::chrono::milliseconds timeout);

  /// A request timed out since the engine last answered a ping.
  bool stalled() const { return stalled_; }

  /// "docker: the engine at HOST stopped answering (...)", for notes and errors.
  std::string StoppedAnsweringMessage() const;

 private:
  std::string Prefixed(const std::string& target) const;
  // Request without the stalled-engine check.
  Result<HttpResponse> RawRequest(std::string_view method, const std::string& target,
                                  std::string body, std::string_view content_type,
                                  std::chrono::milliseconds timeout, CallCanceller* canceller);
  // Marks the engine stalled when `status` is a timeout waiting for it.
  void NoteTimeout(const Status& status);
  // While the engine is marked stalled: pings it, and fails with
  // kDeadlineExceeded when it is still silent.
  Status CheckNotStalled(std::chrono::milliseconds timeout);

  DockerHost host_;
  std::atomic<bool> stalled_{false};
  mutable std::mutex mu_;
  std::string api_version_;
};

/// The "message" field of a Docker error body, or the body itself.
std::string DockerErrorMessage(const HttpResponse& response);

/// Percent-encodes a query parameter value.
std::string UrlEncode(std::string_view value);

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_CLIENT_H_
