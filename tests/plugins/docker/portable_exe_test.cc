// Portable executables: a C++ program built here with g++ (dynamic libstdc++)
// runs in the busybox-only image through its bundled loader and libraries.
// (It lives with the Docker tests because the core test binary does not link
// OpenSSL yet; the planning half needs no engine.)
#include "sandrun/portable_exe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "docker_test_env.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;

// Compiles a tiny C++ program that needs libstdc++; empty path if no g++.
fs::path BuildHello(const fs::path& dir) {
  sandrun::testing::TempDir unused;
  fs::path source = dir / "hello.cc";
  std::ofstream(source) << "#include <iostream>\n#include <string>\n#include <vector>\n"
                           "int main(int argc, char** argv) {\n"
                           "  std::vector<std::string> args(argv + 1, argv + argc);\n"
                           "  std::cout << \"hello from C++\";\n"
                           "  for (const auto& a : args) std::cout << ' ' << a;\n"
                           "  std::cout << std::endl;\n  return 0;\n}\n";
  fs::path exe = dir / "hello";
  auto out = sandrun::testing::RunCommand({"g++", "-O0", "-o", exe.string(), source.string()});
  if (out.exit_code != 0) {
    ADD_FAILURE() << "g++ failed: " << out.err;
    return {};
  }
  return exe;
}

bool HasFileNamed(const PortablePlan& plan, const std::string& prefix) {
  return std::any_of(plan.files.begin(), plan.files.end(), [&](const PortableFile& f) {
    return fs::path(f.sandbox_path).filename().string().rfind(prefix, 0) == 0;
  });
}

TEST(PortableExeTest, PlansLoaderAndLibraryClosure) {
  sandrun::testing::TempDir dir;
  fs::path exe = BuildHello(dir.path());
  ASSERT_FALSE(exe.empty());
  auto plan = PlanPortableExecutable(exe);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_FALSE(plan->host_interpreter.empty());
  EXPECT_TRUE(HasFileNamed(*plan, "libstdc++.so"));
  EXPECT_TRUE(HasFileNamed(*plan, "libc.so"));
  EXPECT_TRUE(HasFileNamed(*plan, "libm.so"));
  EXPECT_TRUE(HasFileNamed(*plan, "ld-linux"));
  for (const auto& f : plan->files) {
    // /sandrun/exe/<64 hex>/<name>
    ASSERT_EQ(f.sandbox_path.rfind("/sandrun/exe/", 0), 0u) << f.sandbox_path;
    EXPECT_EQ(f.sandbox_path.find('/', 13), 13u + 64u) << f.sandbox_path;
    EXPECT_EQ(f.sha256.size(), 64u);
  }
  auto argv = plan->WrapArgv({"x"});
  ASSERT_GE(argv.size(), 5u);
  EXPECT_EQ(argv[0], plan->interpreter_sandbox_path);
  EXPECT_EQ(argv[1], "--library-path");
  EXPECT_EQ(argv[argv.size() - 2], plan->exe_sandbox_path);
  EXPECT_EQ(argv.back(), "x");

  // The same content gets the same address.
  fs::copy_file(exe, dir.path() / "copy");
  auto again = PlanPortableExecutable(dir.path() / "copy");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->files[0].sha256, plan->files[0].sha256);
}

TEST(PortableExeTest, RefusesNonElfAndMissing) {
  sandrun::testing::TempDir dir;
  auto script = dir.Write("script.sh", "#!/bin/sh\necho hi\n");
  EXPECT_EQ(PlanPortableExecutable(script).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PlanPortableExecutable(dir.path() / "nope").status().code(), StatusCode::kNotFound);
}

TEST(PortableExeTest, KnownSha256) {
  sandrun::testing::TempDir dir;
  auto f = dir.Write("abc", "abc");
  auto sha = Sha256OfFile(f);
  ASSERT_TRUE(sha.ok());
  EXPECT_EQ(*sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PortableExeTest, HostCppBinaryRunsInBusyboxImage) {
  auto backend = docker::CreateDockerBackend(docker::testing::TestOptions());
  SANDRUN_REQUIRE_DOCKER(*backend);
  sandrun::testing::TempDir dir;
  fs::path exe = BuildHello(dir.path());
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
