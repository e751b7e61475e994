// Internal to plugins/modal: one in-flight lookup per key, shared by every
// caller that asks for that key while it runs. At -j 64 the first sandboxes
// all need the same image, secrets, environment settings and auth token;
// Modal should see one call for each, not 64.
//
// A success is remembered until Forget(key); a failure goes to the callers
// that waited for that attempt and is then forgotten, so the next caller
// tries again. `fetch` runs on the first caller's thread without the lock
// held. Thread-safe.
#ifndef SANDRUN_PLUGINS_MODAL_SINGLE_FLIGHT_H_
#define SANDRUN_PLUGINS_MODAL_SINGLE_FLIGHT_H_

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "sandrun/status.h"

namespace sandrun::modal {

template <typename Value>
class SingleFlight {
 public:
  /// The remembered value for `key`, else the answer of the lookup under
  /// way, else the answer of `fetch` (which this caller then runs).
  Result<Value> Get(const std::string& key, const std::function<Result<Value>()>& fetch) {
    std::shared_ptr<Flight> flight;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (auto done = done_.find(key); done != done_.end()) return done->second;
      auto running = flights_.find(key);
      if (running != flights_.end()) {
        flight = running->second;
        cv_.wait(lock, [&] { return flight->answer.has_value(); });
        return *flight->answer;
      }
      flight = std::make_shared<Flight>();
      flights_[key] = flight;
    }
    Result<Value> answer = fetch();
    std::lock_guard<std::mutex> lock(mu_);
    if (answer.ok()) done_.insert_or_assign(key, *answer);
    flight->answer = answer;
    flights_.erase(key);
    cv_.notify_all();
    return answer;
  }

  /// The remembered value for `key`, if any (no lookup).
  std::optional<Value> Peek(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto done = done_.find(key);
    if (done == done_.end()) return std::nullopt;
    return done->second;
  }

  /// Drops the remembered value: the next Get looks it up again.
  void Forget(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    done_.erase(key);
  }

 private:
  struct Flight {
    std::optional<Result<Value>> answer;  // Guarded by SingleFlight::mu_.
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<Flight>> flights_;  // Guarded by mu_.
  std::map<std::string, Value> done_;                       // Guarded by mu_.
};

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_SINGLE_FLIGHT_H_
