// JUnit XML, the report format CI systems (Jenkins, GitLab, GitHub Actions
// reporters) read: one <testsuite> per run, one <testcase> per task.
//
//   passed                              -> <testcase/>
//   failed / timed_out / oom            -> <failure message type>
//   infra_error / interrupted           -> <error message type>
//   cancelled                           -> <skipped message>
//
// Captured stdout/stderr go to <system-out>/<system-err>. Text is made valid
// XML 1.0: markup characters are escaped, and bytes XML cannot carry at all
// (control characters other than tab/newline/CR, malformed UTF-8, U+FFFE/F)
// become U+FFFD.
#ifndef SANDRUN_JUNIT_H_
#define SANDRUN_JUNIT_H_

#include <cstddef>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "sandrun/listener.h"
#include "sandrun/record.h"
#include "sandrun/status.h"

namespace sandrun {

/// The JUnit XML document for a run. Counts come from `tasks` (the testcases
/// present), not from `run`'s counters, so they always match the elements.
std::string JUnitXml(const RunRecord& run, const std::vector<TaskRecord>& tasks);

/// Collects task records during a run and writes the JUnit file at OnRunEnd
/// (atomically: temp file + rename). Used by `sandrun batch --junit FILE`.
/// To bound memory on big runs, each stream keeps at most
/// `max_stream_bytes` (its tail) for the report; the archive keeps the rest.
class JUnitFileListener : public RunListenerBase {
 public:
  explicit JUnitFileListener(std::filesystem::path path,
                             std::size_t max_stream_bytes = 64 * 1024);
  void OnTaskEnd(const TaskRecord& record) override;
  void OnRunEnd(const RunRecord& record) override;
  /// The outcome of writing the file: OK before OnRunEnd and after a
  /// successful write.
  Status status() const;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::size_t max_stream_bytes_;
  mutable std::mutex mu_;
  std::vector<TaskRecord> tasks_;
  Status status_;
};

}  // namespace sandrun

#endif  // SANDRUN_JUNIT_H_
