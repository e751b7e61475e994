// The built sandrun with the Docker backend, as a user drives it: fallback
// when no engine answers, and what a SIGKILLed sandrun leaves behind
// (`sandrun cleanup` removes it; the sandbox lifetime ends it anyway).
// Tests that need an engine skip, with the reason, only when none answers
// or the test image is missing (scripts/docker-test-env provides both).
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"
#include "sandrun/util.h"

namespace sandrun::e2e {
namespace {

constexpr char kImage[] = "sandrun-test/busybox";

/// Why Docker tests cannot run here, or "" when they can.
std::string DockerUnavailableReason() {
  CommandOutput out = sandrun::testing::RunCommand({"docker", "image", "inspect", kImage});
  if (out.exit_code == 0) return "";
  return "no Docker engine with image " + std::string(kImage) +
         " (run scripts/docker-test-env): " + out.err.substr(0, 200);
}

/// Container ids carrying sandrun's task label `task`, running or not.
std::vector<std::string> ContainersOfTask(const std::string& task) {
  CommandOutput out = sandrun::testing::RunCommand(
      {"docker", "ps", "-aq", "--filter", "label=dev.sandrun.task=" + task});
  std::vector<std::string> ids;
  std::string line;
  for (char c : out.out) {
    if (c == '\n') {
      if (!line.empty()) ids.push_back(line);
      line.clear();
    } else {
      line += c;
    }
  }
  if (!line.empty()) ids.push_back(line);
  return ids;
}

/// The sandrun run id a container belongs to (its dev.sandrun.run label).
std::string RunOfContainer(const std::string& id) {
  CommandOutput out = sandrun::testing::RunCommand(
      {"docker", "inspect", "-f", "{{index .Config.Labels \"dev.sandrun.run\"}}", id});
  std::string run = out.out;
  while (!run.empty() && (run.back() == '\n' || run.back() == ' ')) run.pop_back();
  return run;
}

bool ContainerRunning(const std::string& id) {
  CommandOutput out =
      sandrun::testing::RunCommand({"docker", "inspect", "-f", "{{.State.Running}}", id});
  return out.exit_code == 0 && out.out.rfind("true", 0) == 0;
}

/// Waits until `pred` holds or `limit` passes.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

TEST(E2eDocker, UnreachableEngineIsOneLineNamingDockerHostAndExit125) {
  Home home;
  CommandOutput out = home.Run({"exec", "--backend", "docker", "--image", kImage, "--", "true"},
                               {.env = {{"DOCKER_HOST", "unix:///nonexistent/docker.sock"}}});
  EXPECT_EQ(out.exit_code, 125) << out.err;
  EXPECT_CONTAINS(out.err, "/nonexistent/docker.sock");
  EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
}

TEST(E2eDocker, FallsBackToLocalAndTheRecordSaysWhy) {
  Home home;
  CommandOutput out =
      home.Run({"exec", "--backend", "docker", "--fallback", "local", "--json", "--", "echo", "hi"},
               {.env = {{"DOCKER_HOST", "unix:///nonexistent/docker.sock"}}});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_CONTAINS(out.err, "docker unavailable");
  auto record = nlohmann::json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record.value("backend", ""), "local");
  EXPECT_CONTAINS(record.value("fallback_reason", ""), "/nonexistent/docker.sock");
  EXPECT_CONTAINS(record["stdout"].value("text", ""), "hi");
  // The same reason is in the archived record.
  auto runs = home.Runs();
  ASSERT_EQ(runs.size(), 1u);
  auto stored = home.Show(runs[0].value("run_id", ""), "exec");
  EXPECT_CONTAINS(stored.dump(), "/nonexistent/docker.sock");
}

TEST(E2eDocker, CleanupRemovesWhatAKilledSandrunLeftBehind) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  std::string task = "leak-" + RandomHex(8);
  std::vector<std::string> argv{SANDRUN_BINARY, "exec",  "--backend", "docker", "--image",
                                kImage,         "--name", task,       "--",     "sleep", "300"};
  Background sandrun(argv, home.Env(), home.work());
  ASSERT_TRUE(sandrun.started());
  ASSERT_TRUE(WaitFor([&] { return !ContainersOfTask(task).empty(); }, std::chrono::seconds(60)))
      << "no container appeared for task " << task;
  std::string id = ContainersOfTask(task).front();
  EXPECT_TRUE(WaitFor([&] { return ContainerRunning(id); }, std::chrono::seconds(60)));

  sandrun.Signal(SIGKILL);
  ASSERT_TRUE(sandrun.Wait(std::chrono::seconds(10)).has_value());
  EXPECT_EQ(ContainersOfTask(task).size(), 1u) << "SIGKILL gives sandrun no chance to clean up";

  // Scoped to this run: other test processes may own orphans of their own.
  std::string run = RunOfContainer(id);
  ASSERT_FALSE(run.empty());
  CommandOutput dry = home.Run({"cleanup", "--backend", "docker", "--dry-run", "--run", run});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  EXPECT_CONTAINS(dry.out, "would remove");
  EXPECT_EQ(ContainersOfTask(task).size(), 1u) << "--dry-run removes nothing";

  CommandOutput cleanup = home.Run({"cleanup", "--backend", "docker", "--run", run});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.err;
  EXPECT_TRUE(ContainersOfTask(task).empty()) << cleanup.out;
}

TEST(E2eDocker, TheSandboxLifetimeEndsALeakedContainerByItself) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  std::string task = "lifetime-" + RandomHex(8);
  std::vector<std::string> argv{SANDRUN_BINARY, "exec",    "--backend", "docker", "--image", kImage,
                                "--lifetime",   "3",       "--name",    task,     "--",      "sleep",
                                "300"};
  Background sandrun(argv, home.Env(), home.work());
  ASSERT_TRUE(sandrun.started());
  ASSERT_TRUE(WaitFor([&] { return !ContainersOfTask(task).empty(); }, std::chrono::seconds(60)));
  std::string id = ContainersOfTask(task).front();
  ASSERT_TRUE(WaitFor([&] { return ContainerRunning(id); }, std::chrono::seconds(60)));
  std::string run = RunOfContainer(id);
  sandrun.Signal(SIGKILL);
  sandrun.Wait(std::chrono::seconds(10));

  EXPECT_TRUE(WaitFor([&] { return !ContainerRunning(id); }, std::chrono::seconds(30)))
      << "container " << id << " outlived its 3 s lifetime";
  CommandOutput cleanup = home.Run({"cleanup", "--backend", "docker", "--run", run});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.err;
  EXPECT_TRUE(ContainersOfTask(task).empty()) << cleanup.out;
}

}  // namespace
}  // namespace sandrun::e2e
