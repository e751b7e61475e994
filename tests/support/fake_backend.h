// FakeBackend: a scripted in-memory backend for engine tests. The command's
// argv says what happens:
//   pass                 exit 0          fail N        exit N
//   sleep MS             exit 0 after MS ms (ends early on Terminate: cancelled)
//   hang                 ignores its own timeout; only Terminate ends it
//   flaky K              retryable infra error on the first K attempts, then exit 0
//   broken               non-retryable infra error
//   infra-outcome        an OK result with Outcome::kInfraError (a backend
//                        breaking backend.h's contract, as old ones did)
//   print TEXT           TEXT on stdout, exit 0
// A timeout set on the request is honoured like a real backend (kTimedOut)
// except by `hang`. It counts what it was asked to do.
#ifndef SANDRUN_TESTS_SUPPORT_FAKE_BACKEND_H_
#define SANDRUN_TESTS_SUPPORT_FAKE_BACKEND_H_

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "sandrun/archive_store.h"
#include "sandrun/backend.h"

namespace sandrun::testing {

class FakeBackend : public Backend {
 public:
  /// `archive_root`: where OpenArchive() keeps records.
  explicit FakeBackend(std::string archive_root, std::string name = "fake");

  std::string_view Name() const override { return name_; }
  Capabilities GetCapabilities() const override { return {}; }
  Status CheckAvailable() override {
    return available ? OkStatus() : UnavailableError(unavailable_reason);
  }
  Status ValidateSpec(const SandboxSpec&) override { return spec_verdict; }
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  Result<std::vector<Leftover>> ListLeftovers() override { return std::vector<Leftover>{}; }
  Status RemoveLeftover(const std::string&) override { return OkStatus(); }
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override;

  // Knobs and counters (thread-safe).
  bool available = true;
  Status spec_verdict;  ///< What ValidateSpec answers (set before a run).
  std::string unavailable_reason;
  std::atomic<int> created{0};
  std::atomic<int> terminated{0};
  std::atomic<int> execs{0};
  std::atomic<int> running{0};
  std::atomic<int> max_running{0};
  /// Attempts seen per task label, for `flaky`.
  int AttemptsOf(const std::string& task);
  /// Last spec seen per task (labels, lifetime...).
  SandboxSpec SpecOf(const std::string& task);

 private:
  friend class FakeSandbox;
  std::string name_;
  std::string archive_root_;
  std::mutex mu_;
  std::map<std::string, int> attempts_;
  std::map<std::string, SandboxSpec> specs_;
};

}  // namespace sandrun::testing

#endif  // SANDRUN_TESTS_SUPPORT_FAKE_BACKEND_H_
