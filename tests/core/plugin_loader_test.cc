// Loading third-party backend plugins from shared libraries built like a
// user would build them (tests/plugins/external).
#include <gtest/gtest.h>

#include "sandrun/engine.h"
#include "sandrun/plugin_abi.h"
#include "sandrun/registry.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

const std::string kGoodDir = std::string(SANDRUN_TEST_PLUGIN_DIR) + "/good";
const std::string kBadDir = std::string(SANDRUN_TEST_PLUGIN_DIR) + "/bad_abi";

TEST(PluginLoaderTest, LoadsAPluginAndItsBackendRuns) {
  BackendRegistry registry;
  auto problems = LoadPluginsFromPath(kGoodDir, registry);
  ASSERT_TRUE(problems.empty()) << problems.front().ToString();
  ASSERT_TRUE(registry.Has("external-echo"));
  EXPECT_NE(registry.List().front().origin.find("sandrun_test_plugin_good"), std::string::npos);

  testing::TempDir dir;
  Config config;
  config.archive_dir = dir.path() / "archive";
  auto backend = registry.Create("external-echo", config);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  Task task;
  task.id = "echo";
  task.exec.argv = {"hello", "plugin"};
  Engine engine({{std::shared_ptr<Backend>(std::move(backend).value())}});
  RunOptions options;
  options.outbox_dir = dir.path() / "outbox";
  CancelFlag cancel;
  auto out = engine.Run({task}, options, cancel);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->tasks[0].result.stdout_stream.text, "hello plugin\n");
}

TEST(PluginLoaderTest, RefusesAPluginBuiltForAnotherAbiVersion) {
  BackendRegistry registry;
  auto problems = LoadPluginsFromPath(kBadDir, registry);
  ASSERT_EQ(problems.size(), 1u);
  const std::string& message = problems[0].message();
  EXPECT_NE(message.find("ABI version 999"), std::string::npos) << message;
  EXPECT_NE(message.find("version " + std::to_string(SANDRUN_PLUGIN_ABI_VERSION)), std::string::npos)
      << message;
  EXPECT_FALSE(registry.Has("external-old"));
}

TEST(PluginLoaderTest, GoodPluginsStillLoadNextToBadOnes) {
  BackendRegistry registry;
  auto problems = LoadPluginsFromPath(kBadDir + ":" + kGoodDir + ":/no/such/dir", registry);
  EXPECT_EQ(problems.size(), 2u);
  EXPECT_TRUE(registry.Has("external-echo"));
}

TEST(PluginLoaderTest, DuplicateAndUnknownNamesAreClearErrors) {
  BackendRegistry registry;
  auto factory = [](const BackendContext&) -> Result<std::unique_ptr<Backend>> {
    return UnimplementedError("never built");
  };
  ASSERT_TRUE(registry.Register("one", "first", factory).ok());
  Status again = registry.Register("one", "second", factory);
  EXPECT_EQ(again.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(registry.Register("Bad Name", "x", factory).code(), StatusCode::kInvalidArgument);
  auto unknown = registry.Create("dokcer", Config{});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown backend 'dokcer' (known: one)"),
            std::string::npos);
}

}  // namespace
}  // namespace sandrun
