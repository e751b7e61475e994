// Running a command in a Docker sandbox: DockerSandbox::Exec and the helper
// execs around it.
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
#include <signal.h>

#include <cstdlib>
#include <thread>

#include <nlohmann/json.hpp>

#include "docker_sandbox.h"
#include "sandrun/portable_exe.h"
#include "sandrun/output_collector.h"
#include "sandrun/util.h"

namespace sandrun::docker {
namespace {

using json = nlohmann::json;
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

// Feeds a command's stdout and stderr, as Docker multiplexes them, to its
// collectors.
ExecStreamDemuxer DemuxInto(OutputCollector* out, OutputCollector* err) {
  return ExecStreamDemuxer([out, err](int stream, std::string_view bytes) {
    (stream >= 2 ? err : out)->Append(bytes);
  });
}

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

}  // namespace

/// What an Exec has gathered so far. Kept outside the call sequence so that a
/// command that is cancelled, or whose sandbox lifetime ends, while a call
/// fails still reports the output it produced.
struct ExecState {
  ExecState(const ExecRequest& request, const std::string& sandbox_id)
      : started(Clock::now()), output(request) {
    result.sandbox_id = sandbox_id;
  }

  ExecResult Finish(Outcome outcome) {
    result.outcome = outcome;
    output.FinishInto(result, "docker: ");
    result.durations.exec_ms = MillisBetween(started, Clock::now());
    return std::move(result);
  }

  const Clock::time_point started;
  ExecResult result;
  ExecOutput output;
};

namespace {

// An OOM kill, reported as the SIGKILL the kernel sent.
ExecResult FinishOomKilled(ExecState& state) {
  state.result.exit_code = 128 + SIGKILL;
  state.result.signal = SIGKILL;
  return state.Finish(Outcome::kOomKilled);
}

}  // namespace

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
  ExecStreamDemuxer demux = DemuxInto(&out, &err);
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (has_shell_) return *has_shell_;
  }
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("HEAD", "/containers/" + id_ + "/archive?path=" + UrlEncode("/bin/sh"),
                       {}, "application/json", std::chrono::seconds(120), &calls_));
  if (res.status >= 500) return HttpError(res, "stat /bin/sh", StatusCode::kUnavailable);
  std::lock_guard<std::mutex> lock(mu_);
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

void DockerSandbox::AddActiveStream(HijackedStream* stream) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    active_streams_.insert(stream);
  }
  // Terminate() may have run before the registration.
  if (terminated_) stream->Abort();
}

void DockerSandbox::RemoveActiveStream(HijackedStream* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  active_streams_.erase(stream);
}

Result<AgentSession*> DockerSandbox::StartAgent() {
  SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan,
                           PlanPortableExecutable(agent_path_, exe_cache_->portable_options()));
  SANDRUN_RETURN_IF_ERROR(exe_cache_->Ensure(plan).status());
  const auto deadline = Clock::now() + 60s;
  SANDRUN_ASSIGN_OR_RETURN(std::string exec_id,
                           CreateExec(plan.WrapArgv({}), {}, "/", true, deadline));
  SANDRUN_ASSIGN_OR_RETURN(auto stream,
                           client_->Hijack("/exec/" + exec_id + "/start",
                                           R"({"Detach":false,"Tty":false})", Until(deadline),
                                           &calls_));
  HijackedStream* raw = stream.get();
  AddActiveStream(raw);
  auto opened = AgentSession::Open(std::move(stream), deadline);
  RemoveActiveStream(raw);
  SANDRUN_RETURN_IF_ERROR(opened.status());
  std::lock_guard<std::mutex> lock(mu_);
  agents_.push_back(std::move(opened).value());
  if (terminated_) agents_.back()->Abort();
  return agents_.back().get();
}

AgentSession* DockerSandbox::BorrowAgent() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (agent_path_.empty() || agent_failed_) return nullptr;
    while (!idle_agents_.empty()) {
      AgentSession* session = idle_agents_.back();
      idle_agents_.pop_back();
      if (!session->broken()) return session;
    }
  }
  Result<AgentSession*> started = StartAgent();
  if (started.ok()) return *started;
  std::lock_guard<std::mutex> lock(mu_);
  // Without a first agent the sandbox goes through the engine for good; a
  // later one that fails leaves this call to the engine alone.
  if (agents_.empty()) {
    agent_failed_ = true;
    agent_missing_ = "the agent did not start: " + started.status().message();
  }
  return nullptr;
}

void DockerSandbox::GiveBackAgent(AgentSession* session) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!session->broken()) idle_agents_.push_back(session);
}

Result<ExecResult> DockerSandbox::RunWithAgent(AgentSession& agent, const ExecRequest& request,
                                               ExecState& state) {
  ExecResult& result = state.result;
  auto finish = [&](Outcome outcome) { return state.Finish(outcome); };
  SANDRUN_ASSIGN_OR_RETURN(
      const std::string cwd,
      JoinSandboxPath("cwd", workdir_, request.cwd, EmptySandboxPath::kIsBase));
  // The agent enforces the timeout, or the sandbox lifetime when that ends
  // first (a second early: the container's own end would look like a
  // broken engine).
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      expires_ - std::chrono::seconds(1) - state.started);
  std::chrono::milliseconds timeout = request.timeout;
  bool by_lifetime = false;
  if (timeout.count() <= 0 || timeout > left) {
    timeout = std::max(left, std::chrono::milliseconds(1));
    by_lifetime = true;
  }
  json env = json::object();
  for (const auto& [k, v] : request.env) env[k] = v;
  json body = {{"argv", request.argv},
               {"env", env},
               {"cwd", cwd},
               {"timeout_ms", timeout.count()},
               {"kill_grace_ms", kill_grace_ms_}};
  // Past the timeout and the grace, the agent is not answering.
  const auto deadline = state.started + timeout + std::chrono::milliseconds(kill_grace_ms_) + 30s;
  // A cancel of this command alone: the agent takes its session's end as
  // the order to kill the command's tree, and the other agents go on.
  CommandStop::Listener cancel(request.stop, [&agent] { agent.Abort(); });
  Result<json> done = agent.Exec(body, request.stdin_data,
                                 [&](agent::Frame type, std::string_view bytes) {
                                   (type == agent::Frame::kStderr ? state.output.err()
                                                                  : state.output.out())
                                       .Append(bytes);
                                 },
                                 deadline);
  if (terminated_) return Cancelled(state);
  if (!done.ok() && request.stop != nullptr && request.stop->requested()) {
    result.ended_by = std::string(kEndedByCancel);
    return finish(Outcome::kCancelled);
  }
  if (!done.ok() && done.status().code() == StatusCode::kInvalidArgument) return done.status();
  if (!done.ok()) {
    // The stream broke: the container died or was removed (or OOM-killed
    // whole), or the agent did.
    bool oom = false;
    SANDRUN_RETURN_IF_ERROR(ContainerAlive(&oom));
    if (oom) return FinishOomKilled(state);
    return UnavailableError("docker: the agent in " + id_.substr(0, 12) +
                            " stopped answering: " + done.status().message());
  }
  const int signal = done->value("signal", 0);
  if (done->value("oom_killed", false)) {
    if (done->value("timed_out", false)) {
      result.notes.push_back("a process of the command ran out of memory before the " +
                             std::string(by_lifetime ? "sandbox lifetime ended" : "timeout"));
    }
    return FinishOomKilled(state);
  }
  if (done->value("timed_out", false)) {
    result.exit_code = kExitTimedOut;
    result.signal = signal;
    result.ended_by = std::string(by_lifetime ? kEndedByLifetime : kEndedByTimeout);
    if (by_lifetime) result.notes.push_back(LifetimeNote());
    return finish(Outcome::kTimedOut);
  }
  if (signal > 0) {
    result.exit_code = 128 + signal;
    result.signal = signal;
    return finish(Outcome::kSignaled);
  }
  result.exit_code = done->value("exit_code", 0);
  return finish(Outcome::kExited);
}

Result<ExecResult> DockerSandbox::RunCommand(const ExecRequest& request, ExecState& state) {
  ExecResult& result = state.result;
  auto finish = [&](Outcome outcome) { return state.Finish(outcome); };
  if (LentAgent agent{*this, BorrowAgent()}) return RunWithAgent(*agent.get(), request, state);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Agents run other commands here: the engine path's timeout would end
    // their processes too. Another sandbox may do better.
    if (!agents_.empty()) {
      return UnavailableError("docker: another agent could not start in " + id_.substr(0, 12));
    }
    if (!agent_noted_ && !agent_missing_.empty()) {
      agent_noted_ = true;
      result.notes.push_back("docker: commands go through the engine (" + agent_missing_ + ")");
    }
  }
  // Without an agent the supervisor may end every process of the container
  // on a timeout: one such command at a time. Nor can one command be
  // cancelled alone: a cancel ends the sandbox (ExecRequest::stop allows it).
  std::lock_guard<std::mutex> one_at_a_time(engine_commands_mu_);
  CommandStop::Listener cancel(request.stop, [this] { Terminate().IgnoreError(); });

  SANDRUN_ASSIGN_OR_RETURN(bool has_shell, HasShell());
  const std::string token = RandomHex(16);
  SANDRUN_ASSIGN_OR_RETURN(
      const std::string cwd,
      JoinSandboxPath("cwd", workdir_, request.cwd, EmptySandboxPath::kIsBase));
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
  AddActiveStream(stream.get());
  struct Unregister {
    DockerSandbox* self;
    HijackedStream* stream;
    ~Unregister() { self->RemoveActiveStream(stream); }
  } unregister{this, stream.get()};

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

  ExecStreamDemuxer demux = DemuxInto(&state.output.out(), &state.output.err());
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
    result.notes.push_back("a process of the command ran out of memory before the " +
                           std::string(by_lifetime ? "sandbox lifetime ended" : "timeout"));
    return FinishOomKilled(state);
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
    if (oom) return FinishOomKilled(state);
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
    if (oom) return FinishOomKilled(state);
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

}  // namespace sandrun::docker
