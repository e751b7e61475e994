// One run-setup path: what every entry point (the CLI's exec, batch and
// gtest; the GoogleTest adapter) does between loading a Config and starting
// an Engine run, so a new backend plugin needs no change in any of them.
//
//   ApplyBackendFlags   plugin-declared flags and variables -> backend sections
//   SetUpRun            candidates in order, refusals, run options
//
// Errors are Status. kInvalidArgument is bad input (an unknown backend, a bad
// backend setting, a request no candidate can honour): the caller reports it
// as such (the CLI exits 2) and never falls back to another backend over it.
#ifndef SANDRUN_RUN_SETUP_H_
#define SANDRUN_RUN_SETUP_H_

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sandrun/config.h"
#include "sandrun/engine.h"
#include "sandrun/registry.h"
#include "sandrun/status.h"

namespace sandrun {

/// Writes the backend flags (BackendFlag) of every registered backend into
/// config.backend_sections: the value given (`given`, by flag name; one
/// value for a scalar flag), else the first of the flag's variables set and
/// not empty in `env` (a list flag splits it at commas), else what
/// sandrun.json said stays. Records the origin of each value it writes as
/// config.origins["backends.<backend>.<key>"] ("flag --secret", "env
/// MODAL_ENVIRONMENT"). A section that is not a JSON object is left for its
/// backend to report.
void ApplyBackendFlags(const BackendRegistry& registry,
                       const std::map<std::string, std::vector<std::string>>& given,
                       const std::map<std::string, std::string>& env, Config& config);

/// The backends a run may use, in order: config.backend, then each of
/// config.fallback; "auto" stands for every registered backend, highest
/// BackendInfo::auto_rank first (ties by name). Each name once. An unknown
/// name is kInvalidArgument listing the known ones.
Result<std::vector<std::string>> CandidateNames(const BackendRegistry& registry,
                                                const Config& config);

/// Builds each backend of CandidateNames, in order, with `env` in its
/// context. A factory's kInvalidArgument (a bad setting) fails the whole
/// setup with that status; any other failure becomes the candidate's
/// construction_error, for the engine to fall back past.
Result<std::vector<BackendCandidate>> MakeCandidates(
    const BackendRegistry& registry, const Config& config,
    const std::map<std::string, std::string>& env);

/// What an entry point knows besides the Config.
struct RunSetupInputs {
  std::map<std::string, std::string> env;  ///< Reaches each backend's context.
  std::vector<std::string> command_line;   ///< Recorded in run.json.
  /// Tasks to run: 1 sets jobs to 1 without asking a backend; 0 = not known yet.
  std::size_t task_count = 0;
  /// Names of the backend flags the user gave ("secret"), to refuse those
  /// whose backend is not a candidate.
  std::vector<std::string> backend_flags_given;
};

/// A run ready for Engine: the candidates and the options.
struct RunSetup {
  std::vector<BackendCandidate> candidates;
  RunOptions options;
};

/// MakeCandidates, then refuses (kInvalidArgument) what no candidate could
/// honour: a backend flag given for a backend that is not a
/// candidate, and config.gpu when no candidate's capabilities include GPUs.
/// Options: jobs from config, else the first candidate's max_parallel, else
/// the number of cores (1 for a single task); retries; outbox; command line.
/// Every error is kInvalidArgument.
Result<RunSetup> SetUpRun(const BackendRegistry& registry, const Config& config,
                          const RunSetupInputs& inputs);

/// Where records wait before delivery: <state_dir>/outbox, one
/// subdirectory per backend (RunOptions::outbox_dir).
std::filesystem::path OutboxRoot(const Config& config);

}  // namespace sandrun

#endif  // SANDRUN_RUN_SETUP_H_
