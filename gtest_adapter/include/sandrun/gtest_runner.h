// `sandrun gtest BINARY`: the zero-code runner. Runs every case of an
// unmodified GoogleTest binary in its own sandbox, in parallel, following
// GoogleTest's conventions (gtest_flags.h):
//  - lists the cases on this host (gtest_protocol.h ListTests: file:line
//    per case, cached by the binary's SHA-256; never listed remotely);
//  - selects them as the binary would: filter, DISABLED_ tests, sharding;
//  - runs each in a sandbox through the Engine (one record per case, named
//    "Suite.Test", its gtest JSON report as an artifact), with a default
//    timeout (config `test_timeout`) and the user's extra arguments;
//  - retries only the cases that did not pass, up to `retry_failed` rounds;
//    a case that passes on a retry is flaky (its record carries the label
//    `retry_round`); repeats the whole selection `repeat` times;
//  - prints GoogleTest-style output as cases end ([ RUN ] / [ OK ] /
//    [ FAILED ] with file:line messages; only failures when brief), with a
//    live progress line when stderr is a terminal, and writes GoogleTest's
//    XML/JSON report (gtest_report.h), JUnit XML and the HTML report when
//    asked.
#ifndef SANDRUN_GTEST_RUNNER_H_
#define SANDRUN_GTEST_RUNNER_H_

#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "sandrun/config.h"
#include "sandrun/engine.h"
#include "sandrun/gtest_flags.h"

namespace sandrun::gtest {

struct RunnerOptions {
  std::filesystem::path binary;
  GtestSettings gtest;                     ///< Selection, sharding, repeat, output.
  std::vector<std::string> case_args;      ///< Passed to every case's command line.
  int retry_failed = 0;                    ///< Extra rounds for cases that failed.
  bool fail_flaky = false;                 ///< A flaky case fails the run (exit 1).
  std::filesystem::path junit;             ///< Empty: no JUnit file.
  std::filesystem::path report;            ///< HTML report (sandrun/report.h); empty: none.
  std::map<std::string, std::string> env;  ///< Set in every sandbox.
  std::vector<FileUpload> uploads;         ///< Copied into every sandbox.
  bool progress = false;                   ///< Live progress line on `err`.
};

/// Runs the cases; returns the exit code: 0 when every selected case passed
/// (or skipped, or passed on a retry without `fail_flaky`; and when nothing
/// is selected, as GoogleTest), 1 when any failed, 125 when only
/// infrastructure errors kept it from passing, 130 when cancelled, 2 for a
/// binary that cannot be listed or a report that cannot be written.
/// `candidates` and `run_options` are as the CLI builds them; every backend
/// is wrapped so the reports come back without rereading the archive.
int RunGtestBinary(const Config& config, std::vector<BackendCandidate> candidates,
                   RunOptions run_options, const RunnerOptions& options,
                   const CancelFlag& cancel, std::FILE* out, std::FILE* err);

/// `--gtest_list_tests`: prints the tests the filter matches as the binary
/// would (listed on this host; no sandbox). 0, or 2 when it cannot be listed.
int ListGtestBinary(const Config& config, const RunnerOptions& options, std::FILE* out,
                    std::FILE* err);

}  // namespace sandrun::gtest

#endif  // SANDRUN_GTEST_RUNNER_H_
