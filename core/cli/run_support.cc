#include "run_support.h"

#include <unistd.h>

#include <fstream>
#include <iterator>
#include <sstream>

namespace sandrun::cli {

RunSetup SetUpRunOrThrow(const cxxopts::ParseResult& parsed, const CliContext& context,
                         const Config& config, std::size_t task_count) {
  RunSetupInputs inputs;
  inputs.env = context.env;
  inputs.command_line = context.command_line;
  inputs.task_count = task_count;
  for (const auto& [flag, values] : BackendFlagsGiven(parsed, context)) {
    inputs.backend_flags_given.push_back(flag);
  }
  auto setup = SetUpRun(context.registry, config, inputs);
  if (!setup.ok()) throw UsageError{setup.status().message()};
  return std::move(setup).value();
}

std::vector<BackendCandidate> CandidatesOrThrow(const CliContext& context, const Config& config) {
  auto candidates = MakeCandidates(context.registry, config, context.env);
  if (!candidates.ok()) throw UsageError{candidates.status().message()};
  return std::move(candidates).value();
}

int RunNotStarted(const Status& status) {
  if (status.code() == StatusCode::kInvalidArgument) throw UsageError{status.message()};
  PrintError(status.message());
  return kExitSandrunError;
}

namespace {

/// The group of the process that started this one (a ctest invocation):
/// its pid and its start time (field 22 of /proc/PID/stat, so a reused pid
/// is another group). Empty when /proc cannot tell.
std::string ParentRunGroup() {
  pid_t parent = getppid();
  std::ifstream stat("/proc/" + std::to_string(parent) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  // The command name (field 2) is in parentheses and may hold spaces.
  std::size_t close = text.rfind(')');
  if (close == std::string::npos) return "";
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  for (int index = 3; index <= 22 && fields >> field; ++index) {
    if (index == 22) return "parent:" + std::to_string(parent) + ":" + field;
  }
  return "";
}

}  // namespace

void AddRunGroupOptions(cxxopts::Options& options, const std::string& group_help,
                        const std::string& parent_help) {
  options.add_options("Run group")
      ("run-group", group_help, cxxopts::value<std::string>())
      ("run-group-of-parent", parent_help);
}

std::string RunGroupOf(const cxxopts::ParseResult& parsed, const CliContext& context,
                       int* owner_pid) {
  if (parsed.count("run-group")) {
    std::string group = parsed["run-group"].as<std::string>();
    if (group.empty()) throw UsageError{"--run-group must not be empty"};
    return group;
  }
  if (auto it = context.env.find("SANDRUN_RUN_GROUP"); it != context.env.end() && !it->second.empty()) {
    return it->second;
  }
  if (parsed.count("run-group-of-parent")) {
    std::string group = ParentRunGroup();
    if (!group.empty() && owner_pid != nullptr) *owner_pid = getppid();
    return group;
  }
  return "";
}

}  // namespace sandrun::cli
