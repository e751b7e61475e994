#include "sandrun/spec.h"

#include <gtest/gtest.h>

namespace sandrun {
namespace {

TEST(JoinSandboxPathTest, JoinsARelativePathToTheBase) {
  auto joined = JoinSandboxPath("cwd", "/sandrun/work", "sub/dir");
  ASSERT_TRUE(joined.ok()) << joined.status().message();
  EXPECT_EQ(*joined, "/sandrun/work/sub/dir");
}

TEST(JoinSandboxPathTest, NormalisesDotsAndDoubleSlashes) {
  auto joined = JoinSandboxPath("cwd", "/sandrun/work", "./a//b/./c");
  ASSERT_TRUE(joined.ok()) << joined.status().message();
  EXPECT_EQ(*joined, "/sandrun/work/a/b/c");
  auto dot = JoinSandboxPath("cwd", "/sandrun/work", ".");
  ASSERT_TRUE(dot.ok());
  EXPECT_EQ(*dot, "/sandrun/work");
}

TEST(JoinSandboxPathTest, EmptyIsTheBaseOnlyWhenTheCallerSaysSo) {
  auto as_base = JoinSandboxPath("cwd", "/w", "", EmptySandboxPath::kIsBase);
  ASSERT_TRUE(as_base.ok());
  EXPECT_EQ(*as_base, "/w");
  auto refused = JoinSandboxPath("download path", "/w", "");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("download path"), std::string::npos);
}

TEST(JoinSandboxPathTest, AbsoluteAndClimbingPathsAreRefusedWithTheFieldsName) {
  for (const char* bad : {"/etc/passwd", "../x", "a/../../x", "a/.."}) {
    auto joined = JoinSandboxPath("upload destination", "/w", bad, EmptySandboxPath::kIsBase);
    ASSERT_FALSE(joined.ok()) << bad;
    EXPECT_EQ(joined.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(joined.status().message().find("upload destination"), std::string::npos) << bad;
  }
}

}  // namespace
}  // namespace sandrun

namespace sandrun {
namespace {

TEST(CommandStop, AListenerHearsTheRequestOnceAndNothingAfterItIsGone) {
  auto stop = std::make_shared<CommandStop>();
  int heard = 0;
  {
    CommandStop::Listener listener(stop, [&] { ++heard; });
    EXPECT_EQ(heard, 0);
    stop->Request();
    stop->Request();
    EXPECT_EQ(heard, 1);
    EXPECT_TRUE(stop->requested());
  }
  auto later = std::make_shared<CommandStop>();
  { CommandStop::Listener gone(later, [&] { ++heard; }); }
  later->Request();
  EXPECT_EQ(heard, 1) << "a listener that is gone was run";
  // A stop already requested is heard at once; a null one never.
  CommandStop::Listener late(later, [&] { ++heard; });
  EXPECT_EQ(heard, 2);
  CommandStop::Listener none(nullptr, [&] { ++heard; });
  EXPECT_EQ(heard, 2);
}

}  // namespace
}  // namespace sandrun
