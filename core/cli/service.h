// `sandrun service`: a process that keeps warm sandboxes for the short-lived
// `sandrun exec` processes of one ctest invocation (or CI job) and runs their
// tasks, over a unix socket. Without it each CTest test is a sandrun of its
// own and pays a whole sandbox; with it, tests whose sandboxes are the same
// share warm ones (isolation `process`), and a one-shot exec skips loading
// and checking its backend. docs/ctest.md, "The sandrun service".
//
// The wire: frames of a 4-byte big-endian length N, then N bytes: a type
// byte and the payload.
//   exec -> service   kRequest {version, task (task_json.h), options,
//                     fingerprint}, then kStdin with the task's stdin when it
//                     has one. Closing the connection cancels the task.
//   service -> exec   kStdout / kStderr chunks as the command writes them,
//                     kWarning lines, kAlive every kServiceAliveInterval
//                     while the task is in hand, then one of: kDone {record, run_status},
//                     kNotServed {message} (the exec runs the task itself),
//                     kFailed {code, message} (the run could not start).
//   start -> service  kAttach {pid} when a service already runs there: one
//                     more holder (a second ctest on the same build tree);
//                     answered kAttached.
//   stop -> service   kStop {pid}: that holder leaves. While other holders
//                     remain (and live) the service answers kStopped at once
//                     and serves on; the last one (or a pid that holds
//                     nothing, as `sandrun service stop` by hand) ends its
//                     sandboxes, is answered kStopped, and the service exits.
//                     A holder that dies (kill -9) leaves too.
#ifndef SANDRUN_CLI_SERVICE_H_
#define SANDRUN_CLI_SERVICE_H_

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "sandrun/config.h"
#include "sandrun/engine.h"
#include "sandrun/record.h"

namespace sandrun::cli {

inline constexpr int kServiceProtocolVersion = 1;
/// The service says it is alive this often while it holds a task; an exec
/// that hears nothing for kServiceSilenceLimit gives up on it (a stopped or
/// wedged service is an infrastructure failure, not a hang).
inline constexpr std::chrono::seconds kServiceAliveInterval{5};
inline constexpr std::chrono::seconds kServiceSilenceLimit{30};

enum class ServiceFrame : char {
  kRequest = 'Q',
  kStdin = 'I',
  kStop = 'S',
  kStdout = 'O',
  kStderr = 'E',
  kWarning = 'W',
  kDone = 'D',
  kNotServed = 'N',
  kFailed = 'F',
  kStopped = 'K',
  kAlive = 'A',
  kAttach = 'T',
  kAttached = 'H',
};

/// Writes one whole frame; false when the peer is gone.
bool WriteServiceFrame(int fd, ServiceFrame type, std::string_view payload);
/// Reads one whole frame; nullopt at the end of the stream or on an error.
std::optional<std::pair<ServiceFrame, std::string>> ReadServiceFrame(int fd);

/// What must be equal for a service to run an exec's task as the exec
/// would: the backends asked for, their sections, where plugins, the
/// archive and the outbox are.
std::string ServiceFingerprint(const Config& config);

/// A connected unix stream socket at `path`, or -1 (errno set).
int ConnectServiceSocket(const std::filesystem::path& path);

/// Whether the other end of unix socket `fd` runs as this process's user
/// (SO_PEERCRED); `peer_uid` gets its uid (-1 when it cannot be read). Both
/// ends check: a service serves, and an exec believes, only its own user.
bool PeerIsThisUser(int fd, long* peer_uid);

/// What the exec side sends besides the task.
struct ServiceRequestOptions {
  std::string run_group;
  int run_group_owner_pid = 0;
  int retries = 1;
  std::vector<std::string> command_line;
  std::map<std::string, std::string> labels;
};

/// How a task sent to a service ended.
struct ServedExec {
  enum class Kind { kDone, kNotServed, kFailed } kind = Kind::kNotServed;
  TaskRecord record;       ///< kDone.
  std::string message;     ///< kNotServed: why; kFailed: the run's error.
  int status_code = 0;     ///< kFailed: the StatusCode of the error.
};

/// Sends `task` to the service at `socket` and waits for it, writing its
/// output to stdout/stderr as it comes and printing warnings. Ctrl-C
/// (sandrun/interrupts.h) cancels it there. kNotServed, with why, when no
/// service answers or it will not run this task (another configuration).
ServedExec ExecThroughService(const std::filesystem::path& socket, const Task& task,
                              const ServiceRequestOptions& options, const Config& config,
                              bool live_output);

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_SERVICE_H_
