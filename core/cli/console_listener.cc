#include "console_listener.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "sandrun/engine.h"
#include "sandrun/util.h"

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

/// The label in its colour: green passes, red failures, yellow the rest.
std::string Coloured(const Palette& palette, const std::string& label, int width) {
  std::string padded = label + std::string(std::max<int>(0, width - static_cast<int>(label.size())), ' ');
  if (label == "PASS") return palette.Green(padded);
  if (label == "FAIL" || label == "TIMEOUT" || label == "OOM") return palette.Red(padded);
  return palette.Yellow(padded);
}

int TerminalWidth(std::FILE* out) {
  struct winsize size {};
  if (ioctl(fileno(out), TIOCGWINSZ, &size) == 0 && size.ws_col > 20) return size.ws_col;
  return 80;
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

Palette Palette::For(std::FILE* stream) {
  const char* no_colour = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  return Palette(isatty(fileno(stream)) == 1 && (no_colour == nullptr || *no_colour == '\0') &&
                 !(term != nullptr && std::strcmp(term, "dumb") == 0));
}

ProgressLine::ProgressLine(std::FILE* out, bool enabled) : out_(out), enabled_(enabled) {}

ProgressLine::~ProgressLine() { Stop(); }

void ProgressLine::Start(int total) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  total_ = total;
  start_ = std::chrono::steady_clock::now();
  stopping_ = false;
  DrawLocked();
  if (ticker_.joinable()) return;
  ticker_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopping_) {
      wake_.wait_for(lock, std::chrono::seconds(1));
      if (!stopping_) DrawLocked();
    }
  });
}

void ProgressLine::TaskStarted(const std::string& name) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  running_.try_emplace(name, std::chrono::steady_clock::now());
  DrawLocked();
}

void ProgressLine::TaskEnded(const std::string& name, bool failed) {
  if (!enabled_) return;
  std::lock_guard<std::mutex> lock(mu_);
  running_.erase(name);
  ++done_;
  if (failed) ++failed_;
}

void ProgressLine::Print(const std::function<void()>& print) {
  std::lock_guard<std::mutex> lock(mu_);
  ClearLocked();
  print();
  if (enabled_ && !stopping_ && total_ > 0) DrawLocked();
  std::fflush(out_);
}

void ProgressLine::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    ClearLocked();
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

void ProgressLine::ClearLocked() {
  if (!drawn_) return;
  std::fputs("\r\033[K", out_);
  drawn_ = false;
}

void ProgressLine::DrawLocked() {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  std::string line = "[" + std::to_string(done_) + "/" + std::to_string(total_) + " done, " +
                     std::to_string(running_.size()) + " running, " + std::to_string(failed_) +
                     " failed, " + FormatDuration(MillisBetween(start_, now)) + "]";
  // Longest-running first: the one holding the run up is named.
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::string>> by_start;
  for (const auto& [name, since] : running_) by_start.emplace_back(since, name);
  std::sort(by_start.begin(), by_start.end());
  std::size_t width = static_cast<std::size_t>(TerminalWidth(out_)) - 1;
  const char* sep = " running: ";
  for (const auto& [since, name] : by_start) {
    std::string item = sep + name + " (" + FormatDuration(MillisBetween(since, now)) + ")";
    if (line.size() + item.size() > width) {
      if (line.size() + 3 <= width) line += " …";
      break;
    }
    line += item;
    sep = ", ";
  }
  if (line.size() > width + 2) line.resize(width);  // "…" is 3 bytes, 1 column
  std::fprintf(out_, "\r\033[K%s", line.c_str());
  std::fflush(out_);
  drawn_ = true;
}

ConsoleListener::ConsoleListener(std::FILE* out, Options options)
    : out_(out),
      options_(options),
      palette_(options.colour),
      progress_(out, options.progress_line) {}

void ConsoleListener::OnRunStart(const RunInfo& info) {
  info_ = info;
  if (options_.summary) {
    progress_.Print([&] {
      std::fprintf(out_, "sandrun: run %s: %d task%s on %s, %d at a time\n", info.run_id.c_str(),
                   info.total_tasks, info.total_tasks == 1 ? "" : "s", info.backend.c_str(),
                   info.jobs);
    });
  }
  progress_.Start(info.total_tasks);
}

void ConsoleListener::OnTaskStart(const Task& task, int attempt) {
  if (attempt == 1) progress_.TaskStarted(task.id);
}

void ConsoleListener::OnTaskEnd(const TaskRecord& record) {
  progress_.TaskEnded(record.task_id,
                      !Passed(record.result) && record.result.outcome != Outcome::kCancelled);
  finished_.push_back(record);
  if (!options_.task_lines) return;
  progress_.Print([&] {
    std::fprintf(out_, "%s %s (%s, %s)\n", Coloured(palette_, Label(record), 7).c_str(),
                 record.task_id.c_str(), Detail(record).c_str(),
                 FormatDuration(record.result.durations.exec_ms).c_str());
  });
}

void ConsoleListener::OnWarning(std::string_view message) {
  progress_.Print([&] {
    std::fprintf(out_, "%s %.*s\n", palette_.Yellow("sandrun: warning:").c_str(),
                 static_cast<int>(message.size()), message.data());
  });
}

void ConsoleListener::OnRunEnd(const RunRecord& run) {
  progress_.Stop();
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
    std::fprintf(out_, "%-*s  %s  %-22s  %9s  %s\n", static_cast<int>(width), r.task_id.c_str(),
                 Coloured(palette_, Label(r), 7).c_str(), Detail(r).c_str(),
                 FormatDuration(r.result.durations.exec_ms).c_str(), r.sandbox_id.c_str());
  }
  // What went wrong, briefly, for each task that did not pass.
  for (const auto& r : finished_) {
    if (Passed(r.result) || r.result.outcome == Outcome::kCancelled) continue;
    std::fprintf(out_, "\n%s %s: %s\n", palette_.Red("---").c_str(), palette_.Bold(r.task_id).c_str(),
                 OutcomeDetail(r.result).c_str());
    if (!r.result.error.empty()) std::fprintf(out_, "    %s\n", r.result.error.c_str());
    const std::string& text =
        r.result.stderr_stream.text.empty() ? r.result.stdout_stream.text : r.result.stderr_stream.text;
    for (const auto& line : TailLines(text, 5)) std::fprintf(out_, "    | %s\n", line.c_str());
  }
  std::fprintf(out_, "\n%d passed, ", run.passed);
  if (run.skipped > 0) std::fprintf(out_, "%d skipped, ", run.skipped);
  std::fprintf(out_, "%d failed", run.failed + run.timed_out);
  if (run.timed_out > 0) std::fprintf(out_, " (%d timed out)", run.timed_out);
  if (run.infra_errors > 0) std::fprintf(out_, ", %d infrastructure errors", run.infra_errors);
  if (run.cancelled > 0) std::fprintf(out_, ", %d cancelled", run.cancelled);
  std::fprintf(out_, " in %s\n", FormatDuration(run.wall_ms).c_str());
  if (options_.show_fastest && !run.fastest_passing_task.empty()) {
    std::fprintf(out_, "fastest passing task: %s\n", run.fastest_passing_task.c_str());
  }
  std::fprintf(out_, "run %s (%s), records in %s\n", run.run_id.c_str(),
               std::string(RunStatusName(run.status)).c_str(), info_.archive.c_str());
  // With the backend named: its archive is where the record is, whatever
  // the default backend of the shell that runs the line.
  std::fprintf(out_, "see it again: sandrun results show %s --backend %s\n", run.run_id.c_str(),
               info_.backend.c_str());
  std::fflush(out_);
}

}  // namespace sandrun::cli
