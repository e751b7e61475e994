#include "sandrun/archive.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <optional>
#include <exception>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "sandrun/file_util.h"
#include "sandrun/output_collector.h"
#include "sandrun/portable_exe.h"
#include "sandrun/util.h"

namespace sandrun {
namespace fs = std::filesystem;
namespace {

// Temporary files and directories carry this prefix; List() hides them.
constexpr char kTempPrefix[] = ".sandrun-tmp-";

bool IsTempName(const std::string& name) { return name.rfind(kTempPrefix, 0) == 0; }

std::error_code LastError() { return std::error_code(errno, std::generic_category()); }

// Calls fn(0) .. fn(count - 1), several at once: on a remote store each is a
// request whose time is mostly waiting.
void ForEachConcurrently(std::size_t count, const std::function<void(std::size_t)>& fn) {
  constexpr std::size_t kThreads = 8;
  std::atomic<std::size_t> next{0};
  auto work = [&] {
    for (std::size_t i = next++; i < count; i = next++) fn(i);
  };
  std::vector<std::thread> threads;
  for (std::size_t t = 1; t < std::min(kThreads, count); ++t) threads.emplace_back(work);
  work();
  for (auto& t : threads) t.join();
}

Status FsError(const std::string& what, const fs::path& path, const std::error_code& ec) {
  std::string message = what + " " + path.string() + ": " + ec.message();
  switch (ec.value()) {
    case ENOENT: return NotFoundError(message);
    case EACCES:
    case EPERM:
    case EROFS: return PermissionDeniedError(message);
    case ENOSPC:
    case EDQUOT: return ResourceExhaustedError(message);
    case ENOTDIR:
    case EEXIST:
    case EISDIR: return FailedPreconditionError(message);
    default: return InternalError(message);
  }
}

// Runs `body`, turning any exception (bad_alloc, filesystem_error) into a
// Status so none crosses the module boundary.
template <typename Fn>
auto Guard(const char* what, Fn&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return InternalError(std::string(what) + ": " + e.what());
  }
}

// Creates `dir` and its parents; a directory created here gets `mode`.
Status EnsureDirectory(const fs::path& dir, mode_t mode = 0755) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return OkStatus();
  if (!dir.parent_path().empty() && dir.parent_path() != dir) {
    SANDRUN_RETURN_IF_ERROR(EnsureDirectory(dir.parent_path()));
  }
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    std::error_code ec = LastError();
    return FsError("cannot create directory", dir, ec);
  }
  if (!fs::is_directory(dir, ec)) {
    // Gone again at once: removed by someone tidying (see EnsurePrivateDirectory).
    if (!fs::exists(fs::symlink_status(dir, ec))) return NotFoundError("vanished: " + dir.string());
    return FailedPreconditionError("not a directory: " + dir.string());
  }
  return OkStatus();
}

// Everything in a directory store is private to its user, whatever the
// umask and whatever made the directory first: directories 0700, files 0600.
constexpr mode_t kPrivateDirMode = 0700;
constexpr mode_t kPrivateFileMode = 0600;

// Narrows `path`'s mode to `mode` when it is wider; never follows a symlink.
Status Tighten(const fs::path& path, mode_t mode) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    std::error_code ec = LastError();
    return FsError("cannot read", path, ec);
  }
  if (S_ISLNK(st.st_mode) || (st.st_mode & 07777 & ~mode) == 0) return OkStatus();
  if (::chmod(path.c_str(), st.st_mode & 07777 & mode) != 0) {
    std::error_code ec = LastError();
    return FsError("cannot restrict the mode of", path, ec);
  }
  return OkStatus();
}

// Tightens a file or a whole tree: directories 0700, everything else 0600.
Status TightenTree(const fs::path& path) {
  std::error_code ec;
  bool is_dir = fs::is_directory(fs::symlink_status(path, ec));
  SANDRUN_RETURN_IF_ERROR(Tighten(path, is_dir ? kPrivateDirMode : kPrivateFileMode));
  if (!is_dir) return OkStatus();
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    std::error_code type_ec;
    bool dir = it->is_directory(type_ec) && !it->is_symlink(type_ec);
    SANDRUN_RETURN_IF_ERROR(Tighten(it->path(), dir ? kPrivateDirMode : kPrivateFileMode));
  }
  if (ec) return FsError("cannot read", path, ec);
  return OkStatus();
}

// Creates `root` (parents 0755, itself 0700) and `dir` below it; every
// directory from `root` down to `dir` ends up 0700, also when it existed.
// Another part of a run group (a sandrun, or a task of the service) may
// remove an empty directory of the chain between two steps as it tidies its
// outbox; then the chain is made again from the top.
Status EnsurePrivateDirectory(const fs::path& root, const fs::path& dir) {
  Status made;
  for (int attempt = 0; attempt < 20; ++attempt) {
    made = [&]() -> Status {
      SANDRUN_RETURN_IF_ERROR(EnsureDirectory(root, kPrivateDirMode));
      SANDRUN_RETURN_IF_ERROR(Tighten(root, kPrivateDirMode));
      fs::path at = root;
      for (const fs::path& part : dir.lexically_relative(root)) {
        if (part == ".") continue;
        at /= part;
        SANDRUN_RETURN_IF_ERROR(EnsureDirectory(at, kPrivateDirMode));
        SANDRUN_RETURN_IF_ERROR(Tighten(at, kPrivateDirMode));
      }
      return OkStatus();
    }();
    if (made.code() != StatusCode::kNotFound) return made;
  }
  return made;
}

// Makes `target`'s directory, then calls `write`; again when the directory
// went before `write` put anything in it: the outbox is tidied (its empty
// directories removed) while other threads and processes write to it.
Status WriteIntoDirectory(const fs::path& root, const fs::path& target,
                          const std::function<Status()>& write) {
  Status written;
  for (int attempt = 0; attempt < 20; ++attempt) {
    SANDRUN_RETURN_IF_ERROR(EnsurePrivateDirectory(root, target.parent_path()));
    written = write();
    std::error_code ec;
    if (written.code() != StatusCode::kNotFound || fs::is_directory(target.parent_path(), ec)) {
      return written;
    }
  }
  return written;
}

fs::path TempSibling(const fs::path& target) {
  return target.parent_path() /
         (std::string(kTempPrefix) + RandomHex(8) + "-" + target.filename().string());
}

}  // namespace

Status WriteFileAtomically(const fs::path& target, std::string_view data, mode_t mode) {
  fs::path temp = TempSibling(target);
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    std::error_code ec = LastError();
    return FsError("cannot create", temp, ec);
  }
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::error_code ec = LastError();
      ::close(fd);
      ::unlink(temp.c_str());
      return FsError("cannot write", temp, ec);
    }
    done += static_cast<std::size_t>(n);
  }
  // fsync so a crash never leaves a renamed but empty record behind.
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::error_code ec = LastError();
    ::unlink(temp.c_str());
    return FsError("cannot write", temp, ec);
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    std::error_code ec = LastError();
    ::unlink(temp.c_str());
    return FsError("cannot rename into", target, ec);
  }
  return OkStatus();
}

Status CheckWritableFile(const fs::path& file) {
  auto refuse = [&](const std::string& why) {
    return InvalidArgumentError("cannot write " + file.string() + ": " + why);
  };
  std::error_code ec;
  fs::path dir = file.parent_path().empty() ? fs::path(".") : file.parent_path();
  if (file.filename().empty() || fs::is_directory(file, ec)) return refuse("it is a directory");
  if (!fs::exists(dir, ec)) return refuse("directory " + dir.string() + " does not exist");
  if (!fs::is_directory(dir, ec)) return refuse(dir.string() + " is not a directory");
  // An O_TMPFILE file has no name and vanishes on close: it proves a file
  // can be created there (permissions, read-only mounts, root) and leaves
  // nothing behind. Filesystems without it get a named probe file.
  int fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
  if (fd >= 0) {
    ::close(fd);
    return OkStatus();
  }
  int err = errno;
  if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL) {
    // No O_TMPFILE here (or /proc, where root passes access()): create and
    // remove a file of our own.
    std::string probe = (dir / ".sandrun-write-check-XXXXXX").string();
    fd = ::mkstemp(probe.data());
    if (fd >= 0) {
      ::close(fd);
      ::unlink(probe.c_str());
      return OkStatus();
    }
    err = errno;
  }
  return refuse(std::strerror(err));
}

namespace {

// Puts `temp` (a finished file or tree) at `target`, replacing what is there.
// A directory cannot be renamed over a non-empty one, so an existing target
// is first moved aside; a concurrent writer of the same target may win the
// race, so retry a few times.
Status ReplaceWith(const fs::path& temp, const fs::path& target) {
  std::error_code ec, rename_ec;
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (::rename(temp.c_str(), target.c_str()) == 0) return OkStatus();
    rename_ec = LastError();
    int err = rename_ec.value();
    if (err != ENOTEMPTY && err != EEXIST && err != EISDIR && err != ENOTDIR) break;
    fs::path aside = TempSibling(target);
    if (::rename(target.c_str(), aside.c_str()) == 0) fs::remove_all(aside, ec);
  }
  fs::remove_all(temp, ec);
  return FsError("cannot replace", target, rename_ec);
}

// True when `path` is a symlink whose target leaves `tree_root`. `path` lies
// inside `tree_root`; both are lexically normal.
bool SymlinkEscapes(const fs::path& path, const fs::path& tree_root) {
  std::error_code ec;
  fs::path target = fs::read_symlink(path, ec);
  if (ec || target.is_absolute()) return true;
  fs::path resolved = (path.parent_path() / target).lexically_normal();
  fs::path rel = resolved.lexically_relative(tree_root);
  return rel.empty() || *rel.begin() == "..";
}

// Finds a symlink under `root` (or `root` itself) pointing outside `root`.
Status CheckNoEscapingSymlinks(const fs::path& root) {
  std::error_code ec;
  fs::path tree = root.lexically_normal();
  if (fs::is_symlink(tree, ec)) {
    return PermissionDeniedError("refusing to fetch symlink " + tree.string());
  }
  if (!fs::is_directory(tree, ec)) return OkStatus();
  for (auto it = fs::recursive_directory_iterator(tree, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_symlink(ec) && SymlinkEscapes(it->path().lexically_normal(), tree)) {
      return PermissionDeniedError("refusing to fetch " + it->path().string() +
                                   ": symlink points outside the archive entry");
    }
  }
  if (ec) return FsError("cannot read", tree, ec);
  return OkStatus();
}

// Copies a file or tree; symlinks are copied as symlinks, never followed.
Status CopyTree(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::file_status st = fs::symlink_status(from, ec);
  if (ec) return FsError("cannot read", from, ec);
  if (fs::is_directory(st)) {
    fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  } else if (fs::is_symlink(st)) {
    fs::copy_symlink(from, to, ec);
  } else {
    fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  }
  if (ec) return FsError("cannot copy " + from.string() + " to", to, ec);
  return OkStatus();
}

bool IsRunIdLike(const std::string& name) {
  // "20261122T031500Z-4f2a": digits, 'T', digits, 'Z', '-', hex.
  if (name.size() < 18 || name[8] != 'T' || name[15] != 'Z' || name[16] != '-') return false;
  return IsSafeRelativePath(name) && name.find('/') == std::string::npos;
}

}  // namespace

bool RunIdsShareASecond(const std::string& a, const std::string& b) {
  constexpr std::size_t kSecond = 16;  // "20261122T031500Z"
  return a.size() >= kSecond && b.size() >= kSecond && a.compare(0, kSecond, b, 0, kSecond) == 0;
}

bool NewerRunFirst(const RunListing& a, const RunListing& b) {
  if (!RunIdsShareASecond(a.run_id, b.run_id)) return a.run_id > b.run_id;
  const std::string& a_start = a.has_summary ? a.summary.started_at : std::string();
  const std::string& b_start = b.has_summary ? b.summary.started_at : std::string();
  if (a_start != b_start) return a_start > b_start;
  return a.run_id > b.run_id;
}

namespace {

Status CheckId(const std::string& kind, const std::string& id) {
  if (!IsSafeRelativePath(id) || id.find('/') != std::string::npos) {
    return InvalidArgumentError("invalid " + kind + " '" + id + "'");
  }
  return OkStatus();
}

// The fast path of delivery into a directory store on the same filesystem:
// rename instead of copying (artifact spills can be a GiB). Returns false
// when a rename is not possible (other filesystem, existing directory) and
// the caller should copy instead.
bool TryMoveInto(const DirectoryArchiveStore& store, const std::string& path,
                 const fs::path& source) {
  fs::path target = store.root() / path;
  if (!EnsurePrivateDirectory(store.root(), target.parent_path()).ok()) return false;
  if (::rename(source.c_str(), target.c_str()) != 0) return false;
  // The outbox is private too, but what a backend wrote into it (downloads)
  // may carry any mode.
  TightenTree(target).IgnoreError();
  return true;
}

}  // namespace

bool IsSafeRelativePath(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  std::size_t start = 0;
  while (true) {
    std::size_t slash = path.find('/', start);
    std::string_view part = path.substr(start, slash == std::string_view::npos
                                                    ? std::string_view::npos
                                                    : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (part.find('\0') != std::string_view::npos) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

std::string NewRunId() {
  // The random suffix keeps processes apart; within this process, remember
  // the suffixes handed out this second so 1000 ids in a burst never repeat.
  static std::mutex mu;
  static std::time_t last_second = 0;
  static std::set<std::string> used;
  std::lock_guard<std::mutex> lock(mu);
  while (true) {
    std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    if (now != last_second) {
      last_second = now;
      used.clear();
    }
    if (used.size() >= 0x8000) {  // Suffix space half used: wait for the next second.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    std::string suffix;
    do {
      suffix = RandomHex(4);
    } while (!used.insert(suffix).second);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char stamp[32];
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    return std::string(stamp) + "-" + suffix;
  }
}

// ---------------------------------------------------------------------------
// DirectoryArchiveStore

DirectoryArchiveStore::DirectoryArchiveStore(fs::path root) : root_(std::move(root)) {
  // An archive that already exists with a wider mode (made by hand, by an
  // older sandrun, under another umask) is made private before any use. A
  // failure shows again, as a Status, at the first write.
  std::error_code ec;
  if (fs::is_directory(root_, ec)) Tighten(root_, kPrivateDirMode).IgnoreError();
}

Result<fs::path> DirectoryArchiveStore::MakeDirectory(const std::string& path) {
  if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
  return Guard("mkdir", [&]() -> Result<fs::path> {
    fs::path dir = root_ / path;
    SANDRUN_RETURN_IF_ERROR(EnsurePrivateDirectory(root_, dir));
    return dir;
  });
}

std::string DirectoryArchiveStore::Describe() const { return "directory " + root_.string(); }

Status ArchiveStore::PutFiles(const std::vector<ArchivePut>& puts) {
  for (const ArchivePut& put : puts) SANDRUN_RETURN_IF_ERROR(PutFile(put.path, put.host_path));
  return OkStatus();
}

Result<std::map<std::string, std::string>> ArchiveStore::ReadTree(
    const std::string& dir, const std::function<bool(const std::string&)>& wanted) {
  if (!dir.empty() && !IsSafeRelativePath(dir)) {
    return InvalidArgumentError("unsafe archive path '" + dir + "'");
  }
  // Level by level: the wanted directories of a level are listed together,
  // then every wanted file is read.
  std::vector<std::string> files;
  std::vector<std::string> next_level;
  auto take = [&](const std::string& prefix, const std::vector<std::string>& names) {
    for (const std::string& name : names) {
      if (name.empty() || !wanted(prefix + name)) continue;
      if (name.back() == '/') {
        next_level.push_back(prefix + name.substr(0, name.size() - 1));
      } else {
        files.push_back(prefix + name);
      }
    }
  };
  SANDRUN_ASSIGN_OR_RETURN(std::vector<std::string> top, List(dir));
  take(dir.empty() ? "" : dir + "/", top);
  while (!next_level.empty()) {
    std::vector<std::string> level = std::move(next_level);
    next_level.clear();
    std::vector<std::optional<Result<std::vector<std::string>>>> listed(level.size());
    ForEachConcurrently(level.size(), [&](std::size_t i) { listed[i] = List(level[i]); });
    for (std::size_t i = 0; i < level.size(); ++i) {
      if (listed[i]->ok()) {
        take(level[i] + "/", **listed[i]);
      } else if (listed[i]->status().code() != StatusCode::kNotFound) {
        return listed[i]->status();
      }
    }
  }
  std::vector<std::optional<Result<std::string>>> read(files.size());
  ForEachConcurrently(files.size(), [&](std::size_t i) { read[i] = ReadBytes(files[i]); });
  std::map<std::string, std::string> out;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (read[i]->ok()) {
      out.emplace(files[i], std::move(**read[i]));
    } else if (read[i]->status().code() != StatusCode::kNotFound) {
      return read[i]->status();
    }
  }
  return out;
}

Status DirectoryArchiveStore::PutFile(const std::string& path, const fs::path& host_path) {
  if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
  return Guard("put", [&]() -> Status {
    fs::path target = root_ / path;
    return WriteIntoDirectory(root_, target, [&]() -> Status {
      fs::path temp = TempSibling(target);
      Status copied = CopyTree(host_path, temp);
      if (copied.ok()) copied = TightenTree(temp);
      if (!copied.ok()) {
        std::error_code ec;
        fs::remove_all(temp, ec);
        return copied;
      }
      return ReplaceWith(temp, target);
    });
  });
}

Status DirectoryArchiveStore::PutBytes(const std::string& path, std::string_view data) {
  if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
  return Guard("put", [&]() -> Status {
    fs::path target = root_ / path;
    return WriteIntoDirectory(root_, target,
                              [&] { return WriteFileAtomically(target, data, kPrivateFileMode); });
  });
}

Result<std::string> DirectoryArchiveStore::ReadBytes(const std::string& path) {
  if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
  return Guard("read", [&]() -> Result<std::string> {
    return ReadWholeFile(root_ / path);
  });
}

Result<std::vector<std::string>> DirectoryArchiveStore::List(const std::string& dir) {
  if (!dir.empty() && !IsSafeRelativePath(dir)) {
    return InvalidArgumentError("unsafe archive path '" + dir + "'");
  }
  return Guard("list", [&]() -> Result<std::vector<std::string>> {
    fs::path where = dir.empty() ? root_ : root_ / dir;
    std::error_code ec;
    std::vector<std::string> names;
    for (fs::directory_iterator it(where, ec); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (IsTempName(name)) continue;
      std::error_code type_ec;
      bool is_dir = it->is_directory(type_ec) && !it->is_symlink(type_ec);
      names.push_back(is_dir ? name + "/" : name);
    }
    if (ec) return FsError("cannot list", where, ec);
    std::sort(names.begin(), names.end());
    return names;
  });
}

Status DirectoryArchiveStore::Fetch(const std::string& path, const fs::path& dest) {
  if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
  return Guard("fetch", [&]() -> Status {
    fs::path source = root_ / path;
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(source, ec))) {
      return NotFoundError("not in the archive: " + path);
    }
    SANDRUN_RETURN_IF_ERROR(CheckNoEscapingSymlinks(source));
    SANDRUN_RETURN_IF_ERROR(EnsureDirectory(dest));
    fs::path target = dest / source.filename();
    fs::path temp = TempSibling(target);
    Status copied = CopyTree(source, temp);
    if (!copied.ok()) {
      fs::remove_all(temp, ec);
      return copied;
    }
    return ReplaceWith(temp, target);
  });
}

Status DirectoryArchiveStore::Remove(const std::string& path) {
  if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
  return Guard("remove", [&]() -> Status {
    std::error_code ec;
    fs::remove_all(root_ / path, ec);
    if (ec && ec.value() != ENOENT) return FsError("cannot remove", root_ / path, ec);
    return OkStatus();
  });
}

// ---------------------------------------------------------------------------
// ResultArchive

namespace {

std::string TaskRecordPath(const std::string& run_id, const std::string& task_id) {
  return run_id + "/tasks/" + task_id + ".json";
}
std::string ArtifactPath(const std::string& run_id, const std::string& task_id) {
  return run_id + "/artifacts/" + task_id;
}
std::string RunRecordPath(const std::string& run_id) { return run_id + "/run.json"; }
// A run of a group: each process's summary, merged when read.
std::string RunPartsDir(const std::string& run_id) { return run_id + "/parts"; }
std::string RunPartPath(const std::string& run_id, int part) {
  return RunPartsDir(run_id) + "/" + std::to_string(part) + ".json";
}
constexpr char kRunGroupsDir[] = "run-groups";
// Not "*.json": only records are, so counting those counts records.
constexpr char kOwnerFile[] = "owner";
std::string OwnerPath(const std::string& run_id) { return run_id + "/" + kOwnerFile; }
std::string StartedDir(const std::string& run_id) { return run_id + "/started"; }
std::string StartedPath(const std::string& run_id, const std::string& task_id) {
  return StartedDir(run_id) + "/" + task_id + ".json";
}
constexpr char kStartedSchema[] = "sandrun.started/v1";

bool DirectoryIsEmpty(const fs::path& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && fs::directory_iterator(dir, ec) == fs::directory_iterator();
}

// The run is over: drop its owner and its outbox directory unless something
// is pending.
void RemoveFinishedRunDir(const fs::path& run_dir) {
  std::error_code ec;
  fs::remove(run_dir / kOwnerFile, ec);
  for (const char* sub : {"artifacts", "tasks", "parts", "started"}) {
    if (DirectoryIsEmpty(run_dir / sub)) fs::remove(run_dir / sub, ec);
  }
  if (DirectoryIsEmpty(run_dir)) fs::remove(run_dir, ec);
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Seconds since the epoch of a UTC time stamp in `format`; nullopt if the
// text does not match.
std::optional<std::time_t> ParseUtc(const std::string& text, const char* format) {
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), format, &tm);
  if (end == nullptr) return std::nullopt;
  return ::timegm(&tm);
}

std::time_t UnixNow() {
  return std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
}

std::optional<RunOwner> ReadOwnerFile(const fs::path& file) {
  std::ifstream in(file);
  if (!in) return std::nullopt;
  auto j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  RunOwner owner;
  owner.pid = j.value("pid", 0);
  owner.host = j.value("host", "");
  owner.started_unix = j.value("started_unix", std::int64_t{0});
  return owner;
}

// Why `owner` may still be running its run, or "" when it surely is not.
std::string OwnerMayRun(const RunOwner& owner) {
  if (owner.host == HostName()) {
    if (owner.pid > 0 && ProcessAlive(owner.pid)) {
      return "still running (sandrun pid " + std::to_string(owner.pid) + ")";
    }
    return "";
  }
  // Another host sharing this state directory: its processes are out of sight.
  auto grace = std::chrono::duration_cast<std::chrono::seconds>(kUncheckedRunGrace).count();
  if (UnixNow() - owner.started_unix < grace) {
    return "started on " + owner.host + " less than " +
           std::to_string(grace / 3600) + " h ago; its owner cannot be checked from here";
  }
  return "";
}

// The first `cap` bytes' worth (head and tail) of a spill file, as the
// backend's collector would have kept them.
CapturedStream ReadSpill(StreamKind kind, const fs::path& file, std::size_t cap) {
  OutputCollector collector(kind, cap, "", nullptr);
  std::ifstream in(file, std::ios::binary);
  std::string chunk(64 * 1024, '\0');
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    collector.Append(std::string_view(chunk.data(), static_cast<std::size_t>(in.gcount())));
  }
  return collector.Finish();
}

}  // namespace

// The members of ResultArchive, and the bodies of its methods (each
// ResultArchive method forwards here, see the end of the file).
struct ResultArchive::Impl {
  Impl(std::shared_ptr<ArchiveStore> store, fs::path outbox_dir);
  /// Delivers what still waits (one last try), then stops the delivery thread.
  ~Impl();

  void SetDeliveryInterval(std::chrono::milliseconds interval);
  Result<std::string> BeginRun();
  /// BeginRun's work under mu_, with `owner_pid` noted as the owner.
  Result<std::string> ReserveRunLocked(int owner_pid);
  Result<std::string> RunOfGroup(const std::string& group) const;
  Result<JoinedRun> JoinRunGroup(const std::string& group, int owner_pid,
                                 const std::vector<std::string>& task_ids);
  Status WriteRunPart(const RunRecord& record, int part, bool batched);
  /// Writes a run's summary (run.json or a part) to `path` in the outbox and
  /// delivers it after the run's waiting tasks.
  Status WriteSummary(const RunRecord& record, const std::string& path, bool batched = false);
  Result<fs::path> ArtifactDir(const std::string& run_id, const std::string& task_id);
  Status WriteTask(const TaskRecord& record);
  Status WriteRun(const RunRecord& record);
  Status WriteStarted(const TaskRecord& record, std::size_t output_cap);
  Result<int> Sync();
  int PendingCount(const std::string& run_id) const;
  Result<std::vector<RunListing>> ListRuns(std::size_t read_summaries);
  Result<RunRecord> ReadRun(const std::string& run_id);
  Result<std::vector<TaskRecord>> ReadTasks(const std::string& run_id);
  Result<TaskRecord> ReadTask(const std::string& run_id, const std::string& task_id);
  Status Fetch(const std::string& run_id, const fs::path& dest);
  Result<PruneResult> Prune(int keep);
  std::string WhyMayStillRun(const std::string& run_id) const;

  /// Sends the outbox entries `paths` (artifact trees and records, in this
  /// order) to the store in one PutFiles and removes them from the outbox.
  Status DeliverGroup(const std::vector<std::string>& paths);
  /// Delivers every task of `run_id` waiting in the outbox, the parts of a
  /// group's run, and run.json when `with_run_record`, in one group;
  /// `records` is how many it holds.
  Status DeliverRun(const std::string& run_id, bool with_run_record, int* records);
  /// Turns the started records of `run_id` (whose owner is gone) into task
  /// records in the outbox; returns how many.
  Result<int> RecoverInterrupted(const std::string& run_id);
  void DeliveryLoop();
  // Queues `run_id` for the delivery thread (started if need be); the
  // caller holds waiting_mu_.
  void QueueForDeliveryLocked(const std::string& run_id);

  std::shared_ptr<ArchiveStore> store_;
  fs::path outbox_dir_;
  DirectoryArchiveStore outbox_;
  std::mutex mu_;  ///< Serialises deliveries and run id reservations.
  std::function<std::string()> new_run_id_;

  // Grouped delivery: runs with task records waiting, and the thread that
  // delivers them when their oldest has waited `delivery_interval_`.
  std::chrono::milliseconds delivery_interval_{0};
  std::mutex waiting_mu_;
  std::condition_variable waiting_cv_;
  std::vector<std::pair<std::string, std::chrono::steady_clock::time_point>> waiting_runs_;
  bool stopping_ = false;
  std::thread delivery_thread_;
};

ResultArchive::Impl::Impl(std::shared_ptr<ArchiveStore> store, fs::path outbox_dir)
    : store_(std::move(store)), outbox_dir_(outbox_dir), outbox_(std::move(outbox_dir)) {
  if (!store_->OnThisHost()) delivery_interval_ = kRemoteDeliveryInterval;
}

Result<std::string> ResultArchive::Impl::BeginRun() {
  std::lock_guard<std::mutex> lock(mu_);
  return ReserveRunLocked(0);
}

Result<std::string> ResultArchive::Impl::ReserveRunLocked(int owner_pid) {
  return Guard("begin run", [&]() -> Result<std::string> {
    SANDRUN_RETURN_IF_ERROR(EnsurePrivateDirectory(outbox_dir_, outbox_dir_));
    for (int attempt = 0; attempt < 100; ++attempt) {
      std::string id = new_run_id_ ? new_run_id_() : NewRunId();
      SANDRUN_RETURN_IF_ERROR(CheckId("run id", id));
      // An id the archive already holds (from another host) is taken too. An
      // unreachable store does not stop the run: records wait in the outbox.
      if (store_->List(id).ok()) continue;
      fs::path dir = outbox_dir_ / id;
      if (::mkdir(dir.c_str(), 0700) == 0) {
        // Who runs it: `results sync` recovers its tasks once this process
        // is gone, and `results prune` spares the run while it is not.
        nlohmann::json owner = {{"pid", owner_pid > 0 ? owner_pid : static_cast<int>(::getpid())},
                                {"host", HostName()},
                                {"started_unix", static_cast<std::int64_t>(UnixNow())}};
        SANDRUN_RETURN_IF_ERROR(outbox_.PutBytes(OwnerPath(id), owner.dump()));
        return id;
      }
      if (errno != EEXIST) {
        std::error_code ec = LastError();
        return FsError("cannot create run directory", dir, ec);
      }
    }
    return InternalError("could not find a free run id in " + outbox_dir_.string());
  });
}

Result<fs::path> ResultArchive::Impl::ArtifactDir(const std::string& run_id,
                                                  const std::string& task_id) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", run_id));
  SANDRUN_RETURN_IF_ERROR(CheckId("task id", task_id));
  return outbox_.MakeDirectory(ArtifactPath(run_id, task_id));
}

namespace {

// A group's state is kept for a week after its last part joined; a group
// that comes back later gets a run of its own.
void ForgetOldRunGroups(const fs::path& groups) {
  std::error_code ec;
  const auto cutoff = fs::file_time_type::clock::now() - std::chrono::hours(24 * 7);
  for (fs::directory_iterator it(groups, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->path().extension() == ".json" && it->last_write_time(ec) < cutoff) {
      fs::remove(it->path(), ec);
      fs::path lock = it->path();
      fs::remove(lock.replace_extension(".lock"), ec);
    }
  }
}

}  // namespace

// Run groups: <outbox>/run-groups/<hash>.json holds the group's run id and
// the task ids taken so far; <hash>.lock serialises the processes joining.
Result<ResultArchive::JoinedRun> ResultArchive::Impl::JoinRunGroup(
    const std::string& group, int owner_pid, const std::vector<std::string>& task_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  return Guard("join run group", [&]() -> Result<JoinedRun> {
    SANDRUN_RETURN_IF_ERROR(EnsurePrivateDirectory(outbox_dir_, outbox_dir_));
    fs::path groups = outbox_dir_ / kRunGroupsDir;
    SANDRUN_RETURN_IF_ERROR(EnsurePrivateDirectory(groups, outbox_dir_));
    std::string key = Sha256Hex(group).substr(0, 32);
    fs::path lock_path = groups / (key + ".lock");
    int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return FsError("cannot open run group lock", lock_path, LastError());
    struct Unlock {
      int fd;
      ~Unlock() { ::close(fd); }  // Closing releases the flock.
    } unlock{fd};
    if (::flock(fd, LOCK_EX) != 0) return FsError("cannot lock", lock_path, LastError());

    fs::path state_path = groups / (key + ".json");
    nlohmann::json state = nlohmann::json::object();
    if (std::ifstream in(state_path); in) {
      state = nlohmann::json::parse(in, nullptr, false);
      if (!state.is_object() || state.value("group", "") != group) state = nlohmann::json::object();
    }
    JoinedRun joined;
    joined.run_id = state.value("run_id", "");
    if (joined.run_id.empty() || !CheckId("run id", joined.run_id).ok()) {
      ForgetOldRunGroups(groups);
      SANDRUN_ASSIGN_OR_RETURN(joined.run_id, ReserveRunLocked(owner_pid));
      state = {{"group", group}, {"run_id", joined.run_id}, {"parts", 0},
               {"task_ids", nlohmann::json::array()}};
    } else {
      // The first process may have finished and tidied the run's outbox
      // directory away: it comes back for this part's records.
      std::error_code ec;
      fs::create_directories(outbox_dir_ / joined.run_id, ec);
    }
    joined.part = state.value("parts", 0) + 1;
    state["parts"] = joined.part;
    std::set<std::string> taken;
    for (const auto& id : state["task_ids"]) taken.insert(id.get<std::string>());
    for (const std::string& id : task_ids) {
      std::string unique = id;
      for (int n = 2; taken.count(unique) > 0; ++n) unique = id + "-" + std::to_string(n);
      taken.insert(unique);
      state["task_ids"].push_back(unique);
      joined.task_ids.push_back(unique);
    }
    SANDRUN_RETURN_IF_ERROR(WriteFileAtomically(state_path, state.dump(), 0600));
    return joined;
  });
}

Result<std::string> ResultArchive::Impl::RunOfGroup(const std::string& group) const {
  fs::path state_path = outbox_dir_ / kRunGroupsDir / (Sha256Hex(group).substr(0, 32) + ".json");
  std::ifstream in(state_path);
  nlohmann::json state = in ? nlohmann::json::parse(in, nullptr, false) : nlohmann::json();
  std::string run_id = state.is_object() && state.value("group", "") == group
                           ? state.value("run_id", "") : "";
  if (run_id.empty() || !CheckId("run id", run_id).ok()) {
    return NotFoundError("no run of group '" + group + "' in the outbox " + outbox_dir_.string() +
                         " (no sandrun of the group ran on this host with this backend)");
  }
  return run_id;
}

Status ResultArchive::Impl::WriteRunPart(const RunRecord& record, int part, bool batched) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", record.run_id));
  return WriteSummary(record, RunPartPath(record.run_id, part), batched);
}

Status ResultArchive::Impl::DeliverGroup(const std::vector<std::string>& paths) {
  return Guard("deliver", [&]() -> Status {
    std::vector<ArchivePut> puts;
    std::error_code ec;
    // A directory on this host takes what it gets by rename (see
    // DirectoryArchiveStore); any other store through PutFiles.
    const auto* same_host = store_->OnThisHost()
                                ? dynamic_cast<const DirectoryArchiveStore*>(store_.get())
                                : nullptr;
    for (const std::string& relative_path : paths) {
      fs::path source = outbox_dir_ / relative_path;
      // Missing: another Sync (maybe in another process) delivered it already.
      if (!fs::exists(fs::symlink_status(source, ec))) continue;
      if (DirectoryIsEmpty(source)) {
        fs::remove(source, ec);
        continue;
      }
      if (same_host != nullptr && TryMoveInto(*same_host, relative_path, source)) continue;
      puts.push_back({relative_path, source});
    }
    if (puts.empty()) return OkStatus();
    Status put = store_->PutFiles(puts);
    if (!put.ok()) {
      bool raced = std::none_of(puts.begin(), puts.end(), [&](const ArchivePut& p) {
        return fs::exists(fs::symlink_status(p.host_path, ec));
      });
      if (raced) return OkStatus();  // A concurrent Sync delivered all of them.
      std::string what = puts.front().path;
      if (puts.size() > 1) what += " and " + std::to_string(puts.size() - 1) + " more";
      return put.WithContext("cannot deliver " + what + " to " + store_->Describe());
    }
    for (const ArchivePut& p : puts) SANDRUN_RETURN_IF_ERROR(outbox_.Remove(p.path));
    return OkStatus();
  });
}

Status ResultArchive::Impl::DeliverRun(const std::string& run_id, bool with_run_record,
                                       int* records) {
  *records = 0;
  std::vector<std::string> artifacts, task_records;
  auto tasks = outbox_.List(run_id + "/tasks");
  if (tasks.ok()) {
    for (const std::string& name : *tasks) {
      if (!EndsWith(name, ".json")) continue;
      std::string task_id = name.substr(0, name.size() - 5);
      artifacts.push_back(ArtifactPath(run_id, task_id));
      task_records.push_back(TaskRecordPath(run_id, task_id));
    }
  }
  // Artifacts first, so a record in the store never names missing files;
  // run.json last, so a finished run in the store has all its tasks.
  std::vector<std::string> paths = std::move(artifacts);
  paths.insert(paths.end(), task_records.begin(), task_records.end());
  *records = static_cast<int>(task_records.size());
  std::error_code ec;
  if (with_run_record && fs::exists(outbox_dir_ / RunRecordPath(run_id), ec)) {
    paths.push_back(RunRecordPath(run_id));
    ++*records;
  }
  // The summaries of a group's finished parts (parts/<n>.json) go with
  // any delivery: each is written whole, once its part has ended.
  auto parts = outbox_.List(RunPartsDir(run_id));
  if (parts.ok()) {
    for (const std::string& name : *parts) {
      if (!EndsWith(name, ".json")) continue;
      paths.push_back(RunPartsDir(run_id) + "/" + name);
      ++*records;
    }
  }
  if (paths.empty()) return OkStatus();
  return DeliverGroup(paths);
}

Status ResultArchive::Impl::WriteStarted(const TaskRecord& record, std::size_t output_cap) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", record.run_id));
  SANDRUN_RETURN_IF_ERROR(CheckId("task id", record.task_id));
  return Guard("write started", [&]() -> Status {
    // Written as it will be delivered if this process dies: interrupted.
    TaskRecord started = record;
    if (started.sandbox_id.empty()) started.sandbox_id = started.result.sandbox_id;
    started.result.outcome = Outcome::kInterrupted;
    started.result.exit_code = kExitSandrunError;
    started.result.error = "interrupted: sandrun (pid " + std::to_string(::getpid()) + " on " +
                           HostName() + ") ended before the task did";
    nlohmann::json j = {{"schema", kStartedSchema},
                        {"output_cap", output_cap},
                        {"record", nlohmann::json::parse(ToJson(started, -1))}};
    return outbox_.PutBytes(StartedPath(record.run_id, record.task_id), j.dump());
  });
}

Result<int> ResultArchive::Impl::RecoverInterrupted(const std::string& run_id) {
  auto names = outbox_.List(StartedDir(run_id));
  if (!names.ok()) return 0;
  int recovered = 0;
  std::error_code ec;
  for (const std::string& name : *names) {
    if (!EndsWith(name, ".json")) continue;
    std::string task_id = name.substr(0, name.size() - 5);
    std::string started_path = StartedPath(run_id, task_id);
    std::string task_path = TaskRecordPath(run_id, task_id);
    // Died between writing the task's record and dropping this one.
    if (fs::exists(outbox_dir_ / task_path, ec)) {
      SANDRUN_RETURN_IF_ERROR(outbox_.Remove(started_path));
      continue;
    }
    SANDRUN_ASSIGN_OR_RETURN(std::string text, outbox_.ReadBytes(started_path));
    auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || j.value("schema", "") != kStartedSchema || !j.contains("record")) {
      return InvalidArgumentError(started_path + " in the outbox is not a started record");
    }
    auto parsed = TaskRecordFromJson(j["record"].dump());
    if (!parsed.ok()) return parsed.status().WithContext(started_path);
    TaskRecord record = std::move(*parsed);
    // The output streamed before the end is in the task's spill files; the
    // newest write there (or to the started record) is about when it ended.
    std::size_t cap = j.value("output_cap", std::size_t{1} << 20);
    fs::path artifacts = outbox_dir_ / ArtifactPath(run_id, task_id);
    // The started record was last written when the command began.
    const fs::file_time_type exec_began = fs::last_write_time(outbox_dir_ / started_path, ec);
    fs::file_time_type last = exec_began;
    for (auto [kind, file, stream] :
         {std::tuple{StreamKind::kStdout, std::string(kStdoutSpillName),
                     &record.result.stdout_stream},
          std::tuple{StreamKind::kStderr, std::string(kStderrSpillName),
                     &record.result.stderr_stream}}) {
      if (!fs::is_regular_file(artifacts / file, ec)) continue;
      *stream = ReadSpill(kind, artifacts / file, cap);
      stream->spill_path = ArtifactPath(run_id, task_id) + "/" + file;
      last = std::max(last, fs::last_write_time(artifacts / file, ec));
    }
    record.finished_at =
        FormatRfc3339(std::chrono::file_clock::to_sys(last));
    Durations& d = record.result.durations;
    d.exec_ms = std::chrono::duration_cast<std::chrono::milliseconds>(last - exec_began).count();
    d.total_ms = d.queue_ms + d.create_ms + d.upload_ms + d.exec_ms;
    SANDRUN_RETURN_IF_ERROR(outbox_.PutBytes(task_path, ToJson(record)));
    SANDRUN_RETURN_IF_ERROR(outbox_.Remove(started_path));
    ++recovered;
  }
  return recovered;
}

void ResultArchive::Impl::SetDeliveryInterval(std::chrono::milliseconds interval) {
  std::lock_guard<std::mutex> lock(waiting_mu_);
  delivery_interval_ = interval;
  waiting_cv_.notify_all();
}

void ResultArchive::Impl::QueueForDeliveryLocked(const std::string& run_id) {
  bool queued = std::any_of(waiting_runs_.begin(), waiting_runs_.end(),
                            [&](const auto& w) { return w.first == run_id; });
  if (!queued) waiting_runs_.emplace_back(run_id, std::chrono::steady_clock::now());
  if (!delivery_thread_.joinable()) delivery_thread_ = std::thread([this] { DeliveryLoop(); });
  waiting_cv_.notify_all();
}

void ResultArchive::Impl::DeliveryLoop() {
  std::unique_lock<std::mutex> lock(waiting_mu_);
  for (;;) {
    if (waiting_runs_.empty()) {
      if (stopping_) return;
      waiting_cv_.wait(lock);
      continue;
    }
    // Runs are queued in the order their first record waited: oldest first.
    auto due = waiting_runs_.front().second + delivery_interval_;
    if (!stopping_ && std::chrono::steady_clock::now() < due) {
      waiting_cv_.wait_until(lock, due);
      continue;
    }
    std::string run_id = waiting_runs_.front().first;
    waiting_runs_.erase(waiting_runs_.begin());
    lock.unlock();
    {
      // A failure leaves the records in the outbox: WriteRun or Sync retry.
      std::lock_guard<std::mutex> deliver(mu_);
      int records = 0;
      DeliverRun(run_id, /*with_run_record=*/false, &records).IgnoreError();
    }
    lock.lock();
  }
}

ResultArchive::Impl::~Impl() {
  {
    std::lock_guard<std::mutex> lock(waiting_mu_);
    stopping_ = true;
  }
  waiting_cv_.notify_all();
  if (delivery_thread_.joinable()) delivery_thread_.join();
}

Status ResultArchive::Impl::WriteTask(const TaskRecord& record) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", record.run_id));
  SANDRUN_RETURN_IF_ERROR(CheckId("task id", record.task_id));
  TaskRecord stored = record;
  fs::path artifact_dir = outbox_dir_ / ArtifactPath(record.run_id, record.task_id);
  std::string archive_dir = ArtifactPath(record.run_id, record.task_id);
  for (CapturedStream* stream : {&stored.result.stdout_stream, &stored.result.stderr_stream}) {
    stream->spill_path = RelocateSpillPath(stream->spill_path, artifact_dir, archive_dir);
  }
  std::string path = TaskRecordPath(record.run_id, record.task_id);
  if (Status kept = outbox_.PutBytes(path, ToJson(stored)); !kept.ok()) {
    return Status(kept.code(), "could not be written to the outbox " + outbox_dir_.string() +
                                   " (" + kept.message() +
                                   "), so the archive will not have its result");
  }
  // The task ended: its started record has nothing more to say.
  outbox_.Remove(StartedPath(record.run_id, record.task_id)).IgnoreError();
  {
    std::lock_guard<std::mutex> lock(waiting_mu_);
    if (delivery_interval_.count() > 0) {
      QueueForDeliveryLocked(record.run_id);
      return OkStatus();
    }
  }
  if (Status delivered = DeliverGroup({archive_dir, path}); !delivered.ok()) {
    return Status(delivered.code(), "kept in the outbox " + outbox_dir_.string() + " (" +
                                        delivered.ToString() +
                                        "); `sandrun results sync` delivers it");
  }
  return OkStatus();
}

Status ResultArchive::Impl::WriteRun(const RunRecord& record) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", record.run_id));
  return WriteSummary(record, RunRecordPath(record.run_id));
}

Status ResultArchive::Impl::WriteSummary(const RunRecord& record, const std::string& path,
                                         bool batched) {
  SANDRUN_RETURN_IF_ERROR(outbox_.PutBytes(path, ToJson(record)));
  {
    std::lock_guard<std::mutex> lock(waiting_mu_);
    if (batched && delivery_interval_.count() > 0) {
      // With the run's task records, by the delivery thread (parts go with
      // them: DeliverRun).
      QueueForDeliveryLocked(record.run_id);
      return OkStatus();
    }
    std::erase_if(waiting_runs_, [&](const auto& w) { return w.first == record.run_id; });
  }
  std::lock_guard<std::mutex> lock(mu_);
  int records = 0;
  SANDRUN_RETURN_IF_ERROR(DeliverRun(record.run_id, /*with_run_record=*/true, &records));
  if (path == RunRecordPath(record.run_id)) {
    RemoveFinishedRunDir(outbox_dir_ / record.run_id);
    return OkStatus();
  }
  // A part of a group's run: the run's owner (the group's first process, or
  // the ctest above it) stays noted while other parts may still run.
  std::error_code ec;
  for (const char* sub : {"artifacts", "tasks", "parts", "started"}) {
    if (DirectoryIsEmpty(outbox_dir_ / record.run_id / sub)) {
      fs::remove(outbox_dir_ / record.run_id / sub, ec);
    }
  }
  return OkStatus();
}

Result<int> ResultArchive::Impl::Sync() {
  std::lock_guard<std::mutex> lock(mu_);
  return Guard("sync", [&]() -> Result<int> {
    int delivered = 0, failed = 0;
    Status first_error;
    auto runs = outbox_.List("");
    if (!runs.ok()) {
      if (runs.status().code() == StatusCode::kNotFound) return 0;
      return runs.status();
    }
    for (const std::string& entry : *runs) {
      if (entry.back() != '/') continue;
      std::string run_id = entry.substr(0, entry.size() - 1);
      if (!CheckId("run id", run_id).ok()) continue;
      // A run whose owner is gone is over: its started tasks were
      // interrupted, and become records of their own.
      std::optional<RunOwner> owner = ReadOwnerFile(outbox_dir_ / OwnerPath(run_id));
      bool over = !owner || OwnerMayRun(*owner).empty();
      int records = 0;
      Status s = OkStatus();
      if (owner && over) s = RecoverInterrupted(run_id).status();
      if (s.ok()) s = DeliverRun(run_id, /*with_run_record=*/true, &records);
      if (s.ok() && over) RemoveFinishedRunDir(outbox_dir_ / run_id);
      if (s.ok()) {
        delivered += records;
      } else {
        failed += records;
        if (first_error.ok()) first_error = s;
      }
    }
    if (failed > 0) {
      return Status(first_error.code(),
                    std::to_string(delivered) + " delivered, " + std::to_string(failed) +
                        " still in the outbox: " + first_error.message(),
                    first_error.retryable());
    }
    return delivered;
  });
}

int ResultArchive::Impl::PendingCount(const std::string& run_id) const {
  // Counts the records in the outbox; temp files are ignored, and a record is
  // only ever renamed in whole, so no lock is needed.
  int count = 0;
  std::error_code ec;
  for (fs::directory_iterator run(outbox_dir_, ec); !ec && run != fs::directory_iterator();
       run.increment(ec)) {
    std::error_code sub_ec;
    if (!run->is_directory(sub_ec)) continue;
    if (!run_id.empty() && run->path().filename() != run_id) continue;
    if (fs::is_regular_file(run->path() / "run.json", sub_ec)) ++count;
    // Started tasks wait only once their owner is gone (then Sync delivers
    // them as interrupted); while it runs they are work in progress.
    std::optional<RunOwner> owner = ReadOwnerFile(run->path() / kOwnerFile);
    if (owner && OwnerMayRun(*owner).empty()) {
      for (fs::directory_iterator task(run->path() / "started", sub_ec);
           !sub_ec && task != fs::directory_iterator(); task.increment(sub_ec)) {
        std::string name = task->path().filename().string();
        if (!IsTempName(name) && EndsWith(name, ".json") &&
            !fs::exists(run->path() / "tasks" / name, sub_ec)) {
          ++count;
        }
      }
      sub_ec.clear();
    }
    for (fs::directory_iterator task(run->path() / "tasks", sub_ec);
         !sub_ec && task != fs::directory_iterator(); task.increment(sub_ec)) {
      std::string name = task->path().filename().string();
      if (!IsTempName(name) && EndsWith(name, ".json")) ++count;
    }
  }
  return count;
}

namespace {

// One summary of a group's run from its parts, in the order they started:
// counts and task ids added up, the earliest start, the latest end, the
// worst status (cancelled, failed, error, passed); a test a later part ran
// again (RunRecord::superseded) counts once, by its last attempt. No fastest
// passing task: the parts were no race.
RunRecord MergeRunParts(const std::string& run_id, std::vector<RunRecord> parts) {
  std::sort(parts.begin(), parts.end(),
            [](const RunRecord& a, const RunRecord& b) { return a.started_at < b.started_at; });
  RunRecord run = parts.front();
  run.run_id = run_id;
  run.total = run.passed = run.skipped = run.failed = run.timed_out = run.infra_errors =
      run.cancelled = 0;
  run.task_ids.clear();
  run.fastest_passing_task.clear();
  bool cancelled = false, failed = false, error = false;
  for (const RunRecord& part : parts) {
    run.total += part.total;
    run.passed += part.passed;
    run.skipped += part.skipped;
    run.failed += part.failed;
    run.timed_out += part.timed_out;
    run.infra_errors += part.infra_errors;
    run.cancelled += part.cancelled;
    run.task_ids.insert(run.task_ids.end(), part.task_ids.begin(), part.task_ids.end());
    run.finished_at = std::max(run.finished_at, part.finished_at);
    cancelled |= part.status == RunStatus::kCancelled;
    failed |= part.status == RunStatus::kFailed;
    error |= part.status == RunStatus::kError;
  }
  run.status = cancelled ? RunStatus::kCancelled
               : failed  ? RunStatus::kFailed
               : error   ? RunStatus::kError
                         : RunStatus::kPassed;
  // Tests run again by a later part count once, by their last attempt; the
  // status then follows the counts, as a single run's does.
  bool superseded = false;
  for (const RunRecord& part : parts) {
    for (const auto& [task_id, counter] : part.superseded) {
      int* count = RunCounter(run, counter);
      if (count == nullptr || *count == 0 || run.total == 0) continue;
      --*count;
      --run.total;
      superseded = true;
    }
  }
  if (superseded && !cancelled) {
    run.status = run.passed + run.skipped == run.total ? RunStatus::kPassed
                 : run.failed + run.timed_out > 0       ? RunStatus::kFailed
                                                         : RunStatus::kError;
  }
  auto start = ParseRfc3339Ms(run.started_at);
  auto end = ParseRfc3339Ms(run.finished_at);
  if (start && end && *end >= *start) run.wall_ms = *end - *start;
  return run;
}

Status RunNotFound(const std::string& run_id, const ArchiveStore& store) {
  return NotFoundError("no run '" + run_id + "' in " + store.Describe());
}

// Whether `path`, within a run's directory, is (or leads to) its summary:
// "", "run.json", "parts/" or "parts/NAME.json".
bool IsSummaryPath(const std::string& path) {
  if (path.empty() || path == "run.json" || path == "parts/") return true;
  return path.rfind("parts/", 0) == 0 && path.find('/', 6) == std::string::npos &&
         EndsWith(path, ".json");
}

// The summary of `run_id` among `files` (store path -> contents): its
// run.json, or else its parts merged; kNotFound when it has neither.
Result<RunRecord> RunSummaryAmong(const std::string& run_id,
                                  const std::map<std::string, std::string>& files) {
  auto whole = files.find(RunRecordPath(run_id));
  if (whole != files.end()) {
    auto record = RunRecordFromJson(whole->second);
    if (!record.ok()) return record.status().WithContext(whole->first);
    return record;
  }
  const std::string prefix = RunPartsDir(run_id) + "/";
  std::vector<RunRecord> parts;
  for (auto it = files.lower_bound(prefix);
       it != files.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    if (!IsSummaryPath(it->first.substr(run_id.size() + 1))) continue;
    auto part = RunRecordFromJson(it->second);
    if (!part.ok()) return part.status().WithContext(it->first);
    parts.push_back(std::move(*part));
  }
  if (parts.empty()) return NotFoundError("run '" + run_id + "' has no summary yet");
  return MergeRunParts(run_id, std::move(parts));
}

}  // namespace

Result<std::vector<RunListing>> ResultArchive::Impl::ListRuns(std::size_t read_summaries) {
  auto entries = store_->List("");
  if (!entries.ok()) {
    if (entries.status().code() == StatusCode::kNotFound) return std::vector<RunListing>{};
    return entries.status();
  }
  std::vector<RunListing> runs;
  for (const std::string& entry : *entries) {
    if (entry.back() != '/') continue;
    RunListing listing;
    listing.run_id = entry.substr(0, entry.size() - 1);
    if (!IsRunIdLike(listing.run_id)) continue;
    runs.push_back(std::move(listing));
  }
  // Run ids begin with their UTC start time, so they sort newest first.
  std::sort(runs.begin(), runs.end(),
            [](const RunListing& a, const RunListing& b) { return a.run_id > b.run_id; });
  // The last second read is read whole, so its runs can be put in order.
  std::size_t wanted = std::min(read_summaries, runs.size());
  while (wanted > 0 && wanted < runs.size() &&
         RunIdsShareASecond(runs[wanted - 1].run_id, runs[wanted].run_id)) {
    ++wanted;
  }
  // All the summaries in one ReadTree: one pass on a store whose every
  // request is costly (a Docker volume: ~35 ms each, one at a time).
  std::set<std::string> chosen;
  for (std::size_t i = 0; i < wanted; ++i) chosen.insert(runs[i].run_id);
  Result<std::map<std::string, std::string>> files = std::map<std::string, std::string>{};
  if (!chosen.empty()) {
    files = store_->ReadTree("", [&](const std::string& path) {
      std::size_t slash = path.find('/');
      return slash != std::string::npos && chosen.count(path.substr(0, slash)) > 0 &&
             IsSummaryPath(path.substr(slash + 1));
    });
  }
  auto take = [&](std::size_t i, Result<RunRecord> summary) {
    runs[i].summary_read = true;
    runs[i].has_summary = summary.ok();
    if (summary.ok()) runs[i].summary = std::move(*summary);
  };
  if (files.ok()) {
    for (std::size_t i = 0; i < wanted; ++i) take(i, RunSummaryAmong(runs[i].run_id, *files));
  } else {
    // A tree that cannot be read whole (one unreadable run) hides no other
    // run: each summary is then read on its own, a failed one "incomplete".
    ForEachConcurrently(wanted, [&](std::size_t i) { take(i, ReadRun(runs[i].run_id)); });
  }
  // Ids order runs by their second only; within one, the later start first.
  std::sort(runs.begin(), runs.begin() + static_cast<std::ptrdiff_t>(wanted), NewerRunFirst);
  return runs;
}

Result<RunRecord> ResultArchive::Impl::ReadRun(const std::string& run_id) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", run_id));
  auto json = store_->ReadBytes(RunRecordPath(run_id));
  if (json.ok()) {
    auto record = RunRecordFromJson(*json);
    if (!record.ok()) return record.status().WithContext(RunRecordPath(run_id));
    return record;
  }
  if (json.status().code() != StatusCode::kNotFound) return json.status();
  // A group's run: its parts.
  auto parts = store_->ReadTree(RunPartsDir(run_id), [&](const std::string& path) {
    return IsSummaryPath(path.substr(run_id.size() + 1));
  });
  if (parts.ok()) {
    auto merged = RunSummaryAmong(run_id, *parts);
    if (merged.status().code() != StatusCode::kNotFound) return merged;
  } else if (parts.status().code() != StatusCode::kNotFound) {
    return parts.status();
  }
  if (!store_->List(run_id).ok()) return RunNotFound(run_id, *store_);
  return NotFoundError("run '" + run_id + "' has no run.json (still running, or interrupted)");
}

Result<std::vector<TaskRecord>> ResultArchive::Impl::ReadTasks(const std::string& run_id) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", run_id));
  // One ReadTree: a run of 200 cases is one pass on a Docker volume, not 200
  // requests one at a time.
  const std::string dir = run_id + "/tasks";
  auto files = store_->ReadTree(dir, [&](const std::string& path) {
    return EndsWith(path, ".json") && path.find('/', dir.size() + 1) == std::string::npos;
  });
  std::vector<TaskRecord> tasks;
  if (!files.ok()) {
    if (files.status().code() != StatusCode::kNotFound) return files.status();
    if (!store_->List(run_id).ok()) return RunNotFound(run_id, *store_);
    return tasks;
  }
  for (const auto& [path, json] : *files) {
    auto record = TaskRecordFromJson(json);
    if (!record.ok()) return record.status().WithContext(path);
    tasks.push_back(std::move(*record));
  }
  std::sort(tasks.begin(), tasks.end(),
            [](const TaskRecord& a, const TaskRecord& b) { return a.task_id < b.task_id; });
  return tasks;
}

Result<TaskRecord> ResultArchive::Impl::ReadTask(const std::string& run_id,
                                                 const std::string& task_id) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", run_id));
  SANDRUN_RETURN_IF_ERROR(CheckId("task id", task_id));
  std::string path = TaskRecordPath(run_id, task_id);
  auto json = store_->ReadBytes(path);
  if (!json.ok()) {
    if (json.status().code() != StatusCode::kNotFound) return json.status();
    if (!store_->List(run_id).ok()) return RunNotFound(run_id, *store_);
    return NotFoundError("run '" + run_id + "' has no task '" + task_id + "'");
  }
  auto record = TaskRecordFromJson(*json);
  if (!record.ok()) return record.status().WithContext(path);
  return record;
}

Status ResultArchive::Impl::Fetch(const std::string& run_id, const fs::path& dest) {
  SANDRUN_RETURN_IF_ERROR(CheckId("run id", run_id));
  if (!store_->List(run_id).ok()) return RunNotFound(run_id, *store_);
  // A failed fetch leaves nothing behind: what did not exist before (the
  // outermost missing directory of `dest`, or dest/<run_id>) goes again.
  std::error_code ec;
  fs::path created;
  for (fs::path p = dest.lexically_normal(); !p.empty() && !fs::exists(p, ec);
       p = p.parent_path()) {
    created = p;
    if (p == p.parent_path()) break;
  }
  if (created.empty() && !fs::exists(dest / run_id, ec)) created = dest / run_id;
  Status fetched = store_->Fetch(run_id, dest);
  if (!fetched.ok() && !created.empty()) fs::remove_all(created, ec);
  return fetched;
}

std::string ResultArchive::Impl::WhyMayStillRun(const std::string& run_id) const {
  std::optional<RunOwner> owner = ReadOwnerFile(outbox_dir_ / OwnerPath(run_id));
  if (owner) return OwnerMayRun(*owner);
  // No owner in this outbox: the run is another host's (or its owner's
  // outbox is gone). Its id says when it started.
  std::optional<std::time_t> started = ParseUtc(run_id.substr(0, 16), "%Y%m%dT%H%M%SZ");
  auto grace = std::chrono::duration_cast<std::chrono::seconds>(kUncheckedRunGrace).count();
  if (started && UnixNow() - *started < grace) {
    return "started less than " + std::to_string(grace / 3600) +
           " h ago and its owner cannot be checked from here";
  }
  return "";
}

Result<PruneResult> ResultArchive::Impl::Prune(int keep) {
  if (keep < 0) {
    return InvalidArgumentError("prune: --keep must be >= 0, got " + std::to_string(keep));
  }
  SANDRUN_ASSIGN_OR_RETURN(std::vector<RunListing> runs, ListRuns(kAllSummaries));
  PruneResult result;
  for (std::size_t i = static_cast<std::size_t>(keep); i < runs.size(); ++i) {
    if (!runs[i].has_summary) {
      std::string why = WhyMayStillRun(runs[i].run_id);
      if (!why.empty()) {
        result.kept_running.emplace_back(runs[i].run_id, why);
        continue;
      }
    }
    SANDRUN_RETURN_IF_ERROR(store_->Remove(runs[i].run_id));
    result.removed.push_back(runs[i].run_id);
  }
  return result;
}

// ---------------------------------------------------------------------------
// ResultArchive: each method forwards to its Impl.

ResultArchive::ResultArchive(std::shared_ptr<ArchiveStore> store, fs::path outbox_dir)
    : impl_(std::make_unique<Impl>(std::move(store), std::move(outbox_dir))) {}
ResultArchive::~ResultArchive() = default;

const ArchiveStore& ResultArchive::store() const { return *impl_->store_; }
const fs::path& ResultArchive::outbox_dir() const { return impl_->outbox_dir_; }
void ResultArchive::SetDeliveryInterval(std::chrono::milliseconds interval) {
  impl_->SetDeliveryInterval(interval);
}
Result<std::string> ResultArchive::BeginRun() { return impl_->BeginRun(); }
Result<ResultArchive::JoinedRun> ResultArchive::JoinRunGroup(
    const std::string& group, int owner_pid, const std::vector<std::string>& task_ids) {
  return impl_->JoinRunGroup(group, owner_pid, task_ids);
}

Result<std::string> ResultArchive::RunOfGroup(const std::string& group) const {
  return impl_->RunOfGroup(group);
}
Status ResultArchive::WriteRunPart(const RunRecord& record, int part) {
  return impl_->WriteRunPart(record, part, false);
}
Status ResultArchive::WriteRunPartBatched(const RunRecord& record, int part) {
  return impl_->WriteRunPart(record, part, true);
}
void ResultArchive::SetRunIdGeneratorForTesting(std::function<std::string()> generator) {
  impl_->new_run_id_ = std::move(generator);
}
Result<fs::path> ResultArchive::ArtifactDir(const std::string& run_id,
                                            const std::string& task_id) {
  return impl_->ArtifactDir(run_id, task_id);
}
Status ResultArchive::WriteTask(const TaskRecord& record) { return impl_->WriteTask(record); }
Status ResultArchive::WriteRun(const RunRecord& record) { return impl_->WriteRun(record); }
Status ResultArchive::WriteStarted(const TaskRecord& record, std::size_t output_cap) {
  return impl_->WriteStarted(record, output_cap);
}
Result<int> ResultArchive::Sync() { return impl_->Sync(); }
int ResultArchive::PendingCount(const std::string& run_id) const {
  return impl_->PendingCount(run_id);
}
Result<std::vector<RunListing>> ResultArchive::ListRuns(std::size_t read_summaries) {
  return impl_->ListRuns(read_summaries);
}
Result<RunRecord> ResultArchive::ReadRun(const std::string& run_id) {
  return impl_->ReadRun(run_id);
}
Result<std::vector<TaskRecord>> ResultArchive::ReadTasks(const std::string& run_id) {
  return impl_->ReadTasks(run_id);
}
Result<TaskRecord> ResultArchive::ReadTask(const std::string& run_id,
                                           const std::string& task_id) {
  return impl_->ReadTask(run_id, task_id);
}
Status ResultArchive::Fetch(const std::string& run_id, const fs::path& dest) {
  return impl_->Fetch(run_id, dest);
}
Result<PruneResult> ResultArchive::Prune(int keep) { return impl_->Prune(keep); }
std::string ResultArchive::WhyMayStillRun(const std::string& run_id) const {
  return impl_->WhyMayStillRun(run_id);
}

}  // namespace sandrun
