// The one symlink rule for uploads (FileUpload), so every backend sends the
// same tree:
//
//   - a top-level upload source that is a symlink is followed: its target's
//     content (a file, or a directory tree) goes up under the destination;
//   - a symlink inside an uploaded directory is kept, as a symlink, only when
//     its target is relative and resolves inside that directory (lexically
//     and on disk, so a chain of links cannot leave it);
//   - any other symlink inside an uploaded directory refuses the whole upload
//     with kPermissionDenied naming the link, before anything is sent.
#ifndef SANDRUN_UPLOAD_SYMLINKS_H_
#define SANDRUN_UPLOAD_SYMLINKS_H_

#include <filesystem>

#include "sandrun/status.h"

namespace sandrun {

/// True when symlink `link`, somewhere under directory `root`, has a relative
/// target that stays inside `root` both lexically and once resolved.
bool SymlinkStaysInside(const std::filesystem::path& root, const std::filesystem::path& link);

/// OK when `link` (a symlink under the uploaded directory `root`) may be
/// uploaded as a symlink; otherwise kPermissionDenied naming the link and
/// its target.
Status CheckUploadSymlink(const std::filesystem::path& root, const std::filesystem::path& link);

}  // namespace sandrun

#endif  // SANDRUN_UPLOAD_SYMLINKS_H_
