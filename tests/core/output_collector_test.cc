#include "sandrun/output_collector.h"

#include <atomic>
#include <chrono>
#include <thread>

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

TEST(ExecOutputTest, SpillsBothStreamsUnderTheRequestsSpillDirAndForwardsLive) {
  testing::TempDir dir;
  ExecRequest request;
  request.output_cap_bytes = 8;
  request.spill_dir = (dir.path() / "artifacts" / "task").string();  // made by ExecOutput
  std::string live;
  request.on_output = [&](StreamKind kind, std::string_view chunk) {
    live += (kind == StreamKind::kStdout ? "o:" : "e:") + std::string(chunk) + ";";
  };
  ExecOutput output(request);
  ASSERT_TRUE(output.spill_dir_status().ok()) << output.spill_dir_status().message();
  output.out().Append("0123456789abcdef");
  output.err().Append("oops");
  ExecResult result;
  output.FinishInto(result);
  EXPECT_EQ(live, "o:0123456789abcdef;e:oops;");
  EXPECT_TRUE(result.stdout_stream.truncated);
  EXPECT_LE(result.stdout_stream.text.size(), 8u);
  EXPECT_EQ(result.stdout_stream.total_bytes, 16u);
  EXPECT_EQ(result.stdout_stream.spill_path, request.spill_dir + "/stdout.log");
  EXPECT_EQ(testing::ReadFile(result.stdout_stream.spill_path), "0123456789abcdef");
  EXPECT_EQ(result.stderr_stream.text, "oops");
  EXPECT_EQ(testing::ReadFile(result.stderr_stream.spill_path), "oops");
  EXPECT_TRUE(result.notes.empty());
}

TEST(ExecOutputTest, WithoutASpillDirNothingIsWrittenAndNoCallbackIsNeeded) {
  ExecRequest request;
  ExecOutput output(request);
  output.out().Append("out");
  ExecResult result;
  output.FinishInto(result);
  EXPECT_EQ(result.stdout_stream.text, "out");
  EXPECT_TRUE(result.stdout_stream.spill_path.empty());
  EXPECT_TRUE(result.stderr_stream.spill_path.empty());
  EXPECT_TRUE(result.notes.empty());
}

TEST(ExecOutputTest, ASpillDirThatCannotBeMadeIsReportedAndOutputStillCaptured) {
  testing::TempDir dir;
  ExecRequest request;
  request.spill_dir = dir.Write("a-file", "x").string() + "/spills";  // under a file
  ExecOutput output(request);
  EXPECT_FALSE(output.spill_dir_status().ok());
  output.err().Append("still here");
  ExecResult result;
  output.FinishInto(result, "test: ");
  EXPECT_EQ(result.stderr_stream.text, "still here");
  EXPECT_TRUE(result.stderr_stream.spill_path.empty());
  ASSERT_EQ(result.notes.size(), 1u);
  EXPECT_EQ(result.notes[0].rfind("test: cannot create spill directory", 0), 0u) << result.notes[0];
}

TEST(ExecOutputTest, TheLiveCallbackIsNeverEnteredByTwoStreamsAtOnce) {
  ExecRequest request;
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  std::atomic<int> calls{0};
  request.on_output = [&](StreamKind, std::string_view) {
    if (inside.fetch_add(1) != 0) overlapped = true;
    std::this_thread::sleep_for(std::chrono::microseconds(50));
    inside.fetch_sub(1);
    ++calls;
  };
  ExecOutput output(request);
  std::thread out([&] { for (int i = 0; i < 200; ++i) output.out().Append("o"); });
  std::thread err([&] { for (int i = 0; i < 200; ++i) output.err().Append("e"); });
  out.join();
  err.join();
  EXPECT_EQ(calls.load(), 400);
  EXPECT_FALSE(overlapped.load());
}

TEST(RelocateSpillPathTest, AFileInTheOutboxArtifactDirGetsItsArchivePath) {
  EXPECT_EQ(RelocateSpillPath("/box/r1/artifacts/t1/stdout.log", "/box/r1/artifacts/t1",
                              "r1/artifacts/t1"),
            "r1/artifacts/t1/stdout.log");
  EXPECT_EQ(RelocateSpillPath("/box/./r1/artifacts/t1/sub/x.log", "/box/r1/artifacts/t1/",
                              "r1/artifacts/t1"),
            "r1/artifacts/t1/sub/x.log");
}

TEST(RelocateSpillPathTest, AnythingElseIsLeftAsItIs) {
  EXPECT_EQ(RelocateSpillPath("", "/box/r1/artifacts/t1", "r1/artifacts/t1"), "");
  EXPECT_EQ(RelocateSpillPath("/elsewhere/stdout.log", "/box/r1/artifacts/t1", "r1/artifacts/t1"),
            "/elsewhere/stdout.log");
  EXPECT_EQ(RelocateSpillPath("/box/r1/artifacts/t1", "/box/r1/artifacts/t1", "r1/artifacts/t1"),
            "/box/r1/artifacts/t1");
  EXPECT_EQ(RelocateSpillPath("/box/r1/artifacts/t2/stdout.log", "/box/r1/artifacts/t1",
                              "r1/artifacts/t1"),
            "/box/r1/artifacts/t2/stdout.log");
}

}  // namespace
}  // namespace sandrun
