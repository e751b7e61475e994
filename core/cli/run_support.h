// The CLI's side of a run: sandrun/run_setup.h with its errors as usage
// errors (exit 2). Shared by `exec`, `batch`, `doctor`, `cleanup` and the
// `gtest` command (gtest_adapter/src/gtest_command.cc).
#ifndef SANDRUN_CLI_RUN_SUPPORT_H_
#define SANDRUN_CLI_RUN_SUPPORT_H_

#include <vector>

#include "cli_common.h"
#include "sandrun/engine.h"
#include "sandrun/run_setup.h"

namespace sandrun::cli {

/// SetUpRun for a parsed command line: `task_count` as RunSetupInputs says
/// (1: one task; 0: not known yet). Bad input (an unknown backend, a bad
/// backend setting, a backend flag or GPU request no candidate can honour)
/// raises UsageError: exit 2, nothing runs.
RunSetup SetUpRunOrThrow(const cxxopts::ParseResult& parsed, const CliContext& context,
                         const Config& config, std::size_t task_count);

/// MakeCandidates, its bad input raised as UsageError.
std::vector<BackendCandidate> CandidatesOrThrow(const CliContext& context, const Config& config);

/// For a run Engine::Run could not start: bad input a backend found
/// (kInvalidArgument) raises UsageError (exit 2); anything else is printed
/// and returns kExitSandrunError.
int RunNotStarted(const Status& status);

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_RUN_SUPPORT_H_
