#include "modal_client.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "sandrun/util.h"

namespace sandrun::modal {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string SecondsText(Clock::duration d) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3f",
                std::chrono::duration_cast<std::chrono::duration<double>>(d).count());
  return buffer;
}

// The server's throttling request, if the status carries one: RPCStatus in
// grpc-status-details-bin with a detail of type modal.client.RPCRetryPolicy.
std::optional<milliseconds> ServerRetryAfter(const grpc::Status& status) {
  const std::string& details = status.error_details();
  if (details.empty()) return std::nullopt;
  ::modal::client::RPCStatus rpc_status;
  if (!rpc_status.ParseFromString(details)) return std::nullopt;
  for (const auto& any : rpc_status.details()) {
    const std::string& url = any.type_url();
    const std::string suffix = "modal.client.RPCRetryPolicy";
    if (url.size() < suffix.size() || url.compare(url.size() - suffix.size(), suffix.size(),
                                                  suffix) != 0) {
      continue;
    }
    ::modal::client::RPCRetryPolicy policy;
    if (!policy.ParseFromString(any.value())) continue;
    double secs = policy.retry_after_secs();
    if (!(secs >= 0)) secs = 0;
    return milliseconds(static_cast<std::int64_t>(secs * 1000));
  }
  return std::nullopt;
}

std::string Base64UrlDecode(std::string in) {
  for (char& c : in) {
    if (c == '-') c = '+';
    if (c == '_') c = '/';
  }
  while (in.size() % 4 != 0) in.push_back('=');
  std::string out(in.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return "";
  std::size_t pad = 0;
  while (pad < 2 && !in.empty() && in[in.size() - 1 - pad] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

// One retry loop shared by both channels. `prepare` adds per-attempt
// metadata (attempt number, delay since the first attempt).
Status RetryLoop(const std::string& what,
                 const std::function<grpc::Status(grpc::ClientContext*)>& call,
                 const std::function<Status(grpc::ClientContext*, int, Clock::duration, int,
                                            Clock::duration)>& prepare,
                 CallCanceller* canceller, milliseconds deadline, RetryRule rule,
                 std::optional<double> max_throttle_wait_s, std::atomic<std::uint64_t>* calls,
                 const std::function<bool(const grpc::Status&)>& on_unauthenticated = {}) {
  const Clock::time_point start = Clock::now();
  int attempt = 0;
  int throttle_attempt = 0;
  Clock::duration throttle_waited{};
  Clock::time_point throttle_start{};
  milliseconds delay = rule.initial_delay;
  bool refreshed = false;
  while (true) {
    if (canceller != nullptr && canceller->cancelled()) {
      return CancelledError("modal: " + what + ": cancelled");
    }
    grpc::ClientContext context;
    if (deadline.count() > 0) context.set_deadline(std::chrono::system_clock::now() + deadline);
    if (rule.wait_for_ready) context.set_wait_for_ready(true);
    Status prepared = prepare(&context, attempt, Clock::now() - start, throttle_attempt,
                              Clock::now() - throttle_start);
    if (!prepared.ok()) return prepared;
    if (canceller != nullptr && !canceller->Add(&context)) {
      return CancelledError("modal: " + what + ": cancelled");
    }
    if (calls != nullptr) ++*calls;
    grpc::Status status = call(&context);
    if (canceller != nullptr) canceller->Remove(&context);
    if (status.ok()) return OkStatus();
    if (canceller != nullptr && canceller->cancelled()) {
      return CancelledError("modal: " + what + ": cancelled");
    }
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && on_unauthenticated &&
        !refreshed) {
      refreshed = true;
      if (on_unauthenticated(status)) continue;
    }
    if (auto retry_after = ServerRetryAfter(status)) {
      milliseconds wait = std::max(*retry_after, milliseconds(100));
      bool allowed = true;
      if (max_throttle_wait_s.has_value()) {
        auto cap = std::chrono::duration<double>(*max_throttle_wait_s);
        allowed = *max_throttle_wait_s > 0 && throttle_waited + wait <= cap;
      }
      if (allowed) {
        if (throttle_attempt == 0) throttle_start = Clock::now();
        ++throttle_attempt;
        throttle_waited += wait;
        if (canceller != nullptr ? !canceller->SleepFor(wait)
                                 : (std::this_thread::sleep_for(wait), false)) {
          return CancelledError("modal: " + what + ": cancelled");
        }
        continue;
      }
    }
    const bool retry_window_open =
        rule.retry_for.count() > 0 && Clock::now() - start + delay < rule.retry_for;
    if (IsRetryableGrpcCode(status.error_code()) &&
        (attempt < rule.max_retries || retry_window_open)) {
      ++attempt;
      if (canceller != nullptr ? !canceller->SleepFor(delay)
                               : (std::this_thread::sleep_for(delay), false)) {
        return CancelledError("modal: " + what + ": cancelled");
      }
      delay = std::min(delay * 2, rule.max_delay);
      continue;
    }
    Status mapped = MapGrpcStatus(status, what);
    if (attempt > 0) {
      return Status(mapped.code(),
                    mapped.message() + " (after " + std::to_string(attempt + 1) + " attempts)",
                    mapped.retryable());
    }
    return mapped;
  }
}

}  // namespace

bool IsRetryableGrpcCode(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNKNOWN:
      return true;
    default:
      return false;
  }
}

Status MapGrpcStatus(const grpc::Status& status, const std::string& what) {
  if (status.ok()) return OkStatus();
  const std::string message = "modal: " + what + ": " + status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      return UnavailableError(message + " (UNAVAILABLE)");
    case grpc::StatusCode::CANCELLED:
      return UnavailableError(message + " (CANCELLED)");
    case grpc::StatusCode::UNKNOWN:
      return UnavailableError(message + " (UNKNOWN)");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Status(StatusCode::kDeadlineExceeded, message, true);
    case grpc::StatusCode::INTERNAL:
      return Status(StatusCode::kInternal, message + " (INTERNAL)", true);
    case grpc::StatusCode::UNAUTHENTICATED:
      return PermissionDeniedError(message + " (UNAUTHENTICATED: credentials rejected)");
    case grpc::StatusCode::PERMISSION_DENIED:
      return PermissionDeniedError(message);
    case grpc::StatusCode::NOT_FOUND:
      return NotFoundError(message);
    case grpc::StatusCode::ALREADY_EXISTS:
      return AlreadyExistsError(message);
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return InvalidArgumentError(message);
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ABORTED:
      return FailedPreconditionError(message);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return ResourceExhaustedError(message);
    case grpc::StatusCode::UNIMPLEMENTED:
      return UnimplementedError(message);
    default:
      return InternalError(message);
  }
}

void CallCanceller::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (grpc::ClientContext* context : contexts_) context->TryCancel();
  cv_.notify_all();
}

bool CallCanceller::Add(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  contexts_.insert(context);
  return true;
}

void CallCanceller::Remove(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  contexts_.erase(context);
}

bool CallCanceller::SleepFor(milliseconds duration) {
  std::unique_lock<std::mutex> lock(mu_);
  return !cv_.wait_for(lock, duration, [&] { return cancelled_.load(); });
}

std::optional<double> JwtExpiry(const std::string& jwt) {
  std::size_t first = jwt.find('.');
  if (first == std::string::npos) return std::nullopt;
  std::size_t second = jwt.find('.', first + 1);
  if (second == std::string::npos) return std::nullopt;
  std::string payload = Base64UrlDecode(jwt.substr(first + 1, second - first - 1));
  auto parsed = nlohmann::json::parse(payload, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.contains("exp") ||
      !parsed["exp"].is_number()) {
    return std::nullopt;
  }
  return parsed["exp"].get<double>();
}

Result<std::string> GrpcTarget(const std::string& url, bool* tls) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    *tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    *tls = false;
    rest = url.substr(7);
  } else {
    return InvalidArgumentError("modal: server url must be https:// or http://: '" + url + "'");
  }
  rest = rest.substr(0, rest.find('/'));  // a path is ignored, as the SDKs ignore it
  if (rest.empty()) return InvalidArgumentError("modal: bad server url '" + url + "'");
  bool has_port = rest.find(':') != std::string::npos && rest.back() != ']';
  if (!has_port) rest += *tls ? ":443" : ":80";
  return rest;
}

bool IsLoopbackUrl(const std::string& url) {
  bool tls = true;
  auto target = GrpcTarget(url, &tls);
  if (!target.ok()) return false;
  std::string host = target->substr(0, target->rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host == "localhost" || host == "127.0.0.1" || host == "::1";
}

grpc::ChannelArguments ModalChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(100 * 1024 * 1024);
  args.SetMaxSendMessageSize(100 * 1024 * 1024);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, kUserAgent);
  // Each connection gets its own channel (no sharing between ControlPlanes).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

std::string NewUuid() {
  std::string hex = RandomHex(32);
  hex[12] = '4';
  const char variant[] = "89ab";
  hex[16] = variant[std::stoi(hex.substr(16, 1), nullptr, 16) & 3];
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

ControlPlane::ControlPlane(ModalCredentials credentials) : credentials_(std::move(credentials)) {
  bool tls = true;
  auto target = GrpcTarget(credentials_.server_url, &tls);
  std::string address = target.ok() ? *target : credentials_.server_url;
  std::shared_ptr<grpc::ChannelCredentials> channel_credentials =
      tls ? grpc::SslCredentials(grpc::SslCredentialsOptions())
          : grpc::InsecureChannelCredentials();
  channel_ = grpc::CreateCustomChannel(address, channel_credentials, ModalChannelArguments());
  stub_ = ::modal::client::ModalClient::NewStub(channel_);
}

void ControlPlane::AddBaseMetadata(grpc::ClientContext* context) const {
  context->AddMetadata("x-modal-client-type", kClientType);
  context->AddMetadata("x-modal-client-version", kClientVersion);
  context->AddMetadata("x-modal-libmodal-version", kLibraryVersion);
  context->AddMetadata("x-modal-token-id", credentials_.token_id);
  context->AddMetadata("x-modal-token-secret", credentials_.token_secret);
}

std::string ControlPlane::Redact(std::string text) const {
  std::vector<std::string> secrets = {credentials_.token_secret};
  {
    std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(token_mu_));
    if (!token_.empty()) secrets.push_back(token_);
  }
  for (const auto& secret : secrets) {
    if (secret.size() < 4) continue;
    for (std::size_t pos; (pos = text.find(secret)) != std::string::npos;) {
      text.replace(pos, secret.size(), "[redacted]");
    }
  }
  return text;
}

Status ControlPlane::FetchAuthToken() {
  ::modal::client::AuthTokenGetResponse response;
  Status status = RetryLoop(
      "AuthTokenGet",
      [&](grpc::ClientContext* context) {
        return stub_->AuthTokenGet(context, ::modal::client::AuthTokenGetRequest(), &response);
      },
      [&](grpc::ClientContext* context, int attempt, Clock::duration since, int, Clock::duration) {
        AddBaseMetadata(context);
        if (attempt > 0) {
          context->AddMetadata("x-retry-attempt", std::to_string(attempt));
          context->AddMetadata("x-retry-delay", SecondsText(since));
        }
        return OkStatus();
      },
      nullptr, milliseconds(5000), RetryRule{}, credentials_.max_throttle_wait_s, &calls_);
  if (!status.ok()) return Status(status.code(), Redact(status.message()), status.retryable());
  if (response.token().empty()) {
    return PermissionDeniedError("modal: AuthTokenGet returned no token");
  }
  auto now = std::chrono::system_clock::now();
  auto expiry = now + std::chrono::minutes(20);
  if (auto exp = JwtExpiry(response.token())) {
    expiry = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::duration<double>(*exp)));
  }
  std::lock_guard<std::mutex> lock(token_mu_);
  token_ = response.token();
  token_expiry_ = expiry;
  refresh_at_ = now + (expiry - now) / 2;
  return OkStatus();
}

Result<std::string> ControlPlane::AuthToken() {
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    if (!token_.empty() && std::chrono::system_clock::now() < refresh_at_) return token_;
  }
  // Callers that find the token stale together share one AuthTokenGet.
  Result<std::string> fetched_token = token_fetch_.Get("token", [&]() -> Result<std::string> {
    SANDRUN_RETURN_IF_ERROR(FetchAuthToken());
    std::lock_guard<std::mutex> lock(token_mu_);
    return token_;
  });
  token_fetch_.Forget("token");  // token_ and refresh_at_ remember it from here
  Status fetched = fetched_token.status();
  std::lock_guard<std::mutex> lock(token_mu_);
  if (!fetched.ok()) {
    // A still-valid token is kept through a transient refresh failure;
    // rejected credentials are fatal.
    if (fetched.code() != StatusCode::kPermissionDenied && !token_.empty() &&
        std::chrono::system_clock::now() < token_expiry_) {
      return token_;
    }
    return fetched;
  }
  return token_;
}

Status ControlPlane::PrepareStream(grpc::ClientContext* context) {
  SANDRUN_ASSIGN_OR_RETURN(std::string token, AuthToken());
  AddBaseMetadata(context);
  context->AddMetadata("x-modal-auth-token", token);
  ++calls_;
  return OkStatus();
}

Status ControlPlane::Unary(const std::string& what,
                           const std::function<grpc::Status(grpc::ClientContext*)>& call,
                           CallCanceller* canceller, milliseconds deadline) {
  // No call waits forever: a control plane that stopped answering is an
  // infrastructure error after the retries, not a hung sandrun.
  if (deadline.count() == 0) deadline = kControlCallDeadline;
  const std::string key = NewUuid();
  std::string token_sent;
  Status status = RetryLoop(
      what, call,
      [&](grpc::ClientContext* context, int attempt, Clock::duration since, int throttle_attempt,
          Clock::duration throttle_since) -> Status {
        SANDRUN_ASSIGN_OR_RETURN(std::string token, AuthToken());
        token_sent = token;
        AddBaseMetadata(context);
        context->AddMetadata("x-modal-auth-token", token);
        context->AddMetadata("x-idempotency-key", key);
        context->AddMetadata("x-retry-attempt", std::to_string(attempt));
        if (attempt > 0) context->AddMetadata("x-retry-delay", SecondsText(since));
        if (throttle_attempt > 0) {
          context->AddMetadata("x-throttle-retry-attempt", std::to_string(throttle_attempt));
          context->AddMetadata("x-throttle-retry-delay", SecondsText(throttle_since));
        }
        return OkStatus();
      },
      canceller, deadline, RetryRule{}, credentials_.max_throttle_wait_s, &calls_,
      [&](const grpc::Status&) {
        // An expired auth token: fetch a fresh one once and try again.
        // (Unless another call has already replaced the token it was sent.)
        {
          std::lock_guard<std::mutex> lock(token_mu_);
          if (token_ == token_sent) token_.clear();
        }
        return AuthToken().ok();
      });
  if (status.ok()) return status;
  return Status(status.code(), Redact(status.message()), status.retryable());
}

Result<std::unique_ptr<CommandRouter>> CommandRouter::Connect(const RouterAccess& access,
                                                              const RouterDial& dial,
                                                              RefreshFn refresh) {
  bool tls = true;
  SANDRUN_ASSIGN_OR_RETURN(std::string target, GrpcTarget(access.url, &tls));
  if (!tls && !dial.allow_plaintext) {
    return PermissionDeniedError("modal: refusing a plaintext command-router url (" +
                                 access.url + ") from a TLS control plane");
  }
  // A local control plane's router is dialled without TLS even when its URL
  // says https:// (the JS SDK's TaskCommandRouterClientImpl.tryInit).
  if (dial.plaintext_for_loopback) tls = false;
  std::unique_ptr<CommandRouter> router(new CommandRouter());
  router->jwt_ = access.jwt;
  router->dial_ = dial;
  router->refresh_ = std::move(refresh);
  router->channel_ = grpc::CreateCustomChannel(
      target, tls ? grpc::SslCredentials(grpc::SslCredentialsOptions())
                  : grpc::InsecureChannelCredentials(),
      ModalChannelArguments());
  router->stub_ = ::modal::task_command_router::TaskCommandRouter::NewStub(router->channel_);
  return router;
}

bool CommandRouter::RefreshAccess(const std::string& jwt_sent) {
  if (!refresh_) return false;
  std::lock_guard<std::mutex> refreshing(refresh_mu_);
  if (Jwt() != jwt_sent) return true;  // refreshed meanwhile by another call
  auto fresh = refresh_();
  if (!fresh.ok()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  jwt_ = fresh->jwt;
  return true;
}

std::string CommandRouter::Jwt() {
  std::lock_guard<std::mutex> lock(mu_);
  return jwt_;
}

std::string CommandRouter::PrepareStream(grpc::ClientContext* context) {
  std::string jwt = Jwt();
  context->AddMetadata("authorization", "Bearer " + jwt);
  ++calls_;
  return jwt;
}

Status CommandRouter::Unary(const std::string& what,
                            const std::function<grpc::Status(grpc::ClientContext*)>& call,
                            CallCanceller* canceller, milliseconds deadline, RetryRule rule) {
  const std::string jwt_before = Jwt();
  if (!answered_.load()) {
    // The worker may still be starting: wait for the connection and keep
    // retrying for the readiness window, each attempt bounded so that a
    // connection that never comes up ends within it.
    rule.retry_for = dial_.ready_timeout;
    rule.wait_for_ready = true;
    rule.max_delay = std::max(rule.max_delay, milliseconds(1000));
    deadline = deadline.count() > 0 ? std::min(deadline, milliseconds(10000)) : milliseconds(10000);
  }
  std::string jwt_sent;
  Status status = RetryLoop(
      what, call,
      [&](grpc::ClientContext* context, int, Clock::duration, int, Clock::duration) {
        jwt_sent = Jwt();
        context->AddMetadata("authorization", "Bearer " + jwt_sent);
        return OkStatus();
      },
      canceller, deadline, rule, std::nullopt, &calls_,
      [&](const grpc::Status&) { return RefreshAccess(jwt_sent); });
  // Any answer but "cannot connect" shows the worker is up.
  if (status.ok() || !status.retryable()) answered_ = true;
  if (status.ok()) return status;
  std::string message = status.message();
  for (const std::string& secret : {jwt_before, Jwt()}) {
    for (std::size_t pos; !secret.empty() && (pos = message.find(secret)) != std::string::npos;) {
      message.replace(pos, secret.size(), "[redacted]");
    }
  }
  return Status(status.code(), message, status.retryable());
}

}  // namespace sandrun::modal
