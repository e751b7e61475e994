// A fake Modal server for tests: the subset of modal.client.ModalClient and
// modal.task_command_router.TaskCommandRouter that sandrun's Modal backend
// uses, plaintext gRPC on 127.0.0.1, following Modal's service definitions
// (modal-labs/modal-client: modal_proto/api.proto,
// modal_proto/task_command_router.proto) and how its Go SDK (go/) calls them.
//
// It checks what a real server would: the token id and secret on every
// control-plane call, a valid (unexpired) x-modal-auth-token on unary calls,
// the bearer JWT (and no x-modal-* credentials) on router calls, that ids
// exist, that stdout/stderr are PIPE, and sane field values; otherwise it
// answers UNAUTHENTICATED, NOT_FOUND or INVALID_ARGUMENT.
//
// Each sandbox is a local process tree: a fresh directory stands for the
// sandbox's root; paths and argv elements under /sandrun/ are rewritten into
// it (the only "chroot" it offers), so a workdir such as /sandrun/work lands
// there, and a command with no workdir runs in that private directory.
// Commands run on the host with the host's tools but a minimal environment
// (PATH, HOME and TMPDIR inside the sandbox's directory, LANG), never the
// host's; network BLOCKED puts each command in a new network namespace
// (needs root or user namespaces). The in-sandbox file tool
// (/__modal/.bin/modal-sandbox-fs-tools) is emulated in-process. Stdout and
// stderr go to files, so offset reads are cheap and memory stays bounded
// whatever a command prints.
//
// The task command router is a server of its own, on its own port; router
// access answers "https://127.0.0.1:<router port>" and the router speaks
// plaintext there, which is what Modal's SDKs do with a router URL when the
// control plane is on loopback (the JS SDK dials it with insecure
// credentials). It can be made not to answer for a while after a sandbox
// starts (router_ready_delay). Images are cached: the same definition asked
// for twice is built once. Volume blocks are served over plain HTTP on a
// third port, hashed exactly as received (SHA-256 of the raw body, nothing
// stripped), and a file is accepted only once every block it names is
// stored and each uploaded block's put_response is what its PUT answered.
// The block server can be told to misbehave (FailNextBlockTransfers).
// Volumes can be version 1 (FakeOptions::volume_version, AddVolume); the *2
// volume calls refuse them with FAILED_PRECONDITION.
//
// Container mode (FakeOptions::containers) makes each sandbox a Docker
// container of its image; see fake_modal_containers.cc.
//
// Where a protocol fact is UNCONFIRMED (exec timeout status, missing
// commands), the fake makes a guess; tests must not rely on the guess
// beyond what the client treats as unconfirmed.
#ifndef SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_SERVER_H_
#define SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_SERVER_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sandrun::modal::fake {

struct FakeOptions {
  std::string token_id = "ak-fake-token-id";
  std::string token_secret = "as-fake-token-secret-do-not-print";
  int port = 0;  ///< 0: an ephemeral port.
  /// Where sandbox roots are made; empty: $TMPDIR or /tmp.
  std::string scratch_dir;
  /// Modal Secrets by name: their keys and values appear in the environment
  /// of every command of a sandbox the secret is attached to. Names starting
  /// with "missing" are NOT_FOUND; other unknown names are empty secrets.
  std::map<std::string, std::map<std::string, std::string>> secrets;
  /// Container mode: every sandbox is a Docker container of its image on the
  /// engine at DOCKER_HOST (see DockerEngineAnswers), commands and the file
  /// tool run inside it. Off: process mode, commands run on this host.
  /// SANDRUN_FAKE_MODAL_MODE=containers in the environment turns it on for
  /// every fake a test makes (the Modal tests' second pass, see
  /// FakeModeFromEnvironment).
  bool containers = false;
  /// What an image reference the engine does not have resolves to (there is
  /// no registry here): references naming busybox or alpine, and the rest.
  std::string busybox_image = "sandrun-test/busybox";
  std::string debian_image = "sandrun-test/debian:bookworm";
  /// How long after a sandbox starts its command router accepts calls;
  /// before that every router call for it is UNAVAILABLE, as a connection
  /// to a worker that is still starting would be.
  std::chrono::milliseconds router_ready_delay{0};
  /// The FsVersion of volumes the fake creates (1 or 2), as `modal volume
  /// create` makes version 1 volumes. The V2 volume calls refuse a V1 volume.
  int volume_version = 2;
};

/// Ways the block HTTP server can misbehave (FailNextBlockTransfers).
enum class BlockFault {
  kChunked,  ///< a correct answer, sent with Transfer-Encoding: chunked
  kShort,    ///< 200 with only half the body (Content-Length says half)
  kSlow,     ///< a correct answer after 2 s
  kError,    ///< 503 Service Unavailable
  kDrop,     ///< the connection is closed without an answer
};

/// True when `docker version` reaches an engine (DOCKER_HOST or the default
/// socket): what container mode needs.
bool DockerEngineAnswers();

/// True when SANDRUN_FAKE_MODAL_MODE=containers: every FakeModalServer made
/// in this process runs in container mode, whatever its options say. Other
/// values than "containers" and "process" are refused (the process aborts
/// with a message), so a misspelt mode cannot quietly test the other one.
bool FakeModeFromEnvironment();

/// What a sandbox was created with, beyond its tags.
struct FakeSandboxDefinition {
  std::vector<std::string> secret_ids;
  std::vector<std::string> allowed_cidrs;
  std::string gpu_type;
  int gpu_count = 0;
  std::string environment;  ///< The environment of the App it belongs to.
  std::vector<std::string> volume_mount_paths;  ///< Where Volumes were asked to be mounted.
};

/// What the fake saw, for assertions.
struct FakeStats {
  int exec_processes_started = 0;  ///< Real processes spawned (not fs-tool ops).
  int exec_start_calls = 0;        ///< TaskExecStart calls, repeats included.
  int sandboxes_created = 0;
  int sandboxes_terminated = 0;
  int containers_started = 0;      ///< Container mode: `docker run`s that worked.
  std::map<std::string, int> calls;  ///< Per RPC name.
  /// Bytes that came in: execs' stdin (new data only, a retried write's
  /// repeat not counted) and Volume blocks PUT to the block server.
  std::int64_t stdin_bytes = 0;
  std::int64_t block_bytes_put = 0;
  /// x-modal-client-type, x-modal-client-version, x-modal-libmodal-version
  /// of the latest control-plane call.
  std::map<std::string, std::string> client_headers;
};

class FakeModalServer {
 public:
  explicit FakeModalServer(FakeOptions options = {});
  ~FakeModalServer();  ///< Stops the server, kills every process it started.
  FakeModalServer(const FakeModalServer&) = delete;
  FakeModalServer& operator=(const FakeModalServer&) = delete;

  /// Starts listening. False (with a message on stderr) on failure.
  bool Start();
  int port() const;
  std::string url() const;  ///< "http://127.0.0.1:<port>"
  const FakeOptions& options() const;

  // ---- fault injection (thread-safe, effective for the next calls) ----
  /// The next `n` calls of `rpc` fail with `code` (a grpc::StatusCode value,
  /// default UNAVAILABLE) before doing anything.
  void FailNext(const std::string& rpc, int n, int code = 14);
  /// The next `n` calls of `rpc` do their work, then answer `code` anyway
  /// (a lost response: the client cannot know it worked).
  void FailAfterNext(const std::string& rpc, int n, int code = 14);
  /// The next `n` calls of `rpc` are throttled: RESOURCE_EXHAUSTED with an
  /// RPCRetryPolicy{retry_after_secs} in grpc-status-details-bin.
  void ThrottleNext(const std::string& rpc, int n, double retry_after_secs);
  /// The next `n` stdio streams are cut (UNAVAILABLE) after sending `bytes`.
  void CutStdioAfter(std::uint64_t bytes, int n);
  /// The next `n` AuthTokenGet answers carry a JWT that has already expired;
  /// calls made with an expired token get UNAUTHENTICATED.
  void IssueExpiredTokens(int n);
  /// Sandboxes get their task id only this long after creation.
  void SetCreationDelay(std::chrono::milliseconds delay);
  /// Every call sleeps this long first.
  void SetLatency(std::chrono::milliseconds latency);
  /// The next `n` block transfers with `method` ("GET", "PUT" or "" for
  /// either) misbehave as `fault` says.
  void FailNextBlockTransfers(const std::string& method, int n, BlockFault fault);
  /// From now until Thaw(), the fake answers nothing, as a frozen server:
  /// calls and streams already under way stop too (each returns once its
  /// client gives up); the sandboxes' commands run on.
  void Freeze();
  void Thaw();
  /// From now on, exec timeouts (TaskExecStart.timeout_secs) are not
  /// enforced: a remote kill that never comes.
  void IgnoreExecTimeouts();
  /// Kills every process of the sandbox and marks it finished (FAILURE).
  void KillSandbox(const std::string& sandbox_id);

  // ---- inspection ----
  FakeStats Stats() const;
  std::vector<std::string> SandboxIds(bool running_only) const;
  bool SandboxRunning(const std::string& sandbox_id) const;
  /// Tags of a sandbox (empty if unknown).
  std::map<std::string, std::string> SandboxTags(const std::string& sandbox_id) const;
  /// Network access type the sandbox was created with (0 unspecified,
  /// 1 open, 2 blocked, 3 allowlist).
  int SandboxNetworkType(const std::string& sandbox_id) const;
  /// The definition a sandbox was created with (empty if unknown).
  FakeSandboxDefinition SandboxDefinition(const std::string& sandbox_id) const;
  /// Every environment_name the client sent (AppGetOrCreate, VolumeGetOrCreate,
  /// SecretGetOrCreate, SandboxList). Names starting with "missing" are
  /// NOT_FOUND, as a real server answers for an unknown environment.
  std::vector<std::string> EnvironmentsSeen() const;
  /// The argv and env (space-separated "K=V") of every TaskExecStart, in
  /// order: everything the client put on a command line in a sandbox.
  std::vector<std::string> ExecRequestsSeen() const;
  /// Adds a running sandbox with no processes, as some other tool would have
  /// created it; returns its id.
  std::string AddForeignSandbox(const std::string& app_name,
                                const std::map<std::string, std::string>& tags);
  /// The id of an App the client created ("" if none).
  std::string AppId(const std::string& app_name) const;
  /// Creates a volume as another tool would, with FsVersion `version` (1 or 2).
  std::string AddVolume(const std::string& name, int version);
  /// Paths of the files in volume `name` (empty if unknown), for assertions.
  std::vector<std::string> VolumeFiles(const std::string& name) const;
  /// The port of the command router (a server of its own).
  int router_port() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace sandrun::modal::fake

#endif  // SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_SERVER_H_
