// The fake's checks on every call (latency, counting, credentials) and its
// injected faults: failures before or after the work, throttling, expired
// tokens, slow creation, killed sandboxes.
#include "fake_modal_impl.h"

#include <thread>

namespace sandrun::modal::fake {

// Called first by every handler: latency, counting, credentials, faults.
grpc::Status FakeModalServer::Impl::Enter(grpc::ServerContext* context, const std::string& rpc,
                                          bool control, bool needs_auth_token) {
  if (grpc::Status thawed = WhileFrozen(context); !thawed.ok()) return thawed;
  milliseconds latency;
  {
    std::lock_guard<std::mutex> lock(mu_);
    latency = latency_;
    ++stats_.calls[rpc];
  }
  if (latency.count() > 0) std::this_thread::sleep_for(latency);
  if (control) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const char* header :
           {"x-modal-client-type", "x-modal-client-version", "x-modal-libmodal-version"}) {
        stats_.client_headers[header] = Metadata(context, header);
      }
    }
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
grpc::Status FakeModalServer::Impl::Leave(const std::string& rpc, grpc::Status status) {
  std::lock_guard<std::mutex> lock(fault_mu_);  // handlers may hold mu_
  Fault& fault = faults_[rpc];
  if (status.ok() && fault.fail_after > 0) {
    --fault.fail_after;
    return grpc::Status(static_cast<grpc::StatusCode>(fault.fail_after_code),
                        "injected lost response of " + rpc);
  }
  return status;
}

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
grpc::Status FakeModalServer::Impl::WhileFrozen(grpc::ServerContext* context) {
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!frozen_) return grpc::Status::OK;
    }
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "frozen");
    std::this_thread::sleep_for(milliseconds(20));
  }
}
void FakeModalServer::Freeze() {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->frozen_ = true;
}
void FakeModalServer::Thaw() {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->frozen_ = false;
}
void FakeModalServer::IgnoreExecTimeouts() {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  impl_->ignore_exec_timeouts_ = true;
}
void FakeModalServer::KillSandbox(const std::string& sandbox_id) {
  std::lock_guard<std::mutex> lock(impl_->mu_);
  auto it = impl_->sandboxes_.find(sandbox_id);
  if (it != impl_->sandboxes_.end()) impl_->KillLocked(*it->second, 2);
}

}  // namespace sandrun::modal::fake
