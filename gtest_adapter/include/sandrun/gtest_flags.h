// GoogleTest's own flags and environment, as `sandrun gtest` honours them,
// so that `sandrun gtest ./t ARGS` selects, shards, repeats and reports like
// `./t ARGS`:
//  - `--gtest_NAME=VALUE` flags (also `-gtest_`/`/gtest_`, and bool flags
//    without a value) win over the GTEST_NAME environment variables, as in
//    GoogleTest;
//  - the flags that decide what runs or how it is reported are interpreted
//    on the host (filter, also_run_disabled_tests, repeat, brief, color,
//    output, list_tests); every other argument, `--gtest_*` or not, is
//    passed on to each case's command line;
//  - sharding is GoogleTest's: GTEST_TOTAL_SHARDS/GTEST_SHARD_INDEX, test i
//    of the filtered, runnable tests (listing order) on shard i % total, and
//    GTEST_SHARD_STATUS_FILE created.
#ifndef SANDRUN_GTEST_FLAGS_H_
#define SANDRUN_GTEST_FLAGS_H_

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sandrun/status.h"

namespace sandrun::gtest {

/// The `--gtest_*` flags found in an argument list (unset: not given).
struct GtestFlags {
  std::optional<std::string> filter;
  std::optional<bool> also_run_disabled;
  std::optional<int> repeat;
  std::optional<bool> brief;
  std::optional<std::string> color;   ///< "yes", "no" or "auto" (as given).
  std::optional<std::string> output;  ///< "xml[:PATH]" / "json[:PATH]".
  bool list_tests = false;
};

/// Takes the interpreted `--gtest_*` flags out of `args` into `flags` (a
/// later one wins); the rest of `args` (other `--gtest_*` flags and the
/// binary's own arguments) stays, in order. kInvalidArgument names a flag
/// whose value GoogleTest would refuse.
Status TakeGtestFlags(std::vector<std::string>* args, GtestFlags* flags);

/// GoogleTest's sharding of one process: which shard this is.
struct Sharding {
  int total = 1;
  int index = 0;
  std::filesystem::path status_file;  ///< GTEST_SHARD_STATUS_FILE; empty: none.
};

/// What `sandrun gtest` runs and reports, from flags over environment over
/// GoogleTest's defaults.
struct GtestSettings {
  std::string filter = "*";
  bool also_run_disabled = false;
  int repeat = 1;
  bool brief = false;
  bool color = false;
  std::string output_format;  ///< "", "xml" or "json".
  std::filesystem::path output_path;  ///< The report file (directory resolved).
  bool list_tests = false;
  Sharding sharding;
};

/// Resolves `flags` over `env` (GTEST_FILTER, GTEST_ALSO_RUN_DISABLED_TESTS,
/// GTEST_REPEAT, GTEST_BRIEF, GTEST_COLOR, NO_COLOR, GTEST_OUTPUT, the
/// sharding variables). `stdout_is_terminal` decides color=auto; `binary`
/// names the report written into an output directory ("xml:dir/" ->
/// dir/<binary>.xml, or <binary>_1.xml ... when that exists, as GoogleTest
/// does); relative paths are relative to `cwd`. kInvalidArgument says what
/// GoogleTest would refuse (inconsistent shards, an unknown output format)
/// and what sandrun refuses (GTEST_REPEAT below 1).
Result<GtestSettings> ResolveGtestSettings(const GtestFlags& flags,
                                           const std::map<std::string, std::string>& env,
                                           bool stdout_is_terminal,
                                           const std::filesystem::path& binary,
                                           const std::filesystem::path& cwd);

/// Creates (empties) the sharding status file, as a GoogleTest binary does
/// when GTEST_SHARD_STATUS_FILE is set; a no-op when it is not.
Status TouchShardStatusFile(const Sharding& sharding);

}  // namespace sandrun::gtest

#endif  // SANDRUN_GTEST_FLAGS_H_
