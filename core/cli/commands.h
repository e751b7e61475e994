// The `sandrun` subcommands. Each takes its own argv (args[0] is the
// subcommand's name) and returns the process exit code. UsageError escapes
// to main(), which prints it and exits 2.
#ifndef SANDRUN_CLI_COMMANDS_H_
#define SANDRUN_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "cli_common.h"

namespace sandrun::cli {

int ExecCommand(const std::vector<std::string>& args, CliContext& context);
int BatchCommand(const std::vector<std::string>& args, CliContext& context);
int ResultsCommand(const std::vector<std::string>& args, CliContext& context);
int BackendsCommand(const std::vector<std::string>& args, CliContext& context);
int ConfigCommand(const std::vector<std::string>& args, CliContext& context);
int DoctorCommand(const std::vector<std::string>& args, CliContext& context);
int CleanupCommand(const std::vector<std::string>& args, CliContext& context);
int ServiceCommand(const std::vector<std::string>& args, CliContext& context);
/// `sandrun gtest`: provided by the GoogleTest adapter
/// (gtest_adapter/src/gtest_command.cc, library sandrun_gtest_runner).
int GtestCommand(const std::vector<std::string>& args, CliContext& context);

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_COMMANDS_H_
