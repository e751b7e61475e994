// The portable-executable cache on Modal: a Volume (default
// "sandrun-exe-cache", setting `exe_cache_volume`) holding
// <sha256>/<name> files (sandrun/portable_exe.h), mounted read-only at
// /sandrun/exe in every sandbox created with a portable upload. A test binary
// and its libraries cross to Modal once, whatever the number of sandboxes
// and runs; each sandbox then receives only the small launcher script.
//
// Files are put before the sandbox is created, because a mounted Volume
// shows what was committed before its sandbox started (Modal reloads a
// mount only when asked). A Volume commit is atomic per VolumePutFiles2, so
// a listed file is a whole file. Thread-safe: concurrent creates of one
// backend share one lookup of the Volume and one upload per file set.
// Internal to plugins/modal.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_EXE_CACHE_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_EXE_CACHE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "modal_client.h"
#include "sandrun/portable_exe.h"
#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun::modal {

class ExeCache {
 public:
  /// `volume_id` looks the Volume up (created if missing, version checked).
  ExeCache(std::shared_ptr<ControlPlane> control, std::string volume_name,
           std::function<Result<std::string>()> volume_id, PortableOptions portable);

  struct Mount {
    std::string volume_id;           ///< Empty: nothing to mount.
    std::set<std::string> served;    ///< Sandbox paths the mount provides.
    std::uint64_t bytes_sent = 0;    ///< Put into the Volume by this call.
  };
  /// Puts the files of every portable upload of `spec` that the Volume lacks
  /// and says what a sandbox mounting it at kPortableExeRoot gets.
  Result<Mount> Prepare(const SandboxSpec& spec);

 private:
  const std::shared_ptr<ControlPlane> control_;
  const std::string volume_name_;
  const std::function<Result<std::string>()> volume_id_;
  const PortableOptions portable_;
  std::mutex mu_;                     ///< One upload at a time.
  std::set<std::string> present_;     ///< Volume paths known there. Guarded by mu_.
};

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_EXE_CACHE_H_
