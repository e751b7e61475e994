// Portable executables: the upload plan of a C++ program built here with g++
// (dynamic libstdc++): loader, library closure, content addresses. Running it
// in a busybox image is tested with the Docker backend
// (tests/plugins/docker/portable_exe_run_test.cc).
#include "sandrun/portable_exe.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "core/portable_test_program.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;

bool HasFileNamed(const PortablePlan& plan, const std::string& prefix) {
  return std::any_of(plan.files.begin(), plan.files.end(), [&](const PortableFile& f) {
    return fs::path(f.sandbox_path).filename().string().rfind(prefix, 0) == 0;
  });
}

TEST(PortableExeTest, PlansLoaderAndLibraryClosure) {
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
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

}  // namespace
}  // namespace sandrun
