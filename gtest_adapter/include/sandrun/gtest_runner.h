// `sandrun gtest BINARY`: the zero-code runner. Runs every case of an
// unmodified GoogleTest binary in its own sandbox, in parallel:
//  - lists the cases with --gtest_list_tests on this host (cached by the
//    binary's SHA-256 under state_dir/gtest/lists; never listed remotely);
//  - selects them with a filter in GoogleTest's syntax;
//  - runs each in a sandbox through the Engine (one record per case, named
//    "Suite.Test", its gtest JSON report as an artifact);
//  - retries only the cases that did not pass, up to `retry_failed` rounds;
//  - prints GoogleTest-style output as cases end ([ RUN ] / [ OK ] /
//    [ FAILED ] with file:line messages), with a live progress line when
//    stderr is a terminal, and writes JUnit XML and the HTML report when
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

namespace sandrun::gtest {

struct RunnerOptions {
  std::filesystem::path binary;
  std::string filter;                      ///< GoogleTest syntax; empty = all.
  int retry_failed = 0;                    ///< Extra rounds for cases that failed.
  std::filesystem::path junit;             ///< Empty: no JUnit file.
  std::filesystem::path report;            ///< HTML report (sandrun/report.h); empty: none.
  std::map<std::string, std::string> env;  ///< Set in every sandbox.
  std::vector<FileUpload> uploads;         ///< Copied into every sandbox.
  bool progress = false;                   ///< Live progress line on `err`.
};

/// Runs the cases; returns the exit code: 0 when every selected case passed
/// (or skipped), 1 when any failed, 125 when only infrastructure errors kept
/// it from passing, 130 when cancelled, 2 for a binary that cannot be listed.
/// `candidates` and `run_options` are as the CLI builds them; every backend
/// is wrapped so the reports come back without rereading the archive.
int RunGtestBinary(const Config& config, std::vector<BackendCandidate> candidates,
                   RunOptions run_options, const RunnerOptions& options,
                   const CancelFlag& cancel, std::FILE* out, std::FILE* err);

}  // namespace sandrun::gtest

#endif  // SANDRUN_GTEST_RUNNER_H_
