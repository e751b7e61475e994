// The local backend: runs commands as processes on this host, one fresh
// directory per sandbox, no daemon needed.
//
// Layout of a sandbox, under <state_dir>/sandboxes/local/<id>/:
//   sandbox.json  manifest (owner pid and start time, host, lifetime, labels,
//                 running process groups) so leftovers can be found and reaped
//   work/         the working directory; relative paths in Put, Get and
//                 ExecRequest::cwd resolve against it
//   home/, tmp/   HOME and TMPDIR of the commands
//
// What it enforces: its own process group and, where the kernel allows, its
// own PID namespace per command (timeouts and Terminate() kill the whole
// tree, setsid'd grandchildren included; a killed sandrun takes it along
// through PR_SET_PDEATHSIG), a clean environment (only PATH, LANG, LC_ALL, TZ
// and LD_LIBRARY_PATH come from the host), and NetworkMode::kNone through new
// network and mount namespaces (empty /run, /var/run and /tmp, except the
// sandbox's own directories) where the kernel allows them. Both are probed
// once per backend; when one is missing, results carry a note (and say
// network_isolated=false). It cannot enforce memory, cpu or
// image: those are reported as notes, never pretended. `gpu` and `dockerfile`
// are refused with kUnimplemented.
#ifndef SANDRUN_PLUGINS_LOCAL_LOCAL_BACKEND_H_
#define SANDRUN_PLUGINS_LOCAL_LOCAL_BACKEND_H_

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/config.h"
#include "sandrun/registry.h"

namespace sandrun {

/// Which namespaces the local backend can give a command on this host.
struct LocalIsolation {
  /// NetworkMode::kNone is enforced: a new network namespace, and a new mount
  /// namespace hiding host unix sockets (empty /run, /var/run and /tmp).
  bool isolates_network = false;
  /// Each command's processes live in their own PID namespace, torn down as
  /// a whole when it ends.
  bool pid_namespace = false;
  bool needs_user_namespace = false;  ///< Not root: CLONE_NEWUSER as well.
  std::string network_reason;         ///< Why not, when !isolates_network.
  std::string pid_reason;             ///< Why not, when !pid_namespace.
};

/// Thread-safe, as Backend requires. `config` must outlive the backend; an
/// empty state_dir or archive_dir falls back to a directory under $TMPDIR.
/// `host_env` is the process environment (BackendContext::env); commands
/// see only its PATH, LANG, LC_ALL, TZ and LD_LIBRARY_PATH.
class LocalBackend : public Backend {
 public:
  LocalBackend(const Config& config, const std::map<std::string, std::string>& host_env);

  std::string_view Name() const override { return "local"; }
  Capabilities GetCapabilities() const override;
  /// Unavailable only when the sandbox directory cannot be created or written.
  Status CheckAvailable() override;
  /// kUnimplemented for a dockerfile or a gpu; otherwise a new directory.
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  /// Every directory under <state_dir>/sandboxes/local with a manifest.
  Result<std::vector<Leftover>> ListLeftovers() override;
  /// Kills the leftover's recorded process groups whose leader is still the
  /// same process (pid and start time), then removes its directory.
  Status RemoveLeftover(const std::string& id) override;
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override;

  /// Probes (once, by forking children that try) and caches.
  const LocalIsolation& Isolation() const;
  /// <state_dir>/sandboxes/local.
  const std::filesystem::path& sandboxes_dir() const { return sandboxes_dir_; }

 private:
  std::filesystem::path state_dir_;  // Declared first: sandboxes_dir_ is below it.
  std::filesystem::path sandboxes_dir_;
  std::filesystem::path archive_dir_;
  mutable std::once_flag probe_once_;
  mutable LocalIsolation isolation_;
  std::map<std::string, std::string> inherited_env_;  ///< The host variables commands see.
};

/// Registers "local" in `registry`. Called from the generated built-in table.
void RegisterLocalBackend(BackendRegistry& registry);

}  // namespace sandrun

#endif  // SANDRUN_PLUGINS_LOCAL_LOCAL_BACKEND_H_
