// The records of the result archive, schema "sandrun.result/v1" (one per
// execution) and "sandrun.run/v1" (one per run). docs/archive.md documents the
// JSON; this header is its C++ shape. Round-trips exactly through JSON.
#ifndef SANDRUN_RECORD_H_
#define SANDRUN_RECORD_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/result.h"
#include "sandrun/status.h"

namespace sandrun {

inline constexpr char kTaskRecordSchema[] = "sandrun.result/v1";
inline constexpr char kRunRecordSchema[] = "sandrun.run/v1";

/// One execution of one task (the last attempt; earlier ones are summarised).
struct TaskRecord {
  std::string run_id;
  std::string task_id;
  std::string test_name;     ///< "Suite.Test" for adapters; else the task id.
  std::string backend;
  std::string image;
  std::string sandbox_id;
  /// "sandbox" (a sandbox of its own) or "process" (a shared warm sandbox,
  /// engine.h Isolation); empty in records written before it existed.
  std::string isolation;
  std::vector<std::string> argv;
  ExecResult result;         ///< Outcome, exit code, streams, durations.
  int attempts = 1;          ///< 1 + infrastructure retries used.
  std::vector<std::string> attempt_errors;  ///< Why earlier attempts failed.
  std::string fallback_reason;  ///< Set when a fallback backend was used.
  std::string started_at;    ///< RFC 3339 UTC, millisecond precision.
  std::string finished_at;
  std::string host;
  std::map<std::string, std::string> labels;
};

/// How a whole run ended; run.json holds RunStatusName ("passed", ...).
enum class RunStatus {
  kPassed,     ///< Every task passed (with --race: one did).
  kFailed,     ///< Some task failed or timed out.
  kCancelled,  ///< The user stopped the run.
  kError,      ///< Only infrastructure errors kept it from passing.
  /// No summary exists (sandrun ended before writing one); shown by
  /// `sandrun results`, never written by the engine.
  kIncomplete,
};
std::string_view RunStatusName(RunStatus status);  // "passed", "failed", ...
/// Parses RunStatusName's output back; nullopt on anything else.
std::optional<RunStatus> RunStatusFromName(std::string_view name);

/// Summary of a whole run: written at its end (and on cancellation).
struct RunRecord {
  std::string run_id;
  RunStatus status = RunStatus::kIncomplete;
  std::string backend;
  std::string started_at;
  std::string finished_at;
  std::int64_t wall_ms = 0;
  std::string host;
  /// Who ran it (UserName()); empty in records written before it existed.
  std::string user;
  std::vector<std::string> command_line;  ///< How sandrun was invoked.
  int total = 0;
  int passed = 0;            ///< Exited 0, and not a GoogleTest skip.
  int skipped = 0;           ///< GoogleTest cases that skipped themselves (TestVerdictOf).
  int failed = 0;            ///< Ran and did not pass (exit != 0, signal).
  int timed_out = 0;
  int infra_errors = 0;
  int cancelled = 0;
  std::string fastest_passing_task;  ///< The --race winner; empty without --race.
  std::vector<std::string> task_ids;
  std::map<std::string, std::string> labels;
  /// A part of a group's run that ran tests of an earlier part again
  /// (`sandrun gtest --retry-failed`): each earlier task id with the counter
  /// it was counted in there (RunCounterOf). ReadRun's merge of the parts
  /// counts each test once, by its last attempt. Empty for everything else.
  std::map<std::string, std::string> superseded;
};

/// The RunRecord counter a task counts in: "passed", "skipped", "failed",
/// "timed_out", "infra_errors" or "cancelled".
std::string_view RunCounterOf(const TaskRecord& record);
/// That counter of `run`; nullptr for any other name.
int* RunCounter(RunRecord& run, std::string_view counter);

std::string ToJson(const TaskRecord& record, int indent = 2);
std::string ToJson(const RunRecord& record, int indent = 2);
/// Parses a record; kInvalidArgument names what is wrong.
Result<TaskRecord> TaskRecordFromJson(const std::string& json);
Result<RunRecord> RunRecordFromJson(const std::string& json);

/// "passed" / "failed" / "timed_out" / "infra_error" / "cancelled" / "oom" /
/// "interrupted".
std::string VerdictOf(const ExecResult& result);

/// The exit code as `results show` and the report show it: the command's
/// own ("4"), "signal 9", or the mapped code of the outcome ("124").
std::string ExitText(const ExecResult& result);

/// A test's verdict: VerdictOf, except "skipped" for a GoogleTest case that
/// skipped itself (GTEST_SKIP). The engine sees only "exited 0"; the skip is
/// read from GoogleTest's own output in the record's stdout: a line
/// "[  SKIPPED ] <test_name> (" (and no "[       OK ] <test_name>").
std::string TestVerdictOf(const TaskRecord& record);
/// The reason a skipped case gave (the lines GoogleTest prints between
/// "FILE:LINE: Skipped" and "[  SKIPPED ]"), "" when none or not skipped.
std::string SkipMessageOf(const TaskRecord& record);
/// What GoogleTest printed for `test` in `stdout_text` between its
/// "[ RUN      ] <test>" line and its result line ("[       OK ]",
/// "[  FAILED  ]" or "[  SKIPPED ] <test>", then " (", ", where " or the
/// line's end): the test's own output and its failure messages, as a local
/// run shows them. To the end of the text when the case never ended (a
/// crash, a timeout); "" when it never started.
std::string GtestCaseOutput(std::string_view stdout_text, std::string_view test);

/// What to show of "K=V" when it is a secret: the key and an ellipsis, "K=…".
/// A --secret value without '=' becomes "…"; `-e K` (no value) stays.
inline constexpr char kRedacted[] = "\xE2\x80\xA6";  // U+2026 HORIZONTAL ELLIPSIS

/// `argv` with the values of environment and secret flags replaced by
/// kRedacted: `-e K=V`, `-eK=V`, `--env K=V`, `--env=K=V` become `K=…`, and
/// `--secret X` / `--secret=X` likewise (keeping the key when X is K=V).
/// Everything else is kept. Every place that records an argv (run.json's
/// command_line, a task record's argv, JUnit properties) goes through this,
/// so secrets given on a command line never reach the archive or a report.
std::vector<std::string> RedactArgv(const std::vector<std::string>& argv);

}  // namespace sandrun

#endif  // SANDRUN_RECORD_H_
