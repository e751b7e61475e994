#include "cli_common.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <iostream>
#include <typeinfo>

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
    {"tasks-per-sandbox", "tasks_per_sandbox", "With isolation process: tasks at once in one warm sandbox (0: the backend's suggestion)", "run"},
    {"sandboxes", "sandboxes", "With isolation process: warm sandboxes at once (0: enough for -j)", "run"},
    {"output-cap", "output_cap", "Bytes of each output stream kept in the record", "run"},
    {"label", "labels", "Labels of the run, KEY=VALUE[,KEY=VALUE...]; `sandrun results list --label` finds it", "run"},
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
    // --label may be given several times: the labels add up.
    if (std::string(f.key) == "labels") adder(f.flag, help + " (repeatable)", cxxopts::value<std::vector<std::string>>());
    else adder(f.flag, help, cxxopts::value<std::string>());
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
    // An option that was not declared for this subcommand is simply absent;
    // one it declares for itself under the same name (`results list
    // --label`, a filter) is not a config key there (bad_cast).
    try {
      if (parsed.count(name) == 0) continue;
      if (std::string(f.key) == "labels") {
        std::string joined;
        for (const auto& v : parsed[name].as<std::vector<std::string>>()) {
          joined += (joined.empty() ? "" : ",") + v;
        }
        inputs.flags[f.key] = joined;
      } else {
        inputs.flags[f.key] = parsed[name].as<std::string>();
      }
    } catch (const cxxopts::exceptions::exception&) {
    } catch (const std::bad_cast&) {
    }
  }
  auto config = LoadConfig(inputs);
  if (!config.ok()) throw UsageError{config.status().message()};
  ApplyBackendFlags(context.registry, BackendFlagsGiven(parsed, context), context.env, *config);
  return std::move(config).value();
}

namespace {

// What every `--help` ends with: examples, then the exit codes. One table,
// so the commands' texts stay alike.
struct HelpEpilogue {
  const char* program;
  const char* examples;
  const char* exit_codes;
};

constexpr char kRunExitCodes[] =
    "0 every task passed (--race: one did), 1 a task failed or timed out,\n"
    "  2 bad usage or input (nothing ran), 125 only sandrun/backend errors kept it from\n"
    "  passing, 130 interrupted";
constexpr char kResultsExitCodes[] =
    "0 done, 1 the archive or the run could not be read or written, 2 bad usage";

constexpr HelpEpilogue kHelpEpilogues[] = {
    {"sandrun exec",
     "  sandrun exec -- ./build/unit_tests --gtest_brief=1\n"
     "  sandrun exec --image debian:bookworm --timeout 60 -- make check\n"
     "  sandrun exec --upload data/input.txt:input.txt -- ./tool input.txt",
     "the command's own code; 124 timed out, 125 sandrun or the backend failed,\n"
     "  126 not executable, 127 not found, 128+N killed by signal N, 2 bad usage"},
    {"sandrun batch",
     "  sandrun batch tasks.json -j 8 --junit report.xml\n"
     "  sandrun batch tasks.json --race --image debian:bookworm\n"
     "  sandrun batch tasks.json --label ci.job=$CI_JOB_ID",
     kRunExitCodes},
    {"sandrun gtest",
     "  sandrun gtest ./build/unit_tests -j 16 --junit report.xml\n"
     "  sandrun gtest ./build/unit_tests --filter 'Parser*:-*Slow*' --retry-failed 2\n"
     "  SANDRUN_IMAGE=debian:bookworm sandrun gtest ./build/unit_tests -- --my-flag",
     "0 every selected case passed or skipped, 1 a case failed, 2 bad usage or a\n"
     "  binary that cannot be listed, 125 only sandrun/backend errors, 130 interrupted"},
    {"sandrun results list",
     "  sandrun results list --status failed --limit 5\n"
     "  sandrun results list --mine --label ci.job=1234\n"
     "  sandrun results list --any-host --json",
     kResultsExitCodes},
    {"sandrun results show",
     "  sandrun results show latest\n"
     "  sandrun results show latest 'Nums/ParamT.IsSmall/1' --full\n"
     "  sandrun results show 20261122T031500Z-4f2a --json --any-user",
     kResultsExitCodes},
    {"sandrun results fetch",
     "  sandrun results fetch latest -o artifacts/\n"
     "  sandrun results fetch 20261122T031500Z-4f2a -o /tmp/runs",
     kResultsExitCodes},
    {"sandrun results export",
     "  sandrun results export latest --junit report.xml\n"
     "  sandrun results export 20261122T031500Z-4f2a --junit out/junit.xml",
     kResultsExitCodes},
    {"sandrun results report",
     "  sandrun results report latest -o report.html\n"
     "  sandrun results report --since 20261203T0900 -o suite.html",
     "0 written, 1 the archive or a run could not be read, 2 bad usage or a file that\n"
     "  cannot be written"},
    {"sandrun results prune",
     "  sandrun results prune --keep 50\n"
     "  sandrun results prune --keep 0 --archive-dir /tmp/scratch-archive",
     kResultsExitCodes},
    {"sandrun results sync",
     "  sandrun results sync\n"
     "  sandrun results sync --state-dir /ci/sandrun-state",
     kResultsExitCodes},
    {"sandrun config",
     "  sandrun config\n"
     "  sandrun config --image debian:bookworm --jobs 8",
     "0 printed, 2 bad usage or a bad value (it names the key and where it came from)"},
    {"sandrun backends",
     "  sandrun backends\n"
     "  SANDRUN_PLUGIN_PATH=./plugins sandrun backends",
     "0 printed (also when a backend is unavailable), 2 bad usage"},
    {"sandrun doctor",
     "  sandrun doctor\n"
     "  sandrun doctor --image debian:bookworm",
     "0 ready, 1 something to fix (each problem says what), 2 bad usage"},
    {"sandrun cleanup",
     "  sandrun cleanup --dry-run\n"
     "  sandrun cleanup --run 20261122T031500Z-4f2a",
     "0 done, 1 a sandbox could not be removed, 2 bad usage, 125 the backend cannot be\n  reached"},
};

}  // namespace

std::string HelpEpilogueFor(const std::string& program) {
  for (const HelpEpilogue& e : kHelpEpilogues) {
    if (program == e.program) {
      return std::string("\nexamples:\n") + e.examples + "\n\nexit codes: " + e.exit_codes + "\n";
    }
  }
  return "";
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
      std::cout << options.help() << HelpEpilogueFor(options.program()) << std::flush;
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

void WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

void PrintError(const std::string& message) {
  const char* no_colour = std::getenv("NO_COLOR");
  bool colour = StderrIsTerminal() && (no_colour == nullptr || *no_colour == '\0');
  std::cerr << (colour ? "\033[31msandrun:\033[0m " : "sandrun: ") << message << "\n";
}

bool StdoutIsTerminal() { return isatty(STDOUT_FILENO) == 1; }
bool StderrIsTerminal() { return isatty(STDERR_FILENO) == 1; }

}  // namespace sandrun::cli
