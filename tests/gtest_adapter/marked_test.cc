// Marked tests look like local ones: runs the sample binary marked_tests.cc
// on the local, Docker and Modal (the fake) backends (and `sandrun exec` on it, and a CTest
// project around it) and checks what a GoogleTest user reads: each test's
// own output inline, its own time, its parameters, that it runs locally when
// already in a sandbox, and where its relative uploads come from.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "gtest_adapter/adapter_test_env.h"
#include "support/test_util.h"

namespace sandrun::gtest {
namespace {

using json = nlohmann::json;
using sandrun::testing::CommandOutput;
using sandrun::testing::RunSandrun;

/// The binary's GoogleTest output for one test: from its [ RUN ] line to its
/// result line, both included; empty (and a failure) when it is not there.
std::string BlockOf(const std::string& out, const std::string& test) {
  std::size_t from = out.find("[ RUN      ] " + test + "\n");
  if (from == std::string::npos) {
    ADD_FAILURE() << "no [ RUN ] line for " << test << " in:\n" << out;
    return "";
  }
  std::size_t end = std::string::npos;
  for (const char* result : {"[       OK ] ", "[  FAILED  ] ", "[  SKIPPED ] "}) {
    end = std::min(end, out.find(result + test, from));
  }
  if (end == std::string::npos) {
    ADD_FAILURE() << "no result line for " << test << " in:\n" << out;
    return "";
  }
  return out.substr(from, out.find('\n', end) - from + 1);
}

/// Where `needle` is in `text`, failing when it is not.
std::size_t PositionOf(const std::string& text, const std::string& needle) {
  std::size_t at = text.find(needle);
  EXPECT_NE(at, std::string::npos) << "no '" << needle << "' in:\n" << text;
  return at;
}

/// The "(N ms)" of a test's result line.
long long ReportedMs(const std::string& out, const std::string& result_line_start) {
  std::smatch match;
  std::regex pattern(std::regex_replace(result_line_start, std::regex(R"([\[\]().*+?/])"),
                                        R"(\$&)") +
                     R"([^\n]* \((\d+) ms\))");
  if (!std::regex_search(out, match, pattern)) {
    ADD_FAILURE() << "no '" << result_line_start << " ... (N ms)' in:\n" << out;
    return -1;
  }
  return std::atoll(match[1].str().c_str());
}

/// The records of run `run_id`, by task id.
std::map<std::string, json> RecordsOfRun(const BackendEnv& env, const std::string& run_id) {
  std::map<std::string, json> records;
  CommandOutput shown = RunSandrun({"results", "show", run_id, "--json"}, env.Options());
  json doc = json::parse(shown.out, nullptr, false);
  EXPECT_TRUE(doc.is_object() && doc.contains("tasks")) << run_id << ": " << shown.out << shown.err;
  if (!doc.is_object() || !doc.contains("tasks")) return records;
  for (const auto& task : doc["tasks"]) records[task.value("task_id", "")] = task;
  return records;
}

/// How many runs this environment's archive holds.
int RunCount(const BackendEnv& env) {
  CommandOutput list = RunSandrun({"results", "list", "--json", "--limit", "0"}, env.Options());
  json listed = json::parse(list.out, nullptr, false);
  return listed.is_array() ? static_cast<int>(listed.size()) : -1;
}

class MarkedTestsTest : public GtestAdapterTest {};

// A sandboxed test's own stdout shows between its [ RUN ] and result lines,
// around its failure, as a local test's does; its stderr goes to stderr. A
// passing test's output shows too (GoogleTest shows a local one's), and a
// crashed test's once, as the tail in the failure that says it crashed.
TEST_P(MarkedTestsTest, ATestsOwnOutputShowsInline) {
  CommandOutput run = RunCommand({MARKED_BINARY, "--gtest_filter=Output.*"}, env_->Options());
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_EQ(run.out.find('\x1e'), std::string::npos) << "a marker leaked:\n" << run.out;

  std::string failing = BlockOf(run.out, "Output.FailsBetweenItsOwnLines");
  std::size_t before = PositionOf(failing, "own stdout before the failure\n");
  std::size_t failure = PositionOf(failing, "marked_tests.cc:");
  std::size_t message = PositionOf(failing, "failure between the lines");
  std::size_t after = PositionOf(failing, "own stdout after the failure\n");
  EXPECT_LT(before, failure) << failing;
  EXPECT_LT(message, after) << failing;
  EXPECT_NE(run.err.find("own stderr of the failing test\n"), std::string::npos) << run.err;
  EXPECT_EQ(run.out.find("own stderr of the failing test"), std::string::npos) << run.out;

  std::string passing = BlockOf(run.out, "Output.PassesWithOutput");
  PositionOf(passing, "own stdout of the passing test\n");
  EXPECT_NE(passing.find("[       OK ] Output.PassesWithOutput"), std::string::npos) << passing;

  std::string crashed = BlockOf(run.out, "Output.CrashesAfterOutput");
  std::size_t first = PositionOf(crashed, "own stdout before the crash\n");
  EXPECT_EQ(crashed.find("own stdout before the crash", first + 1), std::string::npos)
      << "shown twice:\n" << crashed;
  PositionOf(crashed, "sandrun: crashed: killed by signal 6 (SIGABRT)");
  // GoogleTest's own printout from the sandbox is not repeated.
  EXPECT_EQ(run.out.find("Running 1 test from 1 test suite"), std::string::npos) << run.out;
}

// The time a marked test reports, on its result line and in the XML and
// JSON reports, is its own time in the sandbox: not the queue (one job, so
// each test waits for the ones before it), nor the sandbox's set-up.
TEST_P(MarkedTestsTest, ATestsTimeIsItsOwnTimeInTheSandbox) {
  std::filesystem::path json_report = env_->path() / "timing.json";
  std::filesystem::path xml_report = env_->path() / "timing.xml";
  CommandOptions options = env_->Options();
  options.env["SANDRUN_JOBS"] = "1";
  CommandOutput run = RunCommand({MARKED_BINARY, "--gtest_filter=Timing.*",
                                  "--gtest_output=json:" + json_report.string()},
                                 options);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  auto tests = ReadHostReport(json_report);
  auto records = RecordsOfRun(*env_, tests["Timing.Sleeps1"].properties["sandrun_run"]);
  bool some_test_queued = false;
  for (int i = 1; i <= 4; ++i) {
    const std::string name = "Timing.Sleeps" + std::to_string(i);
    ASSERT_TRUE(records.count(name)) << name << " has no record";
    const json& durations = records[name]["durations_ms"];
    long long exec_ms = durations.value("exec", -1);
    long long shown = ReportedMs(run.out, "[       OK ] " + name);
    EXPECT_GE(shown, 600) << name;
    EXPECT_LE(shown, exec_ms) << name << ": more than its process ran";
    EXPECT_NEAR(tests[name].seconds * 1000, shown, 1.5) << name << ": JSON and output differ";
    if (durations.value("queue", 0) >= 600) some_test_queued = true;
  }
  EXPECT_TRUE(some_test_queued) << "with one job the later tests waited; the check is void";
  // The first test's host wait included creating the sandbox: its own time
  // is less than its record's total.
  EXPECT_LT(ReportedMs(run.out, "[       OK ] Timing.Sleeps1"),
            records["Timing.Sleeps1"]["durations_ms"].value("total", 0));

  CommandOutput xml_run = RunCommand({MARKED_BINARY, "--gtest_filter=Timing.Sleeps1",
                                      "--gtest_output=xml:" + xml_report.string()},
                                     env_->Options());
  ASSERT_EQ(xml_run.exit_code, 0) << xml_run.out << xml_run.err;
  std::string xml = sandrun::testing::ReadFile(xml_report);
  std::smatch match;
  ASSERT_TRUE(std::regex_search(xml, match, std::regex(R"re(<testcase name="Sleeps1"[^>]* time="([0-9.]+)")re")))
      << xml;
  long long xml_ms = static_cast<long long>(std::atof(match[1].str().c_str()) * 1000 + 0.5);
  EXPECT_EQ(xml_ms, ReportedMs(xml_run.out, "[       OK ] Timing.Sleeps1")) << xml;
  EXPECT_GE(xml_ms, 600) << xml;
}

// Parameterised and typed tests marked by --sandrun_filter keep their
// parameter in the output ("where GetParam() = 42") and in GoogleTest's
// reports (value_param, type_param), and run in a sandbox.
TEST_P(MarkedTestsTest, ParametersShowAsGoogleTestShowsThem) {
  std::filesystem::path json_report = env_->path() / "params.json";
  std::filesystem::path xml_report = env_->path() / "params.xml";
  const std::vector<std::string> args = {MARKED_BINARY, "--sandrun_filter=Nums/*:TypedT/*",
                                         "--gtest_filter=Nums/*:TypedT/*"};
  std::vector<std::string> with_json = args;
  with_json.push_back("--gtest_output=json:" + json_report.string());
  CommandOutput run = RunCommand(with_json, env_->Options());
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  // Where GoogleTest prints them for a local test: a failed test's result
  // line, a typed suite's header.
  PositionOf(run.out, "[       OK ] sandrun/Nums/ParamT.IsSmall/0 (");
  PositionOf(run.out, "[  FAILED  ] sandrun/Nums/ParamT.IsSmall/1, where GetParam() = 42 (");
  PositionOf(run.out, "[----------] 1 test from sandrun/TypedT/0, where TypeParam = int\n");
  PositionOf(run.out, "[----------] 1 test from sandrun/TypedT/1, where TypeParam = long\n");
  PositionOf(run.out, "[  FAILED  ] sandrun/Nums/ParamT.IsSmall/1, where GetParam() = 42\n");
  PositionOf(BlockOf(run.out, "sandrun/Nums/ParamT.IsSmall/1"), "too big");

  auto tests = ReadHostReport(json_report);
  EXPECT_EQ(tests["sandrun/Nums/ParamT.IsSmall/0"].value_param, "3");
  EXPECT_EQ(tests["sandrun/Nums/ParamT.IsSmall/1"].value_param, "42");
  EXPECT_EQ(tests["sandrun/TypedT/0.ZeroIsFalsy"].type_param, "int");
  EXPECT_EQ(tests["sandrun/TypedT/1.ZeroIsFalsy"].type_param, "long");
  for (const char* name : {"sandrun/Nums/ParamT.IsSmall/0", "sandrun/TypedT/1.ZeroIsFalsy"}) {
    EXPECT_EQ(tests[name].properties["sandrun_backend"], GetParam()) << name;
    EXPECT_FALSE(tests[name].properties["sandrun_sandbox"].empty()) << name;
  }
  EXPECT_EQ(tests.count("Nums/ParamT.IsSmall/0"), 0u) << "the marked test also ran locally";

  std::vector<std::string> with_xml = args;
  with_xml.push_back("--gtest_output=xml:" + xml_report.string());
  CommandOutput xml_run = RunCommand(with_xml, env_->Options());
  EXPECT_EQ(xml_run.exit_code, 1) << xml_run.out << xml_run.err;
  std::string xml = sandrun::testing::ReadFile(xml_report);
  EXPECT_TRUE(std::regex_search(xml, std::regex(R"(<testcase name="IsSmall/1" value_param="42")")))
      << xml;
  EXPECT_TRUE(std::regex_search(xml, std::regex(R"(<testcase name="ZeroIsFalsy" type_param="long")")))
      << xml;
}

// Inside any sandrun sandbox the marked tests run in that process: `sandrun
// exec -- ./marked_binary` is one run with one task, and the tests see the
// sandbox, run and task ids of that task's record (a nested sandbox would
// show its own, and SANDRUN_GTEST_INSIDE).
TEST_P(MarkedTestsTest, InsideSandrunExecMarkedTestsRunWithoutNesting) {
  CommandOutput run = RunSandrun({"exec", "--upload-command", "--", MARKED_BINARY,
                                  "--gtest_filter=Where.*:Output.PassesWithOutput"},
                                 env_->Options());
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  EXPECT_NE(run.out.find("[  PASSED  ] 2 tests."), std::string::npos) << run.out;
  std::smatch seen;
  ASSERT_TRUE(std::regex_search(run.out, seen,
                                std::regex(R"(sandbox=(\S+) run=(\S+) task=(\S+) inside=(\S+)\n)")))
      << run.out;
  EXPECT_EQ(seen[4].str(), "-") << "ran in the adapter's own (nested) sandbox";
  auto records = RecordsOfRun(*env_, seen[2].str());
  ASSERT_EQ(records.size(), 1u) << "the exec's run has other tasks";
  const json& record = records.begin()->second;
  EXPECT_EQ(record.value("sandbox_id", ""), seen[1].str());
  EXPECT_EQ(record.value("task_id", ""), seen[3].str());
  EXPECT_EQ(record.value("exit_code", -1), 0);
  if (GetParam() != "modal") {  // the fake Modal's archive is shared by the whole test binary
    EXPECT_EQ(RunCount(*env_), 1) << "a nested run was started";
  }
}

// A relative Upload() is relative to the test's source directory, wherever
// the binary runs (the build directory, the source directory, anywhere);
// a missing upload fails that test alone, by its name, and the others run.
TEST_P(MarkedTestsTest, RelativeUploadsComeFromTheSourceDirectory) {
  const std::filesystem::path source_dir = std::filesystem::path(MARKED_SOURCE).parent_path();
  const std::filesystem::path build_dir = std::filesystem::path(MARKED_BINARY).parent_path();
  for (const std::filesystem::path& cwd : {build_dir, source_dir, env_->path()}) {
    CommandOptions options = env_->Options();
    options.cwd = cwd;
    std::filesystem::path report = env_->path() / "uploads.json";
    CommandOutput run = RunCommand(
        {MARKED_BINARY, "--gtest_filter=Upload.*:Local.*", "--gtest_output=json:" + report.string()},
        options);
    EXPECT_EQ(run.exit_code, 1) << cwd << "\n" << run.out << run.err;
    auto tests = ReadHostReport(report);
    EXPECT_EQ(tests["Upload.RelativeToTheSourceFile"].result, "COMPLETED") << cwd;
    EXPECT_TRUE(tests["Upload.RelativeToTheSourceFile"].failures.empty())
        << cwd << ": " << ::testing::PrintToString(tests["Upload.RelativeToTheSourceFile"].failures);
    EXPECT_EQ(tests["Upload.RelativeToTheSourceFile"].properties["sandrun_backend"], GetParam());
    EXPECT_TRUE(tests["Local.RunsOnHost"].failures.empty()) << cwd;
    ASSERT_EQ(tests["Upload.MissingFile"].failures.size(), 1u) << cwd << "\n" << run.out;
    const std::string& why = tests["Upload.MissingFile"].failures[0];
    EXPECT_NE(why.find((source_dir / "data/no-such-file.txt").string() + "' does not exist"),
              std::string::npos)
        << why;
    EXPECT_EQ(why.find("ran without its upload"), std::string::npos) << why;
    std::string block = BlockOf(run.out, "Upload.MissingFile");
    EXPECT_NE(block.find("[  FAILED  ] Upload.MissingFile"), std::string::npos) << block;
    std::filesystem::remove(report);
  }
}

// From ctest: a CTest project whose test runs the binary (as
// gtest_discover_tests would, from the build directory of that project).
TEST(MarkedTestsCTest, RelativeUploadsWorkFromCTest) {
  BackendEnv env("local");  // the backends are covered by the test above
  TempDir project;
  project.Write("CMakeLists.txt",
                "cmake_minimum_required(VERSION 3.16)\nproject(marked NONE)\nenable_testing()\n"
                "add_test(NAME upload COMMAND \"" MARKED_BINARY
                "\" --gtest_filter=Upload.RelativeToTheSourceFile)\n"
                "add_test(NAME missing COMMAND \"" MARKED_BINARY
                "\" --gtest_filter=Upload.MissingFile)\n");
  CommandOptions options = env.Options();
  options.cwd = project.path();
  CommandOutput configured =
      RunCommand({"cmake", "-S", ".", "-B", "build", "-G", "Ninja"}, options);
  ASSERT_EQ(configured.exit_code, 0) << configured.out << configured.err;
  CommandOutput ran =
      RunCommand({"ctest", "--test-dir", "build", "--output-on-failure"}, options);
  EXPECT_EQ(ran.exit_code, 8) << ran.out << ran.err;
  EXPECT_TRUE(std::regex_search(ran.out, std::regex(R"(Test #1: upload \.+ +Passed)"))) << ran.out;
  EXPECT_TRUE(std::regex_search(ran.out, std::regex(R"(Test #2: missing \.+\*\*\*Failed)")))
      << ran.out;
  EXPECT_NE(ran.out.find("no-such-file.txt' does not exist"), std::string::npos) << ran.out;
}

INSTANTIATE_TEST_SUITE_P(Backends, MarkedTestsTest, ::testing::Values(SANDRUN_ADAPTER_BACKENDS),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sandrun::gtest
