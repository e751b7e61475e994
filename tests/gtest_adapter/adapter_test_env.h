// What the adapter's end-to-end tests share: an isolated sandrun
// environment per backend (BackendEnv), the fixture that makes one per
// backend parameter (GtestAdapterTest), and the host binary's own GoogleTest
// JSON report, read back (ReadHostReport).
#ifndef SANDRUN_TESTS_GTEST_ADAPTER_ADAPTER_TEST_ENV_H_
#define SANDRUN_TESTS_GTEST_ADAPTER_ADAPTER_TEST_ENV_H_

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sandrun/config.h"
#include "sandrun/registry.h"
#include "support/docker_required.h"
#ifdef SANDRUN_WITH_MODAL_FAKE
#include "fake_modal_fixture.h"
#endif
#include "support/test_util.h"

/// The backends the adapter's tests run on, for INSTANTIATE_TEST_SUITE_P
/// (Modal: the fake Modal server in container mode).
#ifdef SANDRUN_WITH_MODAL_FAKE
#define SANDRUN_ADAPTER_BACKENDS "local", "docker", "modal"
#else
#define SANDRUN_ADAPTER_BACKENDS "local", "docker"
#endif

namespace sandrun::gtest {

using sandrun::testing::CommandOptions;
using sandrun::testing::ReadFile;
using sandrun::testing::RunCommand;
using sandrun::testing::TempDir;

struct HostTest {
  std::string result;  // COMPLETED / SKIPPED
  std::string value_param;  // GoogleTest's own "value_param" / "type_param"
  std::string type_param;
  std::vector<std::string> failures;
  std::map<std::string, std::string> properties;
  double seconds = 0;
};

/// The host's own gtest JSON report, by "Suite.Test".
inline std::map<std::string, HostTest> ReadHostReport(const std::filesystem::path& path) {
  std::map<std::string, HostTest> tests;
  nlohmann::json doc = nlohmann::json::parse(ReadFile(path), nullptr, false);
  if (doc.is_discarded()) return tests;
  for (const auto& suite : doc["testsuites"]) {
    for (const auto& test : suite["testsuite"]) {
      HostTest t;
      t.result = test.value("result", "");
      t.seconds = std::atof(test.value("time", "0").c_str());
      t.value_param = test.value("value_param", "");
      t.type_param = test.value("type_param", "");
      if (test.contains("failures")) {
        for (const auto& f : test["failures"]) t.failures.push_back(f.value("failure", ""));
      }
      for (const auto& [k, v] : test.items()) {
        if (k.rfind("sandrun_", 0) == 0 && v.is_string()) t.properties[k] = v.get<std::string>();
      }
      tests[suite["name"].get<std::string>() + "." + test["name"].get<std::string>()] = t;
    }
  }
  return tests;
}

inline bool DockerAvailable(std::string* reason) {
  BackendRegistry registry;
  RegisterAllBackends(registry, ProcessEnvironment());
  Config config;
  auto backend = registry.Create("docker", config);
  if (!backend.ok()) {
    *reason = backend.status().message();
    return false;
  }
  Status available = (*backend)->CheckAvailable();
  *reason = available.message();
  return available.ok();
}

/// An isolated environment for one backend: HOME, state, archive, config.
class BackendEnv {
 public:
  explicit BackendEnv(const std::string& backend,
                      const std::map<std::string, std::string>& extra_env = {})
      : docker_volume_(backend == "docker" ? VolumeName() : "") {
    // A Docker volume of its own: reading back "every run of this test"
    // must not read every run the whole suite left in a shared volume.
    std::string config = R"({"backends": {"docker": {"volume": ")" +
                         (docker_volume_.empty() ? "sandrun-test-results" : docker_volume_) +
                         R"(", "tool_image": "sandrun-test/busybox"}}})";
    dir_.Write("sandrun.json", config);
    env_["HOME"] = (dir_.path() / "home").string();
    env_["XDG_DATA_HOME"] = (dir_.path() / "data").string();
    env_["XDG_STATE_HOME"] = (dir_.path() / "state").string();
    env_["SANDRUN_CONFIG"] = (dir_.path() / "sandrun.json").string();
    env_["SANDRUN_BACKEND"] = backend;
    env_["SANDRUN_FALLBACK"] = "";
    env_["SANDRUN_FILTER"] = "";
    env_["SANDRUN_JOBS"] = "16";
    if (backend == "docker") env_["SANDRUN_IMAGE"] = "sandrun-test/busybox";
    for (const auto& [key, value] : extra_env) env_[key] = value;
  }
  CommandOptions Options() const {
    CommandOptions o;
    o.env = env_;
    o.cwd = dir_.path();
    o.timeout = std::chrono::seconds(480);
    return o;
  }
  const std::filesystem::path& path() const { return dir_.path(); }
  ~BackendEnv() {
    if (docker_volume_.empty()) return;
    // The archive's helper container holds the volume; both go.
    RunCommand({"sh", "-c",
                "docker rm -f $(docker ps -aq --filter volume=" + docker_volume_ +
                    ") >/dev/null 2>&1; docker volume rm -f " + docker_volume_ + " >/dev/null"},
               Options());
  }

 private:
  static std::string VolumeName() {
    static int count = 0;
    return "sandrun-test-gtest-" + std::to_string(::getpid()) + "-" + std::to_string(++count);
  }
  std::string docker_volume_;
  TempDir dir_;
  std::map<std::string, std::string> env_;
};

class GtestAdapterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string reason;
    if (GetParam() == "docker" && !DockerAvailable(&reason)) {
      SANDRUN_SKIP_WITHOUT_DOCKER("no Docker engine (run scripts/docker-test-env): " + reason);
    }
    std::map<std::string, std::string> modal_env;
#ifdef SANDRUN_WITH_MODAL_FAKE
    if (GetParam() == "modal") {
      modal_env = modal::fake::SharedContainerFakeEnv(&reason);
      if (modal_env.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
    }
#endif
    env_ = std::make_unique<BackendEnv>(GetParam(), modal_env);
  }
  std::unique_ptr<BackendEnv> env_;
};

}  // namespace sandrun::gtest

#endif  // SANDRUN_TESTS_GTEST_ADAPTER_ADAPTER_TEST_ENV_H_
