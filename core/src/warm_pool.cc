#include "sandrun/warm_pool.h"

#include <algorithm>

namespace sandrun {

namespace {
// How often a waiting task looks at `stopped()`.
constexpr std::chrono::milliseconds kStopPoll{50};
}  // namespace

void SandboxReaper::Add(std::shared_ptr<Sandbox> sandbox) {
  std::lock_guard lock(mu_);
  threads_.emplace_back([sandbox = std::move(sandbox)]() mutable {
    sandbox->Terminate().IgnoreError();
    sandbox.reset();  // The backend's own clean-up, here too.
  });
}

void SandboxReaper::Wait() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
}

WarmPool::WarmPool(int max_sandboxes, End end)
    : max_sandboxes_(std::max(1, max_sandboxes)), end_(std::move(end)) {}

bool WarmPool::Fits(const Entry& entry, const std::string& key,
                    std::chrono::seconds needed) const {
  return !entry.retired && entry.key == key && Clock::now() - entry.made + needed <= entry.lifetime;
}

void WarmPool::EndLocked(std::list<Entry>::iterator it) {
  if (it->sandbox != nullptr) end_(std::move(it->sandbox));
  entries_.erase(it);
  cv_.notify_all();
}

Result<WarmPool::Place> WarmPool::Acquire(const std::string& key, int places,
                                          std::chrono::seconds lifetime,
                                          std::chrono::seconds needed, const Make& make,
                                          const std::function<bool()>& stopped) {
  auto find = [this](int id) {
    return std::find_if(entries_.begin(), entries_.end(), [id](const Entry& e) { return e.id == id; });
  };
  std::unique_lock lock(mu_);
  for (;;) {
    if (stopped()) return CancelledError("the run was stopped");
    // A free place in a sandbox of this key: a ready one first, the least
    // busy of them; else one being made.
    Entry* best = nullptr;
    for (Entry& entry : entries_) {
      if (!Fits(entry, key, needed) || entry.busy >= entry.places) continue;
      const bool ready = entry.sandbox != nullptr;
      const bool best_ready = best != nullptr && best->sandbox != nullptr;
      if (best == nullptr || (ready && !best_ready) ||
          (ready == best_ready && entry.busy < best->busy)) {
        best = &entry;
      }
    }
    if (best != nullptr && best->sandbox != nullptr) {
      ++best->busy;
      return Place{best->sandbox, false, best->id};
    }
    if (best != nullptr) {
      // Being made by another task: wait for it (its place is held).
      const int id = best->id;
      ++best->busy;
      for (;;) {
        auto it = find(id);
        if (it == entries_.end()) break;  // Its making failed: look again.
        if (it->retired) {
          // Retired before it served us (its first task's trouble): leave it.
          if (--it->busy <= 0 && it->sandbox != nullptr) EndLocked(it);
          break;
        }
        if (it->sandbox != nullptr) return Place{it->sandbox, false, id};
        if (stopped()) {
          --it->busy;
          return CancelledError("the run was stopped");
        }
        cv_.wait_for(lock, kStopPoll);
      }
      continue;
    }
    if (static_cast<int>(entries_.size()) >= max_sandboxes_) {
      // Full: end an idle sandbox to make room.
      auto idle = std::find_if(entries_.begin(), entries_.end(),
                               [](const Entry& e) { return e.busy == 0 && e.sandbox != nullptr; });
      if (idle != entries_.end()) {
        EndLocked(idle);
      } else {
        // All busy. So that a task of another sandbox is not kept waiting
        // for ever by tasks that keep filling the others, one sandbox that
        // cannot take it stops taking tasks and ends when it empties.
        const bool draining = std::any_of(entries_.begin(), entries_.end(),
                                          [](const Entry& e) { return e.retired; });
        if (!draining) {
          Entry* drain = nullptr;
          for (Entry& entry : entries_) {
            if (entry.sandbox == nullptr || Fits(entry, key, needed)) continue;
            if (drain == nullptr || entry.busy < drain->busy) drain = &entry;
          }
          if (drain != nullptr) drain->retired = true;
        }
        cv_.wait_for(lock, kStopPoll);
        continue;
      }
    }
    // Make one; tasks that come meanwhile wait for it instead of making
    // their own.
    const int id = next_id_++;
    entries_.push_back(Entry{id, key, nullptr, Clock::now(), lifetime, std::max(1, places), 1, false});
    lock.unlock();
    Result<std::unique_ptr<Sandbox>> made = make();
    lock.lock();
    auto it = find(id);
    if (!made.ok() || it == entries_.end()) {
      if (it != entries_.end()) entries_.erase(it);
      cv_.notify_all();
      if (made.ok()) end_(std::shared_ptr<Sandbox>(std::move(made).value()));
      return made.ok() ? CancelledError("the run ended") : made.status();
    }
    it->sandbox = std::shared_ptr<Sandbox>(std::move(made).value());
    cv_.notify_all();
    return Place{it->sandbox, true, id};
  }
}

void WarmPool::Release(const Place& place, bool keep) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.id == place.entry; });
  if (it == entries_.end()) return;  // Ended with the pool.
  --it->busy;
  if (!keep) it->retired = true;
  if (it->retired && it->busy <= 0) {
    EndLocked(it);
    return;
  }
  cv_.notify_all();
}

void WarmPool::EndAll() {
  std::lock_guard lock(mu_);
  while (!entries_.empty()) EndLocked(entries_.begin());
}

}  // namespace sandrun
