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
  EXPECT_EQ(s.text.substr(0, 50), all.substr(0, 50));
  EXPECT_EQ(s.text.substr(s.text.size() - 50), all.substr(all.size() - 50));
  EXPECT_NE(s.text.find("bytes omitted"), std::string::npos);
  EXPECT_NE(s.text.find(std::to_string(all.size() - 100) + " bytes omitted"), std::string::npos);
  EXPECT_EQ(s.spill_path, spill);
  EXPECT_EQ(testing::ReadFile(spill), all);
}

TEST(OutputCollectorTest, OneHugeChunkKeepsItsEnds) {
  OutputCollector c(StreamKind::kStdout, 10, "", nullptr);
  std::string big(1000, 'x');
  big.replace(0, 5, "HEAD!");
  big.replace(995, 5, "TAIL!");
  c.Append(big);
  CapturedStream s = c.Finish();
  EXPECT_EQ(s.text.substr(0, 5), "HEAD!");
  EXPECT_EQ(s.text.substr(s.text.size() - 5), "TAIL!");
  EXPECT_EQ(s.total_bytes, 1000u);
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
