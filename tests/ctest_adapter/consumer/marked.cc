// Links the installed sandrun::gtest_main: the marked test runs in a sandbox
// (where SANDRUN_GTEST_INSIDE is set), the plain one on the host.
#include <cstdlib>

#include <sandrun/gtest.h>

SANDRUN_TEST(Marked, RunsInASandbox) {
  EXPECT_NE(std::getenv("SANDRUN_GTEST_INSIDE"), nullptr);
}

TEST(Marked, HostTest) { EXPECT_EQ(std::getenv("SANDRUN_GTEST_INSIDE"), nullptr); }
