#include "sandrun/gtest_protocol.h"

#include <fcntl.h>
#include <spawn.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <fstream>
#include <functional>
#include <optional>
#include <nlohmann/json.hpp>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "sandrun/batch_file.h"
#include "sandrun/file_util.h"
#include "sandrun/util.h"
#include "sandrun/portable_exe.h"

extern char** environ;

namespace sandrun::gtest {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Glob match with '*' (any run) and '?' (one char), iterative with
// backtracking to the last '*'.
bool GlobMatches(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p;
      ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

bool AnyMatches(std::string_view patterns, std::string_view name) {
  while (true) {
    std::size_t colon = patterns.find(':');
    std::string_view one = patterns.substr(0, colon);
    if (!one.empty() && GlobMatches(one, name)) return true;
    if (colon == std::string_view::npos) return false;
    patterns.remove_prefix(colon + 1);
  }
}

std::string Trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return std::string(s.substr(b, e - b));
}

// "path/file.cc:42\nmessage" -> {file, line, message}; "unknown file\n..." ->
// no location.
Failure ParseFailureText(const std::string& text) {
  Failure failure;
  std::size_t newline = text.find('\n');
  std::string head = text.substr(0, newline);
  std::string rest = newline == std::string::npos ? "" : text.substr(newline + 1);
  std::size_t colon = head.rfind(':');
  bool located = colon != std::string::npos && colon + 1 < head.size() &&
                 std::all_of(head.begin() + colon + 1, head.end(),
                             [](char c) { return c >= '0' && c <= '9'; });
  if (located) {
    failure.file = head.substr(0, colon);
    failure.line = std::atoi(head.c_str() + colon + 1);
    failure.message = rest;
  } else if (head == "unknown file") {
    failure.message = rest;
  } else {
    failure.message = text;
  }
  return failure;
}

// A string field of a JSON object; "" when absent or not a string.
std::string StringField(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Calls `visit(suite name, test object)` for every test of GoogleTest's JSON
// ({"testsuites": [{"name", "testsuite": [...]}]}, a report or a listing),
// skipping what is not shaped so. kInvalidArgument when it is not JSON.
Status ForEachJsonTest(std::string_view text, const char* what,
                       const std::function<void(const std::string&, const json&)>& visit) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return InvalidArgumentError(std::string("the gtest JSON ") + what + " is not valid JSON");
  }
  auto suites = doc.find("testsuites");
  if (suites == doc.end() || !suites->is_array()) return OkStatus();
  for (const auto& suite : *suites) {
    if (!suite.is_object()) continue;
    auto tests = suite.find("testsuite");
    if (tests == suite.end() || !tests->is_array()) continue;
    std::string suite_name = StringField(suite, "name");
    for (const auto& test : *tests) {
      if (test.is_object()) visit(suite_name, test);
    }
  }
  return OkStatus();
}

std::string SecondsText(long long ms) {
  std::ostringstream out;
  if (ms % 1000 == 0) out << ms / 1000 << " s";
  else out << static_cast<double>(ms) / 1000.0 << " s";
  return out.str();
}

// GoogleTest before 1.13 writes no skip message into its JSON report (an
// adapter-linked binary records it as a property); a plain binary's only
// trace of it is the test's output: "file:line: Skipped\nWHY\n[  SKIPPED ] T".
std::string SkipMessageFromOutput(const std::string& output, const std::string& test) {
  std::size_t end = output.find("[  SKIPPED ] " + test);
  if (end == std::string::npos) return "";
  std::size_t start = output.rfind(": Skipped\n", end);
  if (start == std::string::npos) return "";
  std::string message = output.substr(start + 10, end - start - 10);
  while (!message.empty() && message.back() == '\n') message.pop_back();
  return message;
}

std::string Where(const TaskRecord& record) {
  std::string where = record.backend + " sandbox";
  if (!record.result.sandbox_id.empty()) where += " " + record.result.sandbox_id;
  return where;
}

// Runs argv on this host and returns its stdout; the environment is ours
// minus the variables that would change what a gtest binary lists.
Result<std::string> CaptureOutput(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return InternalError(std::string("pipe: ") + strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    if (entry.rfind("SANDRUN_FILTER=", 0) == 0 || entry.rfind("GTEST_", 0) == 0 ||
        entry.rfind("SANDRUN_GTEST_INSIDE=", 0) == 0) {
      continue;
    }
    env_storage.emplace_back(entry);
  }
  std::vector<char*> envp, args;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = argv;
  for (auto& a : argv_copy) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return NotFoundError("cannot run " + argv[0] + ": " + strerror(rc));
  }
  std::string out;
  char buf[65536];
  while (true) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return FailedPreconditionError(argv[0] + " --gtest_list_tests failed (status " +
                                   std::to_string(status) + "); is it a GoogleTest binary?");
  }
  return out;
}

}  // namespace

bool FilterMatches(std::string_view filter, std::string_view name) {
  std::size_t dash = filter.find('-');
  std::string_view positive = filter.substr(0, dash);
  std::string_view negative =
      dash == std::string_view::npos ? std::string_view() : filter.substr(dash + 1);
  bool selected = positive.empty() ? true : AnyMatches(positive, name);
  return selected && !AnyMatches(negative, name);
}

bool IsDisabledTest(std::string_view suite, std::string_view test) {
  // GoogleTest's own rule: either name matches "DISABLED_*:*/DISABLED_*".
  auto disabled = [](std::string_view name) {
    return name.substr(0, 9) == "DISABLED_" || name.find("/DISABLED_") != std::string_view::npos;
  };
  return disabled(suite) || disabled(test);
}

std::vector<ListedTest> ParseTestListing(std::string_view listing) {
  std::vector<ListedTest> tests;
  std::string suite;
  std::istringstream in{std::string(listing)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::string text = line.substr(0, line.find('#'));
    if (line[0] != ' ') {
      text = Trim(text);
      if (!text.empty() && text.back() == '.') suite = text.substr(0, text.size() - 1);
      else suite.clear();  // not a suite line (a banner printed by main())
      continue;
    }
    std::string test = Trim(text);
    if (suite.empty() || test.empty()) continue;
    ListedTest listed;
    listed.name = suite + "." + test;
    listed.disabled = IsDisabledTest(suite, test);
    tests.push_back(std::move(listed));
  }
  return tests;
}

std::vector<std::string> ParseTestList(std::string_view listing) {
  std::vector<std::string> names;
  for (const ListedTest& test : ParseTestListing(listing)) {
    if (!test.disabled) names.push_back(test.name);
  }
  return names;
}

Result<std::vector<ListedTest>> ParseJsonTestListing(std::string_view text) {
  std::vector<ListedTest> tests;
  SANDRUN_RETURN_IF_ERROR(
      ForEachJsonTest(text, "listing", [&](const std::string& suite, const json& test) {
        ListedTest listed;
        std::string test_name = StringField(test, "name");
        listed.name = suite + "." + test_name;
        listed.file = StringField(test, "file");
        if (auto line = test.find("line"); line != test.end() && line->is_number_integer()) {
          listed.line = line->get<int>();
        }
        listed.value_param = StringField(test, "value_param");
        listed.type_param = StringField(test, "type_param");
        listed.disabled = IsDisabledTest(suite, test_name);
        tests.push_back(std::move(listed));
      }));
  return tests;
}

namespace {

json ListingToJson(const std::vector<ListedTest>& tests) {
  json out = json::array();
  for (const auto& t : tests) {
    out.push_back({{"name", t.name}, {"file", t.file}, {"line", t.line},
                   {"disabled", t.disabled}, {"value_param", t.value_param},
                   {"type_param", t.type_param}});
  }
  return out;
}

std::optional<std::vector<ListedTest>> ListingFromJson(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_array()) return std::nullopt;
  std::vector<ListedTest> tests;
  for (const auto& item : doc) {
    if (!item.is_object()) return std::nullopt;
    ListedTest t;
    t.name = item.value("name", "");
    t.file = item.value("file", "");
    t.line = item.value("line", 0);
    t.disabled = item.value("disabled", false);
    t.value_param = item.value("value_param", "");
    t.type_param = item.value("type_param", "");
    tests.push_back(std::move(t));
  }
  return tests;
}

}  // namespace

Result<std::vector<ListedTest>> ListTests(const fs::path& binary, const fs::path& cache_dir) {
  SANDRUN_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(binary));
  fs::path cache = cache_dir / (sha + ".listing.json");
  std::error_code ec;
  if (fs::exists(cache, ec)) {
    Result<std::string> cached = ReadWholeFile(cache);
    if (cached.ok()) {
      if (auto tests = ListingFromJson(*cached)) return *tests;
    }
  }
  fs::create_directories(cache_dir, ec);
  fs::path json_listing = cache_dir / (sha + ".gtest" + std::to_string(getpid()) + ".json");
  SANDRUN_ASSIGN_OR_RETURN(
      std::string listing,
      CaptureOutput({fs::absolute(binary).string(), "--gtest_list_tests",
                     "--gtest_output=json:" + json_listing.string()}));
  // GoogleTest < 1.10 writes no JSON listing: the text one has no file:line.
  std::vector<ListedTest> tests = ParseTestListing(listing);
  if (Result<std::string> text = ReadWholeFile(json_listing); text.ok()) {
    auto parsed = ParseJsonTestListing(*text);
    if (parsed.ok() && !parsed->empty()) tests = std::move(parsed).value();
  }
  fs::remove(json_listing, ec);
  fs::path tmp = cache;
  tmp += ".tmp" + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << ListingToJson(tests).dump(1) << "\n";
  }
  fs::rename(tmp, cache, ec);  // A cache we cannot write only costs a relisting.
  return tests;
}

Result<std::vector<CaseReport>> ParseGtestJson(std::string_view text) {
  std::vector<CaseReport> cases;
  SANDRUN_RETURN_IF_ERROR(
      ForEachJsonTest(text, "report", [&](const std::string& suite_name, const json& test) {
        const auto str = StringField;
        CaseReport report;
        report.name = suite_name + "." + str(test, "name");
        report.ran = str(test, "status") != "NOTRUN";
        report.skipped = str(test, "result") == "SKIPPED";
        std::string time = str(test, "time");
        if (!time.empty()) report.seconds = std::atof(time.c_str());
        if (auto f = test.find("failures"); f != test.end() && f->is_array()) {
          for (const auto& item : *f) {
            if (!item.is_object()) continue;
            // The source writes "failure"; the documented schema says "message".
            std::string text = str(item, "failure");
            if (text.empty()) text = str(item, "message");
            report.failures.push_back(ParseFailureText(text));
          }
        }
        if (auto s = test.find("skipped"); s != test.end() && s->is_array()) {
          for (const auto& item : *s) {
            if (item.is_object()) {
              report.skip_message = ParseFailureText(str(item, "message")).message;
            }
          }
          if (!s->empty()) report.skipped = report.skipped || report.failures.empty();
        }
        if (report.skip_message.empty()) report.skip_message = str(test, kSkipMessageProperty);
        cases.push_back(std::move(report));
      }));
  return cases;
}

long long OwnMillis(const Verdict& verdict, const Durations& durations) {
  // Without a report (a crash, a timeout) the process's time is the closest
  // to the test's own; never the time spent queueing or setting up.
  return verdict.report_ms >= 0 ? verdict.report_ms : durations.exec_ms;
}

std::string_view VerdictKindName(Verdict::Kind kind) {
  switch (kind) {
    case Verdict::Kind::kPassed: return "passed";
    case Verdict::Kind::kFailed: return "failed";
    case Verdict::Kind::kSkipped: return "skipped";
    case Verdict::Kind::kTimedOut: return "timed out";
    case Verdict::Kind::kCrashed: return "crashed";
    case Verdict::Kind::kExitedEarly: return "exited early";
    case Verdict::Kind::kNoReport: return "no report";
    case Verdict::Kind::kInfraError: return "infrastructure error";
    case Verdict::Kind::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string OutputTail(const TaskRecord& record, std::size_t max_bytes) {
  std::string tail;
  for (const CapturedStream* stream :
       {&record.result.stderr_stream, &record.result.stdout_stream}) {
    const std::string& text = stream->text;
    if (text.empty()) continue;
    std::size_t keep = std::min(text.size(), max_bytes);
    std::size_t from = text.size() - keep;
    // Start at a line boundary when one is near, for readability.
    std::size_t newline = text.find('\n', from);
    if (from > 0 && newline != std::string::npos && newline + 1 < text.size() &&
        newline - from < 200) {
      from = newline + 1;
    }
    tail += (stream == &record.result.stderr_stream ? "--- stderr (tail) ---\n"
                                                    : "--- stdout (tail) ---\n");
    tail += text.substr(from);
    if (tail.back() != '\n') tail += '\n';
  }
  return tail;
}

Verdict Judge(const std::string& test, const TaskRecord& record, const DownloadedFiles& files,
              long long timeout_ms) {
  Verdict v;
  const ExecResult& r = record.result;
  auto ending = [&](Verdict::Kind kind, std::string summary, bool with_tail) {
    v.kind = kind;
    v.summary = std::move(summary);
    std::string message = v.summary;
    if (with_tail) {
      std::string tail = OutputTail(record);
      if (!tail.empty()) message += "\n" + tail;
    }
    v.failures.push_back({"", -1, message});
    return v;
  };
  switch (r.outcome) {
    case Outcome::kTimedOut:
      return ending(Verdict::Kind::kTimedOut,
                    "sandrun: timed out after " + SecondsText(timeout_ms) + " on backend " +
                        record.backend + ", in " + Where(record),
                    true);
    case Outcome::kInfraError:
    case Outcome::kInterrupted: {
      std::string summary = "sandrun infrastructure error (not a test failure) on backend " +
                            record.backend + " after " + std::to_string(record.attempts) +
                            " attempt(s): " + r.error;
      for (const auto& e : record.attempt_errors) summary += "\n  earlier attempt: " + e;
      return ending(Verdict::Kind::kInfraError, summary, false);
    }
    case Outcome::kCancelled:
      return ending(Verdict::Kind::kCancelled, "sandrun: cancelled before the test ended", false);
    case Outcome::kOomKilled:
      return ending(Verdict::Kind::kCrashed,
                    "sandrun: killed for exceeding its memory limit in " + Where(record), true);
    case Outcome::kSignaled:
      return ending(Verdict::Kind::kCrashed,
                    "sandrun: crashed: killed by signal " + SignalText(r.signal) + " in " +
                        Where(record),
                    true);
    case Outcome::kExited:
      break;
  }
  bool premature = false;
  const std::string* report_text = nullptr;
  std::string report_name = std::string(kReportFile).substr(std::strlen(kOutputDir) + 1);
  std::string marker_name = std::string(kPrematureExitFile).substr(std::strlen(kOutputDir) + 1);
  for (const auto& [path, bytes] : files) {
    std::string base = fs::path(path).filename().string();
    if (base == report_name) report_text = &bytes;
    if (base == marker_name) premature = true;
  }
  if (premature) {
    return ending(Verdict::Kind::kExitedEarly,
                  "sandrun: the test binary exited early (code " + std::to_string(r.exit_code) +
                      ") before GoogleTest finished: TEST_PREMATURE_EXIT_FILE was left behind, in " +
                      Where(record),
                  true);
  }
  const CaseReport* report = nullptr;
  std::vector<CaseReport> reports;
  if (report_text != nullptr) {
    auto parsed = ParseGtestJson(*report_text);
    if (parsed.ok()) reports = std::move(parsed).value();
    for (const auto& c : reports) {
      if (c.name == test) report = &c;
    }
  }
  if (report == nullptr || !report->ran) {
    return ending(Verdict::Kind::kNoReport,
                  "sandrun: the test binary exited with code " + std::to_string(r.exit_code) +
                      (report_text == nullptr ? " without writing its JSON report"
                                              : " and its JSON report does not list " + test) +
                      ", in " + Where(record),
                  true);
  }
  v.failures = report->failures;
  v.report_ms = std::llround(report->seconds * 1000);
  if (!v.failures.empty()) {
    v.kind = Verdict::Kind::kFailed;
    v.summary = std::to_string(v.failures.size()) + " failure(s)";
    return v;
  }
  if (report->skipped) {
    v.kind = Verdict::Kind::kSkipped;
    v.skip_message = report->skip_message;
    if (v.skip_message.empty()) v.skip_message = SkipMessageFromOutput(r.stdout_stream.text, test);
    v.summary = "skipped";
    return v;
  }
  // Only a multi-test (reuse) task can fail other tests and still be fine
  // for this one; a single test exiting non-zero after passing is a failure.
  bool others_failed = false;
  for (const auto& c : reports) {
    if (c.name != test && !c.failures.empty()) others_failed = true;
  }
  if (r.exit_code != 0 && !others_failed) {
    return ending(Verdict::Kind::kNoReport,
                  "sandrun: the test passed but the binary exited with code " +
                      std::to_string(r.exit_code) + ", in " + Where(record),
                  true);
  }
  v.kind = Verdict::Kind::kPassed;
  v.summary = "passed";
  return v;
}

std::string TaskIdFor(const std::string& test_name, std::map<std::string, int>* used) {
  std::string id;
  for (char c : test_name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    id += ok ? c : '_';
  }
  if (id.empty()) id = "test";
  if (id.size() > 100) id = id.substr(0, 100);
  int n = (*used)[id]++;
  if (n > 0) id += "-" + std::to_string(n + 1);
  return id;
}

double CaseTimeoutSeconds(const Config& config, const CaseTask& spec) {
  if (spec.timeout_s > 0) return spec.timeout_s;
  if (config.timeout_s > 0) return config.timeout_s;
  return config.test_timeout_s;
}

Task MakeCaseTask(const Config& config, const fs::path& binary, const fs::path& empty_dir,
                  const CaseTask& spec) {
  Task task = TaskFromConfig(config);
  // Cases of one binary are processes, as gtest-parallel runs them: they
  // share warm sandboxes unless the user asks for a sandbox per case.
  task.isolation = IsolationFor(config, Isolation::kProcess);
  task.id = spec.task_id;
  task.test_name = spec.test_name;
  if (!spec.image.empty()) task.sandbox.image = spec.image;
  if (spec.cpu > 0) task.sandbox.cpu = spec.cpu;
  if (spec.memory_mb > 0) task.sandbox.memory_mb = spec.memory_mb;
  if (!spec.gpu.empty()) task.sandbox.gpu = spec.gpu;
  if (spec.network_set) task.sandbox.network = spec.network;
  if (double timeout_s = CaseTimeoutSeconds(config, spec); timeout_s > 0) {
    task.exec.timeout = TimeoutFromSeconds(timeout_s);
    DeriveDefaultLifetime(config, task);
  }
  std::string exe_name = binary.filename().string();
  task.sandbox.uploads.push_back({binary.string(), exe_name, /*portable=*/true});
  task.sandbox.uploads.push_back({empty_dir.string(), kOutputDir, false});
  for (const auto& upload : spec.uploads) task.sandbox.uploads.push_back(upload);
  std::string filter;
  for (const auto& t : spec.tests) filter += (filter.empty() ? "" : ":") + t;
  // The host chose these tests, DISABLED_ ones included when it was asked to
  // run them; the exact filter keeps the sandbox to that choice.
  task.exec.argv = {"./" + exe_name, "--gtest_filter=" + filter,
                    "--gtest_also_run_disabled_tests",
                    std::string("--gtest_output=json:") + kReportFile, "--gtest_color=no"};
  task.exec.argv.insert(task.exec.argv.end(), spec.extra_args.begin(), spec.extra_args.end());
  task.sandbox.env = spec.env;
  for (const auto& [key, value] : spec.labels) task.sandbox.labels[key] = value;
  task.exec.env[kInsideEnv] = "1";
  task.exec.env["TEST_PREMATURE_EXIT_FILE"] = kPrematureExitFile;
  task.downloads = {kOutputDir};
  return task;
}

void DownloadTap::Reset(const std::string& task_id) {
  std::lock_guard lock(mu_);
  files_.erase(task_id);
}

void DownloadTap::Add(const std::string& task_id, const std::string& path, std::string bytes) {
  std::lock_guard lock(mu_);
  files_[task_id][path] = std::move(bytes);
}

DownloadedFiles DownloadTap::Take(const std::string& task_id) {
  std::lock_guard lock(mu_);
  auto it = files_.find(task_id);
  if (it == files_.end()) return {};
  DownloadedFiles files = std::move(it->second);
  files_.erase(it);
  return files;
}

namespace {

class TapSandbox : public Sandbox {
 public:
  TapSandbox(std::unique_ptr<Sandbox> inner, std::string task_id,
             std::shared_ptr<DownloadTap> tap)
      : inner_(std::move(inner)), task_id_(std::move(task_id)), tap_(std::move(tap)) {}
  const std::string& Id() const override { return inner_->Id(); }
  Status Put(const FileUpload& upload) override {
    StartAttempt(upload);
    return inner_->Put(upload);
  }
  Status PutAll(const std::vector<FileUpload>& uploads) override {
    for (const auto& upload : uploads) StartAttempt(upload);
    return inner_->PutAll(uploads);
  }
  Result<ExecResult> Exec(const ExecRequest& request) override { return inner_->Exec(request); }
  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const fs::path& host_dir) override {
    auto got = inner_->Get(sandbox_path, host_dir);
    const std::string task_id = TaskOf(sandbox_path);
    if (got.ok()) {
      constexpr std::uintmax_t kMaxBytes = 256u << 20;
      for (const auto& relative : got.value()) {
        std::error_code ec;
        fs::path file = host_dir / relative;
        if (!fs::is_regular_file(file, ec) || fs::file_size(file, ec) > kMaxBytes) continue;
        Result<std::string> bytes = ReadWholeFile(file);
        tap_->Add(task_id, relative, bytes.ok() ? *bytes : std::string());
      }
    }
    return got;
  }
  Status Terminate() override { return inner_->Terminate(); }

 private:
  // A task's first upload into this sandbox starts its attempt (a retried
  // attempt always gets a new sandbox): it starts from nothing.
  void StartAttempt(const FileUpload& upload) {
    std::string task = TaskOf(upload.destination);
    std::lock_guard lock(mu_);
    if (tasks_put_.insert(task).second) tap_->Reset(task);
  }
  // The task a path belongs to: in a shared sandbox, the one whose directory
  // holds it; else the sandbox's own task.
  std::string TaskOf(const std::string& sandbox_path) const {
    const std::string prefix = SharedTaskDirectory("");
    if (sandbox_path.rfind(prefix, 0) != 0) return task_id_;
    std::string rest = sandbox_path.substr(prefix.size());
    return rest.substr(0, rest.find('/'));
  }

  std::unique_ptr<Sandbox> inner_;
  std::string task_id_;
  std::shared_ptr<DownloadTap> tap_;
  std::mutex mu_;  // A warm sandbox serves several workers at once.
  std::set<std::string> tasks_put_;  ///< Tasks that have put files here. Guarded by mu_.
};

class TapBackendImpl : public Backend {
 public:
  TapBackendImpl(std::shared_ptr<Backend> inner, std::shared_ptr<DownloadTap> tap)
      : inner_(std::move(inner)), tap_(std::move(tap)) {}
  std::string_view Name() const override { return inner_->Name(); }
  Capabilities GetCapabilities() const override { return inner_->GetCapabilities(); }
  Status CheckAvailable() override { return inner_->CheckAvailable(); }
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override {
    auto created = inner_->Create(spec);
    if (!created.ok()) return created.status();
    auto label = spec.labels.find("task");
    std::string task_id = label == spec.labels.end() ? "" : label->second;
    tap_->Reset(task_id);  // A retried attempt starts from nothing.
    return std::unique_ptr<Sandbox>(
        std::make_unique<TapSandbox>(std::move(created).value(), task_id, tap_));
  }
  Result<std::vector<Leftover>> ListLeftovers() override { return inner_->ListLeftovers(); }
  Status RemoveLeftover(const std::string& id) override { return inner_->RemoveLeftover(id); }
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override { return inner_->OpenArchive(); }

 private:
  std::shared_ptr<Backend> inner_;
  std::shared_ptr<DownloadTap> tap_;
};

}  // namespace

std::shared_ptr<Backend> TapBackend(std::shared_ptr<Backend> inner,
                                    std::shared_ptr<DownloadTap> tap) {
  return std::make_shared<TapBackendImpl>(std::move(inner), std::move(tap));
}

}  // namespace sandrun::gtest
