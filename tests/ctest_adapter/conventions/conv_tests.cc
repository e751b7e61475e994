// The conventions project's GoogleTest binary: every kind of name
// gtest_discover_tests knows (plain, disabled, typed, type-parameterised,
// value-parameterised with ';' and brackets in the value), a crash, a hang
// and a failure (for XML_OUTPUT_DIR).
#include <csignal>
#include <string>
#include <thread>

#include <gtest/gtest.h>

TEST(Plain, Passes) { EXPECT_EQ(1 + 1, 2); }
TEST(Plain, DISABLED_Off) {}
TEST(DISABLED_Suite, Off) {}
TEST(Crash, Segfaults) { std::raise(SIGSEGV); }
TEST(Hang, Forever) {
  for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
}
TEST(Filtered, Out) {}
TEST(Xml, Fails) { EXPECT_EQ(1 + 1, 3) << "on purpose"; }

class Nums : public ::testing::TestWithParam<int> {};
TEST_P(Nums, IsSmall) { EXPECT_LT(GetParam(), 100); }
INSTANTIATE_TEST_SUITE_P(Few, Nums, ::testing::Values(7, 42));

class Words : public ::testing::TestWithParam<std::string> {};
TEST_P(Words, NotEmpty) { EXPECT_FALSE(GetParam().empty()); }
INSTANTIATE_TEST_SUITE_P(Odd, Words, ::testing::Values("a;b", "x[y]"));

template <class T>
class TypedT : public ::testing::Test {};
using Types = ::testing::Types<int, char>;
TYPED_TEST_SUITE(TypedT, Types);
TYPED_TEST(TypedT, ZeroIsFalsy) { EXPECT_FALSE(TypeParam(0)); }

template <class T>
class Pattern : public ::testing::Test {};
TYPED_TEST_SUITE_P(Pattern);
TYPED_TEST_P(Pattern, Works) {}
REGISTER_TYPED_TEST_SUITE_P(Pattern, Works);
INSTANTIATE_TYPED_TEST_SUITE_P(Mine, Pattern, Types);
