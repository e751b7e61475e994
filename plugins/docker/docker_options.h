// The Docker backend's configuration and the container it asks the engine
// for, as pure functions of the configuration and the spec: nothing here
// talks to an engine, so all of it is unit-tested without one.
//
// The backend's section of sandrun.json ("backends": {"docker": {...}}):
//
//   host           engine address when DOCKER_HOST is unset
//   volume         result-archive volume (default "sandrun-results")
//   exe_cache_volume  portable executables, content-addressed, mounted
//                  read-only at /sandrun/exe (default "sandrun-exe-cache")
//   default_image  image for specs that name none (else kInvalidArgument)
//   tool_image     image with a shell, used to delete archive paths and
//                  old exe cache files (default: default_image, else "busybox")
//   exe_cache_keep_days  days a cached executable may go unused before it
//                  is removed (default 7; 0 keeps everything)
//   pids_limit     per-container pid limit (default 4096)
//   max_parallel   suggested -j (default 0: 4 per engine CPU, 4..64)
//   kill_grace_ms  SIGTERM -> SIGKILL grace on timeouts (default 2000)
//   mounts         ["host_or_volume:/container/path[:ro]", ...] extra mounts
//                  the user names; nothing else from the host is mounted
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_OPTIONS_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun::docker {

inline constexpr std::string_view kManagedLabel = "dev.sandrun.managed";
/// The namespace of every label sandrun puts on a container.
inline constexpr std::string_view kLabelPrefix = "dev.sandrun.";
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
  int exe_cache_keep_days = 7;
  std::int64_t pids_limit = 4096;
  int max_parallel = 0;
  int kill_grace_ms = 2000;
  std::vector<std::string> mounts;
  /// The host's LD_LIBRARY_PATH (BackendContext::env), for portable uploads.
  std::string host_library_path;
  /// Run commands and move files through sandrun-docker-agent (config key
  /// "agent", default true; docker_agent.h). `agent_path` is where it was
  /// found, or empty with `agent_missing` saying why.
  bool agent = true;
  std::string agent_path;
  std::string agent_missing;
};

/// The image of sandrun's short-lived tool containers: tool_image, else
/// default_image, else "busybox".
std::string ToolImage(const DockerOptions& options);

/// Reads the section JSON; DOCKER_HOST from `env` overrides "host".
/// kInvalidArgument names the bad key.
Result<DockerOptions> ParseDockerOptions(std::string_view section_json,
                                         const std::map<std::string, std::string>& env);

/// The facts of the moment a container is made, which ContainerCreateBody
/// takes as given so that it stays a pure function.
struct ContainerFacts {
  /// The image to run: the spec's, the default, or one built from the
  /// spec's Dockerfile.
  std::string image;
  /// The owner and expiry labels (sandrun/owner_labels.h, kLabelPrefix).
  std::map<std::string, std::string> owner_labels;
};

/// The sandbox's lifetime in whole seconds, at least 1: the container's
/// keep-alive `sleep` and its expiry label both use it.
std::int64_t LifetimeSeconds(const SandboxSpec& spec);

/// The sandbox's working directory in the container: kDefaultWorkdir, or the
/// spec's workdir below it (kInvalidArgument when that leaves the sandbox).
Result<std::string> ContainerWorkdir(const SandboxSpec& spec);

/// The body of POST /containers/create for `spec`: the image kept alive by
/// `sleep <lifetime>` under Docker's init, sandrun's labels and the spec's,
/// the spec's env and working directory, and a HostConfig that grants no
/// privilege, caps pids (and memory without swap, and CPUs, when the spec
/// asks), has no network unless the spec opens it, and mounts only the exe
/// cache (read-only) and the user's configured mounts, never the result
/// archive. kInvalidArgument for a bad workdir or mount.
Result<nlohmann::json> ContainerCreateBody(const SandboxSpec& spec, const DockerOptions& options,
                                           const ContainerFacts& facts);

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_OPTIONS_H_
