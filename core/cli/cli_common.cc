#include "cli_common.h"

#include <unistd.h>

#include <iostream>

#include <nlohmann/json.hpp>

namespace sandrun::cli {
namespace {

/// Flags that set a Config key: flag name, key, help, group.
struct ConfigFlag {
  const char* flag;
  const char* key;
  const char* help;
  const char* group;  // "backend" flags are accepted by every subcommand
};

constexpr ConfigFlag kConfigFlags[] = {
    {"backend", "backend", "Backend: local, docker, modal, or auto", "backend"},
    {"fallback", "fallback", "Backends to try, in order, when --backend is unavailable (comma list)", "backend"},
    {"archive-dir", "archive_dir", "Directory of the local backend's result archive", "backend"},
    {"state-dir", "state_dir", "Directory for the outbox and local sandboxes", "backend"},
    {"j,jobs", "jobs", "How many executions run at once", "run"},
    {"retries", "retries", "Retries of transient infrastructure errors (never of test failures)", "run"},
    {"timeout", "timeout", "Per-execution timeout in seconds (more than 0)", "run"},
    {"lifetime", "lifetime", "Sandbox lifetime limit in seconds", "run"},
    {"image", "image", "Image to run in (docker, modal)", "run"},
    {"cpu", "cpu", "CPU cores for the sandbox", "run"},
    {"memory", "memory", "Memory limit in MiB", "run"},
    {"gpu", "gpu", "GPU request TYPE[:N], e.g. A10G:1 (backends that cannot provide one refuse)", "run"},
    {"network", "network", "Network access: none (default) or open", "run"},
    {"output-cap", "output_cap", "Bytes of each output stream kept in the record", "run"},
};

/// Flags that set a key of one backend's own section ("backends": {"modal":
/// {...}}), with the same precedence as the config keys: the flag, then the
/// first variable of `env` that is set, then sandrun.json, then the
/// backend's default. The backend validates the value when it is built.
struct SectionFlag {
  const char* flag;
  const char* backend;
  const char* key;
  bool list;  // repeatable flag; comma list in the environment
  std::vector<const char*> env;
  const char* help;
  const char* group;  // "backend": also for results, doctor, cleanup
};

const std::vector<SectionFlag>& SectionFlags() {
  static const std::vector<SectionFlag> flags = {
      {"secret", "modal", "secrets", true, {"SANDRUN_MODAL_SECRETS"},
       "Attach this Modal Secret, by name, to every sandbox (repeatable; modal only)", "run"},
      {"allow-cidr", "modal", "cidr_allowlist", true, {"SANDRUN_MODAL_CIDR_ALLOWLIST"},
       "Let sandboxes reach this CIDR, and only the listed ones (repeatable; modal only)", "run"},
      {"modal-environment", "modal", "environment", false,
       {"SANDRUN_MODAL_ENVIRONMENT", "MODAL_ENVIRONMENT"},
       "Modal environment to use (modal only; -e is --env)", "backend"},
  };
  return flags;
}

/// Writes the section flags and variables that were given into
/// config.backend_sections, recording their origin as
/// "backends.<backend>.<key>".
void ApplySectionFlags(const cxxopts::ParseResult& parsed, const CliContext& context,
                       Config& config) {
  for (const auto& f : SectionFlags()) {
    nlohmann::json value;
    std::string origin;
    bool given = false;
    try {
      given = parsed.count(f.flag) > 0;
    } catch (const cxxopts::exceptions::exception&) {
    }
    if (given) {
      if (f.list) value = parsed[f.flag].as<std::vector<std::string>>();
      else value = parsed[f.flag].as<std::string>();
      origin = std::string("flag --") + f.flag;
    } else {
      for (const char* name : f.env) {
        auto it = context.env.find(name);
        if (it == context.env.end() || it->second.empty()) continue;
        if (f.list) value = SplitConfigList(it->second);
        else value = it->second;
        origin = std::string("env ") + name;
        break;
      }
    }
    if (origin.empty()) continue;
    std::string& text = config.backend_sections[f.backend];
    auto section = nlohmann::json::parse(text.empty() ? "{}" : text, nullptr, false);
    if (!section.is_object()) continue;  // the backend reports its malformed section
    section[f.key] = value;
    text = section.dump();
    config.origins[std::string("backends.") + f.backend + "." + f.key] = origin;
  }
}

std::string LongName(const char* flag) {
  std::string f = flag;
  auto comma = f.find(',');
  return comma == std::string::npos ? f : f.substr(comma + 1);
}

}  // namespace

void AddConfigOptions(cxxopts::Options& options, const std::string& which) {
  auto adder = options.add_options("Config");
  for (const auto& f : kConfigFlags) {
    if (which != "all" && std::string(f.group) != which) continue;
    adder(f.flag, f.help, cxxopts::value<std::string>());
  }
  auto section_adder = options.add_options("Backend-specific");
  for (const auto& f : SectionFlags()) {
    if (which != "all" && std::string(f.group) != which) continue;
    if (f.list) section_adder(f.flag, f.help, cxxopts::value<std::vector<std::string>>());
    else section_adder(f.flag, f.help, cxxopts::value<std::string>());
  }
}

std::vector<std::pair<std::string, std::string>> BackendSpecificFlagsGiven(
    const cxxopts::ParseResult& parsed) {
  std::vector<std::pair<std::string, std::string>> given;
  for (const auto& f : SectionFlags()) {
    try {
      if (parsed.count(f.flag) > 0) given.emplace_back(std::string("--") + f.flag, f.backend);
    } catch (const cxxopts::exceptions::exception&) {
    }
  }
  return given;
}

Config LoadConfigOrThrow(const cxxopts::ParseResult& parsed, const CliContext& context) {
  ConfigInputs inputs;
  inputs.env = context.env;
  inputs.cwd = context.cwd;
  for (const auto& f : kConfigFlags) {
    std::string name = LongName(f.flag);
    // An option that was not declared for this subcommand is simply absent.
    try {
      if (parsed.count(name) > 0) inputs.flags[f.key] = parsed[name].as<std::string>();
    } catch (const cxxopts::exceptions::exception&) {
    }
  }
  auto config = LoadConfig(inputs);
  if (!config.ok()) throw UsageError{config.status().message()};
  ApplySectionFlags(parsed, context, *config);
  return std::move(config).value();
}

std::optional<cxxopts::ParseResult> ParseOrThrow(cxxopts::Options& options,
                                                 const std::vector<std::string>& args) {
  options.add_options("Help")("h,help", "Show this help");
  std::vector<std::string> copy = args;
  std::vector<char*> argv;
  for (auto& a : copy) argv.push_back(a.data());
  argv.push_back(nullptr);
  try {
    auto parsed = options.parse(static_cast<int>(copy.size()), argv.data());
    if (parsed.count("help") > 0) {
      std::cout << options.help() << std::flush;
      return std::nullopt;
    }
    if (!parsed.unmatched().empty()) {
      throw UsageError{"unexpected argument '" + parsed.unmatched().front() + "' (see --help)"};
    }
    return parsed;
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError{std::string(e.what()) + " (see `" + args[0] + " --help`)"};
  }
}

std::filesystem::path WritableReportPath(const cxxopts::ParseResult& parsed,
                                         const std::string& flag) {
  if (parsed.count(flag) == 0) return {};
  std::filesystem::path file = parsed[flag].as<std::string>();
  Status writable = CheckWritableFile(file);
  if (!writable.ok()) throw UsageError{"--" + flag + ": " + writable.message()};
  return file;
}

std::filesystem::path OutboxRoot(const Config& config) { return config.state_dir / "outbox"; }

std::filesystem::path OutboxDir(const Config& config) { return OutboxRoot(config) / config.backend; }

Result<OpenedArchive> OpenArchive(const CliContext& context, const Config& config) {
  auto backend = context.registry.Create(config.backend, config);
  if (!backend.ok()) return backend.status();
  OpenedArchive opened;
  opened.backend = std::shared_ptr<Backend>(std::move(backend).value());
  auto store = opened.backend->OpenArchive();
  if (!store.ok()) return store.status().WithContext("opening the " + config.backend + " archive");
  opened.archive = std::make_shared<ResultArchive>(
      std::shared_ptr<ArchiveStore>(std::move(store).value()), OutboxDir(config));
  return opened;
}

void PrintError(const std::string& message) { std::cerr << "sandrun: " << message << "\n"; }

bool StdoutIsTerminal() { return isatty(STDOUT_FILENO) == 1; }
bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

}  // namespace sandrun::cli
