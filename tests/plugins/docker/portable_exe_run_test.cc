// Portable executables end to end: a C++ program built here with g++ (dynamic
// libstdc++) runs in the busybox-only image through its bundled loader and
// libraries. The plan itself is tested in tests/core/portable_exe_test.cc.
#include "sandrun/portable_exe.h"

#include <gtest/gtest.h>

#include "core/portable_test_program.h"
#include "docker_test_env.h"
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

}  // namespace
}  // namespace sandrun
