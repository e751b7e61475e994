// Host-side tar extraction refuses everything that would land outside the
// target directory. Crafted archives, no Docker needed.
#include "plugin_tar.h"

#include <filesystem>

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace sandrun::docker {
namespace {

namespace fs = std::filesystem;

Status ExtractEntries(const std::vector<TarEntry>& entries, const fs::path& dest) {
  auto tar = TarOfEntries(entries);
  EXPECT_TRUE(tar.ok());
  return ExtractTarSafely(*tar, dest).status();
}

TarEntry File(std::string name, std::string data = "x") {
  TarEntry e;
  e.name = std::move(name);
  e.data = std::move(data);
  return e;
}

TarEntry Link(std::string name, std::string target) {
  TarEntry e;
  e.name = std::move(name);
  e.symlink_target = std::move(target);
  return e;
}

TEST(DockerTarTest, ExtractsAnOrdinaryTree) {
  sandrun::testing::TempDir dir;
  TarEntry d;
  d.name = "top";
  d.directory = true;
  auto tar = TarOfEntries({d, File("top/a.txt", "alpha"), Link("top/l", "a.txt")});
  ASSERT_TRUE(tar.ok());
  auto written = ExtractTarSafely(*tar, dir.path() / "dest");
  ASSERT_TRUE(written.ok()) << written.status().ToString();
  EXPECT_EQ(sandrun::testing::ReadFile(dir.path() / "dest/top/l"), "alpha");
  EXPECT_EQ(written->size(), 2u);
}

TEST(DockerTarTest, RefusesDotDot) {
  sandrun::testing::TempDir dir;
  Status st = ExtractEntries({File("ok.txt"), File("a/../../evil.txt")}, dir.path() / "dest");
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("a/../../evil.txt"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(dir.path() / "evil.txt"));
}

TEST(DockerTarTest, RefusesAbsolutePaths) {
  sandrun::testing::TempDir dir;
  std::string target = (dir.path() / "abs-evil.txt").string();
  Status st = ExtractEntries({File(target)}, dir.path() / "dest");
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(fs::exists(target));
}

TEST(DockerTarTest, RefusesSymlinksOutside) {
  sandrun::testing::TempDir dir;
  EXPECT_EQ(ExtractEntries({Link("pw", "/etc/passwd")}, dir.path() / "d1").code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(ExtractEntries({Link("up", "../..")}, dir.path() / "d2").code(),
            StatusCode::kPermissionDenied);
  Status st = ExtractEntries({Link("sub/up", "../../outside")}, dir.path() / "d3");
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("sub/up"), std::string::npos);
}

TEST(DockerTarTest, RefusesWritingThroughASymlink) {
  sandrun::testing::TempDir dir;
  fs::create_directories(dir.path() / "outside");
  // "here" -> "." is inside; a chained link then tries to climb out of it.
  Status st = ExtractEntries({Link("here", "."), Link("esc", "here/../outside")},
                             dir.path() / "dest");
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied) << st.ToString();
  // A link to a directory inside, then a file written "through" it.
  st = ExtractEntries({Link("d", "sub"), File("d/x.txt")}, dir.path() / "dest2");
  EXPECT_FALSE(st.ok());
  EXPECT_FALSE(fs::exists(dir.path() / "dest2/sub/x.txt"));
}

TEST(DockerTarTest, RefusesHardLinksOutside) {
  sandrun::testing::TempDir dir;
  TarEntry hard;
  hard.name = "hl";
  hard.hardlink_target = "../../etc/passwd";
  Status st = ExtractEntries({File("a.txt"), hard}, dir.path() / "dest");
  EXPECT_EQ(st.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("'hl'"), std::string::npos) << st.message();
  hard.hardlink_target = "/etc/passwd";
  EXPECT_EQ(ExtractEntries({hard}, dir.path() / "dest2").code(), StatusCode::kPermissionDenied);
  // A hard link to another entry of the archive is fine.
  hard.hardlink_target = "a.txt";
  EXPECT_TRUE(ExtractEntries({File("a.txt", "same"), hard}, dir.path() / "dest3").ok());
  EXPECT_EQ(sandrun::testing::ReadFile(dir.path() / "dest3/hl"), "same");
}

}  // namespace
}  // namespace sandrun::docker
