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
//
// Every build of a test binary is a new file, so the cache would grow without
// end. The marker's mtime says when the file was last used: a process that
// uses a file whose marker is older than a quarter of `keep` writes the marker
// again (and sends the file only if a removal took it; a file with its marker
// is never rewritten, since a sandbox may be running it). After an upload of
// new files, and at most once a day per volume (the stamp `.sandrun-evicted`,
// written after a removal that worked), a container of the tool image (or of
// the last sandbox image seen: it has the launcher's sh) removes the files
// whose marker is older than `keep`, and files that never got a marker (an upload cut short) as old, in
// directories nothing landed in for ten minutes.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_EXE_CACHE_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_EXE_CACHE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "docker_client.h"
#include "docker_volume_helper.h"
#include "sandrun/portable_exe.h"
#include "sandrun/status.h"

namespace sandrun::docker {

/// How long unused files stay (zero `keep`: for ever), and the image whose
/// `sh` and `find` remove the older ones (empty: the sandboxes' image, see
/// NoteSandboxImage). It is never pulled.
struct ExeCacheRetention {
  std::chrono::seconds keep{std::chrono::hours(24 * 7)};
  std::string tool_image;
};

class ExeCache {
 public:
  /// `portable`: how host executables are planned (the host's LD_LIBRARY_PATH,
  /// none by default).
  ExeCache(std::shared_ptr<DockerClient> client, std::string volume,
           PortableOptions portable = {}, ExeCacheRetention retention = {});

  const std::string& volume() const { return helper_.volume(); }
  const PortableOptions& portable_options() const { return portable_; }
  /// Makes sure every file of `plan` is in the volume: the missing ones go
  /// up together in one upload, with the markers of the ones getting old.
  /// Returns how many bytes of files were sent.
  Result<std::uintmax_t> Ensure(const PortablePlan& plan);

  /// Removes the files unused for longer than `keep` now, whatever the
  /// stamp says; returns the tool container's exit code.
  Result<int> RemoveUnused();

  /// The image of a sandbox being made: what removes old files when no tool
  /// image is set (an image that runs the launcher has a shell).
  void NoteSandboxImage(const std::string& image);

 private:
  /// How long ago the file at sandbox path `path` (under /sandrun/exe) was
  /// written in the volume: nullopt when it is not there.
  Result<std::optional<std::chrono::seconds>> AgeInVolume(const std::string& path);
  /// Sends what `files` lack in the volume, with their markers, and writes
  /// the markers of the ones getting old; the caller holds upload_mu_.
  Result<std::uintmax_t> UploadMissing(const std::vector<const PortableFile*>& files,
                                       bool* sent_new_files);
  /// RemoveUnused() when the stamp is missing or a day old; errors are
  /// dropped (housekeeping never fails a run).
  void RemoveUnusedWhenDue();

  VolumeHelper helper_;
  const PortableOptions portable_;
  const ExeCacheRetention retention_;
  std::atomic<bool> removal_checked_{false};  ///< Once per process at most.
  std::mutex image_mu_;
  std::string sandbox_image_;  ///< Guarded by image_mu_.
  std::mutex upload_mu_;  ///< One upload at a time: the others then find their files.
  std::mutex known_mu_;
  std::set<std::string> known_present_;  ///< Sandbox paths; guarded by known_mu_.
};

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_EXE_CACHE_H_
