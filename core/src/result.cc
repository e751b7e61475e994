#include "sandrun/result.h"

#include <array>
#include <utility>

namespace sandrun {
namespace {
constexpr std::array<std::pair<Outcome, std::string_view>, 7> kOutcomeNames{{
    {Outcome::kExited, "exited"},
    {Outcome::kSignaled, "signaled"},
    {Outcome::kTimedOut, "timed_out"},
    {Outcome::kOomKilled, "oom_killed"},
    {Outcome::kCancelled, "cancelled"},
    {Outcome::kInfraError, "infra_error"},
    {Outcome::kInterrupted, "interrupted"},
}};
}  // namespace

std::string_view OutcomeName(Outcome outcome) {
  for (const auto& [value, name] : kOutcomeNames) {
    if (value == outcome) return name;
  }
  return "unknown";
}

std::optional<Outcome> OutcomeFromName(std::string_view name) {
  for (const auto& [value, known] : kOutcomeNames) {
    if (known == name) return value;
  }
  return std::nullopt;
}

int ExitCodeOf(const ExecResult& result) {
  switch (result.outcome) {
    case Outcome::kExited: return result.exit_code;
    case Outcome::kSignaled: return kExitSignalBase + result.signal;
    case Outcome::kTimedOut: return kExitTimedOut;
    case Outcome::kOomKilled: return kExitSignalBase + 9;  // what docker run reports
    case Outcome::kCancelled: return kExitInterrupted;
    case Outcome::kInfraError:
    case Outcome::kInterrupted: return kExitSandrunError;
  }
  return kExitSandrunError;
}

}  // namespace sandrun
