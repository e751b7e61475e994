// `sandrun gtest BINARY`: the CLI command the GoogleTest adapter provides.
// Flags and config only, over the CLI's shared support (core/cli's
// cli_common.h and run_support.h, library sandrun_cli_support); the runner
// itself is sandrun/gtest_runner.h. The CLI's command table calls it, so the
// CLI depends on the adapter and never the other way round.
#include "commands.h"
#include "run_support.h"
#include "sandrun/batch_file.h"
#include "sandrun/config.h"
#include "sandrun/gtest_flags.h"
#include "sandrun/gtest_runner.h"
#include "sandrun/interrupts.h"

namespace sandrun::cli {

namespace {

bool IsGtestFlag(const std::string& arg) {
  return arg.rfind("--gtest_", 0) == 0 || arg.rfind("-gtest_", 0) == 0;
}

}  // namespace

int GtestCommand(const std::vector<std::string>& all_args, CliContext& context) {
  cxxopts::Options options(
      "sandrun gtest",
      "Run every case of a GoogleTest binary as its own process in sandboxes, in parallel\n"
      "(warm sandboxes shared by the cases; --isolation sandbox: one per case).\n"
      "GoogleTest's flags (--gtest_filter, --gtest_output, --gtest_repeat, ...) and GTEST_*\n"
      "variables (sharding too) work as on the binary itself; arguments after -- go to every\n"
      "case (a --gtest_* one among them is honoured as well).\n"
      "usage: sandrun gtest BINARY [-j N] [--filter PATTERN] [--retry-failed N] [options]\n"
      "                            [--gtest_FLAG=VALUE ...] [-- BINARY ARGS...]");
  AddConfigOptions(options, context);
  options.add_options("GoogleTest")
      ("filter", "Cases to run, in --gtest_filter syntax (POS1:POS2-NEG1:NEG2); the same as "
       "--gtest_filter, over GTEST_FILTER",
       cxxopts::value<std::string>())
      ("retry-failed", "Run the cases that did not pass again, up to N more rounds; one that "
       "passes on a retry is flaky",
       cxxopts::value<int>()->default_value("0"))
      ("fail-flaky", "Exit 1 when a case passed only on a retry (default: 0, and said)")
      ("junit", "Write JUnit XML to this file", cxxopts::value<std::string>())
      ("e,env", "Set K=V in every sandbox (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("upload", "Copy SRC[:DST] into every sandbox (repeatable)",
       cxxopts::value<std::vector<std::string>>())
      ("binary", "The GoogleTest binary", cxxopts::value<std::string>());
  AddReportOption(options);
  options.parse_positional({"binary"});
  options.positional_help("BINARY");

  // sandrun's own flags | GoogleTest flags (before or after --) | the rest
  // after --, for the binary.
  std::vector<std::string> args, binary_args;
  bool after_dashes = false;
  for (std::size_t i = 0; i < all_args.size(); ++i) {
    const std::string& arg = all_args[i];
    if (i > 0 && !after_dashes && arg == "--") after_dashes = true;
    else if (after_dashes || (i > 0 && IsGtestFlag(arg))) binary_args.push_back(arg);
    else args.push_back(arg);
  }
  gtest::GtestFlags gtest_flags;
  if (Status taken = gtest::TakeGtestFlags(&binary_args, &gtest_flags); !taken.ok()) {
    throw UsageError{taken.message()};
  }

  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  if (parsed->count("binary") == 0) throw UsageError{"no binary given: sandrun gtest BINARY"};
  Config config = LoadConfigOrThrow(*parsed, context);

  gtest::RunnerOptions runner;
  runner.binary = (*parsed)["binary"].as<std::string>();
  if (parsed->count("filter")) {
    std::string filter = (*parsed)["filter"].as<std::string>();
    if (gtest_flags.filter && *gtest_flags.filter != filter) {
      throw UsageError{"--filter '" + filter + "' and --gtest_filter '" + *gtest_flags.filter +
                       "' disagree: give one of them"};
    }
    gtest_flags.filter = filter;
  }
  std::error_code ec;
  auto settings = gtest::ResolveGtestSettings(gtest_flags, ProcessEnvironment(),
                                              StdoutIsTerminal(), runner.binary,
                                              std::filesystem::current_path(ec));
  if (!settings.ok()) throw UsageError{settings.status().message()};
  runner.gtest = std::move(settings).value();
  runner.case_args = std::move(binary_args);
  runner.retry_failed = (*parsed)["retry-failed"].as<int>();
  if (runner.retry_failed < 0) throw UsageError{"--retry-failed must be 0 or more"};
  runner.fail_flaky = parsed->count("fail-flaky") > 0;
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
  if (runner.gtest.list_tests) return gtest::ListGtestBinary(config, runner, stdout, stderr);

  RunSetup setup = SetUpRunOrThrow(*parsed, context, config, /*task_count=*/0);
  InstallInterruptHandlers();
  return gtest::RunGtestBinary(config, std::move(setup.candidates), setup.options, runner,
                               InterruptFlag(), stdout, stderr);
}

}  // namespace sandrun::cli
