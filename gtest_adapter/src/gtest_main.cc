// main() for GoogleTest binaries that use the sandrun adapter: link
// sandrun::gtest_main instead of GTest::gtest_main.
#include <gtest/gtest.h>

#include "sandrun/gtest.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  sandrun::gtest::Init(&argc, argv);
  return RUN_ALL_TESTS();
}
