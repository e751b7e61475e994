// `sandrun exec --backend local`: exit codes, streamed output, env, stdin,
// uploads and downloads, --json and the network switch.
#include <algorithm>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

CommandOutput Exec(const Home& home, const std::vector<std::string>& flags,
                   const std::vector<std::string>& command, CommandOptions options = {}) {
  std::vector<std::string> args{"exec", "--backend", "local"};
  args.insert(args.end(), flags.begin(), flags.end());
  args.push_back("--");
  args.insert(args.end(), command.begin(), command.end());
  return home.Run(args, options);
}

/// Every byte value, twice, with a NUL first: not valid UTF-8 nor text.
std::string AllBytes() {
  std::string bytes;
  for (int round = 0; round < 2; ++round) {
    for (int b = 0; b < 256; ++b) bytes.push_back(static_cast<char>(b));
  }
  return bytes;
}

TEST(E2eExec, ZeroExitPassesThrough) {
  Home home;
  CommandOutput out = Exec(home, {}, {"true"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
}

TEST(E2eExec, NonZeroExitPassesThrough) {
  Home home;
  CommandOutput out = Exec(home, {}, {"sh", "-c", "exit 3"});
  EXPECT_EQ(out.exit_code, 3) << out.err;
}

TEST(E2eExec, TimeoutExits124Promptly) {
  Home home;
  auto start = Clock::now();
  CommandOutput out = Exec(home, {"--timeout", "1"}, {"sleep", "30"});
  double seconds = SecondsSince(start);
  EXPECT_EQ(out.exit_code, 124) << out.err;
  EXPECT_LT(seconds, 5.0);
  EXPECT_GE(seconds, 0.9);
  EXPECT_CONTAINS(out.err, "timed out");
}

TEST(E2eExec, CommandNotFoundExits127) {
  Home home;
  CommandOutput out = Exec(home, {}, {"no-such-command-sandrun-e2e"});
  EXPECT_EQ(out.exit_code, 127);
  EXPECT_CONTAINS(out.err, "no-such-command-sandrun-e2e");
}

TEST(E2eExec, NotExecutableExits126) {
  Home home;
  home.Write("script.sh", "#!/bin/sh\necho should not run\n");  // mode 0644
  CommandOutput out = Exec(home, {"--upload", "script.sh"}, {"./script.sh"});
  EXPECT_EQ(out.exit_code, 126) << out.err;
  EXPECT_LACKS(out.out, "should not run");
}

TEST(E2eExec, SignalExits128PlusN) {
  Home home;
  CommandOutput out = Exec(home, {}, {"sh", "-c", "kill -SEGV $$"});
  EXPECT_EQ(out.exit_code, 128 + SIGSEGV) << out.err;
  EXPECT_CONTAINS(out.err, "SIGSEGV");
}

TEST(E2eExec, StdoutAndStderrAreSeparateAndExact) {
  Home home;
  CommandOutput out =
      Exec(home, {}, {"sh", "-c", "printf 'out one\\n'; printf 'err one' >&2; printf 'out two'"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "out one\nout two");
  EXPECT_EQ(out.err, "err one");
}

TEST(E2eExec, BinaryOutputIsByteExactOnBothStreams) {
  Home home;
  home.Write("bytes.bin", AllBytes());
  CommandOutput out = Exec(home, {"--upload", "bytes.bin"},
                           {"sh", "-c", "cat bytes.bin; cat bytes.bin bytes.bin >&2"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, AllBytes());
  EXPECT_EQ(out.err, AllBytes() + AllBytes());
}

TEST(E2eExec, OutputLongerThanTheRecordCapIsStreamedWhole) {
  Home home;
  // About 2.3 MB, past the record's 1 MiB cap: the terminal still gets all of it.
  CommandOutput expected = sandrun::testing::RunCommand({"seq", "1", "350000"});
  ASSERT_EQ(expected.exit_code, 0);
  CommandOutput out = Exec(home, {}, {"seq", "1", "350000"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out.size(), expected.out.size());
  EXPECT_TRUE(out.out == expected.out);
  EXPECT_CONTAINS(out.err, "sandrun results fetch");  // the note about the cap
}

TEST(E2eExec, OutputIsStreamedWhileTheCommandRuns) {
  Home home;
  // The sandbox has a /tmp of its own and reads stdin whole before it starts, so the test
  // cannot tell the command when to go on: it sleeps long enough for a loaded machine.
  auto exec = StartSandrun(home, {"exec", "--backend", "local", "--", "sh", "-c",
                                  "echo first; echo first-err >&2; sleep 8; echo second"});
  ASSERT_TRUE(exec->started());
  // Both lines arrive long before the command ends. They come on two pipes, read apart,
  // so wait for both rather than one.
  EXPECT_TRUE(WaitUntil(
      [&] {
        return exec->Out() == "first\n" && exec->Err().find("first-err\n") != std::string::npos;
      },
      std::chrono::seconds(7)))
      << "out: " << exec->Out() << "\nerr: " << exec->Err();
  EXPECT_FALSE(exec->Wait(std::chrono::milliseconds(0)).has_value());
  std::optional<int> code = exec->Wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0) << exec->Err();
  EXPECT_EQ(exec->Out(), "first\nsecond\n");
}

TEST(E2eExec, CtrlCExits130AndRecordsCancelled) {
  Home home;
  auto exec = StartSandrun(home, {"exec", "--backend", "local", "--", "sh", "-c",
                                  "echo started; exec sleep 300"});
  ASSERT_TRUE(exec->started());
  ASSERT_TRUE(WaitUntil([&] { return exec->Out() == "started\n"; }, std::chrono::seconds(10)));
  auto interrupted = Clock::now();
  exec->Signal(SIGINT);
  std::optional<int> code = exec->Wait(std::chrono::seconds(10));
  ASSERT_TRUE(code.has_value()) << exec->Err();
  EXPECT_EQ(*code, 130) << exec->Err();
  EXPECT_LT(SecondsSince(interrupted), 5.0);
  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0]["status"], "cancelled");
  EXPECT_EQ(home.Show(runs[0].value("run_id", ""), "exec")["outcome"], "cancelled");
  // The table's counts add up to its total: the cancelled test has a column.
  CommandOutput table = home.Run({"results", "list"});
  ASSERT_EQ(table.exit_code, 0) << table.err;
  EXPECT_CONTAINS(table.out, "CANCELLED");
  std::istringstream lines(table.out);
  std::string header, row;
  std::getline(lines, header);
  std::getline(lines, row);
  std::istringstream header_words(header), row_words(row);
  std::vector<std::string> names, values;
  for (std::string w; header_words >> w;) names.push_back(w == "TIMED" ? "TIMED_OUT" : w);
  std::erase(names, "OUT");
  for (std::string w; row_words >> w;) values.push_back(w);
  ASSERT_EQ(names.size(), values.size()) << table.out;
  auto column = [&](const std::string& name) {
    auto at = std::find(names.begin(), names.end(), name);
    return at == names.end() ? std::string("?") : values[at - names.begin()];
  };
  EXPECT_EQ(column("CANCELLED"), "1") << table.out;
  EXPECT_EQ(column("TOTAL"), "1") << table.out;
  EXPECT_EQ(column("FAILED"), "0") << table.out;
}

TEST(E2eExec, UnenforcedLimitsAreNotedReadably) {
  Home home;
  CommandOutput out = Exec(home, {"--memory", "64", "--cpu", "1"}, {"true"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  // The local backend cannot enforce either; it must say so, in plain numbers.
  EXPECT_CONTAINS(out.err, "memory limit of 64");
  EXPECT_CONTAINS(out.err, "cpu limit of 1");
  EXPECT_LACKS(out.err, "1.000000");  // printed with std::to_string(double)
}

TEST(E2eExec, EnvIsSetInTheSandbox) {
  Home home;
  CommandOutput out = Exec(home, {"--env", "GREETING=hello world", "-e", "EMPTYISH=a=b"},
                           {"sh", "-c", "printf '%s|%s' \"$GREETING\" \"$EMPTYISH\""});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "hello world|a=b");
}

TEST(E2eExec, InteractivePassesStdin) {
  Home home;
  CommandOptions options;
  options.stdin_data = AllBytes();
  CommandOutput out = Exec(home, {"-i"}, {"cat"}, options);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, AllBytes());
}

TEST(E2eExec, WithoutInteractiveStdinIsNotPassed) {
  Home home;
  CommandOptions options;
  options.stdin_data = "secret input\n";
  CommandOutput out = Exec(home, {}, {"cat"}, options);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "");
}

TEST(E2eExec, UploadAndDownloadLandInTheRunsArtifacts) {
  Home home;
  home.Write("input.txt", "shout this\n");
  home.Write("tree/sub/leaf.txt", "leaf\n");
  CommandOutput out = Exec(
      home,
      {"--upload", "input.txt", "--upload", "tree:renamed", "--download", "result.txt",
       "--download", "outdir", "--json"},
      {"sh", "-c",
       "tr a-z A-Z < input.txt > result.txt && mkdir outdir && cp renamed/sub/leaf.txt outdir/"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  std::string run = record.value("run_id", "");
  ASSERT_FALSE(run.empty());

  TempDir fetched;
  CommandOutput fetch = home.Run({"results", "fetch", run, "-o", fetched.path().string()});
  ASSERT_EQ(fetch.exit_code, 0) << fetch.err;
  fs::path artifacts = fetched.path() / run / "artifacts" / "exec";
  EXPECT_EQ(ReadFile(artifacts / "downloads" / "result.txt"), "SHOUT THIS\n");
  EXPECT_EQ(ReadFile(artifacts / "downloads" / "outdir" / "leaf.txt"), "leaf\n");
  auto shown = home.Show(run, "exec");
  std::set<std::string> listed;
  for (const auto& a : shown["artifacts"]) listed.insert(a.get<std::string>());
  EXPECT_EQ(listed, (std::set<std::string>{"downloads/outdir/leaf.txt", "downloads/result.txt"}))
      << shown.dump(2);
}

TEST(E2eExec, JsonPrintsTheRecordWithTheOutcome) {
  Home home;
  CommandOutput out = Exec(home, {"--json", "--name", "answer"},
                           {"sh", "-c", "echo to-record; exit 3"});
  EXPECT_EQ(out.exit_code, 3) << out.err;
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record["schema"], "sandrun.result/v1");
  EXPECT_EQ(record["task_id"], "answer");
  EXPECT_EQ(record["backend"], "local");
  EXPECT_EQ(record["outcome"], "exited");
  EXPECT_EQ(record["verdict"], "failed");
  EXPECT_EQ(record["exit_code"], 3);
  EXPECT_EQ(record["argv"], nlohmann::json({"sh", "-c", "echo to-record; exit 3"}));
  EXPECT_EQ(record["stdout"]["text"], "to-record\n");
  EXPECT_EQ(record["stdout"]["total_bytes"], 10);
  // The same record is in the archive.
  auto archived = home.Show(record.value("run_id", "?"), "answer");
  EXPECT_EQ(archived["outcome"], "exited");
  EXPECT_EQ(archived["exit_code"], 3);
}

TEST(E2eExec, JsonSpillPathIsTheArchivePath) {
  Home home;
  CommandOutput out = Exec(home, {"--json"}, {"sh", "-c", "echo spilled"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  std::string run = record.value("run_id", "");
  // As documented and as archived: relative to the archive, valid after the
  // outbox handed the file over (an outbox path would name a moved file).
  std::string spill = record["stdout"].value("spill_path", "");
  EXPECT_EQ(spill, run + "/artifacts/exec/stdout.log");
  EXPECT_EQ(ReadFile(home.archive() / spill), "spilled\n");
  EXPECT_EQ(home.Show(run, "exec")["stdout"]["spill_path"], spill);
}

TEST(E2eExec, JsonRecordOfATimeout) {
  Home home;
  CommandOutput out = Exec(home, {"--json", "--timeout", "1"}, {"sleep", "30"});
  EXPECT_EQ(out.exit_code, 124) << out.err;
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record["outcome"], "timed_out");
  EXPECT_EQ(record["verdict"], "timed_out");
  EXPECT_EQ(record["exit_code"], 124);
}

TEST(E2eExec, NetworkNoneBlocksLoopbackByDefault) {
  Home home;
  LoopbackListener listener;
  ASSERT_NE(listener.port(), 0);
  std::string connect = "echo hi > /dev/tcp/127.0.0.1/" + std::to_string(listener.port());
  CommandOutput out = Exec(home, {"--json"}, {"bash", "-c", connect});
  EXPECT_NE(out.exit_code, 0) << out.err;
  EXPECT_FALSE(listener.HasPendingConnection());
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record["network_isolated"], true);
}

TEST(E2eExec, NetworkOpenAllowsLoopback) {
  Home home;
  LoopbackListener listener;
  ASSERT_NE(listener.port(), 0);
  std::string connect = "echo hi > /dev/tcp/127.0.0.1/" + std::to_string(listener.port());
  CommandOutput out = Exec(home, {"--network", "open"}, {"bash", "-c", connect});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_TRUE(listener.HasPendingConnection());
}

TEST(E2eExec, EveryExecIsArchivedAsARun) {
  Home home;
  ASSERT_EQ(Exec(home, {}, {"true"}).exit_code, 0);
  ASSERT_EQ(Exec(home, {}, {"false"}).exit_code, 1);
  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 2u) << runs.dump(2);
  // Run ids sort by the second they started in; both runs may share one.
  std::multiset<std::string> statuses{runs[0].value("status", ""), runs[1].value("status", "")};
  EXPECT_EQ(statuses, (std::multiset<std::string>{"failed", "passed"}));
  EXPECT_EQ(Home::CountFiles(home.archive(), "exec.json"), 2);
}

}  // namespace
}  // namespace sandrun::e2e

namespace sandrun::e2e {
namespace {

// `sandrun exec -- ./build/my_test` runs the host's file: a relative command
// path goes up to the same relative path in the sandbox.
TEST(E2eExec, RelativeCommandPathIsUploadedAndRun) {
  Home home;
  fs::path script = home.Write("build/my_test", "#!/bin/sh\necho \"ran from $(pwd | tail -c 5)\"\nexit 3\n");
  fs::permissions(script, fs::perms::owner_all);
  CommandOutput out = home.Run({"exec", "--backend", "local", "--", "./build/my_test"});
  EXPECT_EQ(out.exit_code, 3) << out.err;
  EXPECT_EQ(out.out, "ran from work\n");
  // An absolute path is the sandbox's own, never uploaded.
  CommandOutput absolute = home.Run({"exec", "--backend", "local", "--", "/bin/sh", "-c", "exit 4"});
  EXPECT_EQ(absolute.exit_code, 4) << absolute.err;
}

}  // namespace
}  // namespace sandrun::e2e

namespace sandrun::e2e {
namespace {

// What the CTest adapter relies on (docs/ctest.md): a record named after any
// test name, a launcher that names it through SANDRUN_NAME, a host
// executable at an absolute path, and a --gpu request no backend can meet.
TEST(E2eExec, AnyNameNamesTheRecordAndASafeTaskId) {
  Home home;
  CommandOutput out = Exec(home, {"--json", "--name", "Suite/Param.Case/0 x"}, {"true"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record["test_name"], "Suite/Param.Case/0 x");
  EXPECT_EQ(record["task_id"], "Suite_Param.Case_0_x");
  CommandOutput empty = Exec(home, {"--name", ""}, {"true"});
  EXPECT_EQ(empty.exit_code, 2) << empty.err;
}

TEST(E2eExec, SandrunNameIsTheDefaultName) {
  Home home;
  CommandOutput out = Exec(home, {"--json"}, {"true"}, {.env = {{"SANDRUN_NAME", "from env"}}});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record["test_name"], "from env");
  CommandOutput flag = Exec(home, {"--json", "--name", "flag"}, {"true"},
                            {.env = {{"SANDRUN_NAME", "from env"}}});
  EXPECT_EQ(nlohmann::json::parse(flag.out, nullptr, false).value("test_name", ""), "flag");
}

TEST(E2eExec, UploadCommandRunsACopyOfAnAbsoluteHostPath) {
  Home home;
  fs::path script = home.Write("bin/tool", "#!/bin/sh\necho \"$0 $1\"\nexit 5\n");
  fs::permissions(script, fs::perms::owner_all);
  ASSERT_TRUE(script.is_absolute());
  CommandOutput out = Exec(home, {"--upload-command"}, {script.string(), "arg"});
  EXPECT_EQ(out.exit_code, 5) << out.err;
  // The sandbox's copy ran (the local backend may show it by full path).
  EXPECT_CONTAINS(out.out, "./tool arg\n");
  EXPECT_EQ(out.out.find(script.string()), std::string::npos) << out.out;
  CommandOutput missing = Exec(home, {"--upload-command"}, {"/no/such/tool"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_CONTAINS(missing.err, "/no/such/tool");
}

TEST(E2eExec, AGpuNoBackendOfTheRunCanProvideIsRefusedUpFront) {
  Home home;
  CommandOutput out = Exec(home, {"--gpu", "A10G:1"}, {"true"});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, "A10G:1");
  EXPECT_CONTAINS(out.err, "can provide a GPU");
  EXPECT_EQ(home.Runs().size(), 0u) << "nothing runs, nothing is recorded";
}

}  // namespace
}  // namespace sandrun::e2e
