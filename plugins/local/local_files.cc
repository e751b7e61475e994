#include "local_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include "sandrun/file_util.h"
#include "sandrun/upload_symlinks.h"

namespace sandrun::local {
namespace fs = std::filesystem;

namespace {

std::error_code ErrnoCode() { return std::error_code(errno, std::generic_category()); }

Status FromErrorCode(const std::error_code& ec, const std::string& what) {
  if (ec == std::errc::no_such_file_or_directory) return NotFoundError(what + ": " + ec.message());
  if (ec == std::errc::permission_denied) return PermissionDeniedError(what + ": " + ec.message());
  if (ec == std::errc::no_space_on_device) return ResourceExhaustedError(what + ": " + ec.message());
  return InternalError(what + ": " + ec.message());
}

// Copies one tree into host_root/relative. `allowed` are the roots symlinks
// may point into.
class TreeCopier {
 public:
  TreeCopier(fs::path host_root, std::vector<fs::path> allowed)
      : host_root_(std::move(host_root)), allowed_(std::move(allowed)) {}

  Status Copy(const fs::path& source, const fs::path& relative) {
    std::error_code ec;
    fs::file_status link_status = fs::symlink_status(source, ec);
    if (ec) return FromErrorCode(ec, "cannot read '" + source.string() + "'");
    fs::path real = source;
    if (fs::is_symlink(link_status)) {
      real = fs::weakly_canonical(source, ec);
      if (ec || !InsideAllowed(real)) {
        return PermissionDeniedError("refusing '" + source.string() +
                                     "': symlink points outside the sandbox (to '" +
                                     real.string() + "')");
      }
      if (fs::is_directory(real, ec)) {
        return PermissionDeniedError("refusing '" + source.string() +
                                     "': symlinks to directories are not copied out");
      }
    }
    fs::path dest = relative.empty() ? host_root_ : host_root_ / relative;
    if (!IsWithin(dest.lexically_normal(), host_root_)) {
      return PermissionDeniedError("refusing '" + source.string() + "': it would land outside '" +
                                   host_root_.string() + "'");
    }
    // Never write through a symlink already sitting in the target directory.
    if (!relative.empty() && fs::is_symlink(fs::symlink_status(dest, ec))) {
      return PermissionDeniedError("refusing to write through symlink '" + dest.string() + "'");
    }
    fs::file_status status = fs::status(real, ec);
    if (fs::is_directory(status)) {
      fs::create_directories(dest, ec);
      if (ec) return FromErrorCode(ec, "cannot create '" + dest.string() + "'");
      std::vector<fs::path> children;
      for (const auto& entry : fs::directory_iterator(real, ec)) children.push_back(entry.path());
      if (ec) return FromErrorCode(ec, "cannot list '" + source.string() + "'");
      std::sort(children.begin(), children.end());
      for (const auto& child : children) {
        SANDRUN_RETURN_IF_ERROR(Copy(child, relative / child.filename()));
      }
      return OkStatus();
    }
    if (!fs::is_regular_file(status)) return OkStatus();  // fifos, sockets, devices
    fs::create_directories(dest.parent_path(), ec);
    fs::copy_file(real, dest, fs::copy_options::overwrite_existing, ec);
    if (ec) return FromErrorCode(ec, "cannot copy '" + source.string() + "'");
    written_.push_back(relative.generic_string());
    return OkStatus();
  }

  std::vector<std::string> TakeWritten() {
    std::sort(written_.begin(), written_.end());
    return std::move(written_);
  }

 private:
  bool InsideAllowed(const fs::path& path) const {
    return std::any_of(allowed_.begin(), allowed_.end(),
                       [&](const fs::path& root) { return IsWithin(path, root); });
  }

  fs::path host_root_;
  std::vector<fs::path> allowed_;
  std::vector<std::string> written_;
};

}  // namespace

Result<UniqueFd> OpenDirectoryBeneath(const fs::path& base, const fs::path& relative,
                                      bool create) {
  UniqueFd dir(::open(base.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC));
  if (!dir) return FromErrorCode(ErrnoCode(), "cannot open '" + base.string() + "'");
  for (const auto& part : relative) {
    if (part.empty() || part == ".") continue;
    if (part == ".." || part.is_absolute()) {
      return InvalidArgumentError("'" + relative.string() + "' leads out of the sandbox");
    }
    if (create && ::mkdirat(dir.get(), part.c_str(), 0755) != 0 && errno != EEXIST) {
      return FromErrorCode(ErrnoCode(), "cannot create '" + (base / relative).string() + "'");
    }
    // O_NOFOLLOW: a symlink the task planted on the way is refused, never
    // followed out of the sandbox.
    UniqueFd next(::openat(dir.get(), part.c_str(), O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC));
    if (!next) {
      if (errno == ELOOP || errno == ENOTDIR) {
        return PermissionDeniedError("refusing '" + relative.string() + "': '" + part.string() +
                                     "' in the sandbox is a symlink or not a directory");
      }
      return FromErrorCode(ErrnoCode(), "cannot open '" + (base / relative).string() + "'");
    }
    dir = std::move(next);
  }
  return dir;
}

namespace {

// Copies host file `source` to `name` in `dir` without following a symlink
// at `name`, keeping the source's permission bits.
Status CopyFileAt(int dir, const std::string& name, const fs::path& source,
                  const std::string& shown) {
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in) return FromErrorCode(ErrnoCode(), "cannot read '" + source.string() + "'");
  struct stat st {};
  if (::fstat(in.get(), &st) != 0) return FromErrorCode(ErrnoCode(), "cannot stat '" + source.string() + "'");
  UniqueFd out(::openat(dir, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) {
    if (errno == ELOOP) {
      return PermissionDeniedError("refusing to write through symlink '" + shown +
                                   "' in the sandbox");
    }
    return FromErrorCode(ErrnoCode(), "cannot write '" + shown + "'");
  }
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(in.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return FromErrorCode(ErrnoCode(), "cannot read '" + source.string() + "'");
    if (n == 0) break;
    for (ssize_t done = 0; done < n;) {
      ssize_t w = ::write(out.get(), buffer + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return FromErrorCode(ErrnoCode(), "cannot write '" + shown + "'");
      done += w;
    }
  }
  if (::fchmod(out.get(), st.st_mode & 07777) != 0) {
    return FromErrorCode(ErrnoCode(), "cannot set the mode of '" + shown + "'");
  }
  return OkStatus();
}

// Copies host directory `source` to `name` in `dir`, symlinks as symlinks
// (CopyIn has checked that each points inside the uploaded directory).
Status CopyTreeAt(int dir, const std::string& name, const fs::path& source,
                  const std::string& shown) {
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0) return FromErrorCode(ErrnoCode(), "cannot stat '" + source.string() + "'");
  if (::mkdirat(dir, name.c_str(), (st.st_mode & 07777) | 0700) != 0 && errno != EEXIST) {
    return FromErrorCode(ErrnoCode(), "cannot create '" + shown + "'");
  }
  UniqueFd sub(::openat(dir, name.c_str(), O_DIRECTORY | O_NOFOLLOW | O_RDONLY | O_CLOEXEC));
  if (!sub) {
    if (errno == ELOOP || errno == ENOTDIR) {
      return PermissionDeniedError("refusing '" + shown + "': it is a symlink or a file in the sandbox");
    }
    return FromErrorCode(ErrnoCode(), "cannot open '" + shown + "'");
  }
  std::error_code ec;
  std::vector<fs::path> children;
  for (const auto& entry : fs::directory_iterator(source, ec)) children.push_back(entry.path());
  if (ec) return FromErrorCode(ec, "cannot list '" + source.string() + "'");
  std::sort(children.begin(), children.end());
  for (const auto& child : children) {
    std::string child_name = child.filename().string();
    std::string child_shown = shown + "/" + child_name;
    fs::file_status link = fs::symlink_status(child, ec);
    if (fs::is_symlink(link)) {  // CopyIn refused the tree if a link leads out.
      fs::path target = fs::read_symlink(child, ec);
      if (ec) return FromErrorCode(ec, "cannot read symlink '" + child.string() + "'");
      if (::symlinkat(target.c_str(), sub.get(), child_name.c_str()) != 0) {
        return FromErrorCode(ErrnoCode(), "cannot create symlink '" + child_shown + "'");
      }
    } else if (fs::is_directory(link)) {
      SANDRUN_RETURN_IF_ERROR(CopyTreeAt(sub.get(), child_name, child, child_shown));
    } else if (fs::is_regular_file(link)) {
      SANDRUN_RETURN_IF_ERROR(CopyFileAt(sub.get(), child_name, child, child_shown));
    }  // fifos, sockets and devices are not copied.
  }
  return OkStatus();
}

}  // namespace

Status CopyIn(const FileUpload& upload, const fs::path& workdir) {
  SANDRUN_ASSIGN_OR_RETURN(std::string destination, UploadDestination(upload));
  fs::path given = fs::path(upload.source).lexically_normal();
  if (given.has_filename() == false && given.has_parent_path()) given = given.parent_path();
  std::error_code ec;
  // A top-level symlink is followed: its content is what the user meant.
  fs::path source = fs::canonical(given, ec);
  if (ec) return NotFoundError("upload source '" + upload.source + "' does not exist");
  fs::path dest(destination);
  SANDRUN_ASSIGN_OR_RETURN(UniqueFd parent, OpenDirectoryBeneath(workdir, dest.parent_path(), true));
  std::string shown = dest.generic_string();
  if (fs::is_directory(source, ec)) {
    // Refuse a tree with a link that leads out before copying any of it.
    for (fs::recursive_directory_iterator it(source, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_symlink()) SANDRUN_RETURN_IF_ERROR(CheckUploadSymlink(source, it->path()));
    }
    if (ec) return FromErrorCode(ec, "cannot list '" + source.string() + "'");
    return CopyTreeAt(parent.get(), dest.filename().string(), source, shown);
  }
  return CopyFileAt(parent.get(), dest.filename().string(), source, shown);
}

Result<std::vector<std::string>> CopyOut(const std::string& sandbox_path,
                                         const fs::path& host_dir, const fs::path& workdir,
                                         const fs::path& sandbox_root) {
  SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("download path", sandbox_path));
  fs::path requested(sandbox_path);
  // Relative without "..": lexically inside workdir; symlinks are checked below.
  fs::path source = (workdir / requested).lexically_normal();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(source, ec))) {
    return NotFoundError("'" + sandbox_path + "' does not exist in the sandbox");
  }
  std::vector<fs::path> allowed;
  for (const auto& root : {sandbox_root, workdir}) {
    fs::path canonical = fs::weakly_canonical(root, ec);
    allowed.push_back(ec ? root : canonical);
  }
  // A symlinked directory on the way ("link/file" with link -> /etc) leads out too.
  fs::path real_parent = fs::weakly_canonical(source.parent_path(), ec);
  if (std::none_of(allowed.begin(), allowed.end(), [&](const fs::path& r) {
        return IsWithin(real_parent, r);
      })) {
    return PermissionDeniedError("refusing '" + sandbox_path +
                                 "': a symlink on its path leads out of the sandbox");
  }
  fs::create_directories(host_dir, ec);
  if (ec) return FromErrorCode(ec, "cannot create '" + host_dir.string() + "'");
  fs::path host_root = fs::weakly_canonical(fs::absolute(host_dir), ec);
  fs::path name = source.filename();
  fs::path relative = (name.empty() || name == ".") ? fs::path() : name;
  TreeCopier copier(host_root, allowed);
  SANDRUN_RETURN_IF_ERROR(copier.Copy(source, relative));
  return copier.TakeWritten();
}

}  // namespace sandrun::local
