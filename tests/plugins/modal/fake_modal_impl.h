// Inside the fake Modal server (fake_modal_server.h): the Impl class that
// serves both gRPC services, and the pieces its rooms share. Each room is
// one file:
//   fake_modal_server.cc   start and stop, small helpers, inspection
//   fake_modal_control.cc  control plane: apps, images, secrets
//   fake_modal_sandboxes.cc  sandboxes, V1 and V2, and their tags
//   fake_modal_router.cc   task command router: exec, stdio, wait, processes
//   fake_modal_volumes.cc  volume RPCs and the block HTTP server
//   fake_modal_faults.cc   credentials checks and fault injection
//   fake_modal_containers.cc  container mode: sandboxes as Docker containers
#ifndef SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_IMPL_H_
#define SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_IMPL_H_

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fake_modal_server.h"
#include "modal_client.grpc.pb.h"
#include "task_command_router.grpc.pb.h"

namespace sandrun::modal::fake {

namespace fs = std::filesystem;
namespace mc = ::modal::client;
namespace tcr = ::modal::task_command_router;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

inline constexpr const char* kFsTools = "/__modal/.bin/modal-sandbox-fs-tools";
inline constexpr std::size_t kChunk = 64 * 1024;
inline constexpr std::size_t kBlock = 8 * 1024 * 1024;

std::string Hex(std::string_view bytes);
std::string RandomId(const std::string& prefix, int n);
std::string Base64Url(const std::string& in);
std::string MakeJwt(double exp, const std::string& subject);
double NowSeconds();
std::string Metadata(const grpc::ServerContext* context, const std::string& key);

struct Exec {
  std::string id;
  pid_t pid = -1;
  bool is_virtual = false;   // fs-tool op handled in-process
  std::string stdout_path, stderr_path;
  int stdin_fd = -1;         // write end of the child's stdin pipe
  int write_file_fd = -1;    // WriteFile target for virtual execs
  std::uint64_t stdin_offset = 0;
  bool stdin_closed = false;
  bool fs_tool = false;      // a file-tool op run as a process (container mode)
  bool signal_from_code = false;  // 128+N from `docker exec` means signal N
  bool finished = false;
  bool has_code = false;
  int code = 0;
  int signal = 0;
  std::mutex stdin_mu;
};

enum class ContainerState { kNone, kStarting, kReady, kFailed };

struct FakeSandbox {
  std::string id, task_id, app_id, jwt;
  std::map<std::string, std::string> tags;
  fs::path root;
  std::string workdir = "/";
  int network_type = 0;
  double created_at = 0;
  Clock::time_point ready_at;         // when the task id is handed out
  Clock::time_point router_ready_at;  // when its command router answers
  bool running = true;
  int result_status = 0;
  bool foreign = false;
  bool v2 = false;  // created with SandboxCreateV2; served by the V2 calls only
  std::map<std::string, std::shared_ptr<Exec>> execs;
  FakeSandboxDefinition definition;
  std::map<std::string, std::string> secret_env;  // from the attached secrets
  // Container mode only:
  ContainerState container_state = ContainerState::kNone;
  std::string container_error;
  bool container_removed = false;  // `docker rm -f` started
  bool container_gone = false;     // and finished
};

struct Fault {
  int fail_before = 0, fail_before_code = 14;
  int fail_after = 0, fail_after_code = 14;
  int throttle = 0;
  double retry_after = 0;
};

// A tiny HTTP/1.1 server for volume block URLs: GET /block/<hex> and
// PUT /put/<hex>; one thread per connection (fake_modal_volumes.cc).
class BlockHttpServer {
 public:
  /// GET: fills *data with the block named by `hash_hex`; PUT: stores *data
  /// and sets *data to the body to answer. False: 404 (GET) or 400 (PUT).
  using Store = std::function<bool(const std::string& hash_hex, std::string* data, bool put)>;
  explicit BlockHttpServer(Store store) : store_(std::move(store)) {}
  ~BlockHttpServer() { Stop(); }
  bool Start();
  void Stop();
  int port() const { return port_; }
  void FailNext(const std::string& method, int n, BlockFault fault);

 private:
  void Loop();
  void Serve(int client);
  // The fault to apply to this request, if one is pending for `method`.
  bool TakeFault(const std::string& method, BlockFault* fault);

  Store store_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex fault_mu_;
  std::string fault_method_;  // Guarded by fault_mu_, as the two below.
  int faults_left_ = 0;
  BlockFault fault_ = BlockFault::kError;
};

#define FAKE_ENTER(rpc, control, token)                                 \
  do {                                                                  \
    grpc::Status entered = Enter(context, rpc, control, token);         \
    if (!entered.ok()) return entered;                                  \
  } while (0)

class FakeModalServer::Impl final : public mc::ModalClient::Service,
                                    public tcr::TaskCommandRouter::Service {
 public:  explicit Impl(FakeOptions options) : options_(std::move(options)) {}
  ~Impl() override;
  bool Start();

  // ---- common checks and faults (fake_modal_faults.cc) ----
  // Called first by every handler: latency, counting, credentials, faults.
  grpc::Status Enter(grpc::ServerContext* context, const std::string& rpc, bool control,
                     bool needs_auth_token);
  // Blocks while the fake is frozen (Freeze()); CANCELLED once the caller
  // gave up meanwhile, OK otherwise.
  grpc::Status WhileFrozen(grpc::ServerContext* context);
  // After a handler did its work: a lost response, if injected.
  grpc::Status Leave(const std::string& rpc, grpc::Status status);

  // ---- control plane: apps, images, secrets (fake_modal_control.cc) ----
  // Records an environment name; unknown ("missing...") ones are NOT_FOUND.
  grpc::Status SeeEnvironment(const std::string& name);
  grpc::Status AuthTokenGet(grpc::ServerContext* context, const mc::AuthTokenGetRequest*,
                            mc::AuthTokenGetResponse* response) override;
  grpc::Status AppGetOrCreate(grpc::ServerContext* context, const mc::AppGetOrCreateRequest* request,
                              mc::AppGetOrCreateResponse* response) override;
  grpc::Status EnvironmentGetOrCreate(grpc::ServerContext* context,
                                      const mc::EnvironmentGetOrCreateRequest*,
                                      mc::EnvironmentGetOrCreateResponse* response) override;
  grpc::Status ImageGetOrCreate(grpc::ServerContext* context,
                                const mc::ImageGetOrCreateRequest* request,
                                mc::ImageGetOrCreateResponse* response) override;
  grpc::Status ImageJoinStreaming(grpc::ServerContext* context,
                                  const mc::ImageJoinStreamingRequest* request,
                                  grpc::ServerWriter<mc::ImageJoinStreamingResponse>* writer) override;
  grpc::Status SecretGetOrCreate(grpc::ServerContext* context,
                                 const mc::SecretGetOrCreateRequest* request,
                                 mc::SecretGetOrCreateResponse* response) override;
  // The values of a secret's variables, added to *env (NOT_FOUND if unknown).
  grpc::Status SecretEnvLocked(const std::string& secret_id, std::map<std::string, std::string>* env);
  // Adds the variables of secret sources (fake_modal_sdk_fields.proto: the
  // values themselves, or a secret by id) to *env.
  template <typename SecretSources>
  grpc::Status AddSecretSourcesLocked(const SecretSources& sources,
                                      std::map<std::string, std::string>* env) {
    for (const auto& source : sources) {
      if (source.has_env()) {
        for (const auto& [k, v] : source.env().contents()) (*env)[k] = v;
      } else if (grpc::Status found = SecretEnvLocked(source.secret_id(), env); !found.ok()) {
        return found;
      }
    }
    return grpc::Status::OK;
  }

  // ---- sandboxes, V1 and V2 (fake_modal_sandboxes.cc) ----
  // Each V1/V2 pair shares one handler; `v2` picks the family, whose RPCs
  // find only sandboxes of that family.
  grpc::Status CreateSandboxLocked(const std::string& app_id, const mc::Sandbox& def,
                                   const google::protobuf::RepeatedPtrField<mc::SandboxTag>& tags,
                                   bool v2, const std::map<std::string, std::string>& env,
                                   std::shared_ptr<FakeSandbox>* out);
  grpc::Status FindSandboxLocked(const std::string& sandbox_id, bool v2,
                                 std::shared_ptr<FakeSandbox>* out);
  // A fresh router JWT for the sandbox, and the router's URL.
  void GrantRouterAccessLocked(FakeSandbox& sandbox, std::string* jwt, std::string* url);
  grpc::Status GetTaskId(grpc::ServerContext* context, const mc::SandboxGetTaskIdRequest* request,
                         mc::SandboxGetTaskIdResponse* response, bool v2);
  grpc::Status Terminate(grpc::ServerContext* context, const mc::SandboxTerminateRequest* request,
                         mc::SandboxTerminateResponse* response, bool v2);
  grpc::Status Wait(grpc::ServerContext* context, const mc::SandboxWaitRequest* request,
                    mc::SandboxWaitResponse* response, bool v2);
  grpc::Status List(grpc::ServerContext* context, const mc::SandboxListRequest* request,
                    mc::SandboxListResponse* response, bool v2);
  grpc::Status TagsGet(grpc::ServerContext* context, const mc::SandboxTagsGetRequest* request,
                       mc::SandboxTagsGetResponse* response, bool v2);
  grpc::Status TagsSet(grpc::ServerContext* context, const mc::SandboxTagsSetRequest* request, bool v2);

  grpc::Status SandboxCreate(grpc::ServerContext* context, const mc::SandboxCreateRequest* request,
                             mc::SandboxCreateResponse* response) override;
  grpc::Status SandboxCreateV2(grpc::ServerContext* context, const mc::SandboxCreateV2Request* request,
                               mc::SandboxCreateV2Response* response) override;
  grpc::Status TaskGetCommandRouterAccess(grpc::ServerContext* context,
                                          const mc::TaskGetCommandRouterAccessRequest* request,
                                          mc::TaskGetCommandRouterAccessResponse* response) override;
  grpc::Status SandboxGetCommandRouterAccess(grpc::ServerContext* context,
                                             const mc::SandboxGetCommandRouterAccessRequest* request,
                                             mc::SandboxGetCommandRouterAccessResponse* response) override;
  grpc::Status SandboxGetTaskId(grpc::ServerContext* c, const mc::SandboxGetTaskIdRequest* q,
                                mc::SandboxGetTaskIdResponse* r) override { return GetTaskId(c, q, r, false); }
  grpc::Status SandboxGetTaskIdV2(grpc::ServerContext* c, const mc::SandboxGetTaskIdRequest* q,
                                  mc::SandboxGetTaskIdResponse* r) override { return GetTaskId(c, q, r, true); }
  grpc::Status SandboxTerminate(grpc::ServerContext* c, const mc::SandboxTerminateRequest* q,
                                mc::SandboxTerminateResponse* r) override { return Terminate(c, q, r, false); }
  grpc::Status SandboxTerminateV2(grpc::ServerContext* c, const mc::SandboxTerminateRequest* q,
                                  mc::SandboxTerminateResponse* r) override { return Terminate(c, q, r, true); }
  grpc::Status SandboxWait(grpc::ServerContext* c, const mc::SandboxWaitRequest* q,
                           mc::SandboxWaitResponse* r) override { return Wait(c, q, r, false); }
  grpc::Status SandboxWaitV2(grpc::ServerContext* c, const mc::SandboxWaitRequest* q,
                             mc::SandboxWaitResponse* r) override { return Wait(c, q, r, true); }
  grpc::Status SandboxList(grpc::ServerContext* c, const mc::SandboxListRequest* q,
                           mc::SandboxListResponse* r) override { return List(c, q, r, false); }
  grpc::Status SandboxListV2(grpc::ServerContext* c, const mc::SandboxListRequest* q,
                             mc::SandboxListResponse* r) override { return List(c, q, r, true); }
  grpc::Status SandboxTagsGet(grpc::ServerContext* c, const mc::SandboxTagsGetRequest* q,
                              mc::SandboxTagsGetResponse* r) override { return TagsGet(c, q, r, false); }
  grpc::Status SandboxTagsGetV2(grpc::ServerContext* c, const mc::SandboxTagsGetRequest* q,
                                mc::SandboxTagsGetResponse* r) override { return TagsGet(c, q, r, true); }
  grpc::Status SandboxTagsSet(grpc::ServerContext* c, const mc::SandboxTagsSetRequest* q,
                              google::protobuf::Empty*) override { return TagsSet(c, q, false); }
  grpc::Status SandboxTagsSetV2(grpc::ServerContext* c, const mc::SandboxTagsSetRequest* q,
                                google::protobuf::Empty*) override { return TagsSet(c, q, true); }
  bool AppExistsLocked(const std::string& app_id);
  // The router of a sandbox answers only after router_ready_delay.
  static grpc::Status RouterReady(const FakeSandbox& sandbox);
  void KillLocked(FakeSandbox& sandbox, int status);

  // Builds image `image_id` unless it is built or being built (then waits
  // for that): a `docker build` in container mode, in process mode a build
  // that fails only for a step naming sandrun-fake-fail-build. Its final
  // status (1 built, 2 failed; 0 unknown id) and its log. Not under mu_.
  int BuildImageOnce(const std::string& image_id, std::string* log);

  // ---- container mode (fake_modal_containers.cc) ----
  std::string ContainerName(const FakeSandbox& sandbox) const;
  // A local image for "FROM ref": ref itself when the engine has it, else
  // the busybox or Debian test image.
  std::string LocalImageFor(const std::string& from_line) const;
  bool BuildContainerImage(const std::string& image_id, const std::vector<std::string>& commands,
                           std::string* log);
  std::vector<std::string> ContainerRunArgs(const mc::Sandbox& def, const FakeSandbox& sandbox);
  void StartContainer(std::shared_ptr<FakeSandbox> sandbox, std::string image,
                      std::vector<std::string> run_args);
  // Removes the container on a thread of its own; AwaitContainerGone waits
  // for that (terminate answers once the sandbox's processes are gone).
  void RemoveContainerLocked(FakeSandbox& sandbox);
  void AwaitContainerGone(std::unique_lock<std::mutex>& lock, const FakeSandbox& sandbox);
  void RemoveBuiltImages();
  std::vector<std::string> ContainerExecArgv(const FakeSandbox& sandbox,
                                             const std::vector<std::string>& argv,
                                             const std::string& cwd,
                                             const std::map<std::string, std::string>& env,
                                             std::uint32_t timeout_secs) const;
  bool ContainerFsToolArgv(const FakeSandbox& sandbox, const std::string& op, const json& args,
                           std::vector<std::string>* argv, bool* takes_stdin) const;
  void FsToolResult(Exec& exec);
  // A volume's files as a host directory, for bind mounts into containers.
  fs::path VolumeMirror(const std::string& volume_id) const;
  void MirrorVolumeFileLocked(const std::string& volume_id, const std::string& path,
                              const std::string& data, std::uint32_t mode);
  void WatchLifetimeLocked(const std::shared_ptr<FakeSandbox>& sandbox,
                           std::uint32_t lifetime_secs, std::uint32_t idle_secs);

  // ---- volumes and their blocks (fake_modal_volumes.cc) ----
  static std::string BlockHash(std::string_view block);
  grpc::Status VolumeGetOrCreate(grpc::ServerContext* context,
                                 const mc::VolumeGetOrCreateRequest* request,
                                 mc::VolumeGetOrCreateResponse* response) override;
  grpc::Status VolumeListFiles2(grpc::ServerContext* context,
                                const mc::VolumeListFiles2Request* request,
                                grpc::ServerWriter<mc::VolumeListFiles2Response>* writer) override;
  grpc::Status VolumeGetFile2(grpc::ServerContext* context, const mc::VolumeGetFile2Request* request,
                              mc::VolumeGetFile2Response* response) override;
  grpc::Status VolumePutFiles2(grpc::ServerContext* context, const mc::VolumePutFiles2Request* request,
                               mc::VolumePutFiles2Response* response) override;
  grpc::Status VolumeRemoveFile2(grpc::ServerContext* context,
                                 const mc::VolumeRemoveFile2Request* request,
                                 google::protobuf::Empty*) override;
  // The volume of a *2 call, which must be a version 2 volume.
  grpc::Status VolumeV2Locked(const std::string& volume_id,
                              std::map<std::string, std::string>** files);
  // The block store behind the block HTTP server (BlockHttpServer::Store).
  bool BlockStore(const std::string& hex, std::string* data, bool put);

  // ---- task command router: exec, stdio, wait (fake_modal_router.cc) ----
  // Router auth: the bearer JWT of the task's sandbox.
  grpc::Status RouterSandbox(grpc::ServerContext* context, const std::string& task_id,
                             std::shared_ptr<FakeSandbox>* out);
  grpc::Status TaskExecStart(grpc::ServerContext* context, const tcr::TaskExecStartRequest* request,
                             tcr::TaskExecStartResponse*) override;
  grpc::Status FindExec(grpc::ServerContext* context, const std::string& task_id,
                        const std::string& exec_id, std::shared_ptr<Exec>* out);
  grpc::Status TaskExecStdioRead(grpc::ServerContext* context,
                                 const tcr::TaskExecStdioReadRequest* request,
                                 grpc::ServerWriter<tcr::TaskExecStdioReadResponse>* writer) override;
  grpc::Status TaskExecStdinWrite(grpc::ServerContext* context,
                                  const tcr::TaskExecStdinWriteRequest* request,
                                  tcr::TaskExecStdinWriteResponse*) override;
  // Writes stdin from `offset` (what already arrived is skipped); closes it on eof.
  grpc::Status WriteStdin(Exec& exec, std::uint64_t offset, std::string_view data, bool eof);
  grpc::Status TaskExecStdinWriteStream(grpc::ServerContext* context,
                                        grpc::ServerReader<tcr::TaskExecStdinWriteStreamRequest>* reader,
                                        tcr::TaskExecStdinWriteStreamResponse*) override;
  grpc::Status TaskExecStdinStatus(grpc::ServerContext* context,
                                   const tcr::TaskExecStdinStatusRequest* request,
                                   tcr::TaskExecStdinStatusResponse* response) override;
  grpc::Status WaitFor(grpc::ServerContext* context, const std::string& task_id,
                       const std::string& exec_id, bool block, bool* has_code, int* code,
                       int* signal, bool* finished);
  grpc::Status TaskExecWait(grpc::ServerContext* context, const tcr::TaskExecWaitRequest* request,
                            tcr::TaskExecWaitResponse* response) override;
  grpc::Status TaskExecPoll(grpc::ServerContext* context, const tcr::TaskExecPollRequest* request,
                            tcr::TaskExecPollResponse* response) override;
  FakeSandbox* ByTaskLocked(const std::string& task_id);
  // Paths under /sandrun/ live in the sandbox's root directory.
  static std::string MapPath(const FakeSandbox& sandbox, const std::string& path);
  void FinishVirtual(Exec& exec, int code, const std::string& err_json);
  static std::string FsError(const std::string& kind, const std::string& message);
  void StartFsToolLocked(FakeSandbox& sandbox, const std::shared_ptr<Exec>& exec,
                         const std::vector<std::string>& argv);
  static std::vector<std::string> HostEnvironment();
  void StartProcessLocked(FakeSandbox& sandbox, const std::shared_ptr<Exec>& exec,
                          std::vector<std::string> argv, const std::string& cwd,
                          const std::map<std::string, std::string>& env, std::uint32_t timeout_secs);
  // Forks argv with stdin a pipe and stdout/stderr the exec's files; a reaper
  // thread records how it ended. `envp`/`cwd` are the host's for the child.
  void SpawnLocked(const std::shared_ptr<Exec>& exec, const std::vector<std::string>& argv,
                   const std::vector<std::string>& envp, const std::string& cwd,
                   bool block_network, std::uint32_t timeout_secs);

  // ---- state; from mu_ on, guarded by mu_ unless a comment says otherwise ----
  FakeOptions options_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  int router_port_ = 0;
  std::unique_ptr<grpc::Server> router_server_;  // the command router, a server of its own
  std::unique_ptr<BlockHttpServer> http_;
  fs::path scratch_;
  mutable std::mutex mu_;
  std::condition_variable exec_cv_;
  std::vector<std::thread> threads_;  // reapers and timers, joined at the end
  FakeStats stats_;
  std::mutex fault_mu_;
  std::map<std::string, Fault> faults_;  // Guarded by fault_mu_.
  int cut_streams_ = 0;
  std::uint64_t cut_bytes_ = 0;
  int expired_tokens_ = 0;
  milliseconds creation_delay_{0};
  milliseconds latency_{0};
  bool frozen_ = false;
  bool ignore_exec_timeouts_ = false;
  std::map<std::string, double> auth_tokens_;
  std::map<std::string, std::string> apps_;        // name -> id
  std::map<std::string, std::string> app_environments_;  // app id -> environment
  std::vector<std::string> environments_seen_;
  std::vector<std::string> exec_requests_;  // argv and env of every TaskExecStart
  std::map<std::string, std::map<std::string, std::string>> ephemeral_secrets_;  // id -> values
  // Images, the same in both modes: asked for, an image is pending; the
  // first join (or a sandbox created on it) builds it, later ones wait.
  std::map<std::string, int> images_;  // id -> final status (1 built, 2 failed), or:
  static constexpr int kImagePending = -1, kImageBuilding = -2;
  std::map<std::string, std::vector<std::string>> image_commands_;  // id -> its Dockerfile lines
  std::map<std::string, std::string> image_logs_;                   // id -> its build's log
  std::map<std::string, std::string> image_definitions_;            // id -> definition
  std::map<std::string, std::string> images_by_definition_;  // -> id, unless its build failed
  std::map<std::string, std::string> volume_ids_;  // name -> id
  std::map<std::string, int> volume_versions_;     // id -> FsVersion (1 or 2)
  std::map<std::string, std::map<std::string, std::string>> volumes_;  // id -> path -> data
  std::map<std::string, std::string> blocks_;      // raw sha256 -> bytes
  std::set<std::string> awaiting_put_response_;    // hashes reported missing, not yet confirmed
  std::map<std::string, std::shared_ptr<FakeSandbox>> sandboxes_;
  bool stopping_ = false;
  std::string instance_;                            // names this server's containers
  std::map<std::string, std::string> local_images_;  // image id -> local image (containers)
  std::vector<std::string> docker_built_images_;           // removed when the server stops

  friend class FakeModalServer;
};

}  // namespace sandrun::modal::fake

#endif  // SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_IMPL_H_
