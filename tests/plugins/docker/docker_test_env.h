// Shared set-up of the Docker backend tests: a backend on the engine that
// scripts/docker-test-env started (DOCKER_HOST or the default socket), the test
// images it built, and a skip with the reason only when no engine answers
// (a failure instead where Docker is required, see support/docker_required.h).
#ifndef SANDRUN_TESTS_PLUGINS_DOCKER_DOCKER_TEST_ENV_H_
#define SANDRUN_TESTS_PLUGINS_DOCKER_DOCKER_TEST_ENV_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "docker_backend.h"
#include "docker_client.h"
#include "support/docker_required.h"

namespace sandrun::docker::testing {

inline constexpr char kBusybox[] = "sandrun-test/busybox";
inline constexpr char kDebian[] = "sandrun-test/debian:bookworm";
inline constexpr char kTestVolume[] = "sandrun-test-results";

inline DockerOptions TestOptions() {
  std::map<std::string, std::string> env;
  if (const char* host = std::getenv("DOCKER_HOST")) env["DOCKER_HOST"] = host;
  auto options = ParseDockerOptions(
      R"({"volume": "sandrun-test-results", "tool_image": "sandrun-test/busybox",
          "kill_grace_ms": 1000})",
      env);
  return options.value();
}

/// A spec that only names an image.
inline SandboxSpec ImageSpec(const std::string& image) {
  SandboxSpec spec;
  spec.image = image;
  return spec;
}

/// A client to the same engine, for looking behind the backend's back.
inline std::unique_ptr<DockerClient> TestClient() {
  auto client = std::make_unique<DockerClient>(ParseDockerHost(TestOptions().host).value());
  client->NegotiateVersion().IgnoreError();
  return client;
}

inline bool ImageExists(DockerClient& client, const std::string& image) {
  auto res = client.Request("GET", "/images/" + image + "/json");
  return res.ok() && res->status == 200;
}

}  // namespace sandrun::docker::testing

/// Skips the test, printing why, when no Docker engine answers (fails it
/// instead when Docker is required: CI, SANDRUN_REQUIRE_DOCKER=1).
#define SANDRUN_REQUIRE_DOCKER(backend)                                             \
  do {                                                                              \
    ::sandrun::Status availability_ = (backend).CheckAvailable();                   \
    if (!availability_.ok()) {                                                      \
      SANDRUN_SKIP_WITHOUT_DOCKER("no Docker engine (run scripts/docker-test-env): " \
                                  + availability_.message());                       \
    }                                                                               \
  } while (0)

#endif  // SANDRUN_TESTS_PLUGINS_DOCKER_DOCKER_TEST_ENV_H_
