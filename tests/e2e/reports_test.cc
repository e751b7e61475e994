// Results and reports as a CI user meets them, with a real GoogleTest binary
// (samples/report_sample.cc) run through `sandrun gtest` on the local
// backend: `results show` by a test's real name, skips shown as skips,
// `results list` filters, `latest` in an archive shared by several hosts and
// users, JUnit from `gtest --junit` and `results export` valid against the
// schema CI readers expect (data/junit.xsd, checked with xmllint), flaky
// cases marked, and the live progress line on a pseudo-terminal.
#include <fstream>
#include <unistd.h>

#include <regex>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/e2e_support.h"
#include "sandrun/util.h"

namespace sandrun::e2e {
namespace {

CommandOutput Tool(const std::vector<std::string>& argv) {
  CommandOptions options;
  options.env["PYTHONIOENCODING"] = "utf-8";
  return sandrun::testing::RunCommand(argv, options);
}

// xmllint --schema: the report satisfies the format CI readers accept.
void ExpectValidJUnit(const fs::path& xml) {
  CommandOutput lint = Tool({"xmllint", "--noout", "--schema", JUNIT_XSD, xml.string()});
  EXPECT_EQ(lint.exit_code, 0) << lint.err << "\n" << ReadFile(xml);
}

// One line per testcase: classname|name|file|line|kind|message|flaky|flakyFailures,
// then "root|tests|failures|errors|skipped|timestamp".
constexpr char kDumpJUnit[] = R"(
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for case in root.iter('testcase'):
    kind, message = 'passed', ''
    for k in ('failure', 'error', 'skipped'):
        e = case.find(k)
        if e is not None:
            kind, message = k, e.get('message') or ''
    props = {p.get('name'): p.get('value') for p in case.iter('property')}
    print('|'.join([case.get('classname'), case.get('name'), case.get('file') or '',
                    case.get('line') or '', kind, message, props.get('flaky', ''),
                    str(len(case.findall('flakyFailure')))]))
print('root|%s|%s|%s|%s|%s' % (root.get('tests'), root.get('failures'), root.get('errors'),
                               root.get('skipped'), root.get('timestamp')))
)";

std::string DumpJUnit(const fs::path& xml) {
  CommandOutput dump = Tool({"python3", "-c", kDumpJUnit, xml.string()});
  EXPECT_EQ(dump.exit_code, 0) << dump.err;
  return dump.out;
}

std::string SampleFileName() { return fs::path(REPORT_SAMPLE_SOURCE).filename().string(); }

// The line of `text` in the sample's source (1-based), 0 when absent.
int SampleLineOf(const std::string& text) {
  std::ifstream in(REPORT_SAMPLE_SOURCE);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find(text) != std::string::npos) return n;
  }
  return 0;
}

CommandOutput RunSample(const Home& home, std::vector<std::string> extra = {},
                        std::map<std::string, std::string> env = {}) {
  std::vector<std::string> args{"gtest", REPORT_SAMPLE_BINARY, "--backend", "local", "-j", "4"};
  args.insert(args.end(), extra.begin(), extra.end());
  CommandOptions options;
  options.env = std::move(env);
  options.timeout = std::chrono::seconds(240);
  return home.Run(args, options);
}

TEST(E2eReports, ShowFindsATestByItsRealNameAndShowsSkipsAsSkips) {
  Home home;
  CommandOutput run = RunSample(home);
  ASSERT_EQ(run.exit_code, 1) << run.out << run.err;  // Plain.Fails, Nums/ParamT.IsSmall/2
  // As GoogleTest ends a failed parameterised test's lines.
  EXPECT_CONTAINS(run.out, "[  FAILED  ] Nums/ParamT.IsSmall/2, where GetParam() = 30 (");
  EXPECT_CONTAINS(run.out, "[  FAILED  ] Nums/ParamT.IsSmall/2, where GetParam() = 30 (failed)");

  nlohmann::json param = home.Show("latest", "Nums/ParamT.IsSmall/1");
  EXPECT_EQ(param.value("test_name", ""), "Nums/ParamT.IsSmall/1");
  EXPECT_EQ(param.value("verdict", ""), "passed");
  EXPECT_EQ(home.Show("latest", "Nums/ParamT.IsSmall/2").value("verdict", ""), "failed");
  EXPECT_EQ(home.Show("latest", "TypedT/1.ZeroIsFalsy").value("verdict", ""), "passed");

  nlohmann::json skip = home.Show("latest", "Plain.Skips");
  EXPECT_EQ(skip.value("verdict", ""), "skipped");
  EXPECT_EQ(skip.value("skip_message", ""), "no GPU here");

  CommandOutput shown = home.Run({"results", "show", "latest"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(Plain\.Skips +skipped)"))) << shown.out;
  EXPECT_TRUE(std::regex_search(shown.out, std::regex(R"(Nums/ParamT\.IsSmall/1 +passed)")))
      << shown.out;
  EXPECT_CONTAINS(shown.out, "1 skipped");
  EXPECT_EQ(shown.out.find("fastest passing"), std::string::npos) << shown.out;

  CommandOutput human = home.Run({"results", "show", "latest", "Plain.Skips"});
  EXPECT_TRUE(std::regex_search(human.out, std::regex(R"(verdict +skipped)"))) << human.out;
  EXPECT_TRUE(std::regex_search(human.out, std::regex(R"(skip reason +no GPU here)")))
      << human.out;

  // The run's summary counts it as a skip too, and `results list` shows it.
  CommandOutput listed = home.Run({"results", "list", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.err;
  nlohmann::json runs = nlohmann::json::parse(listed.out);
  ASSERT_FALSE(runs.empty()) << listed.out;
  nlohmann::json newest = runs.is_array() ? runs.at(0) : runs.at("runs").at(0);
  EXPECT_EQ(newest.value("skipped", -1), 1) << newest.dump();
  CommandOutput table = home.Run({"results", "list"});
  EXPECT_CONTAINS(table.out, "SKIPPED");

  CommandOutput missing = home.Run({"results", "show", "latest", "Nums/ParamT.Nope/9"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_CONTAINS(missing.err, "no task or test named 'Nums/ParamT.Nope/9'");
}

TEST(E2eReports, FastestPassingIsShownForRaceRunsOnly) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "slow", "command": ["sleep", "3"]},
    {"id": "fast", "command": ["true"]}
  ])");
  ASSERT_EQ(home.Run({"batch", "--backend", "local", "-j", "2", tasks.string()}).exit_code, 0);
  CommandOutput plain = home.Run({"results", "show", "latest"});
  EXPECT_EQ(plain.out.find("fastest passing"), std::string::npos) << plain.out;
  EXPECT_EQ(home.Show("latest")["run"].value("fastest_passing_task", "x"), "");

  ASSERT_EQ(
      home.Run({"batch", "--backend", "local", "-j", "2", "--race", tasks.string()}).exit_code, 0);
  CommandOutput race = home.Run({"results", "show", "latest"});
  EXPECT_TRUE(std::regex_search(race.out, std::regex(R"(fastest passing +fast)"))) << race.out;
}

TEST(E2eReports, ExportAndGtestJUnitSatisfyTheSchemaWithSuitesSkipsAndLocations) {
  Home home;
  fs::path direct = home.work() / "gtest.xml";
  CommandOutput run = RunSample(home, {"--junit", direct.string()});
  ASSERT_EQ(run.exit_code, 1) << run.out << run.err;
  fs::path exported = home.work() / "export.xml";
  CommandOutput exp = home.Run({"results", "export", "latest", "--junit", exported.string()});
  ASSERT_EQ(exp.exit_code, 0) << exp.err;

  for (const fs::path& xml : {direct, exported}) {
    SCOPED_TRACE(xml.filename().string());
    ExpectValidJUnit(xml);
    std::string dump = DumpJUnit(xml);
    EXPECT_TRUE(std::regex_search(dump, std::regex(R"(\nroot\|10\|2\|0\|1\|\d{4}-\d\d-\d\dT)")))
        << dump;
    EXPECT_CONTAINS(dump, "Nums/ParamT|IsSmall/1|");
    EXPECT_CONTAINS(dump, "TypedT/0|ZeroIsFalsy|");
    if (xml == direct) {
      // `sandrun gtest` knows every case's own file:line from the listing,
      // as GoogleTest's XML has it, passing ones included.
      std::regex passes("Plain\\|Passes\\|[^|]*" + SampleFileName() + "\\|" +
                        std::to_string(SampleLineOf("TEST(Plain, Passes)")) + "\\|passed\\|");
      EXPECT_TRUE(std::regex_search(dump, passes)) << dump;
    } else {
      EXPECT_CONTAINS(dump, "Plain|Passes|||passed|");
    }
    EXPECT_CONTAINS(dump, "|skipped|no GPU here|");
    // The failing case names the test's own source file and a line in it.
    std::regex fails("Plain\\|Fails\\|[^|]*" + SampleFileName() + "\\|([0-9]+)\\|failure\\|");
    EXPECT_TRUE(std::regex_search(dump, fails)) << dump;
    // One testsuite per GoogleTest suite.
    CommandOutput suites = Tool({"python3", "-c",
                                 "import sys, xml.etree.ElementTree as ET\n"
                                 "r = ET.parse(sys.argv[1]).getroot()\n"
                                 "print(sorted(s.get('name') for s in r.iter('testsuite')))",
                                 xml.string()});
    EXPECT_CONTAINS(suites.out,
                    "['Flaky', 'Nums/ParamT', 'Plain', 'Slow', 'TypedT/0', 'TypedT/1']");
  }
}

TEST(E2eReports, ACaseThatPassesOnRetryIsMarkedFlakyInJUnit) {
  Home home;
  // A host directory the local backend's sandboxes share with the host (its
  // sandboxes get a /tmp of their own): under the build directory.
  fs::path flaky_dir = fs::path(SANDRUN_BUILD_DIR) / ("flaky-" + std::to_string(getpid()));
  fs::remove_all(flaky_dir);
  fs::create_directories(flaky_dir);
  fs::path xml = home.work() / "flaky.xml";
  CommandOutput run =
      RunSample(home, {"--filter", "Flaky.*:Plain.Passes", "--retry-failed", "1", "--junit",
                       xml.string(), "-e", "REPORT_FLAKY_DIR=" + flaky_dir.string()},
                {});
  // A passing retry does not fail the run.
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  ExpectValidJUnit(xml);
  std::string dump = DumpJUnit(xml);
  EXPECT_CONTAINS(dump, "Flaky|FailsOnce|");
  EXPECT_TRUE(std::regex_search(dump, std::regex(R"(Flaky\|FailsOnce\|[^\n]*\|passed\|\|true\|1)")))
      << dump;
  EXPECT_TRUE(std::regex_search(dump, std::regex(R"(Plain\|Passes\|[^\n]*\|passed\|\|\|0)")))
      << dump;
  EXPECT_CONTAINS(ReadFile(xml), "first attempt fails");

  // Both rounds are one run in the archive, and its JUnit says the same.
  CommandOutput shown = home.Run({"results", "show", "latest", "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.err;
  auto json = nlohmann::json::parse(shown.out, nullptr, false);
  ASSERT_TRUE(json.is_object()) << shown.out;
  std::multiset<std::string> names;
  for (const auto& task : json.value("tasks", nlohmann::json::array())) {
    names.insert(task.value("test_name", ""));
  }
  EXPECT_EQ(names, (std::multiset<std::string>{"Flaky.FailsOnce", "Flaky.FailsOnce",
                                               "Plain.Passes"}));
  // The run counts each test once, by its last attempt: it passed.
  nlohmann::json summary = json.value("run", nlohmann::json::object());
  EXPECT_EQ(summary.value("status", ""), "passed") << summary.dump();
  EXPECT_EQ(summary.value("total", 0), 2) << summary.dump();
  EXPECT_EQ(summary.value("failed", -1), 0) << summary.dump();
  nlohmann::json listed = home.Runs();
  ASSERT_GE(listed.size(), 1u);
  EXPECT_EQ(listed[0].value("status", ""), "passed") << listed[0].dump();
  fs::path exported = home.work() / "exported.xml";
  CommandOutput exp = home.Run({"results", "export", "latest", "--junit", exported.string()});
  ASSERT_EQ(exp.exit_code, 0) << exp.err;
  ExpectValidJUnit(exported);
  std::string exported_dump = DumpJUnit(exported);
  EXPECT_TRUE(std::regex_search(exported_dump,
                                std::regex(R"(Flaky\|FailsOnce\|[^\n]*\|passed\|\|true\|1)")))
      << exported_dump;
  EXPECT_TRUE(std::regex_search(exported_dump, std::regex(R"(\nroot\|2\|0\|0\|0\|)")))
      << exported_dump;
  fs::remove_all(flaky_dir);
}

// Rewrites a field of an archived run.json, as another machine or user
// sharing the archive (a Docker volume, a Modal volume) would have written it.
void RewriteRun(const Home& home, const std::string& run_id, const std::string& field,
                const std::string& value) {
  fs::path file = home.archive() / run_id / "run.json";
  auto json = nlohmann::json::parse(ReadFile(file));
  json[field] = value;
  std::ofstream(file, std::ios::trunc) << json.dump(2);
}

// Run ids sort by their start second: runs a test compares by age start in
// different seconds.
void NextSecond() { std::this_thread::sleep_for(std::chrono::milliseconds(1100)); }

TEST(E2eReports, ListFiltersByLabelHostUserAndStatus) {
  Home home;
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--label", "team=a,ci.job=7", "--", "true"})
                .exit_code, 0);
  NextSecond();
  // --label given twice: both labels (they add up, as the filter's do).
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--label", "team=b", "--label", "kind=unit",
                      "--", "false"})
                .exit_code, 1);
  NextSecond();
  CommandOptions labelled;
  labelled.env["SANDRUN_LABELS"] = "team=a";
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--", "false"}, labelled).exit_code, 1);
  nlohmann::json all = home.Runs();
  ASSERT_EQ(all.size(), 3u);
  std::string newest = all[0]["run_id"], middle = all[1]["run_id"], oldest = all[2]["run_id"];
  EXPECT_EQ(all[0]["user"], UserName());
  EXPECT_EQ(all[0]["labels"]["team"], "a");

  auto ids = [](const nlohmann::json& runs) {
    std::vector<std::string> out;
    for (const auto& r : runs) out.push_back(r["run_id"]);
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(ids(home.Runs({"--label", "team=a"})), (V{newest, oldest}));
  EXPECT_EQ(ids(home.Runs({"--label", "team=a", "--label", "ci.job=7"})), (V{oldest}));
  EXPECT_EQ(ids(home.Runs({"--status", "failed"})), (V{newest, middle}));
  EXPECT_EQ(ids(home.Runs({"--status", "failed", "--label", "team=b"})), (V{middle}));
  EXPECT_EQ(ids(home.Runs({"--label", "team=b", "--label", "kind=unit"})), (V{middle}));
  RewriteRun(home, middle, "host", "other-host");
  RewriteRun(home, oldest, "user", "someone-else");
  EXPECT_EQ(ids(home.Runs({"--host", "other-host"})), (V{middle}));
  EXPECT_EQ(ids(home.Runs({"--user", "someone-else"})), (V{oldest}));
  EXPECT_EQ(ids(home.Runs({"--mine"})), (V{newest}));

  CommandOutput table = home.Run({"results", "list", "--label", "team=b"});
  EXPECT_CONTAINS(table.out, middle);
  EXPECT_EQ(table.out.find(newest), std::string::npos);
  CommandOutput none = home.Run({"results", "list", "--label", "team=c"});
  EXPECT_EQ(none.exit_code, 0);
  EXPECT_CONTAINS(none.out, "no runs that match");
  CommandOutput bad = home.Run({"results", "list", "--status", "great"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_CONTAINS(bad.err, "--status must be");
  CommandOutput bad_label = home.Run({"exec", "--backend", "local", "--label", "x", "--", "true"});
  EXPECT_EQ(bad_label.exit_code, 2);
  EXPECT_CONTAINS(bad_label.err, "KEY=VALUE");
}

TEST(E2eReports, LatestIsTheNewestRunOfThisUserOnThisHost) {
  Home home;
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--", "echo", "mine"}).exit_code, 0);
  NextSecond();
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--", "echo", "other-host"}).exit_code, 0);
  NextSecond();
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--", "echo", "other-user"}).exit_code, 0);
  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 3u);
  std::string other_user = runs[0]["run_id"], other_host = runs[1]["run_id"],
              mine = runs[2]["run_id"];
  RewriteRun(home, other_host, "host", "ci-runner-17");
  RewriteRun(home, other_user, "user", "someone-else");

  EXPECT_EQ(home.Show("latest")["run"].value("run_id", ""), mine);
  EXPECT_EQ(home.Show("latest")["run"].value("run_id", ""), mine);
  CommandOutput any_user = home.Run({"results", "show", "latest", "--any-user", "--json"});
  EXPECT_EQ(nlohmann::json::parse(any_user.out)["run"]["run_id"], other_user) << any_user.err;
  CommandOutput any_host = home.Run({"results", "show", "latest", "--any-host", "--json"});
  EXPECT_EQ(nlohmann::json::parse(any_host.out)["run"]["run_id"], other_host) << any_host.err;

  fs::path xml = home.work() / "mine.xml";
  ASSERT_EQ(home.Run({"results", "export", "latest", "--junit", xml.string()}).exit_code, 0);
  EXPECT_CONTAINS(ReadFile(xml), mine);
  CommandOutput fetched = home.Run({"results", "fetch", "latest", "-o", "fetched"});
  ASSERT_EQ(fetched.exit_code, 0) << fetched.err;
  EXPECT_TRUE(fs::exists(home.work() / "fetched" / mine / "run.json"));

  // Nothing of this user here: the message says why and how to widen.
  RewriteRun(home, mine, "user", "someone-else");
  CommandOutput none = home.Run({"results", "show", "latest"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_CONTAINS(none.err, "--any-user");
}

// Run ids order runs by their second only: runs started within one second
// (the quick `sandrun exec`s of a ctest invocation) come in start order too.
TEST(E2eReports, LatestAndListFollowStartOrderWithinOneSecond) {
  Home home;
  std::vector<std::string> started;  // In start order.
  for (int i = 0; i < 6; ++i) {
    CommandOutput out = home.Run({"exec", "--backend", "local", "--", "true"});
    ASSERT_EQ(out.exit_code, 0) << out.err;
    nlohmann::json latest = home.Show("latest")["run"];
    for (const std::string& earlier : started) EXPECT_NE(latest.value("run_id", ""), earlier);
    started.push_back(latest.value("run_id", ""));
  }
  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), started.size());
  for (std::size_t i = 0; i < started.size(); ++i) {
    EXPECT_EQ(runs[i].value("run_id", ""), started[started.size() - 1 - i]) << runs.dump();
  }
}

// `script` gives sandrun a pseudo-terminal; its output is the terminal's.
CommandOutput OnTerminal(const Home& home, const std::string& command,
                         std::map<std::string, std::string> env = {}) {
  CommandOptions options;
  options.env = home.Env();
  for (const auto& [k, v] : env) options.env[k] = v;
  options.env["TERM"] = "xterm";
  options.env["COLUMNS"] = "200";
  options.cwd = home.work();
  options.timeout = std::chrono::seconds(120);
  return sandrun::testing::RunCommand({"script", "-qefc", command, "/dev/null"}, options);
}

TEST(E2eReports, ProgressOnATerminalTicksAndNamesWhatRuns) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "quick-one", "command": ["true"]},
    {"id": "slow-task", "command": ["sleep", "4"]}
  ])");
  std::string batch = std::string(SANDRUN_BINARY) + " batch --backend local -j 2 " + tasks.string();
  CommandOutput run = OnTerminal(home, batch);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  // Every redraw of the line: several distinct elapsed clock values while
  // slow-task runs alone, and its name.
  std::set<std::string> clocks;
  std::regex progress(R"(\[(\d+)/2 done, (\d+) running, \d+ failed, ([0-9.]+)s\]([^\r\n]*))");
  bool named = false;
  for (std::sregex_iterator it(run.out.begin(), run.out.end(), progress), end; it != end; ++it) {
    clocks.insert((*it)[3]);
    if ((*it)[4].str().find("slow-task") != std::string::npos) named = true;
  }
  EXPECT_GE(clocks.size(), 4u) << run.out;
  EXPECT_TRUE(named) << run.out;
  EXPECT_CONTAINS(run.out, "running: slow-task (");
  // Colour on a terminal: the verdicts are green.
  EXPECT_CONTAINS(run.out, "\033[32mPASS");

  CommandOutput plain = OnTerminal(home, batch, {{"NO_COLOR", "1"}});
  ASSERT_EQ(plain.exit_code, 0) << plain.out;
  EXPECT_EQ(plain.out.find("\033[32m"), std::string::npos) << plain.out;
  EXPECT_CONTAINS(plain.out, "running: slow-task (");

  // Not a terminal: no progress line, no colour.
  CommandOutput piped = home.Run({"batch", "--backend", "local", "-j", "2", tasks.string()});
  EXPECT_EQ(piped.err.find("running:"), std::string::npos) << piped.err;
  EXPECT_EQ(piped.err.find("\033["), std::string::npos) << piped.err;
}

// `sandrun gtest` has the same line: its clock ticks while a case runs, and
// it names the case.
TEST(E2eReports, GtestProgressOnATerminalTicksAndNamesTheRunningCase) {
  Home home;
  std::string gtest = std::string(SANDRUN_BINARY) + " gtest " + REPORT_SAMPLE_BINARY +
                      " --backend local -j 2 -e REPORT_SLEEP_MS=4000"
                      " --filter Plain.Passes:Slow.Sleeps";
  CommandOutput run = OnTerminal(home, gtest, {{"NO_COLOR", "1"}});
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err;
  std::set<std::string> clocks;
  std::regex progress(R"(\[(\d+)/2 done, (\d+) running, \d+ failed, ([0-9.]+)s\]([^\r\n]*))");
  for (std::sregex_iterator it(run.out.begin(), run.out.end(), progress), end; it != end; ++it) {
    clocks.insert((*it)[3]);
  }
  EXPECT_GE(clocks.size(), 3u) << run.out;
  EXPECT_CONTAINS(run.out, "running: Slow.Sleeps (");
  EXPECT_CONTAINS(run.out, "[       OK ] Slow.Sleeps");
}

TEST(E2eReports, EveryHelpEndsWithExamplesAndExitCodes) {
  Home home;
  const std::vector<std::vector<std::string>> commands = {
      {"exec"},           {"batch"},          {"gtest"},           {"config"},
      {"backends"},       {"doctor"},         {"cleanup"},         {"results", "list"},
      {"results", "show"}, {"results", "fetch"}, {"results", "export"}, {"results", "prune"},
      {"results", "sync"}, {"results", "report"}, {"results"}};
  for (auto args : commands) {
    args.push_back("--help");
    CommandOutput help = home.Run(args);
    SCOPED_TRACE(args[0] + " " + args[1]);
    EXPECT_EQ(help.exit_code, 0) << help.err;
    std::size_t examples = help.out.rfind("examples:\n");
    std::size_t codes = help.out.rfind("exit codes: ");
    ASSERT_NE(examples, std::string::npos) << help.out;
    ASSERT_NE(codes, std::string::npos) << help.out;
    EXPECT_LT(examples, codes);
    // Two or three examples, each a sandrun command line.
    std::string block = help.out.substr(examples, codes - examples);
    std::size_t count = 0;
    for (std::size_t at = block.find("\n  "); at != std::string::npos;
         at = block.find("\n  ", at + 1)) {
      ++count;
    }
    EXPECT_GE(count, 2u) << block;
    EXPECT_LE(count, 3u) << block;
    EXPECT_CONTAINS(help.out.substr(codes), "2 bad usage");
  }
}

}  // namespace
}  // namespace sandrun::e2e
