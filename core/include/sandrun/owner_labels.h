// The owner and expiry labels a remote backend puts on every sandbox it makes,
// and how `sandrun cleanup` reads them back. They let ListLeftovers tell the
// sandbox of a run still in progress from one a killed run left behind:
//
//   <prefix>owner-pid    the pid of the sandrun process that made it
//   <prefix>owner-host   that process's host (HostName())
//   <prefix>expires      unix seconds at which the sandbox's lifetime ends
//
// The prefix is the backend's own namespace ("dev.sandrun." on Docker, none on
// Modal, whose tags are already sandrun's).
#ifndef SANDRUN_OWNER_LABELS_H_
#define SANDRUN_OWNER_LABELS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "sandrun/backend.h"

namespace sandrun {

/// The three labels for a sandbox made now by this process, whose lifetime
/// is `lifetime`.
std::map<std::string, std::string> OwnerLabels(std::string_view prefix,
                                               std::chrono::seconds lifetime);

/// Reads the labels back from `leftover.labels` into `owner_alive` (made on
/// this host by a process that still runs) and `expired` (`expires` is set
/// and not after `now_unix`: a lifetime ending at T is over at T). Missing or
/// malformed labels count as "owner gone" and "not expired".
void ReadOwnerLabels(std::string_view prefix, std::int64_t now_unix, Leftover& leftover);

/// Seconds since the epoch, the clock `expires` is written in.
std::int64_t UnixSecondsNow();

}  // namespace sandrun

#endif  // SANDRUN_OWNER_LABELS_H_
