// A batch interrupted with Ctrl-C, and a batch whose archive fails: the
// process tree is gone, the run says "cancelled", and no record is lost.
#include <signal.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

/// The pids a task wrote, one per whitespace-separated word of `file`.
std::vector<pid_t> ReadPids(const fs::path& file) {
  std::istringstream in(ReadFile(file));
  std::vector<pid_t> pids;
  for (long pid = 0; in >> pid;) pids.push_back(static_cast<pid_t>(pid));
  return pids;
}

/// Kills what a failed test may have left running. Only processes that still
/// run `sleep` or `sh` are touched, so a reused pid is left alone.
class PidReaper {
 public:
  explicit PidReaper(fs::path dir) : dir_(std::move(dir)) {}
  ~PidReaper() {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_, ec)) {
      for (pid_t pid : ReadPids(entry.path())) {
        std::string cmdline = ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
        if (cmdline.rfind("sleep", 0) == 0 || cmdline.rfind("sh", 0) == 0) kill(pid, SIGKILL);
      }
    }
  }

 private:
  fs::path dir_;
};

TEST(E2eLifecycle, CtrlCCancelsTheRunAndKillsEveryProcess) {
  Home home;
  fs::path pids = home.dir() / "pids";
  fs::create_directories(pids);
  PidReaper reaper(pids);
  // Each task: a background grandchild, one that ignores SIGTERM, and the
  // shell itself waiting; it publishes all three pids with an atomic rename.
  std::string tasks = "[";
  for (int i = 0; i < 3; ++i) {
    std::string id = "t" + std::to_string(i);
    std::string tmp = (pids / (id + ".tmp")).string();
    std::string done = (pids / (id + ".pids")).string();
    std::string script = "sleep 300 & a=$!; (trap '' TERM; exec sleep 300) & b=$!; "
                         "echo $$ $a $b > " + tmp + " && mv " + tmp + " " + done + "; wait";
    tasks += std::string(i ? "," : "") + "{\"id\": \"" + id +
             "\", \"command\": [\"sh\", \"-c\", " + nlohmann::json(script).dump() + "]}";
  }
  fs::path file = home.Write("tasks.json", tasks + "]");

  auto batch = StartSandrun(home, {"batch", "--backend", "local", "-j", "3", file.string()});
  ASSERT_TRUE(batch->started());
  bool all_started = WaitUntil([&] { return Home::CountFiles(pids, ".pids") == 3; }, seconds(20));
  ASSERT_TRUE(all_started) << batch->Err();

  auto interrupted = Clock::now();
  batch->Signal(SIGINT);
  std::optional<int> code = batch->Wait(seconds(10));
  ASSERT_TRUE(code.has_value()) << "still running 10 s after SIGINT\n" << batch->Err();
  EXPECT_EQ(*code, 130) << batch->Err();
  EXPECT_LT(SecondsSince(interrupted), 5.0);

  // Killed processes may stay zombies for a moment until init reaps them; a
  // process that still runs a second after sandrun exited was not killed.
  std::vector<pid_t> all;
  for (int i = 0; i < 3; ++i) {
    for (pid_t pid : ReadPids(pids / ("t" + std::to_string(i) + ".pids"))) all.push_back(pid);
  }
  ASSERT_EQ(all.size(), 9u);
  for (pid_t pid : all) {
    EXPECT_TRUE(WaitUntil([pid] { return ProcessGone(pid); }, milliseconds(1000)))
        << "pid " << pid << " survived: " << ReadFile("/proc/" + std::to_string(pid) + "/cmdline");
  }

  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 1u) << runs.dump(2);
  EXPECT_EQ(runs[0]["status"], "cancelled");
  nlohmann::json shown = home.Show(runs[0].value("run_id", ""));
  EXPECT_EQ(shown["run"]["status"], "cancelled");
  EXPECT_EQ(shown["run"]["cancelled"], 3);
  ASSERT_EQ(shown["tasks"].size(), 3u);
  for (const auto& task : shown["tasks"]) EXPECT_EQ(task["outcome"], "cancelled") << task.dump();
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
