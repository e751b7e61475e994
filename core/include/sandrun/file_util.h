// Small file-system helpers every part of sandrun needs, so each has one home:
// opening and reading a whole file, and asking whether a path lies under a directory.
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

}  // namespace sandrun

#endif  // SANDRUN_FILE_UTIL_H_
