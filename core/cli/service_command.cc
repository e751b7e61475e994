// `sandrun service start|stop|run --socket PATH`: the process that keeps warm
// sandboxes for the `sandrun exec --service PATH` processes of one ctest
// invocation (service.h has the wire). `start` returns once the service
// answers (it runs on in the background, its log beside the socket as
// PATH.log); `stop` ends it and its sandboxes; `run` serves in the
// foreground. The service also ends when it has been idle for
// --idle-timeout seconds, and when the process that started it (ctest) is
// gone, so it never outlives its ctest for long.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <iostream>
#include <list>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "run_support.h"
#include "sandrun/interrupts.h"
#include "sandrun/run_setup.h"
#include "sandrun/task_json.h"
#include "sandrun/util.h"
#include "sandrun/warm_pool.h"
#include "service.h"

namespace sandrun::cli {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A listening unix socket at `path` (a stale socket file nobody answers at
// is replaced), or the reason it cannot be.
// Answers a task that could not be run: kFailed {code, message}. (A message
// may quote bytes that are not UTF-8.)
void SendFailed(int fd, const Status& status) {
  WriteServiceFrame(fd, ServiceFrame::kFailed,
                    json{{"code", static_cast<int>(status.code())}, {"message", status.message()}}
                        .dump(-1, ' ', false, json::error_handler_t::replace));
}

Result<int> Listen(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof address.sun_path) {
    return InvalidArgumentError("--socket " + text + ": longer than a unix socket path may be (" +
                                std::to_string(sizeof address.sun_path - 1) + " bytes)");
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  std::error_code ec;
  if (std::filesystem::exists(std::filesystem::symlink_status(path, ec))) {
    if (!std::filesystem::is_socket(std::filesystem::symlink_status(path, ec))) {
      return InvalidArgumentError("--socket " + text + ": exists and is not a socket");
    }
    std::filesystem::remove(path, ec);  // Stale: the caller found nobody answering.
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return InternalError(std::string("socket: ") + std::strerror(errno));
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 128) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return FailedPreconditionError("cannot listen at " + text + ": " + why);
  }
  return fd;
}

// What an attach is answered while the service ends: start a new one after.
constexpr char kAttachRefusedStopping[] = "stopping";

// Forwards the engine's warnings to the exec that asked.
class WarningForwarder : public RunListenerBase {
 public:
  WarningForwarder(int fd, std::mutex& write_mu) : fd_(fd), write_mu_(write_mu) {}
  void OnWarning(std::string_view message) override {
    std::lock_guard lock(write_mu_);
    WriteServiceFrame(fd_, ServiceFrame::kWarning, message);
  }

 private:
  int fd_;
  std::mutex& write_mu_;
};

class Service {
 public:
  Service(const CliContext& context, Config config, std::chrono::seconds idle_timeout,
          int parent_pid)
      : context_(context),
        config_(std::move(config)),
        fingerprint_(ServiceFingerprint(config_)),
        idle_timeout_(idle_timeout),
        held_(parent_pid > 0) {
    if (held_) holders_.insert(parent_pid);
  }

  /// Makes the backends and the pool. Not OK: the service cannot serve.
  Status Prepare() {
    RunSetupInputs inputs;
    inputs.env = context_.env;
    Result<RunSetup> setup = SetUpRun(context_.registry, config_, inputs);
    if (!setup.ok()) return setup.status();
    setup_ = std::move(setup).value();
    // The first backend that can be used now: the one the tests would get.
    std::string why;
    std::shared_ptr<Backend> backend = FirstAvailableBackend(setup_.candidates, &why);
    if (backend == nullptr) return UnavailableError(why.empty() ? "no backend configured" : why);
    // Tasks go to this backend only (no fallback per task), and its records
    // to one archive object, so that they are delivered in groups.
    candidates_ = {BackendCandidate{backend, "", std::string(backend->Name())}};
    Result<std::unique_ptr<ArchiveStore>> store = backend->OpenArchive();
    if (!store.ok()) return store.status().WithContext("opening the result archive");
    archive_ = std::make_shared<ResultArchive>(std::shared_ptr<ArchiveStore>(std::move(store).value()),
                                               setup_.options.outbox_dir / std::string(backend->Name()));
    const Capabilities caps = backend->GetCapabilities();
    // How many tasks ctest will send at once is not known here: at least 16.
    const WarmPoolSize size =
        SizeWarmPool(caps, config_.tasks_per_sandbox, config_.sandboxes,
                     std::max({config_.jobs, caps.max_parallel, 16}), /*clamp_to_jobs=*/false);
    places_ = size.places;
    const int sandboxes = size.sandboxes;
    pool_ = std::make_shared<WarmPool>(
        sandboxes, [this](std::shared_ptr<Sandbox> s) { reaper_.Add(std::move(s)); });
    description_ = std::string(backend->Name()) + ", " + std::to_string(sandboxes) +
                   " warm sandbox(es) of " + std::to_string(places_) + " task(s)";
    return OkStatus();
  }

  const std::string& description() const { return description_; }

  /// Serves until stopped, idle or orphaned; then ends every sandbox.
  /// `socket` is removed as soon as it stops listening, so that a service
  /// started meanwhile is not left without its socket.
  void Serve(int listen_fd, const std::filesystem::path& socket) {
    struct stat at_start {};
    const bool known = ::stat(socket.c_str(), &at_start) == 0;
    Clock::time_point last_activity = Clock::now();
    while (!stopping_) {
      pollfd p{listen_fd, POLLIN, 0};
      int ready = ::poll(&p, 1, 500);
      if (ready > 0) {
        int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          // A peer that sends nothing cannot hold a thread (and `stop`) for ever.
          timeval patience{30, 0};
          ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience);
          ++active_;
          std::lock_guard lock(threads_mu_);
          const int key = next_thread_++;
          threads_.emplace(key, std::thread([this, fd, key] {
            Handle(fd);
            ::close(fd);
            --active_;
            std::lock_guard done(threads_mu_);
            finished_.push_back(key);
          }));
        }
      }
      JoinFinished();
      if (active_ > 0) last_activity = Clock::now();
      if (LastHolderGone()) break;
      if (idle_timeout_.count() > 0 && active_ == 0 && Clock::now() - last_activity > idle_timeout_) {
        Log("idle for " + std::to_string(idle_timeout_.count()) + " s; ending");
        break;
      }
      if (InterruptFlag().cancelled()) break;
    }
    // Unless another service has put its own there since.
    struct stat now {};
    if (!known || ::stat(socket.c_str(), &now) != 0 || now.st_ino == at_start.st_ino) {
      std::error_code ec;
      std::filesystem::remove(socket, ec);
    }
    ::close(listen_fd);
    stopping_ = true;
    {
      std::lock_guard lock(cancels_mu_);
      for (CancelFlag* cancel : cancels_) cancel->Cancel();
    }
    std::map<int, std::thread> threads;
    {
      std::lock_guard lock(threads_mu_);
      threads.swap(threads_);
      finished_.clear();
    }
    for (auto& [key, t] : threads) t.join();
    pool_->EndAll();
    reaper_.Wait();
    Log("ended its sandboxes");
    archive_.reset();  // Delivers the records still waiting.
    Log("delivered its records");
  }

 private:
  static void Log(const std::string& line) { std::cerr << "sandrun service: " << line << std::endl; }

  // Joins the connection threads that have ended.
  void JoinFinished() {
    std::vector<std::thread> done;
    {
      std::lock_guard lock(threads_mu_);
      for (int key : finished_) {
        auto it = threads_.find(key);
        if (it == threads_.end()) continue;
        done.push_back(std::move(it->second));
        threads_.erase(it);
      }
      finished_.clear();
    }
    for (auto& t : done) t.join();
  }

  // Drops the holders that are gone; true when the service had holders and
  // none is left (it then ends, as its last ctest did).
  bool LastHolderGone() {
    std::lock_guard lock(holders_mu_);
    if (holders_.empty()) return false;
    for (auto it = holders_.begin(); it != holders_.end();) {
      if (ProcessAlive(*it)) {
        ++it;
        continue;
      }
      Log("the process " + std::to_string(*it) + " that holds the service is gone");
      it = holders_.erase(it);
    }
    if (!holders_.empty()) return false;
    stopping_ = true;  // Under holders_mu_: an attach now is refused.
    Log("no process holds the service any more; ending");
    return true;
  }

  static int PidOf(const std::string& payload) {
    try {
      return payload.empty() ? 0 : std::stoi(payload);
    } catch (const std::exception&) {
      return 0;
    }
  }

  void Handle(int fd) {
    std::mutex write_mu;
    auto frame = ReadServiceFrame(fd);
    if (!frame) return;
    if (frame->first == ServiceFrame::kAttach) {
      if (long peer_uid = -1; !PeerIsThisUser(fd, &peer_uid)) return;
      // A service started without a holder (`run` by hand) ends by hand only.
      const int pid = PidOf(frame->second);
      std::string refused;
      {
        std::lock_guard lock(holders_mu_);
        refused = stopping_ ? kAttachRefusedStopping : !held_ ? "held by nobody" : pid <= 0 ? "no pid" : "";
        if (refused.empty()) holders_.insert(pid);
      }
      if (refused.empty()) Log("shared with process " + std::to_string(pid));
      WriteServiceFrame(fd, ServiceFrame::kAttached, refused);
      return;
    }
    if (frame->first == ServiceFrame::kStop) {
      if (long peer_uid = -1; !PeerIsThisUser(fd, &peer_uid)) return;
      // "<pid>" leaves, ending the service if it was the last holder;
      // "leave <pid>" (a ctest's cleanup test) never ends one it did not hold.
      std::string payload = frame->second;
      const bool leave_only = payload.rfind("leave ", 0) == 0;
      if (leave_only) payload.erase(0, 6);
      const int pid = PidOf(payload);
      {
        std::lock_guard lock(holders_mu_);
        const bool held_by_pid = holders_.erase(pid) > 0;
        if ((held_by_pid && !holders_.empty()) || (leave_only && !held_by_pid)) {
          Log("process " + std::to_string(pid) + " left; serving " +
              std::to_string(holders_.size()) + " other(s)");
          WriteServiceFrame(fd, ServiceFrame::kStopped, "still serving others");
          return;
        }
        stopping_ = true;  // Under holders_mu_: an attach now is refused.
      }
      Log("asked to stop");
      // Answered once the sandboxes have ended: Serve's loop ends first.
      std::lock_guard lock(stop_mu_);
      stop_fds_.push_back(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
      return;
    }
    if (frame->first != ServiceFrame::kRequest) return;
    auto not_served = [&](const std::string& why) {
      WriteServiceFrame(fd, ServiceFrame::kNotServed, why);
    };
    // Tasks of this user only: another user's exec must not run as us.
    if (long peer_uid = -1; !PeerIsThisUser(fd, &peer_uid)) {
      return not_served("the service serves its own user's execs only");
    }
    json request = json::parse(frame->second, nullptr, false);
    if (!request.is_object() || request.value("version", 0) != kServiceProtocolVersion) {
      return not_served("the service speaks another version of the protocol");
    }
    if (request.value("fingerprint", std::string()) != fingerprint_) {
      return not_served("the service runs another configuration (backend '" + config_.backend +
                        "'); this exec's settings differ");
    }
    Result<Task> parsed = TaskFromJson(request.value("task", json::object()).dump());
    if (!parsed.ok()) return not_served(parsed.status().message());
    Task task = std::move(parsed).value();
    // Engine::Run's contract, and this socket's peer is only known to be our
    // user: a task that names paths outside its sandbox goes no further.
    if (Status valid = ValidateTask(task); !valid.ok()) return SendFailed(fd, valid);
    if (task.exec.stdin_data) {
      auto input = ReadServiceFrame(fd);
      if (!input || input->first != ServiceFrame::kStdin) return;
      task.exec.stdin_data = std::move(input->second);
    }
    task.exec.on_output = [fd, &write_mu](StreamKind kind, std::string_view chunk) {
      std::lock_guard lock(write_mu);
      WriteServiceFrame(fd, kind == StreamKind::kStdout ? ServiceFrame::kStdout : ServiceFrame::kStderr,
                        chunk);
    };
    const json& given = request.value("options", json::object());
    RunOptions options = setup_.options;
    options.jobs = 1;
    options.retries = given.value("retries", options.retries);
    options.run_group = given.value("run_group", std::string());
    options.run_group_owner_pid = given.value("run_group_owner_pid", 0);
    options.command_line = given.value("command_line", std::vector<std::string>());
    options.labels = given.value("labels", std::map<std::string, std::string>());
    options.tasks_per_sandbox = places_;
    options.warm_pool = pool_;
    options.archive = archive_;

    // The exec closing its end (Ctrl-C, ctest's timeout, kill) cancels.
    CancelFlag cancel;
    {
      std::lock_guard lock(cancels_mu_);
      cancels_.push_back(&cancel);
      if (stopping_) cancel.Cancel();
    }
    std::atomic<bool> done{false};
    std::thread watcher([&] {
      auto said_alive = Clock::now();
      while (!done) {
        if (Clock::now() - said_alive >= kServiceAliveInterval) {
          said_alive = Clock::now();
          std::lock_guard lock(write_mu);
          WriteServiceFrame(fd, ServiceFrame::kAlive, "");
        }
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 100) > 0) {
          char byte;
          if (::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
            cancel.Cancel();
            return;
          }
        }
      }
    });
    Engine engine(candidates_);
    engine.AddListener(std::make_shared<WarningForwarder>(fd, write_mu));
    Result<RunOutcome> outcome = engine.Run({task}, options, cancel);
    done = true;
    watcher.join();
    {
      std::lock_guard lock(cancels_mu_);
      cancels_.remove(&cancel);
    }
    std::lock_guard lock(write_mu);
    if (!outcome.ok()) return SendFailed(fd, outcome.status());
    WriteServiceFrame(fd, ServiceFrame::kDone,
                      json{{"record", ToJson(outcome->tasks.front(), -1)},
                           {"run_status", RunStatusName(outcome->run.status)}}
                          .dump(-1, ' ', false, json::error_handler_t::replace));
  }

 public:
  /// Answers the `stop` requests once everything has ended.
  void AnswerStops() {
    std::lock_guard lock(stop_mu_);
    for (int fd : stop_fds_) {
      WriteServiceFrame(fd, ServiceFrame::kStopped, "");
      ::close(fd);
    }
  }

 private:
  const CliContext& context_;
  Config config_;
  std::string fingerprint_;
  std::chrono::seconds idle_timeout_;
  /// The processes (ctest invocations) the service serves: it ends when the
  /// last has stopped it or is gone. Not `held_` (started without a parent
  /// pid, as `run` by hand): no such bound, and nobody joins.
  const bool held_;
  std::mutex holders_mu_;
  std::set<int> holders_;  // Guarded by holders_mu_.
  RunSetup setup_;
  int places_ = 1;
  SandboxReaper reaper_;
  std::shared_ptr<WarmPool> pool_;
  std::vector<BackendCandidate> candidates_;
  std::shared_ptr<ResultArchive> archive_;
  std::string description_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> active_{0};
  std::mutex threads_mu_;
  std::map<int, std::thread> threads_;  // Guarded by threads_mu_, as the two below.
  std::vector<int> finished_;
  int next_thread_ = 0;
  std::mutex cancels_mu_;
  std::list<CancelFlag*> cancels_;
  std::mutex stop_mu_;
  std::vector<int> stop_fds_;  // Guarded by stop_mu_.
};

// Runs the service on `listen_fd` until it ends; `ready` (when >= 0) gets
// "ok\n" once it serves or the reason it cannot, then is closed.
int RunService(const CliContext& context, const Config& config, int listen_fd, int ready,
               std::chrono::seconds idle_timeout, int parent_pid,
               const std::filesystem::path& socket) {
  Service service(context, config, idle_timeout, parent_pid);
  Status prepared = service.Prepare();
  auto tell = [&](const std::string& text) {
    if (ready < 0) return;
    (void)!::write(ready, text.data(), text.size());
    ::close(ready);
    ready = -1;
  };
  if (!prepared.ok()) {
    tell(prepared.message());
    PrintError("service: " + prepared.message());
    std::error_code ec;
    std::filesystem::remove(socket, ec);
    return kExitSandrunError;
  }
  std::cerr << "sandrun service: serving at " << socket.string() << " (pid " << ::getpid() << "; "
            << service.description() << ")" << std::endl;
  tell("ok\n" + service.description());
  service.Serve(listen_fd, socket);
  service.AnswerStops();
  return 0;
}

// `holder`: the process leaving (the ctest whose cleanup test this is), or
// none (0). The service ends unless another holder remains; with
// `leave_only` (the cleanup test's --leave), never when `holder` did not
// hold it (a ctest whose start found it stopping, or could not start one).
int Stop(const std::filesystem::path& socket, int holder, bool leave_only) {
  int fd = ConnectServiceSocket(socket);
  if (fd < 0) {
    std::cerr << "sandrun service: none running at " << socket.string() << "\n";
    return 0;
  }
  std::string payload = holder > 0 ? std::to_string(holder) : "";
  if (leave_only) payload = "leave " + payload;
  WriteServiceFrame(fd, ServiceFrame::kStop, payload);
  auto answer = ReadServiceFrame(fd);  // kStopped once its sandboxes ended (or EOF).
  ::close(fd);
  if (answer && answer->first == ServiceFrame::kStopped && !answer->second.empty()) {
    std::cerr << "sandrun service: left the one at " << socket.string() << " ("
              << answer->second << ")\n";
    return 0;
  }
  std::cerr << "sandrun service: stopped at " << socket.string()
            << (answer ? "" : " (it did not confirm)") << "\n";
  return 0;
}

// Joins the service already at `fd` as one more holder: "" when it took it,
// else why not (kAttachRefusedStopping: it is ending); nullopt when it did
// not answer (a service of an older sandrun).
std::optional<std::string> Attach(int fd, int holder) {
  WriteServiceFrame(fd, ServiceFrame::kAttach, std::to_string(holder));
  auto answer = ReadServiceFrame(fd);
  if (!answer || answer->first != ServiceFrame::kAttached) return std::nullopt;
  return answer->second;
}

}  // namespace

int ServiceCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options(
      "sandrun service",
      "Keep warm sandboxes for the `sandrun exec --service SOCKET` processes of one ctest\n"
      "invocation or CI job (docs/ctest.md).\n"
      "usage: sandrun service start|stop|run --socket PATH [options]");
  AddConfigOptions(options, context);
  options.add_options("Service")
      ("socket", "The unix socket to serve at", cxxopts::value<std::string>())
      ("idle-timeout", "End after this many seconds without a task (0: never)",
       cxxopts::value<int>()->default_value("600"))
      ("parent-pid", "start: serve until this process is gone or stops the service; stop: the "
                     "process that leaves (default for both: the caller's parent, as ctest; 0: none)",
       cxxopts::value<int>())
      ("optional", "start: when the service cannot start, say why and exit 0 (the execs then run "
                   "their tasks themselves)")
      ("leave", "stop: only leave (the caller's parent stops holding the service); end it only if "
                "that was the last holder")
      ("action", "start, stop or run", cxxopts::value<std::string>());
  options.parse_positional({"action"});
  options.positional_help("start|stop|run");
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  if (!parsed->count("action")) throw UsageError{"say what to do: sandrun service start|stop|run --socket PATH"};
  const std::string action = (*parsed)["action"].as<std::string>();
  if (!parsed->count("socket")) throw UsageError{"--socket PATH is required"};
  const std::filesystem::path socket = std::filesystem::absolute((*parsed)["socket"].as<std::string>());
  if (action != "start" && action != "run" && action != "stop") {
    throw UsageError{"unknown action '" + action + "': use start, stop or run"};
  }
  const int parent_pid = parsed->count("parent-pid")
                             ? (*parsed)["parent-pid"].as<int>()
                             : (action == "run" ? 0 : static_cast<int>(::getppid()));
  if (action == "stop") return Stop(socket, parent_pid, parsed->count("leave") > 0);
  Config config = LoadConfigOrThrow(*parsed, context);
  const std::chrono::seconds idle((*parsed)["idle-timeout"].as<int>());
  if (idle.count() < 0) throw UsageError{"--idle-timeout must be 0 or more"};
  const bool optional = parsed->count("optional") > 0;

  // A service there already: join it. One that is ending is waited for (it
  // removes its socket before it lets its sandboxes go), and a new one started.
  for (const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);;) {
    int fd = ConnectServiceSocket(socket);
    if (fd < 0) break;
    std::optional<std::string> refused =
        parent_pid > 0 ? Attach(fd, parent_pid) : std::optional<std::string>();
    ::close(fd);
    if (refused && *refused == kAttachRefusedStopping &&
        std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    std::cerr << "sandrun service: already running at " << socket.string()
              << (refused && refused->empty()
                      ? "; it now serves process " + std::to_string(parent_pid) +
                            " too, until that stops it or is gone"
                      : "")
              << "\n";
    return 0;
  }
  Result<int> listening = Listen(socket);
  if (!listening.ok()) {
    if (optional) {
      PrintError("service not started (" + listening.status().message() +
                 "); each test runs its own sandbox");
      return 0;
    }
    return RunNotStarted(listening.status());
  }
  if (action == "run") {
    InstallInterruptHandlers();
    return RunService(context, config, *listening, -1, idle, parent_pid, socket);
  }

  // start: the service runs in a grandchild, in a session of its own, with
  // its output in PATH.log (never ctest's pipes, which ctest waits on).
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) throw UsageError{std::string("pipe: ") + std::strerror(errno)};
  std::cout.flush();
  std::cerr.flush();
  pid_t child = ::fork();
  if (child < 0) throw UsageError{std::string("fork: ") + std::strerror(errno)};
  if (child == 0) {
    ::close(ready[0]);
    ::setsid();
    if (::fork() != 0) ::_exit(0);
    const std::string log = socket.string() + ".log";
    int null = ::open("/dev/null", O_RDONLY);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ::dup2(null, 0);
    ::dup2(out >= 0 ? out : null, 1);
    ::dup2(out >= 0 ? out : null, 2);
    if (null > 2) ::close(null);
    if (out > 2) ::close(out);
    // Not ctest's Ctrl-C (the orphan check ends us once ctest is gone), but
    // SIGTERM ends the service as `stop` does.
    ::signal(SIGINT, SIG_IGN);
    ::signal(SIGHUP, SIG_IGN);
    InstallInterruptHandlers(InterruptHandling{true, kExitInterrupted});
    ::_exit(RunService(context, config, *listening, ready[1], idle, parent_pid, socket));
  }
  ::close(ready[1]);
  ::close(*listening);
  int status = 0;
  ::waitpid(child, &status, 0);
  std::string answer;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(ready[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(ready[0]);
  if (answer.rfind("ok\n", 0) == 0) {
    std::cerr << "sandrun service: serving at " << socket.string() << " (" << answer.substr(3)
              << "; log " << socket.string() << ".log)\n";
    return 0;
  }
  const std::string why = answer.empty() ? "it ended before it could serve (see " +
                                               socket.string() + ".log)"
                                         : answer;
  if (optional) {
    PrintError("service not started (" + why + "); each test runs its own sandbox");
    return 0;
  }
  PrintError("service not started: " + why);
  return kExitSandrunError;
}

}  // namespace sandrun::cli
