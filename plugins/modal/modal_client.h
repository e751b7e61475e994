// The gRPC side of the Modal plugin: channels to Modal's control plane
// (modal.client.ModalClient) and to a worker's task command router
// (modal.task_command_router.TaskCommandRouter), with the metadata, auth-token
// exchange and retry rules of Modal's Go SDK (modal-labs/modal-client:
// go/client.go, go/auth_token_manager.go, go/task_command_router_client.go).
//
// Internal to plugins/modal (and its tests): it includes the generated
// headers, so it is included only by the plugin's .cc files, never by a
// public header. Nothing here throws; every grpc::Status becomes a sandrun
// Status (MapGrpcStatus) whose message never contains a token.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_CLIENT_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_CLIENT_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "modal_client.grpc.pb.h"
#include "modal_credentials.h"
#include "sandrun/status.h"
#include "single_flight.h"
#include "task_command_router.grpc.pb.h"

namespace sandrun::modal {

/// What we tell the server about ourselves (modal-labs/modal-client
/// go/client.go injectRequiredHeaders; ClientType in modal_proto/api.proto).
/// sandrun speaks the protocol the Go SDK speaks (router exec, V2 sandboxes
/// by default), so it declares the Go SDK's client type, and sends the
/// version headers in the form that SDK sends them: x-modal-client-version
/// "1.0.0" and x-modal-libmodal-version "modal-go/<version>", naming the Go
/// SDK release whose protocol it follows. It names itself in the HTTP/2
/// user agent (kUserAgent) instead.
inline constexpr const char* kClientType = "9";          // CLIENT_TYPE_LIBMODAL_GO
inline constexpr const char* kClientVersion = "1.0.0";   // protocol level, as Go/JS
inline constexpr const char* kLibraryVersion = "modal-go/0.9.0";
inline constexpr const char* kUserAgent = "sandrun/0.1.0";

/// Maps a gRPC status to sandrun's vocabulary: UNAVAILABLE, CANCELLED,
/// UNKNOWN, DEADLINE_EXCEEDED, INTERNAL -> retryable; UNAUTHENTICATED and
/// PERMISSION_DENIED -> kPermissionDenied; NOT_FOUND -> kNotFound; ...
/// `what` names the call ("SandboxCreate").
Status MapGrpcStatus(const grpc::Status& status, const std::string& what);

/// The gRPC codes Modal's clients retry (modal-labs/modal-client go/client.go
/// retryInterceptor, py/modal/_utils/grpc_utils.py Retry).
bool IsRetryableGrpcCode(grpc::StatusCode code);

/// A set of in-flight calls that can be cancelled together from another
/// thread (Sandbox::Terminate). After Cancel(), every running call is
/// TryCancel()ed, every backoff sleep ends, and new calls fail with
/// kCancelled at once. Thread-safe.
class CallCanceller {
 public:
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  /// Registers a context for the duration of a call; false if already
  /// cancelled (the call must not start).
  bool Add(grpc::ClientContext* context);
  void Remove(grpc::ClientContext* context);
  /// Sleeps up to `duration`; returns false early when cancelled.
  bool SleepFor(std::chrono::milliseconds duration);

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<grpc::ClientContext*> contexts_;  // Guarded by mu_.
};

/// Seconds since the epoch of the JWT's "exp" claim; nullopt when absent or
/// unreadable (the caller then assumes 20 minutes, as the SDKs do).
std::optional<double> JwtExpiry(const std::string& jwt);

/// Host and port for grpc from "https://host[:port][/path]" /
/// "http://host[:port][/path]" (a path is ignored, as the SDKs ignore it);
/// sets *tls. kInvalidArgument for anything else.
Result<std::string> GrpcTarget(const std::string& url, bool* tls);

/// True when the URL's host is this machine (localhost, 127.0.0.1, ::1):
/// a local test server, whose command router the SDKs dial without TLS
/// even when its URL says https:// (the JS SDK's isLocalhost).
bool IsLoopbackUrl(const std::string& url);

/// Channel arguments both channels share: 100 MiB messages, keepalive 30 s /
/// 10 s, permitted without calls.
grpc::ChannelArguments ModalChannelArguments();

/// Per attempt, for a control-plane call given no deadline of its own (its
/// long polls carry at most 55 s in their bodies).
inline constexpr std::chrono::milliseconds kControlCallDeadline{60000};

/// Retry rules for one call site.
struct RetryRule {
  int max_retries = 3;
  std::chrono::milliseconds initial_delay{100};
  std::chrono::milliseconds max_delay{1000};
  /// When non-zero, retryable codes are retried until this long after the
  /// first attempt, whatever max_retries says (a router still starting).
  std::chrono::milliseconds retry_for{0};
  /// gRPC wait_for_ready on each attempt: wait for the connection instead
  /// of failing at once while it cannot be made.
  bool wait_for_ready = false;
};

/// The control-plane connection. Thread-safe; shared by every sandbox of a
/// backend. Every call carries x-modal-client-type, x-modal-client-version,
/// x-modal-libmodal-version, x-modal-token-id, x-modal-token-secret, and
/// (except AuthTokenGet itself) x-modal-auth-token; unary calls are retried
/// as Modal's Go SDK retries them (go/client.go retryInterceptor in
/// modal-labs/modal-client) with one x-idempotency-key for all attempts, and
/// server-requested throttling (RPCRetryPolicy in grpc-status-details-bin)
/// is honoured without counting against the retry budget.
class ControlPlane {
 public:
  explicit ControlPlane(ModalCredentials credentials);

  const ModalCredentials& credentials() const { return credentials_; }
  ::modal::client::ModalClient::Stub& stub() { return *stub_; }

  /// A unary call with metadata, auth token and retries. `call` performs one
  /// attempt on the given context. `deadline` is per attempt (zero =
  /// kControlCallDeadline).
  /// `canceller` may be null.
  Status Unary(const std::string& what,
               const std::function<grpc::Status(grpc::ClientContext*)>& call,
               CallCanceller* canceller = nullptr,
               std::chrono::milliseconds deadline = std::chrono::milliseconds(0));

  /// Prepares a context for a server stream (metadata and auth token; streams
  /// are not retried by this layer). kPermissionDenied if no auth token.
  Status PrepareStream(grpc::ClientContext* context);

  /// The current auth token, fetched or refreshed (at half its lifetime) as
  /// needed, by one AuthTokenGet however many callers need it at once. A
  /// failed refresh keeps a token that is still valid.
  Result<std::string> AuthToken();

  /// Replaces message text that would reveal a credential with "[redacted]".
  std::string Redact(std::string text) const;

  /// Number of calls made (attempts included), for benchmarks and tests.
  std::uint64_t calls() const { return calls_.load(); }

 private:
  void AddBaseMetadata(grpc::ClientContext* context) const;
  Status FetchAuthToken();

  ModalCredentials credentials_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::modal::client::ModalClient::Stub> stub_;
  std::atomic<std::uint64_t> calls_{0};

  std::mutex token_mu_;
  std::string token_;                                   // Guarded by token_mu_.
  std::chrono::system_clock::time_point token_expiry_;  // Guarded by token_mu_.
  std::chrono::system_clock::time_point refresh_at_;    // Guarded by token_mu_.
  SingleFlight<std::string> token_fetch_;  // One AuthTokenGet in flight.
};

/// Where a sandbox's command router is and the bearer JWT for it: from
/// TaskGetCommandRouterAccess (V1), SandboxGetCommandRouterAccess or the
/// SandboxCreateV2 response (V2).
struct RouterAccess {
  std::string jwt;
  std::string url;
};

/// How a router connection is dialled and how long its first call waits for
/// the worker to accept it.
struct RouterDial {
  /// Accept an http:// router URL (only when the control plane itself is
  /// plaintext, i.e. a local test server).
  bool allow_plaintext = false;
  /// Dial an https:// router URL without TLS: the control plane is on this
  /// machine (IsLoopbackUrl), as the SDKs do for a local server.
  bool plaintext_for_loopback = false;
  /// The first call to a fresh router retries retryable codes (with
  /// wait_for_ready) for this long: a sandbox just scheduled may not accept
  /// connections yet. Python's SDK allows ~310 s, Go's ~10 s.
  std::chrono::milliseconds ready_timeout{310000};
};

/// A connection to one worker's task command router, authorized by the
/// bearer JWT of its RouterAccess (and nothing else: no x-modal-* headers).
/// Unary calls retry the same codes 10 times from 10 ms, doubling; until a
/// first call got an answer they retry for RouterDial::ready_timeout. On
/// UNAUTHENTICATED the access is refreshed once through `refresh`; streams
/// do the same through RefreshAccess().
class CommandRouter {
 public:
  using RefreshFn = std::function<Result<RouterAccess>()>;

  static Result<std::unique_ptr<CommandRouter>> Connect(const RouterAccess& access,
                                                        const RouterDial& dial, RefreshFn refresh);

  ::modal::task_command_router::TaskCommandRouter::Stub& stub() { return *stub_; }

  Status Unary(const std::string& what,
               const std::function<grpc::Status(grpc::ClientContext*)>& call,
               CallCanceller* canceller, std::chrono::milliseconds deadline,
               RetryRule rule = RetryRule{10, std::chrono::milliseconds(10),
                                          std::chrono::milliseconds(1000)});
  /// Adds the bearer token to a context for a stream; returns the token.
  std::string PrepareStream(grpc::ClientContext* context);
  /// After UNAUTHENTICATED for a call sent with `jwt_sent`: fetches a fresh
  /// JWT, unless another call already replaced that one (then the caller
  /// simply retries with the current one). False if the fetch failed.
  bool RefreshAccess(const std::string& jwt_sent);

  std::uint64_t calls() const { return calls_.load(); }

 private:
  CommandRouter() = default;
  std::string Jwt();

  std::mutex refresh_mu_;  // One refresh at a time.
  std::mutex mu_;
  std::string jwt_;  // Guarded by mu_.
  RouterDial dial_;
  std::atomic<bool> answered_{false};  // A call got an answer: the worker is up.
  RefreshFn refresh_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<::modal::task_command_router::TaskCommandRouter::Stub> stub_;
  std::atomic<std::uint64_t> calls_{0};
};

/// A random RFC 4122 version-4 UUID (idempotency keys, exec ids).
std::string NewUuid();

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_CLIENT_H_
