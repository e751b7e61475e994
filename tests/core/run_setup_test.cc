// The one run-setup path (sandrun/run_setup.h) over a registry of fake
// backends: the auto order from declared ranks, bad input that is never a
// reason to fall back, the environment reaching the factories, plugin flags
// with the config precedence, refusals, and the run options.
#include "sandrun/run_setup.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "sandrun/batch_file.h"
#include "support/fake_backend.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

/// A fake backend with the capabilities a test gives it.
class StubBackend : public testing::FakeBackend {
 public:
  StubBackend(std::string name, Capabilities caps)
      : FakeBackend("/nonexistent", std::move(name)), caps_(caps) {}
  Capabilities GetCapabilities() const override { return caps_; }

 private:
  Capabilities caps_;
};

BackendFactory Stub(const std::string& name, Capabilities caps = {}) {
  return [name, caps](const BackendContext&) -> Result<std::unique_ptr<Backend>> {
    return std::unique_ptr<Backend>(std::make_unique<StubBackend>(name, caps));
  };
}

Status RegisterRanked(BackendRegistry& registry, const std::string& name, int rank,
                      Capabilities caps = {}) {
  BackendInfo info;
  info.name = name;
  info.auto_rank = rank;
  return registry.Register(std::move(info), Stub(name, caps));
}

std::vector<std::string> Names(const std::vector<BackendCandidate>& candidates) {
  std::vector<std::string> names;
  for (const auto& c : candidates) names.push_back(c.name);
  return names;
}

TEST(RunSetupTest, AutoTriesBackendsByDeclaredRankThenName) {
  BackendRegistry registry;
  ASSERT_TRUE(RegisterRanked(registry, "alpha", 0).ok());
  ASSERT_TRUE(RegisterRanked(registry, "zeta", 30).ok());
  ASSERT_TRUE(RegisterRanked(registry, "mid", 20).ok());
  ASSERT_TRUE(registry.Register("beta", "no rank declared", Stub("beta")).ok());

  Config config;
  config.backend = "auto";
  auto names = CandidateNames(registry, config);
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  EXPECT_EQ(*names, (std::vector<std::string>{"zeta", "mid", "alpha", "beta"}));

  // A named backend first, then "auto" as the fallback: each name once.
  config.backend = "beta";
  config.fallback = {"auto", "mid"};
  names = CandidateNames(registry, config);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"beta", "zeta", "mid", "alpha"}));
}

TEST(RunSetupTest, AnUnknownBackendIsBadInputNamingTheKnownOnes) {
  BackendRegistry registry;
  ASSERT_TRUE(RegisterRanked(registry, "one", 0).ok());
  Config config;
  config.backend = "one";
  config.fallback = {"dokcer"};
  auto setup = SetUpRun(registry, config, {});
  ASSERT_FALSE(setup.ok());
  EXPECT_EQ(setup.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(setup.status().message().find("unknown backend 'dokcer' (known: one)"),
            std::string::npos)
      << setup.status().message();
}

TEST(RunSetupTest, ABadSettingIsBadInputWhileAnUnavailableBackendIsFallenBackPast) {
  BackendRegistry registry;
  ASSERT_TRUE(registry
                  .Register("picky", "refuses its section",
                            [](const BackendContext&) -> Result<std::unique_ptr<Backend>> {
                              return InvalidArgumentError("picky: unknown config key 'x'");
                            })
                  .ok());
  ASSERT_TRUE(registry
                  .Register("absent", "cannot be built here",
                            [](const BackendContext&) -> Result<std::unique_ptr<Backend>> {
                              return UnavailableError("absent: no daemon");
                            })
                  .ok());
  ASSERT_TRUE(RegisterRanked(registry, "spare", 0).ok());

  Config config;
  config.backend = "picky";
  config.fallback = {"spare"};
  auto bad = SetUpRun(registry, config, {});
  ASSERT_FALSE(bad.ok()) << "a bad setting must not fall back to 'spare'";
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("unknown config key 'x'"), std::string::npos);

  config.backend = "absent";
  auto fallback = SetUpRun(registry, config, {});
  ASSERT_TRUE(fallback.ok()) << fallback.status().ToString();
  ASSERT_EQ(Names(fallback->candidates), (std::vector<std::string>{"absent", "spare"}));
  EXPECT_EQ(fallback->candidates[0].backend, nullptr);
  EXPECT_NE(fallback->candidates[0].construction_error.find("no daemon"), std::string::npos);
  EXPECT_NE(fallback->candidates[1].backend, nullptr);
}

TEST(RunSetupTest, TheEntryPointsEnvironmentReachesTheFactory) {
  BackendRegistry registry;
  std::map<std::string, std::string> seen;
  ASSERT_TRUE(registry
                  .Register("probe", "records its context",
                            [&seen](const BackendContext& context)
                                -> Result<std::unique_ptr<Backend>> {
                              seen = context.env;
                              return std::unique_ptr<Backend>(
                                  std::make_unique<StubBackend>("probe", Capabilities{}));
                            })
                  .ok());
  Config config;
  config.backend = "probe";
  RunSetupInputs inputs;
  inputs.env = {{"PROBE_HOST", "unix:///tmp/probe.sock"}};
  ASSERT_TRUE(SetUpRun(registry, config, inputs).ok());
  EXPECT_EQ(seen, inputs.env);
}

TEST(RunSetupTest, JobsComeFromConfigThenTheFirstBackendThenCores) {
  BackendRegistry registry;
  Capabilities wide;
  wide.max_parallel = 7;
  ASSERT_TRUE(RegisterRanked(registry, "narrow", 0).ok());
  ASSERT_TRUE(RegisterRanked(registry, "wide", 0, wide).ok());
  Config config;
  config.backend = "narrow";
  config.fallback = {"wide"};
  config.retries = 3;
  config.state_dir = "/state";
  RunSetupInputs inputs;
  inputs.command_line = {"sandrun", "batch", "x.json"};

  auto setup = SetUpRun(registry, config, inputs);
  ASSERT_TRUE(setup.ok());
  EXPECT_EQ(setup->options.jobs, 7) << "the first candidate that suggests a number";
  EXPECT_EQ(setup->options.retries, 3);
  EXPECT_EQ(setup->options.outbox_dir, std::filesystem::path("/state/outbox"));
  EXPECT_EQ(setup->options.command_line, inputs.command_line);

  config.jobs = 3;
  EXPECT_EQ(SetUpRun(registry, config, inputs)->options.jobs, 3);

  inputs.task_count = 1;
  EXPECT_EQ(SetUpRun(registry, config, inputs)->options.jobs, 1);

  config.jobs = 0;
  config.fallback.clear();
  inputs.task_count = 0;
  EXPECT_GE(SetUpRun(registry, config, inputs)->options.jobs, 1) << "cores";
}

/// A registry with one backend declaring a list flag and a scalar flag.
BackendRegistry RegistryWithFlags() {
  BackendRegistry registry;
  BackendInfo info;
  info.name = "remote";
  info.flags = {
      {"tag", "tags", "Tag every sandbox (repeatable)", /*list=*/true, {"SANDRUN_REMOTE_TAGS"}},
      {"region", "region", "Region to run in", /*list=*/false, {"SANDRUN_REGION", "REGION"},
       /*every_command=*/true},
  };
  Capabilities gpu;
  gpu.supports_gpu = true;
  EXPECT_TRUE(registry.Register(std::move(info), Stub("remote", gpu)).ok());
  EXPECT_TRUE(RegisterRanked(registry, "here", 0).ok());
  return registry;
}

TEST(RunSetupTest, BackendFlagsFollowTheConfigPrecedence) {
  BackendRegistry registry = RegistryWithFlags();
  Config config;
  config.backend_sections["remote"] = R"({"region": "from-file", "size": 2})";

  // The file alone.
  Config file = config;
  ApplyBackendFlags(registry, {}, {}, file);
  EXPECT_EQ(nlohmann::json::parse(file.backend_sections["remote"])["region"], "from-file");
  EXPECT_EQ(file.origins.count("backends.remote.region"), 0u);

  // The second variable, then the first one, over the file.
  Config env = config;
  ApplyBackendFlags(registry, {}, {{"REGION", "from-region"}, {"SANDRUN_REMOTE_TAGS", "a, b"}},
                    env);
  auto section = nlohmann::json::parse(env.backend_sections["remote"]);
  EXPECT_EQ(section["region"], "from-region");
  EXPECT_EQ(section["tags"], nlohmann::json::array({"a", "b"}));
  EXPECT_EQ(section["size"], 2) << "keys no flag sets stay";
  EXPECT_EQ(env.origins["backends.remote.region"], "env REGION");
  Config both = config;
  ApplyBackendFlags(registry, {}, {{"REGION", "r"}, {"SANDRUN_REGION", "s"}}, both);
  EXPECT_EQ(nlohmann::json::parse(both.backend_sections["remote"])["region"], "s");

  // The flag over everything.
  Config flag = config;
  ApplyBackendFlags(registry, {{"region", {"from-flag"}}, {"tag", {"x", "y"}}},
                    {{"SANDRUN_REGION", "s"}, {"SANDRUN_REMOTE_TAGS", "a"}}, flag);
  section = nlohmann::json::parse(flag.backend_sections["remote"]);
  EXPECT_EQ(section["region"], "from-flag");
  EXPECT_EQ(section["tags"], nlohmann::json::array({"x", "y"}));
  EXPECT_EQ(flag.origins["backends.remote.region"], "flag --region");
}

TEST(RunSetupTest, RefusesWhatNoCandidateCanHonour) {
  BackendRegistry registry = RegistryWithFlags();
  Config config;
  config.backend = "here";
  RunSetupInputs inputs;
  inputs.backend_flags_given = {"tag"};
  auto flag = SetUpRun(registry, config, inputs);
  ASSERT_FALSE(flag.ok());
  EXPECT_EQ(flag.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(flag.status().message().find(
                "--tag applies only to the remote backend, which this run cannot use "
                "(backends: here); add --backend remote or --fallback remote"),
            std::string::npos)
      << flag.status().message();
  config.fallback = {"remote"};
  EXPECT_TRUE(SetUpRun(registry, config, inputs).ok()) << "remote is a fallback";

  config.fallback.clear();
  config.gpu = "A10G:1";
  config.origins["gpu"] = "flag --gpu";
  auto gpu = SetUpRun(registry, config, {});
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(gpu.status().message().find("gpu 'A10G:1' (flag --gpu): none of the backends this "
                                        "run may use (here) can provide a GPU; use --backend remote"),
            std::string::npos)
      << gpu.status().message();
  config.backend = "remote";
  EXPECT_TRUE(SetUpRun(registry, config, {}).ok());
}

TEST(RunSetupTest, TwoBackendsCannotDeclareTheSameFlag) {
  BackendRegistry registry = RegistryWithFlags();
  BackendInfo info;
  info.name = "copycat";
  info.flags = {{"region", "where", "Also a region"}};
  Status status = registry.Register(std::move(info), Stub("copycat"));
  EXPECT_EQ(status.code(), StatusCode::kAlreadyExists);
  EXPECT_NE(status.message().find("--region"), std::string::npos) << status.message();
  EXPECT_FALSE(registry.Has("copycat"));
}

TEST(RunSetupTest, EnvArgsAreKEqualsV) {
  std::map<std::string, std::string> env;
  ASSERT_TRUE(ParseEnvArgs({"A=1", "B==2", "C=", "A=3"}, env).ok());
  EXPECT_EQ(env, (std::map<std::string, std::string>{{"A", "3"}, {"B", "=2"}, {"C", ""}}));
  for (const char* bad : {"PLAIN", "=value"}) {
    Status status = ParseEnvArgs({bad}, env);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_EQ(status.message(), std::string("--env expects K=V, got '") + bad + "'");
  }
}

}  // namespace
}  // namespace sandrun
