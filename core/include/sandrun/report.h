// The HTML report of a run (`sandrun results report`, `--report FILE.html`):
// one self-contained page — inline CSS, inline script, the data as embedded
// JSON, a Content-Security-Policy that forbids every network request — so it
// opens the same from disk, a CI artifact or an e-mail attachment.
//
// The page shows the runs' facts, a sortable and filterable task table with
// failure messages (file:line) and output tails, a timeline (one lane per
// sandbox or worker slot, each task a bar split into its phases, coloured by
// verdict) and a histogram of task durations. docs/report.md describes it.
//
// To stay small (a few hundred KB for 1,000 tasks), a task keeps only the
// tail of each output stream: kReportTailBytes when it did not pass,
// kReportPassedTailBytes when it did; failure messages are taken from the
// whole recorded text first.
#ifndef SANDRUN_REPORT_H_
#define SANDRUN_REPORT_H_

#include <cstddef>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "sandrun/listener.h"
#include "sandrun/record.h"
#include "sandrun/status.h"

namespace sandrun {

inline constexpr std::size_t kReportTailBytes = 4 * 1024;
inline constexpr std::size_t kReportPassedTailBytes = 512;

/// Collects runs and tasks, then renders the page. Tasks keep only what the
/// page shows, so a builder stays small however big the records were.
/// Several runs may go into one page (the rounds of `sandrun gtest
/// --retry-failed`, the backend groups of marked tests); a test name seen in
/// several runs is shown as retried, and as flaky when its last run passed.
class ReportBuilder {
 public:
  ReportBuilder();
  ~ReportBuilder();
  ReportBuilder(ReportBuilder&&) noexcept;
  ReportBuilder& operator=(ReportBuilder&&) noexcept;

  void AddRun(const RunRecord& run);
  void AddTask(const TaskRecord& task);
  /// The whole page. Valid with no run (an incomplete run) or no task.
  std::string Html() const;

 private:
  struct Data;  ///< Compact JSON of runs and tasks (report.cc).
  std::unique_ptr<Data> data_;
};

/// Collects task records during a run and writes the page at every
/// OnRunEnd (atomically: temp file + rename), so a listener shared by several
/// runs leaves one page with all of them. Used by `--report FILE.html`.
class ReportFileListener : public RunListenerBase {
 public:
  explicit ReportFileListener(std::filesystem::path path);
  void OnTaskEnd(const TaskRecord& record) override;
  void OnRunEnd(const RunRecord& record) override;
  /// OK before the first OnRunEnd and after a successful write.
  Status status() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  mutable std::mutex mu_;
  ReportBuilder builder_;
  Status status_;
};

}  // namespace sandrun

#endif  // SANDRUN_REPORT_H_
