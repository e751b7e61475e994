// "CTest sees what happened", end to end with a real CTest project
// (conventions/) built against the installed sandrun of the fixture:
// sandrun_discover_tests names and sets up tests exactly as CMake's
// gtest_discover_tests with the same options; TIMEOUT is the command's time;
// a crash in the sandbox is a crash to CTest; `sandrun doctor` warns about a
// missing image.
#include <algorithm>
#include <cctype>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/e2e_support.h"
#include "sandrun/util.h"
#include "support/docker_required.h"

namespace sandrun::e2e {
namespace {

const fs::path kPrefix = fs::path(CONSUMER_WORK) / "prefix";
constexpr char kImage[] = "sandrun-test/busybox";

/// Configures and builds conventions/ in `build` with `defines` (-D...).
void BuildProject(const fs::path& build, const std::vector<std::string>& defines) {
  std::vector<std::string> configure{CMAKE_BIN, "-S", CONVENTIONS_SOURCE, "-B", build.string(),
                                     "-G", GENERATOR, "-DCMAKE_BUILD_TYPE=Debug",
                                     "-DCMAKE_PREFIX_PATH=" + kPrefix.string(),
                                     "-DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON",
                                     "-DCMAKE_CXX_COMPILER=" CXX_COMPILER};
  if (std::string(COMPILER_LAUNCHER) != "") {
    configure.push_back("-DCMAKE_CXX_COMPILER_LAUNCHER=" COMPILER_LAUNCHER);
  }
  configure.insert(configure.end(), defines.begin(), defines.end());
  CommandOptions options;
  options.timeout = std::chrono::seconds(240);
  CommandOutput out = sandrun::testing::RunCommand(configure, options);
  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
  out = sandrun::testing::RunCommand({CMAKE_BIN, "--build", build.string()}, options);
  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
}

/// One test as `ctest --show-only=json-v1` shows it.
struct ShownTest {
  std::vector<std::string> command;
  std::map<std::string, nlohmann::json> properties;
};

/// The tests of `build`, by name, in ctest's order (`order`).
std::map<std::string, ShownTest> ShowTests(const Home& home, const fs::path& build,
                                           std::vector<std::string>* order = nullptr) {
  CommandOptions options;
  options.env = home.Env();
  options.cwd = build;
  CommandOutput out = sandrun::testing::RunCommand({CTEST_BIN, "--show-only=json-v1"}, options);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  auto json = nlohmann::json::parse(out.out, nullptr, false);
  std::map<std::string, ShownTest> tests;
  if (!json.is_object()) {
    ADD_FAILURE() << out.out << out.err;
    return tests;
  }
  for (const auto& test : json.value("tests", nlohmann::json::array())) {
    ShownTest shown;
    shown.command = test.value("command", std::vector<std::string>{});
    for (const auto& p : test.value("properties", nlohmann::json::array())) {
      shown.properties[p.at("name").get<std::string>()] = p.at("value");
    }
    std::string name = test.at("name").get<std::string>();
    if (order) order->push_back(name);
    tests[name] = shown;
  }
  return tests;
}

/// What follows the first "--" of a command: the GoogleTest binary's part.
std::vector<std::string> AfterDashDash(const std::vector<std::string>& command) {
  auto it = std::find(command.begin(), command.end(), "--");
  return it == command.end() ? command : std::vector<std::string>(it + 1, command.end());
}

/// Runs ctest in `build` with `env` on top of `home`'s; returns its output.
CommandOutput RunCTest(const Home& home, const fs::path& build,
                       const std::map<std::string, std::string>& env,
                       const std::vector<std::string>& args) {
  CommandOptions options;
  options.env = home.Env();
  for (const auto& [k, v] : env) options.env[k] = v;
  options.cwd = build;
  options.timeout = std::chrono::seconds(180);
  std::vector<std::string> argv{CTEST_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return sandrun::testing::RunCommand(argv, options);
}

TEST(CTestConventions, SandrunDiscoverTestsNamesAndSetsUpTestsAsGtestDiscoverTests) {
  Home home;
  for (const char* mode : {"POST_BUILD", "PRE_TEST"}) {
    SCOPED_TRACE(mode);
    fs::path gtest_build = home.dir() / (std::string("gtest-") + mode);
    fs::path sandrun_build = home.dir() / (std::string("sandrun-") + mode);
    BuildProject(gtest_build, {"-DDISCOVER=gtest_discover_tests", std::string("-DMODE=") + mode});
    BuildProject(sandrun_build,
                 {"-DDISCOVER=sandrun_discover_tests", std::string("-DMODE=") + mode});
    if (std::string(mode) == "PRE_TEST") {
      // Nothing listed at build time: ctest lists the cases itself.
      EXPECT_FALSE(fs::exists(sandrun_build / "conv_tests_sandrun_tests.cmake"));
    }
    std::vector<std::string> gtest_order, sandrun_order;
    auto gtest_tests = ShowTests(home, gtest_build, &gtest_order);
    auto sandrun_tests = ShowTests(home, sandrun_build, &sandrun_order);

    // The same names in the same order (sandrun's own extra tests last;
    // the service's start and stop around them).
    std::vector<std::string> shared;
    for (const auto& name : sandrun_order) {
      if (name.rfind("sb.", 0) != 0 && name.rfind("sandrun.service.", 0) != 0) shared.push_back(name);
    }
    EXPECT_EQ(shared, gtest_order);
    for (const char* name : {"pre.Plain.Passes.suf", "pre.Plain.Off.suf", "pre.Suite.Off.suf",
                             "pre.TypedT.ZeroIsFalsy<int>.suf", "pre.Mine.Works<char>.suf",
                             "pre.Few/Nums.IsSmall/42.suf", "pre.Odd/Words.NotEmpty/\"a;b\".suf",
                             "pre.Odd/Words.NotEmpty/\"x[y]\".suf", "raw.TypedT.ZeroIsFalsy<1>",
                             "raw.Few/Nums.IsSmall/0"}) {
      EXPECT_EQ(gtest_tests.count(name), 1u) << name;
      EXPECT_EQ(sandrun_tests.count(name), 1u) << name;
    }
    EXPECT_EQ(gtest_tests.count("pre.Filtered.Out.suf"), 0u);

    for (const auto& [name, gtest] : gtest_tests) {
      SCOPED_TRACE(name);
      if (!sandrun_tests.count(name)) continue;
      const ShownTest& sandrun = sandrun_tests.at(name);
      // The binary gets the same arguments; sandrun runs it in a sandbox.
      std::vector<std::string> gtest_command = gtest.command;
      if (!gtest_command.empty()) {
        gtest_command[0] = (sandrun_build / fs::path(gtest_command[0]).filename()).string();
      }
      EXPECT_EQ(AfterDashDash(sandrun.command), gtest_command);
      EXPECT_NE(std::find(sandrun.command.begin(), sandrun.command.end(), "exec"),
                sandrun.command.end());
      // The same properties (the default WORKING_DIRECTORY is each one's
      // build directory), and the service's fixture.
      std::string gtest_properties = std::regex_replace(
          nlohmann::json(gtest.properties).dump(), std::regex(gtest_build.string()),
          sandrun_build.string());
      auto properties = sandrun.properties;
      ASSERT_EQ(properties.count("FIXTURES_REQUIRED"), 1u);
      EXPECT_EQ(properties.at("FIXTURES_REQUIRED"), nlohmann::json::array({"sandrun_service"}));
      properties.erase("FIXTURES_REQUIRED");
      properties.erase("DEPENDS");  // What ctest derives from the fixture.
      EXPECT_EQ(nlohmann::json(properties).dump(), gtest_properties);
    }
    EXPECT_EQ(gtest_tests.at("pre.Plain.Passes.suf").properties.at("WORKING_DIRECTORY"), "wd");
    EXPECT_EQ(sandrun_tests.at("pre.Plain.Passes.suf").properties.at("LABELS"),
              nlohmann::json::array({"conv"}));
    // TEST_LIST holds the names as ctest reads them (CMake leaves out names
    // with brackets and escapes ';').
    EXPECT_EQ(ReadFile(sandrun_build / "test_lists.txt"), ReadFile(gtest_build / "test_lists.txt"));
    EXPECT_CONTAINS(ReadFile(sandrun_build / "test_lists.txt"), "pre.Plain.Passes.suf;");
  }
}

TEST(CTestConventions, TimeoutIsTheCommandsTimeAndACrashIsACrash) {
  Home home;
  fs::path build = home.dir() / "build";
  BuildProject(build, {"-DDISCOVER=sandrun_discover_tests"});
  auto tests = ShowTests(home, build);
  // TIMEOUT 3 configures; CTest waits 3 s plus the 30 s margin.
  ASSERT_EQ(tests.count("sb.sleeps"), 1u);
  EXPECT_EQ(tests.at("sb.sleeps").properties.at("TIMEOUT").get<double>(), 33.0);
  EXPECT_EQ(tests.at("sb.Hang.Forever").properties.at("TIMEOUT").get<double>(), 33.0);

  std::vector<std::pair<std::string, std::map<std::string, std::string>>> backends = {
      {"local", {}}};
  CommandOutput docker = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  std::optional<PrivateDockerVolume> volume;
  if (docker.exit_code == 0) {
    backends.push_back({"docker", {{"SANDRUN_IMAGE", kImage}}});
    volume.emplace(build, "timeouts");
  }
  for (const auto& [backend, extra_env] : backends) {
    SCOPED_TRACE(backend);
    auto env = extra_env;
    env["SANDRUN_BACKEND"] = backend;
    CommandOutput out = RunCTest(home, build, env,
                                 {"-j3", "-R", "^sb\\.(Crash|Hang|sleeps)", "--output-on-failure"});
    // The crash reads as a local one; the timeouts say so, before CTest's.
    EXPECT_TRUE(std::regex_search(out.out, std::regex("sb\\.Crash\\.Segfaults \\.+\\*\\*\\*Exception: SegFault")))
        << out.out;
    EXPECT_CONTAINS(out.out, "sandrun: timed out after 3");
    EXPECT_TRUE(std::regex_search(out.out, std::regex("sb\\.sleeps \\.+\\*\\*\\*Failed")))
        << out.out;
    EXPECT_TRUE(std::regex_search(out.out, std::regex("sb\\.Hang\\.Forever \\.+\\*\\*\\*Failed")))
        << out.out;
    EXPECT_EQ(out.out.find("Timeout"), std::string::npos) << "CTest killed a test:\n" << out.out;
    // (The other two: the service's start and stop.)
    EXPECT_CONTAINS(out.out, "40% tests passed, 3 tests failed out of 5");
  }
  if (docker.exit_code != 0) SANDRUN_SKIP_WITHOUT_DOCKER("no image " + std::string(kImage));
}

// sandrun_add_test passes a command's arguments as add_test does: one that
// holds ';' (a shell script), an empty one, a quote, a backslash, square
// brackets (which a CMake list would run together). (It once
// cut `sh -c "echo start; exit 7"` in two, and the test passed.)
TEST(CTestConventions, SandrunAddTestPassesArgumentsAsAddTestDoes) {
  Home home;
  fs::path build = home.dir() / "build";
  BuildProject(build, {"-DDISCOVER=sandrun_discover_tests"});
  auto tests = ShowTests(home, build);
  ASSERT_EQ(tests.count("sb.args.native"), 1u);
  ASSERT_EQ(tests.count("sb.args.sandrun"), 1u);
  // The same arguments after the program (CTest writes the native one's
  // program as the path it found).
  auto sandrun_args = AfterDashDash(tests.at("sb.args.sandrun").command);
  auto native_args = tests.at("sb.args.native").command;
  ASSERT_FALSE(sandrun_args.empty());
  ASSERT_FALSE(native_args.empty());
  EXPECT_EQ(std::vector<std::string>(sandrun_args.begin() + 1, sandrun_args.end()),
            std::vector<std::string>(native_args.begin() + 1, native_args.end()));
  CommandOutput out = RunCTest(home, build, {{"SANDRUN_BACKEND", "local"}},
                               {"-R", "^sb\\.args\\.", "--output-on-failure"});
  // Both run the whole script, to its exit 7, and print the same arguments.
  EXPECT_TRUE(std::regex_search(out.out, std::regex("sb\\.args\\.native \\.+\\*\\*\\*Failed")))
      << out.out;
  EXPECT_TRUE(std::regex_search(out.out, std::regex("sb\\.args\\.sandrun \\.+\\*\\*\\*Failed")))
      << out.out;
  std::vector<std::string> printed;
  std::istringstream lines(out.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("<", 0) == 0) printed.push_back(line);
  }
  ASSERT_EQ(printed.size(), 3u) << out.out;
  std::sort(printed.begin(), printed.end());
  EXPECT_EQ(printed[0], "<a; b><><q\"uote><c\\;d><$x><[><x]y><]>") << out.out;
  EXPECT_EQ(printed[1], printed[0]) << out.out;
  EXPECT_EQ(printed[2], "<x; y>") << out.out;  // ENV "SEMI=x; y"
}

/// Every file under `dir` by relative path, with the <testcase> lines of
/// each (name and whether it failed), for comparing GoogleTest XML reports.
std::map<std::string, std::vector<std::string>> XmlReports(const fs::path& dir) {
  std::map<std::string, std::vector<std::string>> reports;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it); ++it) {
    if (!it->is_regular_file()) continue;
    std::string xml = ReadFile(it->path());
    std::vector<std::string> cases;
    std::regex testcase("<testcase name=\"([^\"]*)\"[^>]*?(/?)>");
    for (std::sregex_iterator m(xml.begin(), xml.end(), testcase), end; m != end; ++m) {
      // A case with a child element (<failure>) does not close its tag at once.
      std::size_t after = m->position() + m->length();
      bool failed = (*m)[2] == "" && xml.find("<failure", after) < xml.find("</testcase>", after);
      cases.push_back(std::string((*m)[1]) + (failed ? " failed" : " ok"));
    }
    reports[fs::relative(it->path(), dir).string()] = cases;
  }
  return reports;
}

TEST(CTestConventions, XmlOutputDirGetsGoogleTestsReportOfEachCase) {
  Home home;
  fs::path gtest_build = home.dir() / "gtest";
  fs::path sandrun_build = home.dir() / "sandrun";
  BuildProject(gtest_build, {"-DDISCOVER=gtest_discover_tests", "-DXML=ON"});
  BuildProject(sandrun_build, {"-DDISCOVER=sandrun_discover_tests", "-DXML=ON"});
  RunCTest(home, gtest_build, {}, {"-R", "^xml\\."});
  auto expected = XmlReports(gtest_build / "xmlout");
  // Plain.Passes, Xml.Fails, Few/Nums.IsSmall/0 and /1, as GoogleTest names them.
  ASSERT_EQ(expected.size(), 4u);
  ASSERT_EQ(expected.count("xml.Xml.Fails.xml"), 1u);
  EXPECT_EQ(expected.at("xml.Xml.Fails.xml"), std::vector<std::string>{"Fails failed"});
  ASSERT_EQ(expected.count("xml.Few/Nums.IsSmall/0.xml"), 1u);

  std::vector<std::pair<std::string, std::map<std::string, std::string>>> backends = {
      {"local", {}}};
  CommandOutput docker = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  std::optional<PrivateDockerVolume> volume;
  if (docker.exit_code == 0) {
    backends.push_back({"docker", {{"SANDRUN_IMAGE", kImage}}});
    volume.emplace(sandrun_build, "xml");
  }
  for (const auto& [backend, extra_env] : backends) {
    SCOPED_TRACE(backend);
    fs::remove_all(sandrun_build / "xmlout");
    auto env = extra_env;
    env["SANDRUN_BACKEND"] = backend;
    CommandOutput out = RunCTest(home, sandrun_build, env, {"-j2", "-R", "^xml\\."});
    // (With the service's start and stop.)
    EXPECT_CONTAINS(out.out, "83% tests passed, 1 tests failed out of 6");
    // The same files, each with the same case and verdict.
    EXPECT_EQ(XmlReports(sandrun_build / "xmlout"), expected) << out.out << out.err;
  }
  if (docker.exit_code != 0) SANDRUN_SKIP_WITHOUT_DOCKER("no image " + std::string(kImage));
}

TEST(CTestConventions, SandrunReportWritesOnePageForTheCTestInvocation) {
  Home home;
  fs::path build = home.dir() / "build";
  BuildProject(build, {"-DDISCOVER=sandrun_discover_tests", "-DSANDRUN_REPORT=report.html",
                       "-DDIRMODE=ON"});
  auto tests = ShowTests(home, build);
  ASSERT_EQ(tests.count("sandrun.report"), 1u);
  // The service's fixture, whose cleanups include the report.
  EXPECT_EQ(tests.at("pre.Plain.Passes.suf").properties.at("FIXTURES_REQUIRED"),
            nlohmann::json::array({"sandrun_service"}));
  EXPECT_EQ(tests.at("sandrun.report").properties.at("FIXTURES_CLEANUP"),
            nlohmann::json::array({"sandrun_report", "sandrun_service"}));
  // A wrapped add_test() needs it too; the report test itself does not.
  ASSERT_EQ(tests.count("dir.plain"), 1u);
  EXPECT_EQ(tests.at("dir.plain").properties.at("FIXTURES_REQUIRED"),
            nlohmann::json::array({"sandrun_service"}));
  EXPECT_EQ(tests.at("sandrun.report").properties.count("FIXTURES_REQUIRED"), 0u);

  // Two invocations: each page has that invocation's tests, written last.
  fs::path page = build / "report.html";
  CommandOutput first = RunCTest(home, build, {{"SANDRUN_BACKEND", "local"}},
                                 {"-j2", "-R", "^(pre\\.(Plain|Few)|dir\\.plain)"});
  EXPECT_CONTAINS(first.out, "100% tests passed, 0 tests failed");
  // The report is the last test to end.
  std::size_t last = first.out.rfind(" Test #");
  ASSERT_NE(last, std::string::npos) << first.out;
  EXPECT_TRUE(std::regex_search(first.out.substr(last), std::regex("^ Test #[0-9]+: sandrun\\.report \\.+ +Passed")))
      << first.out;
  ASSERT_TRUE(fs::exists(page)) << first.out;
  std::string html = ReadFile(page);
  for (const char* name : {"pre.Plain.Passes.suf", "pre.Few/Nums.IsSmall/7.suf",
                           "pre.Few/Nums.IsSmall/42.suf", "dir.plain"}) {
    EXPECT_CONTAINS(html, std::string("\"name\":\"") + name + "\"");
  }
  EXPECT_EQ(html.find("pre.TypedT"), std::string::npos);

  CommandOutput second = RunCTest(home, build, {{"SANDRUN_BACKEND", "local"}},
                                  {"-R", "^pre\\.TypedT"});
  EXPECT_CONTAINS(second.out, "100% tests passed, 0 tests failed");
  html = ReadFile(page);
  // ('<' is \u003c in the page's data.)
  EXPECT_CONTAINS(html, "\"name\":\"pre.TypedT.ZeroIsFalsy\\u003cint>.suf\"");
  EXPECT_EQ(html.find("pre.Plain.Passes.suf"), std::string::npos);

  // On Docker: the run is in the engine's archive; the report reads it there.
  CommandOutput docker = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  if (docker.exit_code != 0) SANDRUN_SKIP_WITHOUT_DOCKER("no image " + std::string(kImage));
  PrivateDockerVolume volume(build, "report");
  CommandOutput third = RunCTest(home, build, {{"SANDRUN_BACKEND", "docker"}, {"SANDRUN_IMAGE", kImage}},
                                 {"-R", "^pre\\.Plain"});
  EXPECT_CONTAINS(third.out, "100% tests passed, 0 tests failed");
  html = ReadFile(page);
  EXPECT_CONTAINS(html, "\"name\":\"pre.Plain.Passes.suf\"");
  EXPECT_CONTAINS(html, "\"backend\":\"docker\"");
  EXPECT_EQ(html.find("pre.TypedT"), std::string::npos);
}

/// `sandrun results show latest --json` run in `cwd` with `env`.
nlohmann::json LatestRun(const Home& home, const fs::path& cwd,
                         const std::map<std::string, std::string>& env) {
  CommandOptions options;
  options.env = env;
  options.cwd = cwd;
  CommandOutput out = home.Run({"results", "show", "latest", "--json"}, options);
  EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
  auto json = nlohmann::json::parse(out.out, nullptr, false);
  EXPECT_TRUE(json.is_object()) << out.out;
  return json;
}

std::multiset<std::string> LatestRunTests(const Home& home, const fs::path& cwd,
                                          const std::map<std::string, std::string>& env,
                                          nlohmann::json* run = nullptr) {
  nlohmann::json json = LatestRun(home, cwd, env);
  std::multiset<std::string> names;
  if (!json.is_object()) return names;
  if (run) *run = json.value("run", nlohmann::json::object());
  for (const auto& task : json.value("tasks", nlohmann::json::array())) {
    names.insert(task.value("test_name", ""));
  }
  return names;
}

/// Whether a process whose command line names `text` runs (a zombie does not count).
bool ProcessNaming(const std::string& text) {
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || !std::all_of(pid.begin(), pid.end(), ::isdigit)) continue;
    std::string cmdline = ReadFile(entry.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(text) != std::string::npos) return true;
  }
  return false;
}

/// The distinct sandboxes and isolations of the latest run's tasks.
void LatestRunSandboxes(const Home& home, const fs::path& cwd,
                        const std::map<std::string, std::string>& env, std::set<std::string>* sandboxes,
                        std::set<std::string>* isolations, std::string* run_id) {
  nlohmann::json json = LatestRun(home, cwd, env);
  if (!json.is_object()) return;
  *run_id = json.value("run", nlohmann::json::object()).value("run_id", "");
  for (const auto& task : json.value("tasks", nlohmann::json::array())) {
    sandboxes->insert(task.value("sandbox_id", ""));
    isolations->insert(task.value("isolation", ""));
  }
}

// The sandrun service (SANDRUN_SERVICE, on by default): the discovered cases
// of one ctest invocation share warm sandboxes (isolation process), the
// service ends with the invocation, and a ctest killed with -9 takes the
// service and its sandboxes with it.
TEST(CTestService, DiscoveredCasesShareWarmSandboxesAndNothingOutlivesCTest) {
  Home home;
  fs::path build = home.dir() / "build";
  BuildProject(build, {"-DDISCOVER=sandrun_discover_tests"});
  const fs::path socket = build / ".sandrun-service.sock";
  const std::vector<std::string> args{"-j4", "-R", "^pre\\.", "--output-on-failure"};
  std::vector<std::map<std::string, std::string>> backends = {{{"SANDRUN_BACKEND", "local"}}};
  CommandOutput docker = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  std::optional<PrivateDockerVolume> volume;
  if (docker.exit_code == 0) {
    backends.push_back({{"SANDRUN_BACKEND", "docker"}, {"SANDRUN_IMAGE", kImage}});
    volume.emplace(build, "service");
  }
  for (const auto& env : backends) {
    SCOPED_TRACE(env.at("SANDRUN_BACKEND"));
    CommandOutput out = RunCTest(home, build, env, args);
    EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
    EXPECT_CONTAINS(out.out, "100% tests passed, 0 tests failed out of 11");  // 9 + start, stop
    EXPECT_CONTAINS(out.out, "sandrun.service.start");
    std::set<std::string> sandboxes, isolations;
    std::string run_id;
    LatestRunSandboxes(home, build, env, &sandboxes, &isolations, &run_id);
    EXPECT_EQ(isolations, std::set<std::string>{"process"});
    // Nine cases, at most four at once: a warm sandbox or two, not nine.
    EXPECT_LE(sandboxes.size(), 2u) << out.out;
    EXPECT_FALSE(fs::exists(socket)) << "the service's socket outlived ctest";
    EXPECT_FALSE(ProcessNaming(socket.string())) << "the service outlived ctest";
    if (env.at("SANDRUN_BACKEND") == "docker") {
      CommandOutput left = sandrun::testing::RunCommand(
          {"docker", "ps", "-aq", "--filter", "label=dev.sandrun.run=" + run_id});
      EXPECT_EQ(left.out, "") << "containers of run " << run_id << " outlived ctest";
    }
  }
  // ctest killed with -9 while a case runs: the service sees its parent
  // gone, ends the case's sandbox and itself within seconds.
  CommandOptions options;
  options.env = home.Env();
  options.env["SANDRUN_BACKEND"] = "local";
  options.cwd = build;
  options.timeout = std::chrono::seconds(120);
  const std::string script = std::string("'") + CTEST_BIN +
                             "' -R '^sb\\.sleeps$' >ctest.out 2>&1 & pid=$!; "
                             "for i in $(seq 100); do [ -S .sandrun-service.sock ] && break; sleep 0.1; done; "
                             "sleep 1; kill -9 $pid; wait $pid; exit 0";
  CommandOutput killed = sandrun::testing::RunCommand({"sh", "-c", script}, options);
  ASSERT_EQ(killed.exit_code, 0) << killed.out << killed.err;
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !ProcessNaming(socket.string()) && !fs::exists(socket);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << "the service outlived a ctest killed with -9 by 10 s: "
                    << ReadFile(build / ".sandrun-service.sock.log");
  if (docker.exit_code != 0) SANDRUN_SKIP_WITHOUT_DOCKER("no image " + std::string(kImage));
}

// Two ctest invocations on one build tree at once share its service: the one
// that ends first leaves it serving the other, whose test in flight passes;
// the service ends with the last of them.
TEST(CTestService, TwoCTestsOnOneBuildTreeShareTheServiceAndNeitherPullsItFromTheOther) {
  Home home;
  fs::path build = home.dir() / "build";
  BuildProject(build, {"-DDISCOVER=sandrun_discover_tests"});
  const fs::path socket = build / ".sandrun-service.sock";
  CommandOptions options;
  options.env = home.Env();
  options.env["SANDRUN_BACKEND"] = "local";
  options.cwd = build;
  options.timeout = std::chrono::seconds(180);
  // The long one starts the service and its 20 s test; the short one joins,
  // runs and ends while that test still runs.
  const std::string script =
      std::string("'") + CTEST_BIN + "' -R '^sb\\.naps$' >long.out 2>&1 & long=$!; " +
      "for i in $(seq 200); do grep -q 'sb.naps' long.out 2>/dev/null && break; sleep 0.05; done; " +
      "sleep 1; '" + CTEST_BIN + "' -R '^pre\\.Plain' >short.out 2>&1; short=$?; " +
      "kill -0 $long 2>/dev/null && echo long-still-running; " +
      "wait $long; echo \"short=$short long=$?\"";
  CommandOutput both = sandrun::testing::RunCommand({"sh", "-c", script}, options);
  const std::string long_out = ReadFile(build / "long.out");
  const std::string short_out = ReadFile(build / "short.out");
  const std::string log = ReadFile(build / ".sandrun-service.sock.log");
  ASSERT_EQ(both.exit_code, 0) << both.err;
  EXPECT_CONTAINS(both.out, "long-still-running") << "the short ctest should end first\n"
                                                  << long_out << short_out;
  EXPECT_CONTAINS(both.out, "short=0 long=0") << long_out << short_out << log;
  EXPECT_CONTAINS(short_out, "100% tests passed");
  EXPECT_CONTAINS(long_out, "100% tests passed");
  // The short one joined the long one's service and left it serving (had it
  // stopped it, the nap in flight would have been an infrastructure error).
  EXPECT_CONTAINS(log, "shared with process");
  EXPECT_CONTAINS(log, "left; serving 1 other(s)");
  // And the service ended with the long ctest.
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !ProcessNaming(socket.string()) && !fs::exists(socket);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << "the service outlived both ctests by 10 s: " << log;
}

TEST(CTestConventions, OneCTestInvocationIsOneRunInTheArchive) {
  Home home;
  fs::path build = home.dir() / "build";
  BuildProject(build, {"-DDISCOVER=sandrun_discover_tests"});
  const std::vector<std::string> args{"-j3", "-R", "^pre\\."};
  const std::multiset<std::string> expected = {
      "pre.Plain.Passes.suf", "pre.TypedT.ZeroIsFalsy<int>.suf", "pre.TypedT.ZeroIsFalsy<char>.suf",
      "pre.Mine.Works<int>.suf", "pre.Mine.Works<char>.suf", "pre.Few/Nums.IsSmall/7.suf",
      "pre.Few/Nums.IsSmall/42.suf", "pre.Odd/Words.NotEmpty/\"a;b\".suf",
      "pre.Odd/Words.NotEmpty/\"x[y]\".suf"};

  // Local: each ctest invocation is one run holding all its tests.
  const std::map<std::string, std::string> local{{"SANDRUN_BACKEND", "local"}};
  for (int invocation = 1; invocation <= 2; ++invocation) {
    CommandOutput out = RunCTest(home, build, local, args);
    EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
    nlohmann::json run;
    EXPECT_EQ(LatestRunTests(home, home.work(), local, &run), expected);
    EXPECT_EQ(run.value("status", ""), "passed") << run.dump();
    if (run.value("status", "") != "passed") {
      // What went wrong in which task (seen once under a loaded suite: one
      // infrastructure error among the nine local tasks).
      CommandOptions show;
      show.env = local;
      show.cwd = home.work();
      ADD_FAILURE() << home.Run({"results", "show", "latest", "--json"}, show).out;
    }
    EXPECT_EQ(run.value("total", 0), 9) << run.dump();
    EXPECT_EQ(home.Runs().size(), static_cast<std::size_t>(invocation));
  }
  // SANDRUN_RUN_GROUP makes two invocations (a CI job's) one run; a test
  // that ran twice is there twice, under task ids of its own.
  auto job = local;
  job["SANDRUN_RUN_GROUP"] = "ci-job-" + home.dir().filename().string();
  for (int invocation = 1; invocation <= 2; ++invocation) {
    CommandOutput out = RunCTest(home, build, job, args);
    EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
  }
  std::multiset<std::string> twice = expected;
  twice.insert(expected.begin(), expected.end());
  nlohmann::json run;
  EXPECT_EQ(LatestRunTests(home, home.work(), local, &run), twice);
  EXPECT_EQ(run.value("total", 0), 18) << run.dump();
  std::set<std::string> ids;
  for (const auto& id : run.value("task_ids", nlohmann::json::array())) ids.insert(id);
  EXPECT_EQ(ids.size(), 18u) << run.dump();
  EXPECT_EQ(ids.count("pre.Plain.Passes.suf-2"), 1u) << run.dump();
  EXPECT_EQ(home.Runs().size(), 3u);

  // Docker: the archive is a volume (a store of requests), grouped the same.
  CommandOutput docker = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  if (docker.exit_code != 0) SANDRUN_SKIP_WITHOUT_DOCKER("no image " + std::string(kImage));
  PrivateDockerVolume volume(build, "groups");
  const std::map<std::string, std::string> on_docker{{"SANDRUN_BACKEND", "docker"},
                                                     {"SANDRUN_IMAGE", kImage}};
  CommandOutput out = RunCTest(home, build, on_docker, args);
  EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
  // On a loaded engine a delivery to the volume can fail and leave a record
  // in the outbox (sandrun says so); `sync` delivers it, as a CI's last step.
  CommandOptions in_build;
  in_build.cwd = build;
  CommandOutput sync = home.Run({"results", "sync", "--backend", "docker"}, in_build);
  EXPECT_EQ(sync.exit_code, 0) << sync.out << sync.err;
  EXPECT_EQ(LatestRunTests(home, build, on_docker, &run), expected) << sync.out << out.out;
  EXPECT_EQ(run.value("backend", ""), "docker") << run.dump();
}

TEST(CTestConventions, DoctorWarnsWhenTheBackendNeedsAnImageAndNoneIsSet) {
  CommandOutput docker = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  if (docker.exit_code != 0) SANDRUN_SKIP_WITHOUT_DOCKER("no image " + std::string(kImage));
  Home home;
  CommandOutput without = home.Run({"doctor", "--backend", "docker"});
  EXPECT_CONTAINS(without.out, "[warn] backend docker needs an image and none is set");
  EXPECT_CONTAINS(without.out, "SANDRUN_IMAGE=");
  CommandOptions with_image;
  with_image.env["SANDRUN_IMAGE"] = kImage;
  CommandOutput with = home.Run({"doctor", "--backend", "docker"}, with_image);
  EXPECT_EQ(with.out.find("[warn]"), std::string::npos) << with.out;
  // The local backend runs no images: nothing to warn about.
  CommandOutput local = home.Run({"doctor", "--backend", "local"});
  EXPECT_EQ(local.out.find("[warn]"), std::string::npos) << local.out;
}

}  // namespace
}  // namespace sandrun::e2e
