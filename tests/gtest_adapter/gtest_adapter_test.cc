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
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include <unistd.h>

#include "sandrun/config.h"
#include "sandrun/registry.h"
#include "e2e/e2e_support.h"
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

/// The line of sample_tests.cc carrying "// @marker".
int LineOf(const std::string& marker) {
  std::ifstream in(SAMPLE_SOURCE);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find("// @" + marker) != std::string::npos) return n;
  }
  ADD_FAILURE() << "no marker " << marker;
  return -1;
}

struct HostTest {
  std::string result;  // COMPLETED / SKIPPED
  std::vector<std::string> failures;
  std::map<std::string, std::string> properties;
  double seconds = 0;
};

/// The host's own gtest JSON report, by "Suite.Test".
std::map<std::string, HostTest> ReadHostReport(const std::filesystem::path& path) {
  std::map<std::string, HostTest> tests;
  json doc = json::parse(ReadFile(path), nullptr, false);
  if (doc.is_discarded()) return tests;
  for (const auto& suite : doc["testsuites"]) {
    for (const auto& test : suite["testsuite"]) {
      HostTest t;
      t.result = test.value("result", "");
      t.seconds = std::atof(test.value("time", "0").c_str());
      if (test.contains("failures")) {
        for (const auto& f : test["failures"]) t.failures.push_back(f.value("failure", ""));
      }
      for (const auto& [k, v] : test.items()) {
        if (k.rfind("sandrun_", 0) == 0 && v.is_string()) t.properties[k] = v.get<std::string>();
      }
      tests[suite["name"].get<std::string>() + "." + test["name"].get<std::string>()] = t;
    }
  }
  return tests;
}

bool DockerAvailable(std::string* reason) {
  BackendRegistry registry;
  RegisterAllBackends(registry, ProcessEnvironment());
  Config config;
  auto backend = registry.Create("docker", config);
  if (!backend.ok()) {
    *reason = backend.status().message();
    return false;
  }
  Status available = (*backend)->CheckAvailable();
  *reason = available.message();
  return available.ok();
}

/// An isolated environment for one backend: HOME, state, archive, config.
class BackendEnv {
 public:
  explicit BackendEnv(const std::string& backend,
                      const std::map<std::string, std::string>& extra_env = {})
      : docker_volume_(backend == "docker" ? VolumeName() : "") {
    // A Docker volume of its own: reading back "every run of this test"
    // must not read every run the whole suite left in a shared volume.
    std::string config = R"({"backends": {"docker": {"volume": ")" +
                         (docker_volume_.empty() ? "sandrun-test-results" : docker_volume_) +
                         R"(", "tool_image": "sandrun-test/busybox"}}})";
    dir_.Write("sandrun.json", config);
    env_["HOME"] = (dir_.path() / "home").string();
    env_["XDG_DATA_HOME"] = (dir_.path() / "data").string();
    env_["XDG_STATE_HOME"] = (dir_.path() / "state").string();
    env_["SANDRUN_CONFIG"] = (dir_.path() / "sandrun.json").string();
    env_["SANDRUN_BACKEND"] = backend;
    env_["SANDRUN_FALLBACK"] = "";
    env_["SANDRUN_FILTER"] = "";
    env_["SANDRUN_JOBS"] = "16";
    if (backend == "docker") env_["SANDRUN_IMAGE"] = "sandrun-test/busybox";
    for (const auto& [key, value] : extra_env) env_[key] = value;
  }
  CommandOptions Options() const {
    CommandOptions o;
    o.env = env_;
    o.cwd = dir_.path();
    o.timeout = std::chrono::seconds(480);
    return o;
  }
  const std::filesystem::path& path() const { return dir_.path(); }
  ~BackendEnv() {
    if (docker_volume_.empty()) return;
    // The archive's helper container holds the volume; both go.
    RunCommand({"sh", "-c",
                "docker rm -f $(docker ps -aq --filter volume=" + docker_volume_ +
                    ") >/dev/null 2>&1; docker volume rm -f " + docker_volume_ + " >/dev/null"},
               Options());
  }

 private:
  static std::string VolumeName() {
    static int count = 0;
    return "sandrun-test-gtest-" + std::to_string(::getpid()) + "-" + std::to_string(++count);
  }
  std::string docker_volume_;
  TempDir dir_;
  std::map<std::string, std::string> env_;
};

class GtestAdapterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string reason;
    if (GetParam() == "docker" && !DockerAvailable(&reason)) {
      SANDRUN_SKIP_WITHOUT_DOCKER("no Docker engine (run scripts/docker-test-env): " + reason);
    }
    std::map<std::string, std::string> modal_env;
#ifdef SANDRUN_WITH_MODAL_FAKE
    if (GetParam() == "modal") {
      modal_env = modal::fake::SharedContainerFakeEnv(&reason);
      if (modal_env.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
    }
#endif
    env_ = std::make_unique<BackendEnv>(GetParam(), modal_env);
  }
  std::unique_ptr<BackendEnv> env_;
};

/// The sample's source file as its failures name it: __FILE__, which is
/// relative to the build directory when the build rewrote absolute paths
/// (ccache's base_dir does), as this file's own __FILE__ shows.
std::string SampleFile() {
  if (std::string(__FILE__).rfind('/', 0) == 0) return SAMPLE_SOURCE;
  return std::filesystem::path(SAMPLE_SOURCE).lexically_relative(SANDRUN_BUILD_DIR).string();
}

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
  TempDir flaky;  // where Flaky.FailsOnce remembers its first attempt (a host path: local only)
  std::filesystem::path junit = env_->path() / "junit.xml";
  std::vector<std::string> args = {"gtest", SAMPLE_BINARY, "--filter",
                                   "Sample.Passes:Sample.ExpectFails:Sample.Skipped:Flaky.*",
                                   "--retry-failed", "2", "--junit", junit.string()};
  if (GetParam() == "local") {
    args.insert(args.end(), {"-e", "SAMPLE_FLAKY_DIR=" + flaky.path().string()});
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
  std::string junit = ReadFile(junit_path);
  EXPECT_NE(junit.find("<testcase classname=\"Sample\" name=\"ExpectFails\""), std::string::npos)
      << junit;
  EXPECT_NE(junit.find(">" + where + "\n"), std::string::npos)
      << "the JUnit failure does not start at " << where << ":\n" << junit;
  EXPECT_NE(junit.find(message), std::string::npos) << junit;
}

#ifdef SANDRUN_WITH_MODAL_FAKE
#define SANDRUN_ADAPTER_BACKENDS "local", "docker", "modal"
#else
#define SANDRUN_ADAPTER_BACKENDS "local", "docker"
#endif
INSTANTIATE_TEST_SUITE_P(Backends, GtestAdapterTest, ::testing::Values(SANDRUN_ADAPTER_BACKENDS),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace sandrun::gtest
