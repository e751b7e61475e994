// The portable-executable cache of one engine: a named volume (default
// "sandrun-exe-cache") holding /sandrun/exe/<sha256>/<name> files
// (sandrun/portable_exe.h), mounted read-only at /sandrun/exe in every
// sandbox. A file crosses to the engine once, whatever the number of
// sandboxes, runs and sandrun processes that use it; a sandbox then only
// receives the small launcher script.
//
// A file <name> counts as present when its directory also holds the marker
// `.<name>.complete`, written after the file in the same upload, so a reader
// never takes a half-written file. Thread-safe; concurrent uploads of the same
// files by one process are made once.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_EXE_CACHE_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_EXE_CACHE_H_

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "docker_client.h"
#include "docker_volume_helper.h"
#include "sandrun/portable_exe.h"
#include "sandrun/status.h"

namespace sandrun::docker {

class ExeCache {
 public:
  /// `portable`: how host executables are planned (the host's LD_LIBRARY_PATH,
  /// none by default).
  ExeCache(std::shared_ptr<DockerClient> client, std::string volume,
           PortableOptions portable = {});

  const std::string& volume() const { return helper_.volume(); }
  const PortableOptions& portable_options() const { return portable_; }
  /// Makes sure every file of `plan` is in the volume: the missing ones go
  /// up together in one upload. Returns how many bytes were sent.
  Result<std::uintmax_t> Ensure(const PortablePlan& plan);

 private:
  Result<bool> PresentInVolume(const PortableFile& file);

  VolumeHelper helper_;
  const PortableOptions portable_;
  std::mutex upload_mu_;  ///< One upload at a time: the others then find their files.
  std::mutex known_mu_;
  std::set<std::string> known_present_;  ///< Sandbox paths; guarded by known_mu_.
};

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_EXE_CACHE_H_
