// The result archive in a Docker volume, through the API only; and images
// built from a Dockerfile, cached by content.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "docker_images.h"
#include "docker_test_env.h"
#include "sandrun/archive.h"
#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun::docker {
namespace {

namespace fs = std::filesystem;

class DockerArchiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = CreateDockerBackend(testing::TestOptions());
    SANDRUN_REQUIRE_DOCKER(*backend_);
    auto store = backend_->OpenArchive();
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    prefix_ = "test-" + RandomHex(8);
  }
  void TearDown() override {
    if (store_) store_->Remove(prefix_).IgnoreError();
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<ArchiveStore> store_;
  std::string prefix_;
};

TEST_F(DockerArchiveTest, PutReadListFetchRemove) {
  EXPECT_NE(store_->Describe().find("sandrun-test-results"), std::string::npos);
  EXPECT_FALSE(store_->OnThisHost());  // Every write is a request: records go in groups.
  ASSERT_TRUE(store_->PutBytes(prefix_ + "/run.json", "{\"a\":1}").ok());
  ASSERT_TRUE(store_->PutBytes(prefix_ + "/tasks/t1.json", "one").ok());
  sandrun::testing::TempDir host;
  host.Write("art/out.txt", "artifact");
  host.Write("art/deep/x.bin", std::string("\0\1", 2));
  Status put = store_->PutFile(prefix_ + "/artifacts/t1", host.path() / "art");
  ASSERT_TRUE(put.ok()) << put.ToString();

  auto bytes = store_->ReadBytes(prefix_ + "/run.json");
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(*bytes, "{\"a\":1}");
  EXPECT_EQ(store_->ReadBytes(prefix_ + "/nope.json").status().code(), StatusCode::kNotFound);

  auto names = store_->List(prefix_);
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, (std::vector<std::string>{"artifacts/", "run.json", "tasks/"}));
  auto root = store_->List("");
  ASSERT_TRUE(root.ok());
  EXPECT_NE(std::find(root->begin(), root->end(), prefix_ + "/"), root->end());
  EXPECT_EQ(store_->List(prefix_ + "/missing").status().code(), StatusCode::kNotFound);

  sandrun::testing::TempDir dest;
  ASSERT_TRUE(store_->Fetch(prefix_, dest.path()).ok());
  EXPECT_EQ(sandrun::testing::ReadFile(dest.path() / prefix_ / "artifacts/t1/out.txt"), "artifact");
  EXPECT_EQ(sandrun::testing::ReadFile(dest.path() / prefix_ / "tasks/t1.json"), "one");

  // Replacing a directory drops what the old one had.
  sandrun::testing::TempDir other;
  other.Write("art/new.txt", "new");
  ASSERT_TRUE(store_->PutFile(prefix_ + "/artifacts/t1", other.path() / "art").ok());
  auto replaced = store_->List(prefix_ + "/artifacts/t1");
  ASSERT_TRUE(replaced.ok());
  EXPECT_EQ(*replaced, (std::vector<std::string>{"new.txt"}));

  ASSERT_TRUE(store_->Remove(prefix_ + "/tasks").ok());
  names = store_->List(prefix_);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"artifacts/", "run.json"}));
  EXPECT_TRUE(store_->Remove(prefix_ + "/never-was").ok());
}

// Peak resident memory of this process, in KiB, after resetting it (proc(5)).
std::int64_t PeakRssKiB(bool reset) {
  if (reset) std::ofstream("/proc/self/clear_refs") << "5";
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

// A spill far larger than any record goes up and comes back whole, while
// this process never holds it: the tar is built as it is sent, and listing
// or reading a record skips the spill as it streams past.
TEST_F(DockerArchiveTest, LargeSpillsStreamThroughTheVolume) {
  constexpr std::size_t kSpill = 96u << 20;
  constexpr std::int64_t kAllowedGrowthKiB = 32 * 1024;
  sandrun::testing::TempDir host;
  {
    fs::create_directories(host.path() / "run/artifacts/t");
    std::ofstream out(host.path() / "run/artifacts/t/stdout.log", std::ios::binary);
    std::string block(1 << 20, '\0');
    for (std::size_t i = 0; i < kSpill / block.size(); ++i) {
      for (std::size_t j = 0; j < block.size(); j += 4096) block[j] = static_cast<char>(i + j);
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  host.Write("run/tasks/t.json", "{\"capped\": true}");
  const std::int64_t before = PeakRssKiB(true);
  Status put = store_->PutFiles({{prefix_ + "/artifacts", host.path() / "run/artifacts"},
                                 {prefix_ + "/tasks", host.path() / "run/tasks"}});
  ASSERT_TRUE(put.ok()) << put.ToString();
  auto names = store_->List(prefix_);
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, (std::vector<std::string>{"artifacts/", "tasks/"}));
  auto record = store_->ReadBytes(prefix_ + "/tasks/t.json");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(*record, "{\"capped\": true}");
  const std::int64_t growth = PeakRssKiB(false) - before;
  EXPECT_LT(growth, kAllowedGrowthKiB) << "memory grew with the spill";

  sandrun::testing::TempDir dest;
  ASSERT_TRUE(store_->Fetch(prefix_ + "/artifacts/t", dest.path()).ok());
  EXPECT_EQ(fs::file_size(dest.path() / "t/stdout.log"), kSpill);
  std::ifstream a(host.path() / "run/artifacts/t/stdout.log", std::ios::binary);
  std::ifstream b(dest.path() / "t/stdout.log", std::ios::binary);
  std::string x(1 << 20, '\0'), y(1 << 20, '\0');
  while (a.read(x.data(), x.size()) && b.read(y.data(), y.size())) {
    ASSERT_TRUE(x == y) << "the spill came back altered";
  }
}

TEST_F(DockerArchiveTest, SandboxesNeitherSeeNorWriteTheArchive) {
  ASSERT_TRUE(store_->PutBytes(prefix_ + "/tasks/t1.json", "record").ok());
  auto sandbox = backend_->Create(testing::ImageSpec(testing::kBusybox));
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  ExecRequest request;
  // Where the volume used to be mounted: list it, then try to overwrite the
  // record and add a file next to it.
  request.argv = {"sh", "-c",
                  "ls -R /sandrun/results 2>&1; mkdir -p /sandrun/results/" + prefix_ +
                      "/tasks && echo forged > /sandrun/results/" + prefix_ +
                      "/tasks/t1.json && echo planted > /sandrun/results/" + prefix_ + "/f"};
  auto r = (*sandbox)->Exec(request);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->stdout_stream.text.find(prefix_), std::string::npos)
      << "the sandbox listed the archive:\n" << r->stdout_stream.text;
  auto record = store_->ReadBytes(prefix_ + "/tasks/t1.json");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(*record, "record");
  EXPECT_EQ(store_->ReadBytes(prefix_ + "/f").status().code(), StatusCode::kNotFound);
}

TEST_F(DockerArchiveTest, ResultArchiveOverTheVolume) {
  sandrun::testing::TempDir outbox;
  ResultArchive archive(std::shared_ptr<ArchiveStore>(std::move(store_)), outbox.path());
  auto runs = archive.ListRuns();
  ASSERT_TRUE(runs.ok()) << runs.status().ToString();
}

// Several sandrun processes meeting a fresh volume at once (the first
// commands of a CI job on a new engine) all get its archive: the helper
// container one of them creates is the others' too.
TEST(DockerArchiveHelperTest, ManyFirstUsersOfAFreshVolumeAllGetTheArchive) {
  const std::string volume = "sandrun-test-fresh-" + RandomHex(6);
  std::map<std::string, std::string> env;
  if (const char* host = std::getenv("DOCKER_HOST")) env["DOCKER_HOST"] = host;
  auto options = ParseDockerOptions(R"({"volume": ")" + volume + R"("})", env);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  {
    auto probe = CreateDockerBackend(*options);
    SANDRUN_REQUIRE_DOCKER(*probe);
  }
  constexpr int kUsers = 8;
  std::vector<std::thread> users;
  std::vector<std::string> errors(kUsers);
  for (int i = 0; i < kUsers; ++i) {
    users.emplace_back([&, i] {
      // A backend each, as separate processes have.
      auto backend = CreateDockerBackend(*options);
      auto store = backend->OpenArchive();
      if (!store.ok()) {
        errors[i] = store.status().ToString();
        return;
      }
      Status put = (*store)->PutBytes("user-" + std::to_string(i) + ".txt", "hello");
      if (!put.ok()) errors[i] = put.ToString();
    });
  }
  for (auto& t : users) t.join();
  for (int i = 0; i < kUsers; ++i) EXPECT_EQ(errors[i], "") << "user " << i;
  // Every write landed in the one volume.
  auto backend = CreateDockerBackend(*options);
  auto store = backend->OpenArchive();
  ASSERT_TRUE(store.ok());
  auto listed = (*store)->List("");
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(listed->size(), static_cast<std::size_t>(kUsers));
  // Cleanup: the helper container and the volume.
  auto client = testing::TestClient();
  auto helpers = client->Request(
      "GET", "/containers/json?all=1&filters=" +
                 UrlEncode(R"({"label":["dev.sandrun.volume=)" + volume + R"("]})"));
  if (helpers.ok() && helpers->status == 200) {
    for (const auto& c : nlohmann::json::parse(helpers->body, nullptr, false)) {
      (void)client->Request("DELETE", "/containers/" + c.value("Id", "") + "?force=1");
    }
  }
  (void)client->Request("DELETE", "/volumes/" + volume + "?force=1");
}

TEST(DockerBuildTest, DockerfileIsBuiltOnceAndCachedByContent) {
  auto backend = CreateDockerBackend(testing::TestOptions());
  SANDRUN_REQUIRE_DOCKER(*backend);
  sandrun::testing::TempDir context;
  const std::string marker = RandomHex(8);
  context.Write("Dockerfile", std::string("FROM ") + testing::kBusybox +
                                  "\nCOPY hello.txt /hello.txt\nRUN echo built-" + marker +
                                  " > /built.txt\n");
  context.Write("hello.txt", "hello " + marker + "\n");
  SandboxSpec spec;
  spec.dockerfile = (context.path() / "Dockerfile").string();
  auto sandbox = backend->Create(spec);
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  ExecRequest request;
  request.argv = {"cat", "/hello.txt", "/built.txt"};
  auto r = (*sandbox)->Exec(request);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_stream.text, "hello " + marker + "\nbuilt-" + marker + "\n");

  auto client = testing::TestClient();
  auto start = std::chrono::steady_clock::now();
  auto tag = BuildImage(*client, spec.dockerfile);
  ASSERT_TRUE(tag.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2)) << "not cached";
  EXPECT_EQ(tag->rfind("sandrun-build:", 0), 0u);
  (void)client->Request("DELETE", "/images/" + *tag + "?force=1");

  context.Write("Dockerfile", std::string("FROM ") + testing::kBusybox + "\nRUN exit 7\n");
  auto failed = backend->Create(spec);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(failed.status().message().find("exit 7"), std::string::npos)
      << failed.status().message();
}

}  // namespace
}  // namespace sandrun::docker
