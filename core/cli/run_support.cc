#include "run_support.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

namespace sandrun::cli {
namespace {

CancelFlag g_cancel;
volatile sig_atomic_t g_signals = 0;

void OnSignal(int) {
  g_signals = g_signals + 1;
  if (g_signals > 1) _exit(kExitInterrupted);
  g_cancel.Cancel();
  static const char kMessage[] =
      "\nsandrun: interrupted, stopping sandboxes (press Ctrl-C again to quit at once)\n";
  ssize_t ignored = write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  (void)ignored;
}

/// The order "auto" tries backends in: remote capacity first, then the
/// local fallbacks. Anything else registered (third-party plugins) goes last.
const char* const kAutoOrder[] = {"modal", "docker", "local"};

}  // namespace

std::vector<BackendCandidate> MakeCandidates(const CliContext& context, const Config& config) {
  std::vector<std::string> names;
  auto add = [&](const std::string& name) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  auto expand = [&](const std::string& name) {
    if (name != "auto") return add(name);
    for (const char* n : kAutoOrder) {
      if (context.registry.Has(n)) add(n);
    }
    for (const auto& info : context.registry.List()) add(info.name);
  };
  expand(config.backend);
  for (const auto& name : config.fallback) expand(name);

  std::vector<BackendCandidate> candidates;
  for (const auto& name : names) {
    if (!context.registry.Has(name)) {
      // Reuse the registry's message, which lists the known backends.
      throw UsageError{context.registry.Create(name, config).status().message()};
    }
    BackendCandidate candidate;
    candidate.name = name;
    auto backend = context.registry.Create(name, config);
    if (backend.ok()) {
      candidate.backend = std::shared_ptr<Backend>(std::move(backend).value());
    } else if (backend.status().code() == StatusCode::kInvalidArgument) {
      // A bad setting is the user's to fix, never a reason to fall back.
      throw UsageError{backend.status().message()};
    } else {
      candidate.construction_error = backend.status().message();
    }
    candidates.push_back(std::move(candidate));
  }
  return candidates;
}

void RefuseUnservedRequests(const cxxopts::ParseResult& parsed, const Config& config,
                            const std::vector<BackendCandidate>& candidates) {
  std::string names;
  for (const auto& c : candidates) names += (names.empty() ? "" : ", ") + c.name;
  auto has = [&](const std::string& name) {
    return std::any_of(candidates.begin(), candidates.end(),
                       [&](const BackendCandidate& c) { return c.name == name; });
  };
  for (const auto& [flag, backend] : BackendSpecificFlagsGiven(parsed)) {
    if (has(backend)) continue;
    throw UsageError{flag + " applies only to the " + backend +
                     " backend, which this run cannot use (backends: " + names +
                     "); add --backend " + backend + " or --fallback " + backend};
  }
  if (!config.gpu.empty()) {
    bool any = std::any_of(candidates.begin(), candidates.end(), [](const BackendCandidate& c) {
      return c.backend && c.backend->GetCapabilities().supports_gpu;
    });
    if (!any) {
      auto origin = config.origins.find("gpu");
      throw UsageError{"gpu '" + config.gpu + "' (" +
                       (origin == config.origins.end() ? "config" : origin->second) +
                       "): none of the backends this run may use (" + names +
                       ") can provide a GPU; use --backend modal"};
    }
  }
}

RunOptions MakeRunOptions(const CliContext& context, const Config& config,
                          const std::vector<BackendCandidate>& candidates,
                          std::size_t task_count) {
  RunOptions options;
  options.jobs = task_count == 1 ? 1 : config.jobs;
  if (options.jobs <= 0) {
    for (const auto& c : candidates) {
      if (c.backend && c.backend->GetCapabilities().max_parallel > 0) {
        options.jobs = c.backend->GetCapabilities().max_parallel;
        break;
      }
    }
  }
  if (options.jobs <= 0) options.jobs = std::max(1u, std::thread::hardware_concurrency());
  options.retries = config.retries;
  options.outbox_dir = OutboxRoot(config);
  options.command_line = context.command_line;
  return options;
}

int RunNotStarted(const Status& status) {
  if (status.code() == StatusCode::kInvalidArgument) throw UsageError{status.message()};
  PrintError(status.message());
  return kExitSandrunError;
}

const CancelFlag& InstallCancelHandlers() {
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  return g_cancel;
}

}  // namespace sandrun::cli
