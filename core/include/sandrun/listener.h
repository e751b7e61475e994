// RunListener: how a run reports progress. The console table, JSON lines and
// JUnit XML are listeners; the engine only fires events.
//
// Events are delivered one at a time (the engine serialises them), from
// whichever thread produced them. Start events go to listeners in the order
// they were added, End events in reverse, so they nest.
#ifndef SANDRUN_LISTENER_H_
#define SANDRUN_LISTENER_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/record.h"

namespace sandrun {

struct Task;

struct RunInfo {
  std::string run_id;
  std::string backend;        ///< The backend chosen for the run.
  std::string archive;        ///< ArchiveStore::Describe() of its archive.
  std::string outbox;         ///< Host path of the outbox.
  int total_tasks = 0;
  int jobs = 0;
};

class RunListener {
 public:
  virtual ~RunListener() = default;
  /// Fired once, before any task starts.
  virtual void OnRunStart(const RunInfo& info) = 0;
  /// Fired when a task gets a sandbox slot (attempt 1) or is retried (2, ...).
  virtual void OnTaskStart(const Task& task, int attempt) = 0;
  /// Fired once per task with its final record (already in the outbox).
  virtual void OnTaskEnd(const TaskRecord& record) = 0;
  /// Something the user should know that is not a task result (a fallback,
  /// an archive delivery failure).
  virtual void OnWarning(std::string_view message) = 0;
  /// Fired once, after every task ended and run.json was written.
  virtual void OnRunEnd(const RunRecord& record) = 0;
};

/// No-op defaults; override what you need.
class RunListenerBase : public RunListener {
 public:
  void OnRunStart(const RunInfo&) override {}
  void OnTaskStart(const Task&, int) override {}
  void OnTaskEnd(const TaskRecord&) override {}
  void OnWarning(std::string_view) override {}
  void OnRunEnd(const RunRecord&) override {}
};

/// Fans events out to many listeners (Start in order, End in reverse).
class ListenerList : public RunListener {
 public:
  void Add(std::shared_ptr<RunListener> listener);
  void OnRunStart(const RunInfo& info) override;
  void OnTaskStart(const Task& task, int attempt) override;
  void OnTaskEnd(const TaskRecord& record) override;
  void OnWarning(std::string_view message) override;
  void OnRunEnd(const RunRecord& record) override;

 private:
  std::vector<std::shared_ptr<RunListener>> listeners_;
};

}  // namespace sandrun

#endif  // SANDRUN_LISTENER_H_
