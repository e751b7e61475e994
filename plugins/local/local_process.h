// Internal to the local backend: running one command as a process group and
// the bookkeeping Terminate() needs. No Boost types here, so only
// local_process.cc pays for Boost.Process and Asio.
#ifndef SANDRUN_PLUGINS_LOCAL_LOCAL_PROCESS_H_
#define SANDRUN_PLUGINS_LOCAL_LOCAL_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "local_backend.h"
#include "sandrun/output_collector.h"
#include "sandrun/result.h"
#include "sandrun/status.h"

namespace sandrun::local {

/// SIGTERM first, then SIGKILL this much later, when a command times out.
inline constexpr std::chrono::seconds kTerminateGrace{2};
/// After the command's process group is gone, how long to keep reading pipes
/// still held open by a process that left the group (setsid) before giving up.
inline constexpr std::chrono::seconds kDrainAfterExit{2};
/// Size of each read from a command's stdout/stderr pipe.
inline constexpr std::size_t kReadChunkBytes = 64 * 1024;

/// /proc/<pid>/stat field 22 (start time in clock ticks since boot), or 0
/// when the process does not exist. Together with the pid it names one
/// process for good: a reused pid has another start time.
std::uint64_t ProcessStartTime(pid_t pid);

/// Forks children that try the namespaces RunProcess uses: network plus
/// mount (with /run and /tmp covered), and PID.
LocalIsolation ProbeIsolation();

/// A running process group, as recorded in the manifest.
struct GroupRecord {
  pid_t pgid = 0;
  std::uint64_t start_time = 0;
};

/// The process groups a sandbox is running, shared between the thread in
/// Exec() and whoever calls Terminate(). Thread-safe.
class GroupTracker {
 public:
  /// `changed` runs (outside the lock) after every Add/Remove.
  explicit GroupTracker(std::function<void()> changed) : changed_(std::move(changed)) {}
  /// Records a started group. False when CancelAll() came first: the caller
  /// must kill the group itself.
  bool Add(GroupRecord group);
  void Remove(pid_t pgid);
  /// Marks the tracker cancelled and SIGKILLs every recorded group.
  void CancelAll();
  bool cancelled() const;
  std::vector<GroupRecord> Snapshot() const;

 private:
  mutable std::mutex mu_;
  bool cancelled_ = false;
  std::vector<GroupRecord> groups_;
  std::function<void()> changed_;
};

struct LaunchSpec {
  /// argv[0] is looked up in the PATH of `env` (relative to `cwd` when it
  /// holds a '/'), and passed to the command as given.
  std::vector<std::string> argv;
  std::vector<std::string> env;      ///< "KEY=VALUE"
  std::filesystem::path cwd;
  std::optional<std::string> stdin_data;
  std::chrono::milliseconds timeout{0};  ///< Zero: none.
  /// A new network namespace, and a new mount namespace in which /run,
  /// /var/run and /tmp are empty tmpfs (host unix sockets out of reach) except
  /// for `keep_visible`, `cwd` and the executable's directory, which stay at
  /// their paths.
  bool isolate_network = false;
  std::vector<std::filesystem::path> keep_visible;
  /// Covered by an empty tmpfs in a new mount namespace whatever the network
  /// mode: sandrun's own state a command must not see (the result archive,
  /// the outbox). Only set where the probe found mount namespaces usable.
  std::vector<std::filesystem::path> hide_always;
  /// The command runs as pid 2 under a small init (pid 1) in a new PID
  /// namespace, so when it ends, times out or is killed, the kernel kills
  /// everything it started, setsid'd daemons included.
  bool pid_namespace = false;
  bool needs_user_namespace = false;
  /// Requested: the group is killed (as a timeout's SIGKILL) and the end is
  /// kCancelled with `stopped` set; the tracker's other groups go on.
  std::shared_ptr<CommandStop> stop;
};

/// How the command ended (the part of ExecResult RunProcess fills).
struct ProcessEnd {
  Outcome outcome = Outcome::kInfraError;
  int exit_code = 0;
  int signal = 0;
  bool stopped = false;  ///< kCancelled by LaunchSpec::stop, this command alone.
  std::vector<std::string> notes;
};

/// Runs one command in its own process group (and PID namespace when asked;
/// the process sandrun watches is then a supervisor that ends as the command
/// ended) and blocks until the group is
/// gone and both pipes are drained (or kDrainAfterExit passed). Output goes
/// to `out` and `err`. A timeout sends SIGTERM to the group, SIGKILL after
/// kTerminateGrace. `tracker.CancelAll()` from another thread ends it with
/// kCancelled. exec() failures map to 127 (ENOENT) or 126 (EACCES, ENOEXEC),
/// with a "sandrun: ..." line on stderr; a non-OK Status means sandrun could
/// not start it at all.
Result<ProcessEnd> RunProcess(const LaunchSpec& spec, GroupTracker& tracker,
                              OutputCollector& out, OutputCollector& err);

}  // namespace sandrun::local

#endif  // SANDRUN_PLUGINS_LOCAL_LOCAL_PROCESS_H_
