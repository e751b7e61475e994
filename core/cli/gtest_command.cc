// `sandrun gtest BINARY`: flags and config only; the runner itself lives in
// gtest_adapter/ (sandrun/gtest_runner.h).
#include "commands.h"
#include "run_support.h"
#include "sandrun/batch_file.h"
#include "sandrun/gtest_runner.h"

namespace sandrun::cli {

int GtestCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options(
      "sandrun gtest",
      "Run every case of a GoogleTest binary in its own sandbox, in parallel.\n"
      "usage: sandrun gtest BINARY [-j N] [--filter PATTERN] [--retry-failed N] [options]");
  AddConfigOptions(options);
  options.add_options("GoogleTest")
      ("filter", "Cases to run, in --gtest_filter syntax (POS1:POS2-NEG1:NEG2)",
       cxxopts::value<std::string>())
      ("retry-failed", "Run the cases that did not pass again, up to N more rounds",
       cxxopts::value<int>()->default_value("0"))
      ("junit", "Write JUnit XML to this file", cxxopts::value<std::string>())
      ("e,env", "Set K=V in every sandbox (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("upload", "Copy SRC[:DST] into every sandbox (repeatable)",
       cxxopts::value<std::vector<std::string>>())
      ("binary", "The GoogleTest binary", cxxopts::value<std::string>());
  options.parse_positional({"binary"});
  options.positional_help("BINARY");
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  if (parsed->count("binary") == 0) throw UsageError{"no binary given: sandrun gtest BINARY"};
  Config config = LoadConfigOrThrow(*parsed, context);

  gtest::RunnerOptions runner;
  runner.binary = (*parsed)["binary"].as<std::string>();
  if (parsed->count("filter")) runner.filter = (*parsed)["filter"].as<std::string>();
  runner.retry_failed = (*parsed)["retry-failed"].as<int>();
  if (runner.retry_failed < 0) throw UsageError{"--retry-failed must be 0 or more"};
  runner.junit = WritableReportPath(*parsed, "junit");
  if (parsed->count("env")) {
    for (const auto& kv : (*parsed)["env"].as<std::vector<std::string>>()) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) throw UsageError{"--env expects K=V, got '" + kv + "'"};
      runner.env[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  if (parsed->count("upload")) {
    for (const auto& u : (*parsed)["upload"].as<std::vector<std::string>>()) {
      runner.uploads.push_back(ParseUploadArg(u));
    }
  }
  runner.progress = StderrIsTerminal();

  std::vector<BackendCandidate> candidates = MakeCandidates(context, config);
  RefuseUnservedRequests(*parsed, config, candidates);
  RunOptions run_options = MakeRunOptions(context, config, candidates, /*task_count=*/0);
  const CancelFlag& cancel = InstallCancelHandlers();
  return gtest::RunGtestBinary(config, std::move(candidates), run_options, runner, cancel,
                               stdout, stderr);
}

}  // namespace sandrun::cli
