// Turning a Config into an engine run: the backend candidates in order, the
// run options, listeners, and Ctrl-C handling. Shared by `exec` and `batch`.
#ifndef SANDRUN_CLI_RUN_SUPPORT_H_
#define SANDRUN_CLI_RUN_SUPPORT_H_

#include <vector>

#include "cli_common.h"
#include "sandrun/engine.h"

namespace sandrun::cli {

/// config.backend then config.fallback, each constructed from the registry.
/// "auto" expands to every registered backend, remote ones first. An unknown
/// name raises UsageError listing the known ones.
std::vector<BackendCandidate> MakeCandidates(const CliContext& context, const Config& config);

/// Refuses, as a UsageError (exit 2, nothing runs), what no candidate could
/// honour: a backend-specific flag (--secret) when that backend is not a
/// candidate, and a GPU request when no candidate can provide one.
void RefuseUnservedRequests(const cxxopts::ParseResult& parsed, const Config& config,
                            const std::vector<BackendCandidate>& candidates);

/// Options from config: jobs (config, else the first candidate's suggestion,
/// else the number of cores; 1 for a single task, without asking a backend;
/// `task_count` 0 when not known yet),
/// retries, outbox, command line.
RunOptions MakeRunOptions(const CliContext& context, const Config& config,
                          const std::vector<BackendCandidate>& candidates,
                          std::size_t task_count);

/// For a run Engine::Run could not start: bad input a backend found
/// (kInvalidArgument) raises UsageError (exit 2); anything else is printed
/// and returns kExitSandrunError.
int RunNotStarted(const Status& status);

/// The flag that SIGINT/SIGTERM set. The first signal asks the run to stop
/// cleanly (sandboxes terminated, records written); a second one exits 130
/// at once.
const CancelFlag& InstallCancelHandlers();

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_RUN_SUPPORT_H_
