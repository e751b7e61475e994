#include "sandrun/owner_labels.h"

#include <unistd.h>

#include <cstdlib>

#include "sandrun/util.h"

namespace sandrun {
namespace {

std::string Key(std::string_view prefix, std::string_view name) {
  return std::string(prefix) + std::string(name);
}

std::string LabelOf(const Leftover& leftover, const std::string& key) {
  auto it = leftover.labels.find(key);
  return it == leftover.labels.end() ? std::string() : it->second;
}

}  // namespace

std::int64_t UnixSecondsNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::map<std::string, std::string> OwnerLabels(std::string_view prefix,
                                               std::chrono::seconds lifetime) {
  return {{Key(prefix, "owner-pid"), std::to_string(::getpid())},
          {Key(prefix, "owner-host"), HostName()},
          {Key(prefix, "expires"), std::to_string(UnixSecondsNow() + lifetime.count())}};
}

void ReadOwnerLabels(std::string_view prefix, std::int64_t now_unix, Leftover& leftover) {
  const int pid = std::atoi(LabelOf(leftover, Key(prefix, "owner-pid")).c_str());
  leftover.owner_alive = LabelOf(leftover, Key(prefix, "owner-host")) == HostName() &&
                         pid > 0 && ProcessAlive(pid);
  const long long expires = std::atoll(LabelOf(leftover, Key(prefix, "expires")).c_str());
  leftover.expired = expires > 0 && expires <= now_unix;
}

}  // namespace sandrun
