// The host end of sandrun-docker-agent (docker_agent_protocol.h): one
// long-lived exec per sandbox that runs its commands, uploads and downloads
// without a call to the engine each. Without it, a command costs three
// engine calls (exec create, start, inspect) and each file move one more;
// a 2-core engine does a few dozen such calls a second, which is what a
// suite of short test cases in warm sandboxes waits on.
//
// DockerSandbox starts the agent on first use and falls back to the
// engine's own endpoints when it cannot (no agent binary, an agent that
// does not answer); an agent that reports an error for a file falls back
// the same way. A session serves one caller at a time; a sandbox that runs
// several commands at once starts one agent per command (DockerSandbox).
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_AGENT_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_AGENT_H_

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "docker_agent_protocol.h"
#include "docker_client.h"
#include "plugin_tar.h"
#include "sandrun/status.h"

namespace sandrun::docker {

/// The agent executable: $SANDRUN_DOCKER_AGENT when set in `env`, else
/// sandrun-docker-agent in <libdir>/sandrun of the installed or built tree
/// (found from this plugin's own file, then the build tree's path).
/// kNotFound says where it looked.
Result<std::filesystem::path> FindDockerAgent(const std::map<std::string, std::string>& env);

/// Splits Docker's multiplexed exec stream: 8-byte headers [stream, 0, 0, 0,
/// size big-endian] each followed by `size` bytes of that stream (1 stdout,
/// 2 stderr).
class ExecStreamDemuxer {
 public:
  using Sink = std::function<void(int stream, std::string_view bytes)>;
  explicit ExecStreamDemuxer(Sink sink) : sink_(std::move(sink)) {}
  void Feed(const char* data, std::size_t size);

 private:
  Sink sink_;
  std::string buffer_;
  int stream_ = 1;
  std::size_t remaining_ = 0;
};

class AgentSession {
 public:
  using Clock = std::chrono::steady_clock;

  /// Takes the hijacked stream of the agent's exec and waits for its hello.
  static Result<std::unique_ptr<AgentSession>> Open(std::unique_ptr<HijackedStream> stream,
                                                    Clock::time_point deadline);

  /// Thread-safe: breaks the connection (a call in progress returns) and
  /// marks the session unusable, so it is never lent again.
  void Abort() {
    broken_ = true;
    stream_->Abort();
  }

  /// Runs one command (`request` as in the protocol's kExec). Output goes to
  /// `output` as it arrives; returns the kDone object. Not OK when the
  /// stream broke or `deadline` passed: the session is then unusable.
  Result<nlohmann::json> Exec(const nlohmann::json& request,
                              const std::optional<std::string>& stdin_data,
                              const std::function<void(agent::Frame, std::string_view)>& output,
                              Clock::time_point deadline);
  /// Writes `entries` (names relative to "/"). kFailedPrecondition with the
  /// agent's message when it could not; other codes: the session broke.
  Status Put(const std::vector<TarEntry>& entries, Clock::time_point deadline);
  /// `path` (absolute) as entries named from its base name down. kNotFound
  /// when it does not exist; kFailedPrecondition when the agent could not
  /// read it.
  Result<std::vector<TarEntry>> Get(const std::string& path, Clock::time_point deadline);

  bool broken() const { return broken_; }

 private:
  explicit AgentSession(std::unique_ptr<HijackedStream> stream);
  Result<std::pair<agent::Frame, std::string>> NextFrame(Clock::time_point deadline);
  Status Send(agent::Frame type, std::string_view payload);
  // Marks the session unusable and returns `status`.
  Status Broke(Status status);

  std::unique_ptr<HijackedStream> stream_;
  agent::FrameReader frames_;
  ExecStreamDemuxer demuxer_;
  std::string diagnostics_;  // The agent's stderr, for errors.
  std::atomic<bool> broken_{false};
};

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_AGENT_H_
