#include "support/fake_backend.h"

#include <chrono>
#include <thread>

#include "sandrun/output_collector.h"

namespace sandrun::testing {

class FakeSandbox : public Sandbox {
 public:
  FakeSandbox(FakeBackend& backend, std::string task)
      : backend_(backend), task_(std::move(task)), id_("fake-" + task_) {}
  ~FakeSandbox() override { Terminate().IgnoreError(); }

  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload&) override { return OkStatus(); }
  Result<std::vector<std::string>> Get(const std::string& path,
                                       const std::filesystem::path&) override {
    return NotFoundError("fake backend has no files: " + path);
  }

  Result<ExecResult> Exec(const ExecRequest& request) override {
    ++backend_.execs;
    int now = ++backend_.running;
    int seen = backend_.max_running.load();
    while (now > seen && !backend_.max_running.compare_exchange_weak(seen, now)) {
    }
    struct Leave {
      FakeBackend& b;
      ~Leave() { --b.running; }
    } leave{backend_};

    const std::string& verb = request.argv.at(0);
    std::string arg = request.argv.size() > 1 ? request.argv[1] : "";
    ExecResult result;
    result.outcome = Outcome::kExited;
    OutputCollector out(StreamKind::kStdout, request.output_cap_bytes,
                        request.spill_dir.empty() ? "" : request.spill_dir + "/stdout.log",
                        request.on_output);
    OutputCollector err(StreamKind::kStderr, request.output_cap_bytes,
                        request.spill_dir.empty() ? "" : request.spill_dir + "/stderr.log",
                        request.on_output);
    if (verb == "fail") {
      result.exit_code = std::stoi(arg);
      err.Append("failing with " + arg + "\n");
    } else if (verb == "print") {
      out.Append(arg);
    } else if (verb == "broken") {
      return FailedPreconditionError("fake backend is broken for good");
    } else if (verb == "infra-outcome") {
      result.outcome = Outcome::kInfraError;  // against backend.h's contract
      result.error = "fake backend lost the command";
    } else if (verb == "flaky") {
      int attempt;
      {
        std::lock_guard lock(backend_.mu_);
        attempt = backend_.attempts_[task_];
      }
      if (attempt <= std::stoi(arg)) return UnavailableError("fake flake #" + std::to_string(attempt));
    } else if (verb == "sleep" || verb == "hang") {
      auto length = verb == "hang" ? std::chrono::hours(1)
                                   : std::chrono::milliseconds(std::stoi(arg));
      auto limit = length;
      bool honours_timeout = verb == "sleep" && request.timeout.count() > 0;
      if (honours_timeout && request.timeout < length) limit = request.timeout;
      std::unique_lock lock(mu_);
      bool ended = cv_.wait_for(lock, limit, [&] { return terminated_; });
      if (ended) {
        result.outcome = Outcome::kCancelled;
      } else if (limit < length) {
        result.outcome = Outcome::kTimedOut;
        result.exit_code = kExitTimedOut;
      }
    }
    result.stdout_stream = out.Finish();
    result.stderr_stream = err.Finish();
    result.sandbox_id = id_;
    return result;
  }

  Status Terminate() override {
    std::lock_guard lock(mu_);
    if (!terminated_) {
      terminated_ = true;
      ++backend_.terminated;
      cv_.notify_all();
    }
    return OkStatus();
  }

 private:
  FakeBackend& backend_;
  std::string task_;
  std::string id_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool terminated_ = false;
};

FakeBackend::FakeBackend(std::string archive_root, std::string name)
    : name_(std::move(name)), archive_root_(std::move(archive_root)) {}

Result<std::unique_ptr<Sandbox>> FakeBackend::Create(const SandboxSpec& spec) {
  ++created;
  std::string task = spec.labels.count("task") ? spec.labels.at("task") : "?";
  {
    std::lock_guard lock(mu_);
    ++attempts_[task];
    specs_[task] = spec;
  }
  return std::unique_ptr<Sandbox>(new FakeSandbox(*this, task));
}

Result<std::unique_ptr<ArchiveStore>> FakeBackend::OpenArchive() {
  return std::unique_ptr<ArchiveStore>(new DirectoryArchiveStore(archive_root_));
}

int FakeBackend::AttemptsOf(const std::string& task) {
  std::lock_guard lock(mu_);
  return attempts_[task];
}

SandboxSpec FakeBackend::SpecOf(const std::string& task) {
  std::lock_guard lock(mu_);
  return specs_[task];
}

}  // namespace sandrun::testing
