// ConsoleListener: what a person sees while a batch runs — a line per finished
// task, a live progress line when stderr is a terminal, and a summary table
// with the archive location at the end.
#ifndef SANDRUN_CLI_CONSOLE_LISTENER_H_
#define SANDRUN_CLI_CONSOLE_LISTENER_H_

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "sandrun/listener.h"

namespace sandrun::cli {

class ConsoleListener : public RunListener {
 public:
  struct Options {
    bool progress_line = false;  ///< Redraw a status line (terminal only).
    bool task_lines = true;      ///< One line per finished task.
    bool summary = true;         ///< The table at the end.
    bool show_fastest = false;   ///< Name the fastest passing task (--race).
  };
  ConsoleListener(std::FILE* out, Options options);

  void OnRunStart(const RunInfo& info) override;
  void OnTaskStart(const Task& task, int attempt) override;
  void OnTaskEnd(const TaskRecord& record) override;
  void OnWarning(std::string_view message) override;
  void OnRunEnd(const RunRecord& record) override;

 private:
  void ClearProgress();
  void DrawProgress();
  std::FILE* out_;
  Options options_;
  RunInfo info_;
  std::chrono::steady_clock::time_point start_;
  int running_ = 0, done_ = 0, failed_ = 0;
  bool progress_drawn_ = false;
  std::vector<TaskRecord> finished_;
};

/// "1.23s", "2m03s".
std::string FormatDuration(std::int64_t ms);

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_CONSOLE_LISTENER_H_
