// ExecResult: what happened to one command. A failing test is an outcome here,
// not a Status. The exit-code mapping is the one `timeout(1)` and `docker run`
// use, so sandrun composes with shell scripts and CTest.
#ifndef SANDRUN_RESULT_H_
#define SANDRUN_RESULT_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sandrun {

enum class Outcome {
  kExited,        ///< Ran to completion; see exit_code.
  kSignaled,      ///< Killed by a signal it did not ask for; see signal.
  kTimedOut,      ///< Exceeded its timeout; the whole process tree was killed.
  kOomKilled,     ///< Killed for exceeding its memory limit.
  kCancelled,     ///< The user interrupted the run (Ctrl-C, --race winner).
  kInfraError,    ///< sandrun or the backend failed; the test never ran to an end.
  /// sandrun itself ended (killed, crashed) while the task ran; the record
  /// was recovered from the outbox afterwards (`sandrun results sync`).
  kInterrupted,
};
std::string_view OutcomeName(Outcome outcome);  // "exited", "timed_out", ...
/// Parses OutcomeName's output back; nullopt on anything else.
std::optional<Outcome> OutcomeFromName(std::string_view name);

/// Exit codes of `sandrun exec`: the command's own, or one of these.
inline constexpr int kExitTimedOut = 124;
inline constexpr int kExitSandrunError = 125;
inline constexpr int kExitNotExecutable = 126;
inline constexpr int kExitNotFound = 127;
inline constexpr int kExitSignalBase = 128;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;

/// One output stream as recorded: the kept part plus true byte counts.
struct CapturedStream {
  /// At most the cap: the head and the tail of the stream, joined by a line
  /// "[... N bytes omitted ...]" when anything was dropped in between.
  std::string text;
  std::uint64_t total_bytes = 0;  ///< Everything the command wrote.
  bool truncated = false;         ///< total_bytes > what `text` holds.
  std::string spill_path;         ///< Full stream on disk; empty if not spilled.
};

/// Wall-clock time per phase, in milliseconds.
struct Durations {
  std::int64_t queue_ms = 0;     ///< Waiting for a concurrency slot.
  std::int64_t create_ms = 0;    ///< Creating the sandbox.
  std::int64_t upload_ms = 0;
  std::int64_t exec_ms = 0;
  std::int64_t download_ms = 0;
  std::int64_t total_ms = 0;
  /// The task's own time: everything but the wait for a slot (what a
  /// report's "time" or "duration" of a test is).
  std::int64_t own_ms() const { return total_ms > queue_ms ? total_ms - queue_ms : 0; }
};

struct ExecResult {
  Outcome outcome = Outcome::kInfraError;
  int exit_code = 0;        ///< For kExited; otherwise the mapped code.
  int signal = 0;           ///< For kSignaled (and the kill signal on timeout).
  CapturedStream stdout_stream;
  CapturedStream stderr_stream;
  Durations durations;
  std::string sandbox_id;
  std::string error;        ///< For kInfraError: what failed, for a human.
  /// Paths on the host of downloaded outputs, relative to the download dir.
  std::vector<std::string> artifacts;
  /// Whether network=none was really enforced. A backend that could not
  /// isolate the network says false here instead of pretending.
  bool network_isolated = true;
  /// Human notes from the backend ("memory limit not enforced locally").
  std::vector<std::string> notes;
  /// For kTimedOut, what ended it: kEndedByTimeout, kEndedByLifetime or
  /// kEndedByHostDeadline. Backends set the first two; the engine sets the
  /// third, and kEndedByTimeout for a backend that timed out without saying.
  /// For kCancelled, kEndedByCancel when the backend ended just this command
  /// (ExecRequest::stop) and its sandbox can run the next one.
  std::string ended_by;
};

/// Values of ExecResult::ended_by (and of "ended_by" in records).
inline constexpr std::string_view kEndedByTimeout = "timeout";        ///< The backend's timeout.
inline constexpr std::string_view kEndedByLifetime = "lifetime";      ///< The sandbox's lifetime.
inline constexpr std::string_view kEndedByHostDeadline = "host_deadline";  ///< sandrun's fallback.
inline constexpr std::string_view kEndedByCancel = "cancel";  ///< ExecRequest::stop, the command alone.

/// The exit code `sandrun exec` returns for this result: the command's code,
/// 124 timed out, 125 infrastructure, 128+N signal, 137 OOM, 130 cancelled.
int ExitCodeOf(const ExecResult& result);

/// True when the command ran and exited 0.
inline bool Passed(const ExecResult& r) {
  return r.outcome == Outcome::kExited && r.exit_code == 0;
}

}  // namespace sandrun

#endif  // SANDRUN_RESULT_H_
