#include "run_support.h"

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

}  // namespace sandrun::cli
