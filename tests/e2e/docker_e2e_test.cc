// The built sandrun with the Docker backend, as a user drives it: fallback
// when no engine answers, what a SIGKILLed sandrun leaves behind
// (`sandrun cleanup` removes it; the sandbox lifetime ends it anyway), a
// batch that loses a container or the whole engine midway, an engine that
// stops answering, and bad input only the engine could judge.
// Tests that need an engine skip, with the reason, only when none answers
// or the test image is missing (scripts/docker-test-env provides both).
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"
#include "support/docker_required.h"
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

/// The record of every task of `run`, by task id.
std::map<std::string, nlohmann::json> TasksOfRun(const Home& home, const std::string& run,
                                                 const std::map<std::string, std::string>& env) {
  CommandOutput out =
      home.Run({"results", "show", run, "--json", "--backend", "docker"}, {.env = env});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  auto parsed = nlohmann::json::parse(out.out, nullptr, false);
  std::map<std::string, nlohmann::json> tasks;
  if (!parsed.is_object() || !parsed.contains("tasks")) {
    ADD_FAILURE() << "no tasks in: " << out.out.substr(0, 500);
    return tasks;
  }
  for (const auto& task : parsed["tasks"]) tasks[task.value("task_id", "")] = task;
  return tasks;
}

/// The run id a batch printed ("run 2026...-abcd (passed), ...").
std::string RunIdFromOutput(const std::string& err) {
  std::size_t at = err.find("\nrun ");
  if (at == std::string::npos) return "";
  std::size_t start = at + 5, end = err.find(' ', start);
  return err.substr(start, end - start);
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

/// No run in the Docker archive has `token` anywhere (its command line).
void ExpectNoRunMentions(const Home& home, const std::string& token) {
  for (const auto& run : home.Runs({"--backend", "docker"})) {
    EXPECT_EQ(run.dump().find(token), std::string::npos) << "a run exists: " << run.dump();
  }
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
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
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

TEST(E2eDocker, CleanupSaysWhatHelperContainersAreAndWhyTheyStay) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
  // A run through the docker archive leaves its volume helper behind.
  CommandOutput run = home.Run({"exec", "--backend", "docker", "--image", kImage, "--", "true"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  CommandOutput dry = home.Run({"cleanup", "--backend", "docker", "--dry-run"});
  EXPECT_EQ(dry.exit_code, 0) << dry.err;
  std::vector<std::string> helpers = LinesWith(dry.out, "helper for volume");
  ASSERT_FALSE(helpers.empty()) << dry.out;
  for (const std::string& line : helpers) {
    EXPECT_CONTAINS(line, "keeping ");
    EXPECT_CONTAINS(line, "not a sandbox");
    EXPECT_LACKS(line, "owner still running");
  }
  EXPECT_CONTAINS(dry.out, "dry run: ");
  EXPECT_CONTAINS(dry.out, " would be removed");
  EXPECT_CONTAINS(dry.out, "helper container(s) kept");
}

TEST(E2eDocker, TheSandboxLifetimeEndsALeakedContainerByItself) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
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

TEST(E2eDocker, ALifetimeShorterThanTheCommandIsATimeoutAndNotRetried) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
  const auto start = Clock::now();
  CommandOutput out = home.Run({"exec", "--backend", "docker", "--image", kImage, "--lifetime",
                                "3", "--retries", "2", "--", "sh", "-c", "echo begun; sleep 120"});
  EXPECT_EQ(out.exit_code, 124) << out.err;
  EXPECT_EQ(out.out, "begun\n");
  EXPECT_CONTAINS(out.err, "the sandbox lifetime (3 s) ended the command");
  EXPECT_EQ(out.err.find("retrying"), std::string::npos) << out.err;
  EXPECT_LT(SecondsSince(start), 60) << "the lifetime did not end the command";
}

// A batch of `count` tasks, each `sleep SECONDS; echo task-N`.
std::string SleepingBatch(int count, int seconds) {
  nlohmann::json tasks = nlohmann::json::array();
  for (int i = 0; i < count; ++i) {
    tasks.push_back({{"id", "t" + std::to_string(i)},
                     {"command", {"sh", "-c", "sleep " + std::to_string(seconds) +
                                                  "; echo task-" + std::to_string(i)}}});
  }
  return nlohmann::json{{"tasks", tasks}}.dump();
}

TEST(E2eDocker, AContainerRemovedFromOutsideIsAnInfrastructureErrorAndIsRetried) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
  home.Write("tasks.json", SleepingBatch(2, 3));
  std::string tag = RandomHex(8);
  std::vector<std::string> argv{SANDRUN_BINARY, "batch", "tasks.json", "--backend", "docker",
                                "--image", kImage, "-j", "2", "--retries", "2"};
  std::map<std::string, std::string> env = home.Env();
  Background batch(argv, env, home.work());
  ASSERT_TRUE(batch.started());
  // Task ids are per run; find t0's container by its run's label once it runs.
  std::string victim;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const std::string& id : ContainersOfTask("t0")) {
          if (ContainerRunning(id) && RunOfContainer(id).size() > 0) {
            // Only a container of this test's batch: its run is in our outbox dir.
            std::string run = RunOfContainer(id);
            if (fs::exists(home.dir() / "state/sandrun/outbox/docker" / run)) victim = id;
          }
        }
        return !victim.empty();
      },
      std::chrono::seconds(60)));
  CommandOutput removed = sandrun::testing::RunCommand({"docker", "rm", "-f", victim});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  auto code = batch.Wait(std::chrono::seconds(120));
  ASSERT_TRUE(code.has_value()) << "batch did not finish";
  EXPECT_EQ(*code, 0) << batch.Err();
  EXPECT_CONTAINS(batch.Err(), "infrastructure error, retrying");
  std::string run = RunIdFromOutput(batch.Err());
  ASSERT_FALSE(run.empty()) << batch.Err();
  auto tasks = TasksOfRun(home, run, {});
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks["t0"].value("attempts", 0), 2) << tasks["t0"].dump();
  EXPECT_CONTAINS(tasks["t0"].dump(), "task-0");
  EXPECT_EQ(tasks["t1"].value("attempts", 0), 1) << "only the task that lost its container retries";
}

// The engine itself goes away and comes back (a daemon restart) while tasks
// run: a private engine, so the shared one other tests use is not disturbed.
class PrivateEngine {
 public:
  explicit PrivateEngine(fs::path dir) : dir_(std::move(dir)) {
    CommandOutput out = Script({"start", dir_.string(), kImage});
    started_ = out.exit_code == 0;
    error_ = out.err;
  }
  ~PrivateEngine() { Script({"stop", dir_.string()}); }
  bool started() const { return started_; }
  const std::string& error() const { return error_; }
  std::string host() const { return "unix://" + (dir_ / "docker.sock").string(); }
  bool Restart() { return Script({"restart", dir_.string()}).exit_code == 0; }
  /// SIGSTOPs (SIGCONTs) this engine's dockerd alone: its containers run on.
  bool Freeze() { return SignalDockerd(SIGSTOP); }
  bool Thaw() { return SignalDockerd(SIGCONT); }
  /// `docker ARGS...` against this engine.
  CommandOutput Docker(std::vector<std::string> args) const {
    args.insert(args.begin(), "docker");
    return sandrun::testing::RunCommand(args, {.env = {{"DOCKER_HOST", host()}}});
  }

 private:
  bool SignalDockerd(int sig) const {
    pid_t pid = 0;
    std::ifstream(dir_ / "dockerd.pid") >> pid;
    return pid > 0 && ::kill(pid, sig) == 0;
  }
  static CommandOutput Script(std::vector<std::string> args) {
    args.insert(args.begin(), std::string(SANDRUN_SOURCE_DIR) + "/tests/support/private-dockerd");
    return sandrun::testing::RunCommand(args, {.timeout = std::chrono::seconds(90)});
  }
  fs::path dir_;
  bool started_ = false;
  std::string error_;
};

/// Why a PrivateEngine cannot run here, or "" when it can.
std::string PrivateEngineUnavailableReason() {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) return reason;
  if (sandrun::testing::RunCommand({"sh", "-c", "command -v dockerd"}).exit_code != 0 ||
      ::geteuid() != 0) {
    return "needs root and dockerd to start an engine of its own";
  }
  return "";
}

TEST(E2eDocker, AnEngineRestartMidBatchIsRetriedAndLosesNoRecord) {
  std::string docker = DockerUnavailableReason();
  if (!docker.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(docker);
  std::string reason = PrivateEngineUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  // A short path: the socket's must fit in sockaddr_un.
  TempDir engine_dir;
  PrivateEngine engine(engine_dir.path() / "e");
  ASSERT_TRUE(engine.started()) << engine.error();
  home.Write("tasks.json", SleepingBatch(4, 2));
  std::map<std::string, std::string> env = home.Env();
  env["DOCKER_HOST"] = engine.host();
  std::vector<std::string> argv{SANDRUN_BINARY, "batch", "tasks.json", "--backend", "docker",
                                "--image", kImage, "-j", "2", "--retries", "3"};
  Background batch(argv, env, home.work());
  ASSERT_TRUE(batch.started());
  // Restart once the first two tasks run.
  ASSERT_TRUE(WaitFor(
      [&] {
        CommandOutput ps = engine.Docker({"ps", "-q", "--filter", "label=dev.sandrun.task"});
        return std::count(ps.out.begin(), ps.out.end(), '\n') >= 2;
      },
      std::chrono::seconds(60)));
  ASSERT_TRUE(engine.Restart());
  auto code = batch.Wait(std::chrono::seconds(180));
  ASSERT_TRUE(code.has_value()) << "batch did not finish";
  EXPECT_EQ(*code, 0) << batch.Err();
  EXPECT_CONTAINS(batch.Err(), "infrastructure error, retrying");
  std::string run = RunIdFromOutput(batch.Err());
  ASSERT_FALSE(run.empty()) << batch.Err();

  // Every record reached the engine's volume; none waits in the outbox.
  auto tasks = TasksOfRun(home, run, {{"DOCKER_HOST", engine.host()}});
  ASSERT_EQ(tasks.size(), 4u);
  int retried = 0;
  for (int i = 0; i < 4; ++i) {
    const auto& task = tasks["t" + std::to_string(i)];
    EXPECT_EQ(task.value("outcome", ""), "exited") << task.dump();
    EXPECT_CONTAINS(task.dump(), "task-" + std::to_string(i));
    if (task.value("attempts", 1) > 1) ++retried;
  }
  EXPECT_GE(retried, 1) << "the tasks running at the restart must have been retried";
  EXPECT_EQ(Home::CountFiles(home.dir() / "state/sandrun/outbox", ".json"), 0);
  // The containers the restart stopped are not left behind.
  CommandOutput left = engine.Docker({"ps", "-aq", "--filter", "label=dev.sandrun.task"});
  EXPECT_EQ(left.out, "") << "containers left after the batch";
}

// A registry of the test's own on loopback (Debian's docker-registry), so a
// missing image really is pulled, and one the registry lacks really fails.
TEST(E2eDocker, AMissingImageIsPulledFromARegistryAndAnUnknownOneIsBadInput) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  const std::string registry_binary = "/usr/bin/docker-registry";
  if (!fs::exists(registry_binary)) {
    GTEST_SKIP() << "docker-registry is not installed (scripts/bootstrap --with-docker installs it)";
  }
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
  int port = 0;
  {
    LoopbackListener probe;  // A free port, given back before the registry takes it.
    port = probe.port();
  }
  ASSERT_GT(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  fs::path config = home.Write("registry.yml",
                               "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n"
                               "    rootdirectory: " + (home.dir() / "registry").string() +
                               "\nhttp:\n  addr: " + address + "\n");
  Background registry({registry_binary, "serve", config.string()}, {}, home.dir());
  ASSERT_TRUE(registry.started());
  ASSERT_TRUE(WaitFor(
      [&] {
        return sandrun::testing::RunCommand({"curl", "-sf", "http://" + address + "/v2/"})
                   .exit_code == 0;
      },
      std::chrono::seconds(30)))
      << registry.Err();

  // Push the test image there under a new name, then forget it locally.
  const std::string image = address + "/sandrun-pull-test:" + RandomHex(6);
  auto docker = [](std::vector<std::string> args) {
    args.insert(args.begin(), "docker");
    return sandrun::testing::RunCommand(args);
  };
  ASSERT_EQ(docker({"tag", kImage, image}).exit_code, 0);
  CommandOutput pushed = docker({"push", image});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.out << pushed.err;
  ASSERT_EQ(docker({"rmi", image}).exit_code, 0);
  ASSERT_NE(docker({"image", "inspect", image}).exit_code, 0);
  struct Forget {
    std::function<CommandOutput(std::vector<std::string>)> docker;
    std::string image;
    ~Forget() { docker({"rmi", "-f", image}); }
  } forget{docker, image};

  CommandOutput out =
      home.Run({"exec", "--backend", "docker", "--image", image, "--", "echo", "pulled"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "pulled\n") << out.err;
  EXPECT_EQ(docker({"image", "inspect", image}).exit_code, 0) << "the image was not pulled";

  // An image the registry does not have is bad input, found before a run.
  const std::string unknown = address + "/sandrun-never-pushed:1";
  const std::string token = "never-pushed-" + RandomHex(8);
  out = home.Run({"exec", "--backend", "docker", "--image", unknown, "--", "echo", token});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, unknown);
  EXPECT_CONTAINS(out.err, "pulling it failed");
  ExpectNoRunMentions(home, token);
}

TEST(E2eDocker, WhatTheEngineWouldRefuseIsBadInputBeforeAnyRunExists) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  PrivateDockerVolume volume(home.dir(), "e2e");
  const std::string token = "bad-input-" + RandomHex(8);
  auto exec = [&](const std::vector<std::string>& flags, const std::string& image = kImage) {
    std::vector<std::string> args{"exec", "--backend", "docker", "--image", image};
    args.insert(args.end(), flags.begin(), flags.end());
    args.insert(args.end(), {"--retries", "2", "--", "echo", token});
    return home.Run(args);
  };
  CommandOutput out = exec({"--cpu", "1000"});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, "cpu 1000");
  EXPECT_CONTAINS(out.err, "CPU(s) of the engine");

  out = exec({"--cpu", "0.001"});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, "0.01");
  EXPECT_EQ(out.err.find("retrying"), std::string::npos) << out.err;

  fs::path config = home.Write("sandrun.json", R"({"backends": {"docker": {"volume": "bad/name"}}})");
  out = exec({});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, "'bad/name' is not a valid volume name");
  fs::remove(config);

  out = exec({}, "Not A Valid Reference");
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, "Not A Valid Reference");
  ExpectNoRunMentions(home, token);
}

// The engine freezes (its dockerd SIGSTOPped, the container running on) while
// a command runs: the timeout still ends sandrun on time, the record says the
// engine stopped answering, and `sandrun cleanup` removes the container once
// the engine answers again. A private engine: the shared one is never frozen.
TEST(E2eDocker, AFrozenEngineCannotHoldATimedOutCommandPastItsDeadline) {
  std::string docker = DockerUnavailableReason();
  if (!docker.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(docker);
  std::string reason = PrivateEngineUnavailableReason();
  if (!reason.empty()) GTEST_SKIP() << reason;
  Home home;
  TempDir engine_dir;  // A short path: the socket's must fit in sockaddr_un.
  PrivateEngine engine(engine_dir.path() / "e");
  ASSERT_TRUE(engine.started()) << engine.error();
  struct ThawAtEnd {
    PrivateEngine& engine;
    ~ThawAtEnd() { engine.Thaw(); }  // Before the engine is stopped.
  } thaw_at_end{engine};
  std::map<std::string, std::string> env = home.Env();
  env["DOCKER_HOST"] = engine.host();
  const std::string task = "frozen-" + RandomHex(8);
  const int timeout_s = 5;
  Background sandrun({SANDRUN_BINARY, "exec", "--backend", "docker", "--image", kImage,
                      "--timeout", std::to_string(timeout_s), "--name", task, "--", "sh", "-c",
                      "echo started; sleep 300"},
                     env, home.work());
  ASSERT_TRUE(sandrun.started());
  ASSERT_TRUE(WaitFor([&] { return sandrun.Out().find("started") != std::string::npos; },
                      std::chrono::seconds(60)))
      << sandrun.Err();
  const auto frozen_at = Clock::now();
  ASSERT_TRUE(engine.Freeze());

  // Without deadlines on every call this took minutes (245 s seen).
  auto code = sandrun.Wait(std::chrono::seconds(180));
  const double took = SecondsSince(frozen_at);
  ASSERT_TRUE(code.has_value()) << "sandrun hung on the frozen engine: " << sandrun.Err();
  EXPECT_LT(took, timeout_s + 30) << sandrun.Err();
  EXPECT_EQ(*code, 124) << sandrun.Err();
  EXPECT_CONTAINS(sandrun.Err(), "stopped answering");

  ASSERT_TRUE(engine.Thaw());
  std::map<std::string, std::string> on_engine{{"DOCKER_HOST", engine.host()}};
  CommandOutput cleanup = home.Run({"cleanup", "--backend", "docker"}, {.env = on_engine});
  EXPECT_EQ(cleanup.exit_code, 0) << cleanup.err;
  CommandOutput left = engine.Docker({"ps", "-aq", "--filter", "label=dev.sandrun.task=" + task});
  EXPECT_EQ(left.out, "") << "the frozen task's container outlived `sandrun cleanup`";
}

}  // namespace
}  // namespace sandrun::e2e
