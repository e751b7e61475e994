// A plain GoogleTest binary (GTest::gtest only, no sandrun in it): what
// `sandrun gtest` meets in the wild. Driven by gtest_adapter_test.cc's
// "SandrunGtestConventions" tests, never run by CTest directly (cases fail,
// crash and hang on purpose). Lines the driver checks carry "// @name".
//
// Its own arguments (left after InitGoogleTest): --hang makes Plain.Hangs
// hang, --my-flag is what Args.SeeMyFlag looks for.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace {
bool g_hang = false;
bool g_my_flag = false;
}  // namespace

TEST(Plain, Passes) { EXPECT_TRUE(true); }

TEST(Plain, Fails) {
  EXPECT_EQ(1 + 1, 3) << "plain failure";  // @plain_fail
}

TEST(Plain, Skipped) { GTEST_SKIP() << "no GPU on this runner"; }

TEST(Plain, Crashes) {  // @plain_crash
  raise(SIGSEGV);
}

TEST(Plain, Hangs) {  // @plain_hang
  while (g_hang) std::this_thread::sleep_for(std::chrono::seconds(1));
}

TEST(Plain, DISABLED_Off) { FAIL() << "a disabled test ran"; }

TEST(DISABLED_Off, Suite) { EXPECT_TRUE(true); }

TEST(Args, SeeMyFlag) { EXPECT_TRUE(g_my_flag) << "--my-flag did not reach the test"; }

// Fails the first time in a given PLAIN_FLAKY_DIR, passes afterwards.
TEST(Flaky, FailsOnce) {
  const char* dir = std::getenv("PLAIN_FLAKY_DIR");
  if (dir == nullptr) return;
  std::filesystem::path marker = std::filesystem::path(dir) / "ran-once";
  if (!std::filesystem::exists(marker)) {
    std::ofstream(marker) << "1";
    FAIL() << "first attempt fails";
  }
}

class Nums : public ::testing::TestWithParam<int> {};
TEST_P(Nums, IsSmall) { EXPECT_LT(GetParam(), 10); }
INSTANTIATE_TEST_SUITE_P(Few, Nums, ::testing::Values(1, 2, 3));

template <typename T>
class Typed : public ::testing::Test {};
using TypedTypes = ::testing::Types<int, char>;
TYPED_TEST_SUITE(Typed, TypedTypes);
TYPED_TEST(Typed, ZeroIsFalsy) { EXPECT_FALSE(static_cast<bool>(TypeParam{})); }

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--hang") g_hang = true;
    if (std::string(argv[i]) == "--my-flag") g_my_flag = true;
  }
  return RUN_ALL_TESTS();
}
