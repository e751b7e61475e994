// GoogleTest's runner protocol, as sandrun speaks it to run test cases of a
// gtest binary in sandboxes. Shared by the in-process adapter (gtest.h) and
// the zero-code runner (`sandrun gtest`). Nothing here scrapes human output:
//  - discovery: `--gtest_list_tests` (run on the host only);
//  - selection: `--gtest_filter` (and the same syntax for sandrun's filter);
//  - results: `--gtest_output=json:<file>`, parsed defensively;
//  - early exits: TEST_PREMATURE_EXIT_FILE, created by gtest at start and
//    deleted at a normal end, so a leftover file means the binary quit early.
#ifndef SANDRUN_GTEST_PROTOCOL_H_
#define SANDRUN_GTEST_PROTOCOL_H_

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/config.h"
#include "sandrun/engine.h"
#include "sandrun/record.h"
#include "sandrun/status.h"

namespace sandrun::gtest {

/// True when `name` ("Suite.Test") is selected by `filter` in GoogleTest's
/// syntax: "pos1:pos2-neg1:neg2", '*' and '?' wildcards; an empty positive
/// part means "*".
bool FilterMatches(std::string_view filter, std::string_view name);

/// True for a test GoogleTest disables: its suite or test name starts with
/// "DISABLED_" or has "/DISABLED_" (a parameterised instance's prefix).
bool IsDisabledTest(std::string_view suite, std::string_view test);

/// One test of a binary's listing, in the binary's order.
struct ListedTest {
  std::string name;         ///< "Suite.Test".
  std::string file;         ///< Where TEST() is; empty when the listing had none.
  int line = 0;
  bool disabled = false;    ///< IsDisabledTest.
  std::string value_param;  ///< GetParam()'s printed value, if any.
  std::string type_param;   ///< TypeParam's name, if any.
};

/// The tests of a `--gtest_list_tests` text listing, in order, disabled ones
/// included (without file and line: the text has none).
std::vector<ListedTest> ParseTestListing(std::string_view listing);

/// The full names of ParseTestListing, without disabled tests.
std::vector<std::string> ParseTestList(std::string_view listing);

/// The tests of `--gtest_list_tests --gtest_output=json:` (GoogleTest >=
/// 1.10: file and line per test). kInvalidArgument when it is not JSON.
Result<std::vector<ListedTest>> ParseJsonTestListing(std::string_view json);

/// Lists `binary`'s tests on this host (never in a sandbox), disabled ones
/// included: `--gtest_list_tests --gtest_output=json:` where the binary
/// writes it, else the text listing. Cached under
/// `cache_dir/<sha256 of the binary>.listing.json`. GTEST_* variables of
/// this process do not reach the listing.
Result<std::vector<ListedTest>> ListTests(const std::filesystem::path& binary,
                                          const std::filesystem::path& cache_dir);

/// One assertion failure, at its source location (file empty when gtest had
/// none: "unknown file").
struct Failure {
  std::string file;
  int line = -1;
  std::string message;
};

/// One test's entry of gtest's JSON report.
struct CaseReport {
  std::string name;  ///< "Suite.Test".
  bool ran = true;   ///< status RUN (false: NOTRUN).
  bool skipped = false;
  std::vector<Failure> failures;
  std::string skip_message;
  double seconds = 0;
};

/// Parses `--gtest_output=json` text. Unknown fields are ignored; missing
/// ones take defaults; kInvalidArgument only when it is not JSON at all.
Result<std::vector<CaseReport>> ParseGtestJson(std::string_view json);

/// How one sandboxed test ended, from the task record and the files it left.
struct Verdict {
  enum class Kind {
    kPassed,
    kFailed,        ///< Assertions failed (failures hold them).
    kSkipped,
    kTimedOut,
    kCrashed,       ///< Killed by a signal (or OOM).
    kExitedEarly,   ///< Quit before gtest finished (premature-exit file left).
    kNoReport,      ///< Ended without a JSON report naming the test.
    kInfraError,    ///< sandrun or the backend failed, after retries.
    kCancelled,
  };
  Kind kind = Kind::kInfraError;
  /// Assertion failures with their locations, then (for every kind but
  /// kPassed/kSkipped) one failure without a location describing the end.
  std::vector<Failure> failures;
  std::string skip_message;
  std::string summary;  ///< One line: "timed out after 2 s (docker sandbox 3f2a...)".
  /// The test's own time from its JSON report (GoogleTest's "time"); -1
  /// when it left none (a crash, a timeout).
  long long report_ms = -1;
  bool ok() const { return kind == Kind::kPassed || kind == Kind::kSkipped; }
};
/// The test's own time: its report's, else its process's (`exec_ms`).
long long OwnMillis(const Verdict& verdict, const Durations& durations);
std::string_view VerdictKindName(Verdict::Kind kind);  // "passed", "timed out", ...

/// Where the report and the premature-exit marker go, relative to the
/// sandbox's working directory; the whole directory is downloaded.
inline constexpr char kOutputDir[] = "sandrun-gtest";
inline constexpr char kReportFile[] = "sandrun-gtest/report.json";
inline constexpr char kPrematureExitFile[] = "sandrun-gtest/premature-exit";
/// The test property an adapter-linked binary records a skip's message in
/// (gtest's JSON report before 1.13 has no skip message).
inline constexpr char kSkipMessageProperty[] = "sandrun_skip_message";
/// Set in the sandbox so an adapter-linked binary runs the real bodies.
inline constexpr char kInsideEnv[] = "SANDRUN_GTEST_INSIDE";

/// Files a task downloaded: relative path under its download dir -> bytes.
using DownloadedFiles = std::map<std::string, std::string>;

/// Judges `test` ("Suite.Test") from its task's record and downloads.
/// `timeout_ms` is the task's own timeout, for the message.
Verdict Judge(const std::string& test, const TaskRecord& record,
              const DownloadedFiles& files, long long timeout_ms);

/// What to run: one or more tests of a binary in one sandbox.
struct CaseTask {
  std::string task_id;
  std::string test_name;               ///< For the record ("Suite.Test").
  std::vector<std::string> tests;      ///< Full names, joined into --gtest_filter.
  std::string image;
  double cpu = 0;
  std::int64_t memory_mb = 0;
  std::string gpu;
  double timeout_s = 0;                ///< 0: config's (CaseTimeoutSeconds).
  std::map<std::string, std::string> env;
  std::vector<std::string> extra_args;  ///< Appended to the binary's argv.
  std::map<std::string, std::string> labels;  ///< Added to the sandbox and record.
  std::vector<FileUpload> uploads;
  bool network_set = false;
  NetworkMode network = NetworkMode::kNone;
};

/// The timeout a case gets: its own when set, else the config's `timeout`,
/// else its `test_timeout` (0: none).
double CaseTimeoutSeconds(const Config& config, const CaseTask& spec);

/// Builds the engine task: the binary uploaded as a portable executable,
/// argv `./<binary> --gtest_filter=... --gtest_output=json:... --gtest_color=no
/// EXTRA_ARGS...`, timeout CaseTimeoutSeconds,
/// env SANDRUN_GTEST_INSIDE=1 and TEST_PREMATURE_EXIT_FILE, and the report
/// directory as a download. `empty_dir` is an existing empty host directory
/// (uploaded so the report directory exists before gtest starts).
Task MakeCaseTask(const Config& config, const std::filesystem::path& binary,
                  const std::filesystem::path& empty_dir, const CaseTask& spec);

/// A valid task id from a test name ([A-Za-z0-9._-], at most 128 chars),
/// made unique by `used`.
std::string TaskIdFor(const std::string& test_name, std::map<std::string, int>* used);

/// Keeps what sandboxes downloaded, by task id, so results can be judged as
/// soon as a task ends without reading them back from the archive.
class DownloadTap {
 public:
  void Reset(const std::string& task_id);
  void Add(const std::string& task_id, const std::string& path, std::string bytes);
  DownloadedFiles Take(const std::string& task_id);

 private:
  std::mutex mu_;
  std::map<std::string, DownloadedFiles> files_;
};

/// A Backend decorator: forwards everything to `inner`, and copies every
/// file a sandbox downloads into `tap` under the sandbox's "task" label.
std::shared_ptr<Backend> TapBackend(std::shared_ptr<Backend> inner,
                                    std::shared_ptr<DownloadTap> tap);

/// The last `max_bytes` of a task's stderr then stdout, for crash messages.
std::string OutputTail(const TaskRecord& record, std::size_t max_bytes = 2000);

}  // namespace sandrun::gtest

#endif  // SANDRUN_GTEST_PROTOCOL_H_
