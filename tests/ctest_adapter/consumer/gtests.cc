// The consumer's GoogleTest binary: each case becomes a CTest test run in a
// sandbox by sandrun_discover_tests.
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

TEST(Math, Adds) { EXPECT_EQ(1 + 1, 2); }

TEST(Math, Fails) { EXPECT_EQ(1 + 1, 3) << "consumer failure message"; }

TEST(Math, Skipped) { GTEST_SKIP() << "consumer skip reason"; }

TEST(Math, DISABLED_Off) { FAIL() << "disabled tests do not run"; }

TEST(Slow, Hangs) {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}

class Even : public ::testing::TestWithParam<int> {};
TEST_P(Even, IsEven) { EXPECT_EQ(GetParam() % 2, 0); }
INSTANTIATE_TEST_SUITE_P(Values, Even, ::testing::Values(2, 4));
