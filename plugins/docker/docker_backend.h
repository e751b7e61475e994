// The Docker backend: one container per sandbox, driven through the Docker
// Engine API (docker_client.h), never the docker CLI.
//
// Configuration comes from DOCKER_HOST (default unix:///var/run/docker.sock)
// and the backend's own section of sandrun.json ("backends": {"docker": {...}}):
//
//   host           engine address when DOCKER_HOST is unset
//   volume         result-archive volume (default "sandrun-results")
//   exe_cache_volume  portable executables, content-addressed, mounted
//                  read-only at /sandrun/exe (default "sandrun-exe-cache")
//   default_image  image for specs that name none (else kInvalidArgument)
//   tool_image     image with a shell, used to delete archive paths
//                  (default: default_image, else "busybox")
//   pids_limit     per-container pid limit (default 4096)
//   max_parallel   suggested -j (default 0: 4 per engine CPU, 4..64)
//   kill_grace_ms  SIGTERM -> SIGKILL grace on timeouts (default 2000)
//   mounts         ["host_or_volume:/container/path[:ro]", ...] extra mounts
//                  the user names; nothing else from the host is mounted
//
// Containers carry the labels dev.sandrun.managed=1, .run, .task, .owner-pid,
// .owner-host, .expires (unix seconds) and dev.sandrun.label.<key> for every
// spec label; ListLeftovers/RemoveLeftover never touch anything without
// dev.sandrun.managed=1.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_BACKEND_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/registry.h"
#include "sandrun/status.h"

namespace sandrun {

/// Registers "docker" (called from the generated built-in table).
void RegisterDockerBackend(BackendRegistry& registry);

namespace docker {

inline constexpr std::string_view kManagedLabel = "dev.sandrun.managed";
/// Where the result volume is mounted in sandrun's own archive helper and
/// tool containers. Never mounted in a sandbox: a task must not see the archive.
inline constexpr std::string_view kResultsMount = "/sandrun/results";
inline constexpr std::string_view kDefaultWorkdir = "/sandrun/work";

struct DockerOptions {
  std::string host = "unix:///var/run/docker.sock";
  std::string volume = "sandrun-results";
  std::string exe_cache_volume = "sandrun-exe-cache";
  std::string default_image;
  std::string tool_image;
  std::int64_t pids_limit = 4096;
  int max_parallel = 0;
  int kill_grace_ms = 2000;
  std::vector<std::string> mounts;
  /// The host's LD_LIBRARY_PATH (BackendContext::env), for portable uploads.
  std::string host_library_path;
};

/// Reads the section JSON; DOCKER_HOST from `env` overrides "host".
/// kInvalidArgument names the bad key.
Result<DockerOptions> ParseDockerOptions(std::string_view section_json,
                                         const std::map<std::string, std::string>& env);

/// The backend for `options`; does not contact the daemon yet.
std::unique_ptr<Backend> CreateDockerBackend(DockerOptions options);

}  // namespace docker
}  // namespace sandrun

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_BACKEND_H_
