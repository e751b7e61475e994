// The in-process side of the GoogleTest adapter (see sandrun/gtest.h).
//
// A process-wide Runtime holds the config, the marked tests and the
// Launcher of the current gtest iteration. GoogleTest's own registry is
// process-wide too, so a singleton here mirrors it rather than adding state.
#include "sandrun/gtest.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "sandrun/archive.h"
#include "sandrun/config.h"
#include "sandrun/engine.h"
#include "sandrun/gtest_protocol.h"
#include "sandrun/interrupts.h"
#include "sandrun/listener.h"
#include "sandrun/registry.h"
#include "sandrun/report.h"
#include "sandrun/run_setup.h"

namespace sandrun::gtest {
namespace fs = std::filesystem;

namespace {

constexpr char kStandInPrefix[] = "sandrun/";

// The sandboxed copy's output, as the host adapter asks for it (the
// environment variable, set only by the host adapter, not by `sandrun gtest`):
// GoogleTest's own printout is left out (the host prints it), and markers
// say where each test's own output starts (on stdout and stderr) and where
// each of its failures or its skip was reported (on stdout), so the host can
// show that output between the test's [ RUN ] and result lines, around the
// replayed failures, as GoogleTest shows a local test's. A record's stdout
// in the archive keeps them.
constexpr char kReplayOutputEnv[] = "SANDRUN_GTEST_REPLAY_OUTPUT";
constexpr char kTestMarker[] = "\x1e[sandrun test] ";  ///< + "Suite.Name\n"
constexpr char kPartMarker[] = "\x1e[sandrun part]\n";

/// True in the adapter's own sandboxed copy of the binary.
bool InOwnSandbox() {
  const char* v = std::getenv(kInsideEnv);
  return v != nullptr && std::strcmp(v, "1") == 0;
}

/// True in any sandrun sandbox: the engine sets kSandboxIdEnv in all.
bool InAnySandbox() {
  const char* v = std::getenv(kSandboxIdEnv);
  return v != nullptr && *v != '\0';
}

// GoogleTest times each test itself and has no public way to say that a
// test took a time measured elsewhere (the sandbox). An explicit template
// instantiation may name a private member (C++20 [temp.spec.general]/6),
// which gives the adapter TestResult::set_elapsed_time without relying on
// GoogleTest's internals beyond that one member of its public header.
template <auto kSetter>
struct ElapsedTimeAccess {
  friend void SetElapsedTime(::testing::TestResult& result, ::testing::TimeInMillis ms) {
    (result.*kSetter)(ms);
  }
};
template struct ElapsedTimeAccess<&::testing::TestResult::set_elapsed_time>;
void SetElapsedTime(::testing::TestResult& result, ::testing::TimeInMillis ms);

/// The own time of the marked test now running on the host (tests run one
/// at a time on GoogleTest's thread), set by its replay and given to
/// GoogleTest when it ends.
std::optional<::testing::TimeInMillis>& OwnTimeOfCurrentTest() {
  static std::optional<::testing::TimeInMillis> ms;
  return ms;
}

struct Marked {
  std::string remote_name;  ///< "Suite.Name": what runs in the sandbox.
  std::string file;
  int line = 0;
  Options options;
  /// The directory relative Upload() sources are relative to (empty for
  /// tests marked by filter, which have no Options).
  std::string upload_base;
};

/// Marked tests by their host-side full name. Filled during static init by
/// the macros (function-local static: safe in any init order).
std::map<std::string, Marked>& MarkedTests() {
  static auto* tests = new std::map<std::string, Marked>();
  return *tests;
}

/// Ctrl-C (SIGINT) or SIGTERM while sandboxed tests run (the handler of
/// sandrun/interrupts.h). The first signal cancels every engine run of the
/// adapter, so their sandboxes are terminated, and then ends the process by
/// that same signal, as it would have ended without the adapter; a second
/// signal ends it at once. Installed only when sandboxed tests are launched,
/// and only over the default action: a test program's own handler is left
/// alone.
class Interrupts {
 public:
  static Interrupts& Get() {
    static auto* interrupts = new Interrupts();
    return *interrupts;
  }

  void InstallOnce() {
    std::call_once(installed_, [this] {
      InterruptHandling how;
      how.only_over_default = true;
      how.second_signal_exit_code = 0;  // the second signal ends it by itself
      if (!InstallInterruptHandlers(how)) return;
      std::thread([this] {
        WaitForInterrupt();
        EndBySignal();
      }).detach();
    });
  }

  /// Brackets one engine run, so the watcher knows when all have stopped.
  void RunStarted() {
    std::lock_guard lock(mu_);
    ++active_runs_;
  }
  void RunEnded() {
    std::lock_guard lock(mu_);
    --active_runs_;
    cv_.notify_all();
  }

  /// For a host test whose wait came back: after a signal, ends the process
  /// by it from this thread as well, so GoogleTest cannot finish and exit
  /// normally (code 1) before the watcher thread raises the signal.
  void EndIfInterrupted() {
    if (InterruptSignal() != 0) EndBySignal();
  }

 private:
  void EndBySignal() {
    {
      // Terminating sandboxes takes a moment (a request each on Docker).
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(30), [&] { return active_runs_ == 0; });
    }
    int sig = InterruptSignal();
    std::fflush(stdout);  // the failures replayed so far
    std::fflush(stderr);
    signal(sig, SIG_DFL);
    raise(sig);
  }

  std::once_flag installed_;
  std::mutex mu_;
  std::condition_variable cv_;
  int active_runs_ = 0;
};

/// What a waiting host test gets.
struct RemoteResult {
  Verdict verdict;
  std::string backend;
  std::string sandbox_id;
  std::string run_id;
  std::string task_id;
  std::string stdout_text;  ///< The task's captured streams (with markers).
  std::string stderr_text;
  long long own_ms = -1;    ///< The test's own time in the sandbox.
};

/// Runs a set of marked tests through the Engine in the background; each
/// host-side test waits for its own result.
class Launcher : public RunListenerBase {
 public:
  struct Job {
    CaseTask spec;
    std::string backend;  ///< Empty: the config's.
  };

  /// `registry` outlives the launcher; `env` reaches the backends.
  Launcher(Config config, std::vector<Job> jobs, const BackendRegistry& registry,
           std::map<std::string, std::string> env)
      : config_(std::move(config)), registry_(registry), env_(std::move(env)) {
    for (auto& job : jobs) {
      for (const auto& test : job.spec.tests) {
        pending_.insert(test);
        timeout_ms_[test] = static_cast<long long>(CaseTimeoutSeconds(config_, job.spec) * 1000);
      }
      task_tests_[job.spec.task_id] = job.spec.tests;
      by_backend_[job.backend].push_back(std::move(job.spec));
    }
    if (!config_.report.empty()) report_ = std::make_shared<ReportFileListener>(config_.report);
  }

  ~Launcher() override { Join(); }

  /// Sets up the run of each backend group (sandrun/run_setup.h), then runs
  /// the groups in the background. Bad input (an unknown backend, a bad
  /// backend setting, a GPU no candidate can provide) ends the process as a
  /// bad config does, "sandrun: ..." and exit 2, before anything runs: it is
  /// never a reason to fall back to another backend.
  void Start(std::shared_ptr<Launcher> self) {
    std::error_code ec;
    fs::path binary = fs::read_symlink("/proc/self/exe", ec);
    if (report_) {
      Status writable = CheckWritableFile(report_->path());
      if (!writable.ok()) {
        std::fprintf(stderr, "sandrun: report: %s\n", writable.message().c_str());
        std::exit(kExitUsage);
      }
    }
    std::vector<std::pair<Config, RunSetup>> setups;
    for (const auto& [backend, specs] : by_backend_) {
      Config config = config_;
      if (!backend.empty()) config.backend = backend;
      RunSetupInputs inputs;
      inputs.env = env_;
      inputs.command_line = {binary.string(), "(sandrun gtest adapter)"};
      auto setup = SetUpRun(registry_, config, inputs);
      if (!setup.ok()) {
        std::fprintf(stderr, "sandrun: %s\n", setup.status().message().c_str());
        std::exit(kExitUsage);
      }
      for (auto& c : setup->candidates) {
        if (c.backend) c.backend = TapBackend(c.backend, tap_);
      }
      setups.emplace_back(std::move(config), std::move(setup).value());
    }
    auto setup = setups.begin();
    for (auto& [backend, specs] : by_backend_) {
      threads_.emplace_back([self, binary, group = std::move(*setup++),
                             specs = std::move(specs)]() mutable {
        self->RunGroup(group.first, std::move(group.second), binary, std::move(specs));
      });
    }
  }

  bool Has(const std::string& test) {
    std::lock_guard lock(mu_);
    return pending_.count(test) > 0 || results_.count(test) > 0;
  }

  RemoteResult Wait(const std::string& test) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return results_.count(test) > 0; });
    return results_[test];
  }

  void Join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

  void OnTaskEnd(const TaskRecord& record) override {
    DownloadedFiles files = tap_->Take(record.task_id);
    std::lock_guard lock(mu_);
    for (const auto& test : task_tests_[record.task_id]) {
      RemoteResult result;
      result.verdict = Judge(test, record, files, timeout_ms_[test]);
      result.backend = record.backend;
      result.sandbox_id = record.result.sandbox_id;
      result.run_id = record.run_id;
      result.task_id = record.task_id;
      result.stdout_text = record.result.stdout_stream.text;
      result.stderr_text = record.result.stderr_stream.text;
      result.own_ms = OwnMillis(result.verdict, record.result.durations);
      Deliver(test, std::move(result));
    }
  }

  void OnWarning(std::string_view message) override {
    std::fprintf(stderr, "sandrun: warning: %.*s\n", static_cast<int>(message.size()),
                 message.data());
  }

 private:
  // Requires mu_.
  void Deliver(const std::string& test, RemoteResult result) {
    pending_.erase(test);
    results_[test] = std::move(result);
    cv_.notify_all();
  }

  void FailAll(const std::vector<CaseTask>& specs, const std::string& why,
               Verdict::Kind kind = Verdict::Kind::kInfraError) {
    std::lock_guard lock(mu_);
    for (const auto& spec : specs) {
      for (const auto& test : spec.tests) {
        if (results_.count(test)) continue;
        RemoteResult result;
        result.verdict.kind = kind;
        result.verdict.summary = why;
        result.verdict.failures.push_back({"", -1, why});
        Deliver(test, std::move(result));
      }
    }
  }

  void RunGroup(const Config& config, RunSetup setup, const fs::path& binary,
                std::vector<CaseTask> specs) {
    std::error_code ec;
    fs::path empty_dir = config.state_dir / "gtest" / "empty";
    fs::create_directories(empty_dir, ec);
    std::vector<Task> tasks;
    for (const auto& spec : specs) {
      Task task = MakeCaseTask(config, binary, empty_dir, spec);
      task.exec.env[kReplayOutputEnv] = "1";
      // A bad declaration (an Upload() of a missing file) fails the tests of
      // its own task, by their names; the others run.
      Status valid = ValidateTask(task);
      if (!valid.ok()) {
        FailAll({spec},
                "sandrun: cannot run in a sandbox: " + valid.message() +
                    " (relative Upload() sources are relative to the directory of the "
                    "test's source file)",
                Verdict::Kind::kFailed);
        continue;
      }
      tasks.push_back(std::move(task));
    }
    if (tasks.empty()) return;
    Engine engine(std::move(setup.candidates));
    // The listener outlives the run: the Launcher owns the thread that runs it.
    engine.AddListener(std::shared_ptr<RunListener>(this, [](RunListener*) {}));
    // One page for all backend groups: rewritten as each run ends.
    if (report_) engine.AddListener(report_);
    Interrupts::Get().RunStarted();
    auto outcome = engine.Run(std::move(tasks), setup.options, InterruptFlag());
    Interrupts::Get().RunEnded();
    if (report_ && !report_->status().ok()) {
      std::fprintf(stderr, "sandrun: %s\n", report_->status().message().c_str());
    }
    if (!outcome.ok()) {
      FailAll(specs, (outcome.status().code() == StatusCode::kInvalidArgument
                          ? "sandrun: bad input (not a test failure): "
                          : "sandrun infrastructure error (not a test failure): ") +
                         outcome.status().message());
      return;
    }
    // Anything the engine did not report (it always should) still ends.
    FailAll(specs, "sandrun infrastructure error (not a test failure): no result came back");
  }

  Config config_;
  const BackendRegistry& registry_;
  std::map<std::string, std::string> env_;
  std::shared_ptr<DownloadTap> tap_ = std::make_shared<DownloadTap>();
  std::shared_ptr<ReportFileListener> report_;  ///< Config key `report`; null: none.
  std::map<std::string, std::vector<CaseTask>> by_backend_;
  std::map<std::string, std::vector<std::string>> task_tests_;
  std::map<std::string, long long> timeout_ms_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> pending_;
  std::map<std::string, RemoteResult> results_;
};

class Runtime {
 public:
  static Runtime& Get() {
    static auto* runtime = new Runtime();
    return *runtime;
  }

  /// Every backend this installation provides, loaded once.
  const BackendRegistry& registry() {
    std::call_once(registry_loaded_, [this] {
      for (const auto& problem : RegisterAllBackends(registry_, env_)) {
        std::fprintf(stderr, "sandrun: warning: %s\n", problem.message().c_str());
      }
    });
    return registry_;
  }

  /// Loads the config once (flags from Init, else environment and file).
  const Config& config() {
    std::lock_guard lock(mu_);
    LoadLocked();
    return config_;
  }

  void SetFlags(std::map<std::string, std::string> flags) {
    std::lock_guard lock(mu_);
    flags_ = std::move(flags);
    loaded_ = false;
    LoadLocked();
  }

  /// Launches `jobs`; tests already running keep their launcher.
  void Launch(std::vector<Launcher::Job> jobs) {
    if (jobs.empty()) return;
    Interrupts::Get().InstallOnce();
    auto launcher = std::make_shared<Launcher>(config(), std::move(jobs), registry(), env_);
    launcher->Start(launcher);
    std::lock_guard lock(mu_);
    launchers_.push_back(launcher);
  }

  std::shared_ptr<Launcher> LauncherFor(const std::string& test) {
    std::lock_guard lock(mu_);
    for (auto it = launchers_.rbegin(); it != launchers_.rend(); ++it) {
      if ((*it)->Has(test)) return *it;
    }
    return nullptr;
  }

  /// Waits for every launcher and forgets them (end of an iteration).
  void JoinAll() {
    std::vector<std::shared_ptr<Launcher>> launchers;
    {
      std::lock_guard lock(mu_);
      launchers.swap(launchers_);
    }
    for (auto& l : launchers) l->Join();
  }

 private:
  void LoadLocked() {
    if (loaded_) return;
    loaded_ = true;
    ConfigInputs inputs;
    inputs.flags = flags_;
    inputs.env = env_;
    std::error_code ec;
    inputs.cwd = fs::current_path(ec);
    auto config = LoadConfig(inputs);
    if (!config.ok()) {
      std::fprintf(stderr, "sandrun: %s\n", config.status().message().c_str());
      std::exit(kExitUsage);
    }
    config_ = std::move(config).value();
    ApplyBackendFlags(registry(), {}, env_, config_);
  }

  const std::map<std::string, std::string> env_ = ProcessEnvironment();
  std::once_flag registry_loaded_;
  BackendRegistry registry_;
  std::mutex mu_;
  bool loaded_ = false;
  std::map<std::string, std::string> flags_;
  Config config_;
  std::vector<std::shared_ptr<Launcher>> launchers_;
};

CaseTask SpecFor(const Marked& marked, std::map<std::string, int>* used_ids) {
  CaseTask spec;
  spec.task_id = TaskIdFor(marked.remote_name, used_ids);
  spec.test_name = marked.remote_name;
  spec.tests = {marked.remote_name};
  const Options& o = marked.options;
  spec.image = o.image();
  spec.cpu = o.cpu();
  spec.memory_mb = o.memory_mb();
  spec.gpu = o.gpu();
  spec.timeout_s = o.timeout_s();
  spec.env = o.env();
  spec.uploads = o.uploads();
  for (auto& upload : spec.uploads) {
    if (fs::path(upload.source).is_relative() && !marked.upload_base.empty()) {
      upload.source = (fs::path(marked.upload_base) / upload.source).lexically_normal().string();
    }
  }
  spec.network_set = o.network_set();
  spec.network = o.network();
  return spec;
}

/// Reuse() tests with the same settings share one sandbox: the settings that
/// shape a sandbox, as one comparable string.
std::string ReuseKey(const Marked& m) {
  const Options& o = m.options;
  std::string key = o.backend() + "|" + o.image() + "|" + std::to_string(o.cpu()) + "|" +
                    std::to_string(o.memory_mb()) + "|" + o.gpu() + "|" +
                    (o.network_set() ? std::string(NetworkModeName(o.network())) : "") + "|";
  for (const auto& [k, v] : o.env()) key += k + "=" + v + ";";
  key += "|";
  key += m.upload_base + "|";
  for (const auto& u : o.uploads()) key += u.source + ">" + u.destination + ";";
  return key;
}

std::vector<Launcher::Job> MakeJobs(const std::vector<const Marked*>& tests) {
  std::vector<Launcher::Job> jobs;
  std::map<std::string, int> used_ids;
  std::map<std::string, std::size_t> reuse_groups;  // key -> index in jobs
  for (const Marked* m : tests) {
    if (m->options.reuse()) {
      std::string key = ReuseKey(*m);
      auto it = reuse_groups.find(key);
      if (it != reuse_groups.end()) {
        CaseTask& spec = jobs[it->second].spec;
        spec.tests.push_back(m->remote_name);
        spec.test_name += ":" + m->remote_name;
        // Tests run one after another: their timeouts add up.
        if (spec.timeout_s > 0 && m->options.timeout_s() > 0) {
          spec.timeout_s += m->options.timeout_s();
        } else {
          spec.timeout_s = 0;
        }
        continue;
      }
      Launcher::Job job{SpecFor(*m, &used_ids), m->options.backend()};
      job.spec.task_id = TaskIdFor("reuse-" + std::to_string(reuse_groups.size() + 1), &used_ids);
      reuse_groups[key] = jobs.size();
      jobs.push_back(std::move(job));
      continue;
    }
    jobs.push_back({SpecFor(*m, &used_ids), m->options.backend()});
  }
  return jobs;
}

/// Launches the marked tests an iteration will run, as it starts.
class FanOutListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestIterationStart(const ::testing::UnitTest& unit_test, int) override {
    std::vector<const Marked*> selected;
    const auto& marked = MarkedTests();
    for (int i = 0; i < unit_test.total_test_suite_count(); ++i) {
      const ::testing::TestSuite* suite = unit_test.GetTestSuite(i);
      for (int j = 0; j < suite->total_test_count(); ++j) {
        const ::testing::TestInfo* info = suite->GetTestInfo(j);
        if (!info->should_run()) continue;
        auto it = marked.find(std::string(suite->name()) + "." + info->name());
        if (it != marked.end()) selected.push_back(&it->second);
      }
    }
    Runtime::Get().Launch(MakeJobs(selected));
  }
  void OnTestIterationEnd(const ::testing::UnitTest&, int) override { Runtime::Get().JoinAll(); }

  // GoogleTest calls OnTestEnd in reverse order of the listeners, so this
  // one (appended after the printer and the XML/JSON writers) gives a marked
  // test its own time before they read it.
  void OnTestEnd(const ::testing::TestInfo& info) override {
    auto& own_ms = OwnTimeOfCurrentTest();
    if (!own_ms) return;
    // The result belongs to `info`, which GoogleTest hands out as const.
    SetElapsedTime(const_cast<::testing::TestResult&>(*info.result()), *own_ms);
    own_ms.reset();
  }
};

/// What test `name` wrote to `stream` in the sandbox: from its marker to the
/// next test's. All of the stream when it has no markers at all (the binary
/// ended before a test started); nothing when only other tests have one.
std::string OwnOutput(const std::string& stream, const std::string& name) {
  const std::string start = kTestMarker + name + "\n";
  std::size_t from = stream.find(start);
  if (from == std::string::npos) {
    return stream.find(kTestMarker) == std::string::npos ? stream : std::string();
  }
  from += start.size();
  std::size_t to = stream.find(kTestMarker, from);
  return stream.substr(from, to == std::string::npos ? std::string::npos : to - from);
}

/// `text` cut at each kPartMarker.
std::vector<std::string> SplitAtParts(const std::string& text) {
  std::vector<std::string> pieces;
  std::size_t from = 0;
  for (std::size_t at; (at = text.find(kPartMarker, from)) != std::string::npos;) {
    pieces.push_back(text.substr(from, at - from));
    from = at + std::strlen(kPartMarker);
  }
  pieces.push_back(text.substr(from));
  return pieces;
}

/// `text` (a failure message with OutputTail's sections) without the
/// marker lines of kTestMarker and kPartMarker, and without a section that
/// held only markers.
std::string WithoutMarkers(const std::string& text) {
  std::string clean;
  std::size_t from = 0;
  for (std::size_t at; (at = text.find('\x1e', from)) != std::string::npos;) {
    clean += text.substr(from, at - from);
    std::size_t newline = text.find('\n', at);
    from = newline == std::string::npos ? text.size() : newline + 1;
  }
  clean += text.substr(std::min(from, text.size()));
  for (const char* header : {"--- stderr (tail) ---\n", "--- stdout (tail) ---\n"}) {
    std::size_t at = clean.find(header);
    if (at == std::string::npos) continue;
    std::size_t after = at + std::strlen(header);
    if (after == clean.size() || clean.compare(after, 4, "--- ") == 0) {
      clean.erase(at, after - at);
    }
  }
  return clean;
}

void Print(std::FILE* stream, const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), stream);
  std::fflush(stream);
}

/// Replays a marked test's remote run inside its host TestBody (after its
/// [ RUN ] line). When the test ran to its end (passed, failed, skipped):
/// its own stderr, then its own stdout with each failure (or the skip)
/// reported where the test reported it. Otherwise (crash, timeout...) the
/// failure that says so, with the tail of the output, as Judge made it.
void Replay(const Marked& marked, const RemoteResult& result) {
  const Verdict& verdict = result.verdict;
  ::testing::Test::RecordProperty("sandrun_backend", result.backend);
  ::testing::Test::RecordProperty("sandrun_sandbox", result.sandbox_id);
  ::testing::Test::RecordProperty("sandrun_run", result.run_id);
  ::testing::Test::RecordProperty("sandrun_verdict", std::string(VerdictKindName(verdict.kind)));
  if (result.own_ms >= 0) OwnTimeOfCurrentTest() = result.own_ms;

  auto report = [&](::testing::TestPartResult::Type type, const Failure& f) {
    std::string file = f.file.empty() ? marked.file : f.file;
    int line = f.file.empty() ? marked.line : f.line;
    ::testing::internal::AssertHelper(type, file.c_str(), line, f.message.c_str()) =
        ::testing::Message();
  };
  const bool ran_to_its_end = verdict.kind == Verdict::Kind::kPassed ||
                              verdict.kind == Verdict::Kind::kFailed ||
                              verdict.kind == Verdict::Kind::kSkipped;
  if (!ran_to_its_end) {
    for (const Failure& f : verdict.failures) {
      report(::testing::TestPartResult::kNonFatalFailure,
             Failure{f.file, f.line, WithoutMarkers(f.message)});
    }
    return;
  }
  // The test's own results (its failures, or its skip), in the order it
  // reported them.
  std::vector<std::pair<::testing::TestPartResult::Type, Failure>> parts;
  if (verdict.kind == Verdict::Kind::kFailed) {
    for (const Failure& f : verdict.failures) {
      parts.push_back({::testing::TestPartResult::kNonFatalFailure, f});
    }
  } else if (verdict.kind == Verdict::Kind::kSkipped) {
    parts.push_back({::testing::TestPartResult::kSkip, Failure{"", -1, verdict.skip_message}});
  }
  Print(stderr, OwnOutput(result.stderr_text, marked.remote_name));
  std::vector<std::string> pieces = SplitAtParts(OwnOutput(result.stdout_text, marked.remote_name));
  if (pieces.size() == parts.size() + 1) {
    for (std::size_t i = 0; i < parts.size(); ++i) {
      Print(stdout, pieces[i]);
      report(parts[i].first, parts[i].second);
    }
    Print(stdout, pieces.back());
  } else {  // The markers do not match the report (a failure in a child process...).
    for (const auto& piece : pieces) Print(stdout, piece);
    for (const auto& [type, f] : parts) report(type, f);
  }
}

void RunOnHost(const std::string& host_name) {
  auto it = MarkedTests().find(host_name);
  if (it == MarkedTests().end()) {
    ADD_FAILURE() << "sandrun: " << host_name << " is not a marked test";
    return;
  }
  const Marked& marked = it->second;
  auto launcher = Runtime::Get().LauncherFor(marked.remote_name);
  if (launcher == nullptr) {
    // Not launched up front (no Init, or run outside RUN_ALL_TESTS'
    // iteration events): run it now, alone.
    Runtime::Get().Launch(MakeJobs({&marked}));
    launcher = Runtime::Get().LauncherFor(marked.remote_name);
  }
  Replay(marked, launcher->Wait(marked.remote_name));
  Interrupts::Get().EndIfInterrupted();
}

/// Stands in for a TEST marked by --sandrun_filter.
class StandIn : public ::testing::Test {
 public:
  explicit StandIn(std::string host_name) : host_name_(std::move(host_name)) {}
  void TestBody() override { RunOnHost(host_name_); }

 private:
  std::string host_name_;
};

/// In the adapter's own sandbox, when the host asks (kReplayOutputEnv):
/// marks where each test's output starts and where its failures and skip
/// were reported (see kReplayOutputEnv).
class OutputMarker : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo& info) override {
    const std::string marker =
        kTestMarker + std::string(info.test_suite_name()) + "." + info.name() + "\n";
    Write(stdout, marker);
    Write(stderr, marker);
  }
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.type() != ::testing::TestPartResult::kSuccess) Write(stdout, kPartMarker);
  }

 private:
  static void Write(std::FILE* stream, const std::string& text) {
    std::fflush(stream);  // what the test wrote comes first
    Print(stream, text);
  }
};

/// Inside a sandbox: keeps each skip's message as a test property, because
/// gtest's JSON report (before 1.13) drops it.
class SkipMessageRecorder : public ::testing::EmptyTestEventListener {
 public:
  // GoogleTest holds its lock while it reports a part result, so the
  // property is recorded when the test ends, not here.
  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    if (result.skipped()) message_ = result.message();
  }
  void OnTestStart(const ::testing::TestInfo&) override { message_.clear(); }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    if (info.result()->Skipped() && !message_.empty()) {
      ::testing::Test::RecordProperty(kSkipMessageProperty, message_);
    }
  }

 private:
  std::string message_;
};

/// Strips "--sandrun_KEY=VALUE" flags from argv into `flags`; returns a
/// problem, if any.
std::string TakeFlags(int* argc, char** argv, std::map<std::string, std::string>* flags) {
  std::string problem;
  int out = 1;
  for (int i = 1; i < *argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.rfind("--sandrun_", 0) != 0) {
      argv[out++] = argv[i];
      continue;
    }
    std::string_view rest = arg.substr(std::strlen("--sandrun_"));
    std::size_t eq = rest.find('=');
    if (eq == std::string_view::npos) {
      problem = "flag " + std::string(arg) + " needs a value (--sandrun_KEY=VALUE)";
      continue;
    }
    (*flags)[std::string(rest.substr(0, eq))] = std::string(rest.substr(eq + 1));
  }
  *argc = out;
  argv[out] = nullptr;
  return problem;
}

/// Marks the TESTs `filter` names: each leaves the local run and gets a
/// stand-in "sandrun/Suite.Name" that runs it in a sandbox.
void MarkByFilter(const std::string& filter) {
  ::testing::UnitTest& unit_test = *::testing::UnitTest::GetInstance();
  struct Found {
    std::string suite, name, file;
    int line;
    std::string type_param, value_param;  ///< Empty: not a typed / parameterised test.
  };
  std::vector<Found> found;
  for (int i = 0; i < unit_test.total_test_suite_count(); ++i) {
    const ::testing::TestSuite* suite = unit_test.GetTestSuite(i);
    if (std::string_view(suite->name()).rfind(kStandInPrefix, 0) == 0) continue;
    for (int j = 0; j < suite->total_test_count(); ++j) {
      const ::testing::TestInfo* info = suite->GetTestInfo(j);
      std::string full = std::string(suite->name()) + "." + info->name();
      if (MarkedTests().count(full) || !FilterMatches(filter, full)) continue;
      found.push_back({suite->name(), info->name(), info->file() ? info->file() : "",
                       info->line(), info->type_param() ? info->type_param() : "",
                       info->value_param() ? info->value_param() : ""});
    }
  }
  if (found.empty()) return;
  std::string gtest_filter = GTEST_FLAG_GET(filter);
  std::size_t dash = gtest_filter.find('-');
  std::string positive = gtest_filter.substr(0, dash);
  std::string negative = dash == std::string::npos ? "" : gtest_filter.substr(dash + 1);
  if (positive.empty()) positive = "*";
  for (const Found& f : found) {
    std::string original = f.suite + "." + f.name;
    std::string stand_in = kStandInPrefix + original;
    bool selected = FilterMatches(gtest_filter, original);
    negative += (negative.empty() ? "" : ":") + original;
    if (selected) positive += ":" + stand_in;
    else negative += ":" + stand_in;
    MarkedTests()[stand_in] = Marked{original, f.file, f.line, Options(), ""};
    std::string suite_name = kStandInPrefix + f.suite;
    // With the original's parameter, which GoogleTest prints ("where
    // GetParam() = 3", "where TypeParam = int") and reports (value_param,
    // type_param).
    ::testing::RegisterTest(suite_name.c_str(), f.name.c_str(),
                            f.type_param.empty() ? nullptr : f.type_param.c_str(),
                            f.value_param.empty() ? nullptr : f.value_param.c_str(),
                            f.file.c_str(), f.line,
                            [stand_in]() -> ::testing::Test* { return new StandIn(stand_in); });
  }
  GTEST_FLAG_SET(filter, positive + "-" + negative);
}

}  // namespace

bool InsideSandbox() {
  static const bool inside = InOwnSandbox() || InAnySandbox();
  return inside;
}

void Init(int* argc, char** argv) {
  std::map<std::string, std::string> flags;
  std::string problem = TakeFlags(argc, argv, &flags);
  // In any sandbox the marked tests run here, as plain tests (no nested
  // sandboxes); --sandrun_filter marks nothing.
  if (InsideSandbox()) {
    if (!InOwnSandbox()) return;
    // gtest removes the marker by the path it was given; make it absolute so
    // a test that changes directory does not leave it behind.
    if (const char* marker = std::getenv("TEST_PREMATURE_EXIT_FILE")) {
      std::error_code ec;
      fs::path absolute = fs::absolute(marker, ec);
      if (!ec) setenv("TEST_PREMATURE_EXIT_FILE", absolute.c_str(), 1);
    }
    static bool listeners_added = false;
    if (!listeners_added) {
      listeners_added = true;
      ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
      listeners.Append(new SkipMessageRecorder());
      const char* replay = std::getenv(kReplayOutputEnv);
      if (replay != nullptr && std::strcmp(replay, "1") == 0) {
        delete listeners.Release(listeners.default_result_printer());
        listeners.Append(new OutputMarker());
      }
    }
    return;
  }
  if (!problem.empty()) {
    std::fprintf(stderr, "sandrun: %s\n", problem.c_str());
    std::exit(kExitUsage);
  }
  std::string filter;
  if (auto it = flags.find("filter"); it != flags.end()) {
    filter = it->second;
    flags.erase(it);
  } else if (const char* env = std::getenv("SANDRUN_FILTER")) {
    filter = env;
  }
  Runtime::Get().SetFlags(std::move(flags));
  if (!filter.empty()) MarkByFilter(filter);
  static bool listener_added = false;
  if (!listener_added) {
    listener_added = true;
    ::testing::UnitTest::GetInstance()->listeners().Append(new FanOutListener());
  }
}

namespace internal {

bool RegisterMarked(const char* suite, const char* name, const char* file, int line,
                    const char* compile_dir, const Options& options) {
  std::string full = std::string(suite) + "." + name;
  Marked marked{full, file, line, options, ""};
  // Relative Upload() sources are relative to the declaring source file's
  // directory; a relative __FILE__ (ccache's base_dir, -ffile-prefix-map)
  // to the compiler's working directory.
  fs::path source = file;
  if (source.is_relative() && compile_dir != nullptr && *compile_dir != '\0') {
    source = fs::path(compile_dir) / source;
  }
  std::error_code ec;
  fs::path base = fs::absolute(source, ec).lexically_normal().parent_path();
  marked.upload_base = base.string();
  MarkedTests()[full] = std::move(marked);
  return true;
}

void Dispatch(const char* suite, const char* name, const std::function<void()>& body) {
  if (InsideSandbox()) {
    body();
    return;
  }
  RunOnHost(std::string(suite) + "." + name);
}

}  // namespace internal
}  // namespace sandrun::gtest
