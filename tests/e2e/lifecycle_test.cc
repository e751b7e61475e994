// A batch interrupted with Ctrl-C, and a batch whose archive fails: the
// process tree is gone, the run says "cancelled", and no record is lost.
#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"
#include "sandrun/util.h"

namespace sandrun::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

/// Live processes on this host whose command line contains `token`. Tasks
/// run in PID namespaces of their own (and /tmp is private under the default
/// --network none), so they cannot report their pids; a token in the text of
/// the shell scripts they start names them from here instead.
std::vector<pid_t> ProcessesWith(const std::string& token) {
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(name));
    if (ReadFile(entry.path() / "cmdline").find(token) != std::string::npos &&
        !ProcessGone(pid)) {
      found.push_back(pid);
    }
  }
  return found;
}

/// Kills what a failed test may have left running: only processes whose
/// command line carries the test's token, so nothing else is touched.
class TokenReaper {
 public:
  explicit TokenReaper(std::string token) : token_(std::move(token)) {}
  ~TokenReaper() {
    for (pid_t pid : ProcessesWith(token_)) kill(pid, SIGKILL);
  }

 private:
  std::string token_;
};

/// A batch of `count` tasks. Each starts, in the background, a shell that
/// sleeps, one that ignores SIGTERM and one that leaves the process group
/// and session (setsid); all carry `token`. Then it creates task.started in
/// its working directory (inside the sandbox, under the state dir) and waits.
fs::path ProcessTreeTasks(const Home& home, int count, const std::string& token) {
  const std::string sleeper = "sh -c 'sleep 300; : " + token + "'";
  std::string script = sleeper + " & (trap '' TERM; exec " + sleeper + ") & setsid " + sleeper +
                       " </dev/null >/dev/null 2>&1 & touch task.started; wait";
  std::string tasks = "[";
  for (int i = 0; i < count; ++i) {
    tasks += std::string(i ? "," : "") + "{\"id\": \"t" + std::to_string(i) +
             "\", \"command\": [\"sh\", \"-c\", " + nlohmann::json(script).dump() + "]}";
  }
  return home.Write("tasks.json", tasks + "]");
}

TEST(E2eLifecycle, CtrlCCancelsTheRunAndKillsEveryProcess) {
  Home home;
  const std::string token = "sandrun-e2e-" + RandomHex(8);
  TokenReaper reaper(token);
  fs::path file = ProcessTreeTasks(home, 3, token);

  auto batch = StartSandrun(home, {"batch", "--backend", "local", "-j", "3", file.string()});
  ASSERT_TRUE(batch->started());
  bool all_started = WaitUntil(
      [&] { return Home::CountFiles(home.dir() / "state", "task.started") == 3; }, seconds(20));
  ASSERT_TRUE(all_started) << batch->Err();
  // Three tasks of four shells each (the task's own and its three children).
  EXPECT_TRUE(WaitUntil([&] { return ProcessesWith(token).size() >= 12; }, seconds(5)));

  auto interrupted = Clock::now();
  batch->Signal(SIGINT);
  std::optional<int> code = batch->Wait(seconds(10));
  ASSERT_TRUE(code.has_value()) << "still running 10 s after SIGINT\n" << batch->Err();
  EXPECT_EQ(*code, 130) << batch->Err();
  EXPECT_LT(SecondsSince(interrupted), 5.0);

  // Killed processes may stay zombies for a moment until init reaps them; a
  // process that still runs a second after sandrun exited was not killed.
  EXPECT_TRUE(WaitUntil([&] { return ProcessesWith(token).empty(); }, milliseconds(1000)))
      << ProcessesWith(token).size() << " processes survived";

  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 1u) << runs.dump(2);
  EXPECT_EQ(runs[0]["status"], "cancelled");
  nlohmann::json shown = home.Show(runs[0].value("run_id", ""));
  EXPECT_EQ(shown["run"]["status"], "cancelled");
  EXPECT_EQ(shown["run"]["cancelled"], 3);
  ASSERT_EQ(shown["tasks"].size(), 3u);
  for (const auto& task : shown["tasks"]) EXPECT_EQ(task["outcome"], "cancelled") << task.dump();
}

TEST(E2eLifecycle, KillNineOfSandrunTakesEveryProcessAlongAndCleanupRemovesTheRest) {
  Home home;
  const std::string token = "sandrun-e2e-" + RandomHex(8);
  TokenReaper reaper(token);
  fs::path file = ProcessTreeTasks(home, 2, token);

  auto batch = StartSandrun(home, {"batch", "--backend", "local", "-j", "2", file.string()});
  ASSERT_TRUE(batch->started());
  bool all_started = WaitUntil(
      [&] { return Home::CountFiles(home.dir() / "state", "task.started") == 2; }, seconds(20));
  ASSERT_TRUE(all_started) << batch->Err();
  EXPECT_TRUE(WaitUntil([&] { return ProcessesWith(token).size() >= 8; }, seconds(5)));

  batch->Signal(SIGKILL);
  ASSERT_TRUE(batch->Wait(seconds(10)).has_value());
  // Nothing is left to end them but the kernel: sandrun had no chance to.
  EXPECT_TRUE(WaitUntil([&] { return ProcessesWith(token).empty(); }, seconds(10)))
      << ProcessesWith(token).size() << " processes outlived sandrun";

  fs::path sandboxes = home.dir() / "state" / "sandrun" / "sandboxes" / "local";
  EXPECT_EQ(Home::CountFiles(sandboxes, "sandbox.json"), 2) << "the killed run left its sandboxes";
  CommandOutput cleaned = home.Run({"cleanup", "--backend", "local"});
  EXPECT_EQ(cleaned.exit_code, 0) << cleaned.err;
  EXPECT_EQ(Home::CountFiles(sandboxes, "sandbox.json"), 0) << cleaned.out << cleaned.err;
  EXPECT_TRUE(ProcessesWith(token).empty());
}

TEST(E2eLifecycle, UnwritableArchiveKeepsRecordsInTheOutboxUntilSync) {
  Home home;
  fs::path not_a_dir = home.Write("not-a-directory", "a regular file\n");
  fs::path file = home.Write("tasks.json", R"([
    {"id": "one",   "command": ["true"]},
    {"id": "two",   "command": ["sh", "-c", "echo two"]},
    {"id": "three", "command": ["sh", "-c", "exit 5"]}
  ])");
  CommandOutput out = home.Run(
      {"batch", "--backend", "local", "--archive-dir", not_a_dir.string(), file.string()});
  EXPECT_EQ(out.exit_code, 1) << out.err;  // "three" failed; the archive is a warning
  EXPECT_CONTAINS(out.err, "4 record(s) wait in the outbox");
  EXPECT_CONTAINS(out.err, "sandrun results sync");
  EXPECT_EQ(ReadFile(not_a_dir), "a regular file\n");
  EXPECT_EQ(Home::CountFiles(home.outbox(), ".json"), 4);  // 3 tasks + run.json

  // A second look says the same without delivering anything.
  CommandOutput failed_sync =
      home.Run({"results", "sync", "--archive-dir", not_a_dir.string()});
  EXPECT_EQ(failed_sync.exit_code, 1);
  EXPECT_EQ(Home::CountFiles(home.outbox(), ".json"), 4);

  fs::path good = home.dir() / "good-archive";
  CommandOutput sync = home.Run({"results", "sync", "--archive-dir", good.string()});
  EXPECT_EQ(sync.exit_code, 0) << sync.err;
  EXPECT_CONTAINS(sync.out, "delivered 4 record(s)");
  EXPECT_EQ(Home::CountFiles(home.outbox(), ".json"), 0);

  nlohmann::json runs = home.Runs({"--archive-dir", good.string()});
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["total"], 3);
  EXPECT_EQ(runs[0]["passed"], 2);
  EXPECT_EQ(runs[0]["failed"], 1);
  std::string run = runs[0].value("run_id", "");
  EXPECT_EQ(Home::CountFiles(good / run / "tasks", ".json"), 3);
  EXPECT_EQ(ReadFile(good / run / "artifacts" / "two" / "stdout.log"), "two\n");
}

TEST(E2eLifecycle, ArchiveFailingMidBatchLosesNoRecord) {
  Home home;
  fs::path archive = home.dir() / "archive";
  fs::path moved = home.dir() / "archive-before-failure";
  fs::path file = home.Write("tasks.json", R"([
    {"id": "early", "command": ["sh", "-c", "echo early"]},
    {"id": "late",  "command": ["sh", "-c", "sleep 2; echo late"]}
  ])");
  auto batch = StartSandrun(home, {"batch", "--backend", "local", "-j", "1", "--archive-dir",
                                   archive.string(), file.string()});
  ASSERT_TRUE(batch->started());
  // Once "early" is archived, the archive breaks: its directory is replaced
  // by a regular file while "late" still runs.
  bool early_archived =
      WaitUntil([&] { return Home::CountFiles(archive, "early.json") == 1; }, seconds(20));
  ASSERT_TRUE(early_archived) << batch->Err();
  fs::rename(archive, moved);
  std::ofstream(archive) << "broken\n";

  std::optional<int> code = batch->Wait(seconds(30));
  ASSERT_TRUE(code.has_value()) << batch->Err();
  EXPECT_EQ(*code, 0) << batch->Err();
  EXPECT_CONTAINS(batch->Err(), "record(s) wait in the outbox");
  EXPECT_EQ(Home::CountFiles(moved, "early.json"), 1);  // delivered before, still there
  EXPECT_EQ(Home::CountFiles(home.outbox(), "late.json"), 1);
  EXPECT_EQ(Home::CountFiles(home.outbox(), "run.json"), 1);

  fs::remove(archive);
  CommandOutput sync = home.Run({"results", "sync", "--archive-dir", moved.string()});
  EXPECT_EQ(sync.exit_code, 0) << sync.err;
  EXPECT_CONTAINS(sync.out, "delivered 2 record(s)");
  nlohmann::json runs = home.Runs({"--archive-dir", moved.string()});
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["status"], "passed");
  EXPECT_EQ(runs[0]["passed"], 2);
  std::string run = runs[0].value("run_id", "");
  EXPECT_EQ(Home::CountFiles(moved / run / "tasks", ".json"), 2);
  EXPECT_EQ(ReadFile(moved / run / "artifacts" / "late" / "stdout.log"), "late\n");
  EXPECT_EQ(Home::CountFiles(home.outbox(), ".json"), 0);
}

}  // namespace
}  // namespace sandrun::e2e
