// Config: one struct, filled from four layers with this precedence:
//   flags > SANDRUN_* environment > sandrun.json (found upward from the
//   working directory) > defaults.
// Every value remembers where it came from, for `sandrun config`.
// No globals: callers pass the Config down.
#ifndef SANDRUN_CONFIG_H_
#define SANDRUN_CONFIG_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun {

struct Config {
  std::string backend = "local";       ///< Name, or "auto" (first available).
  std::vector<std::string> fallback;   ///< Tried in order when `backend` is unavailable.
  int jobs = 0;                        ///< Concurrency; 0 = backend's suggestion or cores.
  int retries = 1;                     ///< Retries of retryable infrastructure errors.
  double timeout_s = 0;                ///< Per-execution timeout; 0 (unset) = none; when set, > 0.
  /// A GoogleTest case's timeout when `timeout` is unset (`sandrun gtest`,
  /// marked tests); 0 = none. CTest's default per test, so that no case
  /// that passes under ctest is cut short, and no hung case holds CI longer.
  double test_timeout_s = 1500;
  std::int64_t lifetime_s = 3600;      ///< Sandbox lifetime limit.
  std::string image;
  double cpu = 0;
  std::int64_t memory_mb = 0;
  std::string gpu;                     ///< "TYPE[:N]" ("A10G:1"); empty = none.
  NetworkMode network = NetworkMode::kNone;
  /// "sandbox", "process" (engine.h Isolation) or empty: the entry point's
  /// default (`sandrun gtest` and marked tests: process; exec, batch and
  /// CTest tests: sandbox).
  std::string isolation;
  /// Warm sandboxes (isolation "process"): tasks at once in one sandbox and
  /// sandboxes at once; 0 = the backend's suggestion / enough for `jobs`
  /// (RunOptions::tasks_per_sandbox, RunOptions::sandboxes).
  int tasks_per_sandbox = 0;
  int sandboxes = 0;
  std::size_t output_cap_bytes = 1 << 20;
  /// Labels of every run ("K=V,K=V"): recorded in run.json and the records,
  /// put on the sandboxes, and what `sandrun results list --label` filters by.
  std::map<std::string, std::string> labels;
  std::filesystem::path archive_dir;   ///< The local backend's archive.
  std::filesystem::path state_dir;     ///< Outbox, caches, local sandboxes.
  std::string plugin_path;             ///< ':'-separated dirs of .so plugins.
  /// The HTML report (sandrun/report.h) `sandrun batch`, `sandrun gtest` and
  /// marked tests write at the end of a run; empty = none. `--report`.
  std::filesystem::path report;
  /// Raw JSON of each backend's own section ("backends": {"docker": {...}}),
  /// parsed by that plugin only.
  std::map<std::string, std::string> backend_sections;

  /// Where each key's value came from: "default", "flag --jobs",
  /// "env SANDRUN_JOBS", "file /repo/sandrun.json".
  std::map<std::string, std::string> origins;
  /// The sandrun.json that was read, if any.
  std::filesystem::path config_file;
};

/// The keys `sandrun config` prints and sandrun.json / SANDRUN_<KEY> accept:
/// backend, fallback, jobs, retries, timeout, test_timeout, lifetime, image, cpu, memory,
/// gpu, network, isolation, tasks_per_sandbox, sandboxes, output_cap, labels, archive_dir,
/// state_dir, plugin_path, report.
const std::vector<std::string>& ConfigKeys();

/// The value of `key` in `config`, as text.
std::string ConfigValueText(const Config& config, const std::string& key);

/// Inputs to LoadConfig, injectable for tests.
struct ConfigInputs {
  /// Flags given on the command line: key -> value (e.g. "jobs" -> "8").
  std::map<std::string, std::string> flags;
  /// The environment (normally the process's).
  std::map<std::string, std::string> env;
  /// Where to start looking for sandrun.json.
  std::filesystem::path cwd;
};

/// Splits a comma list the way list values are read from the environment
/// and flags ("a, b,,c" -> {"a", "b", "c"}).
std::vector<std::string> SplitConfigList(const std::string& text);

/// Parses a GPU request "TYPE[:N]" ("A10G", "A100-80GB:2"): a non-empty type
/// of [A-Za-z0-9_.-] and a count of 1 to 64 (1 when absent).
/// kInvalidArgument says what is wrong with `gpu`.
Status ParseGpuSpec(const std::string& gpu, std::string* type, int* count);

/// The longest timeout or lifetime sandrun accepts: 30 days.
inline constexpr double kMaxTimeoutSeconds = 30.0 * 24 * 3600;

/// A timeout must be a finite number of seconds, more than 0 and at most
/// kMaxTimeoutSeconds. `what` names it in the message ("--timeout").
Status CheckTimeoutSeconds(std::string_view what, double seconds);

/// The process environment as a map.
std::map<std::string, std::string> ProcessEnvironment();

/// Builds the effective config. kInvalidArgument names the key, the bad value
/// and where it came from (file:line:column for JSON syntax errors).
Result<Config> LoadConfig(const ConfigInputs& inputs);

}  // namespace sandrun

#endif  // SANDRUN_CONFIG_H_
