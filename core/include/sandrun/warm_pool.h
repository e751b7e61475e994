// The warm sandboxes of one run (Isolation::kProcess), shared by all of its
// workers; or of several runs, when a caller keeps one for them
// (RunOptions::warm_pool: `sandrun service`). And SandboxReaper, which ends
// sandboxes in the background.
//
// A sandbox has `places`: how many tasks run in it at once. The pool holds
// at most `max_sandboxes` sandboxes (in use, being made, or idle). A task
// gets a place in the least busy sandbox of its key that has enough
// lifetime left; else a new sandbox when the pool has room (an idle one of
// another key, or one too old, is ended to make room); else it waits for a
// place. Workers that start together share the sandboxes being made rather
// than each making its own, so a run starts ceil(jobs / places) sandboxes
// at once, not `jobs`.
//
// A sandbox given back with keep == false is retired: it takes no new task
// and ends when its last task has given its place back, so one task's OOM
// or host deadline never cuts short the others still running in it.
#ifndef SANDRUN_WARM_POOL_H_
#define SANDRUN_WARM_POOL_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/status.h"

namespace sandrun {

/// Ends sandboxes in the background: removing one can take a request to a
/// remote engine, which neither the next task nor the delivery of records
/// needs to wait for. Wait() (or the destructor) makes sure none outlives
/// its owner.
class SandboxReaper {
 public:
  ~SandboxReaper() { Wait(); }
  void Add(std::shared_ptr<Sandbox> sandbox);
  void Wait();

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

class WarmPool {
 public:
  using Clock = std::chrono::steady_clock;
  /// Makes one sandbox for the pool.
  using Make = std::function<Result<std::unique_ptr<Sandbox>>()>;
  /// Ends a sandbox the pool no longer needs (in the background).
  using End = std::function<void(std::shared_ptr<Sandbox>)>;

  WarmPool(int max_sandboxes, End end);
  ~WarmPool() { EndAll(); }
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  /// What a task holds while it runs.
  struct Place {
    std::shared_ptr<Sandbox> sandbox;
    bool created = false;  ///< The sandbox was made for this task.
    int entry = 0;         ///< Which of the pool's sandboxes.
  };

  /// A place for a task whose sandbox is `key` and that needs `needed` of
  /// the sandbox's lifetime. A new sandbox is made with `make`, holds
  /// `places` tasks and lives `lifetime`. Blocks while the pool is full and
  /// busy; returns kCancelled once `stopped()` is true. The error of a
  /// `make` that failed goes to the task that asked for it.
  Result<Place> Acquire(const std::string& key, int places, std::chrono::seconds lifetime,
                        std::chrono::seconds needed, const Make& make,
                        const std::function<bool()>& stopped);

  /// Gives a place back. `keep` false retires its sandbox.
  void Release(const Place& place, bool keep);

  /// Ends every sandbox; places still held end theirs on Release.
  void EndAll();

 private:
  struct Entry {
    int id = 0;
    std::string key;
    std::shared_ptr<Sandbox> sandbox;  // Null while it is being made.
    Clock::time_point made;
    std::chrono::seconds lifetime{0};
    int places = 1;
    int busy = 0;
    bool retired = false;
  };
  bool Fits(const Entry& entry, const std::string& key, std::chrono::seconds needed) const;
  // Removes an entry and hands its sandbox to end_ (caller holds mu_).
  void EndLocked(std::list<Entry>::iterator it);

  const int max_sandboxes_;
  End end_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::list<Entry> entries_;
  int next_id_ = 1;
};

}  // namespace sandrun

#endif  // SANDRUN_WARM_POOL_H_
