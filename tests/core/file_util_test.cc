#include "sandrun/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

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

namespace fs = std::filesystem;

void WriteText(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(CopyReplacingTest, CopiesAFileOrTreeAndReplacesLikeForLike) {
  testing::TempDir dir;
  WriteText(dir.path() / "src" / "a.xml", "new");
  WriteText(dir.path() / "tree" / "sub" / "b", "tree");
  // A file into new parent directories, then over an older file.
  fs::path target = dir.path() / "out" / "deep" / "a.xml";
  ASSERT_TRUE(CopyReplacing(dir.path() / "src" / "a.xml", target).ok());
  EXPECT_EQ(ReadWholeFile(target).value(), "new");
  WriteText(dir.path() / "src" / "a.xml", "newer");
  ASSERT_TRUE(CopyReplacing(dir.path() / "src" / "a.xml", target).ok());
  EXPECT_EQ(ReadWholeFile(target).value(), "newer");
  // A tree over an older tree: nothing of the old one is left.
  fs::path tree_target = dir.path() / "copy";
  WriteText(tree_target / "stale", "old");
  ASSERT_TRUE(CopyReplacing(dir.path() / "tree", tree_target).ok());
  EXPECT_EQ(ReadWholeFile(tree_target / "sub" / "b").value(), "tree");
  EXPECT_FALSE(fs::exists(tree_target / "stale"));
  // Nothing left beside the targets.
  for (const auto& entry : fs::recursive_directory_iterator(dir.path())) {
    EXPECT_EQ(entry.path().string().find(".sandrun-"), std::string::npos) << entry.path();
  }
}

TEST(CopyReplacingTest, RefusesWhatWouldLoseDataAndLeavesLinksOut) {
  testing::TempDir dir;
  WriteText(dir.path() / "src" / "a.xml", "new");
  WriteText(dir.path() / "secret", "host file");
  // A directory is not replaced by a file; it keeps what it had.
  WriteText(dir.path() / "reports" / "other.xml", "keep");
  Status refused = CopyReplacing(dir.path() / "src" / "a.xml", dir.path() / "reports");
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ReadWholeFile(dir.path() / "reports" / "other.xml").value(), "keep");
  // No trailing '/', '.', '..', and never the current directory or above it.
  for (const std::string& bad : {(dir.path() / "r2").string() + "/", std::string("."),
                                 std::string(".."), fs::current_path().string(),
                                 fs::current_path().parent_path().string()}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(CheckCopyTarget(bad).code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(CopyReplacing(dir.path() / "src" / "a.xml", bad).code(),
              StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(fs::exists(fs::current_path()));
  // A link in a downloaded tree would point wherever the sandbox chose.
  fs::create_directories(dir.path() / "down" / "out");
  WriteText(dir.path() / "down" / "out" / "real", "data");
  fs::create_symlink("../../secret", dir.path() / "down" / "out" / "link");
  ASSERT_TRUE(CopyReplacing(dir.path() / "down" / "out", dir.path() / "host" / "res").ok());
  EXPECT_TRUE(fs::exists(dir.path() / "host" / "res" / "real"));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir.path() / "host" / "res" / "link")));
  // The download itself a link: refused.
  EXPECT_EQ(CopyReplacing(dir.path() / "down" / "out" / "link", dir.path() / "host" / "l").code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sandrun
