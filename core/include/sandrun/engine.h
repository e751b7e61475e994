// The Engine runs many tasks in sandboxes, with:
//  - a concurrency limit (RunOptions::jobs);
//  - a host-side deadline for every execution on top of the backend's own
//    (timeout + host_grace), after which the engine terminates the sandbox
//    and records the task as timed out;
//  - cancellation (CancelFlag): every sandbox it created is terminated, the
//    unfinished tasks and the run are recorded as cancelled;
//  - retries of retryable infrastructure errors, never of test failures;
//  - fallback to the next candidate backend when one is unavailable;
//  - a record per task and one per run in the backend's result archive.
// It never names a backend: it is handed candidates in order of preference.
#ifndef SANDRUN_ENGINE_H_
#define SANDRUN_ENGINE_H_

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/archive.h"
#include "sandrun/backend.h"
#include "sandrun/listener.h"
#include "sandrun/record.h"
#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun {

class WarmPool;  // sandrun/warm_pool.h

/// How a task shares its sandbox with other tasks of the run.
///  - kSandbox: a fresh sandbox for the task alone, removed when it ends.
///  - kProcess: a warm sandbox shared with other kProcess tasks whose
///    sandbox is the same (image, Dockerfile, resources, network, workdir,
///    lifetime); the task runs as its own process in its own fresh directory
///    (<workdir>/.sandrun-tasks/<id>/: its uploads go there, its cwd and
///    downloads are relative to it), with its own env, stdin, timeout and
///    record. What the tasks share: the root filesystem outside their
///    directories, and whatever a process they leave behind still does.
///    A sandbox runs several tasks at once (RunOptions::tasks_per_sandbox,
///    by default the backend's Capabilities::tasks_per_sandbox), and then
///    has their cpu and memory pooled: k tasks of 1 core and 512 MiB share
///    a sandbox of k cores and k × 512 MiB (k is lowered when the backend
///    cannot give that much). A run keeps at most RunOptions::sandboxes of
///    them (warm_pool.h says how they are handed out).
///    A sandbox whose task was OOM-killed, cancelled, ended by the sandbox's
///    lifetime or sandrun's host deadline, or whose exec failed as
///    infrastructure, is retired: it takes no new task and ends when the
///    tasks still in it have ended. A task's own timeout kills its process
///    tree (as Sandbox::Exec does) and the sandbox stays. A task whose warm
///    sandbox was ended under it by another task's trouble is retried as an
///    infrastructure error. A shared sandbox lives kSharedSandboxMinLifetime
///    longer than the task it was made for; a task goes to it only while
///    what is left still covers the task's own lifetime, which also caps
///    the task's command. All end with the run.
enum class Isolation { kSandbox, kProcess };
inline constexpr std::chrono::seconds kSharedSandboxMinLifetime{600};
std::string_view IsolationName(Isolation isolation);  // "sandbox" / "process"
/// Parses IsolationName's output; nullopt for anything else.
std::optional<Isolation> IsolationFromName(std::string_view name);

/// The directory of a kProcess task inside its shared sandbox, relative to
/// the sandbox's workdir.
std::string SharedTaskDirectory(const std::string& task_id);

/// Every command the engine runs, on every backend, gets these in its
/// environment (over the task's own values of the same names), so a program
/// can tell it runs in a sandrun sandbox and which one: the sandbox's id
/// (TaskRecord::sandbox_id), the run id and the task id of its record.
/// docs/architecture.md, "What a sandboxed command sees".
inline constexpr char kSandboxIdEnv[] = "SANDRUN_SANDBOX_ID";
inline constexpr char kRunIdEnv[] = "SANDRUN_RUN_ID";
inline constexpr char kTaskIdEnv[] = "SANDRUN_TASK_ID";

/// One unit of work: a sandbox and one command in it.
struct Task {
  std::string id;         ///< Unique in the run; [A-Za-z0-9._-]+, at most 128 chars.
  std::string test_name;  ///< Defaults to id.
  SandboxSpec sandbox;
  ExecRequest exec;
  /// Paths in the sandbox copied back into the task's artifacts afterwards.
  std::vector<std::string> downloads;
  /// Downloads that are also copied to a host path (a file or a tree; its
  /// parent directories made, replaced as a whole), each key one of
  /// `downloads`: what `sandrun exec --download-to` and XML_OUTPUT_DIR use.
  /// A copy that fails is a note in the record, as a failed download is.
  std::map<std::string, std::filesystem::path> host_copies;
  Isolation isolation = Isolation::kSandbox;
};

/// Checks a task before anything runs: id syntax, non-empty argv, positive
/// timeout, upload sources that exist, and that every path it names inside
/// the sandbox (upload destinations, downloads, cwd, workdir) stays inside it
/// (CheckSandboxRelativePath). kInvalidArgument names the task and the path.
Status ValidateTask(const Task& task);
/// Validates every task and that ids are unique.
Status ValidateTasks(const std::vector<Task>& tasks);

/// Set from a signal handler (or any thread); the engine polls it.
class CancelFlag {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
};

struct RunOptions {
  int jobs = 1;
  /// Warm sandboxes (Isolation::kProcess): tasks at once in one sandbox
  /// (0: the backend's Capabilities::tasks_per_sandbox; a backend that runs
  /// one at a time gets one whatever is asked) and sandboxes at once (0:
  /// enough for `jobs`).
  int tasks_per_sandbox = 0;
  int sandboxes = 0;
  /// A pool of warm sandboxes that outlives this run (`sandrun service`
  /// keeps one for the runs it serves); null: the run's own, ended with it.
  /// Its own number of sandboxes applies, not `sandboxes`.
  std::shared_ptr<WarmPool> warm_pool;
  /// The result archive of the backend the run will use, kept by the caller
  /// across runs (`sandrun service`); a part of a run group then goes with
  /// the next grouped delivery (ResultArchive::WriteRunPartBatched), not a
  /// delivery of its own. Null: the run opens its backend's archive.
  std::shared_ptr<ResultArchive> archive;
  int retries = 1;              ///< Extra attempts for retryable infra errors.
  bool race = false;            ///< Stop at the first passing task; cancel the rest.
  /// Added to a task's timeout to get the host-side deadline.
  std::chrono::milliseconds host_grace{5000};
  /// Wait before the first retry; doubles per attempt (1, 2, 4 ... s), so
  /// that three retries outlast an engine restart of several seconds.
  std::chrono::milliseconds retry_backoff{1000};
  /// Records wait here before delivery, in a subdirectory per backend.
  std::filesystem::path outbox_dir;
  std::vector<std::string> command_line;  ///< Recorded in run.json.
  std::map<std::string, std::string> labels;  ///< Added to every sandbox and record.
  std::string host;             ///< Defaults to gethostname().
  /// Non-empty: this run is a part of the group's run (the `sandrun exec`s
  /// of one ctest invocation share one run; ResultArchive::JoinRunGroup).
  /// Task ids another part took get a "-2", "-3" ... suffix.
  std::string run_group;
  int run_group_owner_pid = 0;  ///< Owner of a new group run (0: this process).
  /// In a group's run: tasks of earlier parts that this part runs again,
  /// with the counter each was counted in (RunRecord::superseded).
  std::map<std::string, std::string> supersedes;
};

/// A backend the engine may use, in order of preference.
struct BackendCandidate {
  std::shared_ptr<Backend> backend;
  /// When the backend could not even be constructed: why (it then counts as
  /// unavailable with this reason).
  std::string construction_error;
  std::string name;  ///< For messages when `backend` is null.
};

/// The first candidate whose CheckAvailable() passes, or null. `skipped`
/// gets why each one before it could not be used ("docker unavailable:
/// ...; ..."), empty when the first one could.
std::shared_ptr<Backend> FirstAvailableBackend(const std::vector<BackendCandidate>& candidates,
                                               std::string* skipped);

/// How a run's warm sandboxes are sized on a backend with `caps`: tasks at
/// once in one (`tasks_per_sandbox`, else the backend's suggestion; one
/// when the backend runs one at a time; at most `jobs` when `clamp_to_jobs`)
/// and sandboxes at once (`sandboxes`, else enough for `jobs`).
struct WarmPoolSize {
  int places = 1;
  int sandboxes = 1;
};
WarmPoolSize SizeWarmPool(const Capabilities& caps, int tasks_per_sandbox, int sandboxes,
                          int jobs, bool clamp_to_jobs);

struct RunOutcome {
  RunRecord run;
  std::vector<TaskRecord> tasks;  ///< In input order.
  std::string archive;            ///< Where the records are (Describe()).
  std::string outbox;
  /// Records that could not reach the archive yet (they are in the outbox).
  int undelivered = 0;
};

class Engine {
 public:
  explicit Engine(std::vector<BackendCandidate> candidates);

  /// Adds a listener; events are serialised across worker threads.
  void AddListener(std::shared_ptr<RunListener> listener);

  /// Runs the tasks and blocks until all ended or were cancelled. Tasks must
  /// have passed ValidateTasks. A non-OK Result means the run could not start
  /// at all (no backend available, archive unusable): nothing ran and no run
  /// exists. kInvalidArgument: the chosen backend refused a task's sandbox as
  /// bad input (Backend::ValidateSpec), naming the task and the problem.
  Result<RunOutcome> Run(std::vector<Task> tasks, const RunOptions& options,
                         const CancelFlag& cancel);

 private:
  std::vector<BackendCandidate> candidates_;
  std::shared_ptr<ListenerList> listeners_;
};

/// Exit code for a whole batch: 0 all passed, 130 cancelled, 125 when only
/// infrastructure errors kept it from passing, 1 otherwise.
int BatchExitCode(const RunRecord& run);

}  // namespace sandrun

#endif  // SANDRUN_ENGINE_H_
