// sandrun: run commands and test suites in sandboxes.
#include <signal.h>

#include <cstring>
#include <iostream>

#include "commands.h"

namespace {

struct Subcommand {
  const char* name;
  int (*run)(const std::vector<std::string>&, sandrun::cli::CliContext&);
  const char* summary;
};

constexpr Subcommand kSubcommands[] = {
    {"exec", sandrun::cli::ExecCommand, "Run one command in a sandbox, streaming its output"},
    {"batch", sandrun::cli::BatchCommand, "Run a JSON list of tasks in parallel sandboxes"},
    {"gtest", sandrun::cli::GtestCommand, "Run each case of a GoogleTest binary as its own process in sandboxes"},
    {"results", sandrun::cli::ResultsCommand, "List, show, fetch, export, prune and sync archived runs"},
    {"backends", sandrun::cli::BackendsCommand, "List backends and whether they can be used now"},
    {"config", sandrun::cli::ConfigCommand, "Print the effective config and where each value came from"},
    {"doctor", sandrun::cli::DoctorCommand, "Check everything a run needs and say what to fix"},
    {"cleanup", sandrun::cli::CleanupCommand, "Remove sandboxes left behind by killed runs"},
    {"service", sandrun::cli::ServiceCommand, "Keep warm sandboxes for the sandrun execs of one ctest invocation"},
};

void PrintUsage(std::ostream& out) {
  out << "usage: sandrun <command> [options]\n\n"
         "Runs commands and test suites in sandboxes, through backend plugins\n"
         "(`sandrun backends` lists them). Every execution is recorded in a result\n"
         "archive that `sandrun results` reads.\n\ncommands:\n";
  for (const auto& c : kSubcommands) {
    out << "  " << c.name << std::string(10 - std::strlen(c.name), ' ') << c.summary << "\n";
  }
  out << "\n`sandrun <command> --help` describes each command.\n"
         "Config: flags > SANDRUN_* environment > sandrun.json > defaults (`sandrun config`).\n";
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv, argv + argc);
  if (args.size() < 2 || args[1] == "-h" || args[1] == "--help" || args[1] == "help") {
    PrintUsage(args.size() < 2 ? std::cerr : std::cout);
    return args.size() < 2 ? sandrun::kExitUsage : 0;
  }
  if (args[1] == "--version" || args[1] == "version") {
    std::cout << "sandrun " << SANDRUN_VERSION << "\n";
    return 0;
  }
  const Subcommand* command = nullptr;
  for (const auto& c : kSubcommands) {
    if (args[1] == c.name) command = &c;
  }
  if (command == nullptr) {
    sandrun::cli::PrintError("unknown command '" + args[1] + "' (see `sandrun --help`)");
    return sandrun::kExitUsage;
  }

  sandrun::cli::CliContext context;
  context.env = sandrun::ProcessEnvironment();
  context.cwd = std::filesystem::current_path();
  context.command_line = args;
  context.plugin_problems = sandrun::RegisterAllBackends(context.registry, context.env);
  for (const auto& problem : context.plugin_problems) {
    sandrun::cli::PrintError("warning: " + problem.message());
  }

  std::vector<std::string> sub_args(args.begin() + 1, args.end());
  sub_args[0] = std::string("sandrun ") + command->name;
  try {
    return command->run(sub_args, context);
  } catch (const sandrun::cli::UsageError& e) {
    sandrun::cli::PrintError(e.message);
    return sandrun::kExitUsage;
  }
}
