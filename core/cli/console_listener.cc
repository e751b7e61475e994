#include "console_listener.h"

#include <algorithm>
#include <sstream>

#include "sandrun/engine.h"

namespace sandrun::cli {
namespace {

std::string Label(const TaskRecord& r) {
  std::string verdict = VerdictOf(r.result);
  if (verdict == "passed") return "PASS";
  if (verdict == "failed") return "FAIL";
  if (verdict == "timed_out") return "TIMEOUT";
  if (verdict == "oom") return "OOM";
  if (verdict == "cancelled") return "CANCEL";
  return "ERROR";
}

std::string OutcomeDetail(const ExecResult& x) {
  switch (x.outcome) {
    case Outcome::kExited: return "exit " + std::to_string(x.exit_code);
    case Outcome::kSignaled: return "signal " + std::to_string(x.signal);
    case Outcome::kTimedOut: return "timed out";
    case Outcome::kOomKilled: return "out of memory";
    case Outcome::kCancelled: return "cancelled";
    case Outcome::kInfraError: return "sandrun/backend error";
    case Outcome::kInterrupted: return "interrupted: sandrun ended";
  }
  return "";
}

/// The outcome, plus a word when the record holds only part of the output.
std::string Detail(const TaskRecord& r) {
  std::string detail = OutcomeDetail(r.result);
  if (r.result.stdout_stream.truncated || r.result.stderr_stream.truncated) {
    detail += ", output capped";
  }
  return detail;
}

/// The last `n` non-empty lines of a text.
std::vector<std::string> TailLines(const std::string& text, std::size_t n) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) lines.push_back(line);
  }
  if (lines.size() > n) lines.erase(lines.begin(), lines.end() - n);
  return lines;
}

}  // namespace

std::string FormatDuration(std::int64_t ms) {
  char buf[32];
  if (ms < 60000) {
    std::snprintf(buf, sizeof buf, "%.2fs", ms / 1000.0);
  } else {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(ms / 60000),
                  static_cast<long long>((ms / 1000) % 60));
  }
  return buf;
}

ConsoleListener::ConsoleListener(std::FILE* out, Options options) : out_(out), options_(options) {}

void ConsoleListener::ClearProgress() {
  if (progress_drawn_) {
    std::fputs("\r\033[K", out_);
    progress_drawn_ = false;
  }
}

void ConsoleListener::DrawProgress() {
  if (!options_.progress_line) return;
  auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
                     std::chrono::steady_clock::now() - start_).count();
  std::fprintf(out_, "\r\033[K[%d/%d done, %d running, %d failed, %s]", done_, info_.total_tasks,
               running_, failed_, FormatDuration(elapsed).c_str());
  std::fflush(out_);
  progress_drawn_ = true;
}

void ConsoleListener::OnRunStart(const RunInfo& info) {
  info_ = info;
  start_ = std::chrono::steady_clock::now();
  if (options_.summary) {
    std::fprintf(out_, "sandrun: run %s: %d task%s on %s, %d at a time\n", info.run_id.c_str(),
                 info.total_tasks, info.total_tasks == 1 ? "" : "s", info.backend.c_str(),
                 info.jobs);
  }
  DrawProgress();
}

void ConsoleListener::OnTaskStart(const Task& task, int attempt) {
  if (attempt == 1) ++running_;
  DrawProgress();
}

void ConsoleListener::OnTaskEnd(const TaskRecord& record) {
  if (record.attempts > 0) --running_;
  ++done_;
  if (!Passed(record.result) && record.result.outcome != Outcome::kCancelled) ++failed_;
  finished_.push_back(record);
  ClearProgress();
  if (options_.task_lines) {
    std::fprintf(out_, "%-7s %s (%s, %s)\n", Label(record).c_str(), record.task_id.c_str(),
                 Detail(record).c_str(), FormatDuration(record.result.durations.exec_ms).c_str());
  }
  DrawProgress();
}

void ConsoleListener::OnWarning(std::string_view message) {
  ClearProgress();
  std::fprintf(out_, "sandrun: warning: %.*s\n", static_cast<int>(message.size()), message.data());
  DrawProgress();
}

void ConsoleListener::OnRunEnd(const RunRecord& run) {
  ClearProgress();
  if (!options_.summary) return;
  std::sort(finished_.begin(), finished_.end(), [&](const TaskRecord& a, const TaskRecord& b) {
    auto pos = [&](const std::string& id) {
      return std::find(run.task_ids.begin(), run.task_ids.end(), id) - run.task_ids.begin();
    };
    return pos(a.task_id) < pos(b.task_id);
  });
  std::size_t width = 4;
  for (const auto& r : finished_) width = std::max(width, r.task_id.size());
  width = std::min<std::size_t>(width, 40);
  std::fprintf(out_, "\n%-*s  %-7s  %-22s  %9s  %s\n", static_cast<int>(width), "TASK", "RESULT",
               "DETAIL", "TIME", "SANDBOX");
  for (const auto& r : finished_) {
    std::fprintf(out_, "%-*s  %-7s  %-22s  %9s  %s\n", static_cast<int>(width), r.task_id.c_str(),
                 Label(r).c_str(), Detail(r).c_str(),
                 FormatDuration(r.result.durations.exec_ms).c_str(), r.sandbox_id.c_str());
  }
  // What went wrong, briefly, for each task that did not pass.
  for (const auto& r : finished_) {
    if (Passed(r.result) || r.result.outcome == Outcome::kCancelled) continue;
    std::fprintf(out_, "\n--- %s: %s\n", r.task_id.c_str(), OutcomeDetail(r.result).c_str());
    if (!r.result.error.empty()) std::fprintf(out_, "    %s\n", r.result.error.c_str());
    const std::string& text =
        r.result.stderr_stream.text.empty() ? r.result.stdout_stream.text : r.result.stderr_stream.text;
    for (const auto& line : TailLines(text, 5)) std::fprintf(out_, "    | %s\n", line.c_str());
  }
  std::fprintf(out_, "\n%d passed, %d failed", run.passed, run.failed + run.timed_out);
  if (run.timed_out > 0) std::fprintf(out_, " (%d timed out)", run.timed_out);
  if (run.infra_errors > 0) std::fprintf(out_, ", %d infrastructure errors", run.infra_errors);
  if (run.cancelled > 0) std::fprintf(out_, ", %d cancelled", run.cancelled);
  std::fprintf(out_, " in %s\n", FormatDuration(run.wall_ms).c_str());
  if (options_.show_fastest && !run.fastest_passing_task.empty()) {
    std::fprintf(out_, "fastest passing task: %s\n", run.fastest_passing_task.c_str());
  }
  std::fprintf(out_, "run %s (%s), records in %s\n", run.run_id.c_str(),
               std::string(RunStatusName(run.status)).c_str(), info_.archive.c_str());
  std::fprintf(out_, "see it again: sandrun results show %s\n", run.run_id.c_str());
  std::fflush(out_);
}

}  // namespace sandrun::cli
