// The engine against a scripted FakeBackend: concurrency, deadlines,
// cancellation, retries, fallback, race, records and listener order.
#include "sandrun/engine.h"

#include <gtest/gtest.h>

#include <thread>

#include "support/fake_backend.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

using testing::FakeBackend;
using testing::TempDir;

Task MakeTask(const std::string& id, std::vector<std::string> argv,
              std::chrono::milliseconds timeout = std::chrono::milliseconds(0)) {
  Task task;
  task.id = id;
  task.exec.argv = std::move(argv);
  task.exec.timeout = timeout;
  return task;
}

class EngineTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeBackend> MakeBackend(const std::string& name = "fake") {
    return std::make_shared<FakeBackend>((dir_.path() / ("archive-" + name)).string(), name);
  }
  RunOptions Options(int jobs = 4) {
    RunOptions options;
    options.jobs = jobs;
    options.outbox_dir = dir_.path() / "outbox";
    options.retry_backoff = std::chrono::milliseconds(1);
    options.host_grace = std::chrono::milliseconds(100);
    return options;
  }
  RunOutcome RunOk(Engine& engine, std::vector<Task> tasks, const RunOptions& options) {
    CancelFlag cancel;
    auto outcome = engine.Run(std::move(tasks), options, cancel);
    EXPECT_TRUE(outcome.ok()) << outcome.status().ToString();
    return outcome.ok() ? std::move(outcome).value() : RunOutcome{};
  }
  TempDir dir_;
};

TEST_F(EngineTest, AllPassingTasksPassTheRunAndAreArchived) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  auto out = RunOk(engine, {MakeTask("a", {"pass"}), MakeTask("b", {"print", "hello"})}, Options());
  EXPECT_EQ(out.run.status, RunStatus::kPassed);
  EXPECT_EQ(out.run.passed, 2);
  EXPECT_EQ(BatchExitCode(out.run), 0);
  ASSERT_EQ(out.tasks.size(), 2u);
  EXPECT_EQ(out.tasks[1].result.stdout_stream.text, "hello");
  EXPECT_EQ(out.undelivered, 0);
  EXPECT_EQ(backend->created.load(), backend->terminated.load());

  ResultArchive archive(std::make_shared<DirectoryArchiveStore>(dir_.path() / "archive-fake"),
                        dir_.path() / "outbox" / "fake");
  auto stored = archive.ReadTask(out.run.run_id, "b");
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  EXPECT_EQ(stored->result.stdout_stream.text, "hello");
  auto run = archive.ReadRun(out.run.run_id);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->passed, 2);
  EXPECT_EQ(archive.PendingCount(), 0);
}

TEST_F(EngineTest, BadInputTheBackendFindsStopsTheRunBeforeItExists) {
  auto backend = MakeBackend();
  backend->spec_verdict = InvalidArgumentError("fake: cpu 1000 is more than it has");
  Engine engine({{backend}});
  CancelFlag cancel;
  auto outcome = engine.Run({MakeTask("a", {"pass"}), MakeTask("b", {"pass"})}, Options(), cancel);
  ASSERT_FALSE(outcome.ok());
  EXPECT_EQ(outcome.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(outcome.status().message().find("task 'a': fake: cpu 1000"), std::string::npos)
      << outcome.status().message();
  EXPECT_EQ(backend->created.load(), 0);
  EXPECT_FALSE(std::filesystem::exists(dir_.path() / "archive-fake") &&
               !std::filesystem::is_empty(dir_.path() / "archive-fake"))
      << "a run was begun";

  // A backend that could not check does not stop the run.
  backend->spec_verdict = UnavailableError("fake: engine busy");
  auto out = RunOk(engine, {MakeTask("a", {"pass"})}, Options());
  EXPECT_EQ(out.run.status, RunStatus::kPassed);
}

TEST_F(EngineTest, ConcurrencyLimitIsHeldAndReached) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  std::vector<Task> tasks;
  for (int i = 0; i < 12; ++i) tasks.push_back(MakeTask("t" + std::to_string(i), {"sleep", "60"}));
  auto out = RunOk(engine, tasks, Options(3));
  EXPECT_EQ(out.run.passed, 12);
  EXPECT_EQ(backend->max_running.load(), 3);
}

TEST_F(EngineTest, FailingTaskFailsTheRunWithoutRetry) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  auto out = RunOk(engine, {MakeTask("ok", {"pass"}), MakeTask("bad", {"fail", "3"})}, Options());
  EXPECT_EQ(out.run.status, RunStatus::kFailed);
  EXPECT_EQ(out.run.failed, 1);
  EXPECT_EQ(BatchExitCode(out.run), 1);
  EXPECT_EQ(out.tasks[1].result.exit_code, 3);
  EXPECT_EQ(out.tasks[1].attempts, 1);
  EXPECT_EQ(backend->AttemptsOf("bad"), 1) << "a test failure must never be retried";
}

TEST_F(EngineTest, BackendTimeoutIsReportedAsTimedOut) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  auto out = RunOk(engine, {MakeTask("slow", {"sleep", "5000"}, std::chrono::milliseconds(50))},
                   Options());
  EXPECT_EQ(out.tasks[0].result.outcome, Outcome::kTimedOut);
  EXPECT_EQ(out.tasks[0].result.ended_by, kEndedByTimeout) << "the backend's own timeout";
  EXPECT_EQ(ExitCodeOf(out.tasks[0].result), 124);
  EXPECT_EQ(out.run.timed_out, 1);
  EXPECT_EQ(out.run.status, RunStatus::kFailed);
}

TEST_F(EngineTest, HostDeadlineEndsACommandTheBackendDoesNotStop) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  auto start = std::chrono::steady_clock::now();
  auto out = RunOk(engine, {MakeTask("stuck", {"hang"}, std::chrono::milliseconds(50))}, Options());
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(30));
  const ExecResult& r = out.tasks[0].result;
  EXPECT_EQ(r.outcome, Outcome::kTimedOut);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes.back().find("host-side deadline"), std::string::npos);
  EXPECT_EQ(r.ended_by, kEndedByHostDeadline);
  EXPECT_GE(backend->terminated.load(), 1);
}

TEST_F(EngineTest, CancellationTerminatesEverySandboxAndRecordsTheRunAsCancelled) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  std::vector<Task> tasks;
  for (int i = 0; i < 6; ++i) tasks.push_back(MakeTask("t" + std::to_string(i), {"sleep", "60000"}));
  CancelFlag cancel;
  std::thread canceller([&] {
    while (backend->running.load() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    cancel.Cancel();
  });
  auto out = engine.Run(tasks, Options(2), cancel);
  canceller.join();
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->run.status, RunStatus::kCancelled);
  EXPECT_EQ(out->run.cancelled, 6);
  EXPECT_EQ(BatchExitCode(out->run), 130);
  EXPECT_EQ(backend->created.load(), 2) << "nothing new starts after a cancel";
  EXPECT_EQ(backend->terminated.load(), 2);
  for (const auto& t : out->tasks) EXPECT_EQ(t.result.outcome, Outcome::kCancelled);
}

TEST_F(EngineTest, RetryableInfrastructureErrorsAreRetried) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  RunOptions options = Options();
  options.retries = 2;
  auto out = RunOk(engine, {MakeTask("flaky", {"flaky", "2"})}, options);
  EXPECT_EQ(out.run.status, RunStatus::kPassed);
  EXPECT_EQ(out.tasks[0].attempts, 3);
  EXPECT_EQ(out.tasks[0].attempt_errors.size(), 2u);
}

TEST_F(EngineTest, RetriesRunOutIntoAnInfrastructureError) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  RunOptions options = Options();
  options.retries = 1;
  auto out = RunOk(engine, {MakeTask("flaky", {"flaky", "5"})}, options);
  const ExecResult& r = out.tasks[0].result;
  EXPECT_EQ(r.outcome, Outcome::kInfraError);
  EXPECT_EQ(ExitCodeOf(r), 125);
  EXPECT_NE(r.error.find("fake flake"), std::string::npos);
  EXPECT_EQ(backend->AttemptsOf("flaky"), 2);
  EXPECT_EQ(out.run.status, RunStatus::kError);
  EXPECT_EQ(BatchExitCode(out.run), 125);
}

TEST_F(EngineTest, AnInfraOutcomeFromABackendIsRetriedLikeAnUnavailableStatus) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  RunOptions options = Options();
  options.retries = 1;
  auto out = RunOk(engine, {MakeTask("lost", {"infra-outcome"})}, options);
  const TaskRecord& task = out.tasks[0];
  EXPECT_EQ(backend->AttemptsOf("lost"), 2);
  EXPECT_EQ(task.attempts, 2);
  ASSERT_EQ(task.attempt_errors.size(), 1u);
  EXPECT_EQ(task.attempt_errors[0],
            "UNAVAILABLE: running the command: fake backend lost the command");
  EXPECT_EQ(task.result.outcome, Outcome::kInfraError);
  EXPECT_EQ(task.result.error, task.attempt_errors[0]);
  EXPECT_EQ(BatchExitCode(out.run), kExitSandrunError);
}

TEST_F(EngineTest, NonRetryableInfrastructureErrorsAreNotRetried) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  RunOptions options = Options();
  options.retries = 3;
  auto out = RunOk(engine, {MakeTask("broken", {"broken"})}, options);
  EXPECT_EQ(out.tasks[0].result.outcome, Outcome::kInfraError);
  EXPECT_EQ(backend->AttemptsOf("broken"), 1);
}

TEST_F(EngineTest, FallsBackToTheNextAvailableBackendAndSaysWhy) {
  auto down = MakeBackend("down");
  down->available = false;
  down->unavailable_reason = "daemon not running";
  auto up = MakeBackend("up");
  Engine engine({{down}, {up}});
  auto warnings = std::make_shared<std::vector<std::string>>();
  struct WarningListener : RunListenerBase {
    std::shared_ptr<std::vector<std::string>> seen;
    void OnWarning(std::string_view m) override { seen->emplace_back(m); }
  };
  auto listener = std::make_shared<WarningListener>();
  listener->seen = warnings;
  engine.AddListener(listener);
  auto out = RunOk(engine, {MakeTask("a", {"pass"})}, Options());
  EXPECT_EQ(out.run.backend, "up");
  EXPECT_EQ(out.tasks[0].backend, "up");
  EXPECT_NE(out.tasks[0].fallback_reason.find("daemon not running"), std::string::npos);
  ASSERT_EQ(warnings->size(), 1u);
  EXPECT_NE((*warnings)[0].find("down unavailable"), std::string::npos);
  EXPECT_EQ(down->created.load(), 0);
}

TEST_F(EngineTest, NoAvailableBackendMeansNothingRuns) {
  auto down = MakeBackend("down");
  down->available = false;
  down->unavailable_reason = "no socket";
  Engine engine({{down}, {nullptr, "cannot construct: bad config", "broken"}});
  CancelFlag cancel;
  auto out = engine.Run({MakeTask("a", {"pass"})}, Options(), cancel);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(out.status().message().find("no socket"), std::string::npos);
  EXPECT_NE(out.status().message().find("bad config"), std::string::npos);
}

TEST_F(EngineTest, RaceStopsAtTheFirstPassingTaskAndCancelsTheRest) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  RunOptions options = Options(2);
  options.race = true;
  auto out = RunOk(engine,
                   {MakeTask("slow", {"sleep", "60000"}), MakeTask("fast", {"sleep", "100"}),
                    MakeTask("never", {"pass"})},
                   options);
  EXPECT_EQ(out.run.status, RunStatus::kPassed);
  EXPECT_EQ(out.run.fastest_passing_task, "fast");
  EXPECT_EQ(BatchExitCode(out.run), 0);
  EXPECT_EQ(out.tasks[0].result.outcome, Outcome::kCancelled);
  EXPECT_EQ(out.tasks[2].result.outcome, Outcome::kCancelled);
  EXPECT_EQ(out.tasks[2].attempts, 0) << "tasks queued behind the winner never start";
}

TEST_F(EngineTest, SandboxesCarryIdentifyingLabelsAndOutliveTheirTimeout) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  Task task = MakeTask("labelled", {"pass"}, std::chrono::milliseconds(7200 * 1000));
  task.sandbox.lifetime = std::chrono::seconds(60);
  auto out = RunOk(engine, {task}, Options());
  SandboxSpec spec = backend->SpecOf("labelled");
  EXPECT_EQ(spec.labels["managed-by"], "sandrun");
  EXPECT_EQ(spec.labels["run"], out.run.run_id);
  EXPECT_EQ(spec.labels["task"], "labelled");
  EXPECT_GT(spec.lifetime, std::chrono::seconds(7200));
}

TEST_F(EngineTest, ListenersSeeEventsInNestedOrder) {
  auto backend = MakeBackend();
  Engine engine({{backend}});
  auto log = std::make_shared<std::vector<std::string>>();
  struct Recorder : RunListenerBase {
    std::string tag;
    std::shared_ptr<std::vector<std::string>> log;
    void OnRunStart(const RunInfo&) override { log->push_back(tag + ":run-start"); }
    void OnTaskEnd(const TaskRecord& r) override { log->push_back(tag + ":end-" + r.task_id); }
    void OnRunEnd(const RunRecord&) override { log->push_back(tag + ":run-end"); }
  };
  for (std::string tag : {"A", "B"}) {
    auto r = std::make_shared<Recorder>();
    r->tag = tag;
    r->log = log;
    engine.AddListener(r);
  }
  RunOk(engine, {MakeTask("x", {"pass"})}, Options(1));
  std::vector<std::string> want = {"A:run-start", "B:run-start", "B:end-x",
                                   "A:end-x",     "B:run-end",   "A:run-end"};
  EXPECT_EQ(*log, want);
}

TEST_F(EngineTest, ArchiveFailureKeepsRecordsInTheOutboxForSync) {
  // The backend's archive root is a regular file: every delivery fails.
  auto blocked = dir_.Write("not-a-dir", "x");
  auto backend = std::make_shared<FakeBackend>(blocked.string(), "fake");
  Engine engine({{backend}});
  auto out = RunOk(engine, {MakeTask("a", {"print", "kept"}), MakeTask("b", {"pass"})}, Options());
  EXPECT_EQ(out.run.passed, 2) << "an archive problem is not a test failure";
  EXPECT_EQ(out.undelivered, 3);  // two task records and run.json

  ResultArchive later(std::make_shared<DirectoryArchiveStore>(dir_.path() / "good"),
                      dir_.path() / "outbox" / "fake");
  EXPECT_EQ(later.PendingCount(), 3);
  auto synced = later.Sync();
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  EXPECT_EQ(*synced, 3);
  auto task = later.ReadTask(out.run.run_id, "a");
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  EXPECT_EQ(task->result.stdout_stream.text, "kept");
}

TEST(ValidateTasksTest, RejectsBadInputWithAClearMessage) {
  EXPECT_EQ(ValidateTask(MakeTask("ok", {"true"})).code(), StatusCode::kOk);
  EXPECT_NE(ValidateTask(MakeTask("", {"true"})).message().find("id"), std::string::npos);
  EXPECT_NE(ValidateTask(MakeTask("a/b", {"true"})).message().find("id"), std::string::npos);
  EXPECT_NE(ValidateTask(MakeTask("x", {})).message().find("empty"), std::string::npos);
  EXPECT_NE(ValidateTask(MakeTask("x", {"true"}, std::chrono::milliseconds(-1))).message().find("timeout"),
            std::string::npos);
  Task upload = MakeTask("up", {"true"});
  upload.sandbox.uploads.push_back({"/definitely/not/here", ""});
  EXPECT_NE(ValidateTask(upload).message().find("/definitely/not/here"), std::string::npos);
  // A file where another upload needs a directory, in either order.
  TempDir host;
  const std::string file = host.Write("f.txt", "x").string();
  std::filesystem::create_directories(host.path() / "d");
  const std::string dir = (host.path() / "d").string();
  for (bool file_first : {true, false}) {
    Task clash = MakeTask("clash", {"true"});
    FileUpload onto_sub{file, "sub"};
    FileUpload into_sub{dir, "sub/"};
    clash.sandbox.uploads = file_first ? std::vector<FileUpload>{onto_sub, into_sub}
                                       : std::vector<FileUpload>{into_sub, onto_sub};
    Status refused = ValidateTask(clash);
    EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument) << file_first;
    EXPECT_NE(refused.message().find("puts a file at 'sub', where upload '" + dir +
                                     "' needs a directory ('sub/d')"),
              std::string::npos)
        << refused.message();
  }
  Task side_by_side = MakeTask("fine", {"true"});
  side_by_side.sandbox.uploads = {{file, "sub/f.txt"}, {dir, "sub/"}, {file, "subway"}};
  EXPECT_EQ(ValidateTask(side_by_side).code(), StatusCode::kOk) << ValidateTask(side_by_side).message();
  auto dup = ValidateTasks({MakeTask("same", {"true"}), MakeTask("same", {"true"})});
  EXPECT_EQ(dup.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(dup.message().find("more than once"), std::string::npos);
}

TEST_F(EngineTest, GpuRequestOnABackendWithoutGpusIsRefusedNotDropped) {
  auto backend = MakeBackend();  // its capabilities have no GPUs
  Engine engine({{backend}});
  Task task = MakeTask("gpu", {"pass"});
  task.sandbox.gpu = "A10G:1";
  auto out = RunOk(engine, {task, MakeTask("plain", {"pass"})}, Options());
  ASSERT_EQ(out.tasks.size(), 2u);
  EXPECT_EQ(out.tasks[0].result.outcome, Outcome::kInfraError);
  EXPECT_NE(out.tasks[0].result.error.find("cannot provide GPU 'A10G:1'"), std::string::npos)
      << out.tasks[0].result.error;
  EXPECT_EQ(out.tasks[1].result.outcome, Outcome::kExited);
  EXPECT_EQ(backend->created.load(), 1) << "no sandbox for the GPU task";
}

}  // namespace
}  // namespace sandrun
