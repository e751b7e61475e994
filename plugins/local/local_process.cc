// Running one command for the local backend with Boost.Process v2 and Asio:
// one io_context per Exec, run on the calling thread, with concurrent reads
// of stdout and stderr, a pidfd wait for the leader, and timers for the
// timeout, the SIGTERM->SIGKILL grace and the final drain.
#include "local_process.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Boost 1.81's process/v2 headers use these without including them.
#include <boost/optional.hpp>
#include <boost/type_traits/decay.hpp>
#include <boost/type_traits/is_convertible.hpp>
// (keep the three above first)
#include <boost/asio/connect_pipe.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/v2/posix/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <thread>

#include "local_files.h"
#include "sandrun/file_util.h"

namespace sandrun::local {
namespace {

namespace asio = boost::asio;
namespace bp = boost::process::v2;
using boost::system::error_code;

// waitpid(pid) until it ends; returns the wait status.
int Reap(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// ---- child-side helpers: run after fork, so only async-signal-safe calls ----

int WriteWholeFile(const char* path, const char* text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t len = static_cast<ssize_t>(strlen(text));
  ssize_t n = write(fd, text, len);
  int saved = errno;
  close(fd);
  errno = saved;
  return n == len ? 0 : -1;
}

// A fresh network namespace has loopback down; bring it up so a command can
// still talk to itself, as in `docker run --network none`. Best effort.
void BringLoopbackUp() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  memcpy(ifr.ifr_name, "lo", 3);
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  close(fd);
}

// Identity maps prepared before fork (snprintf is not safe after it).
struct IdMaps {
  char uid_map[48];
  char gid_map[48];
  IdMaps() {
    std::snprintf(uid_map, sizeof uid_map, "%u %u 1\n", geteuid(), geteuid());
    std::snprintf(gid_map, sizeof gid_map, "%u %u 1\n", getegid(), getegid());
  }
};

// The namespaces one command enters, with everything the child needs
// prepared before fork: no allocation happens after it.
struct NamespacePlan {
  bool user = false;     // CLONE_NEWUSER too (not root)
  bool network = false;  // CLONE_NEWNET
  bool pid = false;      // CLONE_NEWPID: the next fork is pid 1 of a new namespace
  bool mounts = false;   // CLONE_NEWNS with `hide` covered and `keep` bound back
  const IdMaps* maps = nullptr;
  const char* const* hide = nullptr;  // null-terminated
  const char* const* keep = nullptr;  // null-terminated
};

// "/proc/self/fd/<fd>" without snprintf.
void FdPath(int fd, char (&out)[32]) {
  char digits[12];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + fd % 10);
    fd /= 10;
  } while (fd > 0 && n < 11);
  const char prefix[] = "/proc/self/fd/";
  std::memcpy(out, prefix, sizeof prefix - 1);
  int at = sizeof prefix - 1;
  while (n > 0) out[at++] = digits[--n];
  out[at] = '\0';
}

// mkdir -p inside the fresh tmpfs, where `path` does not exist yet.
int MakeDirs(const char* path) {
  char buf[PATH_MAX];
  std::size_t len = strlen(path);
  if (len == 0 || len >= sizeof buf) return -1;
  std::memcpy(buf, path, len + 1);
  for (std::size_t i = 1; i <= len; ++i) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char saved = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    buf[i] = saved;
  }
  return 0;
}

// Covers each `hide` directory with an empty tmpfs, so host unix sockets
// under /run and /tmp cannot be reached by path, then binds each `keep`
// directory (the sandbox's own, when it lives under one of them) back at its
// old path. Private propagation first, so none of this reaches the host.
int SetUpMounts(const NamespacePlan& plan) {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return -1;
  constexpr int kMaxKeep = 8;
  int keep_fds[kMaxKeep];
  int kept = 0;
  for (; plan.keep[kept] != nullptr && kept < kMaxKeep; ++kept) {
    keep_fds[kept] = open(plan.keep[kept], O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (keep_fds[kept] < 0) return -1;
  }
  for (const char* const* dir = plan.hide; *dir != nullptr; ++dir) {
    const char* mode = strcmp(*dir, "/tmp") == 0 ? "mode=1777" : "mode=755";
    if (mount("tmpfs", *dir, "tmpfs", MS_NOSUID | MS_NODEV, mode) != 0) return -1;
  }
  for (int i = 0; i < kept; ++i) {
    char source[32];
    FdPath(keep_fds[i], source);
    if (MakeDirs(plan.keep[i]) != 0) return -1;
    if (mount(source, plan.keep[i], nullptr, MS_BIND | MS_REC, nullptr) != 0) return -1;
    close(keep_fds[i]);
  }
  return 0;
}

enum SetupStage : char {
  kStageGroup = 'g',
  kStageNamespaces = 'n',
  kStageMounts = 'm',
  kStageInit = 'i',
  kStageCwd = 'c'
};

const char* StageName(char stage) {
  switch (stage) {
    case kStageGroup: return "setpgid";
    case kStageNamespaces: return "entering new namespaces";
    case kStageMounts: return "hiding /run and /tmp in a new mount namespace";
    case kStageInit: return "starting the PID namespace's init";
    case kStageCwd: return "changing to the working directory";
  }
  return "child setup";
}

// Enters the namespaces of `plan`; on failure returns the stage and leaves
// errno set.
char EnterNamespaces(const NamespacePlan& plan) {
  int flags = (plan.network ? CLONE_NEWNET : 0) | (plan.pid ? CLONE_NEWPID : 0) |
              (plan.mounts ? CLONE_NEWNS : 0);
  if (flags == 0) return 0;
  if (plan.user) flags |= CLONE_NEWUSER;
  if (unshare(flags) != 0) return kStageNamespaces;
  if (plan.user) {
    // gid_map may only be written once setgroups is denied (user_namespaces(7)).
    if (WriteWholeFile("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) {
      return kStageNamespaces;
    }
    if (WriteWholeFile("/proc/self/uid_map", plan.maps->uid_map) != 0) return kStageNamespaces;
    if (WriteWholeFile("/proc/self/gid_map", plan.maps->gid_map) != 0) return kStageNamespaces;
  }
  if (plan.network) BringLoopbackUp();
  if (plan.mounts && SetUpMounts(plan) != 0) return kStageMounts;
  return 0;
}

void CloseAllFdsExcept(int a, int b) {
  int low = std::min(a, b), high = std::max(a, b);
  if (low > 0) syscall(SYS_close_range, 0u, static_cast<unsigned>(low - 1), 0u);
  if (high > low + 1) {
    syscall(SYS_close_range, static_cast<unsigned>(low + 1), static_cast<unsigned>(high - 1), 0u);
  }
  syscall(SYS_close_range, static_cast<unsigned>(high + 1), ~0u, 0u);
}

void SetAllDispositions(void (*handler)(int)) {
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig != SIGKILL && sig != SIGSTOP && sig != SIGCHLD) signal(sig, handler);
  }
  signal(SIGCHLD, SIG_DFL);
}

// The supervisor (the process sandrun started and watches) after the init is
// forked: it ignores the signals sent to the process group, so a timeout's
// SIGTERM reaches the command and its grace period holds, and SIGKILL (the
// escalation, Terminate(), or its parent-death signal) ends it and through
// the init's parent-death signal the whole namespace. Then it ends the way
// the command ended, so sandrun sees the command's status.
[[noreturn]] void SuperviseInit(pid_t init, int status_fd, int alive_fd) {
  SetAllDispositions(SIG_IGN);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  CloseAllFdsExcept(status_fd, alive_fd);
  Reap(init);
  int status = 0;
  ssize_t n;
  while ((n = read(status_fd, &status, sizeof status)) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof status)) raise(SIGKILL);  // the init was killed
  if (WIFEXITED(status)) _exit(WEXITSTATUS(status));
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  prctl(PR_SET_DUMPABLE, 0);  // the command already dumped core if it was going to
  kill(getpid(), sig);
  _exit(kExitSignalBase + sig);
}

// Pid 1 of the new namespace: reaps whatever is orphaned to it until the
// command ends, hands the command's wait status to the supervisor, and exits,
// whereupon the kernel kills everything left in the namespace, setsid'd
// daemons included. Dies with the supervisor (PR_SET_PDEATHSIG).
[[noreturn]] void RunInit(pid_t command, int status_fd, int alive_fd) {
  CloseAllFdsExcept(status_fd, alive_fd);
  for (;;) {
    int status = 0;
    pid_t ended = waitpid(-1, &status, 0);
    if (ended == command) {
      ssize_t ignored = write(status_fd, &status, sizeof status);
      (void)ignored;
      _exit(0);
    }
    if (ended < 0 && errno != EINTR) _exit(kExitSandrunError);
  }
}

// Called in the child after unshare(CLONE_NEWPID): forks the init, which
// forks the command. Returns 0 only in the command's process (which then
// execs); -1 when the init cannot be forked. Signals stay blocked across
// the forks so none lands in a half-set-up process.
int StartUnderInit() {
  int status_pipe[2], alive_pipe[2];
  if (pipe2(status_pipe, O_CLOEXEC) != 0) return -1;
  if (pipe2(alive_pipe, O_CLOEXEC) != 0) return -1;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  sigprocmask(SIG_BLOCK, &all, nullptr);
  pid_t init = fork();
  if (init < 0) {
    sigprocmask(SIG_SETMASK, &none, nullptr);
    return -1;
  }
  if (init > 0) SuperviseInit(init, status_pipe[0], alive_pipe[1]);
  // The init. Its parent-death signal is cleared by fork: set it again, then
  // make sure the supervisor did not die before that (getppid() says 0 in a
  // new namespace, so the pipe tells: its only writer is the supervisor).
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  close(alive_pipe[1]);
  close(status_pipe[0]);
  struct pollfd supervisor = {alive_pipe[0], POLLIN, 0};
  if (poll(&supervisor, 1, 0) != 0) _exit(kExitSandrunError);
  pid_t command = fork();
  if (command < 0) _exit(kExitSandrunError);
  if (command > 0) RunInit(command, status_pipe[1], alive_pipe[0]);
  close(status_pipe[1]);
  close(alive_pipe[0]);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  return 0;
}

// In the command's process, once the namespaces and mounts are in place.
// A /proc of the command's own PID namespace: the host's processes, and
// through /proc/<pid>/root the host's file system with the archive and its
// sockets, go out of sight. Then no capabilities at all (and no way to regain
// them through a setuid binary), so a command run by root cannot unmount what
// hides them. Best effort: a /proc that cannot be mounted leaves the host's.
void LockDown(const NamespacePlan& plan) {
  if (!plan.mounts) return;
  if (plan.pid) mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
  for (int cap = 0; cap <= 63; ++cap) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {};
  syscall(SYS_capset, &header, none);
}

constexpr int kTextBusyRetries = 20;

// Boost.Process initializer: replaces argv (Boost would pass the resolved
// path as argv[0]) and the environment, and prepares the child after fork.
struct ChildSetup {
  const char* const* argv;
  const char* const* envp;
  const char* cwd;
  NamespacePlan plan;
  pid_t parent;
  int report_fd;  // a failing stage is written here, so it is not taken for an exec error

  error_code on_setup(bp::posix::default_launcher& launcher, const std::filesystem::path&,
                      const char* const*& cmd_line) {
    cmd_line = argv;
    launcher.env = envp;
    return {};
  }

  error_code on_exec_setup(bp::posix::default_launcher&, const std::filesystem::path&,
                           const char* const*) {
    // Own process group: timeouts and Terminate() signal the whole tree.
    if (setpgid(0, 0) != 0) return Fail(kStageGroup);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    SetAllDispositions(SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) raise(SIGKILL);  // sandrun died before prctl
    if (char stage = EnterNamespaces(plan); stage != 0) return Fail(stage);
    if (chdir(cwd) != 0) return Fail(kStageCwd);
    // Only the command's process comes back from here.
    if (plan.pid && StartUnderInit() != 0) return Fail(kStageInit);
    LockDown(plan);
    MarkInheritedFdsCloseOnExec();
    return {};
  }

  // Boost 1.81's close_all() skips the fds between stderr and its own error
  // pipe (it compares each whitelist entry with itself), so the command would
  // inherit sandrun's pipe ends, its own stdin writer included, and never see
  // EOF. Runs after process_stdio has dup2'd 0-2, which stay open.
  static void MarkInheritedFdsCloseOnExec() {
    if (syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC) == 0) return;
    long max_fd = sysconf(_SC_OPEN_MAX);
    if (max_fd < 0 || max_fd > 65536) max_fd = 65536;
    for (int fd = 3; fd < max_fd; ++fd) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }

  // Boost 1.81 ends a child whose exec failed with exit(), which would run
  // sandrun's atexit handlers and static destructors in the child (deleting
  // temporary directories, flushing files twice). The error has already been
  // reported through Boost's pipe when this runs. Boost detects the hook with
  // a five-argument signature but calls it with four, hence the pack.
  template <typename... Args>
  void on_exec_error(Args&&...) {
    _exit(EXIT_FAILURE);
  }

  error_code Fail(char stage) const {
    int saved = errno;
    ssize_t ignored = write(report_fd, &stage, 1);
    (void)ignored;
    errno = saved;
    return error_code(saved, boost::system::system_category());
  }
};

// ---- parent side ----

// The directories an isolated command sees empty: where host unix sockets
// live (docker.sock, dbus, X11). /var/run is usually a link to /run.
std::vector<std::string> HiddenDirs() {
  std::vector<std::string> dirs;
  for (const char* dir : {"/run", "/var/run", "/tmp"}) {
    std::error_code ec;
    std::filesystem::path real = std::filesystem::canonical(dir, ec);
    if (ec || !std::filesystem::is_directory(real, ec)) continue;
    if (std::find(dirs.begin(), dirs.end(), real.string()) == dirs.end()) {
      dirs.push_back(real.string());
    }
  }
  return dirs;
}

// What SetUpMounts covers and binds back, with pointer arrays for the child.
struct HiddenPaths {
  std::vector<std::string> hide;
  std::vector<std::string> keep;
  std::vector<const char*> hide_ptrs;
  std::vector<const char*> keep_ptrs;
};

HiddenPaths PlanHiddenPaths(const LaunchSpec& spec, const std::filesystem::path& executable) {
  HiddenPaths paths;
  if (spec.isolate_network) paths.hide = HiddenDirs();
  const std::size_t network_hidden = paths.hide.size();
  for (const auto& dir : spec.hide_always) {
    std::error_code ec;
    std::filesystem::path real = std::filesystem::canonical(dir, ec);
    if (ec) continue;  // Nothing there to hide.
    // Under a directory already covered it is gone anyway, and its mount
    // point would be missing in the fresh tmpfs.
    bool covered = std::any_of(paths.hide.begin(), paths.hide.begin() + network_hidden,
                               [&](const std::string& h) { return IsWithin(real, h); });
    if (!covered) paths.hide.push_back(real.string());
  }
  std::vector<std::filesystem::path> wanted = spec.keep_visible;
  wanted.push_back(spec.cwd);
  wanted.push_back(executable.parent_path());
  std::vector<std::filesystem::path> keep;
  for (const auto& path : wanted) {
    std::error_code ec;
    std::filesystem::path real = std::filesystem::canonical(path, ec);
    if (ec) continue;
    for (const auto& dir : paths.hide) {
      // Strictly below a hidden directory: binding back the directory itself
      // would undo the hiding.
      if (real != dir && IsWithin(real, dir)) keep.push_back(real);
    }
  }
  // Parents first; a directory inside one already bound back comes with it.
  std::sort(keep.begin(), keep.end());
  for (const auto& path : keep) {
    if (paths.keep.empty() || !IsWithin(path, paths.keep.back())) paths.keep.push_back(path);
  }
  for (const auto& dir : paths.hide) paths.hide_ptrs.push_back(dir.c_str());
  paths.hide_ptrs.push_back(nullptr);
  for (const auto& dir : paths.keep) paths.keep_ptrs.push_back(dir.c_str());
  paths.keep_ptrs.push_back(nullptr);
  return paths;
}


// Writing stdin to a command that stopped reading raises SIGPIPE, which
// would kill sandrun. Blocked in this thread, the write fails with EPIPE
// instead; a SIGPIPE left pending is consumed before the mask is restored.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_set_);
    sigaddset(&pipe_set_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_);
  }
  ~ScopedSigpipeBlock() {
    if (sigismember(&old_, SIGPIPE) == 0) {
      struct timespec zero = {0, 0};
      while (sigtimedwait(&pipe_set_, nullptr, &zero) > 0) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t pipe_set_;
  sigset_t old_;
};

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  void Reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

struct Lookup {
  std::filesystem::path path;
  int failure = 0;  // 0, kExitNotExecutable or kExitNotFound
  std::string message;
};

int CheckExecutable(const std::filesystem::path& path, std::string* why) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *why = std::strerror(errno);
    return kExitNotFound;
  }
  if (S_ISDIR(st.st_mode)) {
    *why = "Is a directory";
    return kExitNotExecutable;
  }
  if (access(path.c_str(), X_OK) != 0) {
    *why = std::strerror(errno);
    return kExitNotExecutable;
  }
  return 0;
}

// The lookup sh and execvp do, against the command's own PATH and cwd.
Lookup FindExecutable(const std::string& name, const std::string& path_var,
                      const std::filesystem::path& cwd) {
  Lookup out;
  if (name.find('/') != std::string::npos) {
    std::filesystem::path path(name);
    out.path = path.is_absolute() ? path : cwd / path;
    out.failure = CheckExecutable(out.path, &out.message);
    return out;
  }
  std::string first_denied_why;
  std::filesystem::path first_denied;
  std::stringstream dirs(path_var);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    std::filesystem::path base = dir.empty() ? cwd : std::filesystem::path(dir);
    if (base.is_relative()) base = cwd / base;
    std::string why;
    int failure = CheckExecutable(base / name, &why);
    if (failure == 0) {
      out.path = base / name;
      return out;
    }
    if (failure == kExitNotExecutable && first_denied.empty()) {
      first_denied = base / name;
      first_denied_why = why;
    }
  }
  if (!first_denied.empty()) {
    out.path = first_denied;
    out.failure = kExitNotExecutable;
    out.message = first_denied_why;
  } else {
    out.failure = kExitNotFound;
    out.message = "command not found";
  }
  return out;
}

std::string EnvValue(const std::vector<std::string>& env, std::string_view key) {
  for (const auto& entry : env) {
    if (entry.size() > key.size() && entry.compare(0, key.size(), key) == 0 &&
        entry[key.size()] == '=') {
      return entry.substr(key.size() + 1);
    }
  }
  return "";
}

ProcessEnd ExecFailure(int code, const std::string& command, const std::string& why,
                       OutputCollector& err) {
  err.Append("sandrun: " + command + ": " + why + "\n");
  ProcessEnd end;
  end.outcome = Outcome::kExited;
  end.exit_code = code;
  return end;
}

// The state of one running command; every handler runs on the Exec thread.
class ProcessRun {
 public:
  ProcessRun(asio::io_context& ctx, pid_t pid, GroupTracker& tracker, OutputCollector& out,
             OutputCollector& err, asio::readable_pipe out_pipe, asio::readable_pipe err_pipe,
             asio::writable_pipe in_pipe)
      : pid_(pid),
        tracker_(tracker),
        out_(out),
        err_(err),
        out_pipe_(std::move(out_pipe)),
        err_pipe_(std::move(err_pipe)),
        in_pipe_(std::move(in_pipe)),
        exit_watch_(ctx),
        timeout_timer_(ctx),
        grace_timer_(ctx),
        drain_timer_(ctx),
        out_buf_(kReadChunkBytes),
        err_buf_(kReadChunkBytes) {}

  ~ProcessRun() {
    if (!reaped_) {  // only on an exception: leave nothing behind
      kill(-pid_, SIGKILL);
      status_ = Reap(pid_);
      tracker_.Remove(pid_);
    }
  }

  Status Start(const LaunchSpec& spec) {
    int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd < 0) return InternalError(std::string("pidfd_open: ") + std::strerror(errno));
    error_code ec;
    exit_watch_.assign(pidfd, ec);
    if (ec) {
      close(pidfd);
      return InternalError("cannot watch the command: " + ec.message());
    }
    ReadFrom(out_pipe_, out_buf_, out_, out_open_);
    ReadFrom(err_pipe_, err_buf_, err_, err_open_);
    if (spec.stdin_data) {
      stdin_data_ = *spec.stdin_data;
      asio::async_write(in_pipe_, asio::buffer(stdin_data_),
                        [this](const error_code&, std::size_t) { CloseQuietly(in_pipe_); });
    }
    exit_watch_.async_wait(asio::posix::descriptor_base::wait_read,
                           [this](const error_code&) { OnLeaderExit(); });
    if (spec.stop) {
      // Runs in the thread that asks; the kill happens on this run's own.
      stop_listener_.emplace(spec.stop, [this] {
        asio::post(exit_watch_.get_executor(), [this] { OnStop(); });
      });
    }
    if (spec.timeout.count() > 0) {
      timeout_timer_.expires_after(spec.timeout);
      timeout_timer_.async_wait([this](const error_code& ec) {
        // First cause wins: a Terminate() that came before the timeout
        // makes this a cancellation, whatever the kill below does.
        if (ec || reaped_ || tracker_.cancelled()) return;
        timed_out_ = true;
        SignalGroup(SIGTERM);
        grace_timer_.expires_after(kTerminateGrace);
        grace_timer_.async_wait([this](const error_code& ec2) {
          if (!ec2 && !reaped_) SignalGroup(SIGKILL);
        });
      });
    }
    return OkStatus();
  }

  ProcessEnd End() const {
    ProcessEnd end;
    bool signaled = WIFSIGNALED(status_);
    int term_signal = signaled ? WTERMSIG(status_) : 0;
    if (timed_out_) {  // before any Terminate(): see the timeout handler
      end.outcome = Outcome::kTimedOut;
      end.exit_code = kExitTimedOut;
      end.signal = signaled ? term_signal : kill_signal_;
    } else if (cancelled_ || stopped_) {
      end.outcome = Outcome::kCancelled;
      end.exit_code = kExitInterrupted;
      end.signal = term_signal;
      end.stopped = stopped_ && !cancelled_;
    } else if (signaled) {
      end.outcome = Outcome::kSignaled;
      end.signal = term_signal;
      end.exit_code = kExitSignalBase + term_signal;
    } else {
      end.outcome = Outcome::kExited;
      end.exit_code = WEXITSTATUS(status_);
    }
    if (drain_expired_) {
      end.notes.push_back(
          "local backend: stopped reading output " + std::to_string(kDrainAfterExit.count()) +
          " s after the command ended: a process outside its process group still holds "
          "stdout/stderr open");
    }
    return end;
  }

 private:
  template <typename Pipe>
  static void CloseQuietly(Pipe& pipe) {
    error_code ignored;
    pipe.close(ignored);
  }

  void ReadFrom(asio::readable_pipe& pipe, std::vector<char>& buf, OutputCollector& sink,
                bool& open) {
    pipe.async_read_some(asio::buffer(buf), [this, &pipe, &buf, &sink, &open](
                                                const error_code& ec, std::size_t n) {
      if (n > 0) sink.Append(std::string_view(buf.data(), n));
      if (ec) {
        open = false;
        CloseQuietly(pipe);
        MaybeFinish();
        return;
      }
      ReadFrom(pipe, buf, sink, open);
    });
  }

  void SignalGroup(int sig) {
    kill_signal_ = sig;
    kill(-pid_, sig);
  }

  // LaunchSpec::stop: first cause wins, as for Terminate() and the timeout.
  void OnStop() {
    if (reaped_ || timed_out_ || tracker_.cancelled()) return;
    stopped_ = true;
    SignalGroup(SIGKILL);
  }

  void OnLeaderExit() {
    cancelled_ = tracker_.cancelled();
    // Until it is reaped the leader is a zombie, so its pid, which is also the
    // group id, cannot be reused: this kill reaches only what it left behind.
    kill(-pid_, SIGKILL);
    status_ = Reap(pid_);
    reaped_ = true;
    tracker_.Remove(pid_);
    timeout_timer_.cancel();
    grace_timer_.cancel();
    if (out_open_ || err_open_) {
      drain_timer_.expires_after(kDrainAfterExit);
      drain_timer_.async_wait([this](const error_code& ec) {
        if (ec) return;
        drain_expired_ = true;
        CloseQuietly(out_pipe_);
        CloseQuietly(err_pipe_);
      });
    }
    MaybeFinish();
  }

  void MaybeFinish() {
    if (!reaped_ || out_open_ || err_open_) return;
    drain_timer_.cancel();
    CloseQuietly(in_pipe_);
  }

  pid_t pid_;
  GroupTracker& tracker_;
  OutputCollector& out_;
  OutputCollector& err_;
  asio::readable_pipe out_pipe_;
  asio::readable_pipe err_pipe_;
  asio::writable_pipe in_pipe_;
  asio::posix::stream_descriptor exit_watch_;
  asio::steady_timer timeout_timer_;
  asio::steady_timer grace_timer_;
  asio::steady_timer drain_timer_;
  std::vector<char> out_buf_;
  std::vector<char> err_buf_;
  std::string stdin_data_;
  bool out_open_ = true;
  bool err_open_ = true;
  bool reaped_ = false;
  bool timed_out_ = false;
  bool cancelled_ = false;
  bool stopped_ = false;
  bool drain_expired_ = false;
  int kill_signal_ = 0;
  int status_ = 0;
  // Declared last: it goes first, so no stop request reaches a half-destroyed run.
  std::optional<CommandStop::Listener> stop_listener_;
};

Result<ProcessEnd> RunProcessOrThrow(const LaunchSpec& spec, GroupTracker& tracker,
                                     OutputCollector& out, OutputCollector& err) {
  if (spec.argv.empty()) return InvalidArgumentError("empty command");
  const std::string& command = spec.argv.front();
  Lookup found = FindExecutable(command, EnvValue(spec.env, "PATH"), spec.cwd);
  if (found.failure != 0) return ExecFailure(found.failure, command, found.message, err);

  ScopedSigpipeBlock sigpipe_block;
  asio::io_context ctx;
  asio::readable_pipe out_read(ctx), err_read(ctx), in_read(ctx);
  asio::writable_pipe out_write(ctx), err_write(ctx), in_write(ctx);
  error_code ec;
  asio::connect_pipe(out_read, out_write, ec);
  if (!ec) asio::connect_pipe(err_read, err_write, ec);
  if (!ec && spec.stdin_data) asio::connect_pipe(in_read, in_write, ec);
  if (ec) return InternalError("cannot create pipes: " + ec.message());
  UniqueFd dev_null(spec.stdin_data ? -1 : open("/dev/null", O_RDONLY | O_CLOEXEC));
  int stdin_fd = spec.stdin_data ? in_read.native_handle() : dev_null.get();
  int report[2];
  // Non-blocking: children forked meanwhile by other threads may hold the
  // write end open until they exec.
  if (pipe2(report, O_CLOEXEC | O_NONBLOCK) != 0) {
    return InternalError(std::string("pipe2: ") + std::strerror(errno));
  }
  UniqueFd report_read(report[0]);
  UniqueFd report_write(report[1]);

  std::vector<const char*> argv_ptrs;
  for (const auto& arg : spec.argv) argv_ptrs.push_back(arg.c_str());
  argv_ptrs.push_back(nullptr);
  std::vector<const char*> env_ptrs;
  for (const auto& entry : spec.env) env_ptrs.push_back(entry.c_str());
  env_ptrs.push_back(nullptr);
  IdMaps maps;
  std::string cwd = spec.cwd.string();
  HiddenPaths hidden = PlanHiddenPaths(spec, found.path);
  NamespacePlan plan;
  plan.user = spec.needs_user_namespace;
  plan.network = spec.isolate_network;
  plan.mounts = !hidden.hide.empty();
  plan.pid = spec.pid_namespace;
  plan.maps = &maps;
  plan.hide = hidden.hide_ptrs.data();
  plan.keep = hidden.keep_ptrs.data();
  ChildSetup setup{argv_ptrs.data(), env_ptrs.data(), cwd.c_str(), plan, getpid(),
                   report_write.get()};

  const std::vector<std::string> unused_args;  // ChildSetup supplies argv
  bp::posix::default_launcher launcher;
  bp::basic_process<asio::io_context::executor_type> process(ctx.get_executor());
  // ETXTBSY: a child forked by another thread still holds a write descriptor
  // to this freshly copied executable until it execs; wait for that.
  for (int attempt = 0;; ++attempt) {
    launcher = bp::posix::default_launcher();
    ec.clear();
    // process_stdio must come first: ChildSetup's last step relies on 0-2 being set.
    process = launcher(ctx.get_executor(), ec, found.path, unused_args,
                       bp::process_stdio{stdin_fd, out_write.native_handle(),
                                         err_write.native_handle()},
                       setup);
    if (ec != boost::system::errc::text_file_busy || attempt == kTextBusyRetries) break;
    if (launcher.pid > 0) Reap(launcher.pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(5 * (attempt + 1)));
  }
  out_write.close();
  err_write.close();
  in_read.close();
  dev_null.Reset();
  report_write.Reset();
  if (ec) {
    if (launcher.pid > 0) Reap(launcher.pid);
    char stage = 0;
    if (read(report_read.get(), &stage, 1) == 1) {
      return InternalError(std::string("local: ") + StageName(stage) + " failed for '" + command +
                           "' (in " + cwd + "): " + ec.message());
    }
    int code = ec.value();
    if (code == ENOENT) return ExecFailure(kExitNotFound, command, ec.message(), err);
    if (code == EACCES || code == ENOEXEC || code == EISDIR || code == ETXTBSY || code == EPERM) {
      return ExecFailure(kExitNotExecutable, command, ec.message(), err);
    }
    return InternalError("local: cannot start '" + command + "': " + ec.message());
  }
  pid_t pid = process.id();
  process.detach();  // this code waits for it (see ProcessRun::OnLeaderExit)

  if (!tracker.Add(GroupRecord{pid, ProcessStartTime(pid)})) kill(-pid, SIGKILL);
  ProcessRun run(ctx, pid, tracker, out, err, std::move(out_read), std::move(err_read),
                 std::move(in_write));
  Status started = run.Start(spec);
  if (!started.ok()) return started.WithContext("local");
  ctx.run();
  return run.End();
}

}  // namespace

std::uint64_t ProcessStartTime(pid_t pid) {
  if (pid <= 0) return 0;
  Result<std::string> read = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  if (!read.ok()) return 0;
  const std::string& stat = *read;
  // The command name (field 2) may hold spaces and ')': skip to its last ')'.
  auto close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close_paren + 1));
  std::string field;
  for (int index = 3; index <= 22 && (fields >> field); ++index) {
    if (index == 22) return std::strtoull(field.c_str(), nullptr, 10);
  }
  return 0;
}

LocalIsolation ProbeIsolation() {
  LocalIsolation support;
  IdMaps maps;
  std::vector<std::string> hide = HiddenDirs();
  std::vector<const char*> hide_ptrs;
  for (const auto& dir : hide) hide_ptrs.push_back(dir.c_str());
  hide_ptrs.push_back(nullptr);
  const char* no_keep[] = {nullptr};
  // Each trial runs in a forked child that exits 0 or with errno.
  auto trial = [&](NamespacePlan plan) -> std::string {
    plan.maps = &maps;
    plan.hide = hide_ptrs.data();
    plan.keep = no_keep;
    pid_t pid = fork();
    if (pid == 0) {
      if (EnterNamespaces(plan) != 0) _exit(errno & 0xff);
      if (!plan.pid) _exit(0);
      pid_t init = fork();  // pid 1 of the new namespace
      if (init == 0) _exit(0);
      _exit(init > 0 && WIFEXITED(Reap(init)) ? 0 : (errno & 0xff));
    }
    if (pid < 0) return std::string("fork: ") + std::strerror(errno);
    int status = Reap(pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return "";
    return WIFEXITED(status) ? std::strerror(WEXITSTATUS(status)) : "probe crashed";
  };
  std::vector<bool> attempts;
  if (geteuid() == 0) attempts.push_back(false);
  attempts.push_back(true);
  for (bool user_namespace : attempts) {
    const char* how = user_namespace ? "with CLONE_NEWUSER: " : "as root: ";
    NamespacePlan network;
    network.user = user_namespace;
    network.network = true;
    network.mounts = true;
    std::string network_error = trial(network);
    NamespacePlan pid;
    pid.user = user_namespace;
    pid.pid = true;
    std::string pid_error = trial(pid);
    if (network_error.empty() || pid_error.empty()) {
      support.needs_user_namespace = user_namespace;
      support.isolates_network = network_error.empty();
      support.pid_namespace = pid_error.empty();
      support.network_reason = network_error.empty() ? "" : how + network_error;
      support.pid_reason = pid_error.empty() ? "" : how + pid_error;
      return support;
    }
    auto append = [](std::string& to, const std::string& what) {
      to += (to.empty() ? "" : "; ") + what;
    };
    append(support.network_reason,
           std::string("new network and mount namespaces ") + how + network_error);
    append(support.pid_reason, std::string("new PID namespace ") + how + pid_error);
  }
  return support;
}

bool GroupTracker::Add(GroupRecord group) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cancelled_) return false;
    groups_.push_back(group);
  }
  if (changed_) changed_();
  return true;
}

void GroupTracker::Remove(pid_t pgid) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::erase_if(groups_, [pgid](const GroupRecord& g) { return g.pgid == pgid; });
  }
  if (changed_) changed_();
}

void GroupTracker::CancelAll() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  for (const auto& group : groups_) kill(-group.pgid, SIGKILL);
}

bool GroupTracker::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

std::vector<GroupRecord> GroupTracker::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return groups_;
}

Result<ProcessEnd> RunProcess(const LaunchSpec& spec, GroupTracker& tracker,
                              OutputCollector& out, OutputCollector& err) {
  try {
    return RunProcessOrThrow(spec, tracker, out, err);
  } catch (const std::exception& e) {
    return InternalError(std::string("local: ") + e.what());
  }
}

}  // namespace sandrun::local
