// Paths a task names inside its sandbox (upload destinations, downloads,
// cwd, workdir) can only lead into it: an absolute path or a ".." component
// is bad input (exit 2, the task and the path named, nothing runs), on every
// backend. Each escape aims at a file inside the test's own directory and
// checks that nothing appeared there.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

class E2eSandboxPaths : public ::testing::Test {
 protected:
  /// Where an escaping write would land: outside the sandbox, inside the test.
  fs::path target() const { return home_.dir() / "escaped" / "passwd"; }
  fs::path marker() const { return home_.dir() / "marker"; }

  /// "../" repeated enough to reach "/" from any sandbox directory.
  static std::string ToRoot() {
    std::string up;
    for (int i = 0; i < 40; ++i) up += "../";
    return up;
  }

  void ExpectRefused(const CommandOutput& out, const std::string& path) const {
    EXPECT_EQ(out.exit_code, 2) << out.out << out.err;
    EXPECT_CONTAINS(out.err, path);
    EXPECT_FALSE(fs::exists(target())) << "the escape wrote " << target();
    EXPECT_FALSE(fs::exists(marker())) << "the command ran";
    EXPECT_EQ(home_.Runs().size(), 0u) << "a run was recorded";
  }

  CommandOutput Batch(const std::string& task_fields) const {
    fs::path file = home_.Write(
        "tasks.json", "[{\"id\": \"escape\", \"command\": [\"touch\", \"" + marker().string() +
                          "\"], " + task_fields + "}]");
    return home_.Run({"batch", "--backend", "local", file.string()});
  }

  Home home_;
  fs::path payload_ = home_.Write("payload.txt", "root::0:0::/root:/bin/sh\n");
};

TEST_F(E2eSandboxPaths, BatchUploadWithDotDotDestinationIsRefused) {
  fs::create_directories(target().parent_path());
  std::string dest = ToRoot() + target().relative_path().string();
  CommandOutput out = Batch("\"upload\": [\"payload.txt:" + dest + "\"]");
  ExpectRefused(out, dest);
  EXPECT_CONTAINS(out.err, "escape");  // The task is named.
}

TEST_F(E2eSandboxPaths, ExecUploadToAnAbsolutePathIsRefused) {
  fs::create_directories(target().parent_path());
  CommandOutput out = home_.Run({"exec", "--backend", "local", "--upload",
                                 payload_.string() + ":" + target().string(), "--", "touch",
                                 marker().string()});
  ExpectRefused(out, target().string());
}

TEST_F(E2eSandboxPaths, AbsoluteDownloadIsRefused) {
  // Reading a host file through a download is as bad as writing one.
  CommandOutput out = Batch("\"download\": [\"" + payload_.string() + "\"]");
  ExpectRefused(out, payload_.string());
}

TEST_F(E2eSandboxPaths, DotDotDownloadIsRefused) {
  CommandOutput out = Batch("\"download\": [\"../../etc\"]");
  ExpectRefused(out, "../../etc");
}

TEST_F(E2eSandboxPaths, EmptyDownloadAndUploadAreRefused) {
  ExpectRefused(Batch("\"download\": [\"\"]"), "download path is empty");
  ExpectRefused(Batch("\"upload\": [\"\"]"), "names no source");
}

TEST_F(E2eSandboxPaths, AbsoluteOrClimbingCwdIsRefused) {
  ExpectRefused(Batch("\"cwd\": \"" + home_.dir().string() + "\""), home_.dir().string());
  ExpectRefused(Batch("\"cwd\": \"sub/../../x\""), "sub/../../x");
}

TEST_F(E2eSandboxPaths, AbsoluteWorkdirIsRefused) {
  CommandOutput out = home_.Run({"exec", "--backend", "local", "--workdir", home_.dir().string(),
                                 "--", "touch", marker().string()});
  ExpectRefused(out, home_.dir().string());
}

TEST_F(E2eSandboxPaths, RelativeDestinationsStillWork) {
  fs::path file = home_.Write(
      "tasks.json",
      "[{\"id\": \"ok\", \"command\": [\"sh\", \"-c\", \"cat in/sub/p.txt > out.txt\"], "
      "\"upload\": [\"payload.txt:in/sub/p.txt\"], \"download\": [\"out.txt\"], \"cwd\": \".\"}]");
  CommandOutput out = home_.Run({"batch", "--backend", "local", file.string()});
  ASSERT_EQ(out.exit_code, 0) << out.out << out.err;
  nlohmann::json runs = home_.Runs();
  ASSERT_EQ(runs.size(), 1u);
  fs::path artifact = home_.archive() / runs[0]["run_id"].get<std::string>() / "artifacts" /
                      "ok" / "downloads" / "out.txt";
  EXPECT_EQ(ReadFile(artifact), "root::0:0::/root:/bin/sh\n");
}

}  // namespace
}  // namespace sandrun::e2e
