#include "sandrun/listener.h"

namespace sandrun {

void ListenerList::Add(std::shared_ptr<RunListener> listener) {
  listeners_.push_back(std::move(listener));
}

void ListenerList::OnRunStart(const RunInfo& info) {
  for (auto& l : listeners_) l->OnRunStart(info);
}
void ListenerList::OnTaskStart(const Task& task, int attempt) {
  for (auto& l : listeners_) l->OnTaskStart(task, attempt);
}
void ListenerList::OnTaskEnd(const TaskRecord& record) {
  for (auto it = listeners_.rbegin(); it != listeners_.rend(); ++it) (*it)->OnTaskEnd(record);
}
void ListenerList::OnWarning(std::string_view message) {
  for (auto& l : listeners_) l->OnWarning(message);
}
void ListenerList::OnRunEnd(const RunRecord& record) {
  for (auto it = listeners_.rbegin(); it != listeners_.rend(); ++it) (*it)->OnRunEnd(record);
}

}  // namespace sandrun
