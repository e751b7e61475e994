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
/// parent directories and replacing what was there; symlinks are copied as
/// symlinks. The copy goes to a temporary name beside `target` first, so a
/// reader never sees half of it. The message names both paths.
Status CopyReplacing(const std::filesystem::path& source, const std::filesystem::path& target);

}  // namespace sandrun

#endif  // SANDRUN_FILE_UTIL_H_
