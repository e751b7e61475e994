#include "sandrun/upload_symlinks.h"

#include <system_error>

#include "sandrun/file_util.h"

namespace sandrun {
namespace fs = std::filesystem;

bool SymlinkStaysInside(const fs::path& root, const fs::path& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  if (ec || target.empty() || target.is_absolute()) return false;
  const fs::path base = root.lexically_normal();
  if (!IsWithin((link.lexically_normal().parent_path() / target).lexically_normal(), base)) {
    return false;
  }
  // Lexically inside, but a link it goes through may lead out ("a" -> "/",
  // "b" -> "a/etc"): compare where it really ends up. A dangling target is
  // resolved as far as it exists.
  fs::path real_root = fs::canonical(root, ec);
  if (ec) return false;
  fs::path resolved = fs::weakly_canonical(link, ec);
  return !ec && IsWithin(resolved, real_root);
}

Status CheckUploadSymlink(const fs::path& root, const fs::path& link) {
  if (SymlinkStaysInside(root, link)) return OkStatus();
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  return PermissionDeniedError("refusing to upload symlink '" + link.string() + "' (to '" +
                               target.string() + "'): it points outside the uploaded directory " +
                               root.string());
}

}  // namespace sandrun
