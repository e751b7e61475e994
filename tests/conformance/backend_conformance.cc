#include "conformance/backend_conformance.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "conformance/helper_protocol.h"
#include "sandrun/archive.h"
#include "sandrun/engine.h"
#include "sandrun/util.h"
#include "support/docker_required.h"
#include "support/test_util.h"

#ifndef SANDRUN_CONFORMANCE_HELPER
#error "SANDRUN_CONFORMANCE_HELPER must name the built conformance_helper"
#endif

namespace sandrun::conformance {
namespace {

namespace fs = std::filesystem;
using ::sandrun::testing::ReadFile;
using ::sandrun::testing::TempDir;

constexpr const char* kHelper = "./conformance_helper";
constexpr std::uint64_t kMiB = 1024 * 1024;

ExecRequest Shell(const std::string& script) {
  ExecRequest request;
  request.argv = {"/bin/sh", "-c", script};
  return request;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

// Memory figures of this process from /proc/self/status, in KiB.
std::int64_t StatusKiB(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::stoll(line.substr(key.size() + 1));
  }
  return -1;
}

// Resets VmHWM to the current RSS (proc(5), clear_refs "5"), so the peak
// measured afterwards belongs to the case and not to earlier ones.
bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

// A TCP listener on 127.0.0.1, opened by the test itself.
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        listen(fd_, 16) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~LoopbackListener() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}
bool Lacks(const std::string& text, const std::string& part) { return !Contains(text, part); }

bool AnyNoteMentions(const ExecResult& result, const std::string& word) {
  for (const auto& note : result.notes) {
    if (note.find(word) != std::string::npos) return true;
  }
  return false;
}

class KillingBackend;

// A sandbox of KillingBackend: on the first output of a command, its
// sandbox is killed from outside.
class KillingSandbox : public Sandbox {
 public:
  KillingSandbox(std::unique_ptr<Sandbox> inner, KillingBackend& owner)
      : inner_(std::move(inner)), owner_(owner) {}
  const std::string& Id() const override { return inner_->Id(); }
  Status Put(const FileUpload& upload) override { return inner_->Put(upload); }
  Status PutAll(const std::vector<FileUpload>& uploads) override {
    return inner_->PutAll(uploads);
  }
  Result<ExecResult> Exec(const ExecRequest& request) override;
  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const fs::path& host_dir) override {
    return inner_->Get(sandbox_path, host_dir);
  }
  Status Terminate() override { return inner_->Terminate(); }

 private:
  std::unique_ptr<Sandbox> inner_;
  KillingBackend& owner_;
};

// The backend under test, for the engine, with every command's sandbox
// killed from outside (ConformanceTarget::kill_sandbox_from_outside) once
// the command has started, each kill from a thread of its own.
class KillingBackend : public Backend {
 public:
  KillingBackend(Backend& inner, std::function<Status(const std::string&)> kill)
      : inner_(inner), kill_(std::move(kill)) {}
  ~KillingBackend() override { JoinKillers(); }

  std::string_view Name() const override { return inner_.Name(); }
  Capabilities GetCapabilities() const override { return inner_.GetCapabilities(); }
  Status CheckAvailable() override { return inner_.CheckAvailable(); }
  Status ValidateSpec(const SandboxSpec& spec) override { return inner_.ValidateSpec(spec); }
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override {
    SANDRUN_ASSIGN_OR_RETURN(std::unique_ptr<Sandbox> sandbox, inner_.Create(spec));
    return std::unique_ptr<Sandbox>(std::make_unique<KillingSandbox>(std::move(sandbox), *this));
  }
  Result<std::vector<Leftover>> ListLeftovers() override { return inner_.ListLeftovers(); }
  Status RemoveLeftover(const std::string& id) override { return inner_.RemoveLeftover(id); }
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override { return inner_.OpenArchive(); }

  void KillSoon(const std::string& sandbox_id) {
    std::lock_guard<std::mutex> lock(mu_);
    killers_.emplace_back([this, sandbox_id] {
      Status killed = kill_(sandbox_id);
      std::lock_guard<std::mutex> lock(mu_);
      kills_.push_back(killed);
    });
  }
  void JoinKillers() {
    std::vector<std::thread> killers;
    {
      std::lock_guard<std::mutex> lock(mu_);
      killers.swap(killers_);
    }
    for (auto& killer : killers) killer.join();
  }
  std::vector<Status> kills() {
    std::lock_guard<std::mutex> lock(mu_);
    return kills_;
  }

 private:
  Backend& inner_;
  std::function<Status(const std::string&)> kill_;
  std::mutex mu_;
  std::vector<std::thread> killers_;  // Guarded by mu_.
  std::vector<Status> kills_;         // Guarded by mu_.
};

Result<ExecResult> KillingSandbox::Exec(const ExecRequest& request) {
  ExecRequest watched = request;
  auto killed = std::make_shared<std::once_flag>();
  watched.on_output = [this, killed, live = request.on_output](StreamKind kind,
                                                                std::string_view chunk) {
    std::call_once(*killed, [&] { owner_.KillSoon(Id()); });
    if (live) live(kind, chunk);
  };
  return inner_->Exec(watched);
}

// Removes a test's own directory of the archive store when it goes.
struct RemoveAtEnd {
  ArchiveStore& store;
  const std::string& path;
  ~RemoveAtEnd() { store.Remove(path).IgnoreError(); }
};

}  // namespace

void PrintTo(const ConformanceTarget& target, std::ostream* os) { *os << target.name; }

std::string ConformanceTargetName(const ::testing::TestParamInfo<ConformanceTarget>& info) {
  return info.param.name;
}

std::string Describe(const ExecResult& result) {
  std::ostringstream out;
  out << "outcome=" << OutcomeName(result.outcome) << " exit_code=" << result.exit_code
      << " signal=" << result.signal << " error='" << result.error << "'";
  for (const auto& note : result.notes) out << "\n  note: " << note;
  out << "\n  stdout: " << result.stdout_stream.text.substr(0, 300)
      << "\n  stderr: " << result.stderr_stream.text.substr(0, 300);
  return out.str();
}

void BackendConformanceTest::SetUp() {
  if (!GetParam().skip_reason.empty()) {
    if (GetParam().skip_is_failure) GTEST_FAIL() << GetParam().skip_reason;
    GTEST_SKIP() << GetParam().skip_reason;
  }
  auto made = GetParam().make();
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  backend_ = std::move(made).value();
}

void BackendConformanceTest::TearDown() { backend_.reset(); }

std::unique_ptr<Sandbox> BackendConformanceTest::NewSandbox(
    const std::function<void(SandboxSpec&)>& adjust) {
  SandboxSpec spec = GetParam().base_spec;
  spec.labels.emplace("managed-by", "sandrun");
  spec.labels.emplace("task", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  if (adjust) adjust(spec);
  auto created = backend_->Create(spec);
  if (!created.ok()) {
    ADD_FAILURE() << "Create failed: " << created.status().ToString();
    return nullptr;
  }
  return std::move(created).value();
}

std::unique_ptr<Sandbox> BackendConformanceTest::NewSandboxWithHelper(
    const std::function<void(SandboxSpec&)>& adjust) {
  auto sandbox = NewSandbox(adjust);
  if (sandbox == nullptr) return nullptr;
  Status put = sandbox->Put(FileUpload{SANDRUN_CONFORMANCE_HELPER, "conformance_helper"});
  if (!put.ok()) {
    ADD_FAILURE() << "uploading conformance_helper failed: " << put.ToString();
    return nullptr;
  }
  return sandbox;
}

ExecResult BackendConformanceTest::Run(Sandbox& sandbox, ExecRequest request) {
  auto result = sandbox.Exec(request);
  if (!result.ok()) {
    ADD_FAILURE() << "Exec(" << QuoteForDisplay(request.argv)
                  << ") failed: " << result.status().ToString();
    ExecResult failed;
    failed.error = result.status().ToString();
    return failed;
  }
  return std::move(result).value();
}

ExecResult BackendConformanceTest::RunWithTimeout(Sandbox& sandbox, ExecRequest request) {
  // Generous: escalation to SIGKILL and a remote round trip come on top.
  constexpr auto kWatchdogSlack = std::chrono::seconds(30);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  ExecResult result;
  std::thread runner([&] {
    ExecResult ran = Run(sandbox, request);
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(ran);
    done = true;
    cv.notify_all();
  });
  bool watchdog_fired = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, request.timeout + kWatchdogSlack, [&] { return done; })) {
      watchdog_fired = true;
      lock.unlock();
      sandbox.Terminate().IgnoreError();
    }
  }
  runner.join();
  EXPECT_FALSE(watchdog_fired) << "the backend's own timeout did not end the command; the "
                                  "test's stand-in for the host deadline did: "
                               << Describe(result);
  if (result.outcome == Outcome::kTimedOut) {
    EXPECT_TRUE(result.ended_by.empty() || result.ended_by == kEndedByTimeout)
        << "ended_by=" << result.ended_by;
  }
  return result;
}

Capabilities BackendConformanceTest::DeclaredCapabilities() {
  Capabilities declared = backend_->GetCapabilities();
  const Capabilities& required = GetParam().required;
  EXPECT_TRUE(declared.isolates_network || !required.isolates_network)
      << "this environment can isolate the network, but the backend no longer says so";
  EXPECT_TRUE(declared.limits_memory || !required.limits_memory);
  EXPECT_TRUE(declared.limits_cpu || !required.limits_cpu);
  EXPECT_TRUE(declared.reports_oom || !required.reports_oom);
  EXPECT_TRUE(declared.supports_images || !required.supports_images);
  return declared;
}

ExecResult BackendConformanceTest::RunHelper(Sandbox& sandbox, std::vector<std::string> args,
                                             ExecRequest request) {
  request.argv = {kHelper};
  request.argv.insert(request.argv.end(), args.begin(), args.end());
  return Run(sandbox, std::move(request));
}

// ---- exit codes, exec failures, signals ----

TEST_P(BackendConformanceTest, ExitCodesArePassedThrough) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  for (int code : {0, 1, 42}) {
    ExecResult result = RunHelper(*sandbox, {"exit", std::to_string(code)});
    EXPECT_EQ(result.outcome, Outcome::kExited) << Describe(result);
    EXPECT_EQ(result.exit_code, code) << Describe(result);
    EXPECT_EQ(ExitCodeOf(result), code);
    EXPECT_EQ(Passed(result), code == 0);
  }
  ExecResult shell = Run(*sandbox, Shell("exit 42"));
  EXPECT_EQ(shell.exit_code, 42) << Describe(shell);
}

TEST_P(BackendConformanceTest, MissingCommandIs127) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.argv = {"sandrun-conformance-no-such-command"};
  ExecResult result = Run(*sandbox, request);
  EXPECT_EQ(result.outcome, Outcome::kExited) << Describe(result);
  EXPECT_EQ(result.exit_code, kExitNotFound) << Describe(result);
  EXPECT_EQ(ExitCodeOf(result), kExitNotFound);
  EXPECT_PRED2(Contains, result.stderr_stream.text, "sandrun-conformance-no-such-command");
}

TEST_P(BackendConformanceTest, NonExecutableFileIs126) {
  TempDir host;
  fs::path script = host.Write("not-executable", "#!/bin/sh\necho should not run\n");
  fs::permissions(script, fs::perms::owner_read | fs::perms::owner_write);
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ASSERT_TRUE(sandbox->Put(FileUpload{script.string(), "not-executable"}).ok());
  ExecRequest request;
  request.argv = {"./not-executable"};
  ExecResult result = Run(*sandbox, request);
  EXPECT_EQ(result.outcome, Outcome::kExited) << Describe(result);
  EXPECT_EQ(result.exit_code, kExitNotExecutable) << Describe(result);
  EXPECT_PRED2(Lacks, result.stdout_stream.text, "should not run");
}

TEST_P(BackendConformanceTest, SignalsAreReportedAsSignaled) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  for (int sig : {SIGSEGV, SIGKILL}) {
    ExecResult result = RunHelper(*sandbox, {"signal", std::to_string(sig)});
    EXPECT_EQ(result.outcome, Outcome::kSignaled) << Describe(result);
    EXPECT_EQ(result.signal, sig) << Describe(result);
    EXPECT_EQ(ExitCodeOf(result), kExitSignalBase + sig);
  }
}

// ---- timeouts and cancellation ----

TEST_P(BackendConformanceTest, TimeoutKillsTheWholeTree) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.timeout = std::chrono::milliseconds(1500);
  request.argv = {kHelper, "grandchild", "grandchild.pid"};
  ExecResult result = RunWithTimeout(*sandbox, request);
  EXPECT_EQ(result.outcome, Outcome::kTimedOut) << Describe(result);
  EXPECT_EQ(result.exit_code, kExitTimedOut);
  EXPECT_EQ(ExitCodeOf(result), kExitTimedOut);
  EXPECT_NE(result.signal, 0) << "the signal that ended it";
  EXPECT_PRED2(Contains, result.stdout_stream.text, "started") << "output before the timeout";

  std::string pid = Trimmed(Run(*sandbox, Shell("cat grandchild.pid")).stdout_stream.text);
  ASSERT_FALSE(pid.empty()) << "the grandchild never wrote its pid";
  // Killed processes can take a moment to be reaped; poll generously.
  std::string state;
  for (int attempt = 0; attempt < 100; ++attempt) {
    state = Trimmed(RunHelper(*sandbox, {"alive", pid}).stdout_stream.text);
    if (state == "gone") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(state, "gone") << "grandchild " << pid << " survived the timeout";
}

TEST_P(BackendConformanceTest, TimeoutKillsAChildThatCalledSetsid) {
  auto unsupported = GetParam().unsupported_cases.find("TimeoutKillsAChildThatCalledSetsid");
  if (unsupported != GetParam().unsupported_cases.end()) {
    GTEST_SKIP() << "unsupported: " << unsupported->second;
  }
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.timeout = std::chrono::milliseconds(1000);
  request.argv = {kHelper, "setsid-heartbeat", "heartbeat"};
  ExecResult result = RunWithTimeout(*sandbox, request);
  EXPECT_EQ(result.outcome, Outcome::kTimedOut) << Describe(result);
  EXPECT_EQ(ExitCodeOf(result), kExitTimedOut);

  // The child left the process group and session; its heartbeat file must
  // stop growing once the timeout has ended the command.
  auto size = [&] {
    return std::atoll(Trimmed(RunHelper(*sandbox, {"size", "heartbeat"}).stdout_stream.text).c_str());
  };
  long long before = size();
  long long after = -2;
  for (int attempt = 0; attempt < 25 && before != after; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    if (after != -2) before = after;
    after = size();
  }
  EXPECT_GT(after, 0) << "the setsid'd child never beat: the case proves nothing";
  EXPECT_EQ(before, after) << "a child that called setsid survived the timeout";
}

TEST_P(BackendConformanceTest, TimeoutEscalatesToSigkill) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.timeout = std::chrono::milliseconds(500);
  request.argv = {kHelper, "ignore-term", "600"};
  ExecResult result = RunWithTimeout(*sandbox, request);
  EXPECT_EQ(result.outcome, Outcome::kTimedOut) << Describe(result);
  EXPECT_EQ(result.signal, SIGKILL) << "SIGTERM is ignored, so SIGKILL must end it";
  EXPECT_LT(result.durations.exec_ms, 60'000);
}

TEST_P(BackendConformanceTest, TerminateFromAnotherThreadCancelsExec) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  ExecRequest request;
  request.on_output = [&](StreamKind, std::string_view chunk) {
    if (chunk.find("started") == std::string_view::npos) return;
    std::lock_guard<std::mutex> lock(mu);
    started = true;
    cv.notify_all();
  };
  request.argv = {kHelper, "sleep", "600"};
  Result<ExecResult> result = InternalError("not run");
  std::thread runner([&] { result = sandbox->Exec(request); });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(60), [&] { return started; });
  }
  auto cancel_time = std::chrono::steady_clock::now();
  EXPECT_TRUE(sandbox->Terminate().ok());
  runner.join();
  auto took = std::chrono::steady_clock::now() - cancel_time;
  ASSERT_TRUE(started) << "the command never started";
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->outcome, Outcome::kCancelled) << Describe(*result);
  EXPECT_EQ(ExitCodeOf(*result), kExitInterrupted);
  EXPECT_PRED2(Contains, result->stdout_stream.text, "started") << "output so far is kept";
  EXPECT_LT(took, std::chrono::seconds(30)) << "Terminate() must end Exec promptly";
  EXPECT_TRUE(sandbox->Terminate().ok()) << "Terminate() is idempotent";
}

// The contract for every backend: a sandbox whose lifetime ends while a
// command runs times the command out (exit 124) and says the lifetime did it;
// it is never an infrastructure error (which the engine would retry).
TEST_P(BackendConformanceTest, LifetimeEndingDuringACommandIsATimeout) {
  auto sandbox = NewSandbox([](SandboxSpec& spec) { spec.lifetime = std::chrono::seconds(3); });
  ASSERT_NE(sandbox, nullptr);
  auto start = std::chrono::steady_clock::now();
  ExecResult result = Run(*sandbox, Shell("echo started; sleep 120"));
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(result.outcome, Outcome::kTimedOut) << Describe(result);
  EXPECT_EQ(ExitCodeOf(result), kExitTimedOut) << Describe(result);
  EXPECT_TRUE(AnyNoteMentions(result, "lifetime")) << Describe(result);
  EXPECT_TRUE(AnyNoteMentions(result, "3 s")) << Describe(result);
  EXPECT_PRED2(Contains, result.stdout_stream.text, "started") << "output before the end";
  EXPECT_LT(took, std::chrono::seconds(60)) << "the lifetime did not end the command";
}

// ---- stdin, env, cwd ----

TEST_P(BackendConformanceTest, StdinRoundTripsBinaryData) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  std::string data;
  for (int round = 0; round < 4096; ++round) {
    for (int byte = 0; byte < 256; ++byte) data.push_back(static_cast<char>(byte));
  }
  ExecRequest request;
  request.stdin_data = data;
  request.output_cap_bytes = 2 * data.size();
  ExecResult echoed = RunHelper(*sandbox, {"cat"}, request);
  EXPECT_EQ(echoed.exit_code, 0) << Describe(echoed);
  EXPECT_EQ(echoed.stdout_stream.total_bytes, data.size());
  EXPECT_TRUE(echoed.stdout_stream.text == data) << "stdin came back altered";

  std::string big(8 * kMiB, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(PatternByte(i));
  ExecRequest sum_request;
  sum_request.stdin_data = big;
  ExecResult sum = RunHelper(*sandbox, {"checksum"}, sum_request);
  char expected[64];
  std::snprintf(expected, sizeof expected, "%zu %016llx\n", big.size(),
                static_cast<unsigned long long>(Fnv1a(kFnvOffset, big)));
  EXPECT_EQ(sum.stdout_stream.text, expected) << Describe(sum);

  ExecResult empty = RunHelper(*sandbox, {"cat"});
  EXPECT_EQ(empty.exit_code, 0) << "unset stdin must read as empty, not hang";
  EXPECT_EQ(empty.stdout_stream.total_bytes, 0u);
}

TEST_P(BackendConformanceTest, EnvComesFromSpecThenRequest) {
  auto sandbox = NewSandboxWithHelper([](SandboxSpec& spec) {
    spec.env["CONFORMANCE_SPEC_ONLY"] = "from-spec";
    spec.env["CONFORMANCE_BOTH"] = "from-spec";
  });
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.env["CONFORMANCE_BOTH"] = "from-request";
  request.env["CONFORMANCE_SPACES"] = "a b  c=d";
  EXPECT_EQ(RunHelper(*sandbox, {"env", "CONFORMANCE_SPEC_ONLY"}, request).stdout_stream.text,
            "from-spec\n");
  EXPECT_EQ(RunHelper(*sandbox, {"env", "CONFORMANCE_BOTH"}, request).stdout_stream.text,
            "from-request\n");
  EXPECT_EQ(RunHelper(*sandbox, {"env", "CONFORMANCE_SPACES"}, request).stdout_stream.text,
            "a b  c=d\n");
  ExecResult unset = RunHelper(*sandbox, {"env", "CONFORMANCE_NEVER_SET"});
  EXPECT_EQ(unset.exit_code, 1) << Describe(unset);
}

TEST_P(BackendConformanceTest, CwdDefaultsToWorkdirAndFollowsRequest) {
  TempDir host;
  host.Write("tree/marker.txt", "here\n");
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  ASSERT_TRUE(sandbox->Put(FileUpload{(host.path() / "tree").string(), "tree"}).ok());
  std::string workdir = Trimmed(RunHelper(*sandbox, {"pwd"}).stdout_stream.text);
  ASSERT_FALSE(workdir.empty());
  EXPECT_EQ(workdir.front(), '/');

  ExecRequest request;
  request.cwd = "tree";
  request.argv = {"../conformance_helper", "pwd"};
  ExecResult in_tree = Run(*sandbox, request);
  EXPECT_EQ(Trimmed(in_tree.stdout_stream.text), workdir + "/tree") << Describe(in_tree);
  ExecRequest cat = Shell("cat marker.txt");
  cat.cwd = "tree";
  EXPECT_EQ(Run(*sandbox, cat).stdout_stream.text, "here\n");
}

// ---- output ----

// 100 MiB through one stream. Figures: the collector keeps at most the cap
// (1 MiB here) and reads in small chunks, so the test process should not grow
// by much more than that; 48 MiB leaves room for allocator slack and for
// backends that buffer a few chunks in flight.
TEST_P(BackendConformanceTest, HundredMebibytesKeepMemoryBounded) {
  constexpr std::uint64_t kTotal = 100 * kMiB;
  constexpr std::int64_t kAllowedGrowthKiB = 48 * 1024;
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  TempDir spill;
  std::atomic<std::uint64_t> live_bytes{0};
  ExecRequest request;
  request.output_cap_bytes = kMiB;
  request.spill_dir = spill.path().string();
  request.on_output = [&](StreamKind kind, std::string_view chunk) {
    if (kind == StreamKind::kStdout) live_bytes += chunk.size();
  };
  bool peak_reset = ResetPeakRss();
  std::int64_t rss_before = StatusKiB("VmRSS");
  ExecResult result = RunHelper(*sandbox, {"bytes", std::to_string(kTotal)}, request);
  std::int64_t peak_after = StatusKiB(peak_reset ? "VmHWM" : "VmRSS");
  std::int64_t growth = peak_after - rss_before;
  RecordProperty("peak_growth_kib", static_cast<int>(growth));
  std::printf("[ figures  ] 100 MiB stdout: peak RSS growth %lld KiB (allowed %lld KiB)%s\n",
              static_cast<long long>(growth), static_cast<long long>(kAllowedGrowthKiB),
              peak_reset ? "" : " [VmHWM reset unsupported: current RSS used]");

  ASSERT_EQ(result.outcome, Outcome::kExited) << Describe(result);
  EXPECT_EQ(result.exit_code, 0);
  EXPECT_EQ(result.stdout_stream.total_bytes, kTotal);
  EXPECT_EQ(live_bytes.load(), kTotal) << "the live callback must see every byte";
  EXPECT_TRUE(result.stdout_stream.truncated);
  // The cap holds the head, the "[... N bytes omitted ...]" marker and the tail.
  EXPECT_LE(result.stdout_stream.text.size(), kMiB) << "record over the cap";
  const std::string& text = result.stdout_stream.text;
  std::size_t marker = text.find("\n[... ");
  ASSERT_NE(marker, std::string::npos);
  const std::string marker_end = " bytes omitted ...]\n";
  std::size_t tail_from = text.find(marker_end, marker);
  ASSERT_NE(tail_from, std::string::npos);
  tail_from += marker_end.size();
  ASSERT_GE(marker, kMiB / 2 - 64);
  ASSERT_GE(text.size() - tail_from, kMiB / 2 - 64);
  for (std::uint64_t i = 0; i < marker; ++i) {
    ASSERT_EQ(static_cast<unsigned char>(text[i]), PatternByte(i)) << "head differs at " << i;
  }
  for (std::uint64_t i = 1; i <= text.size() - tail_from; ++i) {
    ASSERT_EQ(static_cast<unsigned char>(text[text.size() - i]), PatternByte(kTotal - i))
        << "tail differs " << i << " bytes from the end";
  }
  EXPECT_LT(growth, kAllowedGrowthKiB) << "sandrun's memory grew with the output";

  ASSERT_FALSE(result.stdout_stream.spill_path.empty());
  std::ifstream in(result.stdout_stream.spill_path, std::ios::binary);
  std::vector<char> chunk(kMiB);
  std::uint64_t offset = 0;
  while (in.read(chunk.data(), chunk.size()) || in.gcount() > 0) {
    for (std::streamsize i = 0; i < in.gcount(); ++i, ++offset) {
      ASSERT_EQ(static_cast<unsigned char>(chunk[i]), PatternByte(offset))
          << "spill file differs at " << offset;
    }
  }
  EXPECT_EQ(offset, kTotal) << "spill file must hold the whole stream";
}

TEST_P(BackendConformanceTest, BinaryAndUtf8OutputArePreservedExactly) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  std::string all;
  for (int byte = 0; byte < 256; ++byte) all.push_back(static_cast<char>(byte));
  ExecResult binary = RunHelper(*sandbox, {"allbytes"});
  EXPECT_EQ(binary.stdout_stream.total_bytes, 256u);
  EXPECT_FALSE(binary.stdout_stream.truncated);
  EXPECT_TRUE(binary.stdout_stream.text == all) << "binary output altered";
  ExecResult utf8 = RunHelper(*sandbox, {"utf8"});
  EXPECT_EQ(utf8.stdout_stream.text, std::string(kUtf8Sample));
}

TEST_P(BackendConformanceTest, StdoutAndStderrAreSeparate) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = RunHelper(*sandbox, {"streams"});
  EXPECT_EQ(result.stdout_stream.text, "to-stdout\n") << Describe(result);
  EXPECT_EQ(result.stderr_stream.text, "to-stderr\n") << Describe(result);
  EXPECT_EQ(result.stderr_stream.total_bytes, 10u);
}

// ---- files ----

TEST_P(BackendConformanceTest, UploadsFilesAndDirectories) {
  TempDir host;
  fs::path file = host.Write("single.txt", "single file\n");
  host.Write("dir/a/b.txt", "nested\n");
  fs::path tool = host.Write("dir/bin/tool.sh", "#!/bin/sh\necho tool ran\n");
  fs::permissions(tool, fs::perms::owner_exec, fs::perm_options::add);
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ASSERT_TRUE(sandbox->Put(FileUpload{file.string(), ""}).ok());
  ASSERT_TRUE(sandbox->Put(FileUpload{file.string(), "renamed/copy.txt"}).ok());
  ASSERT_TRUE(sandbox->Put(FileUpload{(host.path() / "dir").string(), "dir"}).ok());
  EXPECT_EQ(Run(*sandbox, Shell("cat single.txt renamed/copy.txt dir/a/b.txt")).stdout_stream.text,
            "single file\nsingle file\nnested\n");
  ExecRequest run_tool;
  run_tool.argv = {"./dir/bin/tool.sh"};
  ExecResult ran = Run(*sandbox, run_tool);
  EXPECT_EQ(ran.stdout_stream.text, "tool ran\n") << "exec bit lost? " << Describe(ran);

  Status missing = sandbox->Put(FileUpload{(host.path() / "no-such-file").string(), ""});
  EXPECT_EQ(missing.code(), StatusCode::kNotFound) << missing.ToString();
  EXPECT_PRED2(Contains, missing.message(), "no-such-file");
}

// The `cp` rule (UploadDestination), the same on every backend: a
// destination that names a directory receives the source under its own
// name, for a file and for a directory, through Put and PutAll alike.
TEST_P(BackendConformanceTest, AnUploadOntoADirectoryKeepsItsName) {
  TempDir host;
  fs::path file = host.Write("note.txt", "note\n");
  host.Write("tree/leaf.txt", "leaf\n");
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  Status put = sandbox->Put(FileUpload{file.string(), "."});
  ASSERT_TRUE(put.ok()) << put.ToString();
  put = sandbox->PutAll({{file.string(), "in/", false},
                         {file.string(), "in/deeper/.", false},
                         {(host.path() / "tree").string(), ".", false},
                         {(host.path() / "tree").string() + "/", "copies/", false}});
  ASSERT_TRUE(put.ok()) << put.ToString();
  ExecResult listed = Run(*sandbox, Shell("test -d . && cat note.txt in/note.txt "
                                          "in/deeper/note.txt tree/leaf.txt copies/tree/leaf.txt"));
  EXPECT_EQ(listed.stdout_stream.text, "note\nnote\nnote\nleaf\nleaf\n") << Describe(listed);
  // The working directory is still a directory the next command can enter.
  EXPECT_EQ(Run(*sandbox, Shell("echo still here")).exit_code, 0);
}

TEST_P(BackendConformanceTest, DownloadsFilesAndDirectories) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecResult made = Run(*sandbox, Shell("mkdir -p out/sub && printf one > out/sub/f.txt && "
                                        "printf two > out/g.txt && printf three > lone.txt"));
  ASSERT_EQ(made.exit_code, 0) << Describe(made);
  TempDir host;
  auto tree = sandbox->Get("out", host.path() / "dl");
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  EXPECT_EQ(*tree, (std::vector<std::string>{"out/g.txt", "out/sub/f.txt"}));
  EXPECT_EQ(ReadFile(host.path() / "dl/out/sub/f.txt"), "one");
  EXPECT_EQ(ReadFile(host.path() / "dl/out/g.txt"), "two");
  auto lone = sandbox->Get("lone.txt", host.path() / "dl");
  ASSERT_TRUE(lone.ok()) << lone.status().ToString();
  EXPECT_EQ(*lone, std::vector<std::string>{"lone.txt"});
  EXPECT_EQ(ReadFile(host.path() / "dl/lone.txt"), "three");
  auto missing = sandbox->Get("not-there", host.path() / "dl");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// The upload rule (sandrun/upload_symlinks.h): a top-level symlink is
// followed, to a file or to a directory.
TEST_P(BackendConformanceTest, UploadsFollowATopLevelSymlink) {
  TempDir host;
  fs::path real = host.Write("real.txt", "through the link\n");
  host.Write("real-dir/inner.txt", "inner\n");
  fs::create_symlink(real, host.path() / "link.txt");
  fs::create_symlink(host.path() / "real-dir", host.path() / "link-dir");
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  Status file = sandbox->Put(FileUpload{(host.path() / "link.txt").string(), "up.txt"});
  ASSERT_TRUE(file.ok()) << file.ToString();
  Status dir = sandbox->Put(FileUpload{(host.path() / "link-dir").string(), "up-dir"});
  ASSERT_TRUE(dir.ok()) << dir.ToString();
  ExecResult r = Run(*sandbox, Shell("test -f up.txt && test ! -L up.txt && cat up.txt && "
                                     "test ! -L up-dir && cat up-dir/inner.txt"));
  EXPECT_EQ(r.exit_code, 0) << Describe(r);
  EXPECT_EQ(r.stdout_stream.text, "through the link\ninner\n") << Describe(r);
}

// Inside an uploaded directory a link is kept, as a link, when it stays in
// the directory; one that leaves it refuses the upload, naming the link, and
// what it points at never reaches the sandbox.
TEST_P(BackendConformanceTest, UploadedDirectoriesKeepOnlyLinksThatStayInside) {
  TempDir host;
  host.Write("tree/a.txt", "inside\n");
  fs::create_directories(host.path() / "tree/sub");
  fs::create_symlink("../a.txt", host.path() / "tree/sub/inside-link");
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  Status kept = sandbox->Put(FileUpload{(host.path() / "tree").string(), "tree"});
  ASSERT_TRUE(kept.ok()) << kept.ToString();
  ExecResult r = Run(*sandbox, Shell("test -L tree/sub/inside-link && cat tree/sub/inside-link"));
  EXPECT_EQ(r.exit_code, 0) << "the inside link was not kept as a link: " << Describe(r);
  EXPECT_EQ(r.stdout_stream.text, "inside\n") << Describe(r);

  fs::path secret = host.Write("outside/secret.txt", "must-not-upload\n");
  host.Write("leaky/b.txt", "b\n");
  fs::create_symlink(secret, host.path() / "leaky/escaping-abs");
  Status refused = sandbox->Put(FileUpload{(host.path() / "leaky").string(), "leaky"});
  EXPECT_FALSE(refused.ok()) << "a link out of the uploaded directory was accepted";
  EXPECT_PRED2(Contains, refused.message(), "escaping-abs");

  host.Write("leaky2/c.txt", "c\n");
  fs::create_symlink("../outside/secret.txt", host.path() / "leaky2/escaping-rel");
  refused = sandbox->Put(FileUpload{(host.path() / "leaky2").string(), "leaky2"});
  EXPECT_FALSE(refused.ok()) << "a relative link out of the uploaded directory was accepted";
  EXPECT_PRED2(Contains, refused.message(), "escaping-rel");

  ExecResult after = Run(*sandbox, Shell("cat leaky/escaping-abs leaky2/escaping-rel 2>/dev/null; "
                                         "true"));
  EXPECT_PRED2(Lacks, after.stdout_stream.text, "must-not-upload") << Describe(after);
}

// No sandbox sees the result archive: records and spills reach it only
// through sandrun. A task lists and writes where the archive is (or was once
// mounted); afterwards the archive's records are unchanged and complete.
TEST_P(BackendConformanceTest, SandboxesNeitherSeeNorChangeTheArchive) {
  if (!GetParam().archive_visible_reason.empty()) {
    GTEST_SKIP() << "unsupported: " << GetParam().archive_visible_reason;
  }
  auto opened = backend_->OpenArchive();
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<ArchiveStore> store = std::move(opened).value();
  const std::string prefix = "conformance-" + RandomHex(10);
  RemoveAtEnd remove{*store, prefix};
  const std::string record = "{\"record\": \"" + prefix + "\"}";
  const std::string spill(300 * 1024, 's');
  ASSERT_TRUE(store->PutBytes(prefix + "/tasks/t.json", record).ok());
  ASSERT_TRUE(store->PutBytes(prefix + "/artifacts/t/stdout.log", spill).ok());

  std::string listing, writes;
  for (const std::string& path : GetParam().archive_paths) {
    const std::string dir = path + "/" + prefix;
    listing += "ls -laR '" + path + "' 2>&1; ";
    writes += "{ mkdir -p '" + dir + "/tasks' && echo forged > '" + dir + "/tasks/t.json'; " +
              "echo planted > '" + dir + "/planted'; rm -f '" + dir +
              "/artifacts/t/stdout.log'; } >/dev/null 2>&1; ";
  }
  // With and without network: hiding must not depend on the network mode.
  for (NetworkMode mode : {NetworkMode::kNone, NetworkMode::kOpen}) {
    SCOPED_TRACE(std::string("network ") + std::string(NetworkModeName(mode)));
    auto sandbox = NewSandbox([mode](SandboxSpec& spec) { spec.network = mode; });
    ASSERT_NE(sandbox, nullptr);
    ExecResult r = Run(*sandbox, Shell(listing + writes + "true"));
    EXPECT_EQ(r.exit_code, 0) << Describe(r);
    EXPECT_PRED2(Lacks, r.stdout_stream.text, prefix) << "the sandbox listed the archive";
  }

  auto read = store->ReadBytes(prefix + "/tasks/t.json");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, record) << "a sandbox rewrote a record";
  auto spilled = store->ReadBytes(prefix + "/artifacts/t/stdout.log");
  ASSERT_TRUE(spilled.ok()) << "a sandbox removed a spill: " << spilled.status().ToString();
  EXPECT_TRUE(*spilled == spill) << "a sandbox changed a spill";
  auto names = store->List(prefix);
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, (std::vector<std::string>{"artifacts/", "tasks/"}))
      << "a sandbox added to the archive";
}

// ReadTree gives exactly the files a filter accepts, below directories it
// accepts, and asks about each directory by its path with a trailing '/':
// `results list` reads every run's summary this way, in one pass where the
// store can.
TEST_P(BackendConformanceTest, TheArchiveReadsATreeThroughAFilter) {
  auto opened = backend_->OpenArchive();
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<ArchiveStore> store = std::move(opened).value();
  const std::string prefix = "conformance-tree-" + RandomHex(10);
  RemoveAtEnd remove{*store, prefix};
  const std::map<std::string, std::string> written = {
      {prefix + "/a/run.json", "{\"run\": \"a\"}"},
      {prefix + "/a/parts/1.json", "part one"},
      {prefix + "/a/parts/2.txt", "not json"},
      {prefix + "/a/artifacts/t/stdout.log", std::string(200 * 1024, 'o')},
      {prefix + "/b/run.json", "{\"run\": \"b\"}"},
      {prefix + "/c/run.json", ""},
  };
  for (const auto& [path, data] : written) {
    ASSERT_TRUE(store->PutBytes(path, data).ok()) << path;
  }
  std::set<std::string> directories_asked;
  auto tree = store->ReadTree(prefix, [&](const std::string& path) {
    if (path.back() == '/') {
      directories_asked.insert(path);
      return path != prefix + "/b/" && path != prefix + "/a/artifacts/";
    }
    return path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  });
  ASSERT_TRUE(tree.ok()) << tree.status().ToString();
  std::map<std::string, std::string> expected = {
      {prefix + "/a/run.json", written.at(prefix + "/a/run.json")},
      {prefix + "/a/parts/1.json", "part one"},
      {prefix + "/c/run.json", ""},
  };
  EXPECT_EQ(*tree, expected);
  for (const std::string& dir : {"/a/", "/a/parts/", "/b/", "/c/"}) {
    EXPECT_EQ(directories_asked.count(prefix + dir), 1u) << "never asked about " << dir;
  }
  EXPECT_EQ(directories_asked.count(prefix + "/a/artifacts/t/"), 0u)
      << "descended into a directory the filter refused";

  auto below = store->ReadTree(prefix + "/a/parts", [](const std::string&) { return true; });
  ASSERT_TRUE(below.ok()) << below.status().ToString();
  EXPECT_EQ(*below, (std::map<std::string, std::string>{{prefix + "/a/parts/1.json", "part one"},
                                                        {prefix + "/a/parts/2.txt", "not json"}}));
  EXPECT_EQ(store->ReadTree(prefix + "/missing", [](const std::string&) { return true; })
                .status()
                .code(),
            StatusCode::kNotFound);
}

// Whatever a backend calls "inside", a download may never write outside the
// target directory: it is refused (kPermissionDenied naming the path) or
// lands entirely under host_dir.
TEST_P(BackendConformanceTest, DownloadsNeverEscapeTheTargetDirectory) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecResult made = Run(*sandbox, Shell("ln -s ../../../../../../../../../etc escape-dir && "
                                        "ln -s /etc/passwd escape-file && mkdir -p mixed && "
                                        "printf ok > mixed/ok.txt && ln -s /etc/hostname mixed/link"));
  ASSERT_EQ(made.exit_code, 0) << Describe(made);
  TempDir host;
  fs::path target = host.path() / "target";
  for (const std::string path : {"escape-dir", "escape-file", "mixed"}) {
    SCOPED_TRACE(path);
    auto got = sandbox->Get(path, target);
    if (!got.ok()) {
      EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied) << got.status().ToString();
      EXPECT_PRED2(Contains, got.status().message(), fs::path(path).filename().string());
      continue;
    }
    for (const auto& written : *got) {
      EXPECT_TRUE(IsSafeRelativePath(written)) << written;
      EXPECT_TRUE(fs::exists(fs::symlink_status(target / written))) << written;
    }
  }
  for (const auto& entry : fs::directory_iterator(host.path())) {
    EXPECT_EQ(entry.path().filename(), "target") << "written outside the target: " << entry.path();
  }
  if (!fs::exists(target)) return;  // Every download was refused before writing.
  for (const auto& entry : fs::recursive_directory_iterator(target)) {
    EXPECT_FALSE(fs::is_symlink(entry.symlink_status())) << "symlink left in target: " << entry.path();
  }
}

// Every path a task names inside its sandbox is relative and free of "..":
// anything else is kInvalidArgument naming the path, on every backend, and
// nothing lands outside (the targets sit in the test's own directory).
TEST_P(BackendConformanceTest, PathsOutsideTheSandboxAreRefused) {
  TempDir host;
  fs::path payload = host.Write("payload.txt", "x");
  fs::path outside = host.path() / "outside";
  fs::create_directories(outside);
  std::string climbing = "../../../../../../../../../../../.." + (outside / "climbed.txt").string();
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  for (const std::string& dest : {(outside / "absolute.txt").string(), climbing, std::string("a/../..")}) {
    Status put = sandbox->Put(FileUpload{payload.string(), dest});
    EXPECT_EQ(put.code(), StatusCode::kInvalidArgument) << dest << ": " << put.ToString();
    EXPECT_PRED2(Contains, put.message(), dest);
  }
  for (const std::string& path : {payload.string(), std::string("../../../../etc/passwd")}) {
    auto got = sandbox->Get(path, host.path() / "target");
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << path;
  }
  for (const std::string& cwd : {outside.string(), std::string("../..")}) {
    ExecRequest request = Shell("touch made-here");
    request.cwd = cwd;
    auto ran = sandbox->Exec(request);
    EXPECT_EQ(ran.status().code(), StatusCode::kInvalidArgument) << cwd;
  }
  SandboxSpec absolute_workdir = GetParam().base_spec;
  absolute_workdir.labels.emplace("managed-by", "sandrun");
  absolute_workdir.workdir = outside.string();
  auto created = backend_->Create(absolute_workdir);
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(fs::is_empty(outside)) << "something landed outside the sandbox";
  EXPECT_FALSE(fs::exists(host.path() / "target"));
}

// ---- network ----

TEST_P(BackendConformanceTest, NetworkNoneBlocksLoopback) {
  LoopbackListener listener;
  ASSERT_NE(listener.port(), 0);
  auto sandbox = NewSandboxWithHelper([](SandboxSpec& spec) { spec.network = NetworkMode::kNone; });
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = RunHelper(*sandbox, {"connect", std::to_string(listener.port())});
  if (!DeclaredCapabilities().isolates_network) {
    EXPECT_FALSE(result.network_isolated) << "claims isolation it cannot provide";
    EXPECT_TRUE(AnyNoteMentions(result, "network")) << Describe(result);
    GTEST_SKIP() << "unsupported: the backend cannot isolate the network here";
  }
  EXPECT_TRUE(result.network_isolated);
  EXPECT_NE(result.exit_code, 0) << "reached the host's loopback listener: " << Describe(result);
  EXPECT_PRED2(Lacks, result.stdout_stream.text, "connected");
}

TEST_P(BackendConformanceTest, NetworkOpenReachesLoopback) {
  LoopbackListener listener;
  ASSERT_NE(listener.port(), 0);
  auto sandbox = NewSandboxWithHelper([](SandboxSpec& spec) { spec.network = NetworkMode::kOpen; });
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = RunHelper(*sandbox, {"connect", std::to_string(listener.port())});
  EXPECT_EQ(result.exit_code, 0) << Describe(result);
  EXPECT_EQ(result.stdout_stream.text, "connected\n");
}

// ---- processes ----

TEST_P(BackendConformanceTest, ForkInsideTheSandbox) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = RunHelper(*sandbox, {"fork", "8"});
  EXPECT_EQ(result.exit_code, 0) << Describe(result);
  EXPECT_EQ(result.stdout_stream.text, "forked 8\n");
}

TEST_P(BackendConformanceTest, ManySequentialExecsInOneSandbox) {
  auto sandbox = NewSandboxWithHelper();
  ASSERT_NE(sandbox, nullptr);
  for (int i = 0; i < 40; ++i) {
    ExecResult result = RunHelper(*sandbox, {"exit", std::to_string(i % 7)});
    ASSERT_EQ(result.exit_code, i % 7) << "exec #" << i << ": " << Describe(result);
  }
}

TEST_P(BackendConformanceTest, EightSandboxesInParallel) {
  constexpr int kSandboxes = 8;
  std::vector<std::string> outputs(kSandboxes);
  std::vector<std::string> errors(kSandboxes);
  std::vector<std::thread> threads;
  SandboxSpec base = GetParam().base_spec;
  for (int i = 0; i < kSandboxes; ++i) {
    threads.emplace_back([&, i] {
      SandboxSpec spec = base;
      spec.env["CONFORMANCE_INDEX"] = std::to_string(i);
      auto sandbox = backend_->Create(spec);
      if (!sandbox.ok()) {
        errors[i] = sandbox.status().ToString();
        return;
      }
      Status put = (*sandbox)->Put(FileUpload{SANDRUN_CONFORMANCE_HELPER, "conformance_helper"});
      if (!put.ok()) {
        errors[i] = put.ToString();
        return;
      }
      ExecRequest request;
      request.argv = {kHelper, "env", "CONFORMANCE_INDEX"};
      auto result = (*sandbox)->Exec(request);
      if (!result.ok()) {
        errors[i] = result.status().ToString();
        return;
      }
      outputs[i] = result->stdout_stream.text;
    });
  }
  for (auto& thread : threads) thread.join();
  for (int i = 0; i < kSandboxes; ++i) {
    EXPECT_EQ(errors[i], "") << "sandbox " << i;
    EXPECT_EQ(outputs[i], std::to_string(i) + "\n") << "sandbox " << i;
  }
}

// ---- honesty and cleanup ----

TEST_P(BackendConformanceTest, DeclaresWhatTheEnvironmentOffers) {
  Capabilities declared = DeclaredCapabilities();
  EXPECT_GE(declared.max_parallel, 0);
}

TEST_P(BackendConformanceTest, UnenforcedLimitsAreReported) {
  Capabilities caps = DeclaredCapabilities();
  if (caps.limits_memory && caps.limits_cpu) {
    GTEST_SKIP() << "the backend enforces memory and cpu limits";
  }
  auto sandbox = NewSandbox([](SandboxSpec& spec) {
    spec.memory_mb = 256;
    spec.cpu = 1.5;
  });
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = Run(*sandbox, Shell("true"));
  EXPECT_EQ(result.exit_code, 0) << Describe(result);
  if (!caps.limits_memory) {
    EXPECT_TRUE(AnyNoteMentions(result, "memory")) << Describe(result);
  }
  if (!caps.limits_cpu) {
    EXPECT_TRUE(AnyNoteMentions(result, "cpu")) << Describe(result);
  }
}

TEST_P(BackendConformanceTest, LeftoversAreListedByLabelAndRemovable) {
  const std::string tag = RandomHex(12);
  auto sandbox = NewSandbox([&](SandboxSpec& spec) { spec.labels["conformance-tag"] = tag; });
  ASSERT_NE(sandbox, nullptr);
  auto find = [&]() -> std::optional<Leftover> {
    auto listed = backend_->ListLeftovers();
    EXPECT_TRUE(listed.ok()) << listed.status().ToString();
    if (!listed.ok()) return std::nullopt;
    for (const auto& leftover : *listed) {
      auto it = leftover.labels.find("conformance-tag");
      if (it != leftover.labels.end() && it->second == tag) return leftover;
    }
    return std::nullopt;
  };
  std::optional<Leftover> found = find();
  ASSERT_TRUE(found.has_value()) << "a live sandbox must be listed by its labels";
  EXPECT_TRUE(found->owner_alive) << found->description;
  EXPECT_FALSE(found->expired) << found->description;
  EXPECT_EQ(found->labels.at("managed-by"), "sandrun");
  EXPECT_TRUE(backend_->RemoveLeftover(found->id).ok());
  EXPECT_FALSE(find().has_value()) << "still listed after RemoveLeftover";
  sandbox->Terminate().IgnoreError();  // its resources are already gone
}

// ---- infrastructure failures ----

TEST_P(BackendConformanceTest, ExecInASandboxKilledFromOutsideFailsRetryably) {
  ASSERT_TRUE(GetParam().kill_sandbox_from_outside)
      << "the target must say how its sandboxes are killed from outside";
  KillingBackend killing(*backend_, GetParam().kill_sandbox_from_outside);
  auto created = NewSandbox();
  ASSERT_NE(created, nullptr);
  KillingSandbox sandbox(std::move(created), killing);
  auto start = std::chrono::steady_clock::now();
  auto result = sandbox.Exec(Shell("echo started; sleep 60"));
  auto elapsed = std::chrono::steady_clock::now() - start;
  killing.JoinKillers();
  ASSERT_EQ(killing.kills().size(), 1u) << "the command never printed, so nothing was killed";
  EXPECT_TRUE(killing.kills()[0].ok()) << killing.kills()[0].ToString();
  ASSERT_FALSE(result.ok()) << "backend.h: an infrastructure failure is a Status, not an "
                               "outcome: "
                            << Describe(*result);
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status().ToString();
  EXPECT_TRUE(result.status().retryable()) << result.status().ToString();
  EXPECT_LT(elapsed, std::chrono::seconds(60)) << "the killed command was waited for";
  sandbox.Terminate().IgnoreError();
}

TEST_P(BackendConformanceTest, SandboxKilledFromOutsideIsRetriedOnceThenAnInfraError) {
  ASSERT_TRUE(GetParam().kill_sandbox_from_outside)
      << "the target must say how its sandboxes are killed from outside";
  auto killing = std::make_shared<KillingBackend>(*backend_, GetParam().kill_sandbox_from_outside);
  Task task;
  task.id = "killed-from-outside";
  task.sandbox = GetParam().base_spec;
  task.exec = Shell("echo started; sleep 60");
  task.exec.timeout = std::chrono::seconds(120);
  TempDir outbox;
  RunOptions options;
  options.retries = 1;
  options.retry_backoff = std::chrono::milliseconds(10);
  options.outbox_dir = outbox.path();
  Engine engine({{killing}});
  CancelFlag never;
  auto start = std::chrono::steady_clock::now();
  auto ran = engine.Run({task}, options, never);
  auto elapsed = std::chrono::steady_clock::now() - start;
  killing->JoinKillers();
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  for (const Status& killed : killing->kills()) {
    EXPECT_TRUE(killed.ok()) << "killing from outside failed: " << killed.ToString();
  }
  EXPECT_EQ(killing->kills().size(), 2u) << "one kill per attempt";
  ASSERT_EQ(ran->tasks.size(), 1u);
  const TaskRecord& record = ran->tasks[0];
  EXPECT_EQ(record.result.outcome, Outcome::kInfraError)
      << "a sandbox killed from outside is not the test's failure: " << Describe(record.result);
  EXPECT_EQ(record.attempts, 2) << "retried once, as an infrastructure error is";
  ASSERT_EQ(record.attempt_errors.size(), 1u);
  EXPECT_EQ(record.attempt_errors[0].rfind("UNAVAILABLE: ", 0), 0u) << record.attempt_errors[0];
  EXPECT_EQ(record.result.error.rfind("UNAVAILABLE: ", 0), 0u) << record.result.error;
  EXPECT_EQ(ExitCodeOf(record.result), kExitSandrunError);
  EXPECT_EQ(ran->run.status, RunStatus::kError);
  EXPECT_EQ(BatchExitCode(ran->run), kExitSandrunError);
  EXPECT_LT(elapsed, std::chrono::seconds(60)) << "the killed command was waited for";
}

// Warm sandboxes (engine.h Isolation::kProcess), through the engine on this
// backend: tasks share a sandbox, each in its own fresh directory.
class SharedSandboxRun {
 public:
  explicit SharedSandboxRun(Backend& backend) : backend_(backend) {}
  Task NewTask(const std::string& id, const std::string& script, const SandboxSpec& spec) {
    Task task;
    task.id = id;
    task.sandbox = spec;
    task.exec = Shell(script);
    task.exec.timeout = std::chrono::seconds(60);
    task.isolation = Isolation::kProcess;
    return task;
  }
  /// With `at_once` above 1: that many workers and one sandbox of that many
  /// places, so the tasks run side by side in it.
  Result<RunOutcome> Run(std::vector<Task> tasks, std::shared_ptr<Backend> backend = nullptr,
                         int at_once = 1) {
    RunOptions options;
    options.jobs = at_once;  // One sandbox for them all.
    options.tasks_per_sandbox = at_once;
    options.sandboxes = 1;
    options.retries = 1;
    options.retry_backoff = std::chrono::milliseconds(10);
    options.outbox_dir = outbox_.path();
    if (backend == nullptr) backend = std::shared_ptr<Backend>(&backend_, [](Backend*) {});
    Engine engine({{backend}});
    CancelFlag never;
    return engine.Run(std::move(tasks), options, never);
  }

 private:
  Backend& backend_;
  TempDir outbox_;
};

TEST_P(BackendConformanceTest, TasksInASharedSandboxHaveSeparateDirectories) {
  TempDir host;
  host.Write("input.txt", "from the host\n");
  SharedSandboxRun run(*backend_);
  Task first = run.NewTask("first", "cat input.txt; echo first > mine.txt; pwd", GetParam().base_spec);
  first.sandbox.uploads.push_back({(host.path() / "input.txt").string(), "", false});
  first.sandbox.env["WHO"] = "first";
  Task second = run.NewTask("second", "ls; echo $WHO; pwd", GetParam().base_spec);
  second.sandbox.env["WHO"] = "second";
  auto ran = run.Run({first, second});
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 2u);
  const ExecResult& a = ran->tasks[0].result;
  const ExecResult& b = ran->tasks[1].result;
  ASSERT_TRUE(Passed(a)) << Describe(a);
  ASSERT_TRUE(Passed(b)) << Describe(b);
  EXPECT_EQ(ran->tasks[0].sandbox_id, ran->tasks[1].sandbox_id) << "the second task got a new sandbox";
  EXPECT_EQ(ran->tasks[1].isolation, "process");
  EXPECT_NE(a.stdout_stream.text.find("from the host"), std::string::npos) << a.stdout_stream.text;
  // The second task sees neither the first one's upload nor what it wrote,
  // and has its own env.
  EXPECT_EQ(b.stdout_stream.text.find("input.txt"), std::string::npos) << b.stdout_stream.text;
  EXPECT_EQ(b.stdout_stream.text.find("mine.txt"), std::string::npos) << b.stdout_stream.text;
  EXPECT_NE(b.stdout_stream.text.find("second\n"), std::string::npos) << b.stdout_stream.text;
  EXPECT_NE(a.stdout_stream.text.find(SharedTaskDirectory("first")), std::string::npos)
      << a.stdout_stream.text;
  EXPECT_NE(b.stdout_stream.text.find(SharedTaskDirectory("second")), std::string::npos)
      << b.stdout_stream.text;
}

TEST_P(BackendConformanceTest, ATimedOutTaskLeavesNothingForTheNextOne) {
  SharedSandboxRun run(*backend_);
  Task hung = run.NewTask("hung", "sleep 300 & echo $! > ../hung.pid; sleep 300", GetParam().base_spec);
  hung.exec.timeout = std::chrono::seconds(1);
  Task next = run.NewTask("next",
                          "p=$(cat ../hung.pid); "
                          "if kill -0 $p 2>/dev/null; then echo alive $p; else echo gone; fi",
                          GetParam().base_spec);
  auto ran = run.Run({hung, next});
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 2u);
  EXPECT_EQ(ran->tasks[0].result.outcome, Outcome::kTimedOut) << Describe(ran->tasks[0].result);
  const ExecResult& after = ran->tasks[1].result;
  ASSERT_TRUE(Passed(after)) << Describe(after);
  EXPECT_EQ(ran->tasks[1].attempts, 1);
  // Its timeout killed the task's whole tree: the next task runs in the same
  // sandbox, where the background process is gone.
  EXPECT_EQ(ran->tasks[0].sandbox_id, ran->tasks[1].sandbox_id);
  EXPECT_EQ(Trimmed(after.stdout_stream.text), "gone");
}

TEST_P(BackendConformanceTest, ASharedSandboxKilledFromOutsideIsReplacedAndTheTaskRetried) {
  ASSERT_TRUE(GetParam().kill_sandbox_from_outside)
      << "the target must say how its sandboxes are killed from outside";
  auto kill = GetParam().kill_sandbox_from_outside;
  auto killed_once = std::make_shared<std::atomic<bool>>(false);
  // Only the first command that prints is killed (the second task's first attempt).
  auto killing = std::make_shared<KillingBackend>(
      *backend_, [kill, killed_once](const std::string& id) {
        if (killed_once->exchange(true)) return OkStatus();
        return kill(id);
      });
  SharedSandboxRun run(*backend_);
  Task before = run.NewTask("before", "true", GetParam().base_spec);
  Task victim = run.NewTask("victim", "echo started; sleep 5; echo survived", GetParam().base_spec);
  Task after = run.NewTask("after", "true", GetParam().base_spec);
  auto ran = run.Run({before, victim, after}, killing);
  killing->JoinKillers();
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 3u);
  EXPECT_TRUE(Passed(ran->tasks[0].result)) << Describe(ran->tasks[0].result);
  const TaskRecord& retried = ran->tasks[1];
  EXPECT_TRUE(Passed(retried.result)) << Describe(retried.result);
  EXPECT_EQ(retried.attempts, 2) << "an infrastructure error is retried";
  ASSERT_EQ(retried.attempt_errors.size(), 1u);
  EXPECT_EQ(retried.attempt_errors[0].rfind("UNAVAILABLE: ", 0), 0u) << retried.attempt_errors[0];
  EXPECT_NE(retried.sandbox_id, ran->tasks[0].sandbox_id) << "the killed sandbox was reused";
  EXPECT_TRUE(Passed(ran->tasks[2].result)) << Describe(ran->tasks[2].result);
  EXPECT_EQ(ran->tasks[2].sandbox_id, retried.sandbox_id) << "the replacement did not stay warm";
}

// Several tasks at once in one warm sandbox (Capabilities::tasks_per_sandbox):
// each waits until all four have started, which only works if they run side
// by side; each still has its own directory.
TEST_P(BackendConformanceTest, TasksRunSideBySideInOneSandbox) {
  if (backend_->GetCapabilities().tasks_per_sandbox < 4) {
    GTEST_SKIP() << backend_->Name() << " runs fewer than 4 tasks at once in one sandbox";
  }
  SharedSandboxRun run(*backend_);
  std::vector<Task> tasks;
  for (int i = 0; i < 4; ++i) {
    Task task = run.NewTask("side-" + std::to_string(i),
                            "echo mine > own.txt; touch ../started-$SANDRUN_TASK_ID; "
                            "n=0; while [ $(ls .. | grep -c started-) -lt 4 ]; do "
                            "n=$((n+1)); [ $n -gt 600 ] && exit 3; sleep 0.05; done; "
                            "ls; echo together",
                            GetParam().base_spec);
    task.exec.timeout = std::chrono::seconds(60);
    tasks.push_back(task);
  }
  auto ran = run.Run(tasks, nullptr, 4);
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 4u);
  for (const TaskRecord& record : ran->tasks) {
    ASSERT_TRUE(Passed(record.result)) << record.task_id << ": " << Describe(record.result);
    EXPECT_EQ(record.result.stdout_stream.text, "own.txt\ntogether\n") << record.task_id;
    EXPECT_EQ(record.sandbox_id, ran->tasks[0].sandbox_id) << record.task_id;
    EXPECT_EQ(record.attempts, 1) << record.task_id;
  }
}

// A task that times out in a sandbox it shares with another running task
// ends its own processes only: the other one finishes and passes, and a
// task after it finds the timed-out task's background process gone.
TEST_P(BackendConformanceTest, ATimeoutInASharedSandboxEndsOnlyItsOwnTask) {
  if (backend_->GetCapabilities().tasks_per_sandbox < 2) {
    GTEST_SKIP() << backend_->Name() << " runs one task at a time in a sandbox";
  }
  SharedSandboxRun run(*backend_);
  Task hung = run.NewTask("hung", "sleep 300 & echo $! > ../hung.pid; sleep 300",
                          GetParam().base_spec);
  hung.exec.timeout = std::chrono::seconds(2);
  Task neighbour = run.NewTask("neighbour", "sleep 6; echo survived", GetParam().base_spec);
  Task after = run.NewTask("after",
                           "while [ ! -s ../hung.pid ]; do sleep 0.05; done; p=$(cat ../hung.pid); "
                           "if kill -0 $p 2>/dev/null; then echo alive $p; else echo gone; fi",
                           GetParam().base_spec);
  auto ran = run.Run({hung, neighbour, after}, nullptr, 2);
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 3u);
  EXPECT_EQ(ran->tasks[0].result.outcome, Outcome::kTimedOut) << Describe(ran->tasks[0].result);
  const TaskRecord& other = ran->tasks[1];
  ASSERT_TRUE(Passed(other.result)) << Describe(other.result);
  EXPECT_EQ(other.attempts, 1);
  EXPECT_EQ(other.result.stdout_stream.text, "survived\n");
  EXPECT_EQ(other.sandbox_id, ran->tasks[0].sandbox_id);
  ASSERT_TRUE(Passed(ran->tasks[2].result)) << Describe(ran->tasks[2].result);
  EXPECT_EQ(Trimmed(ran->tasks[2].result.stdout_stream.text), "gone");
  EXPECT_EQ(ran->tasks[2].sandbox_id, ran->tasks[0].sandbox_id);
}

// A command cancelled alone (ExecRequest::stop: a task whose sandrun or
// exec went away while others share its sandbox) ends promptly with what it
// started, as cancelled by itself; the command beside it runs on, and the
// sandbox runs the next command.
TEST_P(BackendConformanceTest, ACancelledCommandEndsAloneAndItsSandboxRunsTheNext) {
  const Capabilities caps = backend_->GetCapabilities();
  if (!caps.cancels_one_command || caps.tasks_per_sandbox < 2) {
    GTEST_SKIP() << backend_->Name() << " cannot end one of several commands in a sandbox alone";
  }
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest cancelled = Shell("(sleep 3; echo late > left-behind) & echo started; sleep 300");
  cancelled.timeout = std::chrono::seconds(120);
  auto stop = std::make_shared<CommandStop>();
  cancelled.stop = stop;
  // The stop comes once the command has started, as it does for a real task.
  std::mutex seen_mu;
  std::condition_variable seen_cv;
  std::string seen;
  cancelled.on_output = [&](StreamKind, std::string_view chunk) {
    std::lock_guard<std::mutex> lock(seen_mu);
    seen.append(chunk);
    seen_cv.notify_all();
  };
  ExecRequest neighbour = Shell("sleep 3; echo survived");
  neighbour.timeout = std::chrono::seconds(60);
  Result<ExecResult> beside = InternalError("not run");
  std::thread next_door([&] { beside = sandbox->Exec(neighbour); });
  std::thread canceller([&] {
    {
      std::unique_lock<std::mutex> lock(seen_mu);
      seen_cv.wait_for(lock, std::chrono::seconds(60),
                       [&] { return seen.find("started") != std::string::npos; });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // Its child is under way.
    stop->Request();
  });
  const auto start = std::chrono::steady_clock::now();
  Result<ExecResult> ended = sandbox->Exec(cancelled);
  const auto took = std::chrono::steady_clock::now() - start;
  canceller.join();
  next_door.join();
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(ended->outcome, Outcome::kCancelled) << Describe(*ended);
  EXPECT_EQ(ended->ended_by, kEndedByCancel) << Describe(*ended);
  EXPECT_EQ(ended->stdout_stream.text, "started\n") << "it was stopped before it began";
  EXPECT_LT(took, std::chrono::seconds(60));
  ASSERT_TRUE(beside.ok()) << beside.status().ToString();
  EXPECT_TRUE(Passed(*beside)) << Describe(*beside);
  EXPECT_EQ(beside->stdout_stream.text, "survived\n");
  // Past the moment the cancelled command's child would have written.
  std::this_thread::sleep_until(start + std::chrono::seconds(5));
  ExecResult after = Run(*sandbox, Shell("if [ -e left-behind ]; then echo left; else echo clean; fi"));
  ASSERT_TRUE(Passed(after)) << Describe(after);
  EXPECT_EQ(Trimmed(after.stdout_stream.text), "clean") << "the cancelled command's child outlived it";
}

// A task that crashes, and on a backend that reports OOM kills one that
// runs out of memory, beside a task in the same sandbox: each gets its own
// verdict, and the neighbour runs to its end and passes, first attempt.
TEST_P(BackendConformanceTest, ACrashOrAnOomInASharedSandboxLeavesTheNeighbourAlone) {
  const Capabilities caps = backend_->GetCapabilities();
  if (caps.tasks_per_sandbox < 3) {
    GTEST_SKIP() << backend_->Name() << " runs fewer than 3 tasks at once in one sandbox";
  }
  const bool oom = caps.reports_oom && caps.limits_memory;
  SandboxSpec spec = GetParam().base_spec;
  if (oom) spec.memory_mb = 32;  // Each task's; the shared sandbox has 3 x 32 MiB.
  SharedSandboxRun run(*backend_);
  Task crash = run.NewTask("crash", "sleep 1; kill -SEGV $$", spec);
  Task hog = oom ? run.NewTask("hog", "sleep 1; a=$(head -c 300000000 /dev/zero | tr '\\0' x); echo ${#a}", spec)
                 : run.NewTask("hog", "sleep 1; exit 3", spec);
  Task neighbour = run.NewTask("neighbour", "sleep 4; echo survived", spec);
  auto ran = run.Run({crash, hog, neighbour}, nullptr, 3);
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 3u);
  const ExecResult& crashed = ran->tasks[0].result;
  EXPECT_EQ(crashed.outcome, Outcome::kSignaled) << Describe(crashed);
  EXPECT_EQ(crashed.signal, SIGSEGV) << Describe(crashed);
  const ExecResult& hogged = ran->tasks[1].result;
  if (oom) {
    EXPECT_EQ(hogged.outcome, Outcome::kOomKilled) << Describe(hogged);
  } else {
    EXPECT_EQ(hogged.exit_code, 3) << Describe(hogged);
  }
  const TaskRecord& other = ran->tasks[2];
  ASSERT_TRUE(Passed(other.result)) << Describe(other.result);
  EXPECT_EQ(other.result.stdout_stream.text, "survived\n");
  EXPECT_EQ(other.attempts, 1);
  EXPECT_EQ(other.sandbox_id, ran->tasks[0].sandbox_id) << "they did not share a sandbox";
  EXPECT_EQ(other.sandbox_id, ran->tasks[1].sandbox_id) << "they did not share a sandbox";
}

// Every command learns where it runs (engine.h, kSandboxIdEnv...): the
// engine sets SANDRUN_SANDBOX_ID, SANDRUN_RUN_ID and SANDRUN_TASK_ID on
// every backend, in a sandbox of its own and in a shared one, over a value
// the task set itself; each names the task's own record.
TEST_P(BackendConformanceTest, CommandsSeeTheirSandboxRunAndTaskIds) {
  SharedSandboxRun run(*backend_);
  const std::string script =
      "echo \"sandbox=$SANDRUN_SANDBOX_ID\"; echo \"run=$SANDRUN_RUN_ID\"; "
      "echo \"task=$SANDRUN_TASK_ID\"";
  Task own = run.NewTask("own-sandbox", script, GetParam().base_spec);
  own.isolation = Isolation::kSandbox;
  own.sandbox.env[kTaskIdEnv] = "set-by-the-task";
  Task first = run.NewTask("shared-first", script, GetParam().base_spec);
  Task second = run.NewTask("shared-second", script, GetParam().base_spec);
  second.exec.env[kSandboxIdEnv] = "set-by-the-task";
  auto ran = run.Run({own, first, second});
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  ASSERT_EQ(ran->tasks.size(), 3u);
  for (const TaskRecord& record : ran->tasks) {
    ASSERT_TRUE(Passed(record.result)) << record.task_id << ": " << Describe(record.result);
    EXPECT_FALSE(record.sandbox_id.empty()) << record.task_id;
    EXPECT_EQ(record.run_id, ran->run.run_id) << record.task_id;
    EXPECT_EQ(record.result.stdout_stream.text, "sandbox=" + record.sandbox_id + "\nrun=" +
                                                    record.run_id + "\ntask=" +
                                                    record.task_id + "\n")
        << record.task_id;
  }
  EXPECT_EQ(ran->tasks[1].sandbox_id, ran->tasks[2].sandbox_id) << "not one shared sandbox";
  EXPECT_NE(ran->tasks[0].sandbox_id, ran->tasks[1].sandbox_id);
}

void SkipWithoutDocker(ConformanceTarget& target, const std::string& reason) {
  target.skip_reason = reason;
  if (sandrun::testing::DockerRequired()) {
    target.skip_is_failure = true;
    target.skip_reason = "Docker is required here (SANDRUN_REQUIRE_DOCKER=1 or CI=true) but " +
                         reason;
  }
}

}  // namespace sandrun::conformance
