// The fake Modal server's container mode keeps the promises Modal makes
// about a sandbox, so that what passes against it means something: the
// requested memory and cpu are the container's limits (a process over the
// memory limit is killed), and the sandbox ends by itself at its lifetime
// and after its idle timeout with the status Modal gives (TIMEOUT,
// IDLE_TIMEOUT) even when no command runs. Needs a Docker engine
// (scripts/docker-test-env); skips without one unless Docker is required.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "modal_test_env.h"
#include "support/docker_required.h"

namespace sandrun::modal {
namespace {

using ::sandrun::modal::testing::FakeModalEnv;

constexpr const char* kSection =
    R"({"default_image": "sandrun-test/busybox", "timeout_grace_ms": 3000, "exe_cache_volume": ""})";

fake::FakeOptions ContainerMode() {
  fake::FakeOptions options;
  options.containers = true;
  return options;
}

SandboxSpec Spec() {
  SandboxSpec spec;
  spec.labels = {{"managed-by", "sandrun"}, {"run", "r1"}, {"task", "t1"}};
  spec.lifetime = std::chrono::seconds(300);
  return spec;
}

ExecRequest Shell(const std::string& script) {
  ExecRequest request;
  request.argv = {"/bin/sh", "-c", script};
  request.timeout = std::chrono::seconds(60);
  return request;
}

class FakeModalContainersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fake::DockerEngineAnswers()) {
      SANDRUN_SKIP_WITHOUT_DOCKER("no Docker engine answers (run scripts/docker-test-env)");
    }
    env_ = std::make_unique<FakeModalEnv>(ContainerMode());
    ASSERT_TRUE(env_->started());
  }
  std::unique_ptr<Backend> MakeBackend(const std::string& section = kSection) {
    auto backend = env_->MakeBackend(section);
    EXPECT_TRUE(backend.ok()) << backend.status().ToString();
    return backend.ok() ? std::move(backend).value() : nullptr;
  }
  std::unique_ptr<FakeModalEnv> env_;
};

TEST_F(FakeModalContainersTest, MemoryAndCpuAreTheContainersLimits) {
  auto backend = MakeBackend();
  ASSERT_NE(backend, nullptr);
  SandboxSpec spec = Spec();
  spec.memory_mb = 64;
  spec.cpu = 0.5;
  auto sandbox = backend->Create(spec);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  // cgroup v2, else v1.
  auto limits = (*sandbox)->Exec(Shell(
      "cat /sys/fs/cgroup/memory.max 2>/dev/null || "
      "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; "
      "cat /sys/fs/cgroup/cpu.max 2>/dev/null || "
      "echo \"$(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us)\""));
  ASSERT_TRUE(limits.ok()) << limits.status().ToString();
  EXPECT_EQ(limits->stdout_stream.text, "67108864\n50000 100000\n") << limits->stderr_stream.text;
  // 256 MiB held by the shell in a 64 MiB sandbox: the kernel kills it.
  auto hog = (*sandbox)->Exec(
      Shell("x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo \"held ${#x}\""));
  ASSERT_TRUE(hog.ok()) << hog.status().ToString();
  EXPECT_NE(hog->exit_code, 0) << "a command over the memory limit was not stopped";
  EXPECT_EQ(hog->stdout_stream.text.find("held 268435456"), std::string::npos);
  (*sandbox)->Terminate().IgnoreError();
}

// The sandbox's lifetime ends it with no command running (the client's own
// cap on each command's timeout cannot stand in for this).
TEST_F(FakeModalContainersTest, ASandboxEndsAtItsLifetimeWithTimeout) {
  auto backend = MakeBackend();
  ASSERT_NE(backend, nullptr);
  SandboxSpec spec = Spec();
  spec.lifetime = std::chrono::seconds(2);
  auto sandbox = backend->Create(spec);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  const std::string id = (*sandbox)->Id();
  EXPECT_TRUE(env_->server().SandboxRunning(id));
  const auto start = std::chrono::steady_clock::now();
  while (env_->server().SandboxRunning(id) &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_FALSE(env_->server().SandboxRunning(id)) << "still running 20 s after a 2 s lifetime";
  auto late = (*sandbox)->Exec(Shell("true"));
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kUnavailable) << late.status().ToString();
  EXPECT_NE(late.status().message().find("(TIMEOUT)"), std::string::npos)
      << late.status().ToString();
}

TEST_F(FakeModalContainersTest, AnIdleSandboxEndsAfterItsIdleTimeoutAndABusyOneDoesNot) {
  auto backend = MakeBackend(
      R"({"default_image": "sandrun-test/busybox", "timeout_grace_ms": 3000, "exe_cache_volume": "", "idle_timeout_s": 5})");
  ASSERT_NE(backend, nullptr);
  auto busy = backend->Create(Spec());
  ASSERT_TRUE(busy.ok()) << busy.status().ToString();
  auto idle = backend->Create(Spec());
  ASSERT_TRUE(idle.ok()) << idle.status().ToString();
  // A command of 9 s keeps its sandbox past the idle timeout (its clock
  // starts at the create, so a slow container start eats into it).
  auto ran = (*busy)->Exec(Shell("sleep 9; echo done"));
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->stdout_stream.text, "done\n");
  EXPECT_FALSE(env_->server().SandboxRunning((*idle)->Id())) << "idle for 9 s with a 5 s timeout";
  auto late = (*idle)->Exec(Shell("true"));
  ASSERT_FALSE(late.ok());
  EXPECT_NE(late.status().message().find("(IDLE_TIMEOUT)"), std::string::npos)
      << late.status().ToString();
  (*busy)->Terminate().IgnoreError();
}

}  // namespace
}  // namespace sandrun::modal
