// Commands about backends themselves: `backends`, `doctor`, `cleanup`.
#include <iostream>

#include "commands.h"
#include "run_support.h"
#include "sandrun/batch_file.h"
#include "sandrun/util.h"

namespace sandrun::cli {
namespace {

std::string CapabilityList(const Capabilities& c) {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (on) out += (out.empty() ? "" : ", ") + std::string(name);
  };
  add(c.isolates_network, "network isolation");
  add(c.supports_images, "images");
  add(c.limits_memory, "memory limits");
  add(c.limits_cpu, "cpu limits");
  add(c.reports_oom, "oom detection");
  add(c.supports_gpu, "gpus");
  return out.empty() ? "-" : out;
}

/// What the backend says to do when it is unavailable (BackendInfo).
std::string UnavailableHint(const CliContext& context, const std::string& backend) {
  for (const auto& info : context.registry.List()) {
    if (info.name == backend) return info.unavailable_hint;
  }
  return "";
}

}  // namespace

int BackendsCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun backends", "List backends and whether each can be used now.");
  AddConfigOptions(options, context, "backend");
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  Config config = LoadConfigOrThrow(*parsed, context);
  // One row per backend: marker, name, state, what it is; then the detail.
  auto print_row = [](bool chosen, const std::string& name, const std::string& state,
                      const std::string& what, const std::string& detail) {
    std::cout << (chosen ? "* " : "  ") << name
              << std::string(name.size() < 8 ? 8 - name.size() : 1, ' ') << state
              << std::string(state.size() < 12 ? 12 - state.size() : 1, ' ') << what << "\n"
              << "            " << detail << "\n";
  };
  for (const auto& info : context.registry.List()) {
    auto backend = context.registry.Create(info.name, config, context.env);
    std::string state, detail;
    if (!backend.ok()) {
      state = "unavailable";
      detail = backend.status().message();
    } else {
      Status available = (*backend)->CheckAvailable();
      state = available.ok() ? "available" : "unavailable";
      detail = available.ok() ? CapabilityList((*backend)->GetCapabilities()) : available.message();
    }
    print_row(info.name == config.backend, info.name, state,
              info.description + (info.origin == "built-in" ? "" : " [" + info.origin + "]"),
              detail);
  }
  // Plugins that could not be loaded: listed with why, never silently absent.
  for (const auto& plugin : context.registry.Unloaded()) {
    print_row(false, plugin.name, "not loaded", plugin.library.string(), plugin.reason);
  }
  return 0;
}

int DoctorCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun doctor", "Check everything a run needs and say what to fix.");
  AddConfigOptions(options, context, "backend");
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  int problems = 0;
  int warnings = 0;
  // Something that may be fine (a test may name it itself) but often is not.
  auto warn = [&](const std::string& what, const std::string& fix) {
    ++warnings;
    std::cout << "[warn] " << what << "\n       fix: " << fix << "\n";
  };
  auto report = [&](bool ok, const std::string& what, const std::string& fix = "") {
    std::cout << (ok ? "[ok]   " : "[fail] ") << what << "\n";
    if (!ok) {
      ++problems;
      if (!fix.empty()) std::cout << "       fix: " << fix << "\n";
    }
  };
  Config config;
  try {
    config = LoadConfigOrThrow(*parsed, context);
  } catch (const UsageError& e) {
    report(false, "config: " + e.message, "correct the value named above");
    return 1;
  }
  report(true, "config loads (" + (config.config_file.empty() ? std::string("no sandrun.json")
                                                               : config.config_file.string()) + ")");
  for (const auto& plugin : context.registry.Unloaded()) {
    report(false, "plugin " + plugin.library.string() + ": " + plugin.reason,
           "install what it needs, or rebuild or remove the plugin");
  }
  std::vector<BackendCandidate> candidates;
  try {
    candidates = CandidatesOrThrow(context, config);
  } catch (const UsageError& e) {
    report(false, "backend: " + e.message, "pick one of the known backends with --backend");
    return 1;
  }
  bool any_available = false;
  for (const auto& c : candidates) {
    if (!c.backend) {
      report(false, "backend " + c.name + ": " + c.construction_error);
      continue;
    }
    Status available = c.backend->CheckAvailable();
    report(available.ok(),
           "backend " + c.name + (available.ok() ? " is available" : ": " + available.message()),
           UnavailableHint(context, c.name));
    if (!available.ok()) continue;
    any_available = true;
    Capabilities caps = c.backend->GetCapabilities();
    std::cout << "       can do: " << CapabilityList(caps) << "\n";
    if (!caps.isolates_network) {
      std::cout << "       note: --network none cannot be enforced here; results will say so\n";
    }
    // A backend that runs images but has none to run: every command that
    // does not name one (sandrun_add_test without IMAGE) would fail. (It may
    // refuse other things in the configured sandbox too: on Modal a missing
    // Secret or a Dockerfile it cannot build.)
    const SandboxSpec configured = TaskFromConfig(config).sandbox;
    Status refused = caps.supports_images && config.image.empty()
                         ? c.backend->ValidateSpec(configured)
                         : OkStatus();
    if (refused.code() == StatusCode::kInvalidArgument) {
      if (configured.dockerfile.empty() && refused.message().find("image") != std::string::npos) {
        warn("backend " + c.name + " needs an image and none is set: " + refused.message(),
             "set one for every command (SANDRUN_IMAGE=debian:bookworm, \"image\" in "
             "sandrun.json, or the backend's default_image), or give each its own "
             "(--image, IMAGE in sandrun_add_test / sandrun_discover_tests)");
      } else {
        warn("backend " + c.name + " refuses the configured sandbox: " + refused.message(),
             "fix the setting it names (`sandrun config` shows where each comes from)");
      }
    }
    auto store = c.backend->OpenArchive();
    if (!store.ok()) {
      report(false, "archive of " + c.name + ": " + store.status().message());
      continue;
    }
    std::string probe = ".sandrun-doctor-" + RandomHex(6);
    Status wrote = (*store)->PutBytes(probe, "ok");
    if (wrote.ok()) (*store)->Remove(probe).IgnoreError();
    report(wrote.ok(), "archive " + (*store)->Describe() + (wrote.ok() ? " is writable" : ": " + wrote.message()));
    ResultArchive archive(std::shared_ptr<ArchiveStore>(std::move(store).value()), OutboxDir(config));
    int pending = archive.PendingCount();
    report(pending == 0, "outbox " + OutboxDir(config).string() + ": " + std::to_string(pending) +
                             " record(s) waiting", "run `sandrun results sync`");
  }
  if (!any_available) report(false, "no configured backend can run now");
  std::string warned = warnings == 0 ? "" : ", " + std::to_string(warnings) + " warning(s)";
  std::cout << (problems == 0 ? (warnings == 0 ? "everything looks good\n" : "no problems" + warned + "\n")
                              : std::to_string(problems) + " problem(s) found" + warned + "\n");
  return problems == 0 ? 0 : 1;
}

int CleanupCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun cleanup",
                           "Remove sandboxes that sandrun left behind: those whose owning process is\n"
                           "gone or whose lifetime has passed. Never touches anything sandrun did\n"
                           "not label as its own.");
  AddConfigOptions(options, context, "backend");
  options.add_options("Cleanup")
      ("dry-run", "Only list what would be removed")
      ("all-expired", "Remove only expired sandboxes, even when their owner still runs")
      ("run", "Only sandboxes of this run id", cxxopts::value<std::string>());
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  Config config = LoadConfigOrThrow(*parsed, context);
  std::vector<BackendCandidate> candidates = CandidatesOrThrow(context, config);
  auto& backend = candidates.front().backend;
  if (!backend) {
    PrintError(candidates.front().construction_error);
    return kExitSandrunError;
  }
  Status available = backend->CheckAvailable();
  if (!available.ok()) {
    PrintError(config.backend + " unavailable: " + available.message());
    return kExitSandrunError;
  }
  auto leftovers = backend->ListLeftovers();
  if (!leftovers.ok()) {
    PrintError(leftovers.status().message());
    return kExitSandrunError;
  }
  bool dry_run = parsed->count("dry-run") > 0;
  bool expired_only = parsed->count("all-expired") > 0;
  std::string run = parsed->count("run") ? (*parsed)["run"].as<std::string>() : "";
  int removed = 0, running = 0, helpers = 0, failed = 0;
  for (const auto& leftover : *leftovers) {
    auto label = leftover.labels.find("run");
    if (!run.empty() && (label == leftover.labels.end() || label->second != run)) continue;
    if (!leftover.keep_reason.empty()) {
      ++helpers;
      std::cout << "keeping " << leftover.description << ": " << leftover.keep_reason << "\n";
      continue;
    }
    bool remove = expired_only ? leftover.expired : (leftover.expired || !leftover.owner_alive);
    if (!remove) {
      ++running;
      continue;
    }
    std::cout << (dry_run ? "would remove " : "removing ") << leftover.id << "  "
              << leftover.description << "\n";
    if (dry_run) {
      ++removed;
      continue;
    }
    Status status = backend->RemoveLeftover(leftover.id);
    if (status.ok()) ++removed;
    else {
      ++failed;
      PrintError("cannot remove " + leftover.id + ": " + status.message());
    }
  }
  // Say what happened: a dry run removes nothing, and what is kept is kept
  // for a reason (a running owner, or a helper that is not a sandbox).
  std::string summary = dry_run ? "dry run: " + std::to_string(removed) + " would be removed"
                                : std::to_string(removed) + " removed";
  if (failed > 0) summary += ", " + std::to_string(failed) + " failed";
  summary += ", " + std::to_string(running) +
             (expired_only ? " kept (not expired)" : " kept (owner still running)");
  if (helpers > 0) summary += ", " + std::to_string(helpers) + " helper container(s) kept";
  std::cout << summary << "\n";
  return failed == 0 ? 0 : 1;
}

}  // namespace sandrun::cli
