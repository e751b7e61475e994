// What the archive and the reports keep, as a user meets it with the local
// backend: no secrets from the command line, private modes, capped text,
// records of a killed run, reports that are checked before a run, and
// well-formed JUnit whatever the tasks print.
#include <sys/stat.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

/// Every regular file under `dir` whose name ends with `suffix`, concatenated.
std::string AllFileContents(const fs::path& dir, const std::string& suffix = "") {
  std::string all;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (it->is_regular_file() && name.size() >= suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      all += ReadFile(it->path()) + "\n";
    }
  }
  return all;
}

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(E2eRecords, EnvAndSecretValuesNeverReachTheArchiveOrJUnit) {
  Home home;
  CommandOutput exec = home.Run({"exec", "--backend", "local", "-e", "SECRET=hunter2",
                                 "-eSECRET2=hunter2", "--env=SECRET3=hunter2", "--", "true"});
  ASSERT_EQ(exec.exit_code, 0) << exec.err;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "one", "command": ["true"], "env": {"SECRET": "hunter2"}}
  ])");
  fs::path junit = home.work() / "report.xml";
  // --secret applies to modal, so modal is a (never used) fallback here.
  CommandOutput batch = home.Run({"batch", "--backend", "local", "--fallback", "modal",
                                  "--secret", "SECRET=hunter2", tasks.string(), "--junit", junit.string()});
  ASSERT_EQ(batch.exit_code, 0) << batch.err;

  std::string archived = AllFileContents(home.archive());
  std::string report = ReadFile(junit);
  EXPECT_LACKS(archived, "hunter2");
  EXPECT_LACKS(report, "hunter2");
  EXPECT_CONTAINS(archived, "SECRET=\u2026");
  EXPECT_CONTAINS(archived, "-eSECRET2=\u2026");
  EXPECT_CONTAINS(archived, "--env=SECRET3=\u2026");
  EXPECT_CONTAINS(report, "SECRET=\u2026");
  EXPECT_EQ(Home::CountFiles(home.archive(), "run.json"), 2);
}

TEST(E2eRecords, AWideArchiveDirectoryIsMadePrivate) {
  Home home;
  fs::create_directories(home.archive());
  fs::permissions(home.archive(), fs::perms::all);
  ASSERT_EQ(ModeOf(home.archive()), 0777u);
  CommandOutput out = home.Run({"exec", "--backend", "local", "--download", "made.txt", "--",
                                "sh", "-c", "echo hi > made.txt; chmod 0777 made.txt; echo out"});
  ASSERT_EQ(out.exit_code, 0) << out.err;

  EXPECT_EQ(ModeOf(home.archive()), 0700u);
  int files = 0;
  for (const fs::path& root : {home.archive(), home.outbox()}) {
    std::error_code ec;
    if (!fs::exists(root, ec)) continue;
    EXPECT_EQ(ModeOf(root), 0700u) << root;
    for (fs::recursive_directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
      if (it->is_symlink()) continue;
      if (it->is_directory()) {
        EXPECT_EQ(ModeOf(it->path()), 0700u) << it->path();
      } else {
        EXPECT_EQ(ModeOf(it->path()), 0600u) << it->path();
        ++files;
      }
    }
  }
  EXPECT_GE(files, 3);  // run.json, the task record, the download
}

TEST(E2eRecords, OutputCapBoundsTheRecordedText) {
  Home home;
  CommandOutput out = home.Run({"exec", "--backend", "local", "--output-cap", "1024", "--json",
                                "--", "sh", "-c", "i=0; while [ $i -lt 3000 ]; do "
                                "echo \"line $i \xc3\xa9\xc3\xa9\"; i=$((i+1)); done"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  auto shown = home.Show(home.Runs()[0].value("run_id", ""), "exec");
  std::string text = shown["stdout"].value("text", "");
  EXPECT_TRUE(shown["stdout"].value("truncated", false));
  EXPECT_LE(text.size(), 1024u);
  EXPECT_GE(text.size(), 900u);
  EXPECT_CONTAINS(text, "bytes omitted");
  EXPECT_FALSE(shown["stdout"].contains("text_base64")) << "cut inside a character";
}

TEST(E2eRecords, PruneKeepsARunThatIsStillGoing) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "quick", "command": ["true"]},
    {"id": "slow", "command": ["sleep", "60"]}
  ])");
  auto batch = StartSandrun(home, {"batch", "--backend", "local", "-j", "2", tasks.string()});
  ASSERT_TRUE(batch->started());
  ASSERT_TRUE(WaitUntil([&] { return Home::CountFiles(home.archive(), ".json") >= 1; },
                        std::chrono::seconds(30)))
      << batch->Err();

  CommandOutput pruned = home.Run({"results", "prune", "--keep", "0"});
  EXPECT_EQ(pruned.exit_code, 0) << pruned.err;
  EXPECT_CONTAINS(pruned.out, "still running");
  EXPECT_EQ(home.Runs().size(), 1u) << pruned.out;

  batch->Signal(SIGINT);
  EXPECT_TRUE(batch->Wait(std::chrono::seconds(30)).has_value());
}

TEST(E2eRecords, AKilledBatchLeavesInterruptedRecordsThatSyncDelivers) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "sleeper-1", "command": ["sh", "-c", "echo started-1; exec sleep 60"]},
    {"id": "sleeper-2", "command": ["sh", "-c", "echo started-2; exec sleep 60"]}
  ])");
  auto batch = StartSandrun(home, {"batch", "--backend", "local", "-j", "2", tasks.string()});
  ASSERT_TRUE(batch->started());
  // Both commands have begun once their output reached the spill files.
  // The sleeps outlive a killed sandrun; cleanup ends them, pass or fail.
  struct Cleanup {
    const Home& home;
    ~Cleanup() { home.Run({"cleanup", "--backend", "local"}); }
  } cleanup{home};
  // Both commands have begun once their output reached the spill files.
  ASSERT_TRUE(WaitUntil(
      [&] {
        std::string outbox = AllFileContents(home.outbox(), "stdout.log");
        return outbox.find("started-1") != std::string::npos &&
               outbox.find("started-2") != std::string::npos;
      },
      std::chrono::seconds(30)))
      << batch->Err();
  batch->Signal(SIGKILL);
  ASSERT_TRUE(batch->Wait(std::chrono::seconds(10)).has_value());

  CommandOutput doctor = home.Run({"doctor", "--backend", "local"});
  EXPECT_CONTAINS(doctor.out, "2 record(s) waiting");

  CommandOutput sync = home.Run({"results", "sync", "--backend", "local"});
  EXPECT_EQ(sync.exit_code, 0) << sync.err;
  EXPECT_CONTAINS(sync.out, "delivered 2 record(s)");
  CommandOutput again = home.Run({"doctor", "--backend", "local"});
  EXPECT_CONTAINS(again.out, "0 record(s) waiting");

  std::string run = home.Runs()[0].value("run_id", "");
  CommandOutput shown = home.Run({"results", "show", run});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_EQ(LinesWith(shown.out, "interrupted").size(), 2u) << shown.out;
  for (const char* task : {"sleeper-1", "sleeper-2"}) {
    nlohmann::json record = home.Show(run, task);
    EXPECT_EQ(record["outcome"], "interrupted");
    EXPECT_CONTAINS(record["sandbox_id"].get<std::string>(), "local-");
    EXPECT_CONTAINS(record["stdout"].value("text", ""), "started-");
    EXPECT_CONTAINS(record.value("error", ""), "ended before the task did");
  }
}

TEST(E2eRecords, CleanupDryRunSaysWhatWouldBeRemoved) {
  Home home;
  auto exec = StartSandrun(home, {"exec", "--backend", "local", "--", "sleep", "60"});
  ASSERT_TRUE(exec->started());
  // Its started record names the sandbox once it exists.
  ASSERT_TRUE(WaitUntil(
      [&] { return AllFileContents(home.outbox()).find("\"local-") != std::string::npos; },
      std::chrono::seconds(30)))
      << exec->Err();
  exec->Signal(SIGKILL);
  ASSERT_TRUE(exec->Wait(std::chrono::seconds(10)).has_value());

  CommandOutput dry = home.Run({"cleanup", "--backend", "local", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_CONTAINS(dry.out, "would remove");
  EXPECT_CONTAINS(dry.out, "dry run: 1 would be removed, 0 kept");
  EXPECT_LACKS(dry.out, "0 removed");

  CommandOutput cleanup = home.Run({"cleanup", "--backend", "local"});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.err;
  EXPECT_CONTAINS(cleanup.out, "1 removed, 0 kept");
}

TEST(E2eRecords, ReportsThatCannotBeWrittenAreRefusedBeforeAnythingRuns) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([{"id": "marker", "command": ["touch", "ran"]}])");
  fs::path missing_dir = home.work() / "missing";
  for (const fs::path& bad : {missing_dir / "report.xml", home.work()}) {
    CommandOutput out = home.Run({"batch", "--backend", "local", tasks.string(), "--junit",
                                  bad.string()});
    EXPECT_EQ(out.exit_code, 2) << out.err;
    EXPECT_CONTAINS(out.err, bad.string());
  }
  EXPECT_FALSE(fs::exists(missing_dir));
  EXPECT_TRUE(home.Runs().empty());

  // A real run to export, then an export and a fetch that must create nothing.
  ASSERT_EQ(home.Run({"exec", "--backend", "local", "--", "true"}).exit_code, 0);
  CommandOutput exported = home.Run({"results", "export", "latest", "--junit",
                                     (missing_dir / "x.xml").string()});
  EXPECT_EQ(exported.exit_code, 2) << exported.err;
  EXPECT_CONTAINS(exported.err, (missing_dir / "x.xml").string());
  EXPECT_FALSE(fs::exists(missing_dir));

  CommandOutput fetched = home.Run({"results", "fetch", "20200101T000000Z-dead", "-o",
                                    (missing_dir / "out").string()});
  EXPECT_EQ(fetched.exit_code, 1) << fetched.err;
  EXPECT_FALSE(fs::exists(missing_dir));
}

/// Runs python3 on `script` with `args`; its stdout.
CommandOutput Python(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv{"python3", "-c", script};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandOptions options;
  options.env["PYTHONIOENCODING"] = "utf-8";
  return sandrun::testing::RunCommand(argv, options);
}

// Prints "name|failure message|failure type" per testcase, or fails to parse.
constexpr char kReadJUnit[] = R"(
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for case in root.iter('testcase'):
    f = case.find('failure')
    out = case.find('system-out')
    print('%s|%s|%s|%s' % (case.get('name'), f.get('message') if f is not None else '',
                           f.get('type') if f is not None else '',
                           (out.text or '') if out is not None else ''))
)";

TEST(E2eRecords, ExportHasFailedAndTimedOutTasksAsFailures) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "fails", "command": ["sh", "-c", "exit 3"]},
    {"id": "hangs", "command": ["sleep", "30"], "timeout": 1},
    {"id": "passes", "command": ["true"]}
  ])");
  CommandOutput batch = home.Run({"batch", "--backend", "local", "-j", "3", tasks.string()});
  ASSERT_EQ(batch.exit_code, 1) << batch.err;
  fs::path xml = home.work() / "export.xml";
  CommandOutput exported = home.Run({"results", "export", "latest", "--junit", xml.string()});
  ASSERT_EQ(exported.exit_code, 0) << exported.err;

  CommandOutput parsed = Python(kReadJUnit, {xml.string()});
  ASSERT_EQ(parsed.exit_code, 0) << parsed.err;
  EXPECT_CONTAINS(parsed.out, "fails|exited with code 3|exited|");
  EXPECT_CONTAINS(parsed.out, "hangs|timed out|timed_out|");
  EXPECT_CONTAINS(parsed.out, "passes|||");
  EXPECT_CONTAINS(ReadFile(xml), "failures=\"2\"");
}

TEST(E2eRecords, JUnitOfHostileNamesAndOutputIsWellFormed) {
  Home home;
  fs::path tasks = home.Write("tasks.json", R"([
    {"id": "hostile", "name": "a<b&c\"d]]>e",
     "command": ["sh", "-c", "printf 'x<y&z\"q]]>w\\001\\033\\377\\376end'; exit 1"]}
  ])");
  fs::path xml = home.work() / "report.xml";
  CommandOutput batch =
      home.Run({"batch", "--backend", "local", tasks.string(), "--junit", xml.string()});
  ASSERT_EQ(batch.exit_code, 1) << batch.err;
  fs::path exported = home.work() / "export.xml";
  ASSERT_EQ(home.Run({"results", "export", "latest", "--junit", exported.string()}).exit_code, 0);

  for (const fs::path& file : {xml, exported}) {
    CommandOutput parsed = Python(kReadJUnit, {file.string()});
    ASSERT_EQ(parsed.exit_code, 0) << file << ": " << parsed.err << "\n" << ReadFile(file);
    EXPECT_CONTAINS(parsed.out, "a<b&c\"d]]>e|exited with code 1|exited|");
    EXPECT_CONTAINS(parsed.out, "x<y&z\"q]]>w");
    EXPECT_CONTAINS(parsed.out, "end");
  }
}

}  // namespace
}  // namespace sandrun::e2e
