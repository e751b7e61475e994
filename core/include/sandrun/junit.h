// JUnit XML, the report format CI systems read (Jenkins, GitLab's test
// reports, GitHub reporters such as dorny/test-reporter and
// mikepenz/action-junit-report). The one writer of it in sandrun: `batch
// --junit`, `gtest --junit`, `results export` and the adapters all build a
// JUnitReport and call JUnitXml / WriteJUnitFile.
//
// Shape (the ant/Surefire format those readers share; docs/archive.md):
//   <testsuites name tests failures errors skipped time timestamp>
//     <testsuite name tests failures errors skipped time timestamp hostname>
//       <properties>  the run: run_id, backend, labels ...
//       <testcase classname name file line time>
//         <properties> the sandbox facts of the case (task_id, sandbox_id ...)
//         <failure message type> | <error message type> | <skipped message>reason</skipped>
//         <flakyFailure message type> ... (passed after these; Surefire's)
//         <system-out> <system-err>   (a passing case's: the last kPassedStreamBytes)
// What the readers use (checked against their parsers: GitLab's
// lib/gitlab/ci/parsers/test/junit.rb, mikepenz/action-junit-report's
// src/testParser.ts, dorny/test-reporter's java-junit parser): a failed
// case's `file`/`line` are those of its first failure, so an annotation lands
// on the failing assertion (a passing case keeps the test's own); `file` is
// relative to the checkout; `type` has no spaces; a skip's reason is its
// body too (GitLab drops attribute-only elements' text).
// One <testsuite> per classname: "Suite.Case" is classname "Suite", name
// "Case" (GoogleTest's own XML does the same); a name without a dot goes to
// the report's default class ("sandrun" for batch tasks).
//
// Text is made valid XML 1.0: markup characters are escaped, and bytes XML
// cannot carry at all (control characters other than tab/newline/CR,
// malformed UTF-8, U+FFFE/F) become U+FFFD.
#ifndef SANDRUN_JUNIT_H_
#define SANDRUN_JUNIT_H_

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sandrun/listener.h"
#include "sandrun/record.h"
#include "sandrun/status.h"

namespace sandrun {

using JUnitProperties = std::vector<std::pair<std::string, std::string>>;

/// A failed attempt of a case that passed in the end (Surefire's
/// <flakyFailure>), or the final failure/error/skip of a case.
struct JUnitProblem {
  std::string message;  ///< One line, the element's `message` attribute.
  std::string type;     ///< `type` attribute ("failed", "timed_out", ...);
                        ///< written with '_' for spaces (GitLab parses it).
  std::string text;     ///< The element's body: file:line and details.
  std::string file;     ///< Where it was reported (the first failure); may be empty.
  int line = 0;
};

/// A passing case's <system-out>/<system-err> keep at most this (the tail):
/// nobody reads a passing case's log in a CI report, and GitLab refuses
/// reports over 30 MB.
inline constexpr std::size_t kPassedStreamBytes = 8 * 1024;

struct JUnitCase {
  enum class Kind { kPassed, kFailed, kError, kSkipped };
  std::string classname;    ///< The suite ("Suite" of "Suite.Case").
  std::string name;         ///< "Case".
  std::string file;         ///< Source file; empty when unknown.
  int line = 0;             ///< 0 when unknown.
  std::int64_t time_ms = 0; ///< The case's own time.
  Kind kind = Kind::kPassed;
  JUnitProblem problem;     ///< For every kind but kPassed (skip: message only).
  /// Non-empty: it passed after failing these attempts. Written as
  /// <flakyFailure> elements plus the property flaky=true.
  std::vector<JUnitProblem> flaky_failures;
  JUnitProperties properties;
  std::string system_out;
  std::string system_err;
};

struct JUnitReport {
  std::string name = "sandrun";  ///< <testsuites name>.
  std::string timestamp;         ///< RFC 3339 UTC; written without zone/fraction.
  std::string hostname;
  std::int64_t time_ms = -1;     ///< Wall time; -1: the sum of the cases.
  JUnitProperties properties;    ///< Repeated on every <testsuite>.
  std::vector<JUnitCase> cases;  ///< Grouped into suites by classname, in order.
  /// Files under this directory are written relative to it, as GitHub's and
  /// GitLab's readers link them into the repository. Unset: the CI's
  /// checkout ($GITHUB_WORKSPACE, else $CI_PROJECT_DIR), else none.
  std::optional<std::filesystem::path> source_root;
};

/// Splits "Suite.Case" at the first dot into {"Suite", "Case"} (also
/// "Nums/ParamT.IsSmall/1", "TypedT/0.Works"); a name without one is
/// {default_class, name}.
std::pair<std::string, std::string> JUnitClassAndName(const std::string& test_name,
                                                      const std::string& default_class);

/// The XML document.
std::string JUnitXml(const JUnitReport& report);

/// Writes JUnitXml atomically (temp file + rename); creates no directory.
Status WriteJUnitFile(const std::filesystem::path& path, const JUnitReport& report);

/// A case from an archive record: verdict by TestVerdictOf (GTEST_SKIP is a
/// skip, with its reason), the sandbox facts as properties, file/line from
/// the record's labels kTestFileLabel/kTestLineLabel or else from the first
/// "FILE:LINE: Failure" GoogleTest printed.
JUnitCase JUnitCaseFromRecord(const TaskRecord& task);

/// Labels an adapter may put on a task's record to name the test's source.
inline constexpr char kTestFileLabel[] = "test.file";
inline constexpr char kTestLineLabel[] = "test.line";
/// Label of a record that re-ran a test that did not pass ("2", "3" ...;
/// `sandrun gtest --retry-failed`). JUnitReportFromRun makes one case of a
/// test's rounds: the last round's verdict, earlier failures as
/// <flakyFailure> when it passed.
inline constexpr char kRetryRoundLabel[] = "retry_round";

/// The report of an archived run: its cases, and the run as properties.
/// Counts come from the cases, never from `run`'s counters.
JUnitReport JUnitReportFromRun(const RunRecord& run, const std::vector<TaskRecord>& tasks);

/// JUnitXml(JUnitReportFromRun(run, tasks)).
std::string JUnitXml(const RunRecord& run, const std::vector<TaskRecord>& tasks);

/// Collects task records during a run and writes the JUnit file at OnRunEnd.
/// Used by `sandrun batch --junit FILE`. To bound memory on big runs, each
/// stream keeps at most `max_stream_bytes` (its tail) for the report; the
/// archive keeps the rest.
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
