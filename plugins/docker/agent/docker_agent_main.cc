// sandrun-docker-agent: runs inside a Docker sandbox, started once by the
// backend through the exe cache (like any portable upload), and then runs
// the sandbox's commands, uploads and downloads as frames on its stdin and
// stdout (docker_agent_protocol.h). A command costs the engine nothing.
//
// Each command starts in a new session (its own process group), in its
// working directory (made if missing), with the container's environment
// plus its own. Its timeout sends SIGTERM to the group, then after the grace
// SIGKILL to the group and to every other descendant of this agent: the
// agent is a child subreaper, so a process the command left behind (even
// one that called setsid and double-forked) is still its descendant. An
// agent runs one command at a time; the host starts one agent per command
// it runs at once in the sandbox, and a timeout ends only the processes of
// its own agent's command. A command killed by
// SIGKILL is reported as out of memory when the cgroup's oom_kill counter
// rose while it ran; its processes go first when memory runs out
// (oom_score_adj 1000), so the agent lives to say so.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "docker_agent_protocol.h"

namespace {

using sandrun::docker::agent::EncodeFrame;
using sandrun::docker::agent::Frame;
using sandrun::docker::agent::FrameReader;
using sandrun::docker::agent::kMaxChunk;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "sandrun-docker-agent: %s\n", why.c_str());
  std::exit(2);
}

void WriteAll(int fd, const std::string& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) Die(std::string("cannot write to the host: ") + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
}

void Send(Frame type, std::string_view payload = {}) { WriteAll(1, EncodeFrame(type, payload)); }

// Frames from the host. Reads block unless the caller polled first.
class HostInput {
 public:
  /// False at end of input (the host is gone).
  bool ReadSome() {
    char buffer[65536];
    for (;;) {
      ssize_t n = ::read(0, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      reader_.Feed(std::string_view(buffer, static_cast<std::size_t>(n)));
      return true;
    }
  }
  /// The next whole frame already read, if any.
  std::optional<std::pair<Frame, std::string>> Next() {
    bool bad = false;
    auto frame = reader_.Next(&bad);
    if (bad) Die("bad frame from the host");
    return frame;
  }
  /// Blocks for the next frame; exits when the host is gone.
  std::pair<Frame, std::string> Wait() {
    for (;;) {
      if (auto frame = Next()) return std::move(*frame);
      if (!ReadSome()) std::exit(0);
    }
  }

 private:
  FrameReader reader_;
};

// The cgroup's oom_kill counter (v2, else v1); -1 when there is none.
long long OomKills() {
  for (const char* file : {"/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"}) {
    std::ifstream in(file);
    if (!in) continue;
    std::string key;
    long long value = 0;
    while (in >> key >> value) {
      if (key == "oom_kill") return value;
    }
    return -1;
  }
  return -1;
}

// The command this agent runs now, and its end once reaped.
struct Command {
  pid_t pid = 0;
  bool exited = false;
  int status = 0;
} g_command;

// Reaps every child that has ended: the command (its status is kept in
// g_command) and the orphans of its tree that the agent inherited.
void ReapOrphans() {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(-1, &status, WNOHANG);
    if (r <= 0) return;
    if (r == g_command.pid && !g_command.exited) {
      g_command.exited = true;
      g_command.status = status;
    }
  }
}

// The parent of `pid` from /proc/PID/stat; 0 when it is gone.
pid_t ParentOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  const std::size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  char state = 0;
  int ppid = 0;
  if (std::sscanf(stat.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return 0;
  return static_cast<pid_t>(ppid);
}

// Every descendant of this agent, killed and reaped until none is left
// (one that forks while we look is found in the next round; one that has
// just been killed is still exiting): the next command in this sandbox must
// not see them, even as zombies. As a subreaper the agent inherits every
// orphan of its command, so this is the command's whole tree and nothing of
// another agent's. Gives up after two seconds (a process stuck in the
// kernel cannot be reaped sooner).
void KillDescendants() {
  const pid_t self = ::getpid();
  const Clock::time_point give_up = Clock::now() + std::chrono::seconds(2);
  for (;;) {
    std::vector<std::pair<pid_t, pid_t>> parents;  // (pid, ppid)
    if (DIR* dir = ::opendir("/proc")) {
      while (dirent* entry = ::readdir(dir)) {
        char* end = nullptr;
        long pid = std::strtol(entry->d_name, &end, 10);
        if (end == entry->d_name || *end != '\0' || pid <= 1 || pid == self) continue;
        parents.emplace_back(static_cast<pid_t>(pid), ParentOf(static_cast<pid_t>(pid)));
      }
      ::closedir(dir);
    }
    std::vector<pid_t> tree = {self};
    for (std::size_t i = 0; i < tree.size(); ++i) {
      for (const auto& [pid, ppid] : parents) {
        if (ppid == tree[i]) tree.push_back(pid);
      }
    }
    if (tree.size() == 1 || Clock::now() >= give_up) return;
    for (std::size_t i = 1; i < tree.size(); ++i) ::kill(tree[i], SIGKILL);
    ReapOrphans();
    ::usleep(5000);
  }
}

void MakeDirectories(const std::string& path) {
  for (std::size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    ::mkdir(path.substr(0, slash).c_str(), 0755);
    if (slash == std::string::npos) break;
  }
}

int Pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
#else
  (void)pid;
  return -1;
#endif
}

void SetNonBlocking(int fd) { ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Runs one command (kExec), answering with its output and kDone.
void RunCommand(HostInput& host, const json& request) {
  std::vector<std::string> argv = request.at("argv").get<std::vector<std::string>>();
  const std::string cwd = request.value("cwd", std::string("/"));
  const long long timeout_ms = request.value("timeout_ms", 0LL);
  const long long grace_ms = request.value("kill_grace_ms", 2000LL);
  const bool with_stdin = request.value("stdin", false);
  if (argv.empty()) Die("empty argv");
  std::vector<std::pair<std::string, std::string>> env;
  if (const auto it = request.find("env"); it != request.end() && it->is_object()) {
    for (const auto& [key, value] : it->items()) {
      if (value.is_string()) env.emplace_back(key, value.get<std::string>());
    }
  }
  MakeDirectories(cwd);

  int in[2] = {-1, -1}, out[2], err[2], failed[2];
  if ((with_stdin && ::pipe2(in, O_CLOEXEC) != 0) || ::pipe2(out, O_CLOEXEC) != 0 ||
      ::pipe2(err, O_CLOEXEC) != 0 || ::pipe2(failed, O_CLOEXEC) != 0) {
    Die(std::string("pipe: ") + std::strerror(errno));
  }
  const long long oom_before = OomKills();
  const Clock::time_point started = Clock::now();
  pid_t pid = ::fork();
  if (pid < 0) Die(std::string("fork: ") + std::strerror(errno));
  if (pid > 0) g_command = Command{pid, false, 0};
  if (pid == 0) {
    ::setsid();
    int null = ::open("/dev/null", O_RDONLY);
    ::dup2(with_stdin ? in[0] : null, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::signal(SIGPIPE, SIG_DFL);
    // What to report when it cannot start: the step and errno.
    auto fail = [&](char step) {
      int e = errno;
      char message[1 + sizeof e];
      message[0] = step;
      std::memcpy(message + 1, &e, sizeof e);
      (void)!::write(failed[1], message, sizeof message);
      ::_exit(step == 'x' && e == ENOENT ? 127 : 126);
    };
    // When the sandbox runs out of memory, the kernel picks the command's
    // processes before the agent (which must live to report it).
    if (int adj = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); adj >= 0) {
      (void)!::write(adj, "1000", 4);
      ::close(adj);
    }
    if (::chdir(cwd.c_str()) != 0) fail('c');
    for (const auto& [key, value] : env) ::setenv(key.c_str(), value.c_str(), 1);
    std::vector<char*> args;
    for (auto& arg : argv) args.push_back(arg.data());
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    fail('x');
  }
  ::close(out[1]);
  ::close(err[1]);
  ::close(failed[1]);
  if (with_stdin) ::close(in[0]);
  int pidfd = Pidfd(pid);

  // Could it start? The pipe closes on exec, or brings the reason.
  char why[1 + sizeof(int)];
  ssize_t got;
  do {
    got = ::read(failed[0], why, sizeof why);
  } while (got < 0 && errno == EINTR);
  ::close(failed[0]);
  if (got == static_cast<ssize_t>(sizeof why)) {
    int e = 0;
    std::memcpy(&e, why + 1, sizeof e);
    std::string message = why[0] == 'c' ? "cannot enter the working directory " + cwd
                                        : "cannot run '" + argv[0] + "'";
    Send(Frame::kStderr, "sandrun: " + message + ": " + std::strerror(e) + "\n");
  }

  SetNonBlocking(out[0]);
  SetNonBlocking(err[0]);
  int stdin_fd = with_stdin ? in[1] : -1;
  if (stdin_fd >= 0) SetNonBlocking(stdin_fd);
  std::string pending_stdin;
  bool stdin_ended = !with_stdin;
  bool exited = false, timed_out = false, killed = false, oom_first = false;
  int status = 0;
  Clock::time_point kill_at = Clock::time_point::max();
  Clock::time_point drain_until = Clock::time_point::max();
  const Clock::time_point timeout_at = timeout_ms > 0
                                           ? started + std::chrono::milliseconds(timeout_ms)
                                           : Clock::time_point::max();
  auto reap = [&] {
    ReapOrphans();
    if (!exited && g_command.exited) {
      exited = true;
      status = g_command.status;
    }
  };
  auto forward = [&](int& fd, Frame type) {
    char buffer[65536];
    for (;;) {
      ssize_t n = ::read(fd, buffer, std::min(sizeof buffer, kMaxChunk));
      if (n > 0) {
        Send(type, std::string_view(buffer, static_cast<std::size_t>(n)));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      ::close(fd);
      fd = -1;
      return;
    }
  };
  for (;;) {
    // Frames already read (they may have come with the request itself).
    while (auto frame = host.Next()) {
      if (frame->first == Frame::kStdin) pending_stdin += frame->second;
      if (frame->first == Frame::kStdinEnd) stdin_ended = true;
    }
    if (stdin_fd >= 0 && stdin_ended && pending_stdin.empty()) {
      ::close(stdin_fd);
      stdin_fd = -1;
    }
    reap();
    const Clock::time_point now = Clock::now();
    // As with a local process or `docker exec`, the command lasts until its
    // output is closed: a process it left behind holding stdout keeps it
    // going (and its timeout applies).
    const bool output_open = out[0] >= 0 || err[0] >= 0;
    if (!timed_out && now >= timeout_at) {
      timed_out = true;
      const long long oom_now = OomKills();
      oom_first = oom_before >= 0 && oom_now > oom_before;
      ::kill(-pid, SIGTERM);
      kill_at = now + std::chrono::milliseconds(grace_ms);
    }
    // Once the command is gone (or the grace is over), nothing it started
    // outlives it: the next task in this sandbox starts clean.
    if (timed_out && !killed && (now >= kill_at || (exited && !output_open))) {
      killed = true;
      ::kill(-pid, SIGKILL);
      KillDescendants();
      drain_until = now + std::chrono::seconds(2);  // What the dying tree still writes.
    }
    if (exited && (!output_open || now >= drain_until)) break;
    std::vector<pollfd> fds;
    fds.push_back({0, POLLIN, 0});
    if (out[0] >= 0) fds.push_back({out[0], POLLIN, 0});
    if (err[0] >= 0) fds.push_back({err[0], POLLIN, 0});
    if (stdin_fd >= 0 && !pending_stdin.empty()) fds.push_back({stdin_fd, POLLOUT, 0});
    if (pidfd >= 0 && !exited) fds.push_back({pidfd, POLLIN, 0});
    Clock::time_point wake = std::min({timed_out ? kill_at : timeout_at, drain_until,
                                       pidfd >= 0 || exited ? Clock::time_point::max()
                                                            : now + std::chrono::milliseconds(20)});
    if (killed) wake = std::min(wake, now + std::chrono::milliseconds(20));
    int wait_ms = -1;
    if (wake != Clock::time_point::max()) {
      wait_ms = static_cast<int>(std::max<long long>(
          0, std::chrono::duration_cast<std::chrono::milliseconds>(wake - now).count() + 1));
    }
    int ready = ::poll(fds.data(), fds.size(), wait_ms);
    if (ready < 0 && errno != EINTR) Die(std::string("poll: ") + std::strerror(errno));
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == 0) {
        if (!host.ReadSome()) {  // The host is gone (or cancelled it): so is the command,
          ::kill(-pid, SIGKILL);   // with everything it started, setsid'd ones too.
          KillDescendants();
          std::exit(0);
        }
      } else if (p.fd == out[0]) {
        forward(out[0], Frame::kStdout);
      } else if (p.fd == err[0]) {
        forward(err[0], Frame::kStderr);
      } else if (p.fd == stdin_fd) {
        ssize_t n = ::write(stdin_fd, pending_stdin.data(), pending_stdin.size());
        if (n > 0) pending_stdin.erase(0, static_cast<std::size_t>(n));
        if (n < 0 && errno == EPIPE) pending_stdin.clear();  // It stopped reading.
      }
    }
  }
  if (out[0] >= 0) ::close(out[0]);
  if (err[0] >= 0) ::close(err[0]);
  if (stdin_fd >= 0) ::close(stdin_fd);
  if (pidfd >= 0) ::close(pidfd);
  ReapOrphans();
  // The host sends all of stdin however early the command ended: take the
  // rest so it is not read as the next request.
  while (!stdin_ended) {
    auto [type, payload] = host.Wait();
    if (type == Frame::kStdinEnd) stdin_ended = true;
  }

  json done = {{"exit_code", 0}, {"signal", 0}, {"timed_out", timed_out}, {"oom_killed", false}};
  if (WIFEXITED(status)) done["exit_code"] = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    done["signal"] = WTERMSIG(status);
    done["exit_code"] = 128 + WTERMSIG(status);
    if (WTERMSIG(status) == SIGKILL && !timed_out) {
      const long long oom_now = OomKills();
      done["oom_killed"] = oom_before >= 0 && oom_now > oom_before;
    }
  }
  if (oom_first) done["oom_killed"] = true;
  Send(Frame::kDone, done.dump());
}

// Makes the parents of `path` (an absolute path).
void MakeParents(const std::string& path) {
  std::size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) MakeDirectories(path.substr(0, slash));
}

// One entry of kPut: writes it below "/". Returns "" or what went wrong.
std::string WriteEntry(const std::string& payload) {
  std::size_t newline = payload.find('\n');
  json header = json::parse(payload.substr(0, newline), nullptr, false);
  if (!header.is_object() || newline == std::string::npos) return "bad entry";
  const std::string path = "/" + header.value("path", std::string());
  const std::string kind = header.value("kind", std::string("file"));
  const auto mode = static_cast<mode_t>(header.value("mode", 0644) & 07777);
  std::string_view data = std::string_view(payload).substr(newline + 1);
  MakeParents(path);
  auto failed = [&](const char* what) { return path + ": " + what + ": " + std::strerror(errno); };
  struct stat st{};
  const bool exists = ::lstat(path.c_str(), &st) == 0;
  if (kind == "dir") {
    if (exists && !S_ISDIR(st.st_mode) && ::unlink(path.c_str()) != 0) return failed("unlink");
    if ((!exists || !S_ISDIR(st.st_mode)) && ::mkdir(path.c_str(), mode) != 0) return failed("mkdir");
    if (::chmod(path.c_str(), mode) != 0) return failed("chmod");
    return "";
  }
  const bool append = header.value("append", false);
  if (exists && !append) {
    if (S_ISDIR(st.st_mode) ? ::rmdir(path.c_str()) != 0 : ::unlink(path.c_str()) != 0) {
      return failed("replace");
    }
  }
  if (kind == "symlink") {
    if (::symlink(header.value("target", std::string()).c_str(), path.c_str()) != 0) {
      return failed("symlink");
    }
    return "";
  }
  if (kind == "hardlink") {
    const std::string target = "/" + header.value("target", std::string());
    if (::link(target.c_str(), path.c_str()) != 0) return failed("link");
    return "";
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), mode);
  if (fd < 0) return failed("open");
  std::string error;
  while (!data.empty() && error.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) error = failed("write");
    if (n > 0) data.remove_prefix(static_cast<std::size_t>(n));
  }
  if (error.empty() && !append && ::fchmod(fd, mode) != 0) error = failed("chmod");
  ::close(fd);
  return error;
}

// kPut: entries until kPutEnd, then kOk or kError with the first problem.
void Put(HostInput& host, std::string first) {
  std::string error = WriteEntry(first);
  for (;;) {
    auto [type, payload] = host.Wait();
    if (type == Frame::kPutEnd) break;
    if (type != Frame::kEntry) Die("unexpected frame in an upload");
    if (error.empty()) error = WriteEntry(payload);
  }
  if (error.empty()) {
    Send(Frame::kOk);
  } else {
    Send(Frame::kError, error);
  }
}

void SendEntry(const json& header, std::string_view data = {}) {
  std::string payload = header.dump();
  payload += '\n';
  payload.append(data);
  Send(Frame::kEntry, payload);
}

// Sends `path` as entries named from `name` down; links are sent as links.
// Returns "" or what went wrong.
std::string SendTree(const std::string& path, const std::string& name) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return path + ": " + std::strerror(errno);
  const int mode = static_cast<int>(st.st_mode & 07777);
  if (S_ISLNK(st.st_mode)) {
    std::string target(4096, '\0');
    ssize_t n = ::readlink(path.c_str(), target.data(), target.size());
    if (n < 0) return path + ": " + std::strerror(errno);
    target.resize(static_cast<std::size_t>(n));
    SendEntry({{"path", name}, {"kind", "symlink"}, {"target", target}, {"mode", mode}});
    return "";
  }
  if (S_ISDIR(st.st_mode)) {
    SendEntry({{"path", name}, {"kind", "dir"}, {"mode", mode}});
    std::vector<std::string> children;
    if (DIR* dir = ::opendir(path.c_str())) {
      while (dirent* entry = ::readdir(dir)) {
        std::string child = entry->d_name;
        if (child != "." && child != "..") children.push_back(child);
      }
      ::closedir(dir);
    } else {
      return path + ": " + std::strerror(errno);
    }
    std::sort(children.begin(), children.end());  // The same order every time.
    for (const std::string& child : children) {
      std::string error = SendTree(path + "/" + child, name + "/" + child);
      if (!error.empty()) return error;
    }
    return "";
  }
  if (!S_ISREG(st.st_mode)) return "";  // Devices, fifos, sockets: not sent.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return path + ": " + std::strerror(errno);
  std::string chunk(kMaxChunk, '\0');
  bool first = true;
  for (;;) {
    ssize_t n = ::read(fd, chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return path + ": " + std::strerror(errno);
    }
    if (n == 0 && !first) break;
    SendEntry({{"path", name}, {"kind", "file"}, {"mode", mode}, {"append", !first}},
              std::string_view(chunk.data(), static_cast<std::size_t>(n)));
    first = false;
    if (n == 0) break;
  }
  ::close(fd);
  return "";
}

// kGet: `path` as entries rooted at its base name, then kOk; kNotFound when
// it does not exist, kError when it could not be read.
void Get(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    Send(errno == ENOENT || errno == ENOTDIR ? Frame::kNotFound : Frame::kError,
         path + ": " + std::strerror(errno));
    return;
  }
  std::string error = SendTree(path, path.substr(path.find_last_of('/') + 1));
  if (error.empty()) {
    Send(Frame::kOk);
  } else {
    Send(Frame::kError, error);
  }
}

}  // namespace

int main() {
  ::signal(SIGPIPE, SIG_IGN);
  // Orphans of a command's tree become the agent's children, not init's:
  // its timeout can find and end all of them and nothing else.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) Die(std::string("prctl: ") + std::strerror(errno));
  if (::chdir("/") != 0) Die("cannot enter /");
  HostInput host;
  Send(Frame::kHello, json{{"version", sandrun::docker::agent::kProtocolVersion}}.dump());
  for (;;) {
    auto [type, payload] = host.Wait();
    switch (type) {
      case Frame::kExec: {
        json request = json::parse(payload, nullptr, false);
        if (!request.is_object() || !request.contains("argv")) Die("bad exec request");
        RunCommand(host, request);
        break;
      }
      case Frame::kEntry:
        Put(host, std::move(payload));
        break;
      case Frame::kPutEnd:
        Send(Frame::kOk);  // An upload of nothing.
        break;
      case Frame::kGet:
        Get(payload);
        break;
      default:
        Die(std::string("unexpected frame '") + static_cast<char>(type) + "'");
    }
  }
}
