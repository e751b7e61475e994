#include "sandrun/output_collector.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace sandrun {
namespace {

TEST(OutputCollectorTest, KeepsShortOutputWhole) {
  std::string live;
  OutputCollector c(StreamKind::kStdout, 1024, "", [&](StreamKind k, std::string_view s) {
    EXPECT_EQ(k, StreamKind::kStdout);
    live += s;
  });
  c.Append("hello ");
  c.Append("world");
  CapturedStream s = c.Finish();
  EXPECT_EQ(s.text, "hello world");
  EXPECT_EQ(s.total_bytes, 11u);
  EXPECT_FALSE(s.truncated);
  EXPECT_EQ(live, "hello world");
}

TEST(OutputCollectorTest, CapsToHeadAndTailAndSpillsEverything) {
  testing::TempDir dir;
  auto spill = (dir.path() / "out.log").string();
  OutputCollector c(StreamKind::kStderr, 100, spill, nullptr);
  std::string all;
  for (int i = 0; i < 1000; ++i) {
    std::string chunk = std::to_string(i) + ",";
    all += chunk;
    c.Append(chunk);
  }
  CapturedStream s = c.Finish();
  EXPECT_EQ(s.total_bytes, all.size());
  EXPECT_TRUE(s.truncated);
  EXPECT_LE(s.text.size(), 100u);
  std::size_t marker = s.text.find("\n[... ");
  ASSERT_NE(marker, std::string::npos);
  std::size_t tail_from = s.text.find("...]\n") + 5;
  std::size_t kept = marker + (s.text.size() - tail_from);
  EXPECT_EQ(s.text.substr(0, marker), all.substr(0, marker));
  EXPECT_EQ(s.text.substr(tail_from), all.substr(all.size() - (s.text.size() - tail_from)));
  EXPECT_NE(s.text.find(std::to_string(all.size() - kept) + " bytes omitted"), std::string::npos);
  EXPECT_EQ(s.spill_path, spill);
  EXPECT_EQ(testing::ReadFile(spill), all);
}

TEST(OutputCollectorTest, OneHugeChunkKeepsItsEnds) {
  OutputCollector c(StreamKind::kStdout, 40, "", nullptr);
  std::string big(1000, 'x');
  big.replace(0, 5, "HEAD!");
  big.replace(995, 5, "TAIL!");
  c.Append(big);
  CapturedStream s = c.Finish();
  EXPECT_EQ(s.text.substr(0, 5), "HEAD!");
  EXPECT_EQ(s.text.substr(s.text.size() - 5), "TAIL!");
  EXPECT_EQ(s.total_bytes, 1000u);
  EXPECT_LE(s.text.size(), 40u);
}

TEST(OutputCollectorTest, TheTextNeverExceedsTheCapMarkerIncluded) {
  for (std::size_t cap : {0u, 1u, 5u, 7u, 10u, 30u, 64u, 1024u}) {
    for (std::size_t size : {cap, cap + 1, 2 * cap + 3, std::size_t{100000}}) {
      OutputCollector c(StreamKind::kStdout, cap, "", nullptr);
      for (std::size_t i = 0; i < size; i += 7) c.Append(std::string(std::min<std::size_t>(7, size - i), 'x'));
      CapturedStream s = c.Finish();
      EXPECT_LE(s.text.size(), cap) << "cap " << cap << ", stream " << size;
      EXPECT_EQ(s.truncated, size > cap) << "cap " << cap << ", stream " << size;
    }
  }
}

TEST(OutputCollectorTest, CutsFallBetweenCharacters) {
  // Two-byte characters with an odd cap: a byte-exact cut would split one.
  std::string text;
  for (int i = 0; i < 500; ++i) text += "\xc3\xa9";
  OutputCollector c(StreamKind::kStdout, 101, "", nullptr);
  c.Append("a");
  c.Append(text);
  c.Append("b");
  CapturedStream s = c.Finish();
  EXPECT_LE(s.text.size(), 101u);
  std::size_t marker = s.text.find("\n[... ");
  ASSERT_NE(marker, std::string::npos);
  EXPECT_EQ(marker % 2, 1u) << "the head ends after a whole character";
  std::string tail = s.text.substr(s.text.find("...]\n") + 5);
  EXPECT_EQ(tail.size() % 2, 1u) << "the tail starts at a whole character";
  EXPECT_EQ(tail.back(), 'b');
}

TEST(OutputCollectorTest, SpilledOutputIsOnDiskAtOnceAndPrivate) {
  testing::TempDir dir;
  auto spill = (dir.path() / "out.log").string();
  OutputCollector c(StreamKind::kStdout, 10, spill, nullptr);
  c.Append("started");
  // A sandrun killed now must still leave this behind for `results sync`.
  EXPECT_EQ(testing::ReadFile(spill), "started");
  EXPECT_EQ(std::filesystem::status(spill).permissions(),
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  c.Finish();
}

TEST(OutputCollectorTest, UnwritableSpillIsReportedNotFatal) {
  OutputCollector c(StreamKind::kStdout, 10, "/no/such/dir/out.log", nullptr);
  c.Append("abc");
  Status spill;
  CapturedStream s = c.Finish(&spill);
  EXPECT_EQ(s.text, "abc");
  EXPECT_FALSE(spill.ok());
  EXPECT_NE(spill.message().find("/no/such/dir/out.log"), std::string::npos);
  EXPECT_TRUE(s.spill_path.empty());
}

}  // namespace
}  // namespace sandrun
