#include "sandrun/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace sandrun {
namespace {

TEST(ReadWholeFileTest, ReadsEveryByteIncludingNulAndNewlines) {
  testing::TempDir dir;
  const std::string bytes = std::string("a\0b\r\nc\n", 7) + std::string(200000, 'x');
  auto path = dir.Write("data.bin", bytes);
  Result<std::string> read = ReadWholeFile(path);
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(*read, bytes);
}

TEST(ReadWholeFileTest, AnEmptyFileIsEmptyNotAnError) {
  testing::TempDir dir;
  Result<std::string> read = ReadWholeFile(dir.Write("empty", ""));
  ASSERT_TRUE(read.ok()) << read.status().message();
  EXPECT_EQ(*read, "");
}

TEST(ReadWholeFileTest, AMissingFileIsNotFoundAndNamed) {
  testing::TempDir dir;
  Result<std::string> read = ReadWholeFile(dir.path() / "nothing-here");
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kNotFound);
  EXPECT_NE(read.status().message().find("nothing-here"), std::string::npos);
}

TEST(ReadWholeFileTest, AnUnreadableFileIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads any file";
  testing::TempDir dir;
  auto path = dir.Write("secret", "x");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  Result<std::string> read = ReadWholeFile(path);
  ASSERT_FALSE(read.ok());
  EXPECT_EQ(read.status().code(), StatusCode::kPermissionDenied);
}

TEST(IsWithinTest, TheRootItselfAndWhatIsBelowItAreWithin) {
  EXPECT_TRUE(IsWithin("/a/b", "/a/b"));
  EXPECT_TRUE(IsWithin("/a/b/c", "/a/b"));
  EXPECT_TRUE(IsWithin("/a/b/c/d", "/a/b/"));  // trailing separator on the root
  EXPECT_TRUE(IsWithin("/x", "/"));
  EXPECT_TRUE(IsWithin("a/b", "a"));
  EXPECT_TRUE(IsWithin("b", "."));
}

TEST(IsWithinTest, SiblingsParentsAndNamePrefixesAreNot) {
  EXPECT_FALSE(IsWithin("/a/bc", "/a/b"));   // a longer name is not a child
  EXPECT_FALSE(IsWithin("/a", "/a/b"));      // the parent
  EXPECT_FALSE(IsWithin("/a/c/d", "/a/b"));  // a sibling's child
  EXPECT_FALSE(IsWithin("/a/b/../c", "/a/b"));  // lexically, it climbs out
}

TEST(IsWithinTest, AbsoluteAndRelativeNeverMix) {
  EXPECT_FALSE(IsWithin("/a/b", "a"));
  EXPECT_FALSE(IsWithin("a/b", "/a"));
}

}  // namespace
}  // namespace sandrun
