#include "sandrun/gtest_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "console_listener.h"
#include "sandrun/gtest_protocol.h"
#include "sandrun/gtest_report.h"
#include "sandrun/junit.h"
#include "sandrun/listener.h"
#include "sandrun/report.h"
#include "sandrun/result.h"
#include "sandrun/util.h"

namespace sandrun::gtest {
namespace fs = std::filesystem;

namespace {

struct CaseOutcome {
  Verdict verdict;
  long long ms = 0;               ///< Its own time: its report's, else its process's.
  std::int64_t start_epoch_ms = 0;
  int rounds = 0;                 ///< How many times it ran.
  std::string backend;
  std::string run_id;
  std::string task_id;
  std::string sandbox_id;
  std::string stdout_text;
  std::string where;  ///< ", where GetParam() = 42", as GoogleTest ends a failed line.
  std::string file;   ///< Where the test is (the listing), for JUnit.
  int line = 0;
  bool flaky() const { return verdict.ok() && rounds > 1; }
  /// Earlier rounds that did not pass (JUnit marks a later pass flaky).
  std::vector<JUnitProblem> earlier_failures;
};

// A verdict that did not pass, as JUnit's <failure>/<error>/<flakyFailure>.
JUnitProblem ProblemOf(const Verdict& v) {
  std::string body;
  for (const Failure& f : v.failures) {
    if (!f.file.empty()) body += f.file + ":" + std::to_string(f.line) + "\n";
    body += f.message + "\n";
  }
  // The message is what a reader shows as the annotation: GoogleTest's
  // first lines ("Expected equality of these values:" alone says little),
  // joined, at most 200 bytes.
  std::string first = v.failures.empty() ? v.summary : v.failures.front().message;
  std::string message;
  std::size_t pos = 0;
  for (int lines = 0; lines < 4 && pos < first.size() && message.size() < 200; ++lines) {
    std::size_t eol = first.find('\n', pos);
    std::string line = first.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    pos = eol == std::string::npos ? first.size() : eol + 1;
    line.erase(0, line.find_first_not_of(" \t"));
    if (line.empty()) continue;
    message += (message.empty() ? "" : " ") + line;
  }
  if (message.size() > 200) message = message.substr(0, 197) + "...";
  JUnitProblem problem{message, std::string(VerdictKindName(v.kind)), body};
  for (const Failure& f : v.failures) {
    if (f.file.empty()) continue;
    problem.file = f.file;
    problem.line = f.line;
    break;
  }
  return problem;
}

std::string Plural(std::size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

/// GoogleTest's bracketed tags, coloured as GoogleTest colours them.
class Tags {
 public:
  explicit Tags(bool color) : color_(color) {}
  std::string Green(const char* tag) const { return Paint("32", tag); }
  std::string Red(const char* tag) const { return Paint("31", tag); }
  std::string Yellow(const std::string& text) const { return Paint("33", text); }

 private:
  std::string Paint(const char* code, const std::string& text) const {
    return color_ ? std::string("\033[0;") + code + "m" + text + "\033[m" : text;
  }
  bool color_;
};

/// What GoogleTest appends to a failed test's name: ", where TypeParam = int
/// and GetParam() = 4" (either part alone when the other is empty).
std::string WhereClause(const ListedTest& test) {
  if (test.type_param.empty() && test.value_param.empty()) return "";
  std::string where = ", where ";
  if (!test.type_param.empty()) where += "TypeParam = " + test.type_param;
  if (!test.type_param.empty() && !test.value_param.empty()) where += " and ";
  if (!test.value_param.empty()) where += "GetParam() = " + test.value_param;
  return where;
}

/// Prints each case as it ends, gtest style, and keeps the progress line.
class PrintingListener : public RunListenerBase {
 public:
  struct Settings {
    bool progress = false;
    bool brief = false;
    bool color = false;
    long long timeout_ms = 0;
    int round = 1;
  };
  PrintingListener(std::FILE* out, std::FILE* err, Settings settings, std::size_t total,
                   std::shared_ptr<DownloadTap> tap,
                   std::map<std::string, const ListedTest*> tests,
                   std::map<std::string, CaseOutcome>* outcomes)
      : out_(out), err_(err), settings_(settings), tags_(settings.color), total_(total),
        tap_(std::move(tap)), tests_(std::move(tests)), outcomes_(outcomes),
        progress_(err, settings.progress) {
    progress_.Start(static_cast<int>(total_));
  }

  void OnTaskStart(const Task& task, int attempt) override {
    if (attempt == 1) progress_.TaskStarted(task.test_name);
  }

  void OnTaskEnd(const TaskRecord& record) override {
    const ListedTest& listed = *tests_.at(record.task_id);
    const std::string& test = listed.name;
    CaseOutcome& outcome = (*outcomes_)[test];
    if (outcome.rounds > 0 && !outcome.verdict.ok()) {
      outcome.earlier_failures.push_back(ProblemOf(outcome.verdict));
    }
    outcome.verdict = Judge(test, record, tap_->Take(record.task_id), settings_.timeout_ms);
    if (outcome.verdict.kind == Verdict::Kind::kSkipped && outcome.verdict.skip_message.empty()) {
      outcome.verdict.skip_message = SkipMessageOf(record);  // GoogleTest's own output
    }
    // An ending that is not an assertion (crash, timeout, early exit) is
    // reported where the test is, as GoogleTest reports a test's own failure.
    for (Failure& f : outcome.verdict.failures) {
      if (f.file.empty() && !listed.file.empty()) {
        f.file = listed.file;
        f.line = listed.line;
      }
    }
    const Durations& d = record.result.durations;
    outcome.ms = OwnMillis(outcome.verdict, d);
    outcome.start_epoch_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch())
            .count() -
        d.exec_ms - d.download_ms;
    outcome.rounds = settings_.round;
    outcome.backend = record.backend;
    outcome.run_id = record.run_id;
    outcome.task_id = record.task_id;
    outcome.sandbox_id = record.result.sandbox_id;
    outcome.stdout_text = record.result.stdout_stream.text;
    outcome.file = listed.file;
    outcome.where = WhereClause(listed);
    outcome.line = listed.line;
    progress_.TaskEnded(test, !outcome.verdict.ok());
    std::string block;
    if (!settings_.brief) block += tags_.Green("[ RUN      ] ") + test + "\n";
    // What the case printed, as GoogleTest shows it between [ RUN ] and its
    // result: the test's own output and its failure messages, in order;
    // then what it wrote to stderr. Failures GoogleTest could not print (a
    // crash, a timeout) follow in its format.
    const std::string printed = GtestCaseOutput(record.result.stdout_stream.text, test);
    auto append = [&block](const std::string& text) {
      if (text.empty()) return;
      block += text;
      if (block.back() != '\n') block += "\n";
    };
    append(printed);
    append(record.result.stderr_stream.text);
    for (const Failure& f : outcome.verdict.failures) {
      if (!f.message.empty() && printed.find(f.message) != std::string::npos) continue;
      // Its copy of a stream's tail is for the XML, and left out here when
      // that stream is shown above. (The stderr tail comes first.)
      std::string message = f.message;
      auto drop_tail = [&message](const std::string& header) {
        std::size_t at = message.find(header);
        if (at == std::string::npos) return;
        std::size_t next = message.find("--- stdout (tail) ---\n", at + header.size());
        message.erase(at, next == std::string::npos ? std::string::npos : next - at);
      };
      if (!record.result.stderr_stream.text.empty()) drop_tail("--- stderr (tail) ---\n");
      // (The case started: what it printed, if anything, is above.)
      if (record.result.stdout_stream.text.find("[ RUN      ] " + test + "\n") != std::string::npos) {
        drop_tail("--- stdout (tail) ---\n");
      }
      while (!message.empty() && message.back() == '\n') message.pop_back();
      block += (f.file.empty() ? std::string("unknown file")
                               : f.file + ":" + std::to_string(f.line)) +
               ": Failure\n" + message + "\n";
    }
    std::string tag = tags_.Green("[       OK ] ");
    if (outcome.verdict.kind == Verdict::Kind::kSkipped) {
      const std::string& why = outcome.verdict.skip_message;
      if (!why.empty() && printed.find(why) == std::string::npos) block += why + "\n";
      tag = tags_.Green("[  SKIPPED ] ");
    } else if (!outcome.verdict.ok()) {
      tag = tags_.Red("[  FAILED  ] ");
    }
    const std::string where = outcome.verdict.ok() ? "" : outcome.where;
    block += tag + test + where + " (" + std::to_string(outcome.ms) + " ms)\n";
    if (!settings_.brief || !outcome.verdict.ok()) {
      progress_.Print([&] {
        std::fputs(block.c_str(), out_);
        std::fflush(out_);
      });
    }
  }

  void OnWarning(std::string_view message) override {
    progress_.Print([&] {
      std::fprintf(err_, "sandrun: warning: %.*s\n", static_cast<int>(message.size()),
                   message.data());
    });
  }

  void OnRunEnd(const RunRecord&) override { progress_.Stop(); }

 private:

  std::FILE* out_;
  std::FILE* err_;
  Settings settings_;
  Tags tags_;
  std::size_t total_;
  std::shared_ptr<DownloadTap> tap_;
  std::map<std::string, const ListedTest*> tests_;  // task id -> test
  std::map<std::string, CaseOutcome>* outcomes_;
  /// Ticks every second on a terminal, naming the cases that run.
  cli::ProgressLine progress_;
};

Status WriteJUnit(const fs::path& path, const std::vector<std::string>& order,
                  const std::map<std::string, CaseOutcome>& outcomes,
                  const std::string& started_at, long long wall_ms) {
  JUnitReport report;
  report.name = "sandrun gtest";
  report.timestamp = started_at;
  report.hostname = HostName();
  report.time_ms = wall_ms;
  for (const auto& test : order) {
    const CaseOutcome& o = outcomes.at(test);
    const Verdict& v = o.verdict;
    JUnitCase c;
    std::tie(c.classname, c.name) = JUnitClassAndName(test, "sandrun");
    c.time_ms = o.ms;
    // The test's own file:line (the listing), as GoogleTest's XML has it;
    // else where its first failure was reported.
    c.file = o.file;
    c.line = o.line;
    for (const Failure& f : v.failures) {
      if (!c.file.empty() || f.file.empty()) continue;
      c.file = f.file;
      c.line = f.line;
    }
    if (v.kind == Verdict::Kind::kSkipped) {
      c.kind = JUnitCase::Kind::kSkipped;
      c.problem.message = v.skip_message;
    } else if (v.kind == Verdict::Kind::kCancelled) {  // As batch reports one.
      c.kind = JUnitCase::Kind::kSkipped;
      c.problem.message = "cancelled";
    } else if (!v.ok()) {
      c.kind = v.kind == Verdict::Kind::kInfraError ? JUnitCase::Kind::kError
                                                    : JUnitCase::Kind::kFailed;
      c.problem = ProblemOf(v);
    } else {
      c.flaky_failures = o.earlier_failures;
    }
    if (!o.run_id.empty()) c.properties.emplace_back("run_id", o.run_id);
    if (!o.backend.empty()) c.properties.emplace_back("backend", o.backend);
    c.system_out = o.stdout_text;
    report.cases.push_back(std::move(c));
  }
  return WriteJUnitFile(path, report);
}


/// What GoogleTest would select from the listing (UnitTestImpl::FilterTests'
/// rules): `run` in the listing's order, and `reported` (the filter's
/// matches on this shard, disabled ones included) for the report and the
/// disabled count.
struct Selection {
  std::vector<const ListedTest*> run;
  std::vector<const ListedTest*> reported;
  int disabled = 0;  ///< Reported, disabled, and not run.
};

Selection Select(const std::vector<ListedTest>& listed, const GtestSettings& gtest) {
  Selection selection;
  int runnable_so_far = 0;  // Across all shards: the shard of a test is its index here.
  for (const ListedTest& test : listed) {
    bool matches = FilterMatches(gtest.filter, test.name);
    bool runnable = matches && (gtest.also_run_disabled || !test.disabled);
    bool on_this_shard = runnable_so_far % gtest.sharding.total == gtest.sharding.index;
    runnable_so_far += runnable;
    if (!matches || !on_this_shard) continue;
    selection.reported.push_back(&test);
    if (runnable) selection.run.push_back(&test);
    else ++selection.disabled;
  }
  return selection;
}

std::size_t SuiteCount(const std::vector<const ListedTest*>& tests) {
  std::set<std::string> suites;
  for (const ListedTest* t : tests) suites.insert(t->name.substr(0, t->name.find('.')));
  return suites.size();
}

/// `--gtest_list_tests`: the tests the filter matches, as the binary prints
/// them (disabled ones included, sharding ignored, as GoogleTest does).
void PrintListing(const std::vector<ListedTest>& listed, const std::string& filter,
                  std::FILE* out) {
  std::string suite;
  for (const ListedTest& test : listed) {
    if (!FilterMatches(filter, test.name)) continue;
    std::string this_suite = test.name.substr(0, test.name.find('.'));
    if (this_suite != suite) {
      suite = this_suite;
      std::fprintf(out, "%s.", suite.c_str());
      if (!test.type_param.empty()) std::fprintf(out, "  # TypeParam = %s", test.type_param.c_str());
      std::fputc('\n', out);
    }
    std::fprintf(out, "  %s", test.name.substr(test.name.find('.') + 1).c_str());
    if (!test.value_param.empty()) {
      std::fprintf(out, "  # GetParam() = %s", test.value_param.c_str());
    }
    std::fputc('\n', out);
  }
  std::fflush(out);
}

std::int64_t EpochMillisNow() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

GtestReport BuildReport(const Selection& selection,
                        const std::map<std::string, CaseOutcome>& outcomes,
                        std::int64_t start_epoch_ms, std::int64_t elapsed_ms,
                        const std::string& backend, const std::string& runs) {
  GtestReport report;
  report.start_epoch_ms = start_epoch_ms;
  report.elapsed_ms = elapsed_ms;
  report.properties = {{"sandrun_backend", backend}, {"sandrun_run", runs}};
  std::set<const ListedTest*> run(selection.run.begin(), selection.run.end());
  for (const ListedTest* test : selection.reported) {
    ReportedCase c;
    c.test = *test;
    c.run = run.count(test) > 0;
    c.start_epoch_ms = start_epoch_ms;
    auto it = outcomes.find(test->name);
    if (c.run && it != outcomes.end()) {
      const CaseOutcome& o = it->second;
      c.verdict = o.verdict;
      c.ms = o.ms;
      c.start_epoch_ms = o.start_epoch_ms;
      c.properties = {{"sandrun_backend", o.backend},
                      {"sandrun_sandbox", o.sandbox_id},
                      {"sandrun_run", o.run_id},
                      {"sandrun_task", o.task_id},
                      {"sandrun_attempts", std::to_string(o.rounds)},
                      {"sandrun_verdict", std::string(VerdictKindName(o.verdict.kind))}};
      if (o.flaky()) c.properties.push_back({"flaky", "true"});
    }
    report.cases.push_back(std::move(c));
  }
  return report;
}

/// The cases of one iteration by how they ended, in the binary's order.
struct Tally {
  std::vector<std::string> passed, skipped, failed, flaky, order;
  bool infra_only = true;  ///< Every failed case failed by an infrastructure error.
};

/// Sorts the cases that should have run (one never run was cancelled).
Tally TallyOutcomes(const Selection& selection, std::map<std::string, CaseOutcome>& outcomes) {
  Tally tally;
  for (const ListedTest* t : selection.run) {
    const std::string& test = t->name;
    tally.order.push_back(test);
    auto it = outcomes.find(test);
    if (it == outcomes.end()) {
      CaseOutcome missing;
      missing.verdict.kind = Verdict::Kind::kCancelled;
      missing.verdict.summary = "not run (cancelled)";
      it = outcomes.emplace(test, missing).first;
    }
    const Verdict& v = it->second.verdict;
    if (v.kind == Verdict::Kind::kPassed) tally.passed.push_back(test);
    else if (v.kind == Verdict::Kind::kSkipped) tally.skipped.push_back(test);
    else {
      tally.failed.push_back(test);
      if (v.kind != Verdict::Kind::kInfraError) tally.infra_only = false;
    }
    if (it->second.flaky()) tally.flaky.push_back(test);
  }
  return tally;
}

/// GoogleTest's closing summary (PASSED / SKIPPED / FAILED lists, the
/// disabled count), with sandrun's FLAKY list.
void PrintSummary(const Tally& tally, const std::map<std::string, CaseOutcome>& outcomes,
                  const Selection& selection, const RunnerOptions& options, const Tags& tags,
                  std::FILE* out) {
  std::fprintf(out, "%s%s.\n", tags.Green("[  PASSED  ] ").c_str(),
               Plural(tally.passed.size(), "test").c_str());
  if (!tally.flaky.empty()) {
    std::fprintf(out, "%s%s flaky (passed only on a retry)%s, listed below:\n",
                 tags.Yellow("[  FLAKY   ] ").c_str(), Plural(tally.flaky.size(), "test").c_str(),
                 options.fail_flaky ? "; --fail-flaky makes that a failure" : "");
    for (const auto& t : tally.flaky) {
      std::fprintf(out, "%s%s (passed on round %d)\n", tags.Yellow("[  FLAKY   ] ").c_str(),
                   t.c_str(), outcomes.at(t).rounds);
    }
  }
  if (!tally.skipped.empty()) {
    std::fprintf(out, "%s%s, listed below:\n", tags.Green("[  SKIPPED ] ").c_str(),
                 Plural(tally.skipped.size(), "test").c_str());
    for (const auto& t : tally.skipped) {
      std::fprintf(out, "%s%s\n", tags.Green("[  SKIPPED ] ").c_str(), t.c_str());
    }
  }
  if (!tally.failed.empty()) {
    std::fprintf(out, "%s%s, listed below:\n", tags.Red("[  FAILED  ] ").c_str(),
                 Plural(tally.failed.size(), "test").c_str());
    for (const auto& t : tally.failed) {
      const CaseOutcome& o = outcomes.at(t);
      std::fprintf(out, "%s%s%s (%s%s)\n", tags.Red("[  FAILED  ] ").c_str(), t.c_str(),
                   o.where.c_str(),
                   std::string(VerdictKindName(o.verdict.kind)).c_str(),
                   o.rounds > 1 ? (", " + std::to_string(o.rounds) + " rounds").c_str() : "");
    }
    std::fprintf(out, "\n%2zu FAILED %s\n", tally.failed.size(),
                 tally.failed.size() == 1 ? "TEST" : "TESTS");
  }
  if (selection.disabled > 0 && !options.gtest.also_run_disabled) {
    if (tally.failed.empty()) std::fputc('\n', out);
    std::fprintf(out, "%s\n\n",
                 tags.Yellow("  YOU HAVE " + std::to_string(selection.disabled) + " DISABLED " +
                             (selection.disabled == 1 ? "TEST" : "TESTS"))
                     .c_str());
  }
  std::fflush(out);
}

}  // namespace

int ListGtestBinary(const Config& config, const RunnerOptions& options, std::FILE* out,
                    std::FILE* err) {
  std::error_code ec;
  auto listed = ListTests(fs::absolute(options.binary, ec), config.state_dir / "gtest" / "lists");
  if (!listed.ok()) {
    std::fprintf(err, "sandrun: %s\n", listed.status().message().c_str());
    return kExitUsage;
  }
  PrintListing(*listed, options.gtest.filter, out);
  return 0;
}

int RunGtestBinary(const Config& config, std::vector<BackendCandidate> candidates,
                   RunOptions run_options, const RunnerOptions& options,
                   const CancelFlag& cancel, std::FILE* out, std::FILE* err) {
  const GtestSettings& gtest = options.gtest;
  const Tags tags(gtest.color);
  std::error_code ec;
  fs::path binary = fs::absolute(options.binary, ec);
  auto listed = ListTests(binary, config.state_dir / "gtest" / "lists");
  if (!listed.ok()) {
    std::fprintf(err, "sandrun: %s\n", listed.status().message().c_str());
    return kExitUsage;
  }
  if (Status touched = TouchShardStatusFile(gtest.sharding); !touched.ok()) {
    std::fprintf(err, "sandrun: %s\n", touched.message().c_str());
    return kExitUsage;
  }
  const Selection selection = Select(*listed, gtest);

  auto tap = std::make_shared<DownloadTap>();
  for (auto& c : candidates) {
    if (c.backend) c.backend = TapBackend(c.backend, tap);
  }
  fs::path empty_dir = config.state_dir / "gtest" / "empty";
  fs::create_directories(empty_dir, ec);
  std::map<std::string, const ListedTest*> by_name;
  for (const ListedTest* t : selection.run) by_name[t->name] = t;

  // One HTML page for all rounds and iterations: rewritten at the end of each.
  std::shared_ptr<ReportFileListener> report;
  if (!options.report.empty()) report = std::make_shared<ReportFileListener>(options.report);
  bool any_failed = false, any_flaky = false, only_infra = true;
  for (int iteration = 1; iteration <= gtest.repeat && !cancel.cancelled(); ++iteration) {
    if (gtest.repeat != 1) {
      std::fprintf(out, "\nRepeating all tests (iteration %d) . . .\n\n", iteration);
    }
    if (gtest.filter != "*") {
      std::fprintf(out, "%s\n", tags.Yellow("Note: Google Test filter = " + gtest.filter).c_str());
    }
    if (gtest.sharding.total > 1) {
      std::fprintf(out, "%s\n",
                   tags.Yellow("Note: This is test shard " + std::to_string(gtest.sharding.index + 1) +
                               " of " + std::to_string(gtest.sharding.total) + ".")
                       .c_str());
    }
    std::fprintf(out, "%sRunning %s from %s of %s in sandboxes.\n",
                 tags.Green("[==========] ").c_str(), Plural(selection.run.size(), "test").c_str(),
                 Plural(SuiteCount(selection.run), "test suite").c_str(),
                 binary.filename().c_str());
    if (selection.run.empty()) {
      std::fprintf(out,
                   "sandrun: note: no test selected: %zu test(s) of %s, none %s (GoogleTest "
                   "runs nothing and passes; so does sandrun)\n",
                   listed->size(), binary.filename().c_str(),
                   gtest.sharding.total > 1 ? "matches the filter on this shard"
                                            : "matches the filter");
    }
    std::fflush(out);

    auto started = std::chrono::steady_clock::now();
    std::int64_t start_epoch_ms = EpochMillisNow();
    const std::string started_at = NowRfc3339();
    std::map<std::string, CaseOutcome> outcomes;
    std::vector<std::string> todo;
    for (const ListedTest* t : selection.run) todo.push_back(t->name);
    std::vector<std::string> run_ids;
    std::string backend_used;
    // The rounds of an iteration are one run in the archive (parts of a run
    // group), so `results show/export/report latest` see every attempt;
    // retried cases get ids of their own there ("Suite.Case-2").
    RunOptions iteration_options = run_options;
    if (iteration_options.run_group.empty() && options.retry_failed > 0) {
      iteration_options.run_group = "gtest-" + std::to_string(getpid()) + "-" + RandomHex(8);
    }
    std::map<std::string, int> used_ids;
    // Each test's last record: a retry round supersedes it in the run's counts.
    std::map<std::string, std::pair<std::string, std::string>> last_record;  // test -> id, counter
    for (int round = 1; !todo.empty() && !cancel.cancelled(); ++round) {
      if (round > 1) {
        std::fprintf(out, "%sround %d: %s that did not pass\n", tags.Yellow("[ RETRY    ] ").c_str(),
                     round, Plural(todo.size(), "test").c_str());
        std::fflush(out);
      }
      std::vector<Task> tasks;
      std::map<std::string, const ListedTest*> task_tests;
      long long timeout_ms = 0;
      for (const auto& test : todo) {
        CaseTask spec;
        spec.task_id = TaskIdFor(test, &used_ids);
        spec.test_name = test;
        spec.tests = {test};
        spec.env = options.env;
        spec.uploads = options.uploads;
        spec.extra_args = options.case_args;
        // A retry's record says so: passing there makes the case flaky.
        if (round > 1) spec.labels[kRetryRoundLabel] = std::to_string(round);
        timeout_ms = static_cast<long long>(CaseTimeoutSeconds(config, spec) * 1000);
        task_tests[spec.task_id] = by_name.at(test);
        tasks.push_back(MakeCaseTask(config, binary, empty_dir, spec));
      }
      Status valid = ValidateTasks(tasks);
      if (!valid.ok()) {
        std::fprintf(err, "sandrun: %s\n", valid.message().c_str());
        return kExitUsage;
      }
      Engine engine(candidates);
      PrintingListener::Settings printing;
      printing.progress = options.progress;
      printing.brief = gtest.brief;
      printing.color = gtest.color;
      printing.timeout_ms = timeout_ms;
      printing.round = round;
      engine.AddListener(std::make_shared<PrintingListener>(out, err, printing, tasks.size(), tap,
                                                            task_tests, &outcomes));
      if (report) engine.AddListener(report);
      iteration_options.supersedes.clear();
      for (const auto& test : todo) {
        if (auto it = last_record.find(test); it != last_record.end()) {
          iteration_options.supersedes[it->second.first] = it->second.second;
        }
      }
      auto outcome = engine.Run(std::move(tasks), iteration_options, cancel);
      if (!outcome.ok()) {
        std::fprintf(err, "sandrun: %s\n", outcome.status().message().c_str());
        // Bad input only the backend could judge (Backend::ValidateSpec) is
        // bad input still, not an infrastructure failure.
        return outcome.status().code() == StatusCode::kInvalidArgument ? kExitUsage
                                                                        : kExitSandrunError;
      }
      if (std::find(run_ids.begin(), run_ids.end(), outcome->run.run_id) == run_ids.end()) {
        run_ids.push_back(outcome->run.run_id);
      }
      for (const TaskRecord& record : outcome->tasks) {
        last_record[record.test_name] = {record.task_id, std::string(RunCounterOf(record))};
      }
      backend_used = outcome->run.backend;
      if (outcome->undelivered > 0) {
        std::fprintf(err,
                     "sandrun: warning: %d record(s) wait in the outbox %s; run `sandrun results "
                     "sync` to deliver them\n",
                     outcome->undelivered, outcome->outbox.c_str());
      }
      if (round > options.retry_failed) break;
      std::vector<std::string> again;
      for (const auto& test : todo) {
        auto it = outcomes.find(test);
        if (it == outcomes.end() || !it->second.verdict.ok()) again.push_back(test);
      }
      todo = std::move(again);
    }

    Tally tally = TallyOutcomes(selection, outcomes);
    std::int64_t wall = MillisBetween(started, std::chrono::steady_clock::now());
    std::string runs;
    for (const auto& id : run_ids) runs += (runs.empty() ? "" : ", ") + id;
    std::fprintf(out, "%s%s from %s ran in sandboxes (backend %s; run %s). (%lld ms total)\n",
                 tags.Green("[==========] ").c_str(), Plural(selection.run.size(), "test").c_str(),
                 Plural(SuiteCount(selection.run), "test suite").c_str(),
                 backend_used.empty() ? "none" : backend_used.c_str(),
                 runs.empty() ? "none" : runs.c_str(), static_cast<long long>(wall));
    PrintSummary(tally, outcomes, selection, options, tags, out);
    // As GoogleTest does with --gtest_repeat, each iteration rewrites the
    // reports: they describe the last one.
    if (!gtest.output_format.empty()) {
      GtestReport report = BuildReport(selection, outcomes, start_epoch_ms, wall,
                                       backend_used, runs);
      Status written = WriteGtestReport(gtest.output_path, gtest.output_format, report);
      if (!written.ok()) {
        std::fprintf(err, "sandrun: cannot write the GoogleTest report %s: %s\n",
                     gtest.output_path.c_str(), written.message().c_str());
        return kExitUsage;
      }
    }
    if (!options.junit.empty()) {
      Status written = WriteJUnit(options.junit, tally.order, outcomes, started_at, wall);
      if (!written.ok()) std::fprintf(err, "sandrun: %s\n", written.message().c_str());
    }
    any_failed = any_failed || !tally.failed.empty();
    any_flaky = any_flaky || !tally.flaky.empty();
    only_infra = only_infra && (tally.failed.empty() || tally.infra_only);
  }
  if (report && !report->status().ok()) {
    std::fprintf(err, "sandrun: %s\n", report->status().message().c_str());
  }
  if (cancel.cancelled()) return kExitInterrupted;
  if (any_failed) return only_infra ? kExitSandrunError : 1;
  if (any_flaky && options.fail_flaky) return 1;
  return 0;
}

}  // namespace sandrun::gtest
