// The Modal tests run twice in CI: as they are (most fakes in process mode),
// and with SANDRUN_FAKE_MODAL_MODE=containers, where every fake they make
// runs its sandboxes as Docker containers (tests/plugins/modal/CMakeLists.txt
// registers that pass with the prefix "containers."). This file holds what
// that second pass needs: without an engine it skips every test, or fails
// them when Docker is required; and it checks the switch itself works.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "modal_test_env.h"
#include "support/docker_required.h"

namespace sandrun::modal {
namespace {

class ContainerPassNeedsDocker : public ::testing::Environment {
 public:
  void SetUp() override {
    if (fake::FakeModeFromEnvironment() && !fake::DockerEngineAnswers()) {
      SANDRUN_SKIP_WITHOUT_DOCKER(
          "SANDRUN_FAKE_MODAL_MODE=containers, and no Docker engine answers (run "
          "scripts/docker-test-env)");
    }
  }
};

[[maybe_unused]] ::testing::Environment* const kContainerPass =
    ::testing::AddGlobalTestEnvironment(new ContainerPassNeedsDocker);

// The mode a CTest pass means, from its --sandrun-fake-mode=MODE argument
// (tests/plugins/modal/CMakeLists.txt); "" when run by hand without it.
std::string ModeThisPassMeans() {
  const std::string flag = "--sandrun-fake-mode=";
  for (const std::string& arg : ::testing::internal::GetArgvs()) {
    if (arg.rfind(flag, 0) == 0) return arg.substr(flag.size());
  }
  return "";
}

// The switch reaches a fake made with default options: in the container
// pass its sandboxes are containers (a UTS namespace of their own), in the
// process pass they are this host's processes. The pass's own argument
// says which it means, so a lost environment variable fails here.
TEST(FakeModalMode, TheEnvironmentDecidesWhereSandboxesRun) {
  const std::string meant = ModeThisPassMeans();
  if (!meant.empty()) {
    EXPECT_EQ(fake::FakeModeFromEnvironment(), meant == "containers")
        << "this pass means " << meant << " mode, and SANDRUN_FAKE_MODAL_MODE says otherwise";
  }
  testing::FakeModalEnv env;
  ASSERT_TRUE(env.started());
  auto backend = env.MakeBackend(
      R"({"default_image": "sandrun-test/busybox", "timeout_grace_ms": 3000, "exe_cache_volume": ""})");
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  SandboxSpec spec;
  spec.labels = {{"managed-by", "sandrun"}, {"run", "r1"}, {"task", "t1"}};
  spec.lifetime = std::chrono::seconds(120);
  auto sandbox = (*backend)->Create(spec);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  // A container has a UTS namespace of its own (Docker names it after the
  // container); a process-mode sandbox shares this host's.
  ExecRequest request;
  request.argv = {"/bin/sh", "-c", "cat /proc/sys/kernel/hostname"};
  request.timeout = std::chrono::seconds(30);
  auto result = (*sandbox)->Exec(request);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->exit_code, 0) << result->stderr_stream.text;
  char host[256] = {};
  ASSERT_EQ(::gethostname(host, sizeof host - 1), 0);
  if (env.server().options().containers) {
    EXPECT_NE(result->stdout_stream.text, std::string(host) + "\n");
  } else {
    EXPECT_EQ(result->stdout_stream.text, std::string(host) + "\n");
  }
  (*sandbox)->Terminate().IgnoreError();
}

}  // namespace
}  // namespace sandrun::modal
