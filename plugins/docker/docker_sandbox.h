// Inside the Docker backend (not part of its interface): the sandbox class,
// whose work is spread over docker_backend.cc (start and removal),
// docker_exec.cc (running commands) and docker_files.cc (uploads and
// downloads), and the gate that paces the engine's heavy calls.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_SANDBOX_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_SANDBOX_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "docker_agent.h"
#include "docker_client.h"
#include "docker_exe_cache.h"
#include "sandrun/backend.h"
#include "sandrun/status.h"

namespace sandrun::docker {

using Clock = std::chrono::steady_clock;

// Turns an HTTP error into a Status: 404 kNotFound, 5xx kUnavailable, else the
// given code.
Status HttpError(const HttpResponse& res, std::string_view what,
                 StatusCode otherwise = StatusCode::kFailedPrecondition);

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

// What one Exec has gathered so far (docker_exec.cc).
struct ExecState;

/// One container, made and started by DockerBackend::Create, removed by
/// Terminate (docker_backend.cc); Exec in docker_exec.cc, Put and Get in
/// docker_files.cc. `workdir` is absolute in the container; commands end by
/// `expires`, a little before the container's own keep-alive does.
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

  /// Runs commands and moves files through the agent at `path` (started on
  /// first use); empty: through the engine, noting `why_not` when set.
  void UseAgent(std::string path, std::string why_not) {
    agent_path_ = std::move(path);
    agent_missing_ = std::move(why_not);
  }

  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload& upload) override;
  Result<ExecResult> Exec(const ExecRequest& request) override;
  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const std::filesystem::path& host_dir) override;
  Status Terminate() override;

 private:
  struct RawExec {
    int exit_code = -1;
    bool running = false;
  };

  // The calls of one command, after its preparation (shell check).
  Result<ExecResult> RunCommand(const ExecRequest& request, ExecState& state);
  // An agent session lent to one call, given back when it goes out of
  // scope (a broken one is dropped). Each command running at once in the
  // sandbox has its own agent (one more exec in the container); files go
  // through any idle one.
  class LentAgent {
   public:
    LentAgent(DockerSandbox& sandbox, AgentSession* session) : sandbox_(sandbox), session_(session) {}
    ~LentAgent() {
      if (session_ != nullptr) sandbox_.GiveBackAgent(session_);
    }
    LentAgent(const LentAgent&) = delete;
    LentAgent& operator=(const LentAgent&) = delete;
    AgentSession* get() const { return session_; }
    explicit operator bool() const { return session_ != nullptr; }

   private:
    DockerSandbox& sandbox_;
    AgentSession* session_;
  };
  // An idle agent session, else a new one; null when the sandbox has no
  // agent (then `agent_missing_` says why) or a new one did not start.
  // docker_agent.cc has the protocol.
  AgentSession* BorrowAgent();
  void GiveBackAgent(AgentSession* session);
  // Starts one more agent in the container.
  Result<AgentSession*> StartAgent();
  // A stream in flight, aborted by Terminate(); unregistered when done.
  void AddActiveStream(HijackedStream* stream);
  void RemoveActiveStream(HijackedStream* stream);
  // One command through the agent.
  Result<ExecResult> RunWithAgent(AgentSession& agent, const ExecRequest& request,
                                  ExecState& state);
  // Builds the tar of an upload (entries relative to "/").
  Result<std::string> UploadTar(const FileUpload& upload);
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
  std::set<HijackedStream*> active_streams_;  // Guarded by mu_.
  std::optional<bool> has_shell_;             // Guarded by mu_.
  bool removed_ = false;                      // Guarded by mu_.
  std::string agent_path_;
  std::string agent_missing_;       // Guarded by mu_ once the sandbox is in use.
  bool agent_failed_ = false;       // Guarded by mu_: the first agent did not start.
  bool agent_noted_ = false;        // Guarded by mu_: a record said why there is none.
  // Every agent session started (Terminate aborts them all) and those idle.
  std::vector<std::unique_ptr<AgentSession>> agents_;  // Guarded by mu_.
  std::vector<AgentSession*> idle_agents_;             // Guarded by mu_.
  std::mutex engine_commands_mu_;  // Held by a command that goes through the engine.
};

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_SANDBOX_H_
