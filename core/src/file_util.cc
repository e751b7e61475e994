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

Status CopyReplacing(const std::filesystem::path& source, const std::filesystem::path& target) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto failed = [&](const std::string& what) {
    return InternalError("cannot copy " + source.string() + " to " + target.string() + ": " + what +
                         (ec ? ": " + ec.message() : ""));
  };
  if (target.has_parent_path()) {
    fs::create_directories(target.parent_path(), ec);
    if (ec) return failed("cannot make " + target.parent_path().string());
  }
  fs::path temporary = target;
  temporary += ".sandrun-" + std::to_string(getpid()) + ".tmp";
  fs::remove_all(temporary, ec);
  fs::copy(source, temporary, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    return failed("copy");
  }
  // rename() replaces a file or an empty directory only.
  if (fs::is_directory(fs::symlink_status(target, ec))) fs::remove_all(target, ec);
  fs::rename(temporary, target, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    return failed("rename");
  }
  return OkStatus();
}

}  // namespace sandrun
