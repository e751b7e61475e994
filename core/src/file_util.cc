#include "sandrun/file_util.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <unistd.h>

namespace sandrun {

Result<std::ifstream> OpenFileForReading(const std::filesystem::path& path) {
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    std::string message = "cannot read " + path.string() + ": " +
                          (err != 0 ? std::strerror(err) : "cannot open");
    if (err == ENOENT || err == ENOTDIR) return NotFoundError(std::move(message));
    if (err == EACCES || err == EPERM) return PermissionDeniedError(std::move(message));
    return InternalError(std::move(message));
  }
  return in;
}

Result<std::string> ReadWholeFile(const std::filesystem::path& path) {
  SANDRUN_ASSIGN_OR_RETURN(std::ifstream in, OpenFileForReading(path));
  std::ostringstream bytes;
  bytes << in.rdbuf();
  // An empty file sets failbit on the copy; only a bad stream is an error.
  if (in.bad() || bytes.bad()) return InternalError("cannot read " + path.string());
  return std::move(bytes).str();
}

bool IsWithin(const std::filesystem::path& path, const std::filesystem::path& root) {
  // "." for root itself, "x/y" below it, "../x" beside it; empty when one is
  // absolute and the other not.
  std::filesystem::path rel = path.lexically_relative(root);
  return !rel.empty() && *rel.begin() != "..";
}

Status CheckCopyTarget(const std::filesystem::path& target) {
  namespace fs = std::filesystem;
  const fs::path name = target.filename();
  if (name.empty() || name == "." || name == "..") {
    return InvalidArgumentError("'" + target.string() + "' must name a file or directory "
                                "(no trailing '/', '.' or '..')");
  }
  std::error_code ec;
  const fs::path absolute = fs::absolute(target, ec).lexically_normal();
  if (IsWithin(fs::current_path(ec).lexically_normal(), absolute)) {
    return InvalidArgumentError("'" + target.string() +
                                "' is the current directory or contains it");
  }
  return OkStatus();
}

Status CopyReplacing(const std::filesystem::path& source, const std::filesystem::path& target) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto refuse = [&](const std::string& why) {
    return InvalidArgumentError("cannot copy " + source.string() + " to " + target.string() +
                                ": " + why);
  };
  auto failed = [&](const std::string& what) {
    return InternalError("cannot copy " + source.string() + " to " + target.string() + ": " + what +
                         (ec ? ": " + ec.message() : ""));
  };
  SANDRUN_RETURN_IF_ERROR(CheckCopyTarget(target));
  const fs::file_status source_status = fs::symlink_status(source, ec);
  if (fs::is_symlink(source_status)) return refuse("the download is a symbolic link");
  if (!fs::exists(source_status)) return refuse("nothing was downloaded");
  const fs::file_status target_status = fs::symlink_status(target, ec);
  if (fs::is_directory(target_status) && !fs::is_directory(source_status)) {
    return refuse("it is a directory and the download is a file");
  }
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) return failed("cannot make " + target.parent_path().string());
  }
  const std::string suffix = ".sandrun-" + std::to_string(getpid());
  fs::path temporary = target;
  temporary += suffix + ".tmp";
  fs::remove_all(temporary, ec);
  // Symbolic links in a downloaded tree stay out: on the host they would
  // point wherever the sandbox chose (they are in the archive's copy).
  fs::copy(source, temporary, fs::copy_options::recursive | fs::copy_options::skip_symlinks, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    return failed("copy");
  }
  // rename() replaces a file or an empty directory only: an existing tree
  // moves aside first and comes back if the rename fails.
  fs::path aside;
  if (fs::is_directory(target_status)) {
    aside = target;
    aside += suffix + ".old";
    fs::remove_all(aside, ec);
    fs::rename(target, aside, ec);
    if (ec) {
      std::error_code ignored;
      fs::remove_all(temporary, ignored);
      return failed("cannot move the old " + target.string() + " aside");
    }
  }
  fs::rename(temporary, target, ec);
  std::error_code ignored;
  if (ec) {
    fs::remove_all(temporary, ignored);
    if (!aside.empty()) fs::rename(aside, target, ignored);
    return failed("rename");
  }
  if (!aside.empty()) fs::remove_all(aside, ignored);
  return OkStatus();
}

}  // namespace sandrun
