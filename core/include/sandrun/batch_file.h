// Batch files: a JSON list of tasks for `sandrun batch`.
//
//   [
//     {"id": "build", "command": ["make", "-j4"], "timeout": 300},
//     {"id": "unit", "command": ["./unit_tests"], "env": {"SEED": "1"},
//      "upload": ["build/unit_tests"], "stdin": "", "image": "debian:bookworm"}
//   ]
//
// Also accepted: {"tasks": [...]} with the same list. Keys per task: id,
// name, command (argv array; required), timeout (seconds), env, image, cpu,
// memory (MiB), network ("none"|"open"), upload (["SRC[:DST]"] or
// [{"source","destination","portable"}]), download (paths), stdin, cwd.
// Unknown keys are errors, at the top level too (a typo must not be ignored
// silently). Relative upload sources are relative to the batch file's
// directory; paths inside the sandbox (upload destinations, downloads, cwd)
// must be relative and stay inside it.
#ifndef SANDRUN_BATCH_FILE_H_
#define SANDRUN_BATCH_FILE_H_

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sandrun/config.h"
#include "sandrun/engine.h"
#include "sandrun/status.h"

namespace sandrun {

/// A task with the sandbox and exec fields that come from config (image,
/// timeout, resources, network, lifetime, output cap) filled in.
Task TaskFromConfig(const Config& config);

/// The isolation config.isolation names, or `entry_default` when it is unset.
Isolation IsolationFor(const Config& config, Isolation entry_default);

/// Unless the lifetime was set (flag, env, file), a task with a timeout gets a
/// sandbox lifetime of that timeout plus a margin for setup (a quarter of it,
/// 1 to 10 minutes), so a sandbox leaked by a killed sandrun does not outlive
/// its task by an hour.
void DeriveDefaultLifetime(const Config& config, Task& task);

/// A timeout in whole milliseconds; `seconds` must have passed
/// CheckTimeoutSeconds.
std::chrono::milliseconds TimeoutFromSeconds(double seconds);

/// Parses a batch from text; `origin` names it in messages ("tasks.json").
/// Errors are kInvalidArgument: "tasks.json:7:15: ..." for syntax, and
/// "tasks.json:12: task #3 'unit': ..." for a bad task. Nothing is validated
/// against the filesystem except upload sources (ValidateTasks does that).
Result<std::vector<Task>> ParseBatch(const std::string& text, const std::string& origin,
                                     const std::filesystem::path& base_dir,
                                     const Config& config);

/// Reads and parses a batch file.
Result<std::vector<Task>> ParseBatchFile(const std::filesystem::path& file, const Config& config);

/// Parses "SRC[:DST]" into an upload.
FileUpload ParseUploadArg(const std::string& text);

/// Parses command-line "K=V" assignments (--env) into `env`, later ones
/// winning. kInvalidArgument "--env expects K=V, got '...'" for an item
/// without '=' or with an empty K.
Status ParseEnvArgs(const std::vector<std::string>& items,
                    std::map<std::string, std::string>& env);

}  // namespace sandrun

#endif  // SANDRUN_BATCH_FILE_H_
