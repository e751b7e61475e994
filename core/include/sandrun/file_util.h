// Small file-system helpers every part of sandrun needs, so each has one home:
// opening and reading a whole file, asking whether a path lies under a
// directory, and copying a tree into place.
#ifndef SANDRUN_FILE_UTIL_H_
#define SANDRUN_FILE_UTIL_H_

#include <filesystem>
#include <fstream>
#include <string>

#include "sandrun/status.h"

namespace sandrun {

/// The bytes of the file at `path`, read in binary mode. kNotFound when it
/// does not exist, kPermissionDenied when it may not be read, kInternal for
/// any other failure; the message names the path and the reason. Callers that
/// owe their users another message map the status.
Result<std::string> ReadWholeFile(const std::filesystem::path& path);

/// The file at `path`, open for reading in binary mode, for a caller that
/// reads it a piece at a time. Errors as ReadWholeFile's.
Result<std::ifstream> OpenFileForReading(const std::filesystem::path& path);

/// True when `path` is `root` itself or lies below it. Lexical: no file is
/// looked at, so symlinks are the caller's business; make both lexically
/// normal first (a trailing separator on `root` is fine). An absolute path is
/// never within a relative root, nor the other way round.
bool IsWithin(const std::filesystem::path& path, const std::filesystem::path& root);

/// Copies the file or directory tree `source` to `target`, making target's
/// parent directories and replacing what was there (a file by a file or a
/// tree, a tree by a tree). Symbolic links inside the tree are left out.
/// The copy goes to a temporary name beside `target` first, so a reader
/// never sees half of it; a replaced tree is restored if the last step fails.
/// kInvalidArgument, nothing touched: `target` ends in '/', '.' or '..', is
/// or contains the current directory, is a directory while `source` is a
/// file, or `source` is a symbolic link or missing. The message names both.
Status CopyReplacing(const std::filesystem::path& source, const std::filesystem::path& target);
/// CopyReplacing's checks of `target` alone, for a caller that takes the
/// path long before the copy (a command-line option).
Status CheckCopyTarget(const std::filesystem::path& target);

}  // namespace sandrun

#endif  // SANDRUN_FILE_UTIL_H_
