// Internal to plugins/modal: what the Modal backend's rooms share. Shared is
// the connection state one backend hands to each of its sandboxes; a
// ModalSandbox is one Modal Sandbox, its methods spread by concern:
//   modal_exec.cc     Exec and the raw executor under it (router calls,
//                     output streams, the sandbox ending under a command)
//   modal_files.cc    Put and Get through the in-sandbox file tool
//   modal_backend.cc  Terminate, with the Backend that creates sandboxes
// Includes the generated gRPC headers (through modal_client.h): never
// included by a public header.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_SANDBOX_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_SANDBOX_H_

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "modal_backend.h"
#include "modal_client.h"
#include "modal_exe_cache.h"
#include "sandrun/backend.h"
#include "sandrun/portable_exe.h"

namespace sandrun::modal {

namespace fs = std::filesystem;
namespace mc = ::modal::client;
namespace tcr = ::modal::task_command_router;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

inline std::string Tail(const std::string& text, std::size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

/// "TIMEOUT" for GENERIC_STATUS_TIMEOUT; the number for a status this
/// build's .proto does not know.
inline std::string GenericStatusName(int status) {
  const std::string& name =
      mc::GenericResult::GenericStatus_Name(static_cast<mc::GenericResult::GenericStatus>(status));
  constexpr std::string_view kPrefix = "GENERIC_STATUS_";
  if (name.empty()) return std::to_string(status);
  return name.substr(name.rfind(kPrefix, 0) == 0 ? kPrefix.size() : 0);
}

struct Shared {
  ModalOptions options;
  std::shared_ptr<ControlPlane> control;
  std::string environment;
  std::string app_id;
  bool plaintext = false;
  /// Create sandboxes with SandboxCreateV2 (ModalCredentials::sandbox_v2);
  /// GPU sandboxes are V1 regardless, as in the SDKs.
  bool sandbox_v2 = true;
  RouterDial router_dial;
  /// From the profile or MODAL_IMAGE_BUILDER_VERSION; "" = ask the
  /// environment (builder_versions).
  std::string profile_builder_version;
  // Lookups every first sandbox needs: one call in flight per key, shared
  // by all waiters (single_flight.h).
  SingleFlight<std::string> images;            // dockerfile commands -> image id
  SingleFlight<std::string> builder_versions;  // environment -> builder version
  SingleFlight<std::string> volume_ids;        // volume name -> volume id
  SingleFlight<std::vector<std::string>> secret_ids;  // "" -> ids of options.secrets
  std::unique_ptr<ExeCache> exe_cache;         // Null: disabled.
};

/// The id of Volume `name` in the environment, created as version 2 when
/// missing; one lookup per name in flight (Shared::volume_ids). An existing
/// version 1 Volume is kFailedPrecondition naming `setting`, the backend key
/// that names it.
Result<std::string> VolumeIdFor(Shared& shared, const std::string& name,
                                std::string_view setting);

/// Which generation of Modal's sandbox API a sandbox belongs to. The rule
/// is the Go and JS SDKs' (go/sandbox.go, isV1SandboxId in the JS SDK):
/// by the id's shape, "sb-" followed by exactly 22 base62 characters is a
/// V1 sandbox; any other id is V2 and takes the ...V2 calls. The id shape is
/// used everywhere, for the sandboxes this backend made and for leftovers
/// found by listing, so one rule routes every call.
bool IsV1SandboxId(std::string_view sandbox_id);

// The control-plane calls on one sandbox, each sent as SandboxX or
// SandboxXV2 according to IsV1SandboxId (modal_sandbox_calls.cc).
Status TerminateSandbox(ControlPlane& control, const std::string& sandbox_id);
/// SandboxWait with `timeout_s` (0: a poll).
Result<mc::SandboxWaitResponse> WaitSandbox(ControlPlane& control, const std::string& sandbox_id,
                                            float timeout_s);
/// SandboxGetTaskId, once.
Result<mc::SandboxGetTaskIdResponse> SandboxTaskId(ControlPlane& control,
                                                   const std::string& sandbox_id);
/// The sandbox's tags (SandboxTagsGet; SandboxList does not expose them).
Result<std::map<std::string, std::string>> SandboxTags(ControlPlane& control,
                                                       const std::string& sandbox_id);
/// Command-router access: SandboxGetCommandRouterAccess{sandbox_id} for V2,
/// TaskGetCommandRouterAccess{task_id} for V1.
Result<RouterAccess> SandboxRouterAccess(ControlPlane& control, const std::string& sandbox_id,
                                         const std::string& task_id);

// Output of one exec, as the sandbox's raw executor sees it.
struct RawExec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string workdir;
  const std::string* stdin_data = nullptr;
  milliseconds timeout{0};
  std::function<void(std::string_view)> on_stdout;
  std::function<void(std::string_view)> on_stderr;
};

struct RawResult {
  bool has_code = false;
  int code = 0;
  int signal = 0;
  bool host_deadline = false;  // The host gave up waiting at the deadline.
  bool cancelled = false;      // Terminate() interrupted it.
  bool router_silent = false;  // Neither a wait nor the last poll was answered.
  Clock::duration elapsed{};
  Status stdio_status;         // A stdio stream that could not be resumed.
  bool streams_left_open = false;  // Output still open 10 s after the exit.
};

class ModalSandbox : public Sandbox {
 public:
  ModalSandbox(std::shared_ptr<Shared> shared, std::string sandbox_id, std::string task_id,
               std::unique_ptr<CommandRouter> router, std::string workdir,
               std::map<std::string, std::string> env, std::vector<std::string> notes,
               std::chrono::seconds lifetime, Clock::time_point expires,
               std::set<std::string> portable_mounted = {})
      : shared_(std::move(shared)),
        id_(std::move(sandbox_id)),
        task_id_(std::move(task_id)),
        router_(std::move(router)),
        workdir_(std::move(workdir)),
        env_(std::move(env)),
        notes_(std::move(notes)),
        lifetime_(lifetime),
        expires_(expires),
        portable_sent_(std::move(portable_mounted)) {}
  ~ModalSandbox() override { Terminate().IgnoreError(); }

  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload& upload) override;
  /// All of a task's files as one tar, unpacked by the image's `tar` in one
  /// exec; a file at a time (Put) when the image has none.
  Status PutAll(const std::vector<FileUpload>& uploads) override;
  Result<ExecResult> Exec(const ExecRequest& request) override;
  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const fs::path& host_dir) override;
  Status Terminate() override;

  std::uint64_t router_calls() const { return router_->calls(); }

 private:
  Result<RawResult> RunRaw(const RawExec& exec);
  // Get for an image without tar: lists `remote` (sandbox_path in the
  // workdir, last component `base`) with the shell, then reads each file.
  Result<std::vector<std::string>> GetFileByFile(const std::string& sandbox_path,
                                                 const std::string& remote,
                                                 const std::string& base,
                                                 const fs::path& host_dir);
  // The sandbox's final status if it has ended ("" while it runs).
  std::string SandboxEnded();
  // The error for a command whose router stopped answering (retryable).
  Status RouterStoppedAnswering() const;
  // The retryable infrastructure error for a sandbox that ended (evicted,
  // killed from outside) while a command ran in it.
  Status EndedWhileRunning(const std::string& final_status) const;
  // Where `upload` lands in the sandbox (absolute); kNotFound when its
  // source is missing.
  Result<std::string> UploadTarget(const FileUpload& upload) const;
  // The files a portable upload brings (its libraries and loader).
  Result<PortablePlan> PortablePlanFor(const FileUpload& upload) const;
  // A file command's exec: `argv` in the workdir, with the sandbox's env.
  RawExec FileCommand(std::vector<std::string> argv) const;
  // Runs a file command: its exit code (-1 when a signal ended it), its
  // stderr (the first 64 KiB) in *err. A terminated sandbox or a lost
  // stream is the error instead.
  Result<int> RunFileExec(RawExec exec, std::string* err);
  // Runs the in-sandbox file tool with `command` (a JSON object).
  Status FsTool(const json& command, const std::string* stdin_data,
                const std::function<void(std::string_view)>& on_stdout);
  /// Writes `data` to `path`, its parent directories made and its mode 0755
  /// when `executable`: one exec with /bin/sh (the file tool would take
  /// three: MakeDirectory, WriteFile, then chmod for the mode it lacks).
  Status PutFile(const std::string& path, const std::string& data, bool executable);
  /// `mkdir -p` of every path, in as few execs as the command line allows.
  Status MakeDirectories(const std::vector<std::string>& paths);
  /// Makes symlinks in one exec; `pairs` alternates target and path.
  Status MakeSymlinks(const std::vector<std::string>& pairs);
  /// Runs a short file command (mkdir, ln, a write) in the workdir, with
  /// `stdin_data` if given; its stderr names the failure.
  Status RunFileCommand(std::vector<std::string> argv, const std::string& what,
                        const std::string* stdin_data = nullptr);
  Status ReadStdio(CallCanceller* canceller, const std::string& exec_id,
                   tcr::TaskExecStdioFileDescriptor fd,
                   const std::function<void(std::string_view)>& sink);

  std::shared_ptr<Shared> shared_;
  std::string id_;
  std::string task_id_;
  std::unique_ptr<CommandRouter> router_;
  std::string workdir_;
  std::map<std::string, std::string> env_;
  std::vector<std::string> notes_;
  std::chrono::seconds lifetime_;
  // When Modal ends the sandbox (its timeout_secs); taken before it existed,
  // so the host's own bound comes first.
  Clock::time_point expires_;

  std::mutex mu_;
  bool terminated_ = false;              // Guarded by mu_.
  std::set<CallCanceller*> active_;      // Guarded by mu_.
  std::atomic<bool> no_tar_{false};      // The image has no `tar`.
  std::mutex closure_mu_;                // Held by the PutAll sending portable files.
  std::mutex portable_mu_;
  std::set<std::string> portable_sent_;  // Guarded by portable_mu_.
};

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_SANDBOX_H_
