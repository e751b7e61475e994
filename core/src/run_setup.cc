#include "sandrun/run_setup.h"

#include <algorithm>
#include <thread>

#include <nlohmann/json.hpp>

namespace sandrun {
namespace {

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::vector<std::string> CandidateNamesOf(const std::vector<BackendCandidate>& candidates) {
  std::vector<std::string> names;
  for (const auto& c : candidates) names.push_back(c.name);
  return names;
}

bool IsCandidate(const std::vector<BackendCandidate>& candidates, const std::string& name) {
  return std::any_of(candidates.begin(), candidates.end(),
                     [&](const BackendCandidate& c) { return c.name == name; });
}

/// A backend flag given for a backend the run cannot use.
Status RefuseFlagsOfOtherBackends(const BackendRegistry& registry,
                                  const std::vector<BackendCandidate>& candidates,
                                  const std::vector<std::string>& flags_given) {
  for (const auto& given : flags_given) {
    for (const auto& info : registry.List()) {
      for (const auto& flag : info.flags) {
        if (flag.name != given || IsCandidate(candidates, info.name)) continue;
        return InvalidArgumentError(
            "--" + given + " applies only to the " + info.name +
            " backend, which this run cannot use (backends: " +
            JoinNames(CandidateNamesOf(candidates)) + "); add --backend " + info.name +
            " or --fallback " + info.name);
      }
    }
  }
  return OkStatus();
}

/// A GPU request no candidate can provide. The hint names the registered
/// backends that can, by their capabilities.
Status RefuseUnservedGpu(const BackendRegistry& registry, const Config& config,
                         const std::vector<BackendCandidate>& candidates,
                         const std::map<std::string, std::string>& env) {
  if (config.gpu.empty()) return OkStatus();
  bool served = std::any_of(candidates.begin(), candidates.end(), [](const BackendCandidate& c) {
    return c.backend && c.backend->GetCapabilities().supports_gpu;
  });
  if (served) return OkStatus();
  std::vector<std::string> able;
  for (const auto& info : registry.List()) {
    if (IsCandidate(candidates, info.name)) continue;
    auto backend = registry.Create(info.name, config, env);
    if (backend.ok() && (*backend)->GetCapabilities().supports_gpu) able.push_back(info.name);
  }
  auto origin = config.origins.find("gpu");
  std::string hint = able.empty() ? "" : "; use --backend " + able.front();
  return InvalidArgumentError("gpu '" + config.gpu + "' (" +
                              (origin == config.origins.end() ? "config" : origin->second) +
                              "): none of the backends this run may use (" +
                              JoinNames(CandidateNamesOf(candidates)) +
                              ") can provide a GPU" + hint);
}

int JobsFor(const Config& config, const std::vector<BackendCandidate>& candidates,
            std::size_t task_count) {
  if (task_count == 1) return 1;
  if (config.jobs > 0) return config.jobs;
  for (const auto& c : candidates) {
    if (c.backend && c.backend->GetCapabilities().max_parallel > 0) {
      return c.backend->GetCapabilities().max_parallel;
    }
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace

void ApplyBackendFlags(const BackendRegistry& registry,
                       const std::map<std::string, std::vector<std::string>>& given,
                       const std::map<std::string, std::string>& env, Config& config) {
  for (const auto& info : registry.List()) {
    for (const auto& flag : info.flags) {
      nlohmann::json value;
      std::string origin;
      if (auto it = given.find(flag.name); it != given.end() && !it->second.empty()) {
        if (flag.list) value = it->second;
        else value = it->second.back();
        origin = "flag --" + flag.name;
      } else {
        for (const auto& variable : flag.env) {
          auto set = env.find(variable);
          if (set == env.end() || set->second.empty()) continue;
          if (flag.list) value = SplitConfigList(set->second);
          else value = set->second;
          origin = "env " + variable;
          break;
        }
      }
      if (origin.empty()) continue;
      std::string& text = config.backend_sections[info.name];
      auto section = nlohmann::json::parse(text.empty() ? "{}" : text, nullptr, false);
      if (!section.is_object()) continue;  // the backend reports its malformed section
      section[flag.key] = value;
      text = section.dump();
      config.origins["backends." + info.name + "." + flag.key] = origin;
    }
  }
}

Result<std::vector<std::string>> CandidateNames(const BackendRegistry& registry,
                                                const Config& config) {
  std::vector<BackendInfo> by_rank = registry.List();  // sorted by name
  std::stable_sort(by_rank.begin(), by_rank.end(), [](const BackendInfo& a, const BackendInfo& b) {
    return a.auto_rank > b.auto_rank;
  });
  std::vector<std::string> names;
  auto add = [&](const std::string& name) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  auto expand = [&](const std::string& name) -> Status {
    if (name == "auto") {
      for (const auto& info : by_rank) add(info.name);
      return OkStatus();
    }
    if (!registry.Has(name)) {
      // The registry's message lists the known backends; nothing is built.
      return InvalidArgumentError(registry.Create(name, config, {}).status().message());
    }
    add(name);
    return OkStatus();
  };
  SANDRUN_RETURN_IF_ERROR(expand(config.backend));
  for (const auto& name : config.fallback) SANDRUN_RETURN_IF_ERROR(expand(name));
  return names;
}

Result<std::vector<BackendCandidate>> MakeCandidates(
    const BackendRegistry& registry, const Config& config,
    const std::map<std::string, std::string>& env) {
  SANDRUN_ASSIGN_OR_RETURN(std::vector<std::string> names, CandidateNames(registry, config));
  std::vector<BackendCandidate> candidates;
  for (const auto& name : names) {
    BackendCandidate candidate;
    candidate.name = name;
    auto backend = registry.Create(name, config, env);
    if (backend.ok()) {
      candidate.backend = std::shared_ptr<Backend>(std::move(backend).value());
    } else if (backend.status().code() == StatusCode::kInvalidArgument) {
      // A bad setting is the user's to fix, never a reason to fall back.
      return backend.status();
    } else {
      candidate.construction_error = backend.status().message();
    }
    candidates.push_back(std::move(candidate));
  }
  return candidates;
}

Result<RunSetup> SetUpRun(const BackendRegistry& registry, const Config& config,
                          const RunSetupInputs& inputs) {
  RunSetup setup;
  SANDRUN_ASSIGN_OR_RETURN(setup.candidates, MakeCandidates(registry, config, inputs.env));
  SANDRUN_RETURN_IF_ERROR(
      RefuseFlagsOfOtherBackends(registry, setup.candidates, inputs.backend_flags_given));
  SANDRUN_RETURN_IF_ERROR(RefuseUnservedGpu(registry, config, setup.candidates, inputs.env));

  setup.options.jobs = JobsFor(config, setup.candidates, inputs.task_count);
  setup.options.retries = config.retries;
  setup.options.tasks_per_sandbox = config.tasks_per_sandbox;
  setup.options.sandboxes = config.sandboxes;
  setup.options.outbox_dir = OutboxRoot(config);
  setup.options.command_line = inputs.command_line;
  setup.options.labels = config.labels;
  return setup;
}

std::filesystem::path OutboxRoot(const Config& config) { return config.state_dir / "outbox"; }

}  // namespace sandrun
