// Internal to the local backend: copying files into and out of a sandbox
// directory, with the checks that keep a download inside its target.
#ifndef SANDRUN_PLUGINS_LOCAL_LOCAL_FILES_H_
#define SANDRUN_PLUGINS_LOCAL_LOCAL_FILES_H_

#include <filesystem>
#include <string>
#include <vector>

#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun::local {

/// Copies upload.source (file or directory, recursively, modes kept) to
/// upload.destination, resolved against `workdir` unless absolute; empty or
/// ending in '/' means "under the source's file name". kNotFound when the
/// source is missing.
Status CopyIn(const FileUpload& upload, const std::filesystem::path& workdir);

/// Copies `sandbox_path` (resolved against `workdir` unless absolute) into
/// `host_dir` under its file name ("." copies the contents). Symlinks to
/// files inside `sandbox_root` or `workdir` are copied as the files they
/// name; a symlink leading anywhere else, a relative path climbing out of
/// the sandbox, or a symlinked directory is refused with kPermissionDenied
/// naming the path, and nothing is written outside `host_dir`. Returns the
/// paths written, relative to host_dir, '/'-separated and sorted.
Result<std::vector<std::string>> CopyOut(const std::string& sandbox_path,
                                         const std::filesystem::path& host_dir,
                                         const std::filesystem::path& workdir,
                                         const std::filesystem::path& sandbox_root);

/// True when `path` (already normal and absolute) is `root` or below it.
bool IsWithin(const std::filesystem::path& path, const std::filesystem::path& root);

}  // namespace sandrun::local

#endif  // SANDRUN_PLUGINS_LOCAL_LOCAL_FILES_H_
