#include "sandrun/archive.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;
using ::sandrun::testing::ReadFile;
using ::sandrun::testing::TempDir;

TaskRecord MakeTask(const std::string& run_id, const std::string& task_id, int exit_code = 0) {
  TaskRecord t;
  t.run_id = run_id;
  t.task_id = task_id;
  t.test_name = task_id;
  t.backend = "local";
  t.argv = {"echo", task_id};
  t.result.outcome = Outcome::kExited;
  t.result.exit_code = exit_code;
  t.result.stdout_stream.text = task_id + "\n";
  t.result.stdout_stream.total_bytes = task_id.size() + 1;
  return t;
}

RunRecord MakeRun(const std::string& run_id) {
  RunRecord r;
  r.run_id = run_id;
  r.status = RunStatus::kPassed;
  r.backend = "local";
  r.total = 1;
  r.passed = 1;
  return r;
}

// A store that refuses every write, like a volume that is unreachable.
class BrokenStore : public DirectoryArchiveStore {
 public:
  using DirectoryArchiveStore::DirectoryArchiveStore;
  bool OnThisHost() const override { return false; }  // Or the archive renames past PutFile.
  Status PutFile(const std::string&, const fs::path&) override {
    return UnavailableError("volume unreachable");
  }
  Status PutBytes(const std::string&, std::string_view) override {
    return UnavailableError("volume unreachable");
  }
};

struct Fixture {
  TempDir dir;
  fs::path store_root = dir.path() / "store";
  fs::path outbox = dir.path() / "outbox";
  std::shared_ptr<DirectoryArchiveStore> store =
      std::make_shared<DirectoryArchiveStore>(store_root);
  ResultArchive archive{store, outbox};
};

// Parts of one group's run end while others still write their tasks (the
// service runs them in threads; ctest -j in processes): a part's end must
// not take a directory from under a task's record being written. Once, a
// part's task record went missing so.
TEST(ResultArchiveRunGroupTest, APartEndingWhileAnotherWritesLosesNoRecord) {
  Fixture f;
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) ids.push_back("t" + std::to_string(i));
  auto writer_part = f.archive.JoinRunGroup("group", 0, ids);
  ASSERT_TRUE(writer_part.ok()) << writer_part.status().ToString();
  const std::string run = writer_part->run_id;
  std::atomic<bool> writing{true};
  std::thread ending_parts([&] {
    for (int part = 100; writing; ++part) {
      RunRecord record = MakeRun(run);
      record.total = record.passed = 0;
      f.archive.WriteRunPart(record, part).IgnoreError();
    }
  });
  std::vector<std::string> failures;
  for (const std::string& id : writer_part->task_ids) {
    TaskRecord task = MakeTask(run, id);
    Status started = f.archive.WriteStarted(task, 1 << 20);
    Status written = f.archive.WriteTask(task);
    if (!started.ok()) failures.push_back(id + " started: " + started.ToString());
    if (!written.ok()) failures.push_back(id + ": " + written.ToString());
  }
  writing = false;
  ending_parts.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
  auto tasks = f.archive.ReadTasks(run);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  EXPECT_EQ(tasks->size(), ids.size());
}

TEST(IsSafeRelativePathTest, AcceptsPlainRelativePaths) {
  EXPECT_TRUE(IsSafeRelativePath("a"));
  EXPECT_TRUE(IsSafeRelativePath("a/b.json"));
  EXPECT_TRUE(IsSafeRelativePath("run/artifacts/t-1/stdout.log"));
  EXPECT_TRUE(IsSafeRelativePath("..a/b.."));
}

TEST(IsSafeRelativePathTest, RejectsEscapesAndOddForms) {
  for (const char* bad : {"", "/abs", "a/../b", "..", "../a", "a//b", "./a", "a/.", "a/",
                          "a/./b"}) {
    EXPECT_FALSE(IsSafeRelativePath(bad)) << bad;
  }
  EXPECT_FALSE(IsSafeRelativePath(std::string_view("a\0b", 3)));
}

TEST(NewRunIdTest, HasTheDocumentedFormatAndNeverRepeats) {
  const std::regex format("^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}$");
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = NewRunId();
    ASSERT_TRUE(std::regex_match(id, format)) << id;
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
  // Sorts by time: an id from later compares greater than the first of today.
  EXPECT_LE(*ids.begin(), NewRunId());
}

TEST(DirectoryArchiveStoreTest, PutReadListRemove) {
  TempDir dir;
  fs::path root = dir.path() / "archive";
  DirectoryArchiveStore store(root);
  EXPECT_EQ(store.Describe(), "directory " + root.string());
  ASSERT_TRUE(store.PutBytes("r1/run.json", "{}").ok());
  EXPECT_EQ(fs::status(root).permissions() & fs::perms::all, fs::perms::owner_all);
  ASSERT_TRUE(store.PutBytes("r1/tasks/a.json", "A").ok());
  ASSERT_TRUE(store.PutBytes("r1/tasks/a.json", "A2").ok());  // Replaces.
  EXPECT_EQ(*store.ReadBytes("r1/tasks/a.json"), "A2");

  auto root_list = store.List("");
  ASSERT_TRUE(root_list.ok());
  EXPECT_EQ(*root_list, std::vector<std::string>{"r1/"});
  EXPECT_EQ(*store.List("r1"), (std::vector<std::string>{"run.json", "tasks/"}));
  EXPECT_EQ(store.List("nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store.ReadBytes("r1/missing").status().code(), StatusCode::kNotFound);

  ASSERT_TRUE(store.Remove("r1").ok());
  EXPECT_FALSE(fs::exists(root / "r1"));
  EXPECT_TRUE(store.Remove("r1").ok());  // Already absent is fine.
}

TEST(DirectoryArchiveStoreTest, RejectsUnsafePaths) {
  TempDir dir;
  DirectoryArchiveStore store(dir.path() / "a");
  EXPECT_EQ(store.PutBytes("../x", "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.PutFile("/etc/passwd", dir.path()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.ReadBytes("a/../../x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.List("..").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Fetch("../", dir.path()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store.Remove("").code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(dir.path() / "x"));
}

TEST(DirectoryArchiveStoreTest, PutFileCopiesFilesAndTrees) {
  TempDir dir;
  DirectoryArchiveStore store(dir.path() / "archive");
  dir.Write("src/a.txt", "alpha");
  dir.Write("src/sub/b.txt", "beta");
  ASSERT_TRUE(store.PutFile("r/artifacts/t", dir.path() / "src").ok());
  EXPECT_EQ(ReadFile(dir.path() / "archive/r/artifacts/t/sub/b.txt"), "beta");
  EXPECT_TRUE(fs::exists(dir.path() / "src/a.txt"));  // A copy, not a move.

  // Replacing a tree drops files that are no longer there.
  fs::remove(dir.path() / "src/a.txt");
  ASSERT_TRUE(store.PutFile("r/artifacts/t", dir.path() / "src").ok());
  EXPECT_FALSE(fs::exists(dir.path() / "archive/r/artifacts/t/a.txt"));
  ASSERT_TRUE(store.PutFile("r/one.txt", dir.path() / "src/sub/b.txt").ok());
  EXPECT_EQ(ReadFile(dir.path() / "archive/r/one.txt"), "beta");
  EXPECT_EQ(store.PutFile("r/x", dir.path() / "nope").code(), StatusCode::kNotFound);
  // No temporary leftovers are listed.
  EXPECT_EQ(*store.List("r"), (std::vector<std::string>{"artifacts/", "one.txt"}));
}

TEST(DirectoryArchiveStoreTest, FetchCopiesAndRefusesEscapingSymlinks) {
  TempDir dir;
  DirectoryArchiveStore store(dir.path() / "archive");
  ASSERT_TRUE(store.PutBytes("r/tasks/a.json", "A").ok());
  fs::create_symlink("tasks/a.json", dir.path() / "archive/r/inside-link");
  ASSERT_TRUE(store.Fetch("r", dir.path() / "dest").ok());
  EXPECT_EQ(ReadFile(dir.path() / "dest/r/tasks/a.json"), "A");
  EXPECT_TRUE(fs::is_symlink(dir.path() / "dest/r/inside-link"));
  EXPECT_EQ(ReadFile(dir.path() / "dest/r/inside-link"), "A");

  dir.Write("secret.txt", "secret");
  fs::create_symlink("../../../secret.txt", dir.path() / "archive/r/tasks/escape");
  Status relative_escape = store.Fetch("r", dir.path() / "dest2");
  EXPECT_EQ(relative_escape.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(relative_escape.message().find("escape"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.path() / "dest2/r"));

  fs::remove(dir.path() / "archive/r/tasks/escape");
  fs::create_symlink(dir.path() / "secret.txt", dir.path() / "archive/r/abs");
  EXPECT_EQ(store.Fetch("r", dir.path() / "dest3").code(), StatusCode::kPermissionDenied);

  // The fetched entry itself being a link out of the archive is refused too.
  fs::create_symlink(dir.path(), dir.path() / "archive/linked-run");
  EXPECT_EQ(store.Fetch("linked-run", dir.path() / "dest4").code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(store.Fetch("absent", dir.path() / "dest5").code(), StatusCode::kNotFound);
}

TEST(ResultArchiveTest, BeginRunReservesDistinctIdsInTheOutbox) {
  Fixture f;
  std::set<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto id = f.archive.BeginRun();
    ASSERT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_TRUE(fs::is_directory(f.outbox / *id));
    ids.insert(*id);
  }
  EXPECT_EQ(ids.size(), 20u);
}

TEST(ResultArchiveTest, BeginRunSkipsIdsTakenInOutboxOrStore) {
  Fixture f;
  fs::create_directories(f.outbox / "20260101T000000Z-aaaa");
  ASSERT_TRUE(f.store->PutBytes("20260101T000000Z-bbbb/run.json", "{}").ok());
  std::vector<std::string> candidates = {"20260101T000000Z-aaaa", "20260101T000000Z-bbbb",
                                         "20260101T000000Z-cccc"};
  std::size_t next = 0;
  f.archive.SetRunIdGeneratorForTesting([&] { return candidates.at(next++); });
  auto id = f.archive.BeginRun();
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  EXPECT_EQ(*id, "20260101T000000Z-cccc");
  EXPECT_EQ(next, 3u);

  // When every candidate collides it gives up with an error, not a loop.
  f.archive.SetRunIdGeneratorForTesting([] { return std::string("20260101T000000Z-aaaa"); });
  EXPECT_FALSE(f.archive.BeginRun().ok());
}

TEST(ResultArchiveTest, WritesReadsAndListsRuns) {
  Fixture f;
  auto run_id = f.archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  auto artifacts = f.archive.ArtifactDir(*run_id, "t2");
  ASSERT_TRUE(artifacts.ok());
  EXPECT_EQ(*artifacts, f.outbox / *run_id / "artifacts" / "t2");
  std::ofstream(*artifacts / "stdout.log") << "full stream";

  TaskRecord t2 = MakeTask(*run_id, "t2", 1);
  t2.result.stdout_stream.spill_path = (*artifacts / "stdout.log").string();
  t2.result.stdout_stream.truncated = true;
  ASSERT_TRUE(f.archive.WriteTask(t2).ok());
  ASSERT_TRUE(f.archive.WriteTask(MakeTask(*run_id, "t1")).ok());
  EXPECT_EQ(f.archive.PendingCount(), 0);

  // Delivered: record and artifacts are in the store, gone from the outbox.
  EXPECT_EQ(ReadFile(f.store_root / *run_id / "artifacts/t2/stdout.log"), "full stream");
  EXPECT_FALSE(fs::exists(f.outbox / *run_id / "tasks/t2.json"));
  EXPECT_FALSE(fs::exists(*artifacts));

  auto listed = f.archive.ListRuns();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_FALSE((*listed)[0].has_summary);  // No run.json yet.

  RunRecord run = MakeRun(*run_id);
  run.task_ids = {"t2", "t1"};
  ASSERT_TRUE(f.archive.WriteRun(run).ok());
  EXPECT_FALSE(fs::exists(f.outbox / *run_id));  // Nothing pending: outbox dir gone.

  auto tasks = f.archive.ReadTasks(*run_id);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  ASSERT_EQ(tasks->size(), 2u);
  EXPECT_EQ((*tasks)[0].task_id, "t1");  // Sorted by task id.
  EXPECT_EQ((*tasks)[1].task_id, "t2");
  EXPECT_EQ((*tasks)[1].result.exit_code, 1);
  // The spill path now names the archived file.
  EXPECT_EQ((*tasks)[1].result.stdout_stream.spill_path,
            *run_id + "/artifacts/t2/stdout.log");

  auto one = f.archive.ReadTask(*run_id, "t2");
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->argv, (std::vector<std::string>{"echo", "t2"}));
  auto read_run = f.archive.ReadRun(*run_id);
  ASSERT_TRUE(read_run.ok());
  EXPECT_EQ(read_run->task_ids, run.task_ids);
  listed = f.archive.ListRuns();
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE((*listed)[0].has_summary);
  EXPECT_EQ((*listed)[0].summary.status, RunStatus::kPassed);

  EXPECT_EQ(f.archive.ReadTask(*run_id, "t9").status().code(), StatusCode::kNotFound);
  Status unknown = f.archive.ReadRun("20200101T000000Z-0000").status();
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound);
  EXPECT_NE(unknown.message().find("20200101T000000Z-0000"), std::string::npos);
  EXPECT_EQ(f.archive.ReadTasks("20200101T000000Z-0000").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(f.archive.ReadTask("../x", "t").status().code(), StatusCode::kInvalidArgument);
}

// A store that counts the reads of run records, as each is a request to a
// volume: `results list --limit N` must not pay for every run in the archive.
class ReadCountingStore : public DirectoryArchiveStore {
 public:
  using DirectoryArchiveStore::DirectoryArchiveStore;
  Result<std::string> ReadBytes(const std::string& path) override {
    std::lock_guard<std::mutex> lock(mu);
    reads.push_back(path);
    return DirectoryArchiveStore::ReadBytes(path);
  }
  std::mutex mu;
  std::vector<std::string> reads;
};

TEST(ResultArchiveTest, ListRunsReadsOnlyTheSummariesAskedFor) {
  TempDir dir;
  auto store = std::make_shared<ReadCountingStore>(dir.path() / "store");
  ResultArchive archive(store, dir.path() / "outbox");
  for (int day = 1; day <= 30; ++day) {
    char id[32];
    std::snprintf(id, sizeof id, "202601%02dT000000Z-00%02d", day, day);
    ASSERT_TRUE(archive.WriteTask(MakeTask(id, "t")).ok());
    ASSERT_TRUE(archive.WriteRun(MakeRun(id)).ok());
  }
  store->reads.clear();
  auto newest = archive.ListRuns(3);
  ASSERT_TRUE(newest.ok());
  ASSERT_EQ(newest->size(), 30u);
  EXPECT_EQ(store->reads.size(), 3u) << ::testing::PrintToString(store->reads);
  for (std::size_t i = 0; i < newest->size(); ++i) {
    EXPECT_EQ((*newest)[i].summary_read, i < 3) << i;
    EXPECT_EQ((*newest)[i].has_summary, i < 3) << i;
  }
  EXPECT_EQ((*newest)[0].run_id, "20260130T000000Z-0030");
  EXPECT_EQ((*newest)[2].summary.run_id, "20260128T000000Z-0028");

  store->reads.clear();
  auto ids_only = archive.ListRuns(0);
  ASSERT_TRUE(ids_only.ok());
  EXPECT_EQ(ids_only->size(), 30u);
  EXPECT_TRUE(store->reads.empty());

  auto all = archive.ListRuns();  // Read several at once: each one lands in its own slot.
  ASSERT_TRUE(all.ok());
  for (const auto& run : *all) {
    EXPECT_TRUE(run.has_summary) << run.run_id;
    EXPECT_EQ(run.summary.run_id, run.run_id);
  }
}

TEST(ResultArchiveTest, RunsOfOneSecondAreListedByTheirStart) {
  TempDir dir;
  auto store = std::make_shared<ReadCountingStore>(dir.path() / "store");
  ResultArchive archive(store, dir.path() / "outbox");
  // Within 00:00:01 the ids' order is the reverse of the starts'.
  const std::vector<std::pair<std::string, std::string>> runs = {
      {"20260101T000001Z-ffff", "2026-01-01T00:00:01.100Z"},
      {"20260101T000001Z-8888", "2026-01-01T00:00:01.500Z"},
      {"20260101T000001Z-0001", "2026-01-01T00:00:01.900Z"},
      {"20260101T000000Z-ffff", "2026-01-01T00:00:00.900Z"},
      {"20260101T000002Z-0000", "2026-01-01T00:00:02.000Z"}};
  for (const auto& [id, started_at] : runs) {
    ASSERT_TRUE(archive.WriteTask(MakeTask(id, "t")).ok());
    RunRecord run = MakeRun(id);
    run.started_at = started_at;
    ASSERT_TRUE(archive.WriteRun(run).ok());
  }
  store->reads.clear();
  // Asked for two summaries, it reads the whole second the second one is in.
  auto listed = archive.ListRuns(2);
  ASSERT_TRUE(listed.ok());
  EXPECT_EQ(store->reads.size(), 4u) << ::testing::PrintToString(store->reads);
  std::vector<std::string> order;
  for (const auto& run : *listed) order.push_back(run.run_id);
  EXPECT_EQ(order, (std::vector<std::string>{"20260101T000002Z-0000", "20260101T000001Z-0001",
                                             "20260101T000001Z-8888", "20260101T000001Z-ffff",
                                             "20260101T000000Z-ffff"}));
  RunListing unread{"20260101T000001Z-9999"};  // No summary: the start of its second.
  EXPECT_TRUE(NewerRunFirst((*listed)[3], unread));
  EXPECT_FALSE(NewerRunFirst(unread, (*listed)[3]));
  EXPECT_TRUE(NewerRunFirst(unread, (*listed)[4]));
}

TEST(ResultArchiveTest, ListRunsNewestFirstAndPruneRemovesOldest) {
  Fixture f;
  const std::vector<std::string> ids = {"20260101T000000Z-0001", "20260301T000000Z-0003",
                                        "20260201T000000Z-0002"};
  for (const auto& id : ids) {
    ASSERT_TRUE(f.archive.WriteTask(MakeTask(id, "t")).ok());
    ASSERT_TRUE(f.archive.WriteRun(MakeRun(id)).ok());
  }
  ASSERT_TRUE(f.store->PutBytes("not-a-run/file", "x").ok());  // Ignored by ListRuns.
  auto listed = f.archive.ListRuns();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 3u);
  EXPECT_EQ((*listed)[0].run_id, "20260301T000000Z-0003");
  EXPECT_EQ((*listed)[1].run_id, "20260201T000000Z-0002");
  EXPECT_EQ((*listed)[2].run_id, "20260101T000000Z-0001");

  auto removed = f.archive.Prune(1);
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(removed->removed,
            (std::vector<std::string>{"20260201T000000Z-0002", "20260101T000000Z-0001"}));
  EXPECT_FALSE(fs::exists(f.store_root / "20260101T000000Z-0001"));
  EXPECT_TRUE(fs::exists(f.store_root / "20260301T000000Z-0003/run.json"));
  EXPECT_TRUE(f.archive.Prune(5)->removed.empty());
  EXPECT_EQ(f.archive.Prune(-1).status().code(), StatusCode::kInvalidArgument);
}

TEST(ResultArchiveTest, FetchCopiesTheWholeRun) {
  Fixture f;
  const std::string id = "20260101T000000Z-0001";
  auto artifacts = f.archive.ArtifactDir(id, "t");
  ASSERT_TRUE(artifacts.ok());
  std::ofstream(*artifacts / "out.bin") << "bytes";
  ASSERT_TRUE(f.archive.WriteTask(MakeTask(id, "t")).ok());
  ASSERT_TRUE(f.archive.WriteRun(MakeRun(id)).ok());
  fs::path dest = f.dir.path() / "fetched";
  ASSERT_TRUE(f.archive.Fetch(id, dest).ok());
  EXPECT_TRUE(fs::exists(dest / id / "run.json"));
  EXPECT_TRUE(fs::exists(dest / id / "tasks/t.json"));
  EXPECT_EQ(ReadFile(dest / id / "artifacts/t/out.bin"), "bytes");
  EXPECT_EQ(f.archive.Fetch("20990101T000000Z-ffff", dest).code(), StatusCode::kNotFound);
}

TEST(ResultArchiveTest, UndeliverableRecordsStayInTheOutboxUntilSync) {
  TempDir dir;
  fs::path outbox = dir.path() / "outbox";
  const std::string id = "20260101T000000Z-0001";
  {
    // A store whose root is a regular file cannot take anything.
    dir.Write("file-not-dir", "x");
    ResultArchive broken(std::make_shared<DirectoryArchiveStore>(dir.path() / "file-not-dir"),
                         outbox);
    auto artifacts = broken.ArtifactDir(id, "t");
    ASSERT_TRUE(artifacts.ok());
    std::ofstream(*artifacts / "stdout.log") << "spilled";
    Status s = broken.WriteTask(MakeTask(id, "t", 3));
    EXPECT_FALSE(s.ok());
    // The message completes "record t ...", for the warning a run prints.
    EXPECT_EQ(s.message().rfind("kept in the outbox " + outbox.string(), 0), 0u) << s.message();
    EXPECT_NE(s.message().find("`sandrun results sync` delivers it"), std::string::npos);
    EXPECT_EQ(broken.PendingCount(), 1);
    EXPECT_TRUE(fs::exists(outbox / id / "tasks/t.json"));
    EXPECT_TRUE(fs::exists(*artifacts / "stdout.log"));
  }
  {
    // An unreachable remote volume: same story, and run.json waits too.
    ResultArchive unreachable(std::make_shared<BrokenStore>(dir.path() / "never"), outbox);
    Status s = unreachable.WriteRun(MakeRun(id));
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
    EXPECT_NE(s.message().find("volume unreachable"), std::string::npos);
    EXPECT_EQ(unreachable.PendingCount(), 2);
    auto synced = unreachable.Sync();
    EXPECT_FALSE(synced.ok());
    EXPECT_EQ(unreachable.PendingCount(), 2);
  }
  // A later process with a working store delivers everything.
  auto store = std::make_shared<DirectoryArchiveStore>(dir.path() / "store");
  ResultArchive working(store, outbox);
  auto synced = working.Sync();
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  EXPECT_EQ(*synced, 2);
  EXPECT_EQ(working.PendingCount(), 0);
  auto task = working.ReadTask(id, "t");
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  EXPECT_EQ(task->result.exit_code, 3);
  EXPECT_EQ(ReadFile(dir.path() / "store" / id / "artifacts/t/stdout.log"), "spilled");
  EXPECT_TRUE(working.ReadRun(id).ok());
  EXPECT_FALSE(fs::exists(outbox / id));
  EXPECT_EQ(*working.Sync(), 0);  // Nothing left to do.
}

TEST(ResultArchiveTest, ARecordTheOutboxCannotTakeIsSaidToBeLostNotKept) {
  TempDir dir;
  fs::path outbox = dir.path() / "outbox";
  const std::string id = "20260101T000000Z-0002";
  ResultArchive archive(std::make_shared<DirectoryArchiveStore>(dir.path() / "store"), outbox);
  // The run's outbox directory is a regular file (a full or broken disk, say).
  fs::create_directories(outbox);
  std::ofstream(outbox / id) << "x";
  Status s = archive.WriteTask(MakeTask(id, "t"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind("could not be written to the outbox " + outbox.string(), 0), 0u)
      << s.message();
  EXPECT_NE(s.message().find("the archive will not have its result"), std::string::npos);
  EXPECT_EQ(s.message().find("kept in"), std::string::npos) << s.message();
}

TEST(ResultArchiveTest, ConcurrentWriteTaskLosesNothing) {
  Fixture f;
  auto run_id = f.archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  constexpr int kThreads = 8, kPerThread = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string task_id = "t" + std::to_string(t) + "-" + std::to_string(i);
        auto dir = f.archive.ArtifactDir(*run_id, task_id);
        if (!dir.ok()) {
          ++failures;
          continue;
        }
        std::ofstream(*dir / "stdout.log") << task_id;
        if (!f.archive.WriteTask(MakeTask(*run_id, task_id, i % 3)).ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(f.archive.PendingCount(), 0);
  auto tasks = f.archive.ReadTasks(*run_id);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  ASSERT_EQ(tasks->size(), static_cast<std::size_t>(kThreads * kPerThread));
  for (const TaskRecord& task : *tasks) {
    EXPECT_EQ(ReadFile(f.store_root / *run_id / "artifacts" / task.task_id / "stdout.log"),
              task.task_id);
  }
}

// A remote-like store: every PutFiles call is counted, as each would be a
// request to a volume. It is on this host only when a test says so.
class CountingStore : public DirectoryArchiveStore {
 public:
  using DirectoryArchiveStore::DirectoryArchiveStore;
  bool OnThisHost() const override { return on_this_host; }
  Status PutFiles(const std::vector<ArchivePut>& puts) override {
    std::lock_guard<std::mutex> lock(mu);
    ++calls;
    items += static_cast<int>(puts.size());
    return DirectoryArchiveStore::PutFiles(puts);
  }
  bool on_this_host = false;
  std::mutex mu;
  int calls = 0;
  int items = 0;
};

ino_t InodeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

TEST(ResultArchiveTest, ADirectoryStoreOnThisHostGetsEachRecordAtOnceAndArtifactsByRename) {
  TempDir dir;
  auto store = std::make_shared<CountingStore>(dir.path() / "store");
  store->on_this_host = true;  // A subclass: the store's answer decides, not its type.
  ResultArchive archive(store, dir.path() / "outbox");
  auto run_id = archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  auto artifacts = archive.ArtifactDir(*run_id, "t");
  ASSERT_TRUE(artifacts.ok());
  std::ofstream(*artifacts / "stdout.log") << "spilled";
  const ino_t spilled = InodeOf(*artifacts / "stdout.log");
  ASSERT_TRUE(archive.WriteTask(MakeTask(*run_id, "t")).ok());
  EXPECT_EQ(archive.PendingCount(*run_id), 0);  // Delivered at once, no interval.
  EXPECT_EQ(store->calls, 0);                   // Moved in, not put.
  fs::path delivered = dir.path() / "store" / *run_id / "artifacts/t/stdout.log";
  EXPECT_EQ(ReadFile(delivered), "spilled");
  EXPECT_EQ(InodeOf(delivered), spilled);  // The very file: renamed, not copied.
  EXPECT_TRUE(archive.ReadTask(*run_id, "t").ok());
}

TEST(ResultArchiveTest, AStoreElsewhereGetsRecordsAfterTheRemoteDeliveryInterval) {
  TempDir dir;
  auto store = std::make_shared<CountingStore>(dir.path() / "store");  // Not on this host.
  ResultArchive archive(store, dir.path() / "outbox");
  auto run_id = archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  const auto written = std::chrono::steady_clock::now();
  ASSERT_TRUE(archive.WriteTask(MakeTask(*run_id, "t")).ok());
  const int waiting = archive.PendingCount(*run_id);
  if (std::chrono::steady_clock::now() - written < ResultArchive::kRemoteDeliveryInterval) {
    EXPECT_EQ(waiting, 1);  // Not due yet (a stalled machine may have passed the interval).
  }
  while (archive.PendingCount(*run_id) > 0 &&
         std::chrono::steady_clock::now() - written < std::chrono::seconds(20)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(archive.PendingCount(*run_id), 0);
  EXPECT_GE(std::chrono::steady_clock::now() - written, ResultArchive::kRemoteDeliveryInterval);
  EXPECT_EQ(store->calls, 1);  // Through PutFiles: artifact tree and record in one request.
  EXPECT_TRUE(archive.ReadTask(*run_id, "t").ok());
}

// A store on this host that is not a directory store: at once, through PutFiles.
class ForwardingStore : public ArchiveStore {
 public:
  explicit ForwardingStore(fs::path root) : inner_(std::move(root)) {}
  std::string Describe() const override { return inner_.Describe(); }
  bool OnThisHost() const override { return true; }
  Status PutFile(const std::string& path, const fs::path& host_path) override {
    ++puts;
    return inner_.PutFile(path, host_path);
  }
  Status PutBytes(const std::string& path, std::string_view data) override {
    return inner_.PutBytes(path, data);
  }
  Result<std::string> ReadBytes(const std::string& path) override {
    return inner_.ReadBytes(path);
  }
  Result<std::vector<std::string>> List(const std::string& dir) override {
    return inner_.List(dir);
  }
  Status Fetch(const std::string& path, const fs::path& dest) override {
    return inner_.Fetch(path, dest);
  }
  Status Remove(const std::string& path) override { return inner_.Remove(path); }
  std::atomic<int> puts{0};

 private:
  DirectoryArchiveStore inner_;
};

TEST(ResultArchiveTest, AnotherStoreOnThisHostGetsEachRecordAtOnceThroughItsWrites) {
  TempDir dir;
  auto store = std::make_shared<ForwardingStore>(dir.path() / "store");
  ResultArchive archive(store, dir.path() / "outbox");
  auto run_id = archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  ASSERT_TRUE(archive.ArtifactDir(*run_id, "t").ok());
  std::ofstream(*archive.ArtifactDir(*run_id, "t") / "stdout.log") << "out";
  ASSERT_TRUE(archive.WriteTask(MakeTask(*run_id, "t")).ok());
  EXPECT_EQ(archive.PendingCount(*run_id), 0);
  EXPECT_EQ(store->puts.load(), 2);  // The artifact tree, then the record.
  EXPECT_EQ(ReadFile(dir.path() / "store" / *run_id / "artifacts/t/stdout.log"), "out");
}

TEST(ResultArchiveTest, RemoteStoreGetsTheRunsLastRecordsInOneWrite) {
  TempDir dir;
  auto store = std::make_shared<CountingStore>(dir.path() / "store");
  ResultArchive archive(store, dir.path() / "outbox");
  archive.SetDeliveryInterval(std::chrono::minutes(10));  // Nothing due before WriteRun.
  auto run_id = archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  for (int i = 0; i < 5; ++i) {
    std::string task_id = "t" + std::to_string(i);
    auto artifacts = archive.ArtifactDir(*run_id, task_id);
    ASSERT_TRUE(artifacts.ok());
    std::ofstream(*artifacts / "stdout.log") << "out of " << task_id;
    ASSERT_TRUE(archive.WriteTask(MakeTask(*run_id, task_id)).ok());
  }
  EXPECT_EQ(store->calls, 0);
  EXPECT_EQ(archive.PendingCount(*run_id), 5);  // Waiting in the outbox, not lost.
  ASSERT_TRUE(archive.WriteRun(MakeRun(*run_id)).ok());
  EXPECT_EQ(store->calls, 1);
  EXPECT_EQ(store->items, 11);  // Five artifact trees, five records, run.json.
  EXPECT_EQ(archive.PendingCount(), 0);
  auto tasks = archive.ReadTasks(*run_id);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  EXPECT_EQ(tasks->size(), 5u);
  EXPECT_EQ(ReadFile(dir.path() / "store" / *run_id / "artifacts/t3/stdout.log"), "out of t3");
  EXPECT_TRUE(archive.ReadRun(*run_id).ok());
}

TEST(ResultArchiveTest, WaitingRecordsAreDeliveredWithinTheIntervalWithoutWriteRun) {
  TempDir dir;
  auto store = std::make_shared<CountingStore>(dir.path() / "store");
  ResultArchive archive(store, dir.path() / "outbox");
  archive.SetDeliveryInterval(std::chrono::milliseconds(100));
  auto run_id = archive.BeginRun();
  ASSERT_TRUE(run_id.ok());
  ASSERT_TRUE(archive.WriteTask(MakeTask(*run_id, "a")).ok());
  ASSERT_TRUE(archive.WriteTask(MakeTask(*run_id, "b")).ok());
  for (int i = 0; i < 100 && archive.PendingCount() > 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(archive.PendingCount(), 0) << "records must not wait for the end of the run";
  EXPECT_TRUE(archive.ReadTask(*run_id, "a").ok());
  EXPECT_TRUE(archive.ReadTask(*run_id, "b").ok());
  EXPECT_LE(store->calls, 2);
}

TEST(ResultArchiveTest, DestructionDeliversWhatStillWaits) {
  TempDir dir;
  auto store = std::make_shared<CountingStore>(dir.path() / "store");
  std::string run_id;
  {
    ResultArchive archive(store, dir.path() / "outbox");
    archive.SetDeliveryInterval(std::chrono::minutes(10));
    run_id = archive.BeginRun().value();
    ASSERT_TRUE(archive.WriteTask(MakeTask(run_id, "a")).ok());
  }
  EXPECT_TRUE(fs::exists(dir.path() / "store" / run_id / "tasks/a.json"));
}

TEST(ResultArchiveTest, RejectsUnsafeIds) {
  Fixture f;
  EXPECT_EQ(f.archive.WriteTask(MakeTask("../evil", "t")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.archive.WriteTask(MakeTask("r", "a/b")).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(f.archive.ArtifactDir("r", "..").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(fs::exists(f.dir.path() / "evil"));
}

}  // namespace
}  // namespace sandrun

namespace sandrun {
namespace {

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// A pid that surely names no process: a child that has exited and been reaped.
int DeadPid() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid(pid, &status, 0);
  return pid;
}

TEST(DirectoryArchiveStoreTest, AWideRootIsNarrowedAndEverythingWrittenIsPrivate) {
  TempDir dir;
  fs::path root = dir.path() / "archive";
  fs::create_directories(root / "old");
  fs::permissions(root, fs::perms::all);
  fs::permissions(root / "old", fs::perms::all);
  fs::path source = dir.path() / "tree";
  fs::create_directories(source / "sub");
  std::ofstream(source / "sub" / "f") << "x";
  fs::permissions(source / "sub", fs::perms::all);
  fs::permissions(source / "sub" / "f", fs::perms::all);

  DirectoryArchiveStore store(root);
  EXPECT_EQ(ModeOf(root), 0700u) << "tightened on open";
  ASSERT_TRUE(store.PutBytes("old/a/b.json", "{}").ok());
  ASSERT_TRUE(store.PutFile("run/artifacts/t", source).ok());
  for (const char* d : {"old", "old/a", "run", "run/artifacts", "run/artifacts/t",
                        "run/artifacts/t/sub"}) {
    EXPECT_EQ(ModeOf(root / d), 0700u) << d;
  }
  EXPECT_EQ(ModeOf(root / "old/a/b.json"), 0600u);
  EXPECT_EQ(ModeOf(root / "run/artifacts/t/sub/f"), 0600u);
}

TEST(ResultArchiveTest, SyncDeliversStartedTasksOfADeadOwnerAsInterrupted) {
  Fixture f;
  auto id = f.archive.BeginRun();
  ASSERT_TRUE(id.ok());
  TaskRecord started = MakeTask(*id, "t");
  started.sandbox_id = "sb-1";
  started.result.durations.create_ms = 7;
  ASSERT_TRUE(f.archive.WriteStarted(started, 16).ok());
  auto artifacts = f.archive.ArtifactDir(*id, "t");
  ASSERT_TRUE(artifacts.ok());
  std::ofstream(*artifacts / "stdout.log") << std::string(100, 'a') << "the end";

  // This process owns the run: nothing waits yet, and Sync leaves it be.
  EXPECT_EQ(f.archive.PendingCount(), 0);
  ASSERT_TRUE(f.archive.Sync().ok());
  EXPECT_FALSE(fs::exists(f.store_root / *id / "tasks"));

  // The owner dies (its pid is now free).
  std::ofstream(f.outbox / *id / "owner", std::ios::trunc)
      << R"({"pid": )" << DeadPid() << R"(, "host": ")" << HostName() << R"(", "started_unix": 1})";
  EXPECT_EQ(f.archive.PendingCount(), 1);
  auto synced = f.archive.Sync();
  ASSERT_TRUE(synced.ok()) << synced.status().ToString();
  EXPECT_EQ(*synced, 1);
  auto task = f.archive.ReadTask(*id, "t");
  ASSERT_TRUE(task.ok()) << task.status().ToString();
  EXPECT_EQ(task->result.outcome, Outcome::kInterrupted);
  EXPECT_EQ(VerdictOf(task->result), "interrupted");
  EXPECT_EQ(task->sandbox_id, "sb-1");
  EXPECT_EQ(task->result.durations.create_ms, 7);
  EXPECT_LE(task->result.stdout_stream.text.size(), 16u);
  EXPECT_EQ(task->result.stdout_stream.total_bytes, 107u);
  EXPECT_TRUE(fs::exists(f.store_root / *id / "artifacts/t/stdout.log"));
  EXPECT_FALSE(fs::exists(f.outbox / *id)) << "the outbox of the dead run is cleaned";
  EXPECT_EQ(f.archive.PendingCount(), 0);
}

TEST(ResultArchiveTest, AFinishedTaskLeavesNoStartedRecord) {
  Fixture f;
  auto id = f.archive.BeginRun();
  ASSERT_TRUE(id.ok());
  ASSERT_TRUE(f.archive.WriteStarted(MakeTask(*id, "t"), 1024).ok());
  EXPECT_TRUE(fs::exists(f.outbox / *id / "started/t.json"));
  ASSERT_TRUE(f.archive.WriteTask(MakeTask(*id, "t")).ok());
  EXPECT_FALSE(fs::exists(f.outbox / *id / "started/t.json"));
  ASSERT_TRUE(f.archive.WriteRun(MakeRun(*id)).ok());
  EXPECT_FALSE(fs::exists(f.outbox / *id)) << "the owner goes with the finished run";
}

TEST(ResultArchiveTest, PruneSparesRunsThatMayStillRun) {
  Fixture f;
  // Ours, still going (this process is its owner), no run.json.
  auto running = f.archive.BeginRun();
  ASSERT_TRUE(running.ok());
  ASSERT_TRUE(f.archive.WriteTask(MakeTask(*running, "t")).ok());
  // Another host's, without run.json: young (kept) and old (removed).
  const std::string young = NewRunId();
  const std::string old = "20200101T000000Z-0001";
  ASSERT_TRUE(f.store->PutBytes(young + "/tasks/t.json", ToJson(MakeTask(young, "t"))).ok());
  ASSERT_TRUE(f.store->PutBytes(old + "/tasks/t.json", ToJson(MakeTask(old, "t"))).ok());

  auto pruned = f.archive.Prune(0);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->removed, std::vector<std::string>{old});
  ASSERT_EQ(pruned->kept_running.size(), 2u);
  EXPECT_TRUE(fs::exists(f.store_root / *running));
  EXPECT_TRUE(fs::exists(f.store_root / young));

  // Once its owner is gone, the run is pruned like any other.
  std::ofstream(f.outbox / *running / "owner", std::ios::trunc)
      << R"({"pid": )" << DeadPid() << R"(, "host": ")" << HostName() << R"(", "started_unix": 1})";
  pruned = f.archive.Prune(0);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(pruned->removed, std::vector<std::string>{*running});
}

TEST(ResultArchiveTest, FailedFetchLeavesNothingBehind) {
  Fixture f;
  const std::string id = "20260101T000000Z-0001";
  ASSERT_TRUE(f.archive.WriteTask(MakeTask(id, "t")).ok());
  fs::path dest = f.dir.path() / "fetched" / "deeper";
  EXPECT_EQ(f.archive.Fetch("20260101T000000Z-ffff", dest).code(), StatusCode::kNotFound);
  EXPECT_FALSE(fs::exists(f.dir.path() / "fetched"));
  // A symlink out of the run makes the fetch fail after it began.
  fs::create_symlink("/etc/passwd", f.store_root / id / "escape");
  EXPECT_FALSE(f.archive.Fetch(id, dest).ok());
  EXPECT_FALSE(fs::exists(f.dir.path() / "fetched"));
}

TEST(CheckWritableFileTest, RefusesWhatCannotBeWrittenAndCreatesNothing) {
  TempDir dir;
  EXPECT_TRUE(CheckWritableFile(dir.path() / "report.xml").ok());
  Status missing = CheckWritableFile(dir.path() / "no" / "report.xml");
  EXPECT_EQ(missing.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(missing.message().find((dir.path() / "no" / "report.xml").string()),
            std::string::npos);
  EXPECT_FALSE(CheckWritableFile(dir.path()).ok()) << "a directory";
  std::ofstream(dir.path() / "file") << "x";
  EXPECT_FALSE(CheckWritableFile(dir.path() / "file" / "report.xml").ok());
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
  // /proc has no O_TMPFILE, and root passes access() there: refused anyway.
  if (fs::is_directory("/proc/self")) {
    EXPECT_FALSE(CheckWritableFile("/proc/report.xml").ok());
    EXPECT_FALSE(CheckWritableFile("/proc/self/report.html").ok());
  }
}

}  // namespace
}  // namespace sandrun
