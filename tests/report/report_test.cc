// The HTML report (docs/report.md) end to end: runs made by `sandrun batch`,
// `sandrun gtest` (a real GoogleTest binary, with a retried flaky case) and
// marked tests (SANDRUN_REPORT) write their page; headless Chromium opens it
// and the rendered DOM must show every task, the failure text at file:line
// and the timeline, with no network request and no console error. Each page
// is also saved as a screenshot under the build tree (tests/report/*.png).
//
// Without Chromium (/usr/bin/chromium, or $SANDRUN_CHROMIUM) the browser
// tests skip, unless SANDRUN_REQUIRE_BROWSER=1 (CI) makes that a failure.
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <fstream>
#include <set>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/e2e_support.h"
#include "support/docker_required.h"
#include "sandrun/report.h"
#include "sandrun/util.h"

namespace sandrun::e2e {
namespace {

using sandrun::testing::RunCommand;

fs::path ScreenshotDir() {
  fs::path dir = fs::path(SANDRUN_BUILD_DIR) / "tests" / "report";
  fs::create_directories(dir);
  return dir;
}

/// The Chromium to use, or "" after GTEST_SKIP/ADD_FAILURE said why not.
std::string Chromium() {
  const char* configured = std::getenv("SANDRUN_CHROMIUM");
  std::string path = configured != nullptr && *configured ? configured : "/usr/bin/chromium";
  if (fs::exists(path)) return path;
  const char* required = std::getenv("SANDRUN_REQUIRE_BROWSER");
  if (required != nullptr && std::string(required) == "1") {
    ADD_FAILURE() << path << " is missing and SANDRUN_REQUIRE_BROWSER=1 "
                  << "(scripts/bootstrap --with-browser installs it)";
  }
  return "";
}

#define REQUIRE_CHROMIUM(var)                                                           \
  std::string var = Chromium();                                                         \
  if (var.empty()) {                                                                    \
    GTEST_SKIP() << "the report's browser test needs Chromium: /usr/bin/chromium is "   \
                    "missing (Debian package chromium; or set SANDRUN_CHROMIUM)";       \
  }

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

/// An HTTP proxy on loopback that answers nothing: it notes the host of
/// every request sent to it (the request line's target) and hangs up.
class RecordingProxy {
 public:
  RecordingProxy() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd_, 32) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RecordingProxy() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }
  std::vector<std::string> Hosts() {
    std::lock_guard lock(mu_);
    return hosts_;
  }

 private:
  void Serve() {
    while (!stop_) {
      pollfd ready{fd_, POLLIN, 0};
      if (poll(&ready, 1, 100) <= 0) continue;
      int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) continue;
      timeval wait{2, 0};
      setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
      std::string head;
      char buf[512];
      ssize_t n;
      while (head.find("\r\n") == std::string::npos && head.size() < 4096 &&
             (n = read(conn, buf, sizeof buf)) > 0) {
        head.append(buf, static_cast<std::size_t>(n));
      }
      close(conn);
      // Chromium opens spare connections to its proxy ahead of need and
      // may close them unused (seen under load: a connection that sent
      // nothing): only a request asks for anything.
      if (head.find(' ') == std::string::npos) continue;
      // "GET http://host/path HTTP/1.1" or "CONNECT host:443 HTTP/1.1".
      std::string target = head.substr(0, head.find("\r\n"));
      auto space = target.find(' ');
      target = space == std::string::npos ? target : target.substr(space + 1);
      target = target.substr(0, target.find(' '));
      if (auto scheme = target.find("://"); scheme != std::string::npos) {
        target = target.substr(scheme + 3);
      }
      std::lock_guard lock(mu_);
      hosts_.push_back(target.substr(0, target.find_first_of(":/")));
    }
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> hosts_;
};

/// Chromium's own services, which it calls at start-up whatever the page
/// (network time, component updates, accounts) and some flags do not stop.
/// A page's request to any other host counts.
bool ChromiumServiceHost(const std::string& host) {
  static const std::set<std::string> kHosts = {
      "clients2.google.com", "update.googleapis.com", "accounts.google.com",
      "optimizationguide-pa.googleapis.com", "content-autofill.googleapis.com",
      "safebrowsingohttpgateway.googleapis.com", "redirector.gvt1.com"};
  return kHosts.count(host) > 0;
}

/// What headless Chromium made of a page.
struct Rendered {
  std::string dom;      ///< The DOM after the page's script ran.
  std::string log;      ///< Chromium's stderr with console messages.
  std::vector<std::string> requested;  ///< Hosts the page asked the proxy for.
  int exit_code = -1;
};

/// Opens `page` in headless Chromium with every request sent to a loopback
/// proxy that answers nothing: whatever the page fetches is noted there.
/// Dumps the DOM, then saves a screenshot to `screenshot` (if given).
Rendered Render(const std::string& chromium, const fs::path& page,
                const fs::path& screenshot = {}) {
  RecordingProxy proxy;
  EXPECT_GT(proxy.port(), 0);
  TempDir profile;
  std::vector<std::string> common = {
      chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
      "--user-data-dir=" + profile.path().string(), "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-default-apps", "--disable-extensions",
      "--proxy-server=http://127.0.0.1:" + std::to_string(proxy.port()),
      "--proxy-bypass-list=<-loopback>", "--enable-logging=stderr", "--v=0",
      "--virtual-time-budget=5000", "--window-size=1280,1800"};
  CommandOptions options;
  options.timeout = std::chrono::seconds(90);
  std::vector<std::string> dump = common;
  dump.insert(dump.end(), {"--dump-dom", "file://" + fs::absolute(page).string()});
  CommandOutput out = RunCommand(dump, options);
  Rendered rendered;
  rendered.dom = out.out;
  rendered.log = out.err;
  rendered.exit_code = out.exit_code;
  if (!screenshot.empty()) {
    std::vector<std::string> shot = common;
    shot.insert(shot.end(), {"--hide-scrollbars", "--screenshot=" + screenshot.string(),
                             "file://" + fs::absolute(page).string()});
    CommandOutput taken = RunCommand(shot, options);
    EXPECT_TRUE(fs::exists(screenshot)) << taken.err;
  }
  for (const auto& host : proxy.Hosts()) {
    if (!ChromiumServiceHost(host)) rendered.requested.push_back(host);
  }
  return rendered;
}

/// Console messages Chromium logged for the page (errors, CSP refusals).
std::vector<std::string> ConsoleLines(const std::string& log) {
  return LinesWith(log, "CONSOLE");
}

/// Checks what every report must be: rendered by its script, no request,
/// no console message, a timeline and a histogram.
void ExpectCleanPage(const Rendered& page) {
  EXPECT_EQ(page.exit_code, 0) << page.log;
  EXPECT_CONTAINS(page.dom, "data-rendered=\"true\"");
  EXPECT_TRUE(page.requested.empty())
      << "the page made network requests, first to " << page.requested.front();
  EXPECT_TRUE(ConsoleLines(page.log).empty()) << page.log;
  EXPECT_CONTAINS(page.dom, "<svg id=\"timeline\"");
  EXPECT_CONTAINS(page.dom, "<svg id=\"histogram\"");
}

/// The task row and the timeline bar of `key` ("RUN/TASK"), with its verdict.
void ExpectTask(const std::string& dom, const std::string& key, const std::string& verdict) {
  EXPECT_CONTAINS(dom, "<tr class=\"task " + verdict + "\" data-task=\"" + key + "\"");
  EXPECT_CONTAINS(dom, "<g class=\"bar " + verdict + "\" data-task=\"" + key + "\"");
}

/// The data embedded in a report file.
nlohmann::json EmbeddedData(const fs::path& page) {
  std::string html = ReadFile(page);
  const std::string open = "id=\"report-data\">";
  auto begin = html.find(open);
  auto end = html.find("</script>", begin);
  if (begin == std::string::npos || end == std::string::npos) {
    ADD_FAILURE() << "no embedded data in " << page;
    return nlohmann::json::object();
  }
  begin += open.size();
  nlohmann::json data = nlohmann::json::parse(html.substr(begin, end - begin), nullptr, false);
  if (!data.is_object()) return data;
  // Undo the page's compaction (report.cc, CompactTasks) as its script does:
  // defaults, total_ms from the phases, then delta-coded text with the name
  // as \x01, in order.
  std::map<std::string, std::string> previous;
  auto undo = [&](const std::string& field, nlohmann::json& value, const std::string& name) {
    std::string text;
    if (value.is_object()) {
      previous[field] = value["raw"].get<std::string>();
      value = previous[field];
      return;
    }
    if (value.is_array()) {
      const std::string& p = previous[field];
      std::size_t front = value[0], back = value[2];
      text = p.substr(0, front) + value[1].get<std::string>() + p.substr(p.size() - back);
    } else {
      text = value.get<std::string>();
    }
    previous[field] = text;
    for (std::size_t at = text.find('\x01'); at != std::string::npos; at = text.find('\x01', at)) {
      text.replace(at, 1, name);
      at += name.size();
    }
    value = text;
  };
  const nlohmann::json defaults = data.value("defaults", nlohmann::json::object());
  for (auto& t : data["tasks"]) {
    for (const auto& [key, value] : defaults.items()) {
      if (!t.contains(key)) t[key] = value;
      else if (t[key].is_null()) t.erase(key);
    }
    if (!t.contains("total_ms") && t.contains("phases")) {
      std::int64_t sum = 0;
      for (const auto& ms : t["phases"]) sum += ms.get<std::int64_t>();
      t["total_ms"] = sum;
    }
    const std::string name = t.value("name", "");
    if (t.contains("command")) undo("command", t["command"], name);
    for (const char* stream : {"stdout", "stderr"}) {
      if (t.contains(stream) && t[stream].contains("tail")) undo(stream, t[stream]["tail"], name);
    }
  }
  return data;
}

constexpr char kMixed[] = R"([
  {"id": "passes",   "command": ["sh", "-c", "echo fine"]},
  {"id": "fails",    "command": ["sh", "-c",
    "echo 'src/math_test.cc:42: Failure'; echo 'Expected equality of these values:'; echo '  sum'; echo '    Which is: 2'; echo; echo '</script><script>alert(1)</script>' >&2; exit 4"]},
  {"id": "hangs",    "command": ["sleep", "30"], "timeout": 1},
  {"id": "passes-2", "command": ["sh", "-c", "sleep 0.3; echo second"]}
])";

/// The page of a run of kMixed: clean, every task's row and bar with its
/// verdict, the failure at its file:line.
void ExpectMixedRun(const Rendered& shown, const std::string& run) {
  ExpectCleanPage(shown);
  ExpectTask(shown.dom, run + "/passes", "passed");
  ExpectTask(shown.dom, run + "/passes-2", "passed");
  ExpectTask(shown.dom, run + "/fails", "failed");
  ExpectTask(shown.dom, run + "/hangs", "timed_out");
  EXPECT_CONTAINS(shown.dom, "src/math_test.cc:42");
}

TEST(ReportBrowser, BatchRunAndResultsReportRenderEveryTask) {
  REQUIRE_CHROMIUM(chromium);
  Home home;
  fs::path tasks = home.Write("tasks.json", kMixed);
  fs::path from_batch = home.work() / "batch.html";
  CommandOutput batch = home.Run({"batch", "--backend", "local", tasks.string(), "-j", "2",
                                  "--report", from_batch.string()});
  EXPECT_EQ(batch.exit_code, 1) << batch.err;
  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 1u);
  std::string run = runs[0]["run_id"];

  fs::path from_archive = home.work() / "archive.html";
  CommandOutput report = home.Run({"results", "report", "latest", "-o", from_archive.string()});
  EXPECT_EQ(report.exit_code, 0) << report.err;
  EXPECT_CONTAINS(report.out, "wrote " + from_archive.string() + " (4 task(s) of run " + run);

  for (const fs::path& page : {from_batch, from_archive}) {
    SCOPED_TRACE(page.string());
    ASSERT_TRUE(fs::exists(page));
    Rendered shown = Render(chromium, page, ScreenshotDir() / ("batch-" + page.stem().string() + ".png"));
    ExpectMixedRun(shown, run);
    EXPECT_CONTAINS(shown.dom, "Which is: 2");
    EXPECT_CONTAINS(shown.dom, "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;");
    EXPECT_CONTAINS(shown.dom, "timed out");
    EXPECT_CONTAINS(shown.dom, "local");  // the backend
  }
  // The archive's page and the run's own page carry the same tasks.
  EXPECT_EQ(EmbeddedData(from_batch)["tasks"].size(), 4u);
  auto by_id = [](nlohmann::json tasks) {
    std::sort(tasks.begin(), tasks.end(),
              [](const auto& a, const auto& b) { return a["id"] < b["id"]; });
    return tasks;
  };
  EXPECT_EQ(by_id(EmbeddedData(from_archive)["tasks"]), by_id(EmbeddedData(from_batch)["tasks"]));
}

// The same page from a Docker engine's archive (a volume, read through the
// engine): every backend's archive goes through the same reader.
TEST(ReportBrowser, DockerArchiveRunRendersEveryTask) {
  REQUIRE_CHROMIUM(chromium);
  constexpr char kImage[] = "sandrun-test/busybox";
  CommandOutput image = RunCommand({"docker", "image", "inspect", kImage});
  if (image.exit_code != 0) {
    SANDRUN_SKIP_WITHOUT_DOCKER("no Docker engine or no image " + std::string(kImage) +
                                " (scripts/docker-test-env)");
  }
  Home home;
  PrivateDockerVolume volume(home.dir(), "report");
  fs::path tasks = home.Write("tasks.json", kMixed);
  CommandOutput batch = home.Run({"batch", "--backend", "docker", "--image", kImage,
                                  tasks.string(), "-j", "2"});
  EXPECT_EQ(batch.exit_code, 1) << batch.err;
  nlohmann::json runs = home.Runs({"--backend", "docker"});
  ASSERT_GE(runs.size(), 1u);
  std::string run = runs[0]["run_id"];
  fs::path page = home.work() / "docker.html";
  CommandOutput report =
      home.Run({"results", "report", "--backend", "docker", run, "-o", page.string()});
  ASSERT_EQ(report.exit_code, 0) << report.err;
  Rendered shown = Render(chromium, page, ScreenshotDir() / "docker.png");
  ExpectMixedRun(shown, run);
  EXPECT_CONTAINS(shown.dom, "docker");
  EXPECT_CONTAINS(shown.dom, kImage);
}

TEST(ReportBrowser, GtestRunWithRetriedFlakyCase) {
  REQUIRE_CHROMIUM(chromium);
  Home home;
  // Flaky.FailsOnce fails once per directory; not under /tmp, which local
  // sandboxes have of their own.
  fs::path flaky = ScreenshotDir() / ("flaky-" + std::to_string(getpid()));
  fs::remove_all(flaky);
  fs::create_directories(flaky);
  fs::path page = home.work() / "gtest.html";
  CommandOutput run = home.Run(
      {"gtest", SAMPLE_BINARY, "--backend", "local", "-j", "4", "--timeout", "3", "--filter",
       "Sample.Passes:Sample.Skipped:Sample.ExpectFails:Sample.Hangs:Sample.HugeOutput:"
       "Flaky.FailsOnce",
       "--retry-failed", "1", "-e", "SAMPLE_FLAKY_DIR=" + flaky.string(), "--report",
       page.string()},
      CommandOptions{{}, {}, std::nullopt, std::chrono::seconds(240)});
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  fs::remove_all(flaky);
  ASSERT_TRUE(fs::exists(page)) << run.err;

  Rendered shown = Render(chromium, page, ScreenshotDir() / "gtest.png");
  ExpectCleanPage(shown);
  for (const char* name : {"Sample.Passes", "Sample.Skipped", "Sample.ExpectFails",
                           "Sample.Hangs", "Sample.HugeOutput", "Flaky.FailsOnce"}) {
    EXPECT_CONTAINS(shown.dom, std::string(">") + name + "<");
  }
  // Two rounds: 6 executions of 6 tests, 3 of them again.
  nlohmann::json data = EmbeddedData(page);
  EXPECT_EQ(data["runs"].size(), 2u);
  EXPECT_EQ(data["tasks"].size(), 9u);
  // A GTEST_SKIP is a skip, with its reason, not a pass.
  EXPECT_CONTAINS(shown.dom, "<g class=\"bar skipped\"");
  EXPECT_CONTAINS(shown.dom, "skipped for a reason");
  EXPECT_CONTAINS(shown.dom, "flaky (failed, then passed): Flaky.FailsOnce");
  EXPECT_CONTAINS(shown.dom, "expect message from the sandbox");
  EXPECT_CONTAINS(shown.dom, "sample_tests.cc:" + std::to_string(LineOf("expect_fail")));
  EXPECT_CONTAINS(shown.dom, "<g class=\"bar timed_out\"");
  EXPECT_CONTAINS(shown.dom, "<g class=\"bar failed\"");
  // 5 MB of output: the page keeps a tail.
  EXPECT_LT(fs::file_size(page), 200u * 1024) << "a report keeps tails, not whole logs";
}

TEST(ReportBrowser, DetectsAPageThatFetches) {
  // The check above must be able to fail: a page that fetches is caught.
  REQUIRE_CHROMIUM(chromium);
  TempDir dir;
  fs::path page = dir.Write("fetches.html",
                            "<!DOCTYPE html><html><body><p>probe</p><script>"
                            "fetch('http://report-probe.example/x').catch(() => {});"
                            "</script></body></html>");
  Rendered shown = Render(chromium, page);
  EXPECT_CONTAINS(shown.dom, "probe");
  EXPECT_NE(std::find(shown.requested.begin(), shown.requested.end(), "report-probe.example"),
            shown.requested.end())
      << shown.log;
}

TEST(Report, MarkedTestsWriteTheReportFromTheEnvironment) {
  Home home;
  fs::path page = home.work() / "marked.html";
  CommandOptions options;
  options.env = home.Env();
  options.env["SANDRUN_REPORT"] = page.string();
  options.env["SANDRUN_BACKEND"] = "local";
  options.cwd = home.work();
  CommandOutput run =
      RunCommand({SAMPLE_BINARY, "--gtest_filter=Sample.Passes:Sample.ExpectFails"}, options);
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  ASSERT_TRUE(fs::exists(page)) << run.err;
  nlohmann::json data = EmbeddedData(page);
  std::set<std::string> names;
  for (const auto& t : data["tasks"]) names.insert(t.value("name", ""));
  EXPECT_EQ(names, (std::set<std::string>{"Sample.Passes", "Sample.ExpectFails"}));
  ASSERT_EQ(data["runs"].size(), 1u);
  EXPECT_EQ(data["runs"][0]["backend"], "local");
}

TEST(Report, ExecRunsAndSeveralRunsOnOnePage) {
  Home home;
  CommandOutput first = home.Run({"exec", "--backend", "local", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(first.exit_code, 3) << first.err;
  nlohmann::json runs = home.Runs();
  ASSERT_EQ(runs.size(), 1u);
  std::string first_run = runs[0]["run_id"];
  // Run ids sort by their start second; the second run starts in a later one.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  CommandOutput second = home.Run({"exec", "--backend", "local", "--", "true"});
  EXPECT_EQ(second.exit_code, 0) << second.err;

  fs::path latest = home.work() / "latest.html";
  EXPECT_EQ(home.Run({"results", "report", "latest", "-o", latest.string()}).exit_code, 0);
  nlohmann::json one = EmbeddedData(latest);
  ASSERT_EQ(one["tasks"].size(), 1u);
  EXPECT_EQ(one["tasks"][0]["verdict"], "passed");

  // --since the first run's id: both runs (as a CI job takes a CTest suite's).
  fs::path since = home.work() / "since.html";
  CommandOutput report =
      home.Run({"results", "report", "--since", first_run, "-o", since.string()});
  EXPECT_EQ(report.exit_code, 0) << report.err;
  EXPECT_CONTAINS(report.out, "(2 task(s) of 2 runs)");
  nlohmann::json both = EmbeddedData(since);
  EXPECT_EQ(both["runs"].size(), 2u);
  ASSERT_EQ(both["tasks"].size(), 2u);
  EXPECT_EQ(both["tasks"][0]["verdict"], "failed");
  EXPECT_EQ(both["tasks"][0]["exit"], "3");
  EXPECT_EQ(both["tasks"][0]["reason"], "exited with 3");

  CommandOutput future = home.Run({"results", "report", "--since", "29991231", "-o", "f.html"});
  EXPECT_EQ(future.exit_code, 1) << future.err;
  EXPECT_CONTAINS(future.err, "no run started at or after 29991231");
}

// A suite's records are alike (the same binary, a filter per case, output
// naming the case): the page stores them compactly and gives every command
// and tail back exactly, including text that is not ASCII.
TEST(Report, CompactDataGivesBackEveryCommandAndOutput) {
  ReportBuilder builder;
  std::vector<TaskRecord> records;
  for (int i = 0; i < 300; ++i) {
    TaskRecord t;
    t.run_id = "20261203T160000Z-abcd";
    t.task_id = "Suite.Case" + std::to_string(i);
    t.test_name = t.task_id;
    t.backend = i % 10 == 3 ? "local" : "docker";  // a fallback, say
    if (i % 3 == 0) t.image = "ubuntu:24.04";         // only some name an image
    t.sandbox_id = "sb" + std::to_string(i % 7);
    t.started_at = "2026-12-03T16:00:0" + std::to_string(i % 10) + ".25Z";
    t.argv = {"./suite_tests", "--gtest_filter=" + t.test_name, "--gtest_color=no"};
    t.result.outcome = Outcome::kExited;
    t.result.exit_code = i % 50 == 0 ? 1 : 0;
    std::string out = "[ RUN      ] " + t.test_name + "\nchecked " + std::to_string(i) +
                      " things\n[       OK ] " + t.test_name + " (0 ms)\n";
    if (i == 7) out += "caf\xc3\xa9 \x01 done\n";  // non-ASCII and a \x01 of its own
    t.result.stdout_stream.text = out;
    t.result.stdout_stream.total_bytes = out.size();
    t.result.durations.total_ms = 10 + i;
    records.push_back(t);
    builder.AddTask(t);
  }
  Home home;
  fs::path page = home.work() / "compact.html";
  std::string html = builder.Html();
  {
    std::ofstream f(page);
    f << html;
  }
  // Such tasks take under 200 bytes of data each (a random sandbox id, the
  // phases, the name and what differs; each was about 450 before).
  const std::size_t per_task = (html.size() - ReportBuilder().Html().size()) / records.size();
  EXPECT_LT(per_task, 200u) << html.size();
  nlohmann::json data = EmbeddedData(page);
  ASSERT_EQ(data["tasks"].size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    SCOPED_TRACE(i);
    const auto& t = data["tasks"][i];
    EXPECT_EQ(t["name"], records[i].test_name);
    EXPECT_EQ(t["command"], QuoteForDisplay(records[i].argv));
    EXPECT_EQ(t["stdout"]["tail"], records[i].result.stdout_stream.text);
    EXPECT_EQ(t["backend"], records[i].backend);
    if (records[i].image.empty()) EXPECT_FALSE(t.contains("image")) << t.dump();
    else EXPECT_EQ(t["image"], records[i].image);
    EXPECT_EQ(t["verdict"], i % 50 == 0 ? "failed" : "passed");
    EXPECT_EQ(t["sandbox"], records[i].sandbox_id);
    EXPECT_EQ(t["total_ms"], records[i].result.durations.total_ms);
  }
}

TEST(Report, BadInputIsAUsageErrorOrAMissingRun) {
  Home home;
  CommandOutput none = home.Run({"results", "report", "latest", "-o", "r.html"});
  EXPECT_EQ(none.exit_code, 1) << none.err;
  EXPECT_CONTAINS(none.err, "no runs");
  CommandOutput no_dir =
      home.Run({"results", "report", "latest", "-o", (home.dir() / "missing/r.html").string()});
  EXPECT_EQ(no_dir.exit_code, 2) << no_dir.err;
  CommandOutput no_output = home.Run({"results", "report", "latest"});
  EXPECT_EQ(no_output.exit_code, 2) << no_output.err;
  EXPECT_CONTAINS(no_output.err, "missing --output");
  CommandOutput no_run = home.Run({"results", "report", "-o", "r.html"});
  EXPECT_EQ(no_run.exit_code, 2) << no_run.err;
  EXPECT_CONTAINS(no_run.err, "missing RUN, --since or a run group");
  fs::path tasks = home.Write("tasks.json", R"([{"id": "a", "command": ["true"]}])");
  CommandOutput batch = home.Run({"batch", "--backend", "local", tasks.string(), "--report",
                                  (home.dir() / "missing/r.html").string()});
  EXPECT_EQ(batch.exit_code, 2) << batch.err;
  EXPECT_CONTAINS(batch.err, "--report");
  EXPECT_EQ(home.Runs().size(), 0u) << "nothing runs when the report cannot be written";
}

}  // namespace
}  // namespace sandrun::e2e
