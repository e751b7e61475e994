// Internal to the local backend: copying files into and out of a sandbox
// directory, with the checks that keep a download inside its target.
#ifndef SANDRUN_PLUGINS_LOCAL_LOCAL_FILES_H_
#define SANDRUN_PLUGINS_LOCAL_LOCAL_FILES_H_

#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun::local {

/// A file descriptor closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

/// Opens directory `base`/`relative` (creating missing parts when `create`),
/// one component at a time without following symlinks, so a symlink a task
/// planted inside the sandbox can never redirect sandrun out of it.
/// kPermissionDenied names a symlinked component; kInvalidArgument a ".."
/// or absolute one.
Result<UniqueFd> OpenDirectoryBeneath(const std::filesystem::path& base,
                                      const std::filesystem::path& relative, bool create);

/// Copies upload.source (file or directory, recursively, modes kept) to
/// upload.destination, relative to `workdir` and inside it (absolute or ".."
/// destinations are kInvalidArgument); empty or ending in '/' means "under
/// the source's file name". A symlink as the source is followed; symlinks
/// inside an uploaded directory are kept only when they point inside it
/// (kPermissionDenied otherwise). Nothing is written through a symlink
/// already in the sandbox. kNotFound when the source is missing.
Status CopyIn(const FileUpload& upload, const std::filesystem::path& workdir);

/// Copies `sandbox_path` (relative to `workdir`; absolute is kInvalidArgument) into
/// `host_dir` under its file name ("." copies the contents). Symlinks to
/// files inside `sandbox_root` or `workdir` are copied as the files they
/// name; a symlink leading anywhere else, a relative path climbing out of
/// the sandbox, or a symlinked directory is refused with kPermissionDenied
/// naming the path, and nothing is written outside `host_dir`. Returns the
/// paths written, relative to host_dir, '/'-separated and sorted.
Result<std::vector<std::string>> CopyOut(const std::string& sandbox_path,
                                         const std::filesystem::path& host_dir,
                                         const std::filesystem::path& workdir,
                                         const std::filesystem::path& sandbox_root);

}  // namespace sandrun::local

#endif  // SANDRUN_PLUGINS_LOCAL_LOCAL_FILES_H_
