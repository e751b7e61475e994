// Running one command for the local backend with Boost.Process v2 and Asio:
// one io_context per Exec, run on the calling thread, with concurrent reads
// of stdout and stderr, a pidfd wait for the leader, and timers for the
// timeout, the SIGTERM->SIGKILL grace and the final drain.
#include "local_process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
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
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/readable_pipe.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/writable_pipe.hpp>
#include <boost/asio/write.hpp>
#include <boost/process/v2/posix/default_launcher.hpp>
#include <boost/process/v2/process.hpp>
#include <boost/process/v2/stdio.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

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

int EnterNetworkNamespace(bool user_namespace, const IdMaps& maps) {
  if (!user_namespace) {
    if (unshare(CLONE_NEWNET) != 0) return -1;
  } else {
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) return -1;
    // gid_map may only be written once setgroups is denied (user_namespaces(7)).
    if (WriteWholeFile("/proc/self/setgroups", "deny") != 0 && errno != ENOENT) return -1;
    if (WriteWholeFile("/proc/self/uid_map", maps.uid_map) != 0) return -1;
    if (WriteWholeFile("/proc/self/gid_map", maps.gid_map) != 0) return -1;
  }
  BringLoopbackUp();
  return 0;
}

constexpr int kTextBusyRetries = 20;

enum SetupStage : char { kStageGroup = 'g', kStageNetwork = 'n', kStageCwd = 'c' };

const char* StageName(char stage) {
  switch (stage) {
    case kStageGroup: return "setpgid";
    case kStageNetwork: return "entering a new network namespace";
    case kStageCwd: return "changing to the working directory";
  }
  return "child setup";
}

// Boost.Process initializer: replaces argv (Boost would pass the resolved
// path as argv[0]) and the environment, and prepares the child after fork.
struct ChildSetup {
  const char* const* argv;
  const char* const* envp;
  const char* cwd;
  bool isolate_network;
  bool user_namespace;
  pid_t parent;
  const IdMaps* maps;
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
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) raise(SIGKILL);  // sandrun died before prctl
    if (isolate_network && EnterNetworkNamespace(user_namespace, *maps) != 0) {
      return Fail(kStageNetwork);
    }
    if (chdir(cwd) != 0) return Fail(kStageCwd);
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
    if (spec.timeout.count() > 0) {
      timeout_timer_.expires_after(spec.timeout);
      timeout_timer_.async_wait([this](const error_code& ec) {
        if (ec || reaped_) return;
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
    if (cancelled_) {
      end.outcome = Outcome::kCancelled;
      end.exit_code = kExitInterrupted;
      end.signal = term_signal;
    } else if (timed_out_) {
      end.outcome = Outcome::kTimedOut;
      end.exit_code = kExitTimedOut;
      end.signal = signaled ? term_signal : kill_signal_;
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
  bool drain_expired_ = false;
  int kill_signal_ = 0;
  int status_ = 0;
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
  ChildSetup setup{argv_ptrs.data(), env_ptrs.data(),      cwd.c_str(), spec.isolate_network,
                   spec.needs_user_namespace, getpid(), &maps,       report_write.get()};

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
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
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

LocalNetworkSupport ProbeNetworkIsolation() {
  LocalNetworkSupport support;
  IdMaps maps;
  std::vector<bool> attempts;
  if (geteuid() == 0) attempts.push_back(false);
  attempts.push_back(true);
  for (bool user_namespace : attempts) {
    pid_t pid = fork();
    if (pid == 0) _exit(EnterNetworkNamespace(user_namespace, maps) == 0 ? 0 : (errno & 0xff));
    if (pid < 0) {
      support.reason = std::string("fork: ") + std::strerror(errno);
      return support;
    }
    int status = Reap(pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      support.isolates = true;
      support.needs_user_namespace = user_namespace;
      support.reason.clear();
      return support;
    }
    if (!support.reason.empty()) support.reason += "; ";
    support.reason += user_namespace ? "unshare(CLONE_NEWUSER|CLONE_NEWNET): "
                                     : "unshare(CLONE_NEWNET): ";
    support.reason += WIFEXITED(status) ? std::strerror(WEXITSTATUS(status)) : "probe crashed";
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
