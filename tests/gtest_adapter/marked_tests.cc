// A GoogleTest binary using the sandrun adapter, driven by marked_test.cc
// (never run by CTest directly: some cases fail on purpose). It checks that
// marked tests look like local ones: their own output, their own time,
// their parameters, where they run, and where their uploads come from.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "sandrun/gtest.h"

namespace {

using sandrun::gtest::Options;

std::string EnvOr(const char* name, const char* fallback) {
  const char* value = std::getenv(name);
  return value != nullptr ? value : fallback;
}

}  // namespace

// Output: stdout, stderr and a failure in between.
SANDRUN_TEST(Output, FailsBetweenItsOwnLines) {
  std::printf("own stdout before the failure\n");
  std::fprintf(stderr, "own stderr of the failing test\n");
  EXPECT_EQ(6 * 7, 43) << "failure between the lines";
  std::cout << "own stdout after the failure" << std::endl;
}

SANDRUN_TEST(Output, PassesWithOutput) { std::printf("own stdout of the passing test\n"); }

SANDRUN_TEST(Output, CrashesAfterOutput) {
  std::printf("own stdout before the crash\n");
  std::fflush(stdout);
  std::abort();
}

// Time: each sleeps 600 ms; with one job at a time the last waits for the
// others before it starts.
SANDRUN_TEST(Timing, Sleeps1) { std::this_thread::sleep_for(std::chrono::milliseconds(600)); }
SANDRUN_TEST(Timing, Sleeps2) { std::this_thread::sleep_for(std::chrono::milliseconds(600)); }
SANDRUN_TEST(Timing, Sleeps3) { std::this_thread::sleep_for(std::chrono::milliseconds(600)); }
SANDRUN_TEST(Timing, Sleeps4) { std::this_thread::sleep_for(std::chrono::milliseconds(600)); }

// Parameterised and typed tests, marked by --sandrun_filter.
class ParamT : public ::testing::TestWithParam<int> {};
TEST_P(ParamT, IsSmall) { EXPECT_LT(GetParam(), 10) << "too big"; }
INSTANTIATE_TEST_SUITE_P(Nums, ParamT, ::testing::Values(3, 42));

template <typename T>
class TypedT : public ::testing::Test {};
using Types = ::testing::Types<int, long>;
TYPED_TEST_SUITE(TypedT, Types);
TYPED_TEST(TypedT, ZeroIsFalsy) { EXPECT_FALSE(static_cast<bool>(TypeParam(0))); }

// Where it runs: prints what the engine told it.
SANDRUN_TEST(Where, PrintsItsSandbox) {
  EXPECT_TRUE(sandrun::gtest::InsideSandbox());
  std::printf("sandbox=%s run=%s task=%s inside=%s\n", EnvOr("SANDRUN_SANDBOX_ID", "-").c_str(),
              EnvOr("SANDRUN_RUN_ID", "-").c_str(), EnvOr("SANDRUN_TASK_ID", "-").c_str(),
              EnvOr("SANDRUN_GTEST_INSIDE", "-").c_str());
}

// Uploads: relative to this file's directory, wherever the binary runs.
SANDRUN_TEST(Upload, RelativeToTheSourceFile, Options().Upload("data/marked.txt")) {
  std::ifstream in("marked.txt");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str(), "relative upload for the sandbox\n");
}

SANDRUN_TEST(Upload, MissingFile, Options().Upload("data/no-such-file.txt")) {
  ADD_FAILURE() << "ran without its upload";
}

TEST(Local, RunsOnHost) { EXPECT_FALSE(sandrun::gtest::InsideSandbox()); }
