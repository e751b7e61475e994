// The CLI's side of a run: sandrun/run_setup.h with its errors as usage
// errors (exit 2). Shared by `exec`, `batch`, `doctor`, `cleanup` and the
// `gtest` command (gtest_adapter/src/gtest_command.cc).
#ifndef SANDRUN_CLI_RUN_SUPPORT_H_
#define SANDRUN_CLI_RUN_SUPPORT_H_

#include <string>
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

/// Declares --run-group G and --run-group-of-parent (`what` says what they
/// do for the command, after "Add this command to" / "the run of").
void AddRunGroupOptions(cxxopts::Options& options, const std::string& group_help,
                        const std::string& parent_help);
/// The run group the command line names: --run-group G, else
/// $SANDRUN_RUN_GROUP, else with --run-group-of-parent the process that
/// started sandrun (a ctest invocation: its pid and start time; its pid goes
/// to `owner_pid`). "" when none is named, or /proc cannot tell the parent.
std::string RunGroupOf(const cxxopts::ParseResult& parsed, const CliContext& context,
                       int* owner_pid);

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_RUN_SUPPORT_H_
