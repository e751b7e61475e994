// The Modal client speaks Modal's protocol as the SDKs do today (issue 12),
// checked against the fake: V2 sandboxes by default and V1 when switched off
// or for GPUs, router readiness and token refresh, tags read with
// SandboxTagsGet, one lookup in flight per key at -j 64, and the small
// things (GPU names, router URL paths, COPY --from=, version headers).
#include <gtest/gtest.h>

#include <chrono>
#include <regex>
#include <thread>

#include "modal_client.h"
#include "modal_credentials.h"
#include "modal_images.h"
#include "modal_sandbox.h"
#include "modal_test_env.h"
#include "sandrun/archive_store.h"
#include "single_flight.h"
#include "support/test_util.h"

namespace sandrun::modal {
namespace {

using ::sandrun::modal::testing::FakeModalEnv;
using ::sandrun::testing::TempDir;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

SandboxSpec Spec() {
  SandboxSpec spec;
  spec.labels = {{"run", "r1"}, {"task", "t1"}};
  spec.lifetime = std::chrono::seconds(600);
  return spec;
}

ExecRequest Shell(const std::string& script) {
  ExecRequest request;
  request.argv = {"/bin/sh", "-c", script};
  return request;
}

constexpr const char* kSection = R"({"default_image": "sandrun-test/host"})";

// The fake as it always is: as strict as Modal (an https:// router, no tags
// in SandboxList).
fake::FakeOptions StrictRouterAndTags() { return fake::FakeOptions(); }

std::unique_ptr<Backend> MakeBackend(FakeModalEnv& env, const std::string& section = kSection,
                                     const std::map<std::string, std::string>& extra_env = {}) {
  auto backend = env.MakeBackend(section, extra_env);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

// Creates a sandbox, runs `echo hi` in it and checks the output.
std::unique_ptr<Sandbox> CreateAndEcho(Backend& backend, SandboxSpec spec = Spec()) {
  auto created = backend.Create(spec);
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  if (!created.ok()) return nullptr;
  auto result = (*created)->Exec(Shell("echo hi"));
  EXPECT_TRUE(result.ok()) << result.status().ToString();
  if (result.ok()) {
    EXPECT_EQ(result->stdout_stream.text, "hi\n");
  }
  return std::move(created).value();
}

// ---- Sandbox V2 and its switches ----

TEST(ModalProtocolTest, SandboxesAreV2ByDefaultWithNoV1CallAndNoTaskIdRoundTrip) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env);
  ASSERT_NE(backend, nullptr);
  auto sandbox = CreateAndEcho(*backend);
  ASSERT_NE(sandbox, nullptr);
  EXPECT_FALSE(IsV1SandboxId(sandbox->Id())) << sandbox->Id();
  ASSERT_TRUE(sandbox->Terminate().ok());
  auto calls = env.server().Stats().calls;
  EXPECT_EQ(calls["SandboxCreateV2"], 1);
  EXPECT_EQ(calls["SandboxTerminateV2"], 1);
  // The create answer carried the task id and router access.
  EXPECT_EQ(calls["SandboxGetTaskIdV2"], 0);
  EXPECT_EQ(calls["SandboxGetCommandRouterAccess"], 0);
  for (const char* v1 : {"SandboxCreate", "SandboxGetTaskId", "TaskGetCommandRouterAccess",
                         "SandboxTerminate", "SandboxWait"}) {
    EXPECT_EQ(calls[v1], 0) << v1;
  }
}

TEST(ModalProtocolTest, ModalSandboxV2OffMakesV1Sandboxes) {
  for (const char* off : {"0", "false", "FALSE"}) {
    FakeModalEnv env(StrictRouterAndTags());
    ASSERT_TRUE(env.started());
    auto backend = MakeBackend(env, kSection, {{"MODAL_SANDBOX_V2", off}});
    ASSERT_NE(backend, nullptr);
    auto sandbox = CreateAndEcho(*backend);
    ASSERT_NE(sandbox, nullptr);
    EXPECT_TRUE(IsV1SandboxId(sandbox->Id())) << sandbox->Id();
    ASSERT_TRUE(sandbox->Terminate().ok());
    auto calls = env.server().Stats().calls;
    EXPECT_EQ(calls["SandboxCreate"], 1) << off;
    EXPECT_EQ(calls["TaskGetCommandRouterAccess"], 1) << off;
    EXPECT_EQ(calls["SandboxTerminate"], 1) << off;
    EXPECT_EQ(calls["SandboxCreateV2"], 0) << off;
    EXPECT_EQ(calls["SandboxTerminateV2"], 0) << off;
  }
}

TEST(ModalProtocolTest, ProfileSandboxV2FalseMakesV1Sandboxes) {
  TempDir dir;
  auto config = dir.Write("modal.toml", "[default]\nsandbox_v2 = false\n");
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env, kSection, {{"MODAL_CONFIG_PATH", config.string()}});
  ASSERT_NE(backend, nullptr);
  auto sandbox = CreateAndEcho(*backend);
  ASSERT_NE(sandbox, nullptr);
  EXPECT_EQ(env.server().Stats().calls["SandboxCreate"], 1);
  EXPECT_EQ(env.server().Stats().calls["SandboxCreateV2"], 0);
}

TEST(ModalProtocolTest, SandboxV2FlagsAreReadAsTheJsSdkReadsThem) {
  TempDir dir;
  auto on = dir.Write("on.toml", "[default]\nsandbox_v2 = \"yes\"\n");
  auto off = dir.Write("off.toml", "[default]\nsandbox_v2 = false\n");
  std::map<std::string, std::string> env = {{"MODAL_TOKEN_ID", "ak-1"},
                                            {"MODAL_TOKEN_SECRET", "as-1"},
                                            {"HOME", dir.path().string()}};
  EXPECT_TRUE(LoadModalCredentials(env)->sandbox_v2) << "the default is V2";
  env["MODAL_CONFIG_PATH"] = on.string();
  EXPECT_TRUE(LoadModalCredentials(env)->sandbox_v2);
  env["MODAL_CONFIG_PATH"] = off.string();
  EXPECT_FALSE(LoadModalCredentials(env)->sandbox_v2);
  env["MODAL_SANDBOX_V2"] = "1";
  EXPECT_TRUE(LoadModalCredentials(env)->sandbox_v2) << "the variable overrides the profile";
  env["MODAL_SANDBOX_V2"] = "False";
  EXPECT_FALSE(LoadModalCredentials(env)->sandbox_v2);
  env["MODAL_CONFIG_PATH"] = on.string();
  env["MODAL_SANDBOX_V2"] = "";
  EXPECT_TRUE(LoadModalCredentials(env)->sandbox_v2) << "an empty variable is ignored";
}

TEST(ModalProtocolTest, GpuSandboxesAreV1WithUpperCaseGpuType) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env);
  ASSERT_NE(backend, nullptr);
  SandboxSpec spec = Spec();
  spec.gpu = "a10g:2";
  auto created = backend->Create(spec);
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_TRUE(IsV1SandboxId((*created)->Id())) << (*created)->Id();
  EXPECT_EQ(env.server().SandboxDefinition((*created)->Id()).gpu_type, "A10G");
  EXPECT_EQ(env.server().SandboxDefinition((*created)->Id()).gpu_count, 2);
  EXPECT_EQ(env.server().Stats().calls["SandboxCreate"], 1);
  EXPECT_EQ(env.server().Stats().calls["SandboxCreateV2"], 0);
}

TEST(ModalProtocolTest, V2SandboxRefreshesRouterAccessWithTheV2Call) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env);
  ASSERT_NE(backend, nullptr);
  auto sandbox = CreateAndEcho(*backend);
  ASSERT_NE(sandbox, nullptr);
  env.server().FailNext("TaskExecStart", 1, 16);  // UNAUTHENTICATED
  auto result = sandbox->Exec(Shell("echo again"));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  auto calls = env.server().Stats().calls;
  EXPECT_EQ(calls["SandboxGetCommandRouterAccess"], 1);
  EXPECT_EQ(calls["TaskGetCommandRouterAccess"], 0);
  EXPECT_EQ(calls["SandboxGetTaskId"], 0);
}

// V1 sandboxes (GPU runs, MODAL_SANDBOX_V2=0) keep their own paths: the
// task id polled while the sandbox is scheduled, router access refreshed
// with the V1 call, a sandbox that dies ending the exec as retryable.
TEST(ModalProtocolTest, V1SandboxesPollForSchedulingRefreshWithTheV1CallAndEndCleanly) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env, kSection, {{"MODAL_SANDBOX_V2", "0"}});
  ASSERT_NE(backend, nullptr);
  env.server().SetCreationDelay(milliseconds(800));
  const auto start = Clock::now();
  auto sandbox = CreateAndEcho(*backend);
  ASSERT_NE(sandbox, nullptr);
  EXPECT_TRUE(IsV1SandboxId(sandbox->Id())) << sandbox->Id();
  EXPECT_GE(Clock::now() - start, milliseconds(800));
  EXPECT_GE(env.server().Stats().calls["SandboxGetTaskId"], 2) << "scheduling was not polled";
  env.server().SetCreationDelay(milliseconds(0));

  const int access_before = env.server().Stats().calls["TaskGetCommandRouterAccess"];
  env.server().FailNext("TaskExecStart", 1, 16);  // UNAUTHENTICATED
  auto again = sandbox->Exec(Shell("echo again"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->stdout_stream.text, "again\n");
  auto calls = env.server().Stats().calls;
  EXPECT_EQ(calls["TaskGetCommandRouterAccess"], access_before + 1);
  EXPECT_EQ(calls["SandboxGetCommandRouterAccess"], 0);

  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(500));
    env.server().KillSandbox(sandbox->Id());
  });
  auto died = sandbox->Exec(Shell("echo started; sleep 60"));
  killer.join();
  ASSERT_FALSE(died.ok());
  EXPECT_EQ(died.status().code(), StatusCode::kUnavailable) << died.status().ToString();
  EXPECT_NE(died.status().message().find("ended"), std::string::npos) << died.status().ToString();
  EXPECT_EQ(env.server().Stats().calls["SandboxWaitV2"], 0) << "a V1 sandbox took a V2 call";
}

// ---- the command router: readiness and token refresh ----

TEST(ModalProtocolTest, FirstRouterCallWaitsForAWorkerThatIsStillStarting) {
  fake::FakeOptions options = StrictRouterAndTags();
  // Longer than 10 router retries take (~4.3 s of backoff).
  options.router_ready_delay = milliseconds(6000);
  FakeModalEnv env(options);
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env);
  ASSERT_NE(backend, nullptr);
  const auto start = Clock::now();
  auto sandbox = CreateAndEcho(*backend);
  ASSERT_NE(sandbox, nullptr);
  EXPECT_GE(Clock::now() - start, milliseconds(6000));
}

TEST(ModalProtocolTest, RouterReadinessWindowIsConfigurable) {
  fake::FakeOptions options = StrictRouterAndTags();
  options.router_ready_delay = milliseconds(60000);
  FakeModalEnv env(options);
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(
      env, R"({"default_image": "sandrun-test/host", "router_ready_timeout_s": 1})");
  ASSERT_NE(backend, nullptr);
  auto created = backend->Create(Spec());
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  const auto start = Clock::now();
  auto result = (*created)->Exec(Shell("echo never"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), StatusCode::kUnavailable) << result.status().ToString();
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(30));
}

// A stdout/stderr stream and an exec wait that meet UNAUTHENTICATED fetch a
// fresh router token and go on (before issue 12 only starts did).
TEST(ModalProtocolTest, UnauthenticatedStreamsAndWaitsRefreshTheRouterToken) {
  for (const char* rpc : {"TaskExecStdioRead", "TaskExecWait"}) {
    FakeModalEnv env(StrictRouterAndTags());
    ASSERT_TRUE(env.started());
    auto backend = MakeBackend(env);
    ASSERT_NE(backend, nullptr);
    auto sandbox = CreateAndEcho(*backend);
    ASSERT_NE(sandbox, nullptr);
    env.server().FailNext(rpc, 1, 16);  // UNAUTHENTICATED
    auto result = sandbox->Exec(Shell("echo again; exit 3"));
    ASSERT_TRUE(result.ok()) << rpc << ": " << result.status().ToString();
    EXPECT_EQ(result->stdout_stream.text, "again\n") << rpc;
    EXPECT_EQ(result->exit_code, 3) << rpc;
    // One fresh token: the fake revokes a router token when it issues
    // another, and the calls still under way with the old one then take the
    // new one rather than fetch another each.
    EXPECT_EQ(env.server().Stats().calls["SandboxGetCommandRouterAccess"], 1) << rpc;
  }
}

// ---- tags ----

TEST(ModalProtocolTest, LeftoversOfBothGenerationsAreFoundByTheirTags) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto v2_backend = MakeBackend(env);
  auto v1_backend = MakeBackend(env, kSection, {{"MODAL_SANDBOX_V2", "0"}});
  ASSERT_NE(v2_backend, nullptr);
  ASSERT_NE(v1_backend, nullptr);
  auto v2 = v2_backend->Create(Spec());
  auto v1 = v1_backend->Create(Spec());
  ASSERT_TRUE(v2.ok() && v1.ok());
  const std::string foreign = env.server().AddForeignSandbox("sandrun", {{"owner", "someone"}});

  auto leftovers = v2_backend->ListLeftovers();
  ASSERT_TRUE(leftovers.ok()) << leftovers.status().ToString();
  std::set<std::string> ids;
  for (const auto& leftover : *leftovers) {
    ids.insert(leftover.id);
    EXPECT_EQ(leftover.labels.at("run"), "r1") << leftover.id;
  }
  EXPECT_EQ(ids, (std::set<std::string>{(*v1)->Id(), (*v2)->Id()}));
  // SandboxListV2 lists both generations, as Modal's does: each sandbox is
  // one leftover, or `cleanup` would remove a V1 one twice and fail.
  EXPECT_EQ(leftovers->size(), 2u);
  EXPECT_EQ(ids.count(foreign), 0u);
  auto calls = env.server().Stats().calls;
  EXPECT_GE(calls["SandboxTagsGet"], 1);
  EXPECT_GE(calls["SandboxTagsGetV2"], 1);
  EXPECT_GE(calls["SandboxListV2"], 1);

  ASSERT_TRUE(v2_backend->RemoveLeftover((*v2)->Id()).ok());
  EXPECT_FALSE(env.server().SandboxRunning((*v2)->Id()));
  EXPECT_TRUE(env.server().SandboxRunning((*v1)->Id()));
  // What `sandrun cleanup` does: remove every leftover listed, each once.
  auto rest = v2_backend->ListLeftovers();
  ASSERT_TRUE(rest.ok()) << rest.status().ToString();
  ASSERT_EQ(rest->size(), 1u);
  for (const auto& leftover : *rest) {
    Status removed = v2_backend->RemoveLeftover(leftover.id);
    EXPECT_TRUE(removed.ok()) << removed.ToString();
  }
  EXPECT_FALSE(env.server().SandboxRunning((*v1)->Id()));
}

// ---- one lookup in flight per key ----

TEST(ModalProtocolTest, ConcurrentFirstSandboxesShareEveryLookup) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  env.server().SetLatency(milliseconds(20));  // lookups overlap
  auto backend = MakeBackend(
      env, R"({"default_image": "sandrun-test/host", "secrets": ["shared-secret"]})");
  ASSERT_NE(backend, nullptr);
  constexpr int kSandboxes = 64;
  std::vector<std::unique_ptr<Sandbox>> sandboxes(kSandboxes);
  std::vector<std::thread> threads;
  for (int i = 0; i < kSandboxes; ++i) {
    threads.emplace_back([&, i] {
      auto created = backend->Create(Spec());
      if (created.ok()) sandboxes[i] = std::move(created).value();
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& sandbox : sandboxes) ASSERT_NE(sandbox, nullptr);
  std::vector<std::thread> openers;
  for (int i = 0; i < 8; ++i) {
    openers.emplace_back([&] { EXPECT_TRUE(backend->OpenArchive().ok()); });
  }
  for (auto& opener : openers) opener.join();
  auto calls = env.server().Stats().calls;
  EXPECT_EQ(calls["ImageGetOrCreate"], 1);
  EXPECT_EQ(calls["EnvironmentGetOrCreate"], 1);
  EXPECT_EQ(calls["SecretGetOrCreate"], 1);
  EXPECT_EQ(calls["AuthTokenGet"], 1);
  EXPECT_EQ(calls["VolumeGetOrCreate"], 1);
  EXPECT_EQ(calls["SandboxCreateV2"], kSandboxes);
}

TEST(ModalProtocolTest, ConcurrentCallersShareOneAuthTokenFetch) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  env.server().SetLatency(milliseconds(50));
  auto credentials = LoadModalCredentials(env.Env());
  ASSERT_TRUE(credentials.ok()) << credentials.status().ToString();
  ControlPlane control(*credentials);
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&] { EXPECT_TRUE(control.AuthToken().ok()); });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(env.server().Stats().calls["AuthTokenGet"], 1);
}

TEST(ModalProtocolTest, SingleFlightSharesOneCallAndForgetsFailures) {
  SingleFlight<int> flight;
  std::atomic<int> fetches{0};
  auto slow = [&]() -> Result<int> {
    ++fetches;
    std::this_thread::sleep_for(milliseconds(100));
    return 7;
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] { EXPECT_EQ(*flight.Get("k", slow), 7); });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(fetches.load(), 1);
  auto failing = [&]() -> Result<int> { return UnavailableError("down"); };
  EXPECT_FALSE(flight.Get("other", failing).ok());
  EXPECT_EQ(*flight.Get("other", [] { return Result<int>(3); }), 3) << "a failure is not kept";
  flight.Forget("k");
  EXPECT_EQ(*flight.Get("k", [] { return Result<int>(8); }), 8);
}

// ---- the small things ----

TEST(ModalProtocolTest, ControlPlaneHeadersTakeTheGoSdkForm) {
  FakeModalEnv env(StrictRouterAndTags());
  ASSERT_TRUE(env.started());
  auto backend = MakeBackend(env);
  ASSERT_NE(backend, nullptr);
  ASSERT_TRUE(backend->CheckAvailable().ok());
  auto headers = env.server().Stats().client_headers;
  EXPECT_EQ(headers["x-modal-client-type"], "9") << "CLIENT_TYPE_LIBMODAL_GO";
  EXPECT_EQ(headers["x-modal-client-version"], "1.0.0");
  EXPECT_TRUE(std::regex_match(headers["x-modal-libmodal-version"],
                               std::regex(R"(modal-go/\d+\.\d+\.\d+)")))
      << headers["x-modal-libmodal-version"];
}

TEST(ModalProtocolTest, UrlsMayHaveAPathAndLoopbackIsRecognised) {
  bool tls = false;
  EXPECT_EQ(*GrpcTarget("https://worker-1.modal.host/some/path", &tls), "worker-1.modal.host:443");
  EXPECT_TRUE(tls);
  EXPECT_EQ(*GrpcTarget("http://127.0.0.1:8080/", &tls), "127.0.0.1:8080");
  EXPECT_FALSE(tls);
  EXPECT_FALSE(GrpcTarget("https:///path", &tls).ok());
  EXPECT_TRUE(IsLoopbackUrl("http://127.0.0.1:1234"));
  EXPECT_TRUE(IsLoopbackUrl("https://localhost/x"));
  EXPECT_TRUE(IsLoopbackUrl("http://[::1]:99"));
  EXPECT_FALSE(IsLoopbackUrl("https://api.modal.com:443"));
}

TEST(ModalProtocolTest, SandboxIdShapeRoutesV1AndV2) {
  EXPECT_TRUE(IsV1SandboxId("sb-abcdefghijABCDEFGHIJ12"));
  EXPECT_FALSE(IsV1SandboxId("sb-abcdefghijABCDEFGHIJ123"));
  EXPECT_FALSE(IsV1SandboxId("sb-abcdefghij-BCDEFGHIJ12"));
  EXPECT_FALSE(IsV1SandboxId("sbx-abcdefghijABCDEFGHIJ12"));
}

TEST(ModalProtocolTest, DockerfileCopyFromIsKeptOtherCopyAndAddRefused) {
  TempDir dir;
  auto ok = dir.Write("ok/Dockerfile",
                      "FROM debian AS build\nRUN make\nFROM debian\ncopy --from=build /out /out\n");
  auto commands = DockerfileCommands(ok.string());
  ASSERT_TRUE(commands.ok()) << commands.status().ToString();
  EXPECT_EQ(commands->back(), "copy --from=build /out /out");
  for (const char* line : {"COPY . /src", "COPY --chown=1 a b", "ADD x.tar /"}) {
    auto bad = dir.Write("bad/Dockerfile", std::string("FROM debian\n") + line + "\n");
    auto refused = DockerfileCommands(bad.string());
    ASSERT_FALSE(refused.ok()) << line;
    EXPECT_EQ(refused.status().code(), StatusCode::kUnimplemented) << line;
  }
}

}  // namespace
}  // namespace sandrun::modal
