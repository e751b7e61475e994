// The store contract: where a backend keeps the result archive.
//
// An ArchiveStore is a tree of files in some backend's volume (a host
// directory, a Docker volume, a Modal Volume), addressed by relative paths
// with '/' separators. A backend plugin returns one from
// Backend::OpenArchive(); sandrun's result archive (archive.h) puts its
// layout on top. This header is part of the plugin ABI (plugin_abi.h):
// keep it small, and bump SANDRUN_PLUGIN_ABI_VERSION when it changes.
#ifndef SANDRUN_ARCHIVE_STORE_H_
#define SANDRUN_ARCHIVE_STORE_H_

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/status.h"

namespace sandrun {

/// One item of ArchiveStore::PutFiles.
struct ArchivePut {
  std::string path;                 ///< Where in the store.
  std::filesystem::path host_path;  ///< A host file or directory tree.
};

/// A tree of files in some backend's volume. Paths are relative, '/'-separated
/// and never contain ".." (callers validate with IsSafeRelativePath).
/// Implementations must be thread-safe.
class ArchiveStore {
 public:
  virtual ~ArchiveStore() = default;
  /// "directory /home/me/.local/share/sandrun/results", for humans.
  virtual std::string Describe() const = 0;
  /// True when the tree is a directory on this host, so a write costs no
  /// request: the result archive then delivers each record at once. False
  /// for a volume or a service where every write is a request: records are
  /// then delivered in groups.
  virtual bool OnThisHost() const = 0;
  /// Stores a host file (or a whole directory tree) at `path`, replacing it.
  virtual Status PutFile(const std::string& path, const std::filesystem::path& host_path) = 0;
  virtual Status PutBytes(const std::string& path, std::string_view data) = 0;
  /// Stores several host files or trees, in order, each as PutFile would.
  /// The default calls PutFile for each; a store whose writes are requests
  /// sends them together. On failure a prefix of them may be stored.
  virtual Status PutFiles(const std::vector<ArchivePut>& puts);
  virtual Result<std::string> ReadBytes(const std::string& path) = 0;
  /// Names directly under `dir` ("" = root); directories end with '/'.
  /// kNotFound when `dir` does not exist.
  virtual Result<std::vector<std::string>> List(const std::string& dir) = 0;
  /// Every file under `dir` ("" = root), at any depth, read whole and keyed
  /// by its store path, for which `wanted` accepts the path and the path of
  /// each directory between `dir` and it (a directory's path ends with '/').
  /// `wanted` is called on the caller's thread, maybe more than once for a
  /// path. Names List() leaves out (temporaries) are left out. kNotFound when
  /// `dir` does not exist; a file or directory that goes while it is read is
  /// left out. The default lists and reads with several requests at once; a
  /// store where each request is costly (a Docker volume) reads the tree in
  /// one.
  virtual Result<std::map<std::string, std::string>> ReadTree(
      const std::string& dir, const std::function<bool(const std::string&)>& wanted);
  /// Copies `path` (file or directory) into host directory `dest`, as
  /// dest/<last component of path>. Refuses (kPermissionDenied, nothing
  /// copied) when it holds a symlink pointing outside `path`.
  virtual Status Fetch(const std::string& path, const std::filesystem::path& dest) = 0;
  /// Removes `path` recursively; OK when already absent.
  virtual Status Remove(const std::string& path) = 0;
};

/// An ArchiveStore that is a directory on this host (the local backend's
/// archive, and the outbox). Its contents are private to the user, always:
/// the root and every directory in it are mode 0700, every file 0600. The
/// root is created on demand; a root that already exists with a wider mode
/// is narrowed to 0700 when the store is constructed (opened), and every
/// directory a write passes through, and everything it writes, is narrowed
/// too, whatever the umask or the mode of the source.
/// Every write goes to a temporary name in the target's directory and is
/// renamed into place, so readers never see a partial file or tree.
/// OnThisHost() is true: the result archive then moves artifacts into the
/// root by rename instead of calling PutFiles, so a subclass that changes
/// how files are written must answer false.
class DirectoryArchiveStore : public ArchiveStore {
 public:
  explicit DirectoryArchiveStore(std::filesystem::path root);
  /// Creates directory `path` (and the root), mode 0700; returns its host path.
  Result<std::filesystem::path> MakeDirectory(const std::string& path);
  std::string Describe() const override;
  bool OnThisHost() const override { return true; }
  Status PutFile(const std::string& path, const std::filesystem::path& host_path) override;
  Status PutBytes(const std::string& path, std::string_view data) override;
  Result<std::string> ReadBytes(const std::string& path) override;
  Result<std::vector<std::string>> List(const std::string& dir) override;
  Status Fetch(const std::string& path, const std::filesystem::path& dest) override;
  Status Remove(const std::string& path) override;
  const std::filesystem::path& root() const { return root_; }

 private:
  std::filesystem::path root_;
};

/// True for "a/b.json"; false for "", "/abs", "a/../b", "a//b", "./a".
bool IsSafeRelativePath(std::string_view path);

}  // namespace sandrun

#endif  // SANDRUN_ARCHIVE_STORE_H_
