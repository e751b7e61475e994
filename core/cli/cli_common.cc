#include "cli_common.h"

#include <unistd.h>

#include <iostream>

#include "sandrun/run_setup.h"

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
    {"backend", "backend", "Backend: ", "backend"},  // + the registered names
    {"fallback", "fallback", "Backends to try, in order, when --backend is unavailable (comma list)", "backend"},
    {"archive-dir", "archive_dir", "Directory of the local backend's result archive", "backend"},
    {"state-dir", "state_dir", "Directory for the outbox and local sandboxes", "backend"},
    {"j,jobs", "jobs", "How many executions run at once", "run"},
    {"retries", "retries", "Retries of transient infrastructure errors (never of test failures)", "run"},
    {"timeout", "timeout", "Per-execution timeout in seconds (more than 0)", "run"},
    {"lifetime", "lifetime", "Sandbox lifetime limit in seconds", "run"},
    {"image", "image", "Image to run in (backends that run images)", "run"},
    {"cpu", "cpu", "CPU cores for the sandbox", "run"},
    {"memory", "memory", "Memory limit in MiB", "run"},
    {"gpu", "gpu", "GPU request TYPE[:N], e.g. A10G:1 (backends that cannot provide one refuse)", "run"},
    {"network", "network", "Network access: none (default) or open", "run"},
    {"isolation", "isolation", "sandbox (a fresh sandbox per task) or process (tasks share warm sandboxes, each its own process and directory)", "run"},
    {"output-cap", "output_cap", "Bytes of each output stream kept in the record", "run"},
};

std::string LongName(const char* flag) {
  std::string f = flag;
  auto comma = f.find(',');
  return comma == std::string::npos ? f : f.substr(comma + 1);
}

}  // namespace

void AddConfigOptions(cxxopts::Options& options, const CliContext& context,
                      const std::string& which) {
  std::string backends;
  for (const auto& info : context.registry.List()) backends += info.name + ", ";
  auto adder = options.add_options("Config");
  for (const auto& f : kConfigFlags) {
    if (which != "all" && std::string(f.group) != which) continue;
    std::string help = f.help;
    if (std::string(f.key) == "backend") help += backends + "or auto";
    adder(f.flag, help, cxxopts::value<std::string>());
  }
  for (const auto& info : context.registry.List()) {
    // cxxopts lists groups by name: "Backend <name>" keeps them together.
    auto backend_adder = options.add_options("Backend " + info.name);
    for (const auto& flag : info.flags) {
      if (which != "all" && !flag.every_command) continue;
      try {
        if (flag.list) backend_adder(flag.name, flag.help, cxxopts::value<std::vector<std::string>>());
        else backend_adder(flag.name, flag.help, cxxopts::value<std::string>());
      } catch (const cxxopts::exceptions::exception& e) {
        PrintError("warning: backend " + info.name + ": flag --" + flag.name +
                   " is not offered: " + e.what());
      }
    }
  }
}

std::map<std::string, std::vector<std::string>> BackendFlagsGiven(
    const cxxopts::ParseResult& parsed, const CliContext& context) {
  std::map<std::string, std::vector<std::string>> given;
  for (const auto& info : context.registry.List()) {
    for (const auto& flag : info.flags) {
      // A flag this subcommand does not offer is simply absent.
      try {
        if (parsed.count(flag.name) == 0) continue;
        if (flag.list) given[flag.name] = parsed[flag.name].as<std::vector<std::string>>();
        else given[flag.name] = {parsed[flag.name].as<std::string>()};
      } catch (const cxxopts::exceptions::exception&) {
      }
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
  ApplyBackendFlags(context.registry, BackendFlagsGiven(parsed, context), context.env, *config);
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

void AddReportOption(cxxopts::Options& options) {
  options.add_options("Report")(
      "report", "Write the run as one self-contained HTML page (timeline, failures); config key "
      "`report`", cxxopts::value<std::string>());
}

std::filesystem::path HtmlReportPath(const cxxopts::ParseResult& parsed, const Config& config) {
  if (parsed.count("report") > 0) return WritableReportPath(parsed, "report");
  if (config.report.empty()) return {};
  Status writable = CheckWritableFile(config.report);
  auto origin = config.origins.find("report");
  std::string from = origin == config.origins.end() ? "report" : "report (" + origin->second + ")";
  if (!writable.ok()) throw UsageError{from + ": " + writable.message()};
  return config.report;
}

std::filesystem::path OutboxDir(const Config& config) { return OutboxRoot(config) / config.backend; }

Result<OpenedArchive> OpenArchive(const CliContext& context, const Config& config) {
  auto backend = context.registry.Create(config.backend, config, context.env);
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
