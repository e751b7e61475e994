#include "sandrun/gtest_runner.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>

#include "sandrun/gtest_protocol.h"
#include "sandrun/junit.h"
#include "sandrun/listener.h"
#include "sandrun/result.h"
#include "sandrun/util.h"

namespace sandrun::gtest {
namespace fs = std::filesystem;

namespace {

struct CaseOutcome {
  Verdict verdict;
  long long ms = 0;
  int rounds = 0;  ///< How many times it ran.
  std::string backend;
  std::string run_id;
  std::string stdout_text;
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
  std::string first = v.failures.empty() ? v.summary : v.failures.front().message;
  return {first.substr(0, first.find('\n')), std::string(VerdictKindName(v.kind)), body};
}

std::string Plural(std::size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

/// Prints each case as it ends, gtest style, and keeps the progress line.
class PrintingListener : public RunListenerBase {
 public:
  PrintingListener(std::FILE* out, std::FILE* err, bool progress, std::size_t total,
                   std::shared_ptr<DownloadTap> tap, std::map<std::string, std::string> tests,
                   long long timeout_ms, std::map<std::string, CaseOutcome>* outcomes,
                   int round)
      : out_(out), err_(err), progress_(progress), total_(total), tap_(std::move(tap)),
        tests_(std::move(tests)), timeout_ms_(timeout_ms), outcomes_(outcomes), round_(round) {}

  void OnTaskStart(const Task&, int attempt) override {
    if (attempt == 1) ++running_;
    Progress();
  }

  void OnTaskEnd(const TaskRecord& record) override {
    --running_;
    ++done_;
    const std::string& test = tests_[record.task_id];
    CaseOutcome& outcome = (*outcomes_)[test];
    if (outcome.rounds > 0 && !outcome.verdict.ok()) {
      outcome.earlier_failures.push_back(ProblemOf(outcome.verdict));
    }
    outcome.verdict = Judge(test, record, tap_->Take(record.task_id), timeout_ms_);
    if (outcome.verdict.kind == Verdict::Kind::kSkipped && outcome.verdict.skip_message.empty()) {
      outcome.verdict.skip_message = SkipMessageOf(record);  // GoogleTest's own output
    }
    outcome.ms = record.result.durations.total_ms;
    outcome.rounds = round_;
    outcome.backend = record.backend;
    outcome.run_id = record.run_id;
    outcome.stdout_text = record.result.stdout_stream.text;
    if (!outcome.verdict.ok()) ++failed_;
    ClearProgress();
    std::string block = "[ RUN      ] " + test + "\n";
    for (const Failure& f : outcome.verdict.failures) {
      block += (f.file.empty() ? std::string("unknown file")
                               : f.file + ":" + std::to_string(f.line)) +
               ": Failure\n" + f.message + "\n";
    }
    const char* tag = "[       OK ] ";
    if (outcome.verdict.kind == Verdict::Kind::kSkipped) {
      if (!outcome.verdict.skip_message.empty()) block += outcome.verdict.skip_message + "\n";
      tag = "[  SKIPPED ] ";
    } else if (!outcome.verdict.ok()) {
      tag = "[  FAILED  ] ";
    }
    block += tag + test + " (" + std::to_string(outcome.ms) + " ms)\n";
    std::fputs(block.c_str(), out_);
    std::fflush(out_);
    Progress();
  }

  void OnWarning(std::string_view message) override {
    ClearProgress();
    std::fprintf(err_, "sandrun: warning: %.*s\n", static_cast<int>(message.size()),
                 message.data());
    Progress();
  }

  void OnRunEnd(const RunRecord&) override { ClearProgress(); }

 private:
  void Progress() {
    if (!progress_) return;
    std::fprintf(err_, "\r[ %zu/%zu done, %d running, %d failed ]", done_, total_, running_,
                 failed_);
    std::fflush(err_);
    shown_ = true;
  }
  void ClearProgress() {
    if (!progress_ || !shown_) return;
    std::fputs("\r\033[K", err_);
    shown_ = false;
  }

  std::FILE* out_;
  std::FILE* err_;
  bool progress_;
  std::size_t total_;
  std::shared_ptr<DownloadTap> tap_;
  std::map<std::string, std::string> tests_;  // task id -> test
  long long timeout_ms_;
  std::map<std::string, CaseOutcome>* outcomes_;
  int round_;
  std::size_t done_ = 0;
  int running_ = 0;
  int failed_ = 0;
  bool shown_ = false;
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
    for (const Failure& f : v.failures) {
      if (f.file.empty()) continue;
      c.file = f.file;
      c.line = f.line;
      break;
    }
    if (v.kind == Verdict::Kind::kSkipped) {
      c.kind = JUnitCase::Kind::kSkipped;
      c.problem.message = v.skip_message;
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

}  // namespace

int RunGtestBinary(const Config& config, std::vector<BackendCandidate> candidates,
                   RunOptions run_options, const RunnerOptions& options,
                   const CancelFlag& cancel, std::FILE* out, std::FILE* err) {
  auto started = std::chrono::steady_clock::now();
  const std::string started_at = NowRfc3339();
  std::error_code ec;
  fs::path binary = fs::absolute(options.binary, ec);
  auto listed = ListTests(binary, config.state_dir / "gtest" / "lists");
  if (!listed.ok()) {
    std::fprintf(err, "sandrun: %s\n", listed.status().message().c_str());
    return kExitUsage;
  }
  std::vector<std::string> selected;
  for (const auto& name : listed.value()) {
    if (options.filter.empty() || FilterMatches(options.filter, name)) selected.push_back(name);
  }
  auto tap = std::make_shared<DownloadTap>();
  for (auto& c : candidates) {
    if (c.backend) c.backend = TapBackend(c.backend, tap);
  }
  fs::path empty_dir = config.state_dir / "gtest" / "empty";
  fs::create_directories(empty_dir, ec);

  std::fprintf(out, "[==========] Running %s from %s in sandboxes.\n",
               Plural(selected.size(), "test").c_str(), binary.filename().c_str());
  std::fflush(out);
  std::map<std::string, CaseOutcome> outcomes;
  std::vector<std::string> todo = selected;
  std::set<std::string> run_ids;
  bool infra_only = true;
  std::string backend_used;
  for (int round = 1; !todo.empty() && !cancel.cancelled(); ++round) {
    if (round > 1) {
      std::fprintf(out, "[ RETRY    ] round %d: %s that did not pass\n", round,
                   Plural(todo.size(), "test").c_str());
      std::fflush(out);
    }
    std::vector<Task> tasks;
    std::map<std::string, std::string> task_tests;
    std::map<std::string, int> used_ids;
    for (const auto& test : todo) {
      CaseTask spec;
      spec.task_id = TaskIdFor(test, &used_ids);
      spec.test_name = test;
      spec.tests = {test};
      spec.env = options.env;
      spec.uploads = options.uploads;
      task_tests[spec.task_id] = test;
      tasks.push_back(MakeCaseTask(config, binary, empty_dir, spec));
    }
    Status valid = ValidateTasks(tasks);
    if (!valid.ok()) {
      std::fprintf(err, "sandrun: %s\n", valid.message().c_str());
      return kExitUsage;
    }
    Engine engine(candidates);
    auto printer = std::make_shared<PrintingListener>(
        out, err, options.progress, tasks.size(), tap, task_tests,
        static_cast<long long>(config.timeout_s * 1000), &outcomes, round);
    engine.AddListener(printer);
    auto outcome = engine.Run(std::move(tasks), run_options, cancel);
    if (!outcome.ok()) {
      std::fprintf(err, "sandrun: %s\n", outcome.status().message().c_str());
      return kExitSandrunError;
    }
    run_ids.insert(outcome->run.run_id);
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

  std::vector<std::string> passed, skipped, failed;
  for (const auto& test : selected) {
    auto it = outcomes.find(test);
    if (it == outcomes.end()) {
      CaseOutcome missing;
      missing.verdict.kind = Verdict::Kind::kCancelled;
      missing.verdict.summary = "not run (cancelled)";
      it = outcomes.emplace(test, missing).first;
    }
    const Verdict& v = it->second.verdict;
    if (v.kind == Verdict::Kind::kPassed) passed.push_back(test);
    else if (v.kind == Verdict::Kind::kSkipped) skipped.push_back(test);
    else {
      failed.push_back(test);
      if (v.kind != Verdict::Kind::kInfraError) infra_only = false;
    }
  }
  long long wall = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::steady_clock::now() - started)
                       .count();
  std::string runs;
  for (const auto& id : run_ids) runs += (runs.empty() ? "" : ", ") + id;
  std::fprintf(out, "[==========] %s ran in sandboxes (backend %s; run %s). (%lld ms total)\n",
               Plural(selected.size(), "test").c_str(), backend_used.c_str(), runs.c_str(), wall);
  std::fprintf(out, "[  PASSED  ] %s.\n", Plural(passed.size(), "test").c_str());
  if (!skipped.empty()) {
    std::fprintf(out, "[  SKIPPED ] %s, listed below:\n", Plural(skipped.size(), "test").c_str());
    for (const auto& t : skipped) std::fprintf(out, "[  SKIPPED ] %s\n", t.c_str());
  }
  if (!failed.empty()) {
    std::fprintf(out, "[  FAILED  ] %s, listed below:\n", Plural(failed.size(), "test").c_str());
    for (const auto& t : failed) {
      const CaseOutcome& o = outcomes[t];
      std::fprintf(out, "[  FAILED  ] %s (%s%s)\n", t.c_str(),
                   std::string(VerdictKindName(o.verdict.kind)).c_str(),
                   o.rounds > 1 ? (", " + std::to_string(o.rounds) + " rounds").c_str() : "");
    }
  }
  std::fflush(out);
  if (!options.junit.empty()) {
    Status written = WriteJUnit(options.junit, selected, outcomes, started_at, wall);
    if (!written.ok()) std::fprintf(err, "sandrun: %s\n", written.message().c_str());
  }
  if (cancel.cancelled()) return kExitInterrupted;
  if (failed.empty()) return 0;
  return infra_only ? kExitSandrunError : 1;
}

}  // namespace sandrun::gtest
