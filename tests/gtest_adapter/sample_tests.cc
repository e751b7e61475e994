// A GoogleTest binary using the sandrun adapter, driven by
// gtest_adapter_test.cc (never run by CTest directly: several cases fail on
// purpose). Lines the driver checks carry a "// @name" marker it looks up.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "sandrun/gtest.h"

namespace {

using sandrun::gtest::Options;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

SANDRUN_TEST(Sample, Passes) { EXPECT_TRUE(sandrun::gtest::InsideSandbox()); }

SANDRUN_TEST(Sample, ExpectFails) {
  std::printf("own stdout of ExpectFails\n");
  std::fflush(stdout);
  std::fprintf(stderr, "own stderr of ExpectFails\n");
  EXPECT_EQ(1 + 1, 3) << "expect message from the sandbox";  // @expect_fail
  EXPECT_TRUE(true);
}

SANDRUN_TEST(Sample, AssertFails) {
  ASSERT_TRUE(false) << "assert message from the sandbox";  // @assert_fail
  ADD_FAILURE() << "not reached after ASSERT";
}

SANDRUN_TEST(Sample, Skipped) { GTEST_SKIP() << "skipped for a reason"; }

SANDRUN_TEST(Sample, Crashes) {
  std::fprintf(stderr, "about to crash\n");
  std::fflush(stderr);
  raise(SIGSEGV);
}

SANDRUN_TEST(Sample, Hangs, Options().Timeout(1)) {
  std::this_thread::sleep_for(std::chrono::seconds(60));
}

SANDRUN_TEST(Sample, ExitsEarly) {
  std::fflush(stdout);
  std::_Exit(0);
}

SANDRUN_TEST(Sample, HugeOutput) {
  std::string line(99, 'x');
  for (int i = 0; i < 50000; ++i) std::printf("%s\n", line.c_str());  // 5 MB
  std::fflush(stdout);
}

SANDRUN_TEST(Sample, ReadsEnv, Options().Env("SAMPLE_KEY", "sample-value")) {
  const char* value = std::getenv("SAMPLE_KEY");
  ASSERT_NE(value, nullptr);
  EXPECT_STREQ(value, "sample-value");
}

SANDRUN_TEST(Sample, ReadsUpload, Options().Upload(SAMPLE_DATA_FILE, "data/sample.txt")) {
  EXPECT_EQ(ReadAll("data/sample.txt"), "uploaded data for the sandbox\n");
}

SANDRUN_TEST(SampleDeathTest, Dies) {
  EXPECT_DEATH(
      {
        std::fprintf(stderr, "dying now\n");
        std::abort();
      },
      "dying now");
  EXPECT_EXIT(std::exit(3), ::testing::ExitedWithCode(3), "");
}

SANDRUN_TEST(Sample, Forks) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(7);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
}

class SampleFixture : public ::testing::Test {
 protected:
  void SetUp() override { value_ = sandrun::gtest::InsideSandbox() ? 42 : -1; }
  void TearDown() override {}
  int value_ = 0;
};

SANDRUN_TEST_F(SampleFixture, UsesSetUp) { EXPECT_EQ(value_, 42); }

SANDRUN_TEST_F(SampleFixture, FailsInFixture, Options().Env("SAMPLE_KEY", "v")) {
  EXPECT_EQ(value_, 41) << "fixture failure";  // @fixture_fail
}

// Plain TESTs: run on the host unless --sandrun_filter marks them.
TEST(Local, RunsOnHost) { EXPECT_FALSE(sandrun::gtest::InsideSandbox()); }

TEST(Filtered, RunsInSandbox) { EXPECT_TRUE(sandrun::gtest::InsideSandbox()); }

TEST(Filtered, Fails) {
  EXPECT_EQ(2 + 2, 5) << "filtered failure";  // @filtered_fail
}

// Fails the first time in a given SAMPLE_FLAKY_DIR, passes afterwards: for
// `sandrun gtest --retry-failed`. Passes when the variable is unset.
TEST(Flaky, FailsOnce) {
  const char* dir = std::getenv("SAMPLE_FLAKY_DIR");
  if (dir == nullptr) return;
  std::filesystem::path marker = std::filesystem::path(dir) / "flaky-ran-once";
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "1";
    FAIL() << "first attempt fails";  // @flaky_fail
  }
}

TEST(Flaky, AlwaysFails) {
  if (std::getenv("SAMPLE_FLAKY_DIR") != nullptr) FAIL() << "always fails";
}
