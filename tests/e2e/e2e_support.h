// Helpers for the end-to-end tests, which run the built `sandrun` binary the
// way a user does: an isolated user (HOME, XDG dirs, no SANDRUN_* settings),
// a process the test can signal, and a loopback listener for network checks.
#ifndef SANDRUN_TESTS_E2E_E2E_SUPPORT_H_
#define SANDRUN_TESTS_E2E_E2E_SUPPORT_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/private_docker_volume.h"
#include "support/test_util.h"

extern char** environ;

namespace sandrun::e2e {

namespace fs = std::filesystem;
using sandrun::testing::CommandOptions;
using sandrun::testing::CommandOutput;
using sandrun::testing::ReadFile;
using sandrun::testing::PrivateDockerVolume;
using sandrun::testing::TempDir;
using Clock = std::chrono::steady_clock;

/// Config keys sandrun reads from SANDRUN_* variables; a test clears them all
/// so a developer's or CI's settings (SANDRUN_BACKEND=docker) cannot leak in.
inline const std::vector<std::string>& SandrunEnvVars() {
  static const std::vector<std::string> kVars = {
      "SANDRUN_BACKEND", "SANDRUN_FALLBACK",   "SANDRUN_JOBS",        "SANDRUN_RETRIES",
      "SANDRUN_TIMEOUT", "SANDRUN_LIFETIME",  "SANDRUN_IMAGE",       "SANDRUN_CPU",
      "SANDRUN_MEMORY",  "SANDRUN_NETWORK",   "SANDRUN_OUTPUT_CAP",  "SANDRUN_ARCHIVE_DIR",
      "SANDRUN_STATE_DIR", "SANDRUN_PLUGIN_PATH", "SANDRUN_GPU", "SANDRUN_MODAL_SECRETS",
      "SANDRUN_MODAL_CIDR_ALLOWLIST", "SANDRUN_MODAL_ENVIRONMENT", "SANDRUN_REPORT",
      "SANDRUN_RUN_GROUP", "SANDRUN_TEST_TIMEOUT", "SANDRUN_LABELS", "SANDRUN_ISOLATION"};
  return kVars;
}

/// Seconds since `start`, for "finished within N seconds" checks.
inline double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// One sandrun user of its own: HOME, XDG_DATA_HOME (the archive) and
/// XDG_STATE_HOME (the outbox) under a fresh directory that is also the
/// working directory, so tests stay independent under `ctest -j`.
class Home {
 public:
  Home() {
    fs::create_directories(dir() / "work");
  }
  const fs::path& dir() const { return root_.path(); }
  /// The working directory of every command (no sandrun.json above it).
  fs::path work() const { return dir() / "work"; }
  fs::path archive() const { return dir() / "data" / "sandrun" / "results"; }
  fs::path outbox() const { return dir() / "state" / "sandrun" / "outbox" / "local"; }
  fs::path Write(const std::string& relative, const std::string& content) const {
    return root_.Write("work/" + relative, content);
  }

  /// The environment changes for this user (empty value = unset).
  std::map<std::string, std::string> Env() const {
    std::map<std::string, std::string> env;
    for (const auto& name : SandrunEnvVars()) env[name] = "";
    env["HOME"] = dir().string();
    env["XDG_DATA_HOME"] = (dir() / "data").string();
    env["XDG_STATE_HOME"] = (dir() / "state").string();
    return env;
  }

  /// Runs `sandrun args...`; `extra.env` is applied on top of Env().
  CommandOutput Run(const std::vector<std::string>& args, CommandOptions extra = {}) const {
    CommandOptions options = extra;
    options.env = Env();
    for (const auto& [k, v] : extra.env) options.env[k] = v;
    if (options.cwd.empty()) options.cwd = work();
    return sandrun::testing::RunSandrun(args, options);
  }

  /// The runs `sandrun results list --json` reports, newest first.
  nlohmann::json Runs(const std::vector<std::string>& extra_args = {}) const {
    std::vector<std::string> args{"results", "list", "--json", "--limit", "0"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    CommandOutput out = Run(args);
    EXPECT_EQ(out.exit_code, 0) << out.err;
    auto parsed = nlohmann::json::parse(out.out, nullptr, false);
    EXPECT_TRUE(parsed.is_array()) << out.out;
    return parsed.is_array() ? parsed : nlohmann::json::array();
  }

  /// `sandrun results show RUN [TASK] --json`, parsed.
  nlohmann::json Show(const std::string& run, const std::string& task = "") const {
    std::vector<std::string> args{"results", "show", run};
    if (!task.empty()) args.push_back(task);
    args.push_back("--json");
    CommandOutput out = Run(args);
    EXPECT_EQ(out.exit_code, 0) << out.err;
    auto parsed = nlohmann::json::parse(out.out, nullptr, false);
    EXPECT_TRUE(parsed.is_object()) << out.out;
    return parsed.is_object() ? parsed : nlohmann::json::object();
  }

  /// Regular files anywhere under `dir` whose name ends with `suffix`.
  static int CountFiles(const fs::path& dir, const std::string& suffix) {
    int count = 0;
    std::error_code ec;
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (it->is_regular_file() && name.size() >= suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        ++count;
      }
    }
    return count;
  }

 private:
  TempDir root_;
};

/// A process the test starts and may signal; killed (with its process group)
/// and reaped on destruction if still running. Output goes to files.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
             const fs::path& cwd) {
    std::map<std::string, std::string> merged;
    for (char** e = environ; *e; ++e) {
      std::string kv = *e;
      auto eq = kv.find('=');
      if (eq != std::string::npos) merged[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& [k, v] : env) {
      if (v.empty()) merged.erase(k);
      else merged[k] = v;
    }
    std::vector<std::string> env_strings, args = argv;
    for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp, argp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : args) argp.push_back(s.data());
    argp.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, (io_.path() / "out").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, (io_.path() / "err").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str());
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    int rc = posix_spawn(&pid_, argp[0], &actions, &attr, argp.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) pid_ = -1;
  }
  ~Background() {
    if (pid_ > 0 && !exit_code_) {
      kill(-pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

  bool started() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  void Signal(int sig) const { kill(pid_, sig); }

  /// The exit code (128+N for a signal), or nullopt if still running after `limit`.
  std::optional<int> Wait(std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    while (!exit_code_) {
      int status = 0;
      pid_t w = waitpid(pid_, &status, WNOHANG);
      if (w == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (Clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return exit_code_;
  }
  std::string Out() const { return ReadFile(io_.path() / "out"); }
  std::string Err() const { return ReadFile(io_.path() / "err"); }

 private:
  TempDir io_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

/// Starts `sandrun args...` as `home`'s user, in the background.
inline std::unique_ptr<Background> StartSandrun(const Home& home,
                                                const std::vector<std::string>& args) {
  std::vector<std::string> argv{SANDRUN_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return std::make_unique<Background>(argv, home.Env(), home.work());
}

/// Polls `condition` every 20 ms until it holds or `limit` passes.
template <typename Condition>
bool WaitUntil(Condition condition, std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

/// True when `pid` no longer runs: no such process, or a zombie (dead, and
/// only waiting for whoever inherited it to reap it).
inline bool ProcessGone(pid_t pid) {
  if (kill(pid, 0) != 0) return errno == ESRCH;
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == 'Z';
}

/// A TCP listener on 127.0.0.1 at a free port, closed on destruction. It
/// never accepts on its own: HasPendingConnection() tells whether anyone
/// managed to connect.
class LoopbackListener {
 public:
  LoopbackListener() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof addr;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        listen(fd_, 16) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      port_ = 0;
      return;
    }
    port_ = ntohs(addr.sin_port);
  }
  ~LoopbackListener() {
    if (fd_ >= 0) close(fd_);
  }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  int port() const { return port_; }
  bool HasPendingConnection() const {
    int conn = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) return false;
    close(conn);
    return true;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
};

/// For EXPECT_CONTAINS: a failure shows the whole text searched.
inline ::testing::AssertionResult TextContains(const char* text_expr, const char* needle_expr,
                                               const std::string& text, const std::string& needle) {
  if (text.find(needle) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << text_expr << " does not contain " << needle_expr
                                       << " (\"" << needle << "\"); it is:\n" << text;
}
inline ::testing::AssertionResult TextLacks(const char* text_expr, const char* needle_expr,
                                            const std::string& text, const std::string& needle) {
  if (text.find(needle) == std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << text_expr << " contains " << needle_expr << " (\""
                                       << needle << "\"); it is:\n" << text;
}
#define EXPECT_CONTAINS(text, needle) EXPECT_PRED_FORMAT2(::sandrun::e2e::TextContains, text, needle)
#define EXPECT_LACKS(text, needle) EXPECT_PRED_FORMAT2(::sandrun::e2e::TextLacks, text, needle)

/// Lines of `text` that contain `needle`.
inline std::vector<std::string> LinesWith(const std::string& text, const std::string& needle) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (line.find(needle) != std::string::npos) lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

}  // namespace sandrun::e2e

#endif  // SANDRUN_TESTS_E2E_E2E_SUPPORT_H_
