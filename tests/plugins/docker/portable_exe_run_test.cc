// Portable executables end to end: a C++ program built here with g++ (dynamic
// libstdc++) runs in the busybox-only image through its bundled loader and
// libraries, which reach the engine once, through its exe cache volume. The
// plan itself is tested in tests/core/portable_exe_test.cc.
#include "sandrun/portable_exe.h"

#include <gtest/gtest.h>

#include "core/portable_test_program.h"
#include "docker_archive_store.h"
#include "docker_exe_cache.h"
#include "docker_test_env.h"
#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;

TEST(PortableExeDockerTest, HostCppBinaryRunsInBusyboxImage) {
  auto backend = docker::CreateDockerBackend(docker::testing::TestOptions());
  SANDRUN_REQUIRE_DOCKER(*backend);
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
  ASSERT_FALSE(exe.empty());
  auto sandbox = backend->Create(docker::testing::ImageSpec(docker::testing::kBusybox));
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();

  ExecRequest plain;
  plain.argv = {"sh", "-c", "ls /lib/*/libstdc++* /usr/lib/*/libstdc++* 2>/dev/null | wc -l"};
  auto r = (*sandbox)->Exec(plain);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_stream.text, "0\n") << "the image should lack libstdc++";

  ASSERT_TRUE((*sandbox)->Put({exe.string(), "bin/hello", true}).ok());
  // A second executable with the same libraries sends only what is new.
  ASSERT_TRUE((*sandbox)->Put({exe.string(), "bin/hello2", true}).ok());
  ExecRequest run;
  run.argv = {"./bin/hello", "in", "busybox"};
  r = (*sandbox)->Exec(run);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_stream.text;
  EXPECT_EQ(r->stdout_stream.text, "hello from C++ in busybox\n");
  run.argv = {"bin/hello2"};
  r = (*sandbox)->Exec(run);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_stream.text, "hello from C++\n") << r->stderr_stream.text;
}

TEST(PortableExeDockerTest, FilesCrossToTheEngineOnceWhateverTheSandboxes) {
  auto client = docker::testing::TestClient();
  {
    auto probe = docker::CreateDockerBackend(docker::testing::TestOptions());
    SANDRUN_REQUIRE_DOCKER(*probe);
  }
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
  ASSERT_FALSE(exe.empty());
  auto plan = PlanPortableExecutable(exe);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  // A volume of this test's own, so the first upload really is the first.
  const std::string volume = "sandrun-test-exe-" + RandomHex(8);
  struct Cleanup {
    docker::DockerClient& client;
    std::string volume;
    ~Cleanup() {
      (void)client.Request("DELETE", "/containers/sandrun-exe-cache-" + volume + "?force=1");
      (void)client.Request("DELETE", "/volumes/" + volume + "?force=1");
    }
  } cleanup{*client, volume};
  ASSERT_TRUE(docker::EnsureVolume(*client, volume).ok());

  std::shared_ptr<docker::DockerClient> shared = docker::testing::TestClient();
  docker::ExeCache first(shared, volume);
  auto sent = first.Ensure(*plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_GT(*sent, fs::file_size(exe)) << "the executable and its libraries go up";
  sent = first.Ensure(*plan);
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, 0u) << "the same process never sends a file twice";
  docker::ExeCache another_process(shared, volume);
  sent = another_process.Ensure(*plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, 0u) << "the volume already holds every file";

  // The same content under another name shares the <sha> directory: only
  // that name goes up, the libraries are there already.
  fs::path copy = dir.path() / "hello-copy";
  fs::copy_file(exe, copy);
  auto copy_plan = PlanPortableExecutable(copy);
  ASSERT_TRUE(copy_plan.ok());
  sent = another_process.Ensure(*copy_plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, fs::file_size(copy));

  // Sandboxes on that cache only receive the launcher, and run the program.
  docker::DockerOptions options = docker::testing::TestOptions();
  options.exe_cache_volume = volume;
  auto backend = docker::CreateDockerBackend(options);
  for (int i = 0; i < 2; ++i) {
    auto sandbox = backend->Create(docker::testing::ImageSpec(docker::testing::kBusybox));
    ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
    ASSERT_TRUE((*sandbox)->Put({exe.string(), "hello", true}).ok());
    ExecRequest run;
    run.argv = {"./hello", "from", "the", "cache"};
    auto r = (*sandbox)->Exec(run);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->stdout_stream.text, "hello from C++ from the cache\n") << r->stderr_stream.text;
    ASSERT_TRUE((*sandbox)->Put({copy.string(), "hello-copy", true}).ok());
    run.argv = {"./hello-copy"};
    r = (*sandbox)->Exec(run);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->stdout_stream.text, "hello from C++\n") << r->stderr_stream.text;
    // The cache is shared: a sandbox cannot change what others will run.
    run.argv = {"sh", "-c", "echo x > " + plan->exe_sandbox_path + " && echo wrote"};
    r = (*sandbox)->Exec(run);
    ASSERT_TRUE(r.ok());
    EXPECT_NE(r->exit_code, 0) << r->stdout_stream.text;
    EXPECT_TRUE((*sandbox)->Terminate().ok());
  }
}

}  // namespace
}  // namespace sandrun
