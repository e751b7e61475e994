#include "sandrun/spec.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

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

// The cp rule: a destination that names a directory gets the source's name.
TEST(UploadDestinationTest, ADirectoryDestinationKeepsTheSourcesName) {
  const std::vector<std::pair<FileUpload, std::string>> cases = {
      {{"/host/dir/a.txt", ""}, "a.txt"},
      {{"/host/dir/a.txt", "."}, "a.txt"},
      {{"/host/dir/a.txt", "./"}, "a.txt"},
      {{"/host/dir/a.txt", "in/"}, "in/a.txt"},
      {{"/host/dir/a.txt", "in/."}, "in/a.txt"},
      {{"/host/dir/a.txt", "in//deep/"}, "in/deep/a.txt"},
      {{"/host/dir/a.txt", "renamed.txt"}, "renamed.txt"},
      {{"/host/dir/a.txt", "./x/./renamed.txt"}, "x/renamed.txt"},
      {{"/host/tree/", "."}, "tree"},
      {{"/host/tree/.", "copies/"}, "copies/tree"},
  };
  for (const auto& [upload, expected] : cases) {
    auto lands = UploadDestination(upload);
    ASSERT_TRUE(lands.ok()) << upload.source << " -> " << upload.destination << ": "
                            << lands.status().message();
    EXPECT_EQ(*lands, expected) << upload.source << " -> '" << upload.destination << "'";
  }
}

// Checked as given, before anything is normalised away: "a/.." is not ".".
TEST(UploadDestinationTest, ClimbingOrAbsoluteDestinationsAreRefusedAsGiven) {
  for (const char* bad : {"a/..", "a/../b", "../x", "/etc/x"}) {
    auto lands = UploadDestination(FileUpload{"/host/a.txt", bad});
    ASSERT_FALSE(lands.ok()) << bad;
    EXPECT_EQ(lands.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(lands.status().message().find(std::string("'") + bad + "'"), std::string::npos)
        << lands.status().message();
  }
  auto nameless = UploadDestination(FileUpload{"/", "."});
  ASSERT_FALSE(nameless.ok());
  EXPECT_NE(nameless.status().message().find("name its destination"), std::string::npos);
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
