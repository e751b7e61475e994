// Sixteen one-second sandboxed tests: launched at once, they take about one
// second of wall time, not sixteen (gtest_adapter_test.cc checks).
#include <chrono>
#include <thread>

#include "sandrun/gtest.h"

#define SLEEPY(n) \
  SANDRUN_TEST(FanOut, Sleep##n) { std::this_thread::sleep_for(std::chrono::seconds(1)); }

SLEEPY(1) SLEEPY(2) SLEEPY(3) SLEEPY(4) SLEEPY(5) SLEEPY(6) SLEEPY(7) SLEEPY(8)
SLEEPY(9) SLEEPY(10) SLEEPY(11) SLEEPY(12) SLEEPY(13) SLEEPY(14) SLEEPY(15) SLEEPY(16)

// Reuse(): these run one after another in a single sandbox.
SANDRUN_TEST(Reused, First, sandrun::gtest::Options().Reuse()) { EXPECT_TRUE(true); }
SANDRUN_TEST(Reused, Second, sandrun::gtest::Options().Reuse()) {
  EXPECT_EQ(1, 2) << "reused failure";
}

// Runs only on request (--gtest_also_run_disabled_tests): the interrupt test
// presses Ctrl-C while it runs in its sandbox.
SANDRUN_TEST(Interrupted, DISABLED_SleepsLong) {
  std::this_thread::sleep_for(std::chrono::seconds(120));
}
