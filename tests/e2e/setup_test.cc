// Setting up: `sandrun config` precedence, `backends`, `doctor`, and a
// third-party plugin loaded from SANDRUN_PLUGIN_PATH.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"
#include "sandrun/plugin_abi.h"

namespace sandrun::e2e {
namespace {

/// `sandrun config --json` run in `cwd` with extra environment and flags.
nlohmann::json ConfigJson(const Home& home, const fs::path& cwd,
                          const std::map<std::string, std::string>& env,
                          const std::vector<std::string>& flags = {}) {
  std::vector<std::string> args{"config", "--json"};
  args.insert(args.end(), flags.begin(), flags.end());
  CommandOptions options;
  options.cwd = cwd;
  options.env = env;
  CommandOutput out = home.Run(args, options);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  auto parsed = nlohmann::json::parse(out.out, nullptr, false);
  EXPECT_TRUE(parsed.is_object()) << out.out;
  return parsed.is_object() ? parsed : nlohmann::json::object();
}

TEST(E2eConfig, FlagBeatsEnvBeatsFileBeatsDefault) {
  Home home;
  // sandrun.json two levels above the working directory.
  fs::path config_file =
      home.Write("project/sandrun.json", R"({"jobs": 5, "retries": 2, "timeout": 40, "cpu": 3})");
  fs::path cwd = home.work() / "project" / "src" / "deep";
  fs::create_directories(cwd);
  std::map<std::string, std::string> env{{"SANDRUN_RETRIES", "3"}, {"SANDRUN_TIMEOUT", "30"}};

  nlohmann::json config = ConfigJson(home, cwd, env, {"--retries", "4"});
  EXPECT_EQ(config["config_file"], config_file.string());
  EXPECT_EQ(config["retries"]["value"], "4");
  EXPECT_EQ(config["retries"]["source"], "flag --retries");
  EXPECT_EQ(config["timeout"]["value"], "30");
  EXPECT_EQ(config["timeout"]["source"], "env SANDRUN_TIMEOUT");
  EXPECT_EQ(config["jobs"]["value"], "5");
  EXPECT_EQ(config["jobs"]["source"], "file " + config_file.string());
  EXPECT_EQ(config["network"]["value"], "none");
  EXPECT_EQ(config["network"]["source"], "default");

  // Without the flag the environment wins; without both, the file.
  config = ConfigJson(home, cwd, env);
  EXPECT_EQ(config["retries"]["value"], "3");
  EXPECT_EQ(config["retries"]["source"], "env SANDRUN_RETRIES");
  config = ConfigJson(home, cwd, {});
  EXPECT_EQ(config["retries"]["value"], "2");
  EXPECT_EQ(config["timeout"]["value"], "40");
  EXPECT_EQ(config["cpu"]["value"], "3");

  // Outside the project nothing is found and defaults apply.
  config = ConfigJson(home, home.work(), {});
  EXPECT_EQ(config["config_file"], "");
  EXPECT_EQ(config["jobs"]["source"], "default");
  EXPECT_EQ(config["retries"]["value"], "1");  // the documented default
}

TEST(E2eConfig, TextOutputNamesEachSource) {
  Home home;
  fs::path config_file = home.Write("sandrun.json", R"({"jobs": 7})");
  CommandOptions options;
  options.env = {{"SANDRUN_TIMEOUT", "9"}};
  CommandOutput out = home.Run({"config", "--memory", "512"}, options);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_CONTAINS(out.out, "config file: " + config_file.string());
  ASSERT_EQ(LinesWith(out.out, "  jobs ").size(), 1u) << out.out;
  EXPECT_CONTAINS(LinesWith(out.out, "  jobs ")[0], "7  (file " + config_file.string() + ")");
  ASSERT_EQ(LinesWith(out.out, "  timeout ").size(), 1u) << out.out;
  EXPECT_CONTAINS(LinesWith(out.out, "  timeout ")[0], "9  (env SANDRUN_TIMEOUT)");
  ASSERT_EQ(LinesWith(out.out, "  memory ").size(), 1u) << out.out;
  EXPECT_CONTAINS(LinesWith(out.out, "  memory ")[0], "512  (flag --memory)");
  ASSERT_EQ(LinesWith(out.out, "  network ").size(), 1u) << out.out;
  EXPECT_CONTAINS(LinesWith(out.out, "  network ")[0], "none  (default)");
}

TEST(E2eConfig, TheEffectiveConfigIsWhatRuns) {
  Home home;
  home.Write("sandrun.json", R"({"timeout": 1})");
  auto start = Clock::now();
  CommandOutput out = home.Run({"exec", "--backend", "local", "--", "sleep", "30"});
  EXPECT_EQ(out.exit_code, 124) << out.err;
  EXPECT_LT(SecondsSince(start), 5.0);
}

TEST(E2eConfig, BadValueInTheFileIsAUsageError) {
  Home home;
  fs::path config_file = home.Write("sandrun.json", R"({"jobs": "many"})");
  CommandOutput out = home.Run({"config"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, config_file.string());
  EXPECT_CONTAINS(out.err, "many");
}

TEST(E2eBackends, LocalIsListedAsAvailable) {
  Home home;
  CommandOutput out = home.Run({"backends"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  std::vector<std::string> local;
  for (const auto& line : LinesWith(out.out, "local ")) {
    if (line.find("  local ") == 1 || line.rfind("* local ", 0) == 0) local.push_back(line);
  }
  ASSERT_EQ(local.size(), 1u) << out.out;
  EXPECT_CONTAINS(local[0], " available");
  EXPECT_LACKS(local[0], "unavailable");
}

TEST(E2eDoctor, HealthyLocalSetupPasses) {
  Home home;
  CommandOutput out = home.Run({"doctor", "--backend", "local"});
  EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_CONTAINS(out.out, "[ok]   backend local is available");
  EXPECT_CONTAINS(out.out, "everything looks good");
  EXPECT_LACKS(out.out, "[fail]");
}

TEST(E2eDoctor, UnwritableArchiveIsReported) {
  Home home;
  fs::path not_a_dir = home.Write("not-a-directory", "x");
  CommandOutput out = home.Run({"doctor", "--backend", "local", "--archive-dir", not_a_dir.string()});
  EXPECT_EQ(out.exit_code, 1) << out.out << out.err;
  EXPECT_CONTAINS(out.out, "[fail]");
  EXPECT_CONTAINS(out.out, "problem(s) found");
}

fs::path PluginDir(const std::string& variant) {
  return fs::path(SANDRUN_BUILD_DIR) / "tests" / "plugins" / "external" / variant;
}

TEST(E2ePlugin, GoodPluginIsListedAndRuns) {
  Home home;
  ASSERT_TRUE(fs::exists(PluginDir("good") / "libsandrun_test_plugin_good.so"))
      << "build the target sandrun_test_plugin_good";
  CommandOptions options;
  options.env = {{"SANDRUN_PLUGIN_PATH", PluginDir("good").string()}};
  CommandOutput listed = home.Run({"backends"}, options);
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  ASSERT_EQ(LinesWith(listed.out, "external-echo").size(), 1u) << listed.out;
  EXPECT_CONTAINS(LinesWith(listed.out, "external-echo")[0], " available");
  EXPECT_EQ(listed.err, "");

  CommandOutput ran = home.Run({"exec", "--backend", "external-echo", "--", "hi", "there"}, options);
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  EXPECT_EQ(ran.out, "hi there\n");
}

TEST(E2ePlugin, APluginsOwnFlagIsOfferedUnderItsNameAndApplied) {
  Home home;
  CommandOptions options;
  options.env = {{"SANDRUN_PLUGIN_PATH", PluginDir("good").string()}};
  CommandOutput help = home.Run({"exec", "--help"}, options);
  EXPECT_EQ(help.exit_code, 0) << help.err;
  auto group = help.out.find("Backend external-echo options:");
  ASSERT_NE(group, std::string::npos) << help.out;
  EXPECT_NE(help.out.find("--echo-prefix", group), std::string::npos) << help.out;

  CommandOutput flag = home.Run(
      {"exec", "--backend", "external-echo", "--echo-prefix", "flag:", "--", "hi"}, options);
  EXPECT_EQ(flag.exit_code, 0) << flag.err;
  EXPECT_EQ(flag.out, "flag:hi\n");
  CommandOptions with_variable = options;
  with_variable.env["SANDRUN_ECHO_PREFIX"] = "env:";
  CommandOutput variable = home.Run({"exec", "--backend", "external-echo", "--", "hi"}, with_variable);
  EXPECT_EQ(variable.out, "env:hi\n") << variable.err;

  // Given for a run that cannot use the plugin: bad input, nothing runs.
  CommandOutput elsewhere =
      home.Run({"exec", "--backend", "local", "--echo-prefix", "x", "--", "true"}, options);
  EXPECT_EQ(elsewhere.exit_code, 2);
  EXPECT_CONTAINS(elsewhere.err, "--echo-prefix applies only to the external-echo backend");
}

TEST(E2ePlugin, WrongAbiIsRefusedWithBothVersions) {
  Home home;
  ASSERT_TRUE(fs::exists(PluginDir("bad_abi") / "libsandrun_test_plugin_bad_abi.so"))
      << "build the target sandrun_test_plugin_bad_abi";
  CommandOptions options;
  options.env = {{"SANDRUN_PLUGIN_PATH", PluginDir("bad_abi").string()}};
  CommandOutput listed = home.Run({"backends"}, options);
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_CONTAINS(listed.err, "warning");
  EXPECT_CONTAINS(listed.err, "libsandrun_test_plugin_bad_abi.so");
  EXPECT_CONTAINS(listed.err, "version 999");
  EXPECT_CONTAINS(listed.err, "version " + std::to_string(SANDRUN_PLUGIN_ABI_VERSION));
  EXPECT_LACKS(listed.out, "external-old");

  CommandOutput ran = home.Run({"exec", "--backend", "external-old", "--", "hi"}, options);
  EXPECT_EQ(ran.exit_code, 2);
  EXPECT_CONTAINS(ran.err, "external-old");
}

}  // namespace
}  // namespace sandrun::e2e
