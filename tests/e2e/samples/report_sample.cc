// A plain GoogleTest binary (no sandrun code in it) for the report and
// results tests: a pass, a failure, a skip with a reason, parameterised and
// typed cases, a case that fails once then passes, and one that sleeps.
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

TEST(Plain, Passes) { EXPECT_EQ(2 + 2, 4); }

TEST(Plain, Fails) {
  EXPECT_EQ(1, 2) << "one is not two";  // @plain_fails
}

TEST(Plain, Skips) { GTEST_SKIP() << "no GPU here"; }

class ParamT : public ::testing::TestWithParam<int> {};
TEST_P(ParamT, IsSmall) { EXPECT_LT(GetParam(), 10); }
INSTANTIATE_TEST_SUITE_P(Nums, ParamT, ::testing::Values(1, 2, 30));

template <typename T>
class TypedT : public ::testing::Test {};
using Types = ::testing::Types<int, long>;
TYPED_TEST_SUITE(TypedT, Types);
TYPED_TEST(TypedT, ZeroIsFalsy) { EXPECT_FALSE(static_cast<bool>(TypeParam{})); }

// Fails the first time in REPORT_FLAKY_DIR, passes afterwards; passes when
// the variable is unset.
TEST(Flaky, FailsOnce) {
  const char* dir = std::getenv("REPORT_FLAKY_DIR");
  if (dir == nullptr) return;
  std::filesystem::path marker = std::filesystem::path(dir) / "ran-once";
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "1";
    FAIL() << "first attempt fails";
  }
}

// Sleeps REPORT_SLEEP_MS milliseconds (0 when unset).
TEST(Slow, Sleeps) {
  const char* ms = std::getenv("REPORT_SLEEP_MS");
  std::this_thread::sleep_for(std::chrono::milliseconds(ms ? std::atoi(ms) : 0));
}
