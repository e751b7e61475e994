// `sandrun gtest BINARY`: the CLI command the GoogleTest adapter provides.
// Flags and config only, over the CLI's shared support (core/cli's
// cli_common.h and run_support.h, library sandrun_cli_support); the runner
// itself is sandrun/gtest_runner.h. The CLI's command table calls it, so the
// CLI depends on the adapter and never the other way round.
#include "commands.h"
#include "run_support.h"
#include "sandrun/batch_file.h"
#include "sandrun/gtest_runner.h"
#include "sandrun/interrupts.h"

namespace sandrun::cli {

int GtestCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options(
      "sandrun gtest",
      "Run every case of a GoogleTest binary as its own process in sandboxes, in parallel\n"
      "(warm sandboxes shared by the cases; --isolation sandbox: one per case).\n"
      "usage: sandrun gtest BINARY [-j N] [--filter PATTERN] [--retry-failed N] [options]");
  AddConfigOptions(options, context);
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
  AddReportOption(options);
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
  runner.report = HtmlReportPath(*parsed, config);
  if (parsed->count("env")) {
    Status env = ParseEnvArgs((*parsed)["env"].as<std::vector<std::string>>(), runner.env);
    if (!env.ok()) throw UsageError{env.message()};
  }
  if (parsed->count("upload")) {
    for (const auto& u : (*parsed)["upload"].as<std::vector<std::string>>()) {
      runner.uploads.push_back(ParseUploadArg(u));
    }
  }
  runner.progress = StderrIsTerminal();

  RunSetup setup = SetUpRunOrThrow(*parsed, context, config, /*task_count=*/0);
  InstallInterruptHandlers();
  return gtest::RunGtestBinary(config, std::move(setup.candidates), setup.options, runner,
                               InterruptFlag(), stdout, stderr);
}

}  // namespace sandrun::cli
