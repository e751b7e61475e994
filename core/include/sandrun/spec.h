// What to run and where: SandboxSpec (the sandbox) and ExecRequest (one
// command in it). Both are plain data, backend-neutral. Anything only one
// backend understands (Modal app name, Docker host) lives in that plugin's own
// config section, never here.
#ifndef SANDRUN_SPEC_H_
#define SANDRUN_SPEC_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/status.h"

namespace sandrun {

/// Whether the sandbox may reach any network. sandrun's default is kNone.
enum class NetworkMode { kNone, kOpen };
std::string_view NetworkModeName(NetworkMode mode);  // "none" / "open"

/// One host file or directory copied into the sandbox before the command runs.
/// `destination` is relative to the sandbox's working directory and stays
/// inside it (see CheckSandboxRelativePath). As with `cp`, a destination that
/// names a directory ("", ".", "dir/", "dir/.") receives the source under
/// its own name (UploadDestination). A source that is a symlink is followed;
/// inside an uploaded directory, symlinks are kept only when they point
/// inside it.
struct FileUpload {
  std::string source;
  std::string destination;
  /// The source is an executable built on the host: also send the shared
  /// libraries it needs and their loader (found from its ELF headers), so it
  /// runs in an image that lacks them. See portable_exe.h.
  bool portable = false;
};

/// A sandbox: an isolated place where one or more commands run.
struct SandboxSpec {
  std::string image;          ///< Empty: the backend's default (local: host).
  /// Build the image from this Dockerfile (its directory is the context)
  /// instead of using `image`. Backends without images refuse it.
  std::string dockerfile;
  double cpu = 0;             ///< Cores; 0 = backend default.
  std::int64_t memory_mb = 0; ///< 0 = backend default.
  std::string gpu;            ///< "A10G:1"; empty = none.
  /// Hard limit on the sandbox's whole life, so a sandbox leaked by a killed
  /// host process still ends by itself.
  std::chrono::seconds lifetime{3600};
  /// Relative to the backend's own sandbox directory, inside it; empty = that
  /// directory itself.
  std::string workdir;
  std::map<std::string, std::string> env;
  NetworkMode network = NetworkMode::kNone;
  std::vector<FileUpload> uploads;
  /// Identifying labels, always including "managed-by=sandrun", run and task.
  std::map<std::string, std::string> labels;
};

/// Which stream a chunk of output came from.
enum class StreamKind { kStdout, kStderr };

/// Called from the executing thread as output arrives. Must be thread-safe if
/// shared between requests; must not block for long.
using OutputCallback = std::function<void(StreamKind, std::string_view)>;

/// One command to run inside a sandbox.
class CommandStop;  // Below.

struct ExecRequest {
  std::vector<std::string> argv;  ///< Never a shell string unless the user gave one.
  std::map<std::string, std::string> env;  ///< On top of the sandbox's env.
  std::string cwd;                ///< Relative to the sandbox workdir, inside it.
  std::optional<std::string> stdin_data;   ///< Unset: stdin is empty (/dev/null).
  /// Backend-enforced limit; zero means none. The engine adds its own
  /// host-side deadline on top.
  std::chrono::milliseconds timeout{0};
  /// Bytes of each stream kept in memory and in the record; the whole stream
  /// goes to `spill_dir` when that is set.
  std::size_t output_cap_bytes = 1 << 20;
  /// Where the full stdout/stderr are written (stdout.log, stderr.log).
  /// Empty: nothing is spilled.
  std::string spill_dir;
  /// Live output; may be empty.
  OutputCallback on_output;
  /// Requested when this command alone is to end (a cancelled task in a
  /// sandbox other tasks share); null: never. A backend whose Capabilities
  /// say cancels_one_command ends the command and everything it started,
  /// promptly, and returns Outcome::kCancelled with ended_by kEndedByCancel;
  /// one that cannot spare the sandbox may end it as Terminate() does.
  std::shared_ptr<CommandStop> stop;
};

/// The engine's request that one command end (ExecRequest::stop), and the
/// backend's way to hear it. Thread-safe. (Public headers stay C++17, so
/// this is not std::stop_token.)
class CommandStop {
 public:
  /// Asks, once; runs the listener, if there is one, in this thread (not
  /// under a lock: a second Request() returns at once).
  void Request();
  bool requested() const;

  /// Runs `on_stop` when the stop is requested while it exists (at once if
  /// it already was); does nothing for a null `stop`. The destructor waits
  /// for an `on_stop` under way, so what it refers to may go right after.
  /// One listener at a time per CommandStop.
  class Listener {
   public:
    Listener(std::shared_ptr<CommandStop> stop, std::function<void()> on_stop);
    ~Listener();
    Listener(const Listener&) = delete;
    Listener& operator=(const Listener&) = delete;

   private:
    std::shared_ptr<CommandStop> stop_;
  };

 private:
  mutable std::mutex mu_;
  std::condition_variable idle_;     // A running on_stop has returned.
  bool requested_ = false;           // Guarded by mu_.
  bool running_ = false;             // Guarded by mu_: on_stop_ is being run.
  std::function<void()> on_stop_;    // Guarded by mu_.
};

/// The rule for every path a task names inside its sandbox (upload
/// destinations, downloads, cwd, workdir), on every backend: relative, and no
/// ".." component, so it can only lead into the sandbox. `what` names the
/// field for the message ("upload destination"). Empty is refused too; callers
/// skip the check where empty means "the default". kInvalidArgument says
/// which rule `path` breaks.
Status CheckSandboxRelativePath(std::string_view what, std::string_view path);

/// Where `upload` lands, relative to the working directory, on every
/// backend: its destination, or, when that is empty or names a directory
/// (".", "dir/", "dir/."), the source's own name inside it; lexically
/// normal, never "." or empty. A destination that breaks
/// CheckSandboxRelativePath is refused as given (kInvalidArgument).
Result<std::string> UploadDestination(const FileUpload& upload);

/// Whether an empty path is refused or names the base directory itself.
enum class EmptySandboxPath { kRefused, kIsBase };

/// `path` checked by CheckSandboxRelativePath and joined to `base`, an
/// absolute directory inside the sandbox (its working directory): the
/// lexically normal, '/'-separated absolute path a remote backend hands its
/// sandbox. "." is `base` itself, and so is "" when `empty` says so.
Result<std::string> JoinSandboxPath(std::string_view what, std::string_view base,
                                    std::string_view path,
                                    EmptySandboxPath empty = EmptySandboxPath::kRefused);

}  // namespace sandrun

#endif  // SANDRUN_SPEC_H_
