// Test helpers: scratch directories and running a program (usually the built
// `sandrun`) to completion with its output captured.
#ifndef SANDRUN_TESTS_SUPPORT_TEST_UTIL_H_
#define SANDRUN_TESTS_SUPPORT_TEST_UTIL_H_

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sandrun::testing {

/// A fresh directory under $TMPDIR, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  /// Writes `content` to path()/relative (creating parents); returns the path.
  std::filesystem::path Write(const std::string& relative, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

struct CommandOutput {
  int exit_code = -1;      ///< Exit status, or 128+signal.
  std::string out;
  std::string err;
  bool timed_out = false;
};

struct CommandOptions {
  /// Added to (or, with an empty value, removed from) the inherited environment.
  std::map<std::string, std::string> env;
  std::filesystem::path cwd;
  std::optional<std::string> stdin_data;
  std::chrono::seconds timeout{120};
};

/// Runs argv (argv[0] is a path or looked up in PATH) and waits for it.
CommandOutput RunCommand(const std::vector<std::string>& argv, const CommandOptions& options = {});

/// Runs the built sandrun with an isolated HOME/XDG state unless the caller
/// set them, so tests never touch the user's archive.
CommandOutput RunSandrun(const std::vector<std::string>& args, const CommandOptions& options = {});

/// Reads a whole file ("" if missing).
std::string ReadFile(const std::filesystem::path& path);

}  // namespace sandrun::testing

#endif  // SANDRUN_TESTS_SUPPORT_TEST_UTIL_H_
