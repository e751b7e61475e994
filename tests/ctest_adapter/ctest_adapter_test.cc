// The CTest adapter end to end: the consumer project (consumer/), built by
// the fixture against an installed sandrun, runs its ctest on the local
// backend, on Docker and on Modal (the fake Modal server in container mode),
// switched by SANDRUN_BACKEND, never reconfigured;
// the JUnit XML of `ctest --output-junit` and sandrun's archive must say what
// happened. Plus: CTest's own TIMEOUT killing sandrun, then `sandrun cleanup`,
// and the configure-time errors of the CMake functions.
#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/e2e_support.h"
#include "support/docker_required.h"
#ifdef SANDRUN_WITH_MODAL_FAKE
#include "fake_modal_fixture.h"
#endif

namespace sandrun::e2e {
namespace {

constexpr char kImage[] = "sandrun-test/busybox";
const fs::path kWork = CONSUMER_WORK;
const fs::path kConsumerBuild = kWork / "build";
const fs::path kPrefix = kWork / "prefix";

/// One <testcase> of CTest's JUnit XML.
struct JUnitCase {
  std::string status;  ///< "run", "fail", "notrun", "disabled"
  std::string output;  ///< <system-out>, still XML-escaped
};

/// CTest's JUnit file: the suite's counts and the cases by name.
struct JUnitReport {
  std::map<std::string, int> counts;  ///< tests, failures, disabled, skipped
  std::map<std::string, JUnitCase> cases;
};

JUnitReport ParseJUnit(const std::string& xml) {
  JUnitReport report;
  for (const char* key : {"tests", "failures", "disabled", "skipped"}) {
    std::smatch m;
    if (std::regex_search(xml, m, std::regex(std::string("<testsuite[^>]*\\s") + key + "=\"(\\d+)\""))) {
      report.counts[key] = std::stoi(m[1]);
    }
  }
  std::regex testcase("<testcase name=\"([^\"]*)\"[^>]*status=\"([^\"]*)\"[^>]*>([\\s\\S]*?)</testcase>");
  for (std::sregex_iterator it(xml.begin(), xml.end(), testcase), end; it != end; ++it) {
    report.cases[(*it)[1]] = JUnitCase{(*it)[2], (*it)[3]};
  }
  return report;
}

/// Why the Docker cases cannot run here, or "" when they can.
std::string DockerUnavailableReason() {
  CommandOutput out = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  if (out.exit_code == 0) return "";
  return "no Docker engine with image " + std::string(kImage) +
         " (run scripts/docker-test-env): " + out.err.substr(0, 200);
}

/// Runs the consumer's ctest with `args`, as `home`'s user, with
/// SANDRUN_BACKEND=backend (empty: unset); returns the JUnit report.
JUnitReport RunConsumerCTest(const Home& home, const std::string& backend,
                             const std::vector<std::string>& args, const std::string& junit_name,
                             CommandOutput* output = nullptr,
                             const std::map<std::string, std::string>& extra_env = {}) {
  fs::path junit = home.dir() / junit_name;
  std::vector<std::string> argv{CTEST_BIN, "--output-junit", junit.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandOptions options;
  options.env = home.Env();
  options.env["SANDRUN_BACKEND"] = backend;
  for (const auto& [key, value] : extra_env) options.env[key] = value;
  options.cwd = kConsumerBuild;
  options.timeout = std::chrono::seconds(240);
  CommandOutput out = sandrun::testing::RunCommand(argv, options);
  if (output) *output = out;
  EXPECT_FALSE(out.timed_out) << out.out << out.err;
  return ParseJUnit(ReadFile(junit));
}

/// The statuses every backend must produce for the consumer's suite (the
/// ctest_kill label excluded).
const std::map<std::string, std::string>& ExpectedStatuses() {
  static const std::map<std::string, std::string> kStatuses = {
      {"tool.pass", "run"},
      {"tool.fail", "fail"},
      {"tool.hang", "fail"},
      {"tool data", "run"},
      {"gt.Math.Adds", "run"},
      {"gt.Math.Fails", "fail"},
      {"gt.Math.Skipped", "notrun"},
      {"gt.Math.Off", "disabled"},  // as gtest_discover_tests names it
      {"gt.Slow.Hangs", "fail"},
      {"gt.Values/Even.IsEven/2", "run"},
      {"gt.Values/Even.IsEven/4", "run"},
      {"plain.pass", "run"},
      {"plain.fail", "fail"},
  };
  return kStatuses;
}

/// The checks both backends share: counts, statuses, and what the output
/// of the failing, skipped, timed-out and data tests says.
void CheckSuite(const JUnitReport& report) {
  // Besides the suite: the service's start and stop (SANDRUN_SERVICE), which pass.
  ASSERT_EQ(report.cases.count("sandrun.service.start"), 1u);
  ASSERT_EQ(report.cases.count("sandrun.service.stop"), 1u);
  EXPECT_EQ(report.cases.at("sandrun.service.start").status, "run");
  EXPECT_EQ(report.cases.at("sandrun.service.stop").status, "run");
  EXPECT_EQ(report.counts.at("tests"), 13 + 2);
  EXPECT_EQ(report.counts.at("failures"), 5);
  EXPECT_EQ(report.counts.at("skipped"), 1);
  EXPECT_EQ(report.counts.at("disabled"), 1);
  std::map<std::string, std::string> statuses;
  for (const auto& [name, c] : report.cases) {
    if (name.rfind("sandrun.service.", 0) != 0) statuses[name] = c.status;
  }
  EXPECT_EQ(statuses, ExpectedStatuses());
  if (statuses.size() != ExpectedStatuses().size()) return;

  // sandrun reported the timeouts itself after TIMEOUT 7, before CTest's
  // TIMEOUT (7 s + the 30 s margin).
  EXPECT_CONTAINS(report.cases.at("tool.hang").output, "sandrun: timed out after 7");
  EXPECT_CONTAINS(report.cases.at("gt.Slow.Hangs").output, "sandrun: timed out after 7");
  // A failed assertion keeps its file:line; a skip keeps its reason.
  EXPECT_CONTAINS(report.cases.at("gt.Math.Fails").output, "gtests.cc:10: Failure");
  EXPECT_CONTAINS(report.cases.at("gt.Math.Fails").output, "consumer failure message");
  EXPECT_CONTAINS(report.cases.at("gt.Math.Skipped").output, "consumer skip reason");
  EXPECT_CONTAINS(report.cases.at("tool.fail").output, "failing on purpose");
  EXPECT_CONTAINS(report.cases.at("tool data").output,
                  "data: from the data file greeting: hello");
  // Only the one case ran in each sandbox.
  EXPECT_CONTAINS(report.cases.at("gt.Math.Adds").output, "Running 1 test from 1 test suite");
}

/// test_name -> record, for every task record in the local archive.
std::map<std::string, nlohmann::json> LocalRecords(const Home& home) {
  std::map<std::string, nlohmann::json> records;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(home.archive(), ec), end; !ec && it != end;
       it.increment(ec)) {
    if (!it->is_regular_file() || it->path().parent_path().filename() != "tasks") continue;
    auto record = nlohmann::json::parse(ReadFile(it->path()), nullptr, false);
    if (record.is_object()) records[record.value("test_name", "")] = record;
  }
  return records;
}

TEST(CTestAdapter, TheFixtureBuiltTheConsumerAgainstTheInstalledPackage) {
  EXPECT_TRUE(fs::exists(kPrefix / "bin" / "sandrun"));
  for (const char* file : {"SandrunConfig.cmake", "SandrunConfigVersion.cmake",
                           "SandrunTargets.cmake", "SandrunCTest.cmake",
                           "SandrunDiscoverTests.cmake"}) {
    EXPECT_TRUE(fs::exists(kPrefix / "lib" / "cmake" / "Sandrun" / file)) << file;
  }
  std::string cache = ReadFile(kConsumerBuild / "CMakeCache.txt");
  EXPECT_CONTAINS(cache, "Sandrun_DIR:PATH=" + (kPrefix / "lib" / "cmake" / "Sandrun").string());
  // Discovery ran on the host at build time and wrote one test per case.
  std::string discovered = ReadFile(kConsumerBuild / "consumer_gtests_sandrun_tests.cmake");
  EXPECT_CONTAINS(discovered, "--gtest_filter=Values/Even.IsEven/1");
  EXPECT_CONTAINS(discovered, "--upload-command");
  EXPECT_TRUE(fs::exists(kPrefix / "include" / "sandrun" / "gtest.h"));
}

TEST(CTestAdapter, TheInstalledGtestMainLinksAndRunsAMarkedTest) {
  Home home;
  CommandOptions options;
  options.env = home.Env();
  options.env["SANDRUN_BACKEND"] = "local";
  options.cwd = home.work();
  CommandOutput out = sandrun::testing::RunCommand(
      {(kConsumerBuild / "consumer_marked_tests").string()}, options);
  EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_CONTAINS(out.out, "[       OK ] Marked.RunsInASandbox");
  EXPECT_CONTAINS(out.out, "[       OK ] Marked.HostTest");
}

TEST(CTestAdapter, LocalBackendCountsStatusesAndRecords) {
  Home home;
  JUnitReport report = RunConsumerCTest(home, "local", {"-j4", "-LE", "ctest_kill"}, "local.xml");
  CheckSuite(report);
  if (report.cases.count("tool data")) {
    // SANDRUN_BACKEND=local overrides the test's BACKEND docker: it ran in
    // a local sandbox, under this user's state directory.
    EXPECT_CONTAINS(report.cases.at("tool data").output,
                    "cwd=" + (home.dir() / "state" / "sandrun" / "sandboxes" / "local").string());
  }

  // Every test that ran left a record named after the CTest test.
  auto records = LocalRecords(home);
  std::set<std::string> names;
  for (const auto& [name, record] : records) names.insert(name);
  std::set<std::string> expected;
  for (const auto& [name, status] : ExpectedStatuses()) {
    if (status != "disabled") expected.insert(name);
  }
  EXPECT_EQ(names, expected);
  if (records.count("tool data")) {
    EXPECT_EQ(records["tool data"].value("backend", ""), "local");
    EXPECT_EQ(records["tool data"].value("task_id", ""), "tool_data");
  }
  if (records.count("tool.hang")) {
    EXPECT_EQ(records["tool.hang"].value("outcome", ""), "timed_out");
  }

  // sandrun's own JUnit view of a run keeps the CTest name.
  if (records.count("gt.Values/Even.IsEven/2")) {
    std::string run = records["gt.Values/Even.IsEven/2"].value("run_id", "");
    fs::path xml = home.dir() / "export.xml";
    CommandOutput out = home.Run({"results", "export", run, "--junit", xml.string()});
    ASSERT_EQ(out.exit_code, 0) << out.err;
    // (sandrun's JUnit splits the name at its first '.' into class and name.)
    EXPECT_CONTAINS(ReadFile(xml), "classname=\"gt\" name=\"Values/Even.IsEven/2\"");
  }
}

TEST(CTestAdapter, DockerBackendBySandrunBackendWithoutReconfiguring) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  Home home;
  // The consumer's build is shared, so the volume is named by SANDRUN_CONFIG.
  PrivateDockerVolume volume(home.dir(), "consumer");
  auto cache_time = fs::last_write_time(kConsumerBuild / "CMakeCache.txt");
  JUnitReport report =
      RunConsumerCTest(home, "docker", {"-j4", "-LE", "ctest_kill"}, "docker.xml", nullptr,
                       {{"SANDRUN_CONFIG", volume.config().string()}});
  CheckSuite(report);
  // They ran in containers (the Docker backend's working directory).
  for (const char* name : {"tool.pass", "tool data", "plain.pass", "tool.hang"}) {
    if (report.cases.count(name)) {
      EXPECT_CONTAINS(report.cases.at(name).output, "cwd=/sandrun/work");
    }
  }
  if (report.cases.count("tool.hang")) {
    EXPECT_CONTAINS(report.cases.at("tool.hang").output, "docker sandbox");
  }
  EXPECT_EQ(fs::last_write_time(kConsumerBuild / "CMakeCache.txt"), cache_time);
}

#ifdef SANDRUN_WITH_MODAL_FAKE
// The same suite with SANDRUN_BACKEND=modal: every test a Modal sandbox (a
// container of the fake Modal server), the binaries sent there as portable
// executables.
TEST(CTestAdapter, ModalBackendBySandrunBackendWithoutReconfiguring) {
  std::string reason;
  auto modal_env = modal::fake::SharedContainerFakeEnv(&reason);
  if (modal_env.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  Home home;
  auto cache_time = fs::last_write_time(kConsumerBuild / "CMakeCache.txt");
  JUnitReport report = RunConsumerCTest(home, "modal", {"-j2", "-LE", "ctest_kill"}, "modal.xml",
                                        nullptr, modal_env);
  CheckSuite(report);
  for (const char* name : {"tool.pass", "tool data", "plain.pass", "tool.hang"}) {
    if (report.cases.count(name)) {
      EXPECT_CONTAINS(report.cases.at(name).output, "cwd=/sandrun/work");
    }
  }
  if (report.cases.count("tool.hang")) {
    EXPECT_CONTAINS(report.cases.at("tool.hang").output, "modal sandbox");
  }
  EXPECT_EQ(fs::last_write_time(kConsumerBuild / "CMakeCache.txt"), cache_time);
}
#endif

/// Container ids carrying sandrun's task label `task`, running or not.
std::vector<std::string> ContainersOfTask(const std::string& task) {
  CommandOutput out = sandrun::testing::RunCommand(
      {"docker", "ps", "-aq", "--filter", "label=dev.sandrun.task=" + task});
  std::vector<std::string> ids;
  std::istringstream lines(out.out);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty()) ids.push_back(line);
  }
  return ids;
}

TEST(CTestAdapter, CTestTimeoutKillsSandrunAndCleanupRemovesTheContainer) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  Home home;
  PrivateDockerVolume volume(home.dir(), "consumer");
  // SANDRUN_BACKEND unset: the test's BACKEND docker applies.
  auto start = Clock::now();
  CommandOutput ctest;
  // Without the service (-FA leaves its start and stop out), as a test
  // outside one: the killed sandrun's container is left for `cleanup`.
  JUnitReport report =
      RunConsumerCTest(home, "", {"-L", "ctest_kill", "-FA", "sandrun_service"}, "kill.xml", &ctest,
                       {{"SANDRUN_CONFIG", volume.config().string()}});
  EXPECT_LT(SecondsSince(start), 30.0) << "CTest's TIMEOUT is 5 s";
  ASSERT_EQ(report.cases.size(), 1u) << ctest.out << ctest.err;
  std::string name = report.cases.begin()->first;
  ASSERT_EQ(name.rfind("tool.killed_by_ctest.", 0), 0u) << name;
  EXPECT_EQ(report.cases.begin()->second.status, "fail");
  EXPECT_CONTAINS(ctest.out, "(Timeout)");
  // It reached the container before CTest killed sandrun (SIGKILL): the
  // container outlives it.
  EXPECT_CONTAINS(report.cases.begin()->second.output, "hanging");
  std::vector<std::string> left = ContainersOfTask(name);
  ASSERT_FALSE(left.empty()) << "CTest's kill left no container to clean up";

  CommandOutput run_label = sandrun::testing::RunCommand(
      {"docker", "inspect", "-f", "{{index .Config.Labels \"dev.sandrun.run\"}}", left.front()});
  std::string run = run_label.out.substr(0, run_label.out.find('\n'));
  ASSERT_FALSE(run.empty());
  CommandOutput cleanup = home.Run({"cleanup", "--backend", "docker", "--run", run});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.err;
  EXPECT_TRUE(ContainersOfTask(name).empty()) << cleanup.out << cleanup.err;
}

/// Configures bad_args/ with -D CASE=`name`; returns cmake's output.
CommandOutput ConfigureBadArgs(const Home& home, const std::string& name) {
  CommandOptions options;
  options.cwd = home.dir();
  return sandrun::testing::RunCommand(
      {CMAKE_BIN, "-S", BAD_ARGS_SOURCE, "-B", (home.dir() / ("b-" + name)).string(),
       "-DCASE=" + name, "-DCMAKE_PREFIX_PATH=" + kPrefix.string()},
      options);
}

TEST(CTestAdapter, BadArgumentsStopTheConfigureNamingTheArgument) {
  Home home;
  CommandOutput good = ConfigureBadArgs(home, "good");
  ASSERT_EQ(good.exit_code, 0) << good.out << good.err;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"no_name", "sandrun_add_test: NAME is required"},
      {"no_command", "sandrun_add_test(t): COMMAND is required"},
      {"bad_timeout", "TIMEOUT must be a positive number of seconds, got 'soon'"},
      {"bad_margin_value", "TIMEOUT_MARGIN must be whole seconds, got 'soon'"},
      {"bad_env", "ENV expects K=V, got 'NOEQUALS'"},
      {"bad_network", "NETWORK must be none or open, got 'maybe'"},
      {"bad_memory", "MEMORY must be a positive number, got 'lots'"},
      {"image_and_dockerfile", "give IMAGE or DOCKERFILE, not both"},
      {"stray", "unknown argument 'TIMOUT'"},
      {"discover_stray", "sandrun_discover_tests(x): unknown argument 'IMAGES'"},
      {"missing_value", "IMAGE given without a value"},
      {"bad_margin", "TIMEOUT_MARGIN needs TIMEOUT"},
      {"wrapper_working_directory", "WORKING_DIRECTORY is each add_test()'s own"},
      {"dockerfile_missing", "DOCKERFILE 'no/Dockerfile' is not a file"},
      {"discover_not_target", "'no_such_target' is not a target"},
      {"discover_not_executable", "'not_an_executable' is a UTILITY, not an executable"},
      {"discover_properties", "PROPERTIES expects name/value pairs"},
      {"wrapper_twice", "sandrun_sandbox_directory_tests: called twice"},
      {"libraries_without_cxx",
       "sandrun's libraries are not available: the project does not enable CXX"},
  };
  for (const auto& [name, message] : cases) {
    CommandOutput out = ConfigureBadArgs(home, name);
    EXPECT_NE(out.exit_code, 0) << name;
    // CMake wraps long messages; compare with the line breaks as spaces.
    std::string text = std::regex_replace(out.err, std::regex("\\s+"), " ");
    EXPECT_CONTAINS(text, message) << name;
  }
}

}  // namespace
}  // namespace sandrun::e2e
