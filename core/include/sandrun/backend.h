// The Backend plugin interface: what every kind of sandbox (local processes,
// Docker, Modal) provides. The engine sees only this; it never names a backend
// and branches on Capabilities, never on Name().
//
// Threading: a Backend is shared by all of a run's worker threads, so its
// methods must be thread-safe. A Sandbox is used by one worker at a time
// unless the backend says it runs several tasks at once
// (Capabilities::tasks_per_sandbox); Terminate() may always be called from
// any thread while Exec() is blocked (host deadline, Ctrl-C, --race).
#ifndef SANDRUN_BACKEND_H_
#define SANDRUN_BACKEND_H_

#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/result.h"
#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun {

class ArchiveStore;

/// What a backend can honour. A spec field the backend cannot enforce is not
/// silently ignored: the result carries a note, and the conformance suite
/// records the case as unsupported.
struct Capabilities {
  bool isolates_network = false;   ///< NetworkMode::kNone really blocks traffic.
  bool limits_memory = false;
  bool limits_cpu = false;
  bool supports_gpu = false;
  bool supports_images = false;    ///< SandboxSpec::image selects a root filesystem.
  bool reports_oom = false;        ///< Can tell an OOM kill from other kills.
  int max_parallel = 0;            ///< Suggested -j; 0 = no opinion.
  /// How many tasks one warm sandbox (Isolation::kProcess) runs well at
  /// once. Above 1, a Sandbox's Put, Exec and Get may be called from that
  /// many threads at once, and a timeout ends only its own command's
  /// processes. The run's pool (RunOptions) may ask for fewer.
  int tasks_per_sandbox = 1;
  /// Exec honours ExecRequest::stop: a cancelled task in a shared sandbox
  /// ends alone. Otherwise the engine ends the whole sandbox, and the other
  /// tasks in it are retried.
  bool cancels_one_command = false;
};

/// A sandbox that exists. Destroying the handle terminates it.
class Sandbox {
 public:
  virtual ~Sandbox() = default;

  /// Backend-specific id (container id, Modal sandbox id, local directory).
  virtual const std::string& Id() const = 0;

  /// Copies a host file or directory in. Blocks. Fails with kNotFound when the
  /// source is missing.
  virtual Status Put(const FileUpload& upload) = 0;

  /// Copies a task's uploads in, in order, as Put would one by one; a
  /// backend for which each call is a round trip sends them together. The
  /// error names the upload that failed. Default: Put each.
  virtual Status PutAll(const std::vector<FileUpload>& uploads) {
    for (const auto& upload : uploads) {
      Status status = Put(upload);
      if (!status.ok()) return status.WithContext("uploading " + upload.source);
    }
    return OkStatus();
  }

  /// Runs one command and blocks until it ends, times out, or Terminate() is
  /// called. A command that fails, crashes or times out is a successful call
  /// with that outcome. An infrastructure failure (the sandbox died or was
  /// killed from outside, output was lost, the daemon went away) is a non-OK
  /// Result, kUnavailable when a fresh attempt may work: the engine retries
  /// those, and only it reports Outcome::kInfraError, once retries run out.
  /// After Terminate(), returns promptly with Outcome::kCancelled and the
  /// output captured so far.
  virtual Result<ExecResult> Exec(const ExecRequest& request) = 0;

  /// Copies `sandbox_path` (file or directory) into `host_dir`, refusing
  /// anything that would land outside it. Returns the host paths written,
  /// relative to host_dir. Fails with kNotFound when the path is missing.
  virtual Result<std::vector<std::string>> Get(
      const std::string& sandbox_path, const std::filesystem::path& host_dir) = 0;

  /// Kills everything running in the sandbox and releases it. Idempotent,
  /// callable from any thread, concurrently with Exec().
  virtual Status Terminate() = 0;
};

/// A sandbox left behind by an earlier run (found by its labels).
struct Leftover {
  std::string id;
  std::map<std::string, std::string> labels;
  bool owner_alive = false;  ///< The host process that created it still runs.
  bool expired = false;      ///< Its lifetime has passed.
  std::string description;   ///< One line for `sandrun cleanup --dry-run`.
  /// Set when the backend keeps this whatever its owner or lifetime (a
  /// shared helper, not a sandbox): what it is and why it stays, for humans.
  std::string keep_reason;
};

class Backend {
 public:
  virtual ~Backend() = default;

  /// The name it was registered under ("local", "docker", "modal").
  virtual std::string_view Name() const = 0;
  virtual Capabilities GetCapabilities() const = 0;

  /// Checks, cheaply, that a run can start (daemon reachable, credentials
  /// present). OK: usable. Otherwise the message says why not, for humans
  /// ("docker: cannot reach the engine at DOCKER_HOST=...: ..."), and the code
  /// says what kind of why: kUnavailable for an engine or service that does
  /// not answer, kFailedPrecondition for missing or unreadable credentials or
  /// settings, kPermissionDenied for rejected ones. Never throws.
  virtual Status CheckAvailable() = 0;

  /// Checks, before a run exists, what only this backend can judge about a
  /// task's sandbox: limits it cannot give (more CPUs than it has), an image
  /// that exists nowhere. Called after CheckAvailable() succeeded, once per
  /// task. kInvalidArgument is bad input: the message names the problem and
  /// the run does not start. Any other error means it could not check (the
  /// run goes ahead and Create reports what it finds). Default: OK.
  virtual Status ValidateSpec(const SandboxSpec& spec) {
    (void)spec;
    return OkStatus();
  }

  /// Creates a sandbox. Uploads in the spec are NOT done here; the engine
  /// calls Sandbox::Put so it can time them.
  virtual Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) = 0;

  /// Sandboxes carrying sandrun's labels. Never lists anything without them.
  virtual Result<std::vector<Leftover>> ListLeftovers() = 0;
  /// Removes one leftover by id (as ListLeftovers returned it).
  virtual Status RemoveLeftover(const std::string& id) = 0;

  /// The result archive kept in this backend's volume.
  virtual Result<std::unique_ptr<ArchiveStore>> OpenArchive() = 0;
};

}  // namespace sandrun

#endif  // SANDRUN_BACKEND_H_
