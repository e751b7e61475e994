#include "local_files.h"

#include <algorithm>
#include <system_error>

namespace sandrun::local {
namespace fs = std::filesystem;

namespace {

Status FromErrorCode(const std::error_code& ec, const std::string& what) {
  if (ec == std::errc::no_such_file_or_directory) return NotFoundError(what + ": " + ec.message());
  if (ec == std::errc::permission_denied) return PermissionDeniedError(what + ": " + ec.message());
  if (ec == std::errc::no_space_on_device) {
    return Status(StatusCode::kResourceExhausted, what + ": " + ec.message());
  }
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

bool IsWithin(const fs::path& path, const fs::path& root) {
  auto [root_end, path_it] = std::mismatch(root.begin(), root.end(), path.begin(), path.end());
  // A trailing separator in root shows up as an empty last element.
  return root_end == root.end() || (std::next(root_end) == root.end() && root_end->empty());
}

Status CopyIn(const FileUpload& upload, const fs::path& workdir) {
  fs::path source = fs::path(upload.source).lexically_normal();
  if (source.has_filename() == false && source.has_parent_path()) source = source.parent_path();
  std::error_code ec;
  if (!fs::exists(source, ec)) {
    return NotFoundError("upload source '" + upload.source + "' does not exist");
  }
  fs::path dest(upload.destination);
  if (dest.empty()) {
    dest = source.filename();
  } else if (!dest.has_filename()) {
    dest /= source.filename();
  }
  if (dest.is_relative()) dest = workdir / dest;
  dest = dest.lexically_normal();
  fs::create_directories(dest.parent_path(), ec);
  if (ec) return FromErrorCode(ec, "cannot create '" + dest.parent_path().string() + "'");
  if (fs::is_directory(source, ec)) {
    fs::copy(source, dest,
             fs::copy_options::recursive | fs::copy_options::overwrite_existing |
                 fs::copy_options::copy_symlinks,
             ec);
  } else {
    fs::copy_file(source, dest, fs::copy_options::overwrite_existing, ec);
  }
  if (ec) return FromErrorCode(ec, "cannot copy '" + upload.source + "' to '" + dest.string() + "'");
  return OkStatus();
}

Result<std::vector<std::string>> CopyOut(const std::string& sandbox_path,
                                         const fs::path& host_dir, const fs::path& workdir,
                                         const fs::path& sandbox_root) {
  fs::path requested(sandbox_path);
  fs::path source = (requested.is_absolute() ? requested : workdir / requested).lexically_normal();
  if (requested.is_relative() && !IsWithin(source, sandbox_root) && !IsWithin(source, workdir)) {
    return PermissionDeniedError("refusing '" + sandbox_path + "': it leads out of the sandbox");
  }
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
  if (requested.is_relative() && std::none_of(allowed.begin(), allowed.end(), [&](const fs::path& r) {
        return IsWithin(real_parent, r);
      })) {
    return PermissionDeniedError("refusing '" + sandbox_path +
                                 "': a symlink on its path leads out of the sandbox");
  }
  fs::create_directories(host_dir, ec);
  if (ec) return FromErrorCode(ec, "cannot create '" + host_dir.string() + "'");
  fs::path host_root = fs::weakly_canonical(fs::absolute(host_dir), ec);
  fs::path name = source.filename();
  fs::path relative = (name.empty() || name == "." || name == "..") ? fs::path() : name;
  TreeCopier copier(host_root, allowed);
  SANDRUN_RETURN_IF_ERROR(copier.Copy(source, relative));
  return copier.TakeWritten();
}

}  // namespace sandrun::local
