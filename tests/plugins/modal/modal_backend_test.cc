// The Modal backend against the fake Modal server: the request it sends,
// every injected fault (retried and succeeding, or reported after the
// retries run out, never running a command twice), cleanup that touches only
// sandrun's sandboxes, and no token in any output.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "modal_archive_store.h"
#include "modal_client.h"
#include "modal_test_env.h"
#include "sandrun/archive_store.h"
#include "support/test_util.h"

namespace sandrun::modal {
namespace {

using ::sandrun::modal::testing::FakeModalEnv;
using ::sandrun::testing::TempDir;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

SandboxSpec Spec() {
  SandboxSpec spec;
  spec.labels = {{"managed-by", "sandrun"}, {"run", "r1"}, {"task", "t1"}};
  spec.lifetime = std::chrono::seconds(600);
  return spec;
}

ExecRequest Shell(const std::string& script) {
  ExecRequest request;
  request.argv = {"/bin/sh", "-c", script};
  return request;
}

class ModalBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(env_.started());
    auto backend = env_.MakeBackend();
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    backend_ = std::move(backend).value();
  }
  std::unique_ptr<Sandbox> NewSandbox(SandboxSpec spec = Spec()) {
    auto created = backend_->Create(spec);
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    return created.ok() ? std::move(created).value() : nullptr;
  }
  fake::FakeModalServer& server() { return env_.server(); }

  FakeModalEnv env_;
  std::unique_ptr<Backend> backend_;
};

TEST_F(ModalBackendTest, AvailableWithGoodCredentials) {
  Status available = backend_->CheckAvailable();
  EXPECT_TRUE(available.ok()) << available.ToString();
}

TEST_F(ModalBackendTest, RejectedCredentialsAreNotAvailableAndNeverEchoed) {
  auto bad = env_.MakeBackend("{}", {{"MODAL_TOKEN_SECRET", "as-wrong-secret-value"}});
  ASSERT_TRUE(bad.ok());
  Status available = (*bad)->CheckAvailable();
  EXPECT_EQ(available.code(), StatusCode::kPermissionDenied) << available.ToString();
  EXPECT_NE(available.message().find("UNAUTHENTICATED"), std::string::npos) << available.message();
  EXPECT_EQ(available.message().find("as-wrong-secret-value"), std::string::npos);
  auto created = (*bad)->Create(Spec());
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kPermissionDenied);
  EXPECT_FALSE(created.status().retryable());
}

TEST_F(ModalBackendTest, MissingCredentialsAreNotAvailable) {
  auto options = ParseModalOptions("{}");
  ASSERT_TRUE(options.ok());
  auto backend = CreateModalBackend(*options, {{"HOME", "/nonexistent-sandrun-home"}});
  Status available = backend->CheckAvailable();
  EXPECT_EQ(available.code(), StatusCode::kFailedPrecondition) << available.ToString();
  EXPECT_NE(available.message().find("no credentials"), std::string::npos) << available.message();
}

TEST_F(ModalBackendTest, SandboxIsTaggedAndNetworkBlockedByDefault) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  auto tags = server().SandboxTags(sandbox->Id());
  EXPECT_EQ(tags["managed-by"], "sandrun");
  EXPECT_EQ(tags["run"], "r1");
  EXPECT_EQ(tags["task"], "t1");
  EXPECT_FALSE(tags["owner-pid"].empty());
  EXPECT_EQ(server().SandboxNetworkType(sandbox->Id()), 2) << "BLOCKED";
  SandboxSpec open = Spec();
  open.network = NetworkMode::kOpen;
  auto open_sandbox = NewSandbox(open);
  ASSERT_NE(open_sandbox, nullptr);
  EXPECT_EQ(server().SandboxNetworkType(open_sandbox->Id()), 1) << "OPEN";
}

// The results Volume holds every run's records; a task must not see it.
TEST_F(ModalBackendTest, SandboxesMountNoVolume) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  EXPECT_TRUE(server().SandboxDefinition(sandbox->Id()).volume_mount_paths.empty())
      << "mounted at " << server().SandboxDefinition(sandbox->Id()).volume_mount_paths.front();
}

TEST_F(ModalBackendTest, CidrAllowlistFromSection) {
  auto backend = env_.MakeBackend(R"({"cidr_allowlist": ["192.0.2.0/24"]})");
  ASSERT_TRUE(backend.ok());
  auto sandbox = (*backend)->Create(Spec());
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  EXPECT_EQ(server().SandboxNetworkType((*sandbox)->Id()), 3) << "ALLOWLIST";
}

TEST_F(ModalBackendTest, UnavailableBurstIsRetried) {
  server().FailNext("SandboxCreate", 3);
  server().FailNext("AppGetOrCreate", 2);
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = *sandbox->Exec(Shell("echo hi"));
  EXPECT_EQ(result.stdout_stream.text, "hi\n");
}

TEST_F(ModalBackendTest, UnavailableBeyondRetriesIsARetryableError) {
  server().FailNext("SandboxCreateV2", 4);  // 1 attempt + 3 retries
  auto created = backend_->Create(Spec());
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(created.status().retryable());
  EXPECT_NE(created.status().message().find("4 attempts"), std::string::npos)
      << created.status().message();
  EXPECT_EQ(server().Stats().sandboxes_created, 0);
}

TEST_F(ModalBackendTest, ThrottlingWaitsWithoutUsingRetries) {
  server().ThrottleNext("SandboxCreateV2", 5, 0.15);
  auto start = Clock::now();
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  EXPECT_GE(Clock::now() - start, milliseconds(5 * 150)) << "retry_after must be honoured";
  EXPECT_EQ(server().Stats().calls["SandboxCreateV2"], 6);
}

TEST_F(ModalBackendTest, MaxThrottleWaitZeroDisablesThrottleRetries) {
  auto backend = env_.MakeBackend("{}", {{"MODAL_MAX_THROTTLE_WAIT", "0"}});
  ASSERT_TRUE(backend.ok());
  server().ThrottleNext("SandboxCreateV2", 1, 0.1);
  auto created = (*backend)->Create(Spec());
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kResourceExhausted);
}

TEST_F(ModalBackendTest, LostExecStartResponseDoesNotRunTwice) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  int before = server().Stats().exec_processes_started;
  server().FailAfterNext("TaskExecStart", 2);
  ExecResult result = *sandbox->Exec(Shell("echo once"));
  EXPECT_EQ(result.outcome, Outcome::kExited);
  EXPECT_EQ(result.stdout_stream.text, "once\n");
  EXPECT_EQ(server().Stats().exec_processes_started - before, 1) << "exec id must make it idempotent";
  EXPECT_GE(server().Stats().exec_start_calls, 3);
}

TEST_F(ModalBackendTest, ExecStartFailingBeyondRetriesIsInfraErrorAndRunsNothing) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  // A router that has answered once is up: from then on a call gets its 10
  // retries, not the readiness window of the first call.
  ASSERT_TRUE(sandbox->Exec(Shell("true")).ok());
  int before = server().Stats().exec_processes_started;
  server().FailNext("TaskExecStart", 11);  // 1 + 10 router retries
  auto result = sandbox->Exec(Shell("echo never"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(result.status().retryable()) << "the engine may retry: nothing ran";
  EXPECT_EQ(server().Stats().exec_processes_started, before);
}

TEST_F(ModalBackendTest, StdioStreamCutResumesAtOffset) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  server().CutStdioAfter(100000, 4);
  ExecResult result = *sandbox->Exec(
      Shell("i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done; echo err >&2"));
  ASSERT_EQ(result.outcome, Outcome::kExited) << result.error;
  std::string expected;
  for (int i = 0; i < 20000; ++i) expected += "line-" + std::to_string(i) + "\n";
  EXPECT_EQ(result.stdout_stream.total_bytes, expected.size());
  EXPECT_TRUE(result.stdout_stream.text == expected) << "output lost or duplicated at a cut";
  EXPECT_EQ(result.stderr_stream.text, "err\n");
}

TEST_F(ModalBackendTest, StdioStreamThatKeepsFailingIsARetryableInfraError) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  server().FailNext("TaskExecStdioRead", 100);
  auto result = sandbox->Exec(Shell("echo hi"));
  ASSERT_FALSE(result.ok()) << "lost output is not the test's result: " << OutcomeName(result->outcome);
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status().ToString();
  EXPECT_TRUE(result.status().retryable()) << "the engine retries infrastructure failures";
  EXPECT_NE(result.status().message().find("output stream lost"), std::string::npos)
      << result.status().message();
}

TEST_F(ModalBackendTest, ExpiredAuthTokenIsRefreshed) {
  server().IssueExpiredTokens(1);
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  EXPECT_GE(server().Stats().calls["AuthTokenGet"], 2);
}

TEST_F(ModalBackendTest, SlowCreationIsWaitedFor) {
  server().SetCreationDelay(milliseconds(800));
  auto start = Clock::now();
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  // A V2 create answers at once; the first exec then waits for the worker.
  EXPECT_EQ(sandbox->Exec(Shell("echo ready"))->stdout_stream.text, "ready\n");
  EXPECT_GE(Clock::now() - start, milliseconds(800));
}

TEST_F(ModalBackendTest, SandboxThatDiesEndsExecWithoutHanging) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(500));
    server().KillSandbox(sandbox->Id());
  });
  auto start = Clock::now();
  auto result = sandbox->Exec(Shell("echo started; sleep 60"));
  killer.join();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
  ASSERT_FALSE(result.ok()) << "a dead sandbox is not the test's failure: " << OutcomeName(result->outcome);
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status().ToString();
  EXPECT_TRUE(result.status().retryable());
  EXPECT_NE(result.status().message().find("sandbox " + sandbox->Id()), std::string::npos)
      << result.status().message();
  EXPECT_NE(result.status().message().find("ended"), std::string::npos)
      << result.status().message();
  auto after = sandbox->Exec(Shell("true"));
  EXPECT_FALSE(after.ok()) << "exec in a dead sandbox must fail";
  EXPECT_EQ(after.status().code(), StatusCode::kUnavailable) << after.status().ToString();
  EXPECT_NE(after.status().message().find("has ended (FAILURE)"), std::string::npos)
      << after.status().ToString();
}

TEST_F(ModalBackendTest, AddedLatencyStillWorks) {
  server().SetLatency(milliseconds(50));
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  EXPECT_EQ(sandbox->Exec(Shell("echo slow"))->stdout_stream.text, "slow\n");
}

TEST_F(ModalBackendTest, ExecTimeoutIsEnforcedRemotely) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request = Shell("echo started; sleep 30");
  request.timeout = milliseconds(1000);
  auto start = Clock::now();
  ExecResult result = *sandbox->Exec(request);
  EXPECT_EQ(result.outcome, Outcome::kTimedOut);
  EXPECT_EQ(ExitCodeOf(result), kExitTimedOut);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(result.stdout_stream.text, "started\n");
}

// A server that stops answering while a command runs: how the command
// ended cannot be known (this one would have passed), so it is a retryable
// infrastructure error, not the command's timeout. It is known before the
// engine's own host deadline (timeout + 5 s) would end the sandbox.
TEST_F(ModalBackendTest, AServerThatStopsAnsweringIsAnInfrastructureErrorNotATimeout) {
  // The default timeout_grace_ms (2 s), not this suite's 3 s.
  auto backend = env_.MakeBackend(R"({"default_image": "sandrun-test/host"})");
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  auto created = (*backend)->Create(Spec());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::unique_ptr<Sandbox> sandbox = std::move(created).value();
  struct ThawAtEnd {
    fake::FakeModalServer& server;
    ~ThawAtEnd() { server.Thaw(); }
  } thaw_at_end{server()};
  ExecRequest request = Shell("echo started; sleep 1; echo done");
  request.timeout = milliseconds(3000);
  const int waits_before = server().Stats().calls["TaskExecWait"];
  std::thread freezer([&] {
    // Once the command runs (its wait is asked), not at a guessed time.
    const auto give_up = Clock::now() + std::chrono::seconds(30);
    while (server().Stats().calls["TaskExecWait"] == waits_before && Clock::now() < give_up) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    server().Freeze();
  });
  auto start = Clock::now();
  auto result = sandbox->Exec(request);
  freezer.join();
  const auto took = Clock::now() - start;
  ASSERT_FALSE(result.ok()) << "a frozen server is not the command's "
                            << OutcomeName(result->outcome);
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status().ToString();
  EXPECT_TRUE(result.status().retryable());
  EXPECT_NE(result.status().message().find("stopped answering"), std::string::npos)
      << result.status().message();
  EXPECT_LT(took, request.timeout + milliseconds(5000))
      << "the engine's host deadline would have come first";
}

// The server answers, but the command runs on past its timeout and the
// grace (a remote kill that never came): that is the command's timeout.
TEST_F(ModalBackendTest, ACommandTheRemoteTimeoutMissedIsATimeoutWhileTheServerAnswers) {
  server().IgnoreExecTimeouts();
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request = Shell("echo started; sleep 30");
  request.timeout = milliseconds(1000);
  auto start = Clock::now();
  auto result = sandbox->Exec(request);
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->outcome, Outcome::kTimedOut);
  EXPECT_EQ(ExitCodeOf(*result), kExitTimedOut);
  EXPECT_LT(Clock::now() - start, request.timeout + milliseconds(5000));
  EXPECT_NE(::testing::PrintToString(result->notes).find("did not end the command"),
            std::string::npos)
      << ::testing::PrintToString(result->notes);
  EXPECT_EQ(result->stdout_stream.text, "started\n");
}

TEST_F(ModalBackendTest, CleanupTouchesOnlyTaggedSandboxesOfOurApp) {
  auto ours = NewSandbox();
  ASSERT_NE(ours, nullptr);
  std::string untagged = server().AddForeignSandbox("sandrun", {{"owner", "someone-else"}});
  std::string other_app = server().AddForeignSandbox("other-app", {{"managed-by", "sandrun"}});
  std::string wrong_value = server().AddForeignSandbox("sandrun", {{"managed-by", "not-sandrun"}});
  // More than one page of ours (the fake pages by 3).
  std::vector<std::unique_ptr<Sandbox>> more;
  for (int i = 0; i < 4; ++i) more.push_back(NewSandbox());
  auto listed = backend_->ListLeftovers();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::set<std::string> ids;
  for (const auto& leftover : *listed) ids.insert(leftover.id);
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_TRUE(ids.count(ours->Id()));
  for (const auto& foreign : {untagged, other_app, wrong_value}) {
    EXPECT_FALSE(ids.count(foreign)) << foreign;
    Status removed = backend_->RemoveLeftover(foreign);
    EXPECT_EQ(removed.code(), StatusCode::kNotFound) << removed.ToString();
    EXPECT_TRUE(server().SandboxRunning(foreign)) << "terminated a sandbox sandrun does not own";
  }
  EXPECT_TRUE(backend_->RemoveLeftover(ours->Id()).ok());
  EXPECT_FALSE(server().SandboxRunning(ours->Id()));
}

TEST_F(ModalBackendTest, TerminateEndsTheSandbox) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  std::string id = sandbox->Id();
  EXPECT_TRUE(sandbox->Terminate().ok());
  EXPECT_FALSE(server().SandboxRunning(id));
  auto another = NewSandbox();
  ASSERT_NE(another, nullptr);
  id = another->Id();
  another.reset();
  EXPECT_FALSE(server().SandboxRunning(id)) << "destroying the handle terminates";
}

// What a task in a warm sandbox pays for its files: one exec to put a file
// (its directories and mode included) and one to fetch a file back, so a
// case costs three execs with its command, not six.
TEST_F(ModalBackendTest, AFileGoesInWithOneExecAndComesBackWithOne) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  TempDir dir;
  std::string data = "#!/bin/sh\necho ran\n";
  data += std::string(3, '\0');  // Bytes a text-only path would lose.
  const auto script = dir.path() / "tool.sh";
  {
    std::ofstream(script, std::ios::binary) << data;
  }
  std::filesystem::permissions(script, std::filesystem::perms::owner_all);
  const int before_put = server().Stats().exec_start_calls;
  ASSERT_TRUE(sandbox->Put(FileUpload{script.string(), "a/b/tool.sh", false}).ok());
  EXPECT_EQ(server().Stats().exec_start_calls - before_put, 1);
  auto ran = sandbox->Exec(Shell("./a/b/tool.sh && cp a/b/tool.sh out.bin"));
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->exit_code, 0) << ran->stderr_stream.text;
  EXPECT_EQ(ran->stdout_stream.text, "ran\n") << "the mode came with the file";
  const int before_get = server().Stats().exec_start_calls;
  auto got = sandbox->Get("out.bin", dir.path() / "back");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(server().Stats().exec_start_calls - before_get, 1);
  EXPECT_EQ(*got, std::vector<std::string>{"out.bin"});
  EXPECT_TRUE(::sandrun::testing::ReadFile(dir.path() / "back/out.bin") == data);
  // A missing file is still kNotFound, and leaves nothing behind.
  auto missing = sandbox->Get("nothing.bin", dir.path() / "back");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound) << missing.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "back/nothing.bin"));
}

// All of a task's uploads (a file, an empty output directory, a tree) go in
// as one tar with one exec, and a tree comes back with one.
TEST_F(ModalBackendTest, ATasksFilesGoInTogetherAndATreeComesBackWithOneExec) {
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "empty");
  std::filesystem::create_directories(dir.path() / "tree/sub");
  {
    std::ofstream(dir.path() / "tree/sub/data.bin", std::ios::binary) << std::string("a\0b", 3);
    std::ofstream(dir.path() / "run.sh") << "#!/bin/sh\necho ran \"$@\"\n";
  }
  std::filesystem::permissions(dir.path() / "run.sh", std::filesystem::perms::owner_all);
  const int before_put = server().Stats().exec_start_calls;
  Status put = sandbox->PutAll({{(dir.path() / "run.sh").string(), "t1/bin/run.sh", false},
                                {(dir.path() / "empty").string(), "t1/out", false},
                                {(dir.path() / "tree").string(), "t1/tree", false}});
  ASSERT_TRUE(put.ok()) << put.ToString();
  EXPECT_EQ(server().Stats().exec_start_calls - before_put, 1);
  auto ran = sandbox->Exec(Shell("t1/bin/run.sh ok && test -d t1/out && "
                                 "cp -r t1/tree t1/out/copy && echo x > t1/out/copy/new.txt"));
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->stdout_stream.text, "ran ok\n") << ran->stderr_stream.text;
  const int before_get = server().Stats().exec_start_calls;
  auto got = sandbox->Get("t1/out", dir.path() / "back");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(server().Stats().exec_start_calls - before_get, 1);
  EXPECT_EQ(*got, (std::vector<std::string>{"out/copy/new.txt", "out/copy/sub/data.bin"}));
  EXPECT_EQ(::sandrun::testing::ReadFile(dir.path() / "back/out/copy/sub/data.bin"),
            std::string("a\0b", 3));
  // A failing upload names its source and sends nothing.
  const int before_bad = server().Stats().exec_start_calls;
  Status missing = sandbox->PutAll({{(dir.path() / "run.sh").string(), "t2/run.sh", false},
                                    {(dir.path() / "absent").string(), "t2/absent", false}});
  EXPECT_EQ(missing.code(), StatusCode::kNotFound) << missing.ToString();
  EXPECT_NE(missing.message().find("absent"), std::string::npos) << missing.ToString();
  EXPECT_EQ(server().Stats().exec_start_calls, before_bad) << "a refused upload sent something";
}

// An image without `tar` still gets its files and gives them back, a file at
// a time: an image whose tar was removed (container mode), or a PATH of the
// host's tools without tar (process mode).
TEST_F(ModalBackendTest, AnImageWithoutTarMovesFilesOneAtATime) {
  SandboxSpec spec = Spec();
  TempDir tools;
  if (server().options().containers) {
    // A Debian image whose tar is gone (busybox's shell would still find
    // its own tar applet).
    spec.dockerfile = tools.Write("Dockerfile", "FROM debian:bookworm-slim\nRUN rm /usr/bin/tar\n")
                          .string();
  } else {
    // The host's tools, but no tar, on the sandbox's PATH.
    for (const char* tool : {"mkdir", "cat", "chmod", "dirname", "find", "ln", "cp", "test"}) {
      std::string found = ::sandrun::testing::RunCommand({"/bin/sh", "-c",
                                                          std::string("command -v ") + tool})
                              .out;
      while (!found.empty() && found.back() == '\n') found.pop_back();
      ASSERT_FALSE(found.empty()) << tool;
      std::filesystem::create_symlink(found, tools.path() / tool);
    }
    spec.env["PATH"] = tools.path().string();
  }
  auto sandbox = NewSandbox(spec);
  ASSERT_NE(sandbox, nullptr);
  TempDir dir;
  std::filesystem::create_directories(dir.path() / "empty");
  {
    std::ofstream(dir.path() / "in.txt") << "hello\n";
  }
  Status put = sandbox->PutAll({{(dir.path() / "in.txt").string(), "t1/in.txt", false},
                                {(dir.path() / "empty").string(), "t1/out", false}});
  ASSERT_TRUE(put.ok()) << put.ToString();
  auto ran = sandbox->Exec(Shell("cp t1/in.txt t1/out/copy.txt"));
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->exit_code, 0) << ran->stderr_stream.text;
  auto got = sandbox->Get("t1/out", dir.path() / "back");
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, std::vector<std::string>{"out/copy.txt"});
  EXPECT_EQ(::sandrun::testing::ReadFile(dir.path() / "back/out/copy.txt"), "hello\n");
}

TEST_F(ModalBackendTest, FailedImageBuildKeepsTheLogForTheError) {
  TempDir dir;
  auto dockerfile = dir.Write("Dockerfile", "FROM debian\nRUN sandrun-fake-fail-build\n");
  SandboxSpec spec = Spec();
  spec.dockerfile = dockerfile.string();
  auto created = backend_->Create(spec);
  ASSERT_FALSE(created.ok());
  // The failing step, as the build's own log tells it (the fake's pretend
  // build in process mode, `docker build` in container mode).
  const std::string message = created.status().message();
  auto log = message.find("build log");
  ASSERT_NE(log, std::string::npos) << message;
  EXPECT_NE(message.find("RUN sandrun-fake-fail-build", log), std::string::npos) << message;
}

TEST_F(ModalBackendTest, GpuSpecIsParsed) {
  std::string type;
  int count = 0;
  ASSERT_TRUE(ParseGpuSpec("A10G:2", &type, &count).ok());
  EXPECT_EQ(type, "A10G");
  EXPECT_EQ(count, 2);
  ASSERT_TRUE(ParseGpuSpec("A100-80GB", &type, &count).ok());
  EXPECT_EQ(count, 1);
  EXPECT_FALSE(ParseGpuSpec("A10G:0", &type, &count).ok());
  EXPECT_FALSE(ParseGpuSpec(":1", &type, &count).ok());
}

TEST_F(ModalBackendTest, ArchiveOnTheVolumeRoundTrips) {
  auto store = backend_->OpenArchive();
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_FALSE((*store)->OnThisHost());  // Every write is a request: records go in groups.
  // Over one 8 MiB block, ending in zeros (stripped before hashing).
  std::string big(9 * 1024 * 1024, 'x');
  for (std::size_t i = big.size() - 4096; i < big.size(); ++i) big[i] = '\0';
  ASSERT_TRUE((*store)->PutBytes("run1/tasks/a.json", "{\"a\":1}").ok());
  ASSERT_TRUE((*store)->PutBytes("run1/artifacts/a/big.bin", big).ok());
  auto read = (*store)->ReadBytes("run1/tasks/a.json");
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*read, "{\"a\":1}");
  auto read_big = (*store)->ReadBytes("run1/artifacts/a/big.bin");
  ASSERT_TRUE(read_big.ok()) << read_big.status().ToString();
  EXPECT_TRUE(*read_big == big);
  auto root = (*store)->List("");
  ASSERT_TRUE(root.ok()) << root.status().ToString();
  EXPECT_EQ(*root, std::vector<std::string>{"run1/"});
  auto run = (*store)->List("run1");
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(*run, (std::vector<std::string>{"artifacts/", "tasks/"}));
  TempDir dest;
  ASSERT_TRUE((*store)->Fetch("run1", dest.path()).ok());
  EXPECT_EQ(::sandrun::testing::ReadFile(dest.path() / "run1/tasks/a.json"), "{\"a\":1}");
  EXPECT_EQ((*store)->ReadBytes("run1/missing.json").status().code(), StatusCode::kNotFound);
  EXPECT_TRUE((*store)->Remove("run1").ok());  // more in modal_volume_test.cc
  EXPECT_EQ((*store)->List("run1").status().code(), StatusCode::kNotFound);
}

TEST_F(ModalBackendTest, NoTokenInAnyOutput) {
  const std::string secret = server().options().token_secret;
  std::string everything;
  auto collect = [&](const Status& status) { everything += status.ToString() + "\n"; };
  auto bad = env_.MakeBackend("{}", {{"MODAL_TOKEN_ID", "ak-wrong"}});
  ASSERT_TRUE(bad.ok());
  everything += (*bad)->CheckAvailable().message();
  collect((*bad)->Create(Spec()).status());
  server().FailNext("SandboxCreate", 4);
  collect(backend_->Create(Spec()).status());
  auto sandbox = NewSandbox();
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = *sandbox->Exec(Shell("env; echo done"));
  everything += result.stdout_stream.text + result.stderr_stream.text + result.error;
  for (const auto& note : result.notes) everything += note;
  collect(sandbox->Put(FileUpload{"/nonexistent/file", ""}));
  EXPECT_EQ(everything.find(secret), std::string::npos) << "the token secret leaked";
  EXPECT_EQ(everything.find("MODAL_TOKEN"), std::string::npos) << "credentials reached the sandbox";
}

}  // namespace
}  // namespace sandrun::modal
