// Against real Modal: runs only when MODAL_TOKEN_ID and MODAL_TOKEN_SECRET
// are set (see docs/modal.md), and is skipped with the reason otherwise. It
// creates sandboxes in the App "sandrun-live-test" (overridable with
// SANDRUN_MODAL_LIVE_APP), uses a public registry image, and terminates
// everything it created, even on failure. Its archive records go to the
// Volume "sandrun-live-test-results", under a fresh run directory that the
// test removes again.
#include <gtest/gtest.h>

#include <cstdlib>

#include <algorithm>

#include "modal_archive_store.h"
#include "modal_backend.h"
#include "sandrun/config.h"
#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun::modal {
namespace {

class ModalLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* id = std::getenv("MODAL_TOKEN_ID");
    const char* secret = std::getenv("MODAL_TOKEN_SECRET");
    if (id == nullptr || *id == '\0' || secret == nullptr || *secret == '\0') {
      GTEST_SKIP() << "MODAL_TOKEN_ID and MODAL_TOKEN_SECRET are not set: the live Modal test "
                      "needs real credentials (see docs/modal.md)";
    }
    const char* app = std::getenv("SANDRUN_MODAL_LIVE_APP");
    std::string section = std::string(R"({"app_name": ")") +
                          (app != nullptr ? app : "sandrun-live-test") +
                          R"(", "volume": "sandrun-live-test-results"})";
    auto options = ParseModalOptions(section);
    ASSERT_TRUE(options.ok()) << options.status().ToString();
    backend_ = CreateModalBackend(*options, ProcessEnvironment());
    Status available = backend_->CheckAvailable();
    ASSERT_TRUE(available.ok()) << available.ToString();
  }

  std::unique_ptr<Backend> backend_;
};

TEST_F(ModalLiveTest, RunsACommandWithStdinFilesAndTimeout) {
  SandboxSpec spec;
  spec.image = "debian:bookworm-slim";
  spec.lifetime = std::chrono::seconds(300);
  spec.labels = {{"managed-by", "sandrun"}, {"run", "live-test"}, {"task", "live"}};
  auto created = backend_->Create(spec);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Sandbox> sandbox = std::move(created).value();

  ExecRequest hello;
  hello.argv = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3"};
  auto result = sandbox->Exec(hello);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_EQ(result->stdout_stream.text, "out\n");
  EXPECT_EQ(result->stderr_stream.text, "err\n");

  ExecRequest cat;
  cat.argv = {"cat"};
  cat.stdin_data = "through stdin";
  EXPECT_EQ(sandbox->Exec(cat)->stdout_stream.text, "through stdin");

  ::sandrun::testing::TempDir dir;
  auto file = dir.Write("hello.txt", "uploaded\n");
  ASSERT_TRUE(sandbox->Put(FileUpload{file.string(), "in/hello.txt"}).ok());
  ExecRequest read;
  read.argv = {"cat", "in/hello.txt"};
  EXPECT_EQ(sandbox->Exec(read)->stdout_stream.text, "uploaded\n");
  auto got = sandbox->Get("in", dir.path() / "dl");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(::sandrun::testing::ReadFile(dir.path() / "dl/in/hello.txt"), "uploaded\n");

  ExecRequest slow;
  slow.argv = {"sleep", "60"};
  slow.timeout = std::chrono::seconds(2);
  auto timed = sandbox->Exec(slow);
  ASSERT_TRUE(timed.ok()) << timed.status().ToString();
  EXPECT_EQ(timed->outcome, Outcome::kTimedOut);

  ExecRequest network;
  network.argv = {"/bin/sh", "-c", "getent hosts modal.com || echo blocked"};
  auto blocked = sandbox->Exec(network);
  ASSERT_TRUE(blocked.ok());
  std::printf("[ live     ] network none: %s", blocked->stdout_stream.text.c_str());
  EXPECT_TRUE(sandbox->Terminate().ok());
}

TEST_F(ModalLiveTest, LeftoversAreOnlyOurs) {
  auto listed = backend_->ListLeftovers();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  for (const auto& leftover : *listed) EXPECT_EQ(leftover.labels.at("managed-by"), "sandrun");
}

// The archive on the live Volume as `results` uses it: records written
// (one with a block that ends in zero bytes, which Modal hashes as it
// receives it, and an empty one), listed, read back, and removed as
// `results prune` removes a run.
TEST_F(ModalLiveTest, ArchiveWritesListsReadsAndPrunes) {
  auto store = backend_->OpenArchive();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const std::string run = "live-test-" + RandomHex(8);
  std::string zeros(kVolumeBlockSize + 100, 'x');
  std::fill(zeros.begin() + kVolumeBlockSize - 4096, zeros.begin() + kVolumeBlockSize, '\0');
  std::fill(zeros.end() - 10, zeros.end(), '\0');
  const std::map<std::string, std::string> files = {
      {"tasks/a.json", "{\"a\":1}\n"}, {"artifacts/zeros.bin", zeros}, {"empty", ""}};
  for (const auto& [path, data] : files) {
    Status put = (*store)->PutBytes(run + "/" + path, data);
    ASSERT_TRUE(put.ok()) << path << ": " << put.ToString();
  }
  auto listed = (*store)->List(run);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(*listed, (std::vector<std::string>{"artifacts/", "empty", "tasks/"}));
  for (const auto& [path, data] : files) {
    auto back = (*store)->ReadBytes(run + "/" + path);
    ASSERT_TRUE(back.ok()) << path << ": " << back.status().ToString();
    EXPECT_TRUE(*back == data) << path << ": " << back->size() << " bytes, not " << data.size();
  }
  Status removed = (*store)->Remove(run);
  ASSERT_TRUE(removed.ok()) << removed.ToString();
  auto root = (*store)->List("");
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(std::count(root->begin(), root->end(), run + "/"), 0) << run << " is still there";
}

#ifdef GTEST_SAMPLE_BINARY
// A small GoogleTest suite through `sandrun gtest --backend modal`, as a user
// runs it: the sample binary crosses as a portable executable (through the
// executable cache Volume), a passing case passes and a failing one fails at
// its file:line. The App and Volumes are the live test's own.
TEST_F(ModalLiveTest, AGtestSuiteRunsThroughSandrunGtest) {
  sandrun::testing::TempDir dir;
  const char* app = std::getenv("SANDRUN_MODAL_LIVE_APP");
  dir.Write("sandrun.json", std::string(R"({"backends": {"modal": {"app_name": ")") +
                                (app != nullptr ? app : "sandrun-live-test") +
                                R"(", "volume": "sandrun-live-test-results",
                                "exe_cache_volume": "sandrun-live-test-exe-cache"}}})");
  sandrun::testing::CommandOptions options;
  options.env["SANDRUN_CONFIG"] = (dir.path() / "sandrun.json").string();
  options.timeout = std::chrono::seconds(600);
  auto run = sandrun::testing::RunSandrun(
      {"gtest", GTEST_SAMPLE_BINARY, "--backend", "modal", "--filter",
       "Sample.Passes:Sample.ExpectFails"},
      options);
  EXPECT_EQ(run.exit_code, 1) << run.out << run.err;
  EXPECT_NE(run.out.find("[       OK ] Sample.Passes"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("sample_tests.cc:"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("expect message from the sandbox"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("[  FAILED  ] Sample.ExpectFails"), std::string::npos) << run.out;
}
#endif

}  // namespace
}  // namespace sandrun::modal
