// DockerClient: HTTP/1.1 to a Docker Engine API (or a compatible one, such as
// Podman's) over a unix socket or TCP, with Boost.Beast. Boost stays inside
// docker_client.cc; this header is plain C++.
//
// Every request opens its own connection (a unix socket connect costs a few
// microseconds), so one client is safe to share between threads. Failures to
// reach the daemon are kUnavailable (retryable) and name the host; HTTP error
// statuses are returned as responses for the caller to map, because what a 404
// means depends on the endpoint.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_CLIENT_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_CLIENT_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
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
  Result<HttpResponse> Request(std::string_view method, const std::string& target,
                               std::string body = {},
                               std::string_view content_type = "application/json",
                               std::chrono::milliseconds timeout = std::chrono::seconds(120));

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
  /// daemon answered 101 (or 200). An HTTP error status is returned as
  /// kUnavailable/kNotFound with the daemon's message.
  Result<std::unique_ptr<HijackedStream>> Hijack(const std::string& target,
                                                 const std::string& body);

 private:
  std::string Prefixed(const std::string& target) const;

  DockerHost host_;
  mutable std::mutex mu_;
  std::string api_version_;
};

/// The "message" field of a Docker error body, or the body itself.
std::string DockerErrorMessage(const HttpResponse& response);

/// Percent-encodes a query parameter value.
std::string UrlEncode(std::string_view value);

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_CLIENT_H_
