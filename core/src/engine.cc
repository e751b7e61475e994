#include "sandrun/engine.h"

#include <stdlib.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <cctype>
#include <thread>

#include "sandrun/file_util.h"
#include "sandrun/output_collector.h"
#include "sandrun/util.h"
#include "sandrun/warm_pool.h"

namespace sandrun {
namespace {

using Clock = std::chrono::steady_clock;

bool ValidTaskId(const std::string& id) {
  return !id.empty() && id.size() <= 128 && id != "." && id != ".." &&
         std::all_of(id.begin(), id.end(), [](char c) {
           return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
         });
}

/// Names the task's spill files by their archive path (`RUN/artifacts/TASK/
/// stdout.log`), as the archived record does: delivery moves them out of the
/// outbox, so the outbox path the backend wrote to would soon name nothing.
void UseArchiveSpillPaths(TaskRecord& record, const std::filesystem::path& outbox) {
  std::string artifacts = record.run_id + "/artifacts/" + record.task_id;
  for (CapturedStream* stream : {&record.result.stdout_stream, &record.result.stderr_stream}) {
    stream->spill_path = RelocateSpillPath(stream->spill_path, outbox / artifacts, artifacts);
  }
}

/// Delivers listener events one at a time, whatever thread fires them.
class SerializedListener : public RunListener {
 public:
  explicit SerializedListener(std::shared_ptr<RunListener> inner) : inner_(std::move(inner)) {}
  void OnRunStart(const RunInfo& i) override { std::lock_guard l(mu_); inner_->OnRunStart(i); }
  void OnTaskStart(const Task& t, int a) override { std::lock_guard l(mu_); inner_->OnTaskStart(t, a); }
  void OnTaskEnd(const TaskRecord& r) override { std::lock_guard l(mu_); inner_->OnTaskEnd(r); }
  void OnWarning(std::string_view m) override { std::lock_guard l(mu_); inner_->OnWarning(m); }
  void OnRunEnd(const RunRecord& r) override { std::lock_guard l(mu_); inner_->OnRunEnd(r); }

 private:
  std::mutex mu_;
  std::shared_ptr<RunListener> inner_;
};

/// The state of one run, shared by the monitor (calling thread) and workers.
class RunState {
 public:
  /// A sandbox currently in use by a worker, so the monitor can end it.
  struct Slot {
    std::shared_ptr<Sandbox> sandbox;
    bool shared = false;     ///< A warm sandbox other tasks may be using.
    /// Ends this task's command alone (ExecRequest::stop).
    std::shared_ptr<CommandStop> stop = std::make_shared<CommandStop>();
    std::optional<Clock::time_point> deadline;
    bool host_timed_out = false;
  };

  /// What a stop ends: whole sandboxes, and single commands in sandboxes
  /// other tasks share.
  struct Ending {
    std::vector<std::shared_ptr<Sandbox>> sandboxes;
    std::vector<std::shared_ptr<CommandStop>> commands;
  };

  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;           // cancel or race won: start nothing new, end what runs
  bool user_cancelled = false;
  /// The backend ends one command on request (Capabilities::cancels_one_command):
  /// a stopped task in a shared sandbox leaves the sandbox to the others.
  bool cancels_one_command = false;
  std::string race_winner;
  std::size_t next_task = 0;
  std::size_t finished = 0;
  std::map<std::size_t, Slot> slots;  // by task index

  /// Whether a stop of the task in `slot` ends its command alone.
  bool EndsCommandAlone(const Slot& slot) const { return slot.shared && cancels_one_command; }

  /// Sets `stop` and returns what is running, for the caller to end once it
  /// has released `mu` (Terminate may be a request to a remote engine;
  /// workers must not wait on it for the lock). Caller holds `mu`.
  [[nodiscard]] Ending StopAllLocked() {
    stop = true;
    Ending running;
    for (auto& [index, slot] : slots) {
      if (slot.sandbox == nullptr) continue;
      if (EndsCommandAlone(slot)) {
        running.commands.push_back(slot.stop);
      } else {
        running.sandboxes.push_back(slot.sandbox);
      }
    }
    cv.notify_all();
    return running;
  }
};

void EndAll(const RunState::Ending& ending) {
  for (const auto& stop : ending.commands) stop->Request();
  for (const auto& sandbox : ending.sandboxes) sandbox->Terminate().IgnoreError();
}

/// What makes two kProcess tasks' sandboxes the same sandbox: everything in
/// the spec but the lifetime (the pool checks what is left of it,
/// WarmPool::Acquire), the uploads and the env (both go to the task itself).
std::string SharedSandboxKey(const SandboxSpec& spec) {
  std::string key = spec.image + '\n' + spec.dockerfile + '\n' + std::to_string(spec.cpu) +
                    '\n' + std::to_string(spec.memory_mb) + '\n' + spec.gpu + '\n' +
                    spec.workdir + '\n' + std::string(NetworkModeName(spec.network)) + '\n';
  // Not the run's and task's labels: a pool that outlives one run
  // (RunOptions::warm_pool) shares its sandboxes across runs.
  for (const auto& [k, v] : spec.labels) {
    if (k != "run" && k != "task") key += k + '=' + v + '\n';
  }
  return key;
}

/// A fresh empty host directory (RunContext removes it when the run ends).
std::filesystem::path MakeEmptyDirectory() {
  std::string pattern = (std::filesystem::temp_directory_path() / "sandrun-task-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) return {};
  return pattern;
}

class RunContext {
 public:
  /// `places`: tasks at once in one warm sandbox (fewer when their cpu or
  /// memory times `places` is more than the backend gives one sandbox);
  /// `max_sandboxes`: warm sandboxes at once.
  RunContext(Backend& backend, ResultArchive& archive, const RunOptions& options,
             std::string run_id, std::string fallback_reason, RunListener& listener,
             int places, int max_sandboxes)
      : own_pool(max_sandboxes, [this](std::shared_ptr<Sandbox> s) { reaper.Add(std::move(s)); }),
        pool(options.warm_pool != nullptr ? *options.warm_pool : own_pool),
        backend_(backend),
        archive_(archive),
        options_(options),
        empty_dir_(MakeEmptyDirectory()),
        run_id_(std::move(run_id)),
        fallback_reason_(std::move(fallback_reason)),
        listener_(listener),
        places_(places) {}

  ~RunContext() {
    std::error_code ec;
    if (!empty_dir_.empty()) std::filesystem::remove(empty_dir_, ec);
  }
  RunContext(const RunContext&) = delete;
  RunContext& operator=(const RunContext&) = delete;

  RunState state;
  SandboxReaper reaper;
  WarmPool own_pool;  // Ends its sandboxes through `reaper`, so declared after it.
  /// The run's warm sandboxes: RunOptions::warm_pool, else own_pool.
  WarmPool& pool;

  /// Worker body: takes tasks until none are left or the run stops.
  void Work(std::vector<Task>& tasks, std::vector<TaskRecord>& records,
            Clock::time_point run_start) {
    while (true) {
      std::size_t index;
      bool stopped;
      {
        std::lock_guard lock(state.mu);
        if (state.next_task >= tasks.size()) return;
        index = state.next_task++;
        stopped = state.stop;
      }
      TaskRecord record = stopped ? NotStarted(tasks[index])
                                  : RunTask(tasks[index], index, run_start);
      UseArchiveSpillPaths(record, archive_.outbox_dir());
      Status written = archive_.WriteTask(record);
      if (!written.ok()) {
        listener_.OnWarning("record " + record.task_id + " " + written.message());
      }
      listener_.OnTaskEnd(record);
      RunState::Ending losers;
      {
        std::lock_guard lock(state.mu);
        if (options_.race && Passed(record.result) && state.race_winner.empty()) {
          state.race_winner = record.task_id;
          losers = state.StopAllLocked();
        }
        records[index] = std::move(record);
        ++state.finished;
        state.cv.notify_all();
      }
      EndAll(losers);
    }
  }

 private:
  TaskRecord NewRecord(const Task& task) const {
    TaskRecord record;
    record.run_id = run_id_;
    record.task_id = task.id;
    record.test_name = task.test_name.empty() ? task.id : task.test_name;
    record.backend = std::string(backend_.Name());
    record.image = task.sandbox.image;
    record.argv = task.exec.argv;
    record.fallback_reason = fallback_reason_;
    record.host = options_.host.empty() ? HostName() : options_.host;
    record.labels = options_.labels;
    for (const auto& [k, v] : task.sandbox.labels) record.labels[k] = v;
    record.started_at = NowRfc3339();
    return record;
  }

  TaskRecord NotStarted(const Task& task) const {
    TaskRecord record = NewRecord(task);
    record.attempts = 0;
    record.result.outcome = Outcome::kCancelled;
    record.result.exit_code = kExitInterrupted;
    record.result.error = "not started: the run was stopped";
    record.finished_at = record.started_at;
    return record;
  }

  TaskRecord RunTask(const Task& task, std::size_t index, Clock::time_point run_start) {
    TaskRecord record = NewRecord(task);
    Clock::time_point begin = Clock::now();
    std::int64_t queue_ms = MillisBetween(run_start, begin);
    // What the outbox keeps while the task runs, so a sandrun that is
    // killed still leaves a record of it (see ResultArchive::WriteStarted).
    TaskRecord started = record;
    started.result.durations.queue_ms = queue_ms;
    ExecResult result;
    for (int attempt = 1;; ++attempt) {
      listener_.OnTaskStart(task, attempt);
      record.attempts = attempt;
      started.attempts = attempt;
      started.attempt_errors = record.attempt_errors;
      NoteStarted(task, started);
      Result<ExecResult> outcome = RunAttempt(task, index, started);
      if (outcome.ok()) {
        result = std::move(outcome).value();
        break;
      }
      Status status = outcome.status();
      bool stopped;
      {
        std::lock_guard lock(state.mu);
        stopped = state.stop;
      }
      if (stopped) {
        result.outcome = Outcome::kCancelled;
        result.exit_code = kExitInterrupted;
        result.error = "run stopped during an infrastructure failure: " + status.ToString();
        break;
      }
      if (status.retryable() && attempt <= options_.retries) {
        record.attempt_errors.push_back(status.ToString());
        listener_.OnWarning("task " + task.id + ": attempt " + std::to_string(attempt) +
                            " hit an infrastructure error, retrying: " + status.ToString());
        std::unique_lock lock(state.mu);
        state.cv.wait_for(lock, options_.retry_backoff * (1 << std::min(attempt - 1, 6)),
                          [&] { return state.stop; });
        continue;
      }
      result = ExecResult{};
      result.outcome = Outcome::kInfraError;
      result.exit_code = kExitSandrunError;
      result.error = status.ToString();
      if (!status.retryable() && attempt == 1 && options_.retries > 0) {
        result.notes.push_back("not retried: the error is not transient");
      }
      break;
    }
    result.durations.queue_ms = queue_ms;
    result.durations.total_ms = MillisBetween(begin, Clock::now()) + queue_ms;
    record.sandbox_id = result.sandbox_id;
    record.isolation = std::string(IsolationName(task.isolation));
    record.result = std::move(result);
    record.finished_at = NowRfc3339();
    return record;
  }

  /// Best effort: a task whose progress cannot be noted still runs.
  void NoteStarted(const Task& task, const TaskRecord& started) {
    archive_.WriteStarted(started, task.exec.output_cap_bytes).IgnoreError();
  }

  /// The sandbox `task` asks for, with sandrun's labels and a lifetime that
  /// outlives the command's timeout and the host grace.
  SandboxSpec SpecFor(const Task& task) const {
    SandboxSpec spec = task.sandbox;
    spec.labels["managed-by"] = "sandrun";
    spec.labels["run"] = run_id_;
    spec.labels["task"] = task.isolation == Isolation::kProcess ? "shared" : task.id;
    for (const auto& [k, v] : options_.labels) spec.labels.try_emplace(k, v);
    if (task.isolation == Isolation::kProcess) {
      // The task's env goes to its exec; its uploads go into its directory
      // (they stay in the spec: Create does none, but a backend may prepare
      // for them, as Modal's executable cache does).
      spec.env.clear();
    }
    spec.lifetime = OwnLifetime(task);
    // A shared sandbox outlives one task by kSharedSandboxMinLifetime, for
    // the tasks after it (WarmFits); each task keeps its own lifetime as a
    // cap on its command (RunAttempt).
    if (task.isolation == Isolation::kProcess) spec.lifetime += kSharedSandboxMinLifetime;
    return spec;
  }

  /// The lifetime the task's sandbox would have if it had one of its own.
  std::chrono::seconds OwnLifetime(const Task& task) const {
    if (task.exec.timeout.count() > 0) return std::max(task.sandbox.lifetime, LifetimeNeeded(task));
    return task.sandbox.lifetime;
  }

  std::chrono::seconds LifetimeNeeded(const Task& task) const {
    return std::chrono::duration_cast<std::chrono::seconds>(task.exec.timeout) +
           std::chrono::duration_cast<std::chrono::seconds>(options_.host_grace) +
           std::chrono::seconds(60);
  }

  /// How many tasks of `key` run at once in one warm sandbox: places_,
  /// unless the sandbox would then ask for more cpu or memory (the tasks'
  /// own, pooled) than the backend gives one sandbox.
  int PlacesFor(const std::string& key, const SandboxSpec& spec) {
    std::lock_guard lock(places_mu_);
    auto [it, added] = places_by_key_.try_emplace(key, places_);
    if (!added || (spec.cpu <= 0 && spec.memory_mb <= 0)) return it->second;
    for (int places = places_; places > 1; --places) {
      if (backend_.ValidateSpec(Pooled(spec, places)).code() != StatusCode::kInvalidArgument) {
        return it->second = places;
      }
    }
    return it->second = 1;
  }

  /// The sandbox of `places` tasks of `spec`: their cpu and memory pooled.
  static SandboxSpec Pooled(SandboxSpec spec, int places) {
    spec.cpu *= places;
    spec.memory_mb *= places;
    return spec;
  }

  /// Gets the sandbox for one attempt: a place in a warm one when the task
  /// may share it, else a new one of its own. `place` is set for a warm one.
  Result<std::shared_ptr<Sandbox>> AcquireSandbox(const Task& task, const SandboxSpec& spec,
                                                  std::optional<WarmPool::Place>* place,
                                                  bool* created) {
    *created = false;
    if (task.isolation != Isolation::kProcess) {
      Result<std::unique_ptr<Sandbox>> made = backend_.Create(spec);
      if (!made.ok()) return made.status().WithContext("creating sandbox");
      *created = true;
      return std::shared_ptr<Sandbox>(std::move(made).value());
    }
    const std::string key = SharedSandboxKey(spec);
    const int places = PlacesFor(key, spec);
    auto got = pool.Acquire(
        key, places, spec.lifetime, OwnLifetime(task),
        [&] { return backend_.Create(Pooled(spec, places)); },
        [this] {
          std::lock_guard lock(state.mu);
          return state.stop;
        });
    if (!got.ok()) {
      return got.status().code() == StatusCode::kCancelled
                 ? got.status()
                 : got.status().WithContext("creating sandbox");
    }
    *created = got->created;
    std::shared_ptr<Sandbox> sandbox = got->sandbox;
    *place = std::move(got).value();
    return sandbox;
  }

  /// Creates a sandbox (or takes a place in a warm one), uploads, runs,
  /// downloads, and ends a sandbox of its own (a warm one goes back to the
  /// pool, retired when the attempt went badly). A non-OK
  /// Result is an infrastructure failure of this attempt. `started` gets the
  /// sandbox id and phase durations as they become known.
  Result<ExecResult> RunAttempt(const Task& task, std::size_t index, TaskRecord& started) {
    // A GPU request is never silently dropped, whichever backend (or
    // fallback) runs the task.
    if (!task.sandbox.gpu.empty() && !backend_.GetCapabilities().supports_gpu) {
      return UnimplementedError("the " + std::string(backend_.Name()) +
                                " backend cannot provide GPU '" + task.sandbox.gpu +
                                "'; use a backend that can (sandrun backends lists them)");
    }
    const bool shared = task.isolation == Isolation::kProcess;
    SandboxSpec spec = SpecFor(task);
    Clock::time_point t0 = Clock::now();
    bool created = false;
    std::optional<WarmPool::Place> place;
    SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Sandbox> sandbox,
                             AcquireSandbox(task, spec, &place, &created));
    Clock::time_point t1 = Clock::now();
    started.sandbox_id = sandbox->Id();
    started.result.durations.create_ms = MillisBetween(t0, t1);
    NoteStarted(task, started);
    RunState::Ending stopped;
    {
      std::lock_guard lock(state.mu);
      RunState::Slot& slot = state.slots[index];
      slot.sandbox = sandbox;
      slot.shared = shared;
      if (state.stop && state.EndsCommandAlone(slot)) stopped.commands.push_back(slot.stop);
      if (state.stop && !state.EndsCommandAlone(slot)) stopped.sandboxes.push_back(sandbox);
    }
    EndAll(stopped);
    // Whatever happens below, the sandbox leaves the slot table. A
    // sandbox of its own ends; a warm one stays unless the attempt went
    // badly enough to retire it (`keep`).
    bool keep = false;
    struct Release {
      RunContext& context;
      std::size_t index;
      std::shared_ptr<Sandbox>& sandbox;
      std::optional<WarmPool::Place>& place;
      bool& keep;
      ~Release() {
        {
          std::lock_guard lock(context.state.mu);
          context.state.slots.erase(index);
        }
        if (place) {
          context.pool.Release(*place, keep);
        } else {
          context.reaper.Add(std::move(sandbox));
        }
      }
    } release{*this, index, sandbox, place, keep};

    // A shared sandbox: the task's uploads go into its fresh directory.
    const std::string dir = shared ? SharedTaskDirectory(task.id) : "";
    auto in_dir = [&](const std::string& path) {
      return dir.empty() ? path : path.empty() ? dir : dir + "/" + path;
    };
    // (An upload makes the directory with it: Put creates missing parents.)
    if (shared && task.sandbox.uploads.empty()) {
      if (empty_dir_.empty()) return InternalError("no temporary directory for the task's own");
      Status made = sandbox->Put(FileUpload{empty_dir_.string(), dir, false});
      if (!made.ok()) return made.WithContext("making the task's directory " + dir);
    }
    std::vector<FileUpload> puts = task.sandbox.uploads;
    for (auto& put : puts) {
      SANDRUN_ASSIGN_OR_RETURN(std::string destination, UploadDestination(put));
      put.destination = in_dir(destination);
    }
    if (!puts.empty()) SANDRUN_RETURN_IF_ERROR(sandbox->PutAll(puts));
    Clock::time_point t2 = Clock::now();
    if (!task.sandbox.uploads.empty()) {
      started.result.durations.upload_ms = MillisBetween(t1, t2);
      NoteStarted(task, started);
    }

    ExecRequest request = task.exec;
    // In a shared sandbox the task's own lifetime still caps its command.
    bool capped_by_lifetime = false;
    if (shared) {
      request.cwd = in_dir(task.exec.cwd);
      for (const auto& [k, v] : task.sandbox.env) request.env.try_emplace(k, v);
      const std::chrono::milliseconds own = OwnLifetime(task);
      if (request.timeout.count() == 0 || request.timeout > own) {
        request.timeout = own;
        capped_by_lifetime = true;
      }
    }
    // Where it runs, for the command itself (engine.h): set here, once for
    // every backend.
    request.env[kSandboxIdEnv] = sandbox->Id();
    request.env[kRunIdEnv] = run_id_;
    request.env[kTaskIdEnv] = task.id;
    SANDRUN_ASSIGN_OR_RETURN(std::filesystem::path artifacts,
                             archive_.ArtifactDir(run_id_, task.id));
    request.spill_dir = artifacts.string();
    {
      std::lock_guard lock(state.mu);
      if (request.timeout.count() > 0) {
        state.slots[index].deadline = Clock::now() + request.timeout + options_.host_grace;
      }
      request.stop = state.slots[index].stop;
    }
    Result<ExecResult> executed = sandbox->Exec(request);
    Clock::time_point t3 = Clock::now();
    bool host_timed_out;
    {
      std::lock_guard lock(state.mu);
      host_timed_out = state.slots[index].host_timed_out;
    }
    if (!executed.ok()) {
      if (host_timed_out) {
        return DeadlineExceededError("the backend did not end the command within its timeout "
                                     "plus " + std::to_string(options_.host_grace.count()) +
                                     " ms, and failed when sandrun stopped it: " +
                                     executed.status().ToString());
      }
      return executed.status().WithContext("running the command");
    }
    ExecResult result = std::move(executed).value();
    if (shared && result.outcome == Outcome::kCancelled && !host_timed_out) {
      // Not this task's doing: its warm sandbox was ended under it (another
      // task in it hit sandrun's host deadline). Another sandbox may do.
      std::lock_guard lock(state.mu);
      if (!state.stop) {
        return UnavailableError("its shared sandbox " + sandbox->Id() +
                                " was ended while the command ran");
      }
    }
    if (result.outcome == Outcome::kInfraError) {
      // backend.h: an infrastructure failure is a retryable Status, never an
      // outcome. One channel, even for a plugin that does otherwise.
      return UnavailableError(result.error.empty() ? "the backend reported an infrastructure "
                                                     "error without saying which"
                                                   : result.error)
          .WithContext("running the command");
    }
    if (host_timed_out && result.outcome != Outcome::kTimedOut) {
      result.outcome = Outcome::kTimedOut;
      result.exit_code = kExitTimedOut;
      result.notes.push_back("stopped by sandrun's host-side deadline (timeout + " +
                             std::to_string(options_.host_grace.count()) +
                             " ms) because the backend had not ended it");
    }
    // Whichever outcome the backend reported once sandrun stopped it, the
    // host deadline is what ended the command.
    if (result.outcome == Outcome::kTimedOut) {
      if (host_timed_out) {
        result.ended_by = kEndedByHostDeadline;
      } else if (result.ended_by.empty()) {
        result.ended_by = kEndedByTimeout;
      }
    }
    if (result.sandbox_id.empty()) result.sandbox_id = sandbox->Id();

    for (const auto& path : task.downloads) {
      auto got = sandbox->Get(in_dir(path), artifacts / "downloads");
      if (!got.ok()) {
        result.notes.push_back("download " + path + " failed: " + got.status().ToString());
        // A host copy from an earlier run must not pass for this one's (a
        // crashed case leaves no XML); a file only, never a tree.
        if (auto copy = task.host_copies.find(path); copy != task.host_copies.end()) {
          std::error_code ec;
          if (std::filesystem::is_regular_file(std::filesystem::symlink_status(copy->second, ec)) &&
              std::filesystem::remove(copy->second, ec)) {
            result.notes.push_back("removed the earlier " + copy->second.string());
          }
        }
        continue;
      }
      for (const auto& file : got.value()) result.artifacts.push_back("downloads/" + file);
      auto copy = task.host_copies.find(path);
      if (copy != task.host_copies.end() && !got.value().empty()) {
        // Get writes the path as downloads/<its last component>.
        std::filesystem::path named = std::filesystem::path(in_dir(path)).lexically_normal();
        if (!named.has_filename()) named = named.parent_path();  // "dir/"
        std::filesystem::path downloaded = artifacts / "downloads" / named.filename();
        Status copied = CopyReplacing(downloaded, copy->second);
        if (!copied.ok()) result.notes.push_back("download " + path + ": " + copied.message());
      }
    }
    Clock::time_point t4 = Clock::now();
    result.durations.create_ms = MillisBetween(t0, t1);
    result.durations.upload_ms = MillisBetween(t1, t2);
    result.durations.exec_ms = MillisBetween(t2, t3);
    result.durations.download_ms = MillisBetween(t3, t4);
    // The sandbox stays warm when the task ended on its own, or when its
    // timeout ended it the way the backend kills a command's whole tree.
    // Not after an OOM kill, a cancel, its lifetime or sandrun's host
    // deadline: those may have left it broken or half-killed.
    const bool clean_timeout =
        result.outcome == Outcome::kTimedOut && result.ended_by == kEndedByTimeout;
    // A command the backend cancelled alone leaves its sandbox as clean.
    const bool clean_cancel =
        result.outcome == Outcome::kCancelled && result.ended_by == kEndedByCancel;
    // A stop asked for and not carried out that way may have reached the
    // sandbox as it ended anyway (a backend may end the sandbox instead).
    const bool stop_elsewise = request.stop->requested() && !clean_cancel;
    keep = shared && !host_timed_out && !stop_elsewise &&
           (result.outcome == Outcome::kExited || result.outcome == Outcome::kSignaled ||
            clean_timeout || clean_cancel);
    if (capped_by_lifetime && result.outcome == Outcome::kTimedOut && !host_timed_out) {
      result.ended_by = std::string(kEndedByLifetime);
      result.notes.push_back("the task's lifetime (" +
                             std::to_string(OwnLifetime(task).count()) +
                             " s) ended the command");
    }
    if (shared) {
      result.notes.push_back(created ? "shared sandbox: created for this task"
                                     : "shared sandbox: reused");
      if (!keep) {
        result.notes.push_back("shared sandbox: retired after this task (" +
                               std::string(OutcomeName(result.outcome)) +
                               (host_timed_out ? ", host deadline" : "") + ")");
      }
    }
    return result;
  }

  Backend& backend_;
  ResultArchive& archive_;
  const RunOptions& options_;
  std::filesystem::path empty_dir_;  ///< Put as a shared task's fresh directory.
  std::string run_id_;
  std::string fallback_reason_;
  RunListener& listener_;
  const int places_;
  std::mutex places_mu_;
  std::map<std::string, int> places_by_key_;  // Guarded by places_mu_.
};

RunRecord Summarise(const std::string& run_id, const std::string& backend,
                    const std::vector<TaskRecord>& records, const RunOptions& options,
                    const RunState& state) {
  RunRecord run;
  run.run_id = run_id;
  run.backend = backend;
  run.host = options.host.empty() ? HostName() : options.host;
  run.user = UserName();
  run.command_line = options.command_line;
  run.labels = options.labels;
  run.superseded = options.supersedes;
  run.total = static_cast<int>(records.size());
  std::int64_t best_exec = -1;
  for (const auto& r : records) {
    run.task_ids.push_back(r.task_id);
    ++*RunCounter(run, RunCounterOf(r));
    if (options.race && Passed(r.result) && (best_exec < 0 || r.result.durations.exec_ms < best_exec)) {
      best_exec = r.result.durations.exec_ms;
      run.fastest_passing_task = r.task_id;
    }
  }
  if (options.race && !state.race_winner.empty()) {
    run.status = RunStatus::kPassed;
  } else if (state.user_cancelled) {
    run.status = RunStatus::kCancelled;
  } else if (run.passed + run.skipped == run.total) {
    run.status = RunStatus::kPassed;
  } else if (run.failed + run.timed_out > 0) {
    run.status = RunStatus::kFailed;
  } else {
    run.status = RunStatus::kError;
  }
  return run;
}

}  // namespace

std::string_view IsolationName(Isolation isolation) {
  return isolation == Isolation::kProcess ? "process" : "sandbox";
}

std::optional<Isolation> IsolationFromName(std::string_view name) {
  if (name == "sandbox") return Isolation::kSandbox;
  if (name == "process") return Isolation::kProcess;
  return std::nullopt;
}

std::string SharedTaskDirectory(const std::string& task_id) {
  return ".sandrun-tasks/" + task_id;
}

Status ValidateTask(const Task& task) {
  std::string who = "task '" + task.id + "'";
  if (!ValidTaskId(task.id)) {
    return InvalidArgumentError(who + ": id must be 1-128 characters of letters, digits, "
                                      "'.', '_' or '-'");
  }
  if (task.exec.argv.empty() || task.exec.argv[0].empty()) {
    return InvalidArgumentError(who + ": the command is empty");
  }
  if (task.exec.timeout.count() < 0) {
    return InvalidArgumentError(who + ": timeout must be positive");
  }
  // Empty means the default where the field has one (destination, cwd, workdir).
  auto inside = [&](std::string_view what, const std::string& path) {
    Status status = CheckSandboxRelativePath(what, path);
    return status.ok() ? status : InvalidArgumentError(who + ": " + status.message());
  };
  // Where each upload lands (UploadDestination checks its destination),
  // and whether it is a file there.
  struct Landing {
    std::string path;
    const FileUpload* upload;
    bool is_file;
  };
  std::vector<Landing> landings;
  for (const auto& upload : task.sandbox.uploads) {
    std::error_code ec;
    if (upload.source.empty()) return InvalidArgumentError(who + ": upload source is empty");
    if (!std::filesystem::exists(upload.source, ec)) {
      return InvalidArgumentError(who + ": upload source '" + upload.source +
                                  "' does not exist");
    }
    auto lands = UploadDestination(upload);
    if (!lands.ok()) return InvalidArgumentError(who + ": " + lands.status().message());
    landings.push_back({*lands, &upload, !std::filesystem::is_directory(upload.source, ec)});
  }
  // Two uploads that cannot both land: one puts a file where another needs
  // a directory (`--upload f:sub --upload d:sub/`).
  for (const Landing& file : landings) {
    if (!file.is_file) continue;
    for (const Landing& other : landings) {
      if (other.path.size() > file.path.size() && other.path.compare(0, file.path.size(), file.path) == 0 &&
          other.path[file.path.size()] == '/') {
        return InvalidArgumentError(who + ": upload '" + file.upload->source + "' puts a file at '" +
                                    file.path + "', where upload '" + other.upload->source +
                                    "' needs a directory ('" + other.path + "')");
      }
    }
  }
  for (const auto& download : task.downloads) SANDRUN_RETURN_IF_ERROR(inside("download path", download));
  for (const auto& [download, host_path] : task.host_copies) {
    if (std::find(task.downloads.begin(), task.downloads.end(), download) == task.downloads.end()) {
      return InvalidArgumentError(who + ": '" + download + "' is copied to the host but not downloaded");
    }
    if (host_path.empty()) return InvalidArgumentError(who + ": no host path for download '" + download + "'");
  }
  if (!task.exec.cwd.empty()) SANDRUN_RETURN_IF_ERROR(inside("cwd", task.exec.cwd));
  if (!task.sandbox.workdir.empty()) SANDRUN_RETURN_IF_ERROR(inside("workdir", task.sandbox.workdir));
  for (const auto& [key, value] : task.exec.env) {
    if (key.empty() || key.find('=') != std::string::npos) {
      return InvalidArgumentError(who + ": bad environment variable name '" + key + "'");
    }
  }
  return OkStatus();
}

Status ValidateTasks(const std::vector<Task>& tasks) {
  std::map<std::string, int> seen;
  for (const auto& task : tasks) {
    SANDRUN_RETURN_IF_ERROR(ValidateTask(task));
    if (++seen[task.id] > 1) {
      return InvalidArgumentError("task id '" + task.id + "' is used more than once");
    }
  }
  return OkStatus();
}

std::shared_ptr<Backend> FirstAvailableBackend(const std::vector<BackendCandidate>& candidates,
                                               std::string* skipped) {
  skipped->clear();
  for (const auto& candidate : candidates) {
    std::string name = candidate.backend ? std::string(candidate.backend->Name()) : candidate.name;
    std::string reason = candidate.construction_error;
    if (candidate.backend) {
      Status available = candidate.backend->CheckAvailable();
      if (available.ok()) return candidate.backend;
      reason = available.message();
    }
    *skipped += (skipped->empty() ? "" : "; ") + name + " unavailable: " + reason;
  }
  return nullptr;
}

WarmPoolSize SizeWarmPool(const Capabilities& caps, int tasks_per_sandbox, int sandboxes,
                          int jobs, bool clamp_to_jobs) {
  const int backend_places = std::max(1, caps.tasks_per_sandbox);
  WarmPoolSize size;
  size.places = tasks_per_sandbox > 0 && backend_places > 1 ? tasks_per_sandbox : backend_places;
  if (clamp_to_jobs) size.places = std::min(size.places, jobs);
  size.places = std::max(1, size.places);
  size.sandboxes = sandboxes > 0 ? sandboxes : (jobs + size.places - 1) / size.places;
  return size;
}

Engine::Engine(std::vector<BackendCandidate> candidates)
    : candidates_(std::move(candidates)), listeners_(std::make_shared<ListenerList>()) {}

void Engine::AddListener(std::shared_ptr<RunListener> listener) {
  listeners_->Add(std::move(listener));
}

Result<RunOutcome> Engine::Run(std::vector<Task> tasks, const RunOptions& options,
                               const CancelFlag& cancel) {
  SerializedListener listener(listeners_);

  // The first available candidate wins; the others' reasons are kept.
  std::string skipped;
  std::shared_ptr<Backend> backend = FirstAvailableBackend(candidates_, &skipped);
  if (!backend) {
    return FailedPreconditionError(skipped.empty() ? "no backend configured" : skipped);
  }
  std::string fallback_reason;
  if (!skipped.empty()) {
    fallback_reason = skipped + "; used " + std::string(backend->Name());
    listener.OnWarning(fallback_reason);
  }

  // Bad input only the chosen backend can see ends here, before the run
  // and its records exist; a backend that cannot check leaves it to Create.
  for (const auto& task : tasks) {
    Status valid = backend->ValidateSpec(task.sandbox);
    if (valid.code() == StatusCode::kInvalidArgument) {
      return tasks.size() == 1 ? valid
                               : InvalidArgumentError("task '" + task.id + "': " +
                                                      valid.message());
    }
  }

  std::shared_ptr<ResultArchive> archive_owner = options.archive;
  if (archive_owner == nullptr) {
    auto store = backend->OpenArchive();
    if (!store.ok()) return store.status().WithContext("opening the result archive");
    // One outbox per backend, so `results sync` delivers a record to the
    // archive it was meant for.
    archive_owner = std::make_shared<ResultArchive>(
        std::shared_ptr<ArchiveStore>(std::move(store).value()),
        options.outbox_dir / std::string(backend->Name()));
  }
  ResultArchive& archive = *archive_owner;
  std::string run_id;
  int run_part = 0;
  if (options.run_group.empty()) {
    SANDRUN_ASSIGN_OR_RETURN(run_id, archive.BeginRun());
  } else {
    std::vector<std::string> ids;
    for (const auto& task : tasks) ids.push_back(task.id);
    SANDRUN_ASSIGN_OR_RETURN(
        auto joined, archive.JoinRunGroup(options.run_group, options.run_group_owner_pid, ids));
    run_id = joined.run_id;
    run_part = joined.part;
    for (std::size_t i = 0; i < tasks.size(); ++i) tasks[i].id = joined.task_ids[i];
  }

  Clock::time_point run_start = Clock::now();
  std::string started_at = NowRfc3339();
  int jobs = std::max(1, std::min<int>(options.jobs, static_cast<int>(tasks.size())));
  RunInfo info{run_id, std::string(backend->Name()), archive.store().Describe(),
               archive.outbox_dir().string(), static_cast<int>(tasks.size()), jobs};
  listener.OnRunStart(info);

  // A pool of the run's own never needs more places than workers; one kept
  // across runs (the service) serves other runs' tasks at the same time.
  const WarmPoolSize size =
      SizeWarmPool(backend->GetCapabilities(), options.tasks_per_sandbox, options.sandboxes, jobs,
                   /*clamp_to_jobs=*/options.warm_pool == nullptr);
  RunContext context(*backend, archive, options, run_id, fallback_reason, listener, size.places,
                     size.sandboxes);
  context.state.cancels_one_command = backend->GetCapabilities().cancels_one_command;
  std::vector<TaskRecord> records(tasks.size());
  std::vector<std::thread> workers;
  for (int i = 0; i < jobs; ++i) {
    workers.emplace_back([&] { context.Work(tasks, records, run_start); });
  }

  // Monitor: host deadlines and cancellation, until every task has ended.
  {
    RunState& state = context.state;
    std::unique_lock lock(state.mu);
    while (state.finished < tasks.size()) {
      state.cv.wait_for(lock, std::chrono::milliseconds(20));
      RunState::Ending to_end;
      if (cancel.cancelled() && !state.user_cancelled) {
        state.user_cancelled = true;
        to_end = state.StopAllLocked();
      }
      Clock::time_point now = Clock::now();
      for (auto& [index, slot] : state.slots) {
        // Past the backend's own timeout and the grace: the backend is not
        // answering, so its sandbox ends (not a request it may ignore too).
        if (slot.deadline && now > *slot.deadline && !slot.host_timed_out &&
            slot.sandbox != nullptr) {
          slot.host_timed_out = true;
          to_end.sandboxes.push_back(slot.sandbox);
        }
      }
      if (to_end.sandboxes.empty() && to_end.commands.empty()) continue;
      lock.unlock();
      EndAll(to_end);
      lock.lock();
    }
  }
  for (auto& worker : workers) worker.join();
  // The warm sandboxes end while the records go (a pool the caller gave
  // outlives the run).
  context.own_pool.EndAll();

  RunRecord run = Summarise(run_id, std::string(backend->Name()), records, options, context.state);
  run.started_at = started_at;
  run.finished_at = NowRfc3339();
  run.wall_ms = MillisBetween(run_start, Clock::now());
  // WriteRun also retries the task records that could not be delivered yet.
  Status written = run_part == 0               ? archive.WriteRun(run)
                   : options.archive != nullptr ? archive.WriteRunPartBatched(run, run_part)
                                                : archive.WriteRunPart(run, run_part);
  context.reaper.Wait();  // While the records went, the last sandboxes ended.
  const int undelivered = archive.PendingCount(run_id);
  if (!written.ok()) {
    listener.OnWarning(std::to_string(undelivered) + " record(s) of run " + run_id +
                       " kept in the outbox " + archive.outbox_dir().string() + " (" +
                       written.ToString() + "); `sandrun results sync` delivers them");
  }
  listener.OnRunEnd(run);

  RunOutcome outcome;
  outcome.run = std::move(run);
  outcome.tasks = std::move(records);
  outcome.archive = archive.store().Describe();
  outcome.outbox = archive.outbox_dir().string();
  outcome.undelivered = undelivered;
  return outcome;
}

int BatchExitCode(const RunRecord& run) {
  switch (run.status) {
    case RunStatus::kPassed: return 0;
    case RunStatus::kCancelled: return kExitInterrupted;
    case RunStatus::kError: return kExitSandrunError;
    case RunStatus::kFailed:
    case RunStatus::kIncomplete: return 1;
  }
  return 1;
}

}  // namespace sandrun
