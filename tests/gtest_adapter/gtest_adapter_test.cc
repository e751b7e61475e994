// Runs the sample GoogleTest binaries (sample_tests.cc, fanout_tests.cc) the
// way users do — the binary itself, and `sandrun gtest` — on the local,
// Docker and Modal backends (Modal: the fake Modal server in container mode),
// and checks from the host's own --gtest_output=json every test's status,
// failure message and file:line.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include <unistd.h>

#include "sandrun/config.h"
#include "sandrun/registry.h"
#include "e2e/e2e_support.h"
#include "gtest_adapter/adapter_test_env.h"
#include "support/docker_required.h"
#ifdef SANDRUN_WITH_MODAL_FAKE
#include "fake_modal_fixture.h"
#endif
#include "support/test_util.h"

namespace sandrun::gtest {
namespace {

using json = nlohmann::json;
using sandrun::testing::CommandOptions;
using sandrun::testing::CommandOutput;
using sandrun::testing::ReadFile;
using sandrun::testing::RunCommand;
using sandrun::testing::TempDir;

/// The line of `source` (default: sample_tests.cc) carrying "// @marker".
int LineOf(const std::string& marker, const char* source = SAMPLE_SOURCE) {
  std::ifstream in(source);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find("// @" + marker) != std::string::npos) return n;
  }
  ADD_FAILURE() << "no marker " << marker;
  return -1;
}


/// A source file as its failures name it: __FILE__, which is
/// relative to the build directory when the build rewrote absolute paths
/// (ccache's base_dir does), as this file's own __FILE__ shows.
std::string SourceAsCompiled(const char* source) {
  if (std::string(__FILE__).rfind('/', 0) == 0) return source;
  return std::filesystem::path(source).lexically_relative(SANDRUN_BUILD_DIR).string();
}
std::string SampleFile() { return SourceAsCompiled(SAMPLE_SOURCE); }

/// Checks one failure text: "file:line\n...message...".
void ExpectFailureAt(const HostTest& test, const std::string& marker, const std::string& message) {
  std::string where = SampleFile() + ":" + std::to_string(LineOf(marker)) + "\n";
  bool found = false;
  for (const auto& f : test.failures) {
    if (f.rfind(where, 0) == 0 && f.find(message) != std::string::npos) found = true;
  }
  EXPECT_TRUE(found) << "no failure at " << where << " with '" << message << "' in:\n"
                     << ::testing::PrintToString(test.failures);
}

void ExpectFailureMentions(const HostTest& test, const std::string& text) {
  bool found = false;
  for (const auto& f : test.failures) found = found || f.find(text) != std::string::npos;
  EXPECT_TRUE(found) << "no failure mentions '" << text << "' in:\n"
                     << ::testing::PrintToString(test.failures);
}

// A bad backend setting is bad input for the adapter as for the CLI (one
// run-setup path): exit 2 naming the setting, never a silent fallback to
// the next backend, on the binary itself and through `sandrun gtest`.
TEST(GtestAdapterSetup, ABadBackendSettingIsBadInputNotAFallback) {
  BackendEnv env("local");
  {
    std::ofstream config(env.path() / "sandrun.json");
    config << R"({"backends": {"docker": {"no_such_key": 1}}})";
  }
  CommandOptions options = env.Options();
  options.env["SANDRUN_BACKEND"] = "docker";
  options.env["SANDRUN_FALLBACK"] = "local";
  CommandOutput binary = RunCommand({SAMPLE_BINARY, "--sandrun_filter=Filtered.*"}, options);
  EXPECT_EQ(binary.exit_code, 2) << binary.out << binary.err;
  EXPECT_NE(binary.err.find("unknown config key 'no_such_key'"), std::string::npos) << binary.err;
  EXPECT_EQ(binary.out.find("[       OK ] sandrun/Filtered"), std::string::npos) << binary.out;

  CommandOutput runner =
      sandrun::testing::RunSandrun({"gtest", SAMPLE_BINARY, "--filter", "Sample.Passes"}, options);
  EXPECT_EQ(runner.exit_code, 2) << runner.out << runner.err;
  EXPECT_NE(runner.err.find("unknown config key 'no_such_key'"), std::string::npos) << runner.err;
}

TEST_P(GtestAdapterTest, SampleBinaryReportsEveryRemoteOutcome) {
  std::filesystem::path report = env_->path() / "host.json";
  CommandOutput run = RunCommand({SAMPLE_BINARY, "--gtest_output=json:" + report.string(),
                                  "--sandrun_filter=Filtered.*"},
                                 env_->Options());
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  auto tests = ReadHostReport(report);
  ASSERT_FALSE(tests.empty()) << run.out << run.err;

  auto passed = [&](const std::string& name) {
    ASSERT_TRUE(tests.count(name)) << name << " missing\n" << run.out;
    EXPECT_EQ(tests[name].result, "COMPLETED") << name;
    EXPECT_TRUE(tests[name].failures.empty())
        << name << ": " << ::testing::PrintToString(tests[name].failures);
  };
  passed("Sample.Passes");
  passed("Sample.HugeOutput");
  passed("Sample.ReadsEnv");
  passed("Sample.ReadsUpload");
  passed("SampleDeathTest.Dies");
  passed("Sample.Forks");
  passed("SampleFixture.UsesSetUp");
  passed("Local.RunsOnHost");
  passed("sandrun/Filtered.RunsInSandbox");
  passed("Flaky.FailsOnce");
  EXPECT_EQ(tests.count("Filtered.RunsInSandbox"), 0u) << "the marked TEST ran locally too";
  EXPECT_EQ(tests["Sample.Passes"].properties["sandrun_backend"], GetParam());
  EXPECT_FALSE(tests["Sample.Passes"].properties["sandrun_sandbox"].empty());

  ExpectFailureAt(tests["Sample.ExpectFails"], "expect_fail", "expect message from the sandbox");
  EXPECT_EQ(tests["Sample.ExpectFails"].failures.size(), 1u);
  ExpectFailureAt(tests["Sample.AssertFails"], "assert_fail", "assert message from the sandbox");
  EXPECT_EQ(tests["Sample.AssertFails"].failures.size(), 1u) << "ran past the ASSERT";
  ExpectFailureAt(tests["SampleFixture.FailsInFixture"], "fixture_fail", "fixture failure");
  ExpectFailureAt(tests["sandrun/Filtered.Fails"], "filtered_fail", "filtered failure");

  EXPECT_EQ(tests["Sample.Skipped"].result, "SKIPPED");
  EXPECT_TRUE(tests["Sample.Skipped"].failures.empty());

  ExpectFailureMentions(tests["Sample.Crashes"], "signal 11 (SIGSEGV)");
  ExpectFailureMentions(tests["Sample.Crashes"], "about to crash");
  ExpectFailureMentions(tests["Sample.Hangs"], "timed out after 1 s on backend " + GetParam());
  ExpectFailureMentions(tests["Sample.ExitsEarly"], "exited early");
  ExpectFailureMentions(tests["Sample.ExitsEarly"], "TEST_PREMATURE_EXIT_FILE");

  // Each sandboxed test left a record named Suite.Test with its report.
  CommandOutput records =
      sandrun::testing::RunSandrun({"results", "show", "latest", "--json"}, env_->Options());
  ASSERT_EQ(records.exit_code, 0) << records.err;
  // Several runs may exist (one per backend group); look through all of them.
  CommandOutput list =
      sandrun::testing::RunSandrun({"results", "list", "--json", "--limit", "0"}, env_->Options());
  std::string all_records;
  for (const auto& r : json::parse(list.out, nullptr, false)) {
    std::string id = r.is_object() && r.contains("run_id") ? r["run_id"].get<std::string>() : "";
    if (id.empty()) continue;
    all_records += sandrun::testing::RunSandrun({"results", "show", id, "--json"}, env_->Options()).out;
  }
  for (const char* name : {"Sample.Passes", "Sample.ExpectFails", "Filtered.Fails",
                           "SampleFixture.UsesSetUp"}) {
    EXPECT_NE(all_records.find(std::string("\"test_name\": \"") + name + "\""), std::string::npos)
        << name << " has no record";
  }
  EXPECT_NE(all_records.find("report.json"), std::string::npos) << "no gtest JSON artifact";
  // Marked tests share warm sandboxes by default (docs/config.md, Isolation):
  // the crash, the hang and the early exit above changed no other verdict.
  EXPECT_NE(all_records.find("\"isolation\": \"process\""), std::string::npos);
  EXPECT_EQ(all_records.find("\"isolation\": \"sandbox\""), std::string::npos);
}

TEST_P(GtestAdapterTest, FanOutRunsMarkedTestsAtOnce) {
  std::filesystem::path report = env_->path() / "fanout.json";
  auto started = std::chrono::steady_clock::now();
  CommandOutput run = RunCommand({FANOUT_BINARY, "--gtest_output=json:" + report.string()},
                                 env_->Options());
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  auto tests = ReadHostReport(report);
  for (int i = 1; i <= 16; ++i) {
    std::string name = "FanOut.Sleep" + std::to_string(i);
    ASSERT_TRUE(tests.count(name)) << name;
    EXPECT_TRUE(tests[name].failures.empty()) << name;
  }
  EXPECT_TRUE(tests["Reused.First"].failures.empty());
  ExpectFailureMentions(tests["Reused.Second"], "reused failure");
  EXPECT_EQ(tests["Reused.First"].properties["sandrun_sandbox"],
            tests["Reused.Second"].properties["sandrun_sandbox"]);
  // All were launched at once: with 16 jobs no FanOut test waited for a
  // worker (the records' queue time), whatever the engine's load. One after
  // another, the last would have queued for 15 s at least.
  std::string run_id = tests["FanOut.Sleep1"].properties["sandrun_run"];
  ASSERT_FALSE(run_id.empty()) << run.out;
  CommandOutput shown =
      sandrun::testing::RunSandrun({"results", "show", run_id, "--json"}, env_->Options());
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  json records = json::parse(shown.out, nullptr, false);
  ASSERT_TRUE(records.is_object() && records.contains("tasks")) << shown.out;
  int fan_out_records = 0;
  for (const auto& task : records["tasks"]) {
    std::string id = task.value("task_id", "");
    if (id.rfind("FanOut.Sleep", 0) != 0) continue;
    ++fan_out_records;
    EXPECT_LT(task["durations_ms"].value("queue", -1), 1000) << id << " waited for a worker";
  }
  EXPECT_EQ(fan_out_records, 16) << shown.out;
  if (GetParam() == "local") {
    // Nothing to upload locally: the whole binary takes about one second.
    EXPECT_LT(seconds, 12.0) << "16 x 1 s tests took " << seconds << " s\n" << run.out;
  }
}

/// Host processes (sandboxed ones included: containers share the host's
/// process table) whose command line contains `pattern`.
int ProcessesMatching(const std::string& pattern) {
  CommandOutput out = RunCommand({"pgrep", "-c", "-f", pattern});
  return std::atoi(out.out.c_str());
}

TEST_P(GtestAdapterTest, CtrlCStopsTheSandboxesAndEndsTheBinaryBySigint) {
  // The binary under a name of its own: the sandbox runs it as
  // "./NAME --gtest_filter=...", which no other test's process can match (the
  // other backend's variant at -j2, another checkout's build), while the host
  // process runs ".../NAME --gtest_also_run_disabled_tests ...". The name is
  // stable per checkout and backend, not per run: Docker's exe cache keeps
  // the (80 MB) binary once per name.
  std::uint32_t checkout = 2166136261u;  // FNV-1a of the build directory
  for (unsigned char c : std::string(SANDRUN_BUILD_DIR)) checkout = (checkout ^ c) * 16777619u;
  char checkout_hex[9];
  std::snprintf(checkout_hex, sizeof checkout_hex, "%08x", checkout);
  const std::string name = "fanout_ctrlc_" + GetParam() + "_" + checkout_hex;
  const std::filesystem::path binary_path = env_->path() / name;
  std::filesystem::copy_file(FANOUT_BINARY, binary_path);
  std::filesystem::permissions(binary_path, std::filesystem::perms::owner_all);
  const std::string in_sandbox = name + " --gtest_filter=Interrupted.DISABLED_SleepsLong";
  ASSERT_EQ(ProcessesMatching(in_sandbox), 0) << "a sandbox of an earlier run is still there";
  sandrun::e2e::Background binary(
      {binary_path.string(), "--gtest_also_run_disabled_tests",
       "--gtest_filter=Interrupted.DISABLED_SleepsLong"},
      env_->Options().env, env_->path());
  ASSERT_TRUE(binary.started());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (ProcessesMatching(in_sandbox) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GT(ProcessesMatching(in_sandbox), 0) << "the test never started in its sandbox\n"
                                              << binary.Err();
  binary.Signal(SIGINT);
  auto code = binary.Wait(std::chrono::seconds(40));
  ASSERT_TRUE(code.has_value()) << "Ctrl-C did not end the binary\n" << binary.Err();
  EXPECT_EQ(*code, 128 + SIGINT) << "ends by SIGINT, as without the adapter\n" << binary.Err();
  EXPECT_NE(binary.Err().find("stopping sandboxes"), std::string::npos) << binary.Err();
  EXPECT_EQ(ProcessesMatching(in_sandbox), 0) << "the sandboxed test outlived Ctrl-C";
}

TEST_P(GtestAdapterTest, ZeroCodeRunnerRetriesOnlyWhatFailed) {
  // Where Flaky.FailsOnce remembers its first attempt: a host path (local
  // only) that the local sandbox sees; its /tmp is its own, so a TempDir
  // there never kept the marker and the flaky case failed every round.
  const std::filesystem::path flaky_dir =
      std::filesystem::path(SANDRUN_BUILD_DIR) / ("sample-flaky-" + std::to_string(::getpid()));
  std::filesystem::remove_all(flaky_dir);
  std::filesystem::create_directories(flaky_dir);
  std::filesystem::path junit = env_->path() / "junit.xml";
  std::vector<std::string> args = {"gtest", SAMPLE_BINARY, "--filter",
                                   "Sample.Passes:Sample.ExpectFails:Sample.Skipped:Flaky.*",
                                   "--retry-failed", "2", "--junit", junit.string()};
  if (GetParam() == "local") {
    args.insert(args.end(), {"-e", "SAMPLE_FLAKY_DIR=" + flaky_dir.string()});
  }
  CommandOutput run = sandrun::testing::RunSandrun(args, env_->Options());
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.out.find("[       OK ] Sample.Passes"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[  SKIPPED ] Sample.Skipped"), std::string::npos) << run.out;
  std::string where = SampleFile() + ":" + std::to_string(LineOf("expect_fail")) +
                      ": Failure\n";
  EXPECT_NE(run.out.find(where), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("expect message from the sandbox"), std::string::npos);
  // Retries: only what failed runs again.
  auto count = [&](const std::string& text) {
    std::size_t n = 0;
    for (auto pos = run.out.find(text); pos != std::string::npos; pos = run.out.find(text, pos + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count("[ RUN      ] Sample.Passes\n"), 1u) << run.out;
  EXPECT_EQ(count("[ RUN      ] Sample.ExpectFails\n"), 3u) << run.out;
  if (GetParam() == "local") {
    EXPECT_EQ(count("[ RUN      ] Flaky.FailsOnce\n"), 2u) << run.out;
    EXPECT_EQ(count("[       OK ] Flaky.FailsOnce"), 1u) << run.out;
    EXPECT_EQ(count("[ RUN      ] Flaky.AlwaysFails\n"), 3u) << run.out;
    EXPECT_NE(run.out.find("[  FAILED  ] Flaky.AlwaysFails (failed, 3 rounds)"), std::string::npos);
  }
  std::string xml = ReadFile(junit);
  EXPECT_NE(xml.find("<testcase classname=\"Sample\" name=\"ExpectFails\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("expect message from the sandbox"), std::string::npos);
  EXPECT_NE(xml.find("<skipped"), std::string::npos);
  std::filesystem::remove_all(flaky_dir);

  // All passed: exit 0.
  CommandOutput ok = sandrun::testing::RunSandrun(
      {"gtest", SAMPLE_BINARY, "--filter", "Sample.Passes:Filtered.RunsInSandbox"},
      env_->Options());
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
}

// A sandboxed assertion's file:line, end to end: the sample binary run
// directly (SANDRUN_TEST) and through `sandrun gtest`; both the host's output
// and the GoogleTest XML name the line of the failing EXPECT in the source.
TEST_P(GtestAdapterTest, FailureFileLineReachesTheOutputAndTheXml) {
  const std::string where = SampleFile() + ":" + std::to_string(LineOf("expect_fail"));
  const std::string message = "expect message from the sandbox";

  // Directly: GoogleTest's own report, with --gtest_output=xml.
  std::filesystem::path xml_path = env_->path() / "direct.xml";
  CommandOutput direct = RunCommand({SAMPLE_BINARY, "--gtest_filter=Sample.ExpectFails",
                                     "--gtest_output=xml:" + xml_path.string()},
                                    env_->Options());
  EXPECT_EQ(direct.exit_code, 1) << direct.out << direct.err;
  EXPECT_NE(direct.out.find(where + ": Failure\n"), std::string::npos)
      << "no '" << where << ": Failure' in:\n" << direct.out;
  EXPECT_NE(direct.out.find(message), std::string::npos) << direct.out;
  std::string xml = ReadFile(xml_path);
  EXPECT_NE(xml.find("<failure message=\"" + where + "&#x0A;"), std::string::npos)
      << "the XML failure does not start at " << where << ":\n" << xml;
  EXPECT_NE(xml.find("<![CDATA[" + where + "\n"), std::string::npos) << xml;
  EXPECT_NE(xml.find(message), std::string::npos) << xml;
  // It ran in a sandbox of this backend, not on the host.
  EXPECT_NE(xml.find("<property name=\"sandrun_backend\" value=\"" + GetParam() + "\"/>"),
            std::string::npos)
      << xml;

  // Through `sandrun gtest`: its GoogleTest-style output and its JUnit XML.
  std::filesystem::path junit_path = env_->path() / "runner.xml";
  CommandOutput runner = sandrun::testing::RunSandrun(
      {"gtest", SAMPLE_BINARY, "--filter", "Sample.ExpectFails", "--junit", junit_path.string()},
      env_->Options());
  EXPECT_EQ(runner.exit_code, 1) << runner.out << runner.err;
  EXPECT_NE(runner.out.find(where + ": Failure\n"), std::string::npos)
      << "no '" << where << ": Failure' in:\n" << runner.out;
  EXPECT_NE(runner.out.find(message), std::string::npos) << runner.out;
  // The test's own output shows where GoogleTest shows it, between its
  // [ RUN ] and [ FAILED ] lines, before its failure, which shows once.
  std::size_t run_line = runner.out.find("[ RUN      ] Sample.ExpectFails\n");
  std::size_t own_stdout = runner.out.find("own stdout of ExpectFails\n");
  std::size_t own_stderr = runner.out.find("own stderr of ExpectFails\n");
  std::size_t failure = runner.out.find(where + ": Failure\n");
  std::size_t failed_line = runner.out.find("[  FAILED  ] Sample.ExpectFails (");
  ASSERT_NE(run_line, std::string::npos) << runner.out;
  EXPECT_LT(run_line, own_stdout) << runner.out;
  EXPECT_LT(own_stdout, failure) << runner.out;
  EXPECT_LT(own_stderr, failed_line) << runner.out;
  EXPECT_LT(failure, failed_line) << runner.out;
  EXPECT_EQ(runner.out.find(where + ": Failure\n", failure + 1), std::string::npos)
      << "the failure is shown twice:\n" << runner.out;
  std::string junit = ReadFile(junit_path);
  EXPECT_NE(junit.find("<testcase classname=\"Sample\" name=\"ExpectFails\""), std::string::npos)
      << junit;
  EXPECT_NE(junit.find(">" + where + "\n"), std::string::npos)
      << "the JUnit failure does not start at " << where << ":\n" << junit;
  EXPECT_NE(junit.find(message), std::string::npos) << junit;
}

// ---------------------------------------------------------------------------
// `sandrun gtest` follows GoogleTest's conventions, checked against what the
// plain GoogleTest binary (plain_tests.cc) does on its own.

int PlainLineOf(const std::string& marker) { return LineOf(marker, PLAIN_SOURCE); }

/// plain_tests.cc as GoogleTest names it (see SampleFile).
std::string PlainFile() { return SourceAsCompiled(PLAIN_SOURCE); }

std::size_t Count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

/// A local-backend environment without any GTEST_* variable of the caller.
CommandOptions PlainOptions(const BackendEnv& env, std::map<std::string, std::string> extra = {}) {
  CommandOptions options = env.Options();
  for (const char* key : {"GTEST_FILTER", "GTEST_OUTPUT", "GTEST_TOTAL_SHARDS", "GTEST_SHARD_INDEX",
                          "GTEST_SHARD_STATUS_FILE", "GTEST_COLOR", "GTEST_BRIEF", "GTEST_REPEAT",
                          "GTEST_ALSO_RUN_DISABLED_TESTS", "NO_COLOR", "SANDRUN_TEST_TIMEOUT"}) {
    options.env[key] = "";
  }
  for (const auto& [key, value] : extra) options.env[key] = value;
  return options;
}

/// "Suite.Test" -> the report's entry, from a GoogleTest JSON report.
std::map<std::string, json> JsonCases(const std::filesystem::path& path) {
  std::map<std::string, json> cases;
  json doc = json::parse(ReadFile(path), nullptr, false);
  if (doc.is_discarded() || !doc.contains("testsuites")) return cases;
  for (const auto& suite : doc["testsuites"]) {
    for (const auto& test : suite["testsuite"]) {
      cases[suite["name"].get<std::string>() + "." + test["name"].get<std::string>()] = test;
    }
  }
  return cases;
}

std::set<std::string> RanCases(const std::map<std::string, json>& cases) {
  std::set<std::string> ran;
  for (const auto& [name, test] : cases) {
    if (test.value("status", "") == "RUN") ran.insert(name);
  }
  return ran;
}

// GTEST_FILTER and GoogleTest's sharding (GTEST_TOTAL_SHARDS/INDEX, and the
// status file ctest and Bazel look for) select exactly what the binary
// itself selects.
TEST(SandrunGtestConventions, FilterAndShardsSelectWhatTheBinarySelects) {
  BackendEnv env("local");
  const std::string filter = "Few/*:Typed*:Plain.Passes:Plain.Skipped:Args.*";
  std::set<std::string> all_shards;
  for (int index = 0; index < 3; ++index) {
    std::map<std::string, std::string> vars = {{"GTEST_FILTER", filter},
                                               {"GTEST_TOTAL_SHARDS", "3"},
                                               {"GTEST_SHARD_INDEX", std::to_string(index)}};
    std::filesystem::path direct = env.path() / ("direct" + std::to_string(index) + ".json");
    CommandOutput own = RunCommand({PLAIN_BINARY, "--gtest_output=json:" + direct.string()},
                                   PlainOptions(env, vars));
    std::filesystem::path status_file = env.path() / ("shard" + std::to_string(index));
    vars["GTEST_SHARD_STATUS_FILE"] = status_file.string();
    std::filesystem::path ours = env.path() / ("ours" + std::to_string(index) + ".json");
    vars["GTEST_OUTPUT"] = "json:" + ours.string();
    CommandOutput run = sandrun::testing::RunSandrun({"gtest", PLAIN_BINARY}, PlainOptions(env, vars));
    EXPECT_EQ(run.exit_code, own.exit_code) << run.out << run.err << own.out;
    std::set<std::string> expected = RanCases(JsonCases(direct));
    ASSERT_FALSE(expected.empty()) << own.out << own.err;
    EXPECT_EQ(RanCases(JsonCases(ours)), expected) << "shard " << index << "\n" << run.out;
    EXPECT_TRUE(std::filesystem::exists(status_file)) << "GTEST_SHARD_STATUS_FILE not created";
    EXPECT_NE(run.out.find("Note: This is test shard " + std::to_string(index + 1) + " of 3."),
              std::string::npos)
        << run.out;
    for (const auto& name : expected) {
      EXPECT_TRUE(all_shards.insert(name).second) << name << " ran on two shards";
    }
  }
  EXPECT_EQ(all_shards.size(), 8u) << "3 Few/Nums + 2 Typed + 2 Plain + 1 Args, each once";

  // A shard index out of range is refused as GoogleTest refuses it.
  CommandOutput bad = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY},
      PlainOptions(env, {{"GTEST_TOTAL_SHARDS", "2"}, {"GTEST_SHARD_INDEX", "2"}}));
  EXPECT_EQ(bad.exit_code, 2) << bad.out << bad.err;
  EXPECT_NE(bad.err.find("GTEST_SHARD_INDEX < GTEST_TOTAL_SHARDS"), std::string::npos) << bad.err;
}

// DISABLED_ tests: counted as GoogleTest counts them, run on request (also
// from after --), and a filter that selects nothing says so and passes.
TEST(SandrunGtestConventions, DisabledTestsAndEmptySelections) {
  BackendEnv env("local");
  CommandOutput own = RunCommand({PLAIN_BINARY, "--gtest_filter=Plain.P*:Plain.DISABLED_*"},
                                 PlainOptions(env));
  ASSERT_NE(own.out.find("YOU HAVE 1 DISABLED TEST\n"), std::string::npos) << own.out;
  CommandOutput run = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "Plain.P*:Plain.DISABLED_*"}, PlainOptions(env));
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("YOU HAVE 1 DISABLED TEST\n"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("DISABLED_Off"), std::string::npos) << "a disabled test ran\n" << run.out;

  CommandOutput all = sandrun::testing::RunSandrun({"gtest", PLAIN_BINARY, "--filter", "*Off*"},
                                                   PlainOptions(env));
  EXPECT_NE(all.out.find("YOU HAVE 2 DISABLED TESTS"), std::string::npos) << all.out;

  CommandOutput also = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "*Off*", "--", "--gtest_also_run_disabled_tests"},
      PlainOptions(env));
  EXPECT_EQ(also.exit_code, 1) << also.out << also.err;  // Plain.DISABLED_Off fails on purpose
  EXPECT_NE(also.out.find("[  FAILED  ] Plain.DISABLED_Off"), std::string::npos) << also.out;
  EXPECT_NE(also.out.find("[       OK ] DISABLED_Off.Suite"), std::string::npos) << also.out;
  EXPECT_EQ(also.out.find("DISABLED TEST"), std::string::npos) << also.out;
  CommandOutput also_env = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "DISABLED_Off.*"},
      PlainOptions(env, {{"GTEST_ALSO_RUN_DISABLED_TESTS", "1"}}));
  EXPECT_EQ(also_env.exit_code, 0) << also_env.out << also_env.err;
  EXPECT_NE(also_env.out.find("[       OK ] DISABLED_Off.Suite"), std::string::npos) << also_env.out;

  CommandOutput none = sandrun::testing::RunSandrun({"gtest", PLAIN_BINARY, "--filter", "No.Such*"},
                                                    PlainOptions(env));
  EXPECT_EQ(none.exit_code, 0) << "GoogleTest 1.12 passes an empty selection\n" << none.out;
  EXPECT_NE(none.out.find("no test selected"), std::string::npos) << none.out;
  EXPECT_NE(none.out.find("Note: Google Test filter = No.Such*"), std::string::npos) << none.out;

  // --gtest_list_tests lists as the binary does, without running anything.
  CommandOutput listed = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--gtest_list_tests", "--gtest_filter=Few/*:Typed*"}, PlainOptions(env));
  CommandOutput own_list = RunCommand({PLAIN_BINARY, "--gtest_list_tests", "--gtest_filter=Few/*:Typed*"},
                                      PlainOptions(env));
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(listed.out, own_list.out);
}

// Arguments after -- reach every case; a --gtest_* one there is honoured.
TEST(SandrunGtestConventions, ArgumentsAfterDashesReachEveryCase) {
  BackendEnv env("local");
  CommandOutput without = sandrun::testing::RunSandrun({"gtest", PLAIN_BINARY, "--filter", "Args.*"},
                                                       PlainOptions(env));
  EXPECT_EQ(without.exit_code, 1) << without.out << without.err;
  EXPECT_NE(without.out.find("--my-flag did not reach the test"), std::string::npos) << without.out;
  CommandOutput with = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--", "--gtest_filter=Args.*", "--my-flag"}, PlainOptions(env));
  EXPECT_EQ(with.exit_code, 0) << with.out << with.err;
  EXPECT_NE(with.out.find("[       OK ] Args.SeeMyFlag"), std::string::npos) << with.out;
  EXPECT_EQ(Count(with.out, "[ RUN      ]"), 1u) << "--gtest_filter after -- chose the tests\n"
                                               << with.out;
  // A sandrun flag and a GoogleTest flag that disagree are refused.
  CommandOutput clash = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "A.*", "--gtest_filter=B.*"}, PlainOptions(env));
  EXPECT_EQ(clash.exit_code, 2) << clash.out << clash.err;
}

// GTEST_OUTPUT / --gtest_output write GoogleTest's own report: the same
// tests, statuses, keys and locations as the binary's, plus the sandbox's
// facts as properties; a directory gets <binary>.xml as with GoogleTest.
TEST(SandrunGtestConventions, OutputIsTheReportGoogleTestWrites) {
  BackendEnv env("local");
  const std::string filter = "Plain.*:Few/*:Typed*-Plain.Crashes";  // the binary itself would die
  std::filesystem::path own_json = env.path() / "own.json";
  CommandOutput own = RunCommand(
      {PLAIN_BINARY, "--gtest_filter=" + filter, "--gtest_output=json:" + own_json.string()},
      PlainOptions(env));
  std::filesystem::path our_json = env.path() / "ours.json";
  CommandOutput run = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", filter, "--gtest_output=json:" + our_json.string()},
      PlainOptions(env));
  EXPECT_EQ(run.exit_code, own.exit_code) << run.out << run.err;
  auto theirs = JsonCases(own_json);
  auto ours = JsonCases(our_json);
  ASSERT_FALSE(theirs.empty()) << own.out;
  ASSERT_EQ(ours.size(), theirs.size()) << ReadFile(our_json);
  for (const auto& [name, test] : theirs) {
    ASSERT_TRUE(ours.count(name)) << name;
    const json& mine = ours[name];
    for (const auto& [key, value] : test.items()) {
      ASSERT_TRUE(mine.contains(key)) << name << " lacks " << key << ":\n" << mine.dump(2);
      if (key == "time" || key == "timestamp" || key == "failures") continue;
      EXPECT_EQ(mine[key], value) << name << " " << key;
    }
    EXPECT_EQ(mine.contains("failures"), test.contains("failures")) << name;
    if (mine.value("status", "") == "RUN") {
      EXPECT_EQ(mine.value("sandrun_backend", ""), "local") << name;
      EXPECT_FALSE(mine.value("sandrun_sandbox", "").empty()) << name;
      EXPECT_FALSE(mine.value("sandrun_run", "").empty()) << name;
      EXPECT_EQ(mine.value("sandrun_attempts", ""), "1") << name;
    }
  }
  const std::string where = PlainFile() + ":" + std::to_string(PlainLineOf("plain_fail"));
  ASSERT_TRUE(ours["Plain.Fails"].contains("failures"));
  EXPECT_EQ(ours["Plain.Fails"]["failures"][0]["failure"].get<std::string>().rfind(where + "\n", 0), 0u)
      << ours["Plain.Fails"].dump(2);
  EXPECT_EQ(ours["Few/Nums.IsSmall/1"]["value_param"], "2");
  EXPECT_EQ(ours["Plain.DISABLED_Off"]["result"], "SUPPRESSED");

  // XML into a directory, from the environment.
  std::filesystem::path dir = env.path() / "reports";
  CommandOutput xml_run = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "Plain.Fails:Plain.Skipped:Typed/0.*"},
      PlainOptions(env, {{"GTEST_OUTPUT", "xml:" + dir.string() + "/"}}));
  EXPECT_EQ(xml_run.exit_code, 1) << xml_run.out << xml_run.err;
  std::string xml = ReadFile(dir / "sandrun_gtest_plain.xml");
  ASSERT_FALSE(xml.empty()) << "no " << (dir / "sandrun_gtest_plain.xml") << "\n" << xml_run.out;
  EXPECT_NE(xml.find("<testsuites tests=\"3\" failures=\"1\" disabled=\"0\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("<testcase name=\"Fails\" file=\"" + PlainFile() + "\" line=\""), std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<failure message=\"" + where + "&#x0A;"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<![CDATA[" + where + "\n"), std::string::npos) << xml;
  EXPECT_NE(xml.find("type_param=\"int\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("result=\"skipped\""), std::string::npos) << xml;
  EXPECT_NE(xml.find("no GPU on this runner"), std::string::npos) << "the skip's reason\n" << xml;
  EXPECT_NE(xml.find("<property name=\"sandrun_backend\" value=\"local\"/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("classname=\"Plain\""), std::string::npos) << xml;
}

// GTEST_REPEAT / --gtest_repeat, GTEST_BRIEF / --gtest_brief and
// GTEST_COLOR / --gtest_color, flags over environment.
TEST(SandrunGtestConventions, RepeatBriefAndColor) {
  BackendEnv env("local");
  CommandOutput run = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "Plain.Passes:Plain.Fails", "--gtest_repeat=2"},
      PlainOptions(env, {{"GTEST_BRIEF", "1"}, {"GTEST_REPEAT", "5"}}));
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.out.find("Repeating all tests (iteration 2) . . ."), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("(iteration 3)"), std::string::npos) << "the flag wins over GTEST_REPEAT";
  EXPECT_EQ(Count(run.out, "[  FAILED  ] Plain.Fails (failed)"), 2u) << run.out;
  EXPECT_EQ(run.out.find("[ RUN      ]"), std::string::npos) << "brief prints failures only\n" << run.out;
  EXPECT_EQ(run.out.find("[       OK ] Plain.Passes"), std::string::npos) << run.out;
  EXPECT_EQ(run.out.find("\033["), std::string::npos) << "no colour off a terminal";

  CommandOutput colored = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "Plain.Passes"}, PlainOptions(env, {{"GTEST_COLOR", "yes"}}));
  EXPECT_NE(colored.out.find("\033[0;32m[       OK ] \033[m"), std::string::npos) << colored.out;
  CommandOutput plain = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "Plain.Passes", "--gtest_color=no"},
      PlainOptions(env, {{"GTEST_COLOR", "yes"}}));
  EXPECT_EQ(plain.out.find("\033["), std::string::npos) << plain.out;

  CommandOutput forever = sandrun::testing::RunSandrun({"gtest", PLAIN_BINARY, "--gtest_repeat=-1"},
                                                       PlainOptions(env));
  EXPECT_EQ(forever.exit_code, 2) << forever.out << forever.err;
  EXPECT_NE(forever.err.find("does not repeat forever"), std::string::npos) << forever.err;
}

// A hung case ends at the default test_timeout (here 2 s through
// SANDRUN_TEST_TIMEOUT), reported at the test's own file:line; --timeout
// still wins; a crash is reported there too. A case's time is its own run,
// not the time it queued behind the hung one (-j 1).
TEST(SandrunGtestConventions, DefaultTimeoutAndEndingsAtTheTestsLine) {
  BackendEnv env("local");
  CommandOutput config = sandrun::testing::RunSandrun({"config"}, PlainOptions(env));
  EXPECT_NE(config.out.find("test_timeout"), std::string::npos) << config.out;
  EXPECT_NE(config.out.find("1500"), std::string::npos) << config.out;

  std::filesystem::path report = env.path() / "timeout.json";
  auto started = std::chrono::steady_clock::now();
  CommandOutput run = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "-j", "1", "--filter", "Plain.Hangs:Plain.Crashes:Few/*",
       "--gtest_output=json:" + report.string(), "--", "--hang"},
      PlainOptions(env, {{"SANDRUN_TEST_TIMEOUT", "2"}}));
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_LT(seconds, 60.0) << "the hung case was not stopped by test_timeout";
  const std::string hang_at = PlainFile() + ":" + std::to_string(PlainLineOf("plain_hang"));
  const std::string crash_at = PlainFile() + ":" + std::to_string(PlainLineOf("plain_crash"));
  EXPECT_NE(run.out.find(hang_at + ": Failure\nsandrun: timed out after 2 s"), std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find(crash_at + ": Failure\nsandrun: crashed: killed by signal 11 (SIGSEGV)"),
            std::string::npos)
      << run.out;
  EXPECT_EQ(run.out.find("unknown file"), std::string::npos) << run.out;
  auto cases = JsonCases(report);
  ASSERT_TRUE(cases.count("Few/Nums.IsSmall/2")) << ReadFile(report);
  for (const char* name : {"Few/Nums.IsSmall/0", "Few/Nums.IsSmall/1", "Few/Nums.IsSmall/2"}) {
    double own = std::atof(cases[name].value("time", "9").c_str());
    EXPECT_LT(own, 1.0) << name << " reported the time it queued behind the hung case";
  }
  ASSERT_TRUE(cases["Plain.Hangs"].contains("failures"));
  EXPECT_EQ(cases["Plain.Hangs"]["failures"][0]["failure"].get<std::string>().rfind(hang_at + "\n", 0),
            0u);

  CommandOutput flag = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--timeout", "1", "--filter", "Plain.Hangs", "--", "--hang"},
      PlainOptions(env, {{"SANDRUN_TEST_TIMEOUT", "30"}}));
  EXPECT_NE(flag.out.find("sandrun: timed out after 1 s"), std::string::npos) << flag.out;

  // A skip keeps its reason, in the output too.
  CommandOutput skip = sandrun::testing::RunSandrun({"gtest", PLAIN_BINARY, "--filter", "Plain.Skipped"},
                                                    PlainOptions(env));
  EXPECT_EQ(skip.exit_code, 0) << skip.out << skip.err;
  EXPECT_NE(skip.out.find("no GPU on this runner\n[  SKIPPED ] Plain.Skipped"), std::string::npos)
      << skip.out;
}

// A case that fails and then passes on a retry is flaky: said, marked in the
// report and on its record, exit 0 unless --fail-flaky.
TEST(SandrunGtestConventions, PassingOnARetryIsFlaky) {
  BackendEnv env("local");
  for (bool fail_flaky : {false, true}) {
    // Where Flaky.FailsOnce remembers its first attempt: a host directory
    // the local sandbox sees (its /tmp is its own), not shared with any
    // other run.
    const std::filesystem::path marker_dir = std::filesystem::path(SANDRUN_BUILD_DIR) /
                                             ("flaky-marker-" + std::to_string(::getpid()) +
                                              (fail_flaky ? "-b" : "-a"));
    std::filesystem::remove_all(marker_dir);
    std::filesystem::create_directories(marker_dir);
    std::filesystem::path report = env.path() / "flaky.xml";
    std::vector<std::string> args = {"gtest", PLAIN_BINARY, "--filter", "Flaky.*:Plain.Passes",
                                     "--retry-failed", "2", "-e",
                                     "PLAIN_FLAKY_DIR=" + marker_dir.string(),
                                     "--gtest_output=xml:" + report.string()};
    if (fail_flaky) args.push_back("--fail-flaky");
    CommandOutput run = sandrun::testing::RunSandrun(args, PlainOptions(env));
    EXPECT_EQ(run.exit_code, fail_flaky ? 1 : 0) << run.out << run.err;
    EXPECT_NE(run.out.find("[  FLAKY   ] 1 test flaky"), std::string::npos) << run.out;
    EXPECT_NE(run.out.find("[  FLAKY   ] Flaky.FailsOnce (passed on round 2)"), std::string::npos)
        << run.out;
    EXPECT_NE(run.out.find("[  PASSED  ] 2 tests."), std::string::npos) << run.out;
    std::string xml = ReadFile(report);
    EXPECT_EQ(Count(xml, "<property name=\"flaky\" value=\"true\"/>"), 1u) << xml;
    EXPECT_NE(xml.find("<property name=\"sandrun_attempts\" value=\"2\"/>"), std::string::npos) << xml;
    std::filesystem::remove_all(marker_dir);
  }
  // The retry's record says it was one, for reports made from the archive.
  CommandOutput list =
      sandrun::testing::RunSandrun({"results", "list", "--json", "--limit", "0"}, PlainOptions(env));
  std::string records;
  for (const auto& r : json::parse(list.out, nullptr, false)) {
    if (!r.is_object() || !r.contains("run_id")) continue;
    records += sandrun::testing::RunSandrun({"results", "show", r["run_id"].get<std::string>(), "--json"},
                                            PlainOptions(env))
                   .out;
  }
  EXPECT_NE(records.find("\"retry_round\": \"2\""), std::string::npos) << records;
}

// The same conventions on every backend: a plain binary's crash and hang
// end at the test's own file:line, its skip keeps its reason, a case's time
// is its own, and the GoogleTest report names the backend and the sandbox.
TEST_P(GtestAdapterTest, PlainBinaryEndingsAndReportOnEveryBackend) {
  std::filesystem::path report = env_->path() / "plain.json";
  CommandOutput run = sandrun::testing::RunSandrun(
      {"gtest", PLAIN_BINARY, "--filter", "Plain.Crashes:Plain.Hangs:Plain.Skipped:Few/*",
       "--gtest_output=json:" + report.string(), "--", "--hang"},
      PlainOptions(*env_, {{"SANDRUN_TEST_TIMEOUT", "3"}}));
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  const std::string hang_at = PlainFile() + ":" + std::to_string(PlainLineOf("plain_hang"));
  const std::string crash_at = PlainFile() + ":" + std::to_string(PlainLineOf("plain_crash"));
  EXPECT_NE(run.out.find(hang_at + ": Failure\nsandrun: timed out after 3 s on backend " + GetParam()),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find(crash_at + ": Failure\nsandrun: crashed: killed by signal 11 (SIGSEGV)"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("no GPU on this runner\n[  SKIPPED ] Plain.Skipped"), std::string::npos)
      << run.out;
  auto cases = JsonCases(report);
  ASSERT_EQ(cases.size(), 6u) << ReadFile(report);
  for (const auto& [name, test] : cases) {
    EXPECT_EQ(test.value("sandrun_backend", ""), GetParam()) << name;
    EXPECT_FALSE(test.value("sandrun_sandbox", "").empty()) << name;
    if (name.rfind("Few/", 0) == 0) {
      EXPECT_LT(std::atof(test.value("time", "9").c_str()), 1.0) << name << ": not its own time";
    }
  }
  ASSERT_TRUE(cases["Plain.Crashes"].contains("failures"));
  EXPECT_EQ(cases["Plain.Crashes"]["failures"][0]["failure"].get<std::string>().rfind(crash_at + "\n", 0),
            0u);
}

INSTANTIATE_TEST_SUITE_P(Backends, GtestAdapterTest, ::testing::Values(SANDRUN_ADAPTER_BACKENDS),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sandrun::gtest
