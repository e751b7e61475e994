// `sandrun batch --backend local`: verdicts, the summary, the archived run,
// parallelism, --race, --junit, and the quickstart example.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

CommandOutput Batch(const Home& home, const fs::path& file,
                    const std::vector<std::string>& flags = {}) {
  std::vector<std::string> args{"batch", "--backend", "local", file.string()};
  args.insert(args.end(), flags.begin(), flags.end());
  return home.Run(args);
}

/// The run id of the only run in `home`'s archive ("" and a failure otherwise).
std::string OnlyRun(const Home& home) {
  nlohmann::json runs = home.Runs();
  EXPECT_EQ(runs.size(), 1u) << runs.dump(2);
  return runs.empty() ? "" : runs[0].value("run_id", "");
}

/// The summary table's row for `task`: "TASK  RESULT  DETAIL  TIME  SANDBOX".
std::string SummaryRow(const std::string& err, const std::string& task) {
  for (const auto& line : LinesWith(err, task + " ")) {
    if (line.rfind(task + " ", 0) == 0) return line;
  }
  return "";
}

constexpr char kMixed[] = R"([
  {"id": "passes",   "command": ["sh", "-c", "echo fine"]},
  {"id": "fails",    "command": ["sh", "-c", "echo broken >&2; exit 4"]},
  {"id": "hangs",    "command": ["sleep", "30"], "timeout": 1},
  {"id": "passes-2", "command": ["true"]}
])";

TEST(E2eBatch, MixedVerdictsExitOneWithASummary) {
  Home home;
  fs::path file = home.Write("tasks.json", kMixed);
  auto start = Clock::now();
  CommandOutput out = Batch(home, file, {"-j", "4"});
  EXPECT_LT(SecondsSince(start), 15.0);
  EXPECT_EQ(out.exit_code, 1) << out.err;

  EXPECT_CONTAINS(SummaryRow(out.err, "passes"), "PASS");
  EXPECT_CONTAINS(SummaryRow(out.err, "passes-2"), "PASS");
  EXPECT_CONTAINS(SummaryRow(out.err, "fails"), "FAIL");
  EXPECT_CONTAINS(SummaryRow(out.err, "fails"), "exit 4");
  EXPECT_CONTAINS(SummaryRow(out.err, "hangs"), "TIMEOUT");
  EXPECT_CONTAINS(out.err, "2 passed, 2 failed (1 timed out)");

  std::string run = OnlyRun(home);
  ASSERT_FALSE(run.empty());
  nlohmann::json listed = home.Runs()[0];
  EXPECT_EQ(listed["status"], "failed");
  EXPECT_EQ(listed["total"], 4);
  EXPECT_EQ(listed["passed"], 2);
  EXPECT_EQ(listed["failed"], 1);
  EXPECT_EQ(listed["timed_out"], 1);
  EXPECT_CONTAINS(out.err, "sandrun results show " + run);

  // One record per task, in the archive and readable with `results show`.
  EXPECT_EQ(Home::CountFiles(home.archive() / run / "tasks", ".json"), 4);
  EXPECT_TRUE(fs::exists(home.archive() / run / "run.json"));
  nlohmann::json fails = home.Show(run, "fails");
  EXPECT_EQ(fails["outcome"], "exited");
  EXPECT_EQ(fails["exit_code"], 4);
  EXPECT_EQ(fails["stderr"]["text"], "broken\n");
  nlohmann::json hangs = home.Show(run, "hangs");
  EXPECT_EQ(hangs["outcome"], "timed_out");
  EXPECT_EQ(hangs["exit_code"], 124);
  EXPECT_EQ(home.Show(run, "passes")["stdout"]["text"], "fine\n");

  CommandOutput shown = home.Run({"results", "show", run, "fails"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_CONTAINS(shown.out, "broken");
  EXPECT_CONTAINS(shown.out, "failed");
}

// --isolation process: tasks share one warm sandbox per job, each in its own
// directory; a task may still ask for a sandbox of its own.
TEST(E2eBatch, ProcessIsolationSharesSandboxesAndATaskMayOptOut) {
  Home home;
  fs::path file = home.Write("tasks.json", R"([
    {"id": "one",   "command": ["sh", "-c", "echo one > here.txt; pwd"]},
    {"id": "two",   "command": ["sh", "-c", "ls; pwd"]},
    {"id": "alone", "command": ["true"], "isolation": "sandbox"}
  ])");
  CommandOutput out = Batch(home, file, {"-j", "1", "--isolation", "process"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  std::string run = OnlyRun(home);
  nlohmann::json one = home.Show(run, "one");
  nlohmann::json two = home.Show(run, "two");
  nlohmann::json alone = home.Show(run, "alone");
  EXPECT_EQ(one.value("isolation", ""), "process");
  EXPECT_EQ(alone.value("isolation", ""), "sandbox");
  EXPECT_EQ(one.value("sandbox_id", "a"), two.value("sandbox_id", "b"));
  EXPECT_NE(one.value("sandbox_id", ""), alone.value("sandbox_id", ""));
  EXPECT_CONTAINS(one["stdout"].value("text", ""), ".sandrun-tasks/one");
  EXPECT_CONTAINS(two["stdout"].value("text", ""), ".sandrun-tasks/two");
  EXPECT_EQ(two["stdout"].value("text", "").find("here.txt"), std::string::npos)
      << "the second task saw the first one's file";

  CommandOutput bad = Batch(home, file, {"--isolation", "vm"});
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_CONTAINS(bad.err, "isolation");
  EXPECT_CONTAINS(bad.err, "'process'");
}

// A task's own lifetime still caps its command in a shared sandbox (which
// lives longer, for the tasks after it).
TEST(E2eBatch, ATasksLifetimeCapsItInASharedSandbox) {
  Home home;
  fs::path file = home.Write("tasks.json", R"([{"id": "long", "command": ["sleep", "30"]}])");
  auto start = Clock::now();
  CommandOutput out = Batch(home, file, {"--isolation", "process", "--lifetime", "2"});
  EXPECT_LT(SecondsSince(start), 20.0);
  EXPECT_EQ(out.exit_code, 1) << out.err;
  nlohmann::json record = home.Show(OnlyRun(home), "long");
  EXPECT_EQ(record.value("outcome", ""), "timed_out") << record.dump(2);
  EXPECT_EQ(record.value("ended_by", ""), "lifetime") << record.dump(2);
  EXPECT_CONTAINS(record["notes"].dump(), "the task's lifetime (2 s) ended the command");
}

TEST(E2eBatch, AllPassingExitsZero) {
  Home home;
  fs::path file = home.Write("tasks.json", R"([
    {"id": "a", "command": ["true"]},
    {"id": "b", "command": ["sh", "-c", "test \"$X\" = y"], "env": {"X": "y"}},
    {"id": "c", "command": ["sh", "-c", "read line; test \"$line\" = hello"], "stdin": "hello\n"}
  ])");
  CommandOutput out = Batch(home, file);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_CONTAINS(out.err, "3 passed, 0 failed");
  std::string run = OnlyRun(home);
  EXPECT_EQ(home.Runs()[0]["status"], "passed");
  EXPECT_EQ(Home::CountFiles(home.archive() / run / "tasks", ".json"), 3);
}

TEST(E2eBatch, UploadsAreRelativeToTheBatchFile) {
  Home home;
  home.Write("suite/data.txt", "payload\n");
  fs::path file = home.Write("suite/tasks.json", R"([
    {"id": "reads", "command": ["cat", "data.txt"], "upload": ["data.txt"]}
  ])");
  CommandOutput out = Batch(home, file);  // cwd is not suite/
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(home.Show(OnlyRun(home), "reads")["stdout"]["text"], "payload\n");
}

TEST(E2eBatch, JobsRunInParallel) {
  Home home;
  std::string tasks = "[";
  for (int i = 0; i < 6; ++i) {
    tasks += std::string(i ? "," : "") + "{\"id\": \"s" + std::to_string(i) +
             "\", \"command\": [\"sleep\", \"1\"]}";
  }
  fs::path file = home.Write("tasks.json", tasks + "]");
  auto start = Clock::now();
  CommandOutput out = Batch(home, file, {"-j", "3"});
  double seconds = SecondsSince(start);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_CONTAINS(out.err, "6 passed");
  // Serially this takes 6 s, with 3 at a time about 2 s. A sanity bound, not a benchmark.
  EXPECT_LT(seconds, 4.5);
  EXPECT_GE(seconds, 1.9);  // and no more than 3 at a time
}

TEST(E2eBatch, RaceReportsTheFastestPassingTaskAndCancelsTheRest) {
  Home home;
  fs::path file = home.Write("tasks.json", R"([
    {"id": "slow",   "command": ["sleep", "5"]},
    {"id": "fast",   "command": ["sleep", "0.2"]},
    {"id": "broken", "command": ["false"]}
  ])");
  auto start = Clock::now();
  CommandOutput out = Batch(home, file, {"--race", "-j", "3"});
  double seconds = SecondsSince(start);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_LT(seconds, 4.0);
  EXPECT_CONTAINS(out.err, "fastest passing task: fast");

  std::string run = OnlyRun(home);
  nlohmann::json shown = home.Show(run);
  EXPECT_EQ(shown["run"]["fastest_passing_task"], "fast");
  EXPECT_EQ(shown["run"]["passed"], 1);
  EXPECT_EQ(home.Show(run, "fast")["verdict"], "passed");
  EXPECT_EQ(home.Show(run, "slow")["outcome"], "cancelled");
  // `false` may finish before `fast` passes (then it failed) or not (cancelled).
  std::string broken = home.Show(run, "broken").value("verdict", "");
  EXPECT_TRUE(broken == "failed" || broken == "cancelled") << broken;
}

TEST(E2eBatch, RaceWithNoPassingTaskExitsOne) {
  Home home;
  fs::path file = home.Write("tasks.json", R"([
    {"id": "no-1", "command": ["false"]},
    {"id": "no-2", "command": ["sh", "-c", "exit 7"]}
  ])");
  CommandOutput out = Batch(home, file, {"--race"});
  EXPECT_EQ(out.exit_code, 1) << out.err;
  EXPECT_LACKS(out.err, "fastest passing task");
}

TEST(E2eBatch, JunitFileHasTheRightCounts) {
  Home home;
  fs::path file = home.Write("tasks.json", kMixed);
  fs::path junit = home.work() / "out" / "junit.xml";
  fs::create_directories(junit.parent_path());
  CommandOutput out = Batch(home, file, {"--junit", junit.string()});
  EXPECT_EQ(out.exit_code, 1) << out.err;
  std::string xml = ReadFile(junit);
  ASSERT_FALSE(xml.empty());
  EXPECT_EQ(xml.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", 0), 0u) << xml;
  EXPECT_CONTAINS(xml, "<testsuites name=\"sandrun\" tests=\"4\" failures=\"2\" errors=\"0\"");
  EXPECT_EQ(LinesWith(xml, "<testcase ").size(), 4u);
  EXPECT_EQ(LinesWith(xml, "<failure ").size(), 2u);
  for (const char* id : {"passes", "fails", "hangs", "passes-2"}) {
    EXPECT_CONTAINS(xml, "name=\"" + std::string(id) + "\"");
  }
  EXPECT_CONTAINS(xml, "</testsuites>");

  // The archived run exports the same counts.
  fs::path exported = home.work() / "exported.xml";
  CommandOutput exp = home.Run({"results", "export", "latest", "--junit", exported.string()});
  EXPECT_EQ(exp.exit_code, 0) << exp.err;
  EXPECT_CONTAINS(ReadFile(exported), "tests=\"4\" failures=\"2\" errors=\"0\"");
}

TEST(E2eBatch, PruneKeepsTheNewestRuns) {
  Home home;
  fs::path file = home.Write("tasks.json", R"([{"id": "a", "command": ["true"]}])");
  for (int i = 0; i < 3; ++i) ASSERT_EQ(Batch(home, file).exit_code, 0);
  nlohmann::json before = home.Runs();
  ASSERT_EQ(before.size(), 3u);
  CommandOutput pruned = home.Run({"results", "prune", "--keep", "1"});
  EXPECT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_CONTAINS(pruned.out, "removed 2 run(s)");
  nlohmann::json after = home.Runs();
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0]["run_id"], before[0]["run_id"]);
  EXPECT_EQ(Home::CountFiles(home.archive(), "run.json"), 1);
}

TEST(E2eBatch, QuickstartExample) {
  Home home;
  fs::path file = fs::path(SANDRUN_SOURCE_DIR) / "examples" / "quickstart" / "tasks.json";
  CommandOutput out = Batch(home, file, {"-j", "6"});
  EXPECT_EQ(out.exit_code, 1) << out.err;
  EXPECT_CONTAINS(out.err, "10 passed, 2 failed (1 timed out)");
  EXPECT_CONTAINS(SummaryRow(out.err, "check-sum-wrong"), "FAIL");
  EXPECT_CONTAINS(SummaryRow(out.err, "hangs-forever"), "TIMEOUT");
  EXPECT_CONTAINS(SummaryRow(out.err, "top-words"), "PASS");
  std::string run = OnlyRun(home);
  EXPECT_EQ(Home::CountFiles(home.archive() / run / "tasks", ".json"), 12);
}

}  // namespace
}  // namespace sandrun::e2e
