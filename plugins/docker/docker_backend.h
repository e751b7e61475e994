// The Docker backend: one container per sandbox, driven through the Docker
// Engine API (docker_client.h), never the docker CLI.
//
// Configuration comes from DOCKER_HOST (default unix:///var/run/docker.sock)
// and the backend's own section of sandrun.json (docker_options.h).
//
// Containers carry the labels dev.sandrun.managed=1, .run, .task, .owner-pid,
// .owner-host, .expires (unix seconds) and dev.sandrun.label.<key> for every
// spec label; ListLeftovers/RemoveLeftover never touch anything without
// dev.sandrun.managed=1.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_BACKEND_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_BACKEND_H_

#include <memory>

#include "docker_options.h"
#include "sandrun/backend.h"
#include "sandrun/registry.h"
#include "sandrun/status.h"

namespace sandrun {

/// Registers "docker" (called from the generated built-in table).
void RegisterDockerBackend(BackendRegistry& registry);

namespace docker {

/// The backend for `options`; does not contact the daemon yet.
std::unique_ptr<Backend> CreateDockerBackend(DockerOptions options);

}  // namespace docker
}  // namespace sandrun

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_BACKEND_H_
