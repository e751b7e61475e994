// `sandrun batch FILE.json`: many tasks in parallel sandboxes, a summary at
// the end, exit 0 only if every task passed (or, with --race, one did).
#include <iostream>

#include "commands.h"
#include "console_listener.h"
#include "run_support.h"
#include "sandrun/batch_file.h"
#include "sandrun/interrupts.h"
#include "sandrun/junit.h"
#include "sandrun/report.h"

namespace sandrun::cli {

int BatchCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun batch",
                           "Run a JSON list of tasks in parallel sandboxes.\n"
                           "usage: sandrun batch FILE.json [-j N] [--race] [options]");
  AddConfigOptions(options, context);
  options.add_options("Batch")
      ("race", "Stop at the first task that passes, cancel the rest, report the fastest")
      ("junit", "Write JUnit XML to this file", cxxopts::value<std::string>())
      ("json", "Print the run summary as JSON at the end")
      ("file", "The batch file", cxxopts::value<std::string>());
  AddReportOption(options);
  options.parse_positional({"file"});
  options.positional_help("FILE.json");
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  if (parsed->count("file") == 0) throw UsageError{"no batch file given: sandrun batch FILE.json"};
  Config config = LoadConfigOrThrow(*parsed, context);

  std::filesystem::path file = (*parsed)["file"].as<std::string>();
  auto tasks = ParseBatchFile(file, config);
  if (!tasks.ok()) throw UsageError{tasks.status().message()};

  std::filesystem::path junit_file = WritableReportPath(*parsed, "junit");
  std::filesystem::path report_file = HtmlReportPath(*parsed, config);

  RunSetup setup = SetUpRunOrThrow(*parsed, context, config, tasks->size());
  RunOptions& run_options = setup.options;
  run_options.race = parsed->count("race") > 0;
  Engine engine(setup.candidates);
  bool terminal = StderrIsTerminal();
  engine.AddListener(std::make_shared<ConsoleListener>(
      stderr, ConsoleListener::Options{terminal, true, true, run_options.race,
                                       Palette::For(stderr).enabled()}));
  std::shared_ptr<JUnitFileListener> junit;
  if (!junit_file.empty()) {
    junit = std::make_shared<JUnitFileListener>(junit_file);
    engine.AddListener(junit);
  }
  std::shared_ptr<ReportFileListener> report;
  if (!report_file.empty()) {
    report = std::make_shared<ReportFileListener>(report_file);
    engine.AddListener(report);
  }
  InstallInterruptHandlers();
  auto outcome = engine.Run(std::move(tasks).value(), run_options, InterruptFlag());
  if (!outcome.ok()) return RunNotStarted(outcome.status());
  if (parsed->count("json")) std::cout << ToJson(outcome->run) << "\n";
  if (junit && !junit->status().ok()) {
    PrintError("cannot write JUnit XML: " + junit->status().message());
  }
  if (report && !report->status().ok()) PrintError(report->status().message());
  if (outcome->undelivered > 0) {
    PrintError("warning: " + std::to_string(outcome->undelivered) +
               " record(s) wait in the outbox " + outcome->outbox +
               "; run `sandrun results sync` to deliver them");
  }
  return BatchExitCode(outcome->run);
}

}  // namespace sandrun::cli
