#include "sandrun/batch_file.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace sandrun {
namespace {

using testing::TempDir;

Config DefaultConfig() {
  Config config;
  config.timeout_s = 10;
  config.image = "img";
  return config;
}

Status ParseError(const std::string& text) {
  auto parsed = ParseBatch(text, "tasks.json", "/base", DefaultConfig());
  return parsed.ok() ? OkStatus() : parsed.status();
}

TEST(BatchFileTest, ParsesAGoodFileWithDefaultsFromConfig) {
  TempDir dir;
  dir.Write("data/input.txt", "x");
  auto file = dir.Write("tasks.json", R"([
    {"id": "one", "command": ["echo", "hi"]},
    {"id": "two", "command": ["cat"], "stdin": "abc", "timeout": 2.5,
     "env": {"A": "1"}, "upload": ["data/input.txt:in.txt"], "image": "other",
     "memory": 256, "network": "open", "download": ["out"]},
    {"command": ["true"]}
  ])");
  auto tasks = ParseBatchFile(file, DefaultConfig());
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  ASSERT_EQ(tasks->size(), 3u);
  const Task& one = (*tasks)[0];
  EXPECT_EQ(one.exec.argv, (std::vector<std::string>{"echo", "hi"}));
  EXPECT_EQ(one.exec.timeout, std::chrono::seconds(10));
  EXPECT_EQ(one.sandbox.image, "img");
  const Task& two = (*tasks)[1];
  EXPECT_EQ(two.exec.stdin_data.value_or(""), "abc");
  EXPECT_EQ(two.exec.timeout, std::chrono::milliseconds(2500));
  EXPECT_EQ(two.exec.env.at("A"), "1");
  ASSERT_EQ(two.sandbox.uploads.size(), 1u);
  EXPECT_EQ(two.sandbox.uploads[0].source, (dir.path() / "data/input.txt").string());
  EXPECT_EQ(two.sandbox.uploads[0].destination, "in.txt");
  EXPECT_EQ(two.sandbox.image, "other");
  EXPECT_EQ(two.sandbox.memory_mb, 256);
  EXPECT_EQ(two.sandbox.network, NetworkMode::kOpen);
  EXPECT_EQ(two.downloads, (std::vector<std::string>{"out"}));
  EXPECT_EQ((*tasks)[2].id, "task-3");
}

TEST(BatchFileTest, AcceptsTheObjectForm) {
  auto tasks = ParseBatch(R"({"tasks": [{"id": "a", "command": ["true"]}]})", "t.json", "",
                          DefaultConfig());
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  EXPECT_EQ(tasks->size(), 1u);
}

TEST(BatchFileTest, SyntaxErrorsNameLineAndColumn) {
  Status s = ParseError("[\n  {\"id\": \"a\", \"command\": [\"true\"]},\n  {\"id\": \"b\" \"command\": []}\n]");
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("tasks.json:3:"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("invalid JSON"), std::string::npos);
}

TEST(BatchFileTest, BadTasksNameTheirLineIndexAndId) {
  Status s = ParseError("[\n  {\"id\": \"a\", \"command\": [\"true\"]},\n\n  {\"id\": \"b\",\n   \"command\": \"make test\"}\n]");
  EXPECT_NE(s.message().find("tasks.json:4: task #2 'b'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("argv array"), std::string::npos);

  s = ParseError(R"([{"id": "a", "comand": ["true"]}])");
  EXPECT_NE(s.message().find("unknown key 'comand'"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a"}])");
  EXPECT_NE(s.message().find("'command' is missing"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a", "command": []}])");
  EXPECT_NE(s.message().find("empty"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a", "command": ["x"], "timeout": 0}])");
  EXPECT_NE(s.message().find("positive"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a", "command": ["x"], "timeout": -3}])");
  EXPECT_NE(s.message().find("positive"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a", "command": ["x"]}, {"id": "a", "command": ["y"]}])");
  EXPECT_NE(s.message().find("used by an earlier task"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a", "command": ["x"], "upload": ["/no/such/file"]}])");
  EXPECT_NE(s.message().find("/no/such/file"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "bad id!", "command": ["x"]}])");
  EXPECT_NE(s.message().find("id must be"), std::string::npos) << s.message();
  s = ParseError(R"([{"id": "a", "command": ["x"], "isolation": "container"}])");
  EXPECT_NE(s.message().find("'isolation' must be \"sandbox\" or \"process\""), std::string::npos)
      << s.message();
  EXPECT_NE(ParseError("[]").message().find("no tasks"), std::string::npos);
  EXPECT_NE(ParseError(R"({"x": 1})").message().find("expected a JSON list"), std::string::npos);
}

TEST(BatchFileTest, MissingFileIsAClearError) {
  auto tasks = ParseBatchFile("/no/such/tasks.json", DefaultConfig());
  ASSERT_FALSE(tasks.ok());
  EXPECT_NE(tasks.status().message().find("/no/such/tasks.json"), std::string::npos);
}

TEST(UploadArgTest, SplitsSourceAndDestination) {
  EXPECT_EQ(ParseUploadArg("a/b").source, "a/b");
  EXPECT_EQ(ParseUploadArg("a/b").destination, "");
  EXPECT_EQ(ParseUploadArg("a/b:c").destination, "c");
}

TEST(BatchFileTest, GpuIsPerTaskWithTheConfigAsDefault) {
  Config config = DefaultConfig();
  config.gpu = "T4";
  auto tasks = ParseBatch(R"([{"id": "a", "command": ["x"]},
                              {"id": "b", "command": ["x"], "gpu": "A10G:2"}])",
                          "tasks.json", "/base", config);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  EXPECT_EQ((*tasks)[0].sandbox.gpu, "T4");
  EXPECT_EQ((*tasks)[1].sandbox.gpu, "A10G:2");
  Status bad = ParseError(R"([{"id": "a", "command": ["x"], "gpu": "A10G:zero"}])");
  EXPECT_EQ(bad.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("task #1 'a'"), std::string::npos) << bad.message();
  EXPECT_NE(bad.message().find("invalid gpu 'A10G:zero'"), std::string::npos) << bad.message();
}

TEST(BatchFileTest, RefusesPathsThatLeaveTheSandbox) {
  TempDir dir;
  dir.Write("f.txt", "x");
  struct Case {
    std::string fields;
    std::string named;
  };
  for (const Case& c : std::vector<Case>{
           {R"("upload": ["f.txt:/etc/passwd"])", "/etc/passwd"},
           {R"("upload": ["f.txt:../../../../etc/passwd"])", "../../../../etc/passwd"},
           {R"("upload": [{"source": "f.txt", "destination": "a/../../b"}])", "a/../../b"},
           {R"("download": ["/etc/shadow"])", "/etc/shadow"},
           {R"("download": ["x/../../y"])", "x/../../y"},
           {R"("download": [""])", "download path is empty"},
           {R"("upload": [""])", "names no source"},
           {R"("cwd": "/tmp")", "/tmp"},
           {R"("cwd": "..")", "'..'"},
       }) {
    auto file = dir.Write("tasks.json", R"([{"id": "evil", "command": ["true"], )" + c.fields + "}]");
    auto tasks = ParseBatchFile(file, DefaultConfig());
    ASSERT_FALSE(tasks.ok()) << c.fields;
    EXPECT_EQ(tasks.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(tasks.status().message().find(c.named), std::string::npos) << tasks.status().message();
    EXPECT_NE(tasks.status().message().find("evil"), std::string::npos) << tasks.status().message();
  }
}

TEST(BatchFileTest, NumbersOutOfRangeAndUnknownUploadKeysAreBadInput) {
  Status huge = ParseError(R"([{"command": ["true"], "cpu": 1e309}])");
  EXPECT_EQ(huge.code(), StatusCode::kInvalidArgument) << huge.ToString();
  Status bogus = ParseError(
      R"([{"command": ["true"], "upload": [{"source": "f", "destination": "d", "bogus": 1}]}])");
  EXPECT_EQ(bogus.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bogus.message().find("'bogus'"), std::string::npos) << bogus.message();
}

TEST(BatchFileTest, RefusesAnEmptyIdAndUnknownTopLevelKeys) {
  Status empty_id = ParseError(R"([{"id": "", "command": ["true"]}])");
  EXPECT_EQ(empty_id.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(empty_id.message().find("'id' is empty"), std::string::npos) << empty_id.message();
  Status extra = ParseError(R"({"tasks": [{"command": ["true"]}], "extra": 1})");
  EXPECT_EQ(extra.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(extra.message().find("'extra'"), std::string::npos) << extra.message();
}

TEST(BatchFileTest, TimeoutsMustBeFiniteAndAtMostThirtyDays) {
  for (const std::string bad : {"1e10", "1e300", "0", "-1", "0.0000001"}) {
    Status status = ParseError(R"([{"command": ["true"], "timeout": )" + bad + "}]");
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(status.message().find("timeout"), std::string::npos) << status.message();
  }
  EXPECT_NE(ParseError(R"([{"command": ["true"], "timeout": 1e10}])").message().find("30 days"),
            std::string::npos);
  auto ok = ParseBatch(R"([{"command": ["true"], "timeout": 2592000}])", "t.json", "/base",
                       DefaultConfig());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ((*ok)[0].exec.timeout, std::chrono::seconds(2592000));
}

TEST(BatchFileTest, LifetimeFollowsTheTimeoutUnlessSet) {
  Config config = DefaultConfig();  // timeout 10 s, lifetime left at its default
  config.origins["lifetime"] = "default";
  auto tasks = ParseBatch(R"([{"command": ["true"]}, {"command": ["true"], "timeout": 1000}])",
                          "t.json", "/base", config);
  ASSERT_TRUE(tasks.ok()) << tasks.status().ToString();
  EXPECT_EQ((*tasks)[0].sandbox.lifetime, std::chrono::seconds(10 + 60));
  EXPECT_EQ((*tasks)[1].sandbox.lifetime, std::chrono::seconds(1000 + 250));
  config.lifetime_s = 7200;
  config.origins["lifetime"] = "flag --lifetime";
  tasks = ParseBatch(R"([{"command": ["true"], "timeout": 5}])", "t.json", "/base", config);
  ASSERT_TRUE(tasks.ok());
  EXPECT_EQ((*tasks)[0].sandbox.lifetime, std::chrono::seconds(7200));
  config = Config();  // no timeout: the default lifetime stays
  EXPECT_EQ(TaskFromConfig(config).sandbox.lifetime, std::chrono::seconds(3600));
}

TEST(SandboxPathTest, OnlyRelativePathsWithoutDotDotPass) {
  for (const std::string good : {"a", "a/b", "./a", "a/./b", ".", "a..b", "..a/b", "a/b/"}) {
    EXPECT_TRUE(CheckSandboxRelativePath("path", good).ok()) << good;
  }
  for (const std::string bad : {"", "/a", "/", "..", "../a", "a/..", "a/../b", "a//../b"}) {
    EXPECT_EQ(CheckSandboxRelativePath("path", bad).code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(CheckSandboxRelativePath("path", std::string("a\0b", 3)).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sandrun
