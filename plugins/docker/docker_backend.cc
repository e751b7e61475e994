// The Docker backend and its sandboxes. See docker_backend.h for the contract
// and docs/docker.md for the user's view.
//
// Timeouts: Docker does not forward signals to exec'd processes and has no
// "kill exec" endpoint, so every command runs under a tiny sh supervisor
// (kSupervisor) that starts it with setsid, making it the leader of a new
// process group, and writes that group's id to a file. A timeout is then a
// second exec that signals the whole group (TERM, grace, KILL). Images without
// /bin/sh run the command directly, and a note says tree-kill is unavailable.
//
// OOM: State.OOMKilled only describes the container's main process. The
// supervisor snapshots the cgroup's oom_kill counter before the command runs;
// when the command dies of SIGKILL we read the counter again and compare.
#include "docker_backend.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "docker_archive_store.h"
#include "docker_client.h"
#include "docker_images.h"
#include "docker_tar.h"
#include "docker_volume_helper.h"
#include "sandrun/archive.h"
#include "sandrun/output_collector.h"
#include "sandrun/util.h"

namespace sandrun::docker {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// $1 = exec token, $2 = working directory (created if missing), then argv.
// Writes /tmp/.sandrun-exec-<token>.pid (the
// command's process group) and .oom (the cgroup oom_kill counter before).
constexpr char kSupervisor[] =
    "t=/tmp/.sandrun-exec-$1; d=$2; shift 2\n"
    "[ -d /tmp ] || mkdir -p /tmp 2>/dev/null\n"
    "[ -d \"$d\" ] || mkdir -p \"$d\" 2>/dev/null\n"
    "cd \"$d\" || exit 126\n"
    "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do\n"
    "  if [ -r \"$f\" ]; then\n"
    "    while read k v; do [ \"$k\" = oom_kill ] && echo \"$v\" > \"$t.oom\"; done < \"$f\"\n"
    "    break\n"
    "  fi\n"
    "done\n"
    "exec 3<&0\n"
    "if command -v setsid >/dev/null 2>&1; then setsid \"$@\" <&3 3<&- &\n"
    "else \"$@\" <&3 3<&- &\n"
    "fi\n"
    "p=$!; echo $p > \"$t.pid\"\n"
    "exec 3<&-\n"
    // The redirection keeps sh's own "Terminated" notice out of the output.
    "wait $p 2>/dev/null\n"
    "rc=$?\n"
    "rm -f \"$t.pid\"\n"
    "exit $rc\n";

// $1 = token, $2 = grace in tenths of a second. Kills the process group the
// supervisor recorded (or the process alone when setsid was missing), then
// every other process of the container but its init, the keep-alive `sleep`
// (the lowest pid after 1: the init starts it before any exec) and this
// script: a child that called setsid left the group, and a sandbox runs one
// command at a time, so whatever else runs there is the timed-out command's.
// (`kill -1` would take the keep-alive too, and the container with it.)
constexpr char kKillTree[] =
    "f=/tmp/.sandrun-exec-$1.pid; i=0\n"
    "while [ ! -r \"$f\" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i+1)); done\n"
    "[ -r \"$f\" ] || exit 0\n"
    "read p < \"$f\"\n"
    "kill -TERM -$p 2>/dev/null || kill -TERM $p 2>/dev/null\n"
    "i=0\n"
    "while [ $i -lt $2 ] && { kill -0 -$p 2>/dev/null || kill -0 $p 2>/dev/null; }; do\n"
    "  sleep 0.1; i=$((i+1))\n"
    "done\n"
    "kill -KILL -$p 2>/dev/null; kill -KILL $p 2>/dev/null\n"
    "m=0; for d in /proc/[0-9]*; do n=${d#/proc/}\n"
    "  [ \"$n\" -gt 1 ] && { [ $m -eq 0 ] || [ \"$n\" -lt $m ]; } && m=$n; done\n"
    "for d in /proc/[0-9]*; do n=${d#/proc/}\n"
    "  [ \"$n\" -gt 1 ] && [ \"$n\" != \"$m\" ] && [ \"$n\" != $$ ] && kill -KILL \"$n\" 2>/dev/null; done\n"
    "exit 0\n";

// $1 = token. Prints the snapshot the supervisor took of the oom_kill
// counter, then the counter now; a script to go on from (kOomCheck, or the
// timeout's kill, which must see the counter before it kills anything).
constexpr char kOomCounters[] =
    "t=/tmp/.sandrun-exec-$1; cat \"$t.oom\" 2>/dev/null; rm -f \"$t.oom\"\n"
    "for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do\n"
    "  if [ -r \"$f\" ]; then\n"
    "    while read k v; do [ \"$k\" = oom_kill ] && echo \"$v\"; done < \"$f\"\n"
    "    break\n"
    "  fi\n"
    "done\n";

// Reads the oom_kill counter now and the snapshot the supervisor took.
const std::string kOomCheck = std::string(kOomCounters) + "exit 0\n";

// `path` has passed CheckSandboxRelativePath (or is empty: the workdir).
std::string ContainerPath(const std::string& workdir, const std::string& path) {
  if (path.empty() || path == ".") return workdir;
  return (fs::path(workdir) / path).lexically_normal().generic_string();
}

std::string FiltersQuery(const std::vector<std::string>& labels) {
  json filters = {{"label", labels}};
  return "filters=" + UrlEncode(filters.dump());
}

// Turns an HTTP error into a Status: 404 kNotFound, 5xx kUnavailable, else the
// given code.
Status HttpError(const HttpResponse& res, std::string_view what,
                 StatusCode otherwise = StatusCode::kFailedPrecondition) {
  std::string message = "docker: " + std::string(what) + ": " + DockerErrorMessage(res);
  if (res.status == 404) return NotFoundError(message);
  if (res.status >= 500) return UnavailableError(message);
  return Status(otherwise, message);
}

// Splits the multiplexed exec stream: 8-byte headers [stream, 0, 0, 0, size
// big-endian] followed by `size` bytes of that stream.
class Demuxer {
 public:
  Demuxer(OutputCollector* out, OutputCollector* err) : out_(out), err_(err) {}
  void Feed(const char* data, std::size_t size) {
    buffer_.append(data, size);
    std::size_t pos = 0;
    for (;;) {
      if (remaining_ > 0) {
        std::size_t take = std::min(remaining_, buffer_.size() - pos);
        if (take == 0) break;
        (stream_ >= 2 ? err_ : out_)->Append(std::string_view(buffer_).substr(pos, take));
        pos += take;
        remaining_ -= take;
        continue;
      }
      if (buffer_.size() - pos < 8) break;
      const auto* h = reinterpret_cast<const unsigned char*>(buffer_.data() + pos);
      stream_ = h[0];
      remaining_ = (std::size_t{h[4]} << 24) | (std::size_t{h[5]} << 16) |
                   (std::size_t{h[6]} << 8) | std::size_t{h[7]};
      pos += 8;
    }
    buffer_.erase(0, pos);
  }

 private:
  OutputCollector* out_;
  OutputCollector* err_;
  std::string buffer_;
  int stream_ = 1;
  std::size_t remaining_ = 0;
};

class DockerSandbox;

/// Container starts and removals are where the engine spends its CPU (runc,
/// mounts, cgroups). However many sandboxes run at once, at most `limit()`
/// of these go to the engine at the same time: 32 concurrent starts on a
/// 2-core engine were seen to hang runc and wedge dockerd for good.
class EngineGate {
 public:
  explicit EngineGate(std::function<int()> limit) : limit_fn_(std::move(limit)) {}

  /// Holds one of the gate's places until destroyed.
  class Pass {
   public:
    explicit Pass(EngineGate& gate) : gate_(gate) {
      std::unique_lock lock(gate_.mu_);
      if (gate_.limit_ == 0) gate_.limit_ = std::max(1, gate_.limit_fn_());
      gate_.cv_.wait(lock, [&] { return gate_.inside_ < gate_.limit_; });
      ++gate_.inside_;
    }
    ~Pass() {
      std::lock_guard lock(gate_.mu_);
      --gate_.inside_;
      gate_.cv_.notify_one();
    }
    Pass(const Pass&) = delete;
    Pass& operator=(const Pass&) = delete;

   private:
    EngineGate& gate_;
  };

 private:
  std::function<int()> limit_fn_;
  std::mutex mu_;
  std::condition_variable cv_;
  int limit_ = 0;
  int inside_ = 0;
};

class DockerBackend : public Backend {
 public:
  explicit DockerBackend(DockerOptions options)
      : options_(std::move(options)),
        client_(std::make_shared<DockerClient>(ParseDockerHost(options_.host).ok()
                                                   ? ParseDockerHost(options_.host).value()
                                                   : DockerHost{options_.host, "", "", ""})),
        exe_cache_(std::make_shared<ExeCache>(client_, options_.exe_cache_volume)) {}

  std::string_view Name() const override { return "docker"; }

  Capabilities GetCapabilities() const override {
    Capabilities caps;
    caps.isolates_network = true;
    caps.limits_memory = true;
    caps.limits_cpu = true;
    caps.supports_images = true;
    caps.reports_oom = true;
    caps.max_parallel = options_.max_parallel > 0 ? options_.max_parallel : EngineParallelism();
    return caps;
  }

  Status CheckAvailable() override {
    auto parsed = ParseDockerHost(options_.host);
    if (!parsed.ok()) return FailedPreconditionError(parsed.status().message());
    auto res = client_->Request("GET", "/_ping", {}, {}, std::chrono::seconds(5));
    if (!res.ok()) {
      std::string why = FirstLine(res.status().message());
      if (why.rfind("docker: ", 0) == 0) why = why.substr(8);
      return UnavailableError("docker: cannot reach the engine at DOCKER_HOST=" + options_.host +
                              ": " + why);
    }
    if (res->status != 200) {
      return UnavailableError("docker: engine at DOCKER_HOST=" + options_.host +
                              " answered /_ping with " + std::to_string(res->status));
    }
    Status st = EnsureVersion();
    if (!st.ok()) return Status(st.code(), FirstLine(st.message()), st.retryable());
    return OkStatus();
  }

  Status ValidateSpec(const SandboxSpec& spec) override;
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  Result<std::vector<Leftover>> ListLeftovers() override;
  Status RemoveLeftover(const std::string& id) override;
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override;

  const DockerOptions& options() const { return options_; }
  DockerClient& client() { return *client_; }

 private:
  static std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

  // The engine's CPUs (GET /info NCPU), asked once; 2 when it does not say
  // (and then *known is false).
  int EngineCpus(bool* known = nullptr) const {
    std::call_once(cpus_once_, [this] {
      cpus_ = 2;
      auto res = client_->Request("GET", "/info", {}, {}, std::chrono::seconds(5));
      if (!res.ok() || res->status != 200) return;
      try {
        int cpus = json::parse(res->body).value("NCPU", 0);
        if (cpus > 0) {
          cpus_ = cpus;
          cpus_known_ = true;
        }
      } catch (const std::exception&) {
      }
    });
    if (known != nullptr) *known = cpus_known_;
    return cpus_;
  }

  // Each container start costs the engine a few hundred ms of CPU: more
  // sandboxes at once than it has cores to start them only queues them.
  // 4 per engine CPU, between 4 and 64.
  int EngineParallelism() const { return std::clamp(4 * EngineCpus(), 4, 64); }

  Status EnsureVersion() {
    std::lock_guard<std::mutex> lock(mu_);
    if (version_ok_) return OkStatus();
    Status st = client_->NegotiateVersion();
    if (st.ok()) version_ok_ = true;
    return st;
  }

  Status EnsureVolume() {
    std::lock_guard<std::mutex> lock(mu_);
    if (volume_ok_) return OkStatus();
    Status st = docker::EnsureVolume(*client_, options_.volume);
    if (st.ok()) st = docker::EnsureVolume(*client_, options_.exe_cache_volume);
    if (st.ok()) volume_ok_ = true;
    return st;
  }

  Result<std::string> ResolveImage(const SandboxSpec& spec);
  Status PullImage(const std::string& image);
  // The image is on the engine, or pulled now. kInvalidArgument when it
  // exists neither here nor where the engine pulls from.
  Status EnsureImage(const std::string& image);

  DockerOptions options_;
  std::shared_ptr<DockerClient> client_;
  std::mutex mu_;
  bool version_ok_ = false;
  bool volume_ok_ = false;  // Both the archive and the exe cache volume exist.
  mutable std::once_flag cpus_once_;
  mutable int cpus_ = 0;
  mutable bool cpus_known_ = false;
  std::set<std::string> images_ok_;  // Present on the engine. Guarded by mu_.
  // Starts and removals at once: one per engine CPU, at least 2.
  std::shared_ptr<EngineGate> gate_ =
      std::make_shared<EngineGate>([this] { return std::max(2, EngineCpus()); });
  std::shared_ptr<ExeCache> exe_cache_;
};

/// What an Exec has gathered so far. Kept outside the call sequence so that a
/// command that is cancelled, or whose sandbox lifetime ends, while a call
/// fails still reports the output it produced.
struct ExecState {
  ExecState(const ExecRequest& request, const std::string& sandbox_id)
      : started(Clock::now()),
        out(StreamKind::kStdout, request.output_cap_bytes, SpillPath(request, "stdout.log"),
            request.on_output),
        err(StreamKind::kStderr, request.output_cap_bytes, SpillPath(request, "stderr.log"),
            request.on_output) {
    result.sandbox_id = sandbox_id;
  }

  ExecResult Finish(Outcome outcome) {
    result.outcome = outcome;
    result.stdout_stream = out.Finish();
    result.stderr_stream = err.Finish();
    result.durations.exec_ms = MillisBetween(started, Clock::now());
    return std::move(result);
  }

  static std::string SpillPath(const ExecRequest& request, const char* name) {
    if (request.spill_dir.empty()) return {};
    std::error_code ec;
    fs::create_directories(request.spill_dir, ec);
    return (fs::path(request.spill_dir) / name).string();
  }

  const Clock::time_point started;
  ExecResult result;
  OutputCollector out;
  OutputCollector err;
};

// The supervisor's oom_kill snapshot and the counter now, one per line: true
// when the counter rose, i.e. some process of the command was OOM-killed.
bool OomCounterRoseIn(const std::string& text) {
  std::vector<long long> values;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty()) values.push_back(std::atoll(line.c_str()));
    start = end + 1;
  }
  return values.size() == 2 && values[1] > values[0];
}

class DockerSandbox : public Sandbox {
 public:
  DockerSandbox(std::shared_ptr<DockerClient> client, std::shared_ptr<ExeCache> exe_cache,
                std::shared_ptr<EngineGate> gate, std::string id, std::string workdir,
                int kill_grace_ms, std::chrono::seconds lifetime, Clock::time_point expires)
      : client_(std::move(client)),
        exe_cache_(std::move(exe_cache)),
        gate_(std::move(gate)),
        id_(std::move(id)),
        workdir_(std::move(workdir)),
        kill_grace_ms_(kill_grace_ms),
        lifetime_(lifetime),
        expires_(expires) {}
  ~DockerSandbox() override { Terminate().IgnoreError(); }

  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload& upload) override;
  Result<ExecResult> Exec(const ExecRequest& request) override;
  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const fs::path& host_dir) override;
  Status Terminate() override;

 private:
  struct RawExec {
    int exit_code = -1;
    bool running = false;
  };

  // The calls of one command, after its preparation (shell check).
  Result<ExecResult> RunCommand(const ExecRequest& request, ExecState& state);
  // After Terminate(): kCancelled with the output so far.
  ExecResult Cancelled(ExecState& state);
  // The lifetime limit ended the command (or left it no time to start).
  ExecResult LifetimeEnded(ExecState& state);
  // The container's own `sleep LIFETIME` ends about now or has ended. Our
  // clock starts before the container's, so we act on it first.
  bool LifetimeOver() const { return Clock::now() + std::chrono::seconds(1) >= expires_; }
  std::string LifetimeNote() const {
    return "the sandbox lifetime (" + std::to_string(lifetime_.count()) +
           " s) ended the command";
  }

  // Creates an exec; returns its id.
  Result<std::string> CreateExec(const std::vector<std::string>& cmd,
                                 const std::map<std::string, std::string>& env,
                                 const std::string& workdir, bool attach_stdin,
                                 Clock::time_point deadline);
  Result<RawExec> InspectExec(const std::string& exec_id, Clock::time_point deadline);
  // Runs a short helper command and returns its exit code and stdout; every
  // call it makes ends by `deadline`.
  Result<std::pair<int, std::string>> RunQuiet(const std::vector<std::string>& cmd,
                                               Clock::time_point deadline);
  Result<bool> HasShell();
  // After an abnormal end: kUnavailable if the container is gone or stopped.
  Status ContainerAlive(bool* oom_killed);
  Result<bool> OomCounterRose(const std::string& token);

  // Time left until `deadline`, for a request's timeout.
  static std::chrono::milliseconds Until(Clock::time_point deadline) {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
  }
  // The default deadline of one call.
  static Clock::time_point Soon() { return Clock::now() + std::chrono::seconds(120); }

  std::shared_ptr<DockerClient> client_;
  std::shared_ptr<ExeCache> exe_cache_;
  std::shared_ptr<EngineGate> gate_;
  std::string id_;
  std::string workdir_;
  int kill_grace_ms_;
  std::chrono::seconds lifetime_;
  Clock::time_point expires_;
  std::atomic<bool> terminated_{false};
  // Terminate() found the engine silent: the container is left to its
  // lifetime and `sandrun cleanup`.
  std::atomic<bool> engine_silent_{false};
  // Every request of this sandbox: Terminate() abandons what is in flight.
  CallCanceller calls_;
  std::mutex mu_;
  HijackedStream* active_stream_ = nullptr;  // Guarded by mu_.
  std::optional<bool> has_shell_;
  bool removed_ = false;  // Guarded by mu_.
};

Result<std::string> DockerSandbox::CreateExec(const std::vector<std::string>& cmd,
                                              const std::map<std::string, std::string>& env,
                                              const std::string& workdir, bool attach_stdin,
                                              Clock::time_point deadline) {
  json body = {{"AttachStdin", attach_stdin}, {"AttachStdout", true}, {"AttachStderr", true},
               {"Tty", false},                {"Cmd", cmd}};
  if (!env.empty()) {
    json e = json::array();
    for (const auto& [k, v] : env) e.push_back(k + "=" + v);
    body["Env"] = e;
  }
  if (!workdir.empty()) body["WorkingDir"] = workdir;
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           client_->Request("POST", "/containers/" + id_ + "/exec", body.dump(),
                                            "application/json", Until(deadline), &calls_));
  if (res.status == 404 || res.status == 409) {
    // The container vanished or stopped underneath us: infrastructure, retryable.
    return UnavailableError("docker: container " + id_.substr(0, 12) +
                            " is gone or not running (removed, or its lifetime ended): " +
                            DockerErrorMessage(res));
  }
  if (res.status != 201) return HttpError(res, "exec create", StatusCode::kUnavailable);
  try {
    return json::parse(res.body).at("Id").get<std::string>();
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad exec create answer: ") + e.what());
  }
}

Result<DockerSandbox::RawExec> DockerSandbox::InspectExec(const std::string& exec_id,
                                                          Clock::time_point deadline) {
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           client_->Request("GET", "/exec/" + exec_id + "/json", {},
                                            "application/json", Until(deadline), &calls_));
  if (res.status == 404) {
    return UnavailableError("docker: container " + id_.substr(0, 12) +
                            " disappeared during the command");
  }
  if (res.status != 200) return HttpError(res, "exec inspect", StatusCode::kUnavailable);
  RawExec out;
  try {
    auto j = json::parse(res.body);
    out.running = j.value("Running", false);
    if (j.contains("ExitCode") && j["ExitCode"].is_number()) out.exit_code = j["ExitCode"].get<int>();
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad exec inspect answer: ") + e.what());
  }
  return out;
}

Result<std::pair<int, std::string>> DockerSandbox::RunQuiet(const std::vector<std::string>& cmd,
                                                            Clock::time_point deadline) {
  SANDRUN_ASSIGN_OR_RETURN(std::string exec_id, CreateExec(cmd, {}, "", false, deadline));
  SANDRUN_ASSIGN_OR_RETURN(auto stream,
                           client_->Hijack("/exec/" + exec_id + "/start",
                                           R"({"Detach":false,"Tty":false})", Until(deadline),
                                           &calls_));
  OutputCollector out(StreamKind::kStdout, 1 << 16, "", nullptr);
  OutputCollector err(StreamKind::kStderr, 1 << 16, "", nullptr);
  Demuxer demux(&out, &err);
  char buffer[16384];
  for (;;) {
    auto n = stream->Read(buffer, sizeof buffer, deadline);
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    demux.Feed(buffer, *n);
  }
  SANDRUN_ASSIGN_OR_RETURN(RawExec raw, InspectExec(exec_id, deadline));
  return std::make_pair(raw.exit_code, out.Finish().text);
}

Result<bool> DockerSandbox::HasShell() {
  if (has_shell_) return *has_shell_;
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("HEAD", "/containers/" + id_ + "/archive?path=" + UrlEncode("/bin/sh"),
                       {}, "application/json", std::chrono::seconds(120), &calls_));
  if (res.status >= 500) return HttpError(res, "stat /bin/sh", StatusCode::kUnavailable);
  has_shell_ = res.status == 200;
  return *has_shell_;
}

Status DockerSandbox::ContainerAlive(bool* oom_killed) {
  *oom_killed = false;
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           client_->Request("GET", "/containers/" + id_ + "/json", {},
                                            "application/json", std::chrono::seconds(120),
                                            &calls_));
  if (res.status == 404) {
    return UnavailableError("docker: container " + id_.substr(0, 12) + " was removed");
  }
  if (res.status != 200) return HttpError(res, "container inspect", StatusCode::kUnavailable);
  try {
    auto state = json::parse(res.body).at("State");
    if (!state.value("Running", false)) {
      *oom_killed = state.value("OOMKilled", false);
      if (*oom_killed) return OkStatus();
      return UnavailableError("docker: container " + id_.substr(0, 12) + " stopped (" +
                              state.value("Status", std::string("?")) + ", exit " +
                              std::to_string(state.value("ExitCode", 0)) + ")");
    }
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad container inspect answer: ") + e.what());
  }
  return OkStatus();
}

Result<bool> DockerSandbox::OomCounterRose(const std::string& token) {
  SANDRUN_ASSIGN_OR_RETURN(
      auto out, RunQuiet({"/bin/sh", "-c", kOomCheck, "sh", token}, Clock::now() + 60s));
  if (out.first != 0) {
    return UnavailableError("docker: OOM check in " + id_.substr(0, 12) + " exited " +
                            std::to_string(out.first));
  }
  return OomCounterRoseIn(out.second);
}

ExecResult DockerSandbox::Cancelled(ExecState& state) {
  if (engine_silent_) {
    state.result.notes.push_back(client_->StoppedAnsweringMessage() + "; container " +
                                 id_.substr(0, 12) +
                                 " is left to its lifetime and `sandrun cleanup`");
  }
  return state.Finish(Outcome::kCancelled);
}

ExecResult DockerSandbox::LifetimeEnded(ExecState& state) {
  state.result.exit_code = kExitTimedOut;
  state.result.signal = SIGKILL;
  state.result.notes.push_back(LifetimeNote());
  return state.Finish(Outcome::kTimedOut);
}

Result<ExecResult> DockerSandbox::Exec(const ExecRequest& request) {
  if (request.argv.empty()) return InvalidArgumentError("docker: empty argv");
  ExecState state(request, id_);
  if (terminated_) return Cancelled(state);
  if (LifetimeOver()) return LifetimeEnded(state);
  Result<ExecResult> done = RunCommand(request, state);
  if (done.ok()) return done;
  // A call that failed because we abandoned it, or because the container's
  // lifetime ended under it, is not an infrastructure failure.
  if (terminated_) return Cancelled(state);
  if (LifetimeOver()) return LifetimeEnded(state);
  return done.status();
}

Result<ExecResult> DockerSandbox::RunCommand(const ExecRequest& request, ExecState& state) {
  ExecResult& result = state.result;
  auto finish = [&](Outcome outcome) { return state.Finish(outcome); };

  SANDRUN_ASSIGN_OR_RETURN(bool has_shell, HasShell());
  const std::string token = RandomHex(16);
  if (!request.cwd.empty()) SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("cwd", request.cwd));
  const std::string cwd = ContainerPath(workdir_, request.cwd);
  std::vector<std::string> cmd;
  if (has_shell) {
    cmd = {"/bin/sh", "-c", kSupervisor, "sandrun-exec", token, cwd};
  } else {
    result.notes.push_back("image has no /bin/sh: a timed-out command's process tree cannot be killed");
  }
  cmd.insert(cmd.end(), request.argv.begin(), request.argv.end());
  // With the supervisor, the shell changes directory (creating it if needed);
  // Docker itself refuses an exec whose WorkingDir does not exist.
  SANDRUN_ASSIGN_OR_RETURN(std::string exec_id,
                           CreateExec(cmd, request.env, has_shell ? workdir_ : cwd,
                                      request.stdin_data.has_value(), Soon()));
  SANDRUN_ASSIGN_OR_RETURN(std::unique_ptr<HijackedStream> stream,
                           client_->Hijack("/exec/" + exec_id + "/start",
                                           R"({"Detach":false,"Tty":false})",
                                           std::chrono::seconds(60), &calls_));
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_stream_ = stream.get();
  }
  // Terminate() may have run between the check above and the registration.
  if (terminated_) stream->Abort();
  struct Unregister {
    DockerSandbox* self;
    ~Unregister() {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->active_stream_ = nullptr;
    }
  } unregister{this};

  // stdin goes from its own thread so a command that writes before it reads
  // cannot deadlock against us.
  std::thread stdin_writer;
  if (request.stdin_data) {
    stdin_writer = std::thread([&stream, &request] {
      if (stream->WriteAll(*request.stdin_data).ok()) stream->CloseWrite();
    });
  }
  struct Joiner {
    std::thread& t;
    ~Joiner() {
      if (t.joinable()) t.join();
    }
  } joiner{stdin_writer};

  Demuxer demux(&state.out, &state.err);
  bool timed_out = false;
  bool by_lifetime = false;  // The sandbox lifetime, not the timeout, ran out.
  bool oom_first = false;    // A process was OOM-killed before the timeout.
  bool engine_silent = false;
  Status stream_error;
  // The sandbox lifetime bounds every command: the container's own end
  // would otherwise look like a broken engine.
  const auto timeout_at = request.timeout.count() > 0 ? state.started + request.timeout
                                                      : Clock::time_point::max();
  auto deadline = std::min(timeout_at, expires_);
  char buffer[65536];
  for (;;) {
    auto n = stream->Read(buffer, sizeof buffer, deadline);
    if (n.ok()) {
      if (*n == 0) break;
      demux.Feed(buffer, *n);
      continue;
    }
    if (n.status().code() == StatusCode::kDeadlineExceeded && !timed_out) {
      timed_out = true;
      by_lifetime = expires_ < timeout_at;
      if (!has_shell) {
        stream->Abort();  // Nothing can be killed; stop waiting for it.
        break;
      }
      // One exec reads the OOM counter, then kills the tree: what the
      // command met first decides its outcome. Bounded, because an engine
      // that stopped answering must not hold the command past its deadline.
      std::string tenths = std::to_string(std::max(1, kill_grace_ms_ / 100));
      auto killed =
          RunQuiet({"/bin/sh", "-c", std::string(kOomCounters) + kKillTree, "sh", token, tenths},
                   Clock::now() + std::chrono::milliseconds(kill_grace_ms_) + 10s);
      if (killed.ok()) {
        oom_first = OomCounterRoseIn(killed->second);
      } else if (!terminated_ && killed.status().code() == StatusCode::kDeadlineExceeded &&
                 !client_->Responsive(2s)) {
        engine_silent = true;
        stream->Abort();
        break;
      } else if (!terminated_) {
        result.notes.push_back("tree kill failed: " + killed.status().message());
      }
      // Let what the dying tree still writes arrive, but not forever.
      deadline = Clock::now() + 5s;
      continue;
    }
    if (n.status().code() == StatusCode::kDeadlineExceeded) {
      stream->Abort();
      break;
    }
    stream_error = n.status();
    break;
  }
  if (stdin_writer.joinable()) {
    stream->Abort();  // Unblocks a writer stuck on a command that never read stdin.
    stdin_writer.join();
  }
  if (terminated_) return Cancelled(state);
  if (timed_out && oom_first) {
    result.exit_code = 128 + SIGKILL;
    result.signal = SIGKILL;
    result.notes.push_back("a process of the command ran out of memory before the " +
                           std::string(by_lifetime ? "sandbox lifetime ended" : "timeout"));
    return finish(Outcome::kOomKilled);
  }
  if (timed_out) {
    result.exit_code = kExitTimedOut;
    result.ended_by = std::string(by_lifetime ? kEndedByLifetime : kEndedByTimeout);
    if (by_lifetime) result.notes.push_back(LifetimeNote());
    if (engine_silent) {
      result.signal = 0;
      result.notes.push_back(client_->StoppedAnsweringMessage() +
                             " when the command was to be stopped; it may run until the "
                             "container's lifetime ends or `sandrun cleanup` removes it");
      return finish(Outcome::kTimedOut);
    }
    // The supervisor reports the signal that ended the command as 128+N.
    result.signal = has_shell ? SIGKILL : 0;  // Without sh no signal was sent.
    if (has_shell) {
      auto raw = InspectExec(exec_id, Clock::now() + 10s);
      if (raw.ok() && !raw->running && raw->exit_code > 128 && raw->exit_code <= 128 + 31) {
        result.signal = raw->exit_code - 128;
      }
    }
    if (!has_shell) result.notes.push_back("the timed-out command may still run in the container");
    return finish(Outcome::kTimedOut);
  }
  if (!stream_error.ok()) {
    bool oom = false;
    Status alive = ContainerAlive(&oom);
    if (!alive.ok()) return alive;
    if (oom) {
      result.exit_code = 128 + SIGKILL;
      result.signal = SIGKILL;
      return finish(Outcome::kOomKilled);
    }
    return stream_error;
  }
  SANDRUN_ASSIGN_OR_RETURN(RawExec raw, InspectExec(exec_id, Soon()));
  for (int i = 0; raw.running && i < 50; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    SANDRUN_ASSIGN_OR_RETURN(raw, InspectExec(exec_id, Soon()));
  }
  if (terminated_) return Cancelled(state);
  if (raw.exit_code == 128 + SIGKILL || raw.exit_code < 0) {
    bool oom = false;
    SANDRUN_RETURN_IF_ERROR(ContainerAlive(&oom));
    if (!oom && has_shell && raw.exit_code == 128 + SIGKILL) {
      auto rose = OomCounterRose(token);
      if (!rose.ok()) {
        // Usually the container is being killed or removed from outside; its
        // state may take a moment to say so, and that is the better error.
        for (int i = 0; i < 10; ++i) {
          SANDRUN_RETURN_IF_ERROR(ContainerAlive(&oom));
          if (oom) break;
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (!oom) return rose.status();
      }
      oom = *rose;
      // A SIGKILL can also come from the container being removed: by now its
      // state says so.
      if (!oom) SANDRUN_RETURN_IF_ERROR(ContainerAlive(&oom));
    }
    if (oom) {
      result.exit_code = 128 + SIGKILL;
      result.signal = SIGKILL;
      return finish(Outcome::kOomKilled);
    }
  }
  if (raw.exit_code < 0) {
    return UnavailableError("docker: exec in " + id_.substr(0, 12) + " ended without an exit code");
  }
  result.exit_code = raw.exit_code;
  // sh reports death by signal N as 128+N; so does Docker without a shell.
  if (raw.exit_code > 128 && raw.exit_code <= 128 + 31) {
    result.signal = raw.exit_code - 128;
    return finish(Outcome::kSignaled);
  }
  return finish(Outcome::kExited);
}

Status DockerSandbox::Put(const FileUpload& upload) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(upload.source, ec))) {
    return NotFoundError("upload source not found: " + upload.source);
  }
  std::string dest = upload.destination.empty()
                         ? fs::path(upload.source).filename().string()
                         : upload.destination;
  SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("upload destination", dest));
  std::string target = ContainerPath(workdir_, dest);
  std::string entry = target.substr(1);  // Relative to "/": Docker creates the parents.
  if (entry.empty()) return InvalidArgumentError("docker: cannot upload onto /");
  std::string tar;
  if (upload.portable) {
    SANDRUN_ASSIGN_OR_RETURN(tar, PortableLauncherTar(*exe_cache_, upload.source, entry));
  } else {
    SANDRUN_ASSIGN_OR_RETURN(tar, TarOfUpload(upload.source, entry));
  }
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("PUT", "/containers/" + id_ + "/archive?path=%2F", std::move(tar),
                       "application/x-tar", std::chrono::seconds(120), &calls_));
  if (res.status == 404) {
    return UnavailableError("docker: container " + id_.substr(0, 12) + " is gone");
  }
  if (res.status != 200) return HttpError(res, "upload of " + upload.source);
  return OkStatus();
}

Result<std::vector<std::string>> DockerSandbox::Get(const std::string& sandbox_path,
                                                    const fs::path& host_dir) {
  SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("download path", sandbox_path));
  std::string path = ContainerPath(workdir_, sandbox_path);
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("GET", "/containers/" + id_ + "/archive?path=" + UrlEncode(path), {},
                       "application/json", std::chrono::seconds(120), &calls_));
  if (res.status == 404) {
    std::string message = DockerErrorMessage(res);
    if (message.find("No such container") != std::string::npos) {
      return UnavailableError("docker: container " + id_.substr(0, 12) + " is gone");
    }
    return NotFoundError("docker: " + path + " not found in the sandbox");
  }
  if (res.status != 200) return HttpError(res, "download of " + path);
  return ExtractTarSafely(res.body, host_dir);
}

Status DockerSandbox::Terminate() {
  terminated_ = true;
  bool removing;
  {
    std::lock_guard<std::mutex> lock(mu_);
    removing = !removed_;
  }
  // Before the calls in flight are abandoned (and Exec returns): a frozen
  // engine is found out here, so the requests that follow (the record, the
  // next sandbox) fail in seconds instead of waiting out their deadlines.
  if (removing && !client_->Responsive(3s) && client_->stalled()) engine_silent_ = true;
  calls_.Cancel();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (active_stream_ != nullptr) active_stream_->Abort();
    if (removed_) return OkStatus();
    removed_ = true;
  }
  if (engine_silent_) {
    // Not retried: the container ends with its lifetime, and `sandrun
    // cleanup` removes what is left.
    return DeadlineExceededError(client_->StoppedAnsweringMessage() + "; container " +
                                 id_.substr(0, 12) + " is left to its lifetime");
  }
  EngineGate::Pass pass(*gate_);
  auto res = client_->Request("DELETE", "/containers/" + id_ + "?force=1&v=1", {}, {},
                              std::chrono::seconds(60));
  // An engine that is restarting refuses connections for a few seconds;
  // waiting for it here beats leaving the container to `sandrun cleanup`.
  for (int i = 0; i < 10 && !res.ok() && res.status().code() == StatusCode::kUnavailable; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    res = client_->Request("DELETE", "/containers/" + id_ + "?force=1&v=1", {}, {},
                           std::chrono::seconds(60));
  }
  if (!res.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    removed_ = false;
    return res.status();
  }
  if (res->status == 204 || res->status == 404) return OkStatus();
  if (res->status == 409) return OkStatus();  // Removal already in progress.
  std::lock_guard<std::mutex> lock(mu_);
  removed_ = false;
  return HttpError(*res, "remove container " + id_.substr(0, 12), StatusCode::kUnavailable);
}

Result<std::string> DockerBackend::ResolveImage(const SandboxSpec& spec) {
  if (!spec.dockerfile.empty()) return BuildImage(*client_, spec.dockerfile);
  if (!spec.image.empty()) return spec.image;
  if (!options_.default_image.empty()) return options_.default_image;
  return InvalidArgumentError("docker backend needs an image (--image)");
}

Status DockerBackend::PullImage(const std::string& image) {
  std::string name = image, tag = "latest";
  std::size_t at = name.find('@');
  std::size_t colon = name.rfind(':');
  if (at == std::string::npos && colon != std::string::npos &&
      name.find('/', colon) == std::string::npos) {
    tag = name.substr(colon + 1);
    name = name.substr(0, colon);
  }
  std::string target = "/images/create?fromImage=" + UrlEncode(name);
  if (at == std::string::npos) target += "&tag=" + UrlEncode(tag);
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, client_->Request("POST", target, {}, "text/plain",
                                                              std::chrono::minutes(30)));
  // 404: the registry has no such image (or refuses to say); 400: the name
  // is malformed. Both are the user's to fix. Anything else (the registry
  // could not be reached) says nothing about the image.
  if (res.status == 404 || res.status == 400) return InvalidArgumentError(DockerErrorMessage(res));
  if (res.status != 200) return FailedPreconditionError(DockerErrorMessage(res));
  // The pull reports failures inside its JSON progress stream.
  std::size_t start = 0;
  while (start < res.body.size()) {
    std::size_t end = res.body.find('\n', start);
    if (end == std::string::npos) end = res.body.size();
    try {
      auto j = json::parse(res.body.substr(start, end - start));
      if (j.contains("error")) {
        return FailedPreconditionError(j["error"].is_string() ? j["error"].get<std::string>()
                                                              : j["error"].dump());
      }
    } catch (...) {
    }
    start = end + 1;
  }
  return OkStatus();
}

// Cores as the user wrote them: "1000", "0.001".
std::string Cores(double cpu) {
  std::ostringstream out;
  out << cpu;
  return out.str();
}

std::string ImageUnavailableMessage(const std::string& image, const Status& pulled) {
  std::string why = pulled.message();
  return "docker: image '" + image +
         "' is not available: not found locally, and pulling it failed: " +
         why.substr(0, why.find('\n'));
}

Status DockerBackend::EnsureImage(const std::string& image) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (images_ok_.count(image) > 0) return OkStatus();
  }
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("GET", "/images/" + UrlEncode(image) + "/json", {}, {},
                       std::chrono::seconds(30)));
  if (res.status == 404) {
    Status pulled = PullImage(image);
    if (!pulled.ok()) return Status(pulled.code(), ImageUnavailableMessage(image, pulled),
                                    pulled.retryable());
  } else if (res.status == 400) {
    return InvalidArgumentError("docker: image '" + image + "': " + DockerErrorMessage(res));
  } else if (res.status != 200) {
    return HttpError(res, "inspect image '" + image + "'", StatusCode::kUnavailable);
  }
  std::lock_guard<std::mutex> lock(mu_);
  images_ok_.insert(image);
  return OkStatus();
}

Status DockerBackend::ValidateSpec(const SandboxSpec& spec) {
  if (spec.cpu > 0) {
    // Docker's own bounds (NanoCpus): at least 0.01 cores, at most the
    // engine's CPUs. Its refusal would come only when the container is made.
    if (spec.cpu < 0.01) {
      return InvalidArgumentError("docker: cpu " + Cores(spec.cpu) +
                                  " is below the engine's minimum of 0.01 cores");
    }
    bool known = false;
    int cpus = EngineCpus(&known);
    if (known && spec.cpu > cpus) {
      return InvalidArgumentError("docker: cpu " + Cores(spec.cpu) + " is more than the " +
                                  std::to_string(cpus) + " CPU(s) of the engine at " +
                                  options_.host);
    }
  }
  if (spec.memory_mb > 0 && spec.memory_mb < 6) {
    return InvalidArgumentError("docker: memory " + std::to_string(spec.memory_mb) +
                                " MiB is below Docker's minimum of 6 MiB");
  }
  if (!spec.dockerfile.empty()) return OkStatus();  // Built when the sandbox is made.
  SANDRUN_ASSIGN_OR_RETURN(std::string image, ResolveImage(spec));
  return EnsureImage(image);
}

Result<std::unique_ptr<Sandbox>> DockerBackend::Create(const SandboxSpec& spec) {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  SANDRUN_ASSIGN_OR_RETURN(std::string image, ResolveImage(spec));
  SANDRUN_RETURN_IF_ERROR(EnsureVolume());
  if (!spec.workdir.empty()) SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("workdir", spec.workdir));
  const std::string workdir = ContainerPath(std::string(kDefaultWorkdir), spec.workdir);
  const auto lifetime = std::max<std::int64_t>(spec.lifetime.count(), 1);
  // Taken before the container exists, so the host acts on the lifetime
  // before the container's own `sleep` ends.
  const Clock::time_point expires_at = Clock::now() + std::chrono::seconds(lifetime);
  const auto expires = std::chrono::duration_cast<std::chrono::seconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count() +
                       lifetime;
  json labels = {{std::string(kManagedLabel), "1"},
                 {"dev.sandrun.owner-pid", std::to_string(::getpid())},
                 {"dev.sandrun.owner-host", HostName()},
                 {"dev.sandrun.expires", std::to_string(expires)},
                 {"dev.sandrun.volume", options_.volume}};
  for (const auto& [k, v] : spec.labels) {
    if (k == "run" || k == "task") labels["dev.sandrun." + k] = v;
    labels["dev.sandrun.label." + k] = v;
  }
  if (!labels.contains("dev.sandrun.run")) labels["dev.sandrun.run"] = "";
  if (!labels.contains("dev.sandrun.task")) labels["dev.sandrun.task"] = "";
  json env = json::array();
  for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
  // The result volume is never mounted here: a task could read or rewrite
  // every record. Records and spills reach it only through sandrun (the
  // archive helper, docker_volume_helper.h). The exe cache is content the
  // task is meant to run, read-only.
  json mounts = json::array({{{"Type", "volume"},
                              {"Source", options_.exe_cache_volume},
                              {"Target", kPortableExeRoot},
                              {"ReadOnly", true}}});
  for (const auto& m : options_.mounts) {
    // "source:/target[:ro]"; an absolute source is a bind mount the user named.
    std::size_t first = m.find(':');
    if (first == std::string::npos) return InvalidArgumentError("docker: bad mount '" + m + "'");
    std::string source = m.substr(0, first), rest = m.substr(first + 1);
    bool read_only = false;
    if (rest.size() > 3 && rest.compare(rest.size() - 3, 3, ":ro") == 0) {
      read_only = true;
      rest.resize(rest.size() - 3);
    }
    mounts.push_back({{"Type", source.front() == '/' ? "bind" : "volume"},
                      {"Source", source},
                      {"Target", rest},
                      {"ReadOnly", read_only}});
  }
  json host_config = {{"NetworkMode", spec.network == NetworkMode::kOpen ? "host" : "none"},
                      {"PidsLimit", options_.pids_limit},
                      {"Privileged", false},
                      {"Init", true},
                      {"AutoRemove", false},
                      {"Mounts", mounts}};
  if (spec.memory_mb > 0) {
    host_config["Memory"] = spec.memory_mb * 1024 * 1024;
    host_config["MemorySwap"] = spec.memory_mb * 1024 * 1024;  // No swap: OOM, not thrash.
  }
  if (spec.cpu > 0) host_config["NanoCpus"] = static_cast<std::int64_t>(spec.cpu * 1e9);
  json body = {{"Image", image},
               {"Entrypoint", json::array({"sleep"})},
               {"Cmd", json::array({std::to_string(lifetime)})},
               {"Labels", labels},
               {"WorkingDir", workdir},
               {"Env", env},
               {"AttachStdin", false},
               {"AttachStdout", false},
               {"AttachStderr", false},
               {"HostConfig", host_config}};
  if (spec.network != NetworkMode::kOpen) body["NetworkDisabled"] = false;
  const std::string target = "/containers/create?name=sandrun-" + RandomHex(12);
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, client_->Request("POST", target, body.dump()));
  if (res.status == 404) {
    Status pulled = PullImage(image);
    if (!pulled.ok()) {
      return FailedPreconditionError(ImageUnavailableMessage(image, pulled));
    }
    SANDRUN_ASSIGN_OR_RETURN(res, client_->Request("POST", target, body.dump()));
  }
  if (res.status != 201) {
    return HttpError(res, "create container from '" + image + "'",
                     res.status == 400 ? StatusCode::kInvalidArgument
                                       : StatusCode::kFailedPrecondition);
  }
  std::string id;
  try {
    id = json::parse(res.body).at("Id").get<std::string>();
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad create answer: ") + e.what());
  }
  auto sandbox = std::make_unique<DockerSandbox>(client_, exe_cache_, gate_, id, workdir,
                                                 options_.kill_grace_ms,
                                                 std::chrono::seconds(lifetime), expires_at);
  Result<HttpResponse> start_answer = [&] {
    EngineGate::Pass pass(*gate_);
    return client_->Request("POST", "/containers/" + id + "/start");
  }();
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse started, std::move(start_answer));
  if (started.status != 204 && started.status != 304) {
    Status st = HttpError(started, "start container from '" + image + "'");
    sandbox->Terminate().IgnoreError();
    return st;
  }
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

Result<std::vector<Leftover>> DockerBackend::ListLeftovers() {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("GET", "/containers/json?all=1&" +
                                  FiltersQuery({std::string(kManagedLabel) + "=1"})));
  if (res.status != 200) return HttpError(res, "list containers", StatusCode::kUnavailable);
  std::vector<Leftover> out;
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  const std::string this_host = HostName();
  try {
    for (const auto& c : json::parse(res.body)) {
      Leftover l;
      l.id = c.at("Id").get<std::string>();
      const json container_labels = c.value("Labels", json::object());
      // Both the raw Docker labels and the spec's own (prefix stripped).
      static constexpr std::string_view kSpecPrefix = "dev.sandrun.label.";
      for (const auto& [k, v] : container_labels.items()) {
        if (!v.is_string()) continue;
        l.labels[k] = v.get<std::string>();
        if (k.rfind(kSpecPrefix, 0) == 0) l.labels[k.substr(kSpecPrefix.size())] = v.get<std::string>();
      }
      if (l.labels[std::string(kManagedLabel)] != "1") continue;  // Belt and braces.
      const std::string state = c.value("State", "");
      if (IsVolumeHelperRole(l.labels["dev.sandrun.role"])) {
        l.owner_alive = true;  // Shared and never started: kept.
        l.description = l.id.substr(0, 12) + " " + l.labels["dev.sandrun.role"] +
                        " helper for volume " + l.labels["dev.sandrun.volume"];
        l.keep_reason = "shared by every run to reach the volume; never started, not a sandbox";
        out.push_back(std::move(l));
        continue;
      }
      int pid = std::atoi(l.labels["dev.sandrun.owner-pid"].c_str());
      l.owner_alive = l.labels["dev.sandrun.owner-host"] == this_host && pid > 0 &&
                      ProcessAlive(pid);
      long long expires = std::atoll(l.labels["dev.sandrun.expires"].c_str());
      l.expired = (expires > 0 && expires <= now) || state == "exited" || state == "dead";
      l.description = l.id.substr(0, 12) + " run " + l.labels["dev.sandrun.run"] + " task " +
                      l.labels["dev.sandrun.task"] + " (" + state + ", owner pid " +
                      l.labels["dev.sandrun.owner-pid"] + "@" +
                      l.labels["dev.sandrun.owner-host"] +
                      (l.owner_alive ? " alive" : " gone") + (l.expired ? ", expired" : "") + ")";
      out.push_back(std::move(l));
    }
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad container list: ") + e.what());
  }
  return out;
}

Status DockerBackend::RemoveLeftover(const std::string& id) {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  // Check the label on the object itself: an id from elsewhere is refused.
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           client_->Request("GET", "/containers/" + UrlEncode(id) + "/json"));
  if (res.status == 404) return OkStatus();
  if (res.status != 200) return HttpError(res, "inspect " + id, StatusCode::kUnavailable);
  try {
    auto labels = json::parse(res.body).at("Config").value("Labels", json::object());
    if (!labels.is_object() || labels.value(std::string(kManagedLabel), "") != "1") {
      return PermissionDeniedError("docker: container " + id +
                                   " is not managed by sandrun; not removing it");
    }
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad inspect answer: ") + e.what());
  }
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse del,
                           client_->Request("DELETE", "/containers/" + UrlEncode(id) + "?force=1&v=1"));
  if (del.status == 204 || del.status == 404) return OkStatus();
  return HttpError(del, "remove " + id, StatusCode::kUnavailable);
}

Result<std::unique_ptr<ArchiveStore>> DockerBackend::OpenArchive() {
  SANDRUN_RETURN_IF_ERROR(EnsureVersion());
  SANDRUN_RETURN_IF_ERROR(EnsureVolume());
  std::string tool_image = options_.tool_image.empty() ? options_.default_image : options_.tool_image;
  if (tool_image.empty()) tool_image = "busybox";
  return OpenVolumeArchive(client_, options_.volume, tool_image);
}

// Docker's rule for volume names; checked here because the engine would say
// so only when the first sandbox or the archive is made.
Status CheckVolumeName(std::string_view key, const std::string& name) {
  auto allowed = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  };
  if (name.size() >= 2 && std::isalnum(static_cast<unsigned char>(name.front())) &&
      std::all_of(name.begin(), name.end(), allowed)) {
    return OkStatus();
  }
  return InvalidArgumentError("docker: '" + std::string(key) + "': '" + name +
                              "' is not a valid volume name (a letter or digit, then at least "
                              "one of letters, digits, '_', '.', '-')");
}

}  // namespace

Result<DockerOptions> ParseDockerOptions(std::string_view section_json,
                                         const std::map<std::string, std::string>& env) {
  DockerOptions o;
  json j;
  try {
    j = section_json.empty() ? json::object() : json::parse(section_json);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("docker: bad config section: ") + e.what());
  }
  if (!j.is_object()) return InvalidArgumentError("docker: config section must be an object");
  try {
    for (const auto& [key, value] : j.items()) {
      if (key == "host") o.host = value.get<std::string>();
      else if (key == "volume") o.volume = value.get<std::string>();
      else if (key == "exe_cache_volume") o.exe_cache_volume = value.get<std::string>();
      else if (key == "default_image") o.default_image = value.get<std::string>();
      else if (key == "tool_image") o.tool_image = value.get<std::string>();
      else if (key == "pids_limit") o.pids_limit = value.get<std::int64_t>();
      else if (key == "max_parallel") o.max_parallel = value.get<int>();
      else if (key == "kill_grace_ms") o.kill_grace_ms = value.get<int>();
      else if (key == "mounts") o.mounts = value.get<std::vector<std::string>>();
      else return InvalidArgumentError("docker: unknown config key '" + key + "'");
    }
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("docker: bad config value: ") + e.what());
  }
  if (auto it = env.find("DOCKER_HOST"); it != env.end() && !it->second.empty()) {
    o.host = it->second;
  }
  SANDRUN_RETURN_IF_ERROR(CheckVolumeName("volume", o.volume));
  SANDRUN_RETURN_IF_ERROR(CheckVolumeName("exe_cache_volume", o.exe_cache_volume));
  for (const auto& m : o.mounts) {
    // "source:/target[:ro]"; a source that is not an absolute path is a volume.
    std::size_t colon = m.find(':');
    std::string source = m.substr(0, colon);
    if (colon == std::string::npos || source.empty() || m.size() <= colon + 1 ||
        m[colon + 1] != '/') {
      return InvalidArgumentError("docker: mount '" + m +
                                  "' is not SOURCE:/ABSOLUTE/TARGET[:ro]");
    }
    if (source.front() != '/') SANDRUN_RETURN_IF_ERROR(CheckVolumeName("mounts", source));
  }
  SANDRUN_RETURN_IF_ERROR(ParseDockerHost(o.host).status());
  return o;
}

std::unique_ptr<Backend> CreateDockerBackend(DockerOptions options) {
  return std::make_unique<DockerBackend>(std::move(options));
}

}  // namespace sandrun::docker

namespace sandrun {

void RegisterDockerBackend(BackendRegistry& registry) {
  registry
      .Register("docker", "containers on a Docker engine (DOCKER_HOST), via the Engine API",
                [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                  std::map<std::string, std::string> env;
                  if (const char* host = std::getenv("DOCKER_HOST")) env["DOCKER_HOST"] = host;
                  SANDRUN_ASSIGN_OR_RETURN(
                      docker::DockerOptions options,
                      docker::ParseDockerOptions(context.section_json, env));
                  return docker::CreateDockerBackend(std::move(options));
                })
      .IgnoreError();
}

}  // namespace sandrun
