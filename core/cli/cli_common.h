// What every `sandrun` subcommand shares: the registry of backends, the
// config flags, opening a backend and its archive, and the exit-code
// conventions for usage errors. One home for each, so subcommands stay thin.
#ifndef SANDRUN_CLI_CLI_COMMON_H_
#define SANDRUN_CLI_CLI_COMMON_H_

#include <cxxopts.hpp>

#include <filesystem>
#include <map>
#include <optional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sandrun/archive.h"
#include "sandrun/backend.h"
#include "sandrun/config.h"
#include "sandrun/registry.h"

namespace sandrun::cli {

/// Built once in main() and handed to the subcommand.
struct CliContext {
  BackendRegistry registry;              ///< Built-ins plus SANDRUN_PLUGIN_PATH plugins.
  std::vector<Status> plugin_problems;   ///< Plugins that failed to load.
  std::map<std::string, std::string> env;
  std::filesystem::path cwd;
  std::vector<std::string> command_line; ///< The whole argv, for run.json.
};

/// Thrown inside a subcommand for bad usage; main() prints it and exits 2.
struct UsageError {
  std::string message;
};

/// Adds the options that map onto Config keys (--backend, --jobs, --timeout,
/// --image, --cpu, --memory, --gpu, --network, --retries, --output-cap, ...).
/// `which` selects groups: "backend" only, or "all". Then the flags each
/// registered backend declares (BackendFlag), in a group "Backend <name>":
/// with "backend", only those for every command.
void AddConfigOptions(cxxopts::Options& options, const CliContext& context,
                      const std::string& which = "all");

/// The backend flags that were given, by name, with their values.
std::map<std::string, std::vector<std::string>> BackendFlagsGiven(
    const cxxopts::ParseResult& parsed, const CliContext& context);

/// Loads the Config with the flags that were given on top of env and file,
/// then the backend flags and their variables (ApplyBackendFlags, same
/// precedence). Exits via UsageError on a bad value.
Config LoadConfigOrThrow(const cxxopts::ParseResult& parsed, const CliContext& context);

/// Parses args (args[0] is the subcommand's name). Unknown flags, missing
/// values and stray arguments raise UsageError naming them. Handles --help by
/// printing and returning nullopt.
std::optional<cxxopts::ParseResult> ParseOrThrow(cxxopts::Options& options,
                                                 const std::vector<std::string>& args);

/// The examples and exit codes `--help` of `program` ("sandrun batch") ends
/// with; ParseOrThrow prints them after the options.
std::string HelpEpilogueFor(const std::string& program);

/// The file named by report flag `flag` (--junit), if given, after checking
/// that it can be written (CheckWritableFile): a report that cannot be
/// written raises UsageError naming the flag and path (exit 2), before
/// anything runs. Nothing is created. Empty when the flag was not given.
std::filesystem::path WritableReportPath(const cxxopts::ParseResult& parsed,
                                         const std::string& flag);

/// Declares `--report FILE.html` (the HTML report, sandrun/report.h).
void AddReportOption(cxxopts::Options& options);
/// The HTML report to write: --report when given, else the config key
/// `report` (SANDRUN_REPORT, sandrun.json); checked as WritableReportPath
/// does. Empty: no report.
std::filesystem::path HtmlReportPath(const cxxopts::ParseResult& parsed, const Config& config);

/// A backend and the result archive in its volume, ready to use.
struct OpenedArchive {
  std::shared_ptr<Backend> backend;
  std::shared_ptr<ResultArchive> archive;
};
/// Opens `config.backend`'s archive, with the outbox under config.state_dir.
Result<OpenedArchive> OpenArchive(const CliContext& context, const Config& config);

/// The outbox of config.backend: OutboxRoot(config)/<backend>, as the
/// engine lays it out.
std::filesystem::path OutboxDir(const Config& config);

/// Prints "sandrun: <message>" to stderr.
void PrintError(const std::string& message);

/// Writes all of `data` to `fd` (a command's output passing through); stops
/// quietly when the reader is gone: a closed pipe downstream is not ours.
void WriteAll(int fd, std::string_view data);

/// True when stdout/stderr is a terminal (for progress lines and colour).
bool StdoutIsTerminal();
bool StderrIsTerminal();

}  // namespace sandrun::cli

#endif  // SANDRUN_CLI_CLI_COMMON_H_
