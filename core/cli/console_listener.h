// What a person sees while a run goes: ConsoleListener prints a line per
// finished task, a live ProgressLine when stderr is a terminal, and a summary
// table with the archive location at the end. Colour: Palette, on a terminal
// unless NO_COLOR is set (https://no-color.org).
#ifndef SANDRUN_CLI_CONSOLE_LISTENER_H_
#define SANDRUN_CLI_CONSOLE_LISTENER_H_

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sandrun/listener.h"

namespace sandrun::cli {

/// ANSI colours for sandrun's own lines, or none. Enabled() is true when
/// `stream` is a terminal, TERM is not "dumb" and NO_COLOR is unset or empty.
class Palette {
 public:
  static Palette For(std::FILE* stream);
  static Palette None() { return Palette(false); }
  explicit Palette(bool enabled) : enabled_(enabled) {}
  bool enabled() const { return enabled_; }
  std::string Red(const std::string& text) const { return Wrap("31", text); }
  std::string Green(const std::string& text) const { return Wrap("32", text); }
  std::string Yellow(const std::string& text) const { return Wrap("33", text); }
  std::string Bold(const std::string& text) const { return Wrap("1", text); }
  std::string Dim(const std::string& text) const { return Wrap("2", text); }

 private:
  std::string Wrap(const char* code, const std::string& text) const {
    return enabled_ ? "\033[" + std::string(code) + "m" + text + "\033[0m" : text;
  }
  bool enabled_;
};

/// A status line redrawn in place on a terminal: done/total, running,
/// failed, the elapsed clock and the names of what runs (longest-running
/// first, cut to the terminal's width). A ticker thread redraws it every
/// second, so the clock never stands still while a long task runs; every
/// event redraws it too. Disabled: every call but Print is a no-op.
class ProgressLine {
 public:
  ProgressLine(std::FILE* out, bool enabled);
  ~ProgressLine();  ///< Stop().
  ProgressLine(const ProgressLine&) = delete;
  ProgressLine& operator=(const ProgressLine&) = delete;

  /// Starts the clock and the ticker.
  void Start(int total);
  void TaskStarted(const std::string& name);
  void TaskEnded(const std::string& name, bool failed);
  /// Runs `print` (which writes whole lines to `out`) with the line cleared,
  /// then draws it again.
  void Print(const std::function<void()>& print);
  /// Stops the ticker and clears the line.
  void Stop();

 private:
  void DrawLocked();
  void ClearLocked();
  std::FILE* out_;
  bool enabled_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::thread ticker_;
  bool stopping_ = false;
  bool drawn_ = false;
  int total_ = 0, done_ = 0, failed_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::map<std::string, std::chrono::steady_clock::time_point> running_;
};

class ConsoleListener : public RunListener {
 public:
  struct Options {
    bool progress_line = false;  ///< Redraw a status line (terminal only).
    bool task_lines = true;      ///< One line per finished task.
    bool summary = true;         ///< The table at the end.
    bool show_fastest = false;   ///< Name the fastest passing task (--race).
    bool colour = false;         ///< Colour the verdicts (Palette::For(out)).
  };
  ConsoleListener(std::FILE* out, Options options);

  void OnRunStart(const RunInfo& info) override;
  void OnTaskStart(const Task& task, int attempt) override;
  void OnTaskEnd(const TaskRecord& record) override;
  void OnWarning(std::string_view message) override;
  void OnRunEnd(const RunRecord& record) override;

 private:
  std::FILE* out_;
  Options options_;
  Palette palette_;
  ProgressLine progress_;
  RunInfo info_;
  std::vector<TaskRecord> finished_;
};

/// "1.23s", "2m03s".
std::string FormatDuration(std::int64_t ms);

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_CONSOLE_LISTENER_H_
