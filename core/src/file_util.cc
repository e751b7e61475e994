#include "sandrun/file_util.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

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

}  // namespace sandrun
