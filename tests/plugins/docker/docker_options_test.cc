// The container the Docker backend asks for, checked without an engine:
// ContainerCreateBody is a pure function of the spec, the options and the
// facts of the moment.
#include "docker_options.h"

#include <gtest/gtest.h>

namespace sandrun::docker {
namespace {

using json = nlohmann::json;

ContainerFacts Facts() {
  return ContainerFacts{"sandrun-test/busybox",
                        {{"dev.sandrun.owner-pid", "4242"},
                         {"dev.sandrun.owner-host", "builder"},
                         {"dev.sandrun.expires", "1700000600"}}};
}

json Body(const SandboxSpec& spec, const DockerOptions& options = {}) {
  auto body = ContainerCreateBody(spec, options, Facts());
  EXPECT_TRUE(body.ok()) << body.status().message();
  return body.ok() ? *body : json();
}

TEST(ContainerCreateBodyTest, WithoutNetworkByDefault) {
  json body = Body(SandboxSpec{});
  EXPECT_EQ(body["HostConfig"]["NetworkMode"], "none");
  EXPECT_EQ(body["NetworkDisabled"], false);  // as the engine wants it with "none"
}

TEST(ContainerCreateBodyTest, AnOpenNetworkIsTheHostsNetwork) {
  SandboxSpec spec;
  spec.network = NetworkMode::kOpen;
  json body = Body(spec);
  EXPECT_EQ(body["HostConfig"]["NetworkMode"], "host");
  EXPECT_FALSE(body.contains("NetworkDisabled"));
}

TEST(ContainerCreateBodyTest, CpuAndMemoryLimitsWithoutSwap) {
  SandboxSpec spec;
  spec.cpu = 1.5;
  spec.memory_mb = 256;
  json host = Body(spec)["HostConfig"];
  EXPECT_EQ(host["NanoCpus"], 1500000000);
  EXPECT_EQ(host["Memory"], 256 * 1024 * 1024);
  EXPECT_EQ(host["MemorySwap"], 256 * 1024 * 1024);
}

TEST(ContainerCreateBodyTest, NoLimitsWhenTheSpecAsksForNoneButAlwaysAPidLimit) {
  DockerOptions options;
  options.pids_limit = 77;
  json host = Body(SandboxSpec{}, options)["HostConfig"];
  EXPECT_FALSE(host.contains("NanoCpus"));
  EXPECT_FALSE(host.contains("Memory"));
  EXPECT_FALSE(host.contains("MemorySwap"));
  EXPECT_EQ(host["PidsLimit"], 77);
}

TEST(ContainerCreateBodyTest, NeverPrivilegedAndKeptUntilSandrunRemovesIt) {
  json host = Body(SandboxSpec{})["HostConfig"];
  EXPECT_EQ(host["Privileged"], false);
  EXPECT_EQ(host["AutoRemove"], false);
  EXPECT_EQ(host["Init"], true);  // docker-init reaps what the commands leave
}

TEST(ContainerCreateBodyTest, ManagedOwnerAndSpecLabels) {
  SandboxSpec spec;
  spec.labels = {{"run", "r-1"}, {"task", "t-7"}, {"team", "core"}};
  DockerOptions options;
  options.volume = "results-vol";
  json labels = Body(spec, options)["Labels"];
  EXPECT_EQ(labels["dev.sandrun.managed"], "1");
  EXPECT_EQ(labels["dev.sandrun.owner-pid"], "4242");
  EXPECT_EQ(labels["dev.sandrun.owner-host"], "builder");
  EXPECT_EQ(labels["dev.sandrun.expires"], "1700000600");
  EXPECT_EQ(labels["dev.sandrun.volume"], "results-vol");
  EXPECT_EQ(labels["dev.sandrun.run"], "r-1");
  EXPECT_EQ(labels["dev.sandrun.task"], "t-7");
  EXPECT_EQ(labels["dev.sandrun.label.run"], "r-1");
  EXPECT_EQ(labels["dev.sandrun.label.team"], "core");
  EXPECT_FALSE(labels.contains("team"));  // spec labels stay in their namespace
}

TEST(ContainerCreateBodyTest, RunAndTaskLabelsAreAlwaysThere) {
  json labels = Body(SandboxSpec{})["Labels"];
  EXPECT_EQ(labels["dev.sandrun.run"], "");
  EXPECT_EQ(labels["dev.sandrun.task"], "");
}

TEST(ContainerCreateBodyTest, TheArchiveIsNeverMountedOnlyTheExeCacheReadOnlyAndUserMounts) {
  DockerOptions options;
  options.volume = "results-vol";
  options.exe_cache_volume = "exe-vol";
  options.mounts = {"/srv/data:/data:ro", "scratch:/scratch"};
  json mounts = Body(SandboxSpec{}, options)["HostConfig"]["Mounts"];
  ASSERT_EQ(mounts.size(), 3u);
  EXPECT_EQ(mounts[0], (json{{"Type", "volume"}, {"Source", "exe-vol"},
                             {"Target", "/sandrun/exe"}, {"ReadOnly", true}}));
  EXPECT_EQ(mounts[1], (json{{"Type", "bind"}, {"Source", "/srv/data"},
                             {"Target", "/data"}, {"ReadOnly", true}}));
  EXPECT_EQ(mounts[2], (json{{"Type", "volume"}, {"Source", "scratch"},
                             {"Target", "/scratch"}, {"ReadOnly", false}}));
  for (const auto& m : mounts) {
    EXPECT_NE(m["Source"], "results-vol");
    EXPECT_NE(m["Target"], std::string(kResultsMount));
  }
}

TEST(ContainerCreateBodyTest, KeptAliveBySleepForTheLifetime) {
  SandboxSpec spec;
  spec.lifetime = std::chrono::seconds(90);
  json body = Body(spec);
  EXPECT_EQ(body["Entrypoint"], json::array({"sleep"}));
  EXPECT_EQ(body["Cmd"], json::array({"90"}));
  spec.lifetime = std::chrono::seconds(0);  // never less than a second
  EXPECT_EQ(Body(spec)["Cmd"], json::array({"1"}));
}

TEST(ContainerCreateBodyTest, ImageEnvAndWorkdir) {
  SandboxSpec spec;
  spec.env = {{"A", "1"}, {"B", "x=y"}};
  spec.workdir = "proj/./src";
  json body = Body(spec);
  EXPECT_EQ(body["Image"], "sandrun-test/busybox");
  EXPECT_EQ(body["Env"], json::array({"A=1", "B=x=y"}));
  EXPECT_EQ(body["WorkingDir"], "/sandrun/work/proj/src");
  EXPECT_EQ(Body(SandboxSpec{})["WorkingDir"], std::string(kDefaultWorkdir));
  EXPECT_EQ(body["AttachStdin"], false);
}

TEST(ContainerCreateBodyTest, AWorkdirOutsideTheSandboxIsRefused) {
  for (const char* bad : {"/etc", "../up", "a/../../b"}) {
    SandboxSpec spec;
    spec.workdir = bad;
    auto body = ContainerCreateBody(spec, DockerOptions{}, Facts());
    ASSERT_FALSE(body.ok()) << bad;
    EXPECT_EQ(body.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ContainerCreateBodyTest, AMountWithoutTargetIsRefused) {
  DockerOptions options;
  options.mounts = {"no-colon"};
  auto body = ContainerCreateBody(SandboxSpec{}, options, Facts());
  ASSERT_FALSE(body.ok());
  EXPECT_EQ(body.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace sandrun::docker
