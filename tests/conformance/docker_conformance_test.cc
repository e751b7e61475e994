// The conformance suite against the Docker backend, created the way the CLI
// creates it (registration function, registry, the config's docker section),
// in the busybox-only test image that scripts/docker-test-env builds. Skipped,
// with the reason, only when no Docker engine answers (failed instead where
// Docker is required: support/docker_required.h).
#include <cstdlib>
#include <functional>

#include "conformance/backend_conformance.h"
#include "docker_backend.h"
#include "plugins/docker/docker_test_env.h"
#include "sandrun/config.h"
#include "sandrun/registry.h"

namespace sandrun::conformance {
namespace {

constexpr char kImage[] = "sandrun-test/busybox";
constexpr char kDebianImage[] = "sandrun-test/debian:bookworm";

// With the agent (docker_agent.h), commands and files go through one
// long-lived exec; without it, through the engine's own endpoints.
Config DockerConfig(bool agent) {
  Config c;
  c.backend = "docker";
  c.backend_sections["docker"] =
      std::string(R"({"volume": "sandrun-test-results", "tool_image": "sandrun-test/busybox",
                      "kill_grace_ms": 1000, "agent": )") +
      (agent ? "true" : "false") + "}";
  return c;
}

std::function<Result<std::unique_ptr<Backend>>()> MakeDocker(bool agent) {
  return [agent] {
    BackendRegistry registry;
    RegisterDockerBackend(registry);
    return registry.Create("docker", DockerConfig(agent));
  };
}

// `image` must exist on the engine (scripts/docker-test-env builds both).
ConformanceTarget DockerTarget(const std::string& name, const std::string& image, bool agent) {
  ConformanceTarget target;
  target.name = name;
  target.make = MakeDocker(agent);
  target.base_spec.image = image;
  target.kill_sandbox_from_outside = [](const std::string& container_id) -> Status {
    auto killed = docker::testing::TestClient()->Request(
        "POST", "/containers/" + container_id + "/kill?signal=KILL");
    if (!killed.ok()) return killed.status();
    if (killed->status != 204) {
      return InternalError("docker kill answered " + std::to_string(killed->status) + ": " +
                           killed->body);
    }
    return OkStatus();
  };
  auto backend = target.make();
  if (!backend.ok()) {
    SkipWithoutDocker(target, "docker backend unavailable: " + backend.status().ToString());
    return target;
  }
  Status available = (*backend)->CheckAvailable();
  if (!available.ok()) {
    SkipWithoutDocker(target, "no Docker engine (run scripts/docker-test-env): " +
                                  available.message());
  }
  return target;
}

}  // namespace

// busybox: sh is busybox ash, no libc at all; debian: dash, glibc, libstdc++.
// The busybox sandboxes run everything through the agent (the default); the
// Debian ones through the engine's endpoints (the fallback when there is no
// agent), so both paths meet the whole suite.
SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(Docker, DockerTarget("docker", kImage, true));
SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(DockerDebian,
                                        DockerTarget("docker_debian", kDebianImage, false));

}  // namespace sandrun::conformance
