#include "sandrun/config.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace sandrun {
namespace {

using testing::TempDir;

class ConfigTest : public ::testing::Test {
 protected:
  ConfigInputs Inputs() {
    ConfigInputs in;
    in.env = {{"HOME", (dir_.path() / "home").string()}};
    in.cwd = dir_.path() / "repo" / "sub" / "dir";
    std::filesystem::create_directories(in.cwd);
    return in;
  }
  TempDir dir_;
};

TEST_F(ConfigTest, DefaultsFollowTheXdgLayout) {
  auto config = LoadConfig(Inputs());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->backend, "local");
  EXPECT_EQ(config->retries, 1);
  EXPECT_EQ(config->network, NetworkMode::kNone);
  EXPECT_EQ(config->archive_dir, dir_.path() / "home/.local/share/sandrun/results");
  EXPECT_EQ(config->state_dir, dir_.path() / "home/.local/state/sandrun");
  EXPECT_EQ(config->origins["jobs"], "default");
  EXPECT_TRUE(config->config_file.empty());
}

TEST_F(ConfigTest, FlagsBeatEnvironmentBeatFileBeatDefaults) {
  dir_.Write("repo/sandrun.json",
             R"({"backend": "docker", "jobs": 4, "retries": 3, "timeout": 30,
                 "backends": {"docker": {"volume": "mine"}}})");
  ConfigInputs in = Inputs();
  in.env["SANDRUN_JOBS"] = "8";
  in.env["SANDRUN_RETRIES"] = "2";
  in.flags["retries"] = "0";
  auto config = LoadConfig(in);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->config_file, dir_.path() / "repo/sandrun.json");
  EXPECT_EQ(config->backend, "docker");
  EXPECT_EQ(config->origins["backend"], "file " + (dir_.path() / "repo/sandrun.json").string());
  EXPECT_EQ(config->jobs, 8);
  EXPECT_EQ(config->origins["jobs"], "env SANDRUN_JOBS");
  EXPECT_EQ(config->retries, 0);
  EXPECT_EQ(config->origins["retries"], "flag --retries");
  EXPECT_DOUBLE_EQ(config->timeout_s, 30);
  EXPECT_EQ(config->origins["network"], "default");
  EXPECT_EQ(config->backend_sections["docker"], R"({"volume":"mine"})");
  EXPECT_EQ(ConfigValueText(*config, "jobs"), "8");
}

TEST_F(ConfigTest, SyntaxErrorsNameFileLineAndColumn) {
  dir_.Write("repo/sandrun.json", "{\n  \"jobs\": 4,\n  \"backend\" \"docker\"\n}\n");
  auto config = LoadConfig(Inputs());
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(config.status().message().find("sandrun.json:3:"), std::string::npos)
      << config.status().message();
}

TEST_F(ConfigTest, BadValuesNameTheKeyAndWhereTheyCameFrom) {
  ConfigInputs in = Inputs();
  in.env["SANDRUN_NETWORK"] = "sometimes";
  auto config = LoadConfig(in);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("SANDRUN_NETWORK"), std::string::npos);
  EXPECT_NE(config.status().message().find("sometimes"), std::string::npos);

  in = Inputs();
  in.flags["jobs"] = "many";
  config = LoadConfig(in);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("--jobs"), std::string::npos);

  in = Inputs();
  in.flags["timeout"] = "-5";
  EXPECT_FALSE(LoadConfig(in).ok());

  // Out of range, not "must be positive" and not an overflow into "expired".
  for (const auto& [value, why] : std::vector<std::pair<std::string, std::string>>{
           {"1e10", "30 days"}, {"1e300", "30 days"}, {"inf", "finite"}, {"nan", "finite"}}) {
    in = Inputs();
    in.flags["timeout"] = value;
    config = LoadConfig(in);
    ASSERT_FALSE(config.ok()) << value;
    EXPECT_NE(config.status().message().find(why), std::string::npos) << config.status().message();
  }
  in = Inputs();
  in.flags["lifetime"] = "99999999999";
  EXPECT_FALSE(LoadConfig(in).ok());

  dir_.Write("repo/sandrun.json", R"({"jbos": 4})");
  config = LoadConfig(Inputs());
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("unknown key 'jbos'"), std::string::npos);
}

// A GoogleTest case's default timeout: CTest's 1500 s, 0 for none, from the
// environment or the file like every key; never negative.
TEST_F(ConfigTest, TestTimeoutHasADefaultAndMayBeTurnedOff) {
  auto config = LoadConfig(Inputs());
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->test_timeout_s, 1500);
  EXPECT_EQ(ConfigValueText(*config, "test_timeout"), "1500");
  ConfigInputs in = Inputs();
  in.env["SANDRUN_TEST_TIMEOUT"] = "0";
  config = LoadConfig(in);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->test_timeout_s, 0);
  in.env["SANDRUN_TEST_TIMEOUT"] = "-1";
  EXPECT_FALSE(LoadConfig(in).ok());
  in.env["SANDRUN_TEST_TIMEOUT"] = "1e10";
  EXPECT_FALSE(LoadConfig(in).ok());
}

TEST_F(ConfigTest, ExplicitConfigFileAndListValues) {
  auto file = dir_.Write("elsewhere.json", R"({"fallback": ["docker", "local"], "network": "open"})");
  ConfigInputs in = Inputs();
  in.env["SANDRUN_CONFIG"] = file.string();
  auto config = LoadConfig(in);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->fallback, (std::vector<std::string>{"docker", "local"}));
  EXPECT_EQ(config->network, NetworkMode::kOpen);
  in.env["SANDRUN_FALLBACK"] = "local";
  config = LoadConfig(in);
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->fallback, (std::vector<std::string>{"local"}));
}

TEST_F(ConfigTest, GpuIsAKeyWithItsSyntaxChecked) {
  ConfigInputs in = Inputs();
  in.env["SANDRUN_GPU"] = "T4";
  auto from_env = LoadConfig(in);
  ASSERT_TRUE(from_env.ok()) << from_env.status().ToString();
  EXPECT_EQ(from_env->gpu, "T4");
  EXPECT_EQ(from_env->origins["gpu"], "env SANDRUN_GPU");
  in.flags["gpu"] = "A100-80GB:2";
  auto from_flag = LoadConfig(in);
  ASSERT_TRUE(from_flag.ok()) << from_flag.status().ToString();
  EXPECT_EQ(from_flag->gpu, "A100-80GB:2");
  for (const char* bad : {"A10G:0", "A10G:65", ":1", "A10G:x", "A 10G", "A10G:1:2"}) {
    in.flags["gpu"] = bad;
    auto config = LoadConfig(in);
    ASSERT_FALSE(config.ok()) << bad;
    EXPECT_NE(config.status().message().find("invalid gpu '" + std::string(bad) + "'"),
              std::string::npos) << config.status().message();
    EXPECT_NE(config.status().message().find("flag --gpu"), std::string::npos);
  }
  std::string type;
  int count = 0;
  ASSERT_TRUE(ParseGpuSpec("H100", &type, &count).ok());
  EXPECT_EQ(type, "H100");
  EXPECT_EQ(count, 1);
}

}  // namespace
}  // namespace sandrun
