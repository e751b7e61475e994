// The result archive.
//
// ResultArchive puts sandrun's layout on top of an ArchiveStore (the storage
// a backend provides, archive_store.h):
//
//   <run_id>/run.json
//   <run_id>/tasks/<task_id>.json
//   <run_id>/artifacts/<task_id>/...
//
// Every record is first written to a local outbox directory and then
// delivered to the store; a record the store refused stays in the outbox and
// Sync() delivers it later, so nothing already recorded is lost. The outbox
// also knows who runs each run (<run>/owner: pid and host, from
// BeginRun) and which tasks have started (<run>/started/<task>.json, from
// WriteStarted): when sandrun is killed mid-run, a later Sync() delivers
// those tasks as Outcome::kInterrupted, with what they had streamed. A store on
// this host (ArchiveStore::OnThisHost) gets each record at once; a remote one
// (a Docker or Modal volume, where every write is a request) gets them in
// groups, at most a delivery interval after they were written, and a run's
// last records together with its run.json.
//
// Only the core and its entry points (CLI, adapters) use this header; plugins
// see the store contract alone, so the archive's internals (behind a pimpl)
// change without recompiling them.
#ifndef SANDRUN_ARCHIVE_H_
#define SANDRUN_ARCHIVE_H_

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sandrun/archive_store.h"
#include "sandrun/record.h"
#include "sandrun/status.h"

namespace sandrun {

/// Writes `data` to `target` through a temporary sibling and a rename, so
/// readers see the old file or the new one, never a part. The directory must
/// exist; nothing else is created. A new file gets `mode` (less the umask).
Status WriteFileAtomically(const std::filesystem::path& target, std::string_view data,
                           unsigned mode);

/// Checks, before anything runs, that `file` can be written later: its
/// directory exists and this process may create files in it, and `file` is
/// not a directory (nor an existing file it may not replace). Creates and
/// leaves nothing behind. kInvalidArgument naming `file` otherwise.
Status CheckWritableFile(const std::filesystem::path& file);

/// A new run id: "20261122T031500Z-4f2a" (UTC time, then random hex). Sorts by
/// time; the random part and an exclusive create in the outbox keep two runs
/// started in the same second apart.
std::string NewRunId();

/// The process running a run, as BeginRun noted it in the outbox.
struct RunOwner {
  int pid = 0;
  std::string host;
  std::int64_t started_unix = 0;
};

/// How long a run whose owner cannot be checked (it runs on another host,
/// or this outbox has no owner for it) counts as possibly still running:
/// `results prune` spares such a run without run.json for this long.
inline constexpr std::chrono::hours kUncheckedRunGrace{24};

/// What ResultArchive::Prune did.
struct PruneResult {
  std::vector<std::string> removed;
  /// Old runs kept because they may still be running: id and why.
  std::vector<std::pair<std::string, std::string>> kept_running;
};

/// Summary line of one run, for `sandrun results list`.
struct RunListing {
  std::string run_id;
  bool summary_read = false;  ///< ListRuns was asked to read its run.json.
  bool has_summary = false;   ///< run.json exists (false: run still going or killed).
  RunRecord summary;
};

/// Run ids begin with the UTC second their run started, so they order runs
/// by that second; within one second, the run.json's started_at decides.
bool RunIdsShareASecond(const std::string& a, const std::string& b);
/// Whether `a` comes before `b`, newest first (a strict weak order; a run
/// without a summary read counts as started at the beginning of its second).
bool NewerRunFirst(const RunListing& a, const RunListing& b);

/// sandrun's layout over a store, with an outbox in front of it.
class ResultArchive {
 public:
  /// `outbox_dir` is a host directory private to this user.
  ResultArchive(std::shared_ptr<ArchiveStore> store, std::filesystem::path outbox_dir);
  /// Delivers what still waits (one last try), then stops the delivery thread.
  ~ResultArchive();
  ResultArchive(const ResultArchive&) = delete;
  ResultArchive& operator=(const ResultArchive&) = delete;

  /// How long a task record may wait in the outbox before it is delivered
  /// with the others that wait. Default: zero (each at once) for a store
  /// OnThisHost(), kRemoteDeliveryInterval for any other store.
  static constexpr std::chrono::milliseconds kRemoteDeliveryInterval{2000};
  void SetDeliveryInterval(std::chrono::milliseconds interval);

  const ArchiveStore& store() const;
  const std::filesystem::path& outbox_dir() const;

  /// Reserves a fresh run id (exclusive directory in the outbox) and notes
  /// this process (pid, host) as its owner there.
  Result<std::string> BeginRun();

  /// A run shared by several sandrun processes of one group (the `sandrun
  /// exec`s of one ctest invocation, or of one CI job): its id, this
  /// process's part number (1, 2, ...) and its task ids, made unique in the
  /// run by a "-2", "-3" ... suffix when another process of the group took
  /// one already. The first process of `group` in this outbox reserves the id
  /// as BeginRun does, with `owner_pid` (0: this process) as its owner; the
  /// rest join it. Serialised across processes by a lock file in the outbox.
  struct JoinedRun {
    std::string run_id;
    int part = 0;
    std::vector<std::string> task_ids;
  };
  Result<JoinedRun> JoinRunGroup(const std::string& group, int owner_pid,
                                 const std::vector<std::string>& task_ids);
  /// The run of `group` in this outbox (what JoinRunGroup gave its parts);
  /// kNotFound when no sandrun of the group has run here (or long ago).
  Result<std::string> RunOfGroup(const std::string& group) const;
  /// For a joined run: writes this process's summary as
  /// <run>/parts/<part>.json (schema sandrun.run/v1) instead of run.json and
  /// delivers it with the tasks. ReadRun merges the parts.
  Status WriteRunPart(const RunRecord& record, int part);
  /// As WriteRunPart, but the part waits for the delivery thread (with the
  /// task records) when deliveries are grouped (SetDeliveryInterval), so
  /// that many short parts of one run cost one delivery: what `sandrun
  /// service` does for the execs of a ctest invocation. Delivered at the
  /// latest when this archive object ends.
  Status WriteRunPartBatched(const RunRecord& record, int part);
  /// Replaces NewRunId() as BeginRun's source of candidate ids (tests use it
  /// to force collisions). Not thread-safe against a concurrent BeginRun.
  void SetRunIdGeneratorForTesting(std::function<std::string()> generator);
  /// Where a task's artifacts (stream spills, downloads) should be written
  /// before delivery: <outbox>/<run>/artifacts/<task>/. Created on demand.
  Result<std::filesystem::path> ArtifactDir(const std::string& run_id,
                                            const std::string& task_id);

  /// Writes the record (and the task's artifact directory) to the outbox,
  /// then delivers both to the store, at once or with the next group (see
  /// SetDeliveryInterval). A failed delivery at once returns the Status; the
  /// record stays in the outbox either way until a delivery succeeds. The
  /// error's message completes "record <task id> ..." for a human: whether the
  /// record waits in the outbox or could not even be written there.
  Status WriteTask(const TaskRecord& record);
  /// Writes run.json to the outbox and delivers everything of the run that
  /// still waits there, run.json last. An error: something was not delivered.
  Status WriteRun(const RunRecord& record);

  /// Notes in the outbox that a task has started, or reached a later phase
  /// (sandbox id, phase durations): `record` as it stands. Nothing is
  /// delivered; WriteTask replaces it when the task ends. If this process
  /// dies first, Sync() in a later one delivers it as Outcome::kInterrupted,
  /// with the output the task spilled to its artifact directory (stdout.log,
  /// stderr.log), capped at `output_cap` bytes per stream.
  Status WriteStarted(const TaskRecord& record, std::size_t output_cap);

  /// Delivers everything left in the outbox, including the started tasks of
  /// runs whose owner is gone (as interrupted). Returns how many records went.
  Result<int> Sync();
  /// Records waiting in the outbox (of one run when `run_id` is given),
  /// counting started tasks of runs whose owner is gone.
  int PendingCount(const std::string& run_id = "") const;

  /// Every run, newest first. run.json is read only for the newest
  /// `read_summaries` of them (several at once); the older ones have
  /// has_summary false and summary_read false. `results list --limit N`
  /// reads N summaries, `results show latest` none.
  static constexpr std::size_t kAllSummaries = static_cast<std::size_t>(-1);
  Result<std::vector<RunListing>> ListRuns(std::size_t read_summaries = kAllSummaries);
  /// run.json, or for a run of a group the merge of its parts (counts
  /// summed, the earliest start, the latest end, the worst status).
  Result<RunRecord> ReadRun(const std::string& run_id);
  Result<std::vector<TaskRecord>> ReadTasks(const std::string& run_id);
  Result<TaskRecord> ReadTask(const std::string& run_id, const std::string& task_id);
  /// Copies the whole run (records and artifacts) into `dest/<run_id>/`.
  /// Creates nothing when the run is not in the archive; a failed copy
  /// removes what it created (`dest` when it did not exist, else dest/<run_id>).
  Status Fetch(const std::string& run_id, const std::filesystem::path& dest);
  /// Keeps the newest `keep` runs and removes the rest, except a run without
  /// run.json that may still be running: its owner (from this outbox) is
  /// alive, or it cannot be checked and the run is younger than
  /// kUncheckedRunGrace.
  Result<PruneResult> Prune(int keep);
  /// Why a run may still be running ("" when it surely is not).
  std::string WhyMayStillRun(const std::string& run_id) const;

 private:
  struct Impl;  ///< The store, the outbox and the delivery thread (archive.cc).
  std::unique_ptr<Impl> impl_;
};

}  // namespace sandrun

#endif  // SANDRUN_ARCHIVE_H_
