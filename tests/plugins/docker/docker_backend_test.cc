// The Docker backend against a real engine: exec, stdin, timeouts that kill
// the process tree inside the container, OOM, labels, network isolation,
// files, cleanup and faults.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "plugin_tar.h"
#include "docker_test_env.h"
#include "sandrun/result.h"
#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun::docker {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A listening TCP socket on 127.0.0.1 (the only address tests may use);
// returns the descriptor (-1 on failure) and sets *port.
int ListenOnLoopback(int* port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 4) != 0 || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

class DockerBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = CreateDockerBackend(testing::TestOptions());
    SANDRUN_REQUIRE_DOCKER(*backend_);
    client_ = testing::TestClient();
    ASSERT_TRUE(testing::ImageExists(*client_, testing::kBusybox))
        << "image " << testing::kBusybox << " missing: run scripts/docker-test-env";
  }

  std::unique_ptr<Sandbox> MakeSandbox(SandboxSpec spec = {}) {
    if (spec.image.empty()) spec.image = testing::kBusybox;
    spec.labels.emplace("run", "test-run");
    spec.labels.emplace("task", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    auto sandbox = backend_->Create(spec);
    EXPECT_TRUE(sandbox.ok()) << sandbox.status().ToString();
    return sandbox.ok() ? std::move(sandbox).value() : nullptr;
  }

  ExecResult Run(Sandbox& sandbox, std::vector<std::string> argv, ExecRequest request = {}) {
    request.argv = std::move(argv);
    auto result = sandbox.Exec(request);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? std::move(result).value() : ExecResult{};
  }

  json Inspect(const std::string& id) {
    auto res = client_->Request("GET", "/containers/" + id + "/json");
    if (!res.ok() || res->status != 200) return json();
    return json::parse(res->body);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<DockerClient> client_;
};

TEST(DockerAvailabilityTest, UnreachableDaemonNamesDockerHost) {
  auto options = ParseDockerOptions("{}", {{"DOCKER_HOST", "unix:///nonexistent.sock"}});
  ASSERT_TRUE(options.ok());
  auto backend = CreateDockerBackend(options.value());
  Status available = backend->CheckAvailable();
  EXPECT_EQ(available.code(), StatusCode::kUnavailable) << available.ToString();
  EXPECT_NE(available.message().find("DOCKER_HOST=unix:///nonexistent.sock"), std::string::npos)
      << available.message();
  EXPECT_EQ(available.message().find('\n'), std::string::npos) << available.message();
  auto created = backend->Create(testing::ImageSpec("x"));
  ASSERT_FALSE(created.ok());
  EXPECT_TRUE(created.status().retryable()) << created.status().ToString();
}

TEST(DockerOptionsTest, SectionAndEnvironment) {
  auto o = ParseDockerOptions(R"({"host": "tcp://127.0.0.1:2375", "volume": "vol"})", {});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->host, "tcp://127.0.0.1:2375");
  EXPECT_EQ(o->volume, "vol");
  o = ParseDockerOptions(R"({"host": "tcp://127.0.0.1:2375"})", {{"DOCKER_HOST", "unix:///x"}});
  EXPECT_EQ(o->host, "unix:///x");
  EXPECT_FALSE(ParseDockerOptions(R"({"hots": "x"})", {}).ok());
  EXPECT_FALSE(ParseDockerOptions("{}", {{"DOCKER_HOST", "ssh://me@there"}}).ok());
  auto host = ParseDockerHost("tcp://[::1]:2376");
  ASSERT_TRUE(host.ok());
  EXPECT_EQ(host->tcp_host, "::1");
  EXPECT_EQ(host->tcp_port, "2376");
}

TEST(DockerOptionsTest, ExeCacheKeepDaysAndTheToolImage) {
  auto o = ParseDockerOptions("{}", {});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->exe_cache_keep_days, 7);
  EXPECT_EQ(ToolImage(*o), "busybox");
  o = ParseDockerOptions(R"({"exe_cache_keep_days": 0, "default_image": "debian"})", {});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->exe_cache_keep_days, 0);
  EXPECT_EQ(ToolImage(*o), "debian");
  o->tool_image = "mine";
  EXPECT_EQ(ToolImage(*o), "mine");
  o = ParseDockerOptions(R"({"exe_cache_keep_days": -1})", {});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("exe_cache_keep_days"), std::string::npos);
  // A value of the wrong type names its key.
  o = ParseDockerOptions(R"({"exe_cache_keep_days": "seven"})", {});
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(o.status().message().find("'exe_cache_keep_days'"), std::string::npos)
      << o.status().message();
}

TEST(DockerOptionsTest, BadVolumeNamesAndMountsAreRefusedWhenParsed) {
  for (const char* section :
       {R"({"volume": "bad/name"})", R"({"volume": "x"})", R"({"exe_cache_volume": "-x"})",
        R"({"mounts": ["not a volume:/data"]})", R"({"mounts": ["vol:relative"]})",
        R"({"mounts": ["nocolon"]})"}) {
    auto o = ParseDockerOptions(section, {});
    ASSERT_FALSE(o.ok()) << section;
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument) << section;
  }
  auto bad = ParseDockerOptions(R"({"volume": "bad/name"})", {});
  EXPECT_NE(bad.status().message().find("'bad/name' is not a valid volume name"),
            std::string::npos)
      << bad.status().message();
  EXPECT_TRUE(ParseDockerOptions(R"({"volume": "ok_1.x-y", "mounts": ["/host:/in:ro", "v1:/v"]})",
                                 {})
                  .ok());
}

TEST_F(DockerBackendTest, ValidateSpecRefusesWhatTheEngineCannotGive) {
  SandboxSpec spec = testing::ImageSpec(testing::kBusybox);
  EXPECT_TRUE(backend_->ValidateSpec(spec).ok());
  spec.cpu = 0.5;
  EXPECT_TRUE(backend_->ValidateSpec(spec).ok());
  spec.cpu = 1000;
  Status too_many = backend_->ValidateSpec(spec);
  EXPECT_EQ(too_many.code(), StatusCode::kInvalidArgument) << too_many.ToString();
  EXPECT_NE(too_many.message().find("cpu 1000"), std::string::npos) << too_many.message();
  spec.cpu = 0.001;
  Status too_few = backend_->ValidateSpec(spec);
  EXPECT_EQ(too_few.code(), StatusCode::kInvalidArgument) << too_few.ToString();
  EXPECT_FALSE(too_few.retryable());
  spec.cpu = 0;
  spec.memory_mb = 1;
  EXPECT_EQ(backend_->ValidateSpec(spec).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(backend_->ValidateSpec(SandboxSpec{}).code(), StatusCode::kInvalidArgument)
      << "no image at all";
  spec = testing::ImageSpec("Not A Valid Reference");
  Status malformed = backend_->ValidateSpec(spec);
  EXPECT_EQ(malformed.code(), StatusCode::kInvalidArgument) << malformed.ToString();
  EXPECT_NE(malformed.message().find("Not A Valid Reference"), std::string::npos);
}

TEST_F(DockerBackendTest, SuggestedParallelismFollowsTheEnginesCpus) {
  auto info = client_->Request("GET", "/info");
  ASSERT_TRUE(info.ok() && info->status == 200);
  int cpus = json::parse(info->body).value("NCPU", 0);
  ASSERT_GT(cpus, 0);
  EXPECT_EQ(backend_->GetCapabilities().max_parallel, std::clamp(4 * cpus, 4, 64));
  DockerOptions fixed = testing::TestOptions();
  fixed.max_parallel = 3;  // A configured value wins.
  EXPECT_EQ(CreateDockerBackend(fixed)->GetCapabilities().max_parallel, 3);
}

TEST_F(DockerBackendTest, NoImageIsInvalidArgument) {
  auto created = backend_->Create(SandboxSpec{});
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(created.status().message().find("--image"), std::string::npos);
}

TEST_F(DockerBackendTest, MissingImageNamesItAndIsFailedPrecondition) {
  auto created = backend_->Create(testing::ImageSpec("sandrun-test/does-not-exist:1"));
  ASSERT_FALSE(created.ok());
  EXPECT_EQ(created.status().code(), StatusCode::kFailedPrecondition) << created.status().ToString();
  EXPECT_NE(created.status().message().find("sandrun-test/does-not-exist:1"), std::string::npos);
}

TEST_F(DockerBackendTest, ExecOutputsExitCodesStdinEnvCwd) {
  SandboxSpec spec;
  spec.env["FROM_SPEC"] = "spec";
  auto sandbox = MakeSandbox(spec);
  ASSERT_TRUE(sandbox);
  ExecResult r = Run(*sandbox, {"sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.outcome, Outcome::kExited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.stdout_stream.text, "out\n");
  EXPECT_EQ(r.stderr_stream.text, "err\n");

  ExecRequest with_stdin;
  with_stdin.stdin_data = std::string("line one\nline two\n");
  r = Run(*sandbox, {"wc", "-l"}, with_stdin);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.stdout_stream.text.find('2'), std::string::npos) << r.stdout_stream.text;

  ExecRequest with_env;
  with_env.env["FROM_REQUEST"] = "request";
  with_env.cwd = "sub";
  // The cwd does not exist yet: it is created, as the local backend does.
  r = Run(*sandbox, {"sh", "-c", "echo $FROM_SPEC $FROM_REQUEST; pwd"}, with_env);
  EXPECT_EQ(r.stdout_stream.text, "spec request\n/sandrun/work/sub\n");

  r = Run(*sandbox, {"no-such-command-xyz"});
  EXPECT_EQ(r.outcome, Outcome::kExited);
  EXPECT_EQ(r.exit_code, 127);
  r = Run(*sandbox, {"/etc/passwd"});
  EXPECT_EQ(r.exit_code, 126);

  r = Run(*sandbox, {"sh", "-c", "kill -SEGV $$"});
  EXPECT_EQ(r.outcome, Outcome::kSignaled);
  EXPECT_EQ(r.signal, SIGSEGV);
}

TEST_F(DockerBackendTest, LargeBinaryOutputIsCappedAndSpilled) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  sandrun::testing::TempDir spill;
  ExecRequest request;
  request.output_cap_bytes = 1000;
  request.spill_dir = spill.path().string();
  std::size_t live_bytes = 0;
  request.on_output = [&](StreamKind kind, std::string_view chunk) {
    if (kind == StreamKind::kStdout) live_bytes += chunk.size();
  };
  ExecResult r = Run(*sandbox, {"head", "-c", "5000000", "/dev/urandom"}, request);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_stream.total_bytes, 5000000u);
  EXPECT_TRUE(r.stdout_stream.truncated);
  EXPECT_EQ(live_bytes, 5000000u);
  EXPECT_EQ(fs::file_size(spill.path() / "stdout.log"), 5000000u);
}

TEST_F(DockerBackendTest, LabelsLimitsAndNoNetwork) {
  SandboxSpec spec;
  spec.memory_mb = 64;
  spec.cpu = 0.5;
  spec.lifetime = 120s;
  spec.labels["team"] = "infra";
  auto sandbox = MakeSandbox(spec);
  ASSERT_TRUE(sandbox);
  json c = Inspect(sandbox->Id());
  ASSERT_TRUE(c.is_object());
  auto labels = c["Config"]["Labels"];
  EXPECT_EQ(labels["dev.sandrun.managed"], "1");
  EXPECT_EQ(labels["dev.sandrun.run"], "test-run");
  EXPECT_EQ(labels["dev.sandrun.task"], "LabelsLimitsAndNoNetwork");
  EXPECT_EQ(labels["dev.sandrun.owner-pid"], std::to_string(::getpid()));
  EXPECT_EQ(labels["dev.sandrun.label.team"], "infra");
  long long expires = std::stoll(labels["dev.sandrun.expires"].get<std::string>());
  long long now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_NEAR(expires, now + 120, 30);
  EXPECT_EQ(c["HostConfig"]["NetworkMode"], "none");
  EXPECT_EQ(c["HostConfig"]["Privileged"], false);
  EXPECT_EQ(c["HostConfig"]["Memory"], 64 * 1024 * 1024);
  EXPECT_EQ(c["HostConfig"]["NanoCpus"], 500000000);
  EXPECT_EQ(c["HostConfig"]["PidsLimit"], 4096);
  EXPECT_EQ(c["Config"]["Cmd"], json::array({"120"}));
  EXPECT_TRUE(c["HostConfig"]["Binds"].is_null() || c["HostConfig"]["Binds"].empty());
  // Only the exe cache, read-only; never the result archive's volume.
  ASSERT_EQ(c["Mounts"].size(), 1u);
  std::map<std::string, json> mounts;
  for (const auto& m : c["Mounts"]) mounts[m["Destination"].get<std::string>()] = m;
  EXPECT_EQ(mounts.count("/sandrun/results"), 0u) << "a sandbox must not see the archive";
  EXPECT_EQ(mounts["/sandrun/exe"]["Type"], "volume");
  EXPECT_EQ(mounts["/sandrun/exe"]["RW"], false) << "a sandbox must not alter the shared cache";

  // A listener on the host's loopback: with network none the container has its
  // own loopback, so it must not reach it.
  int port_number = 0;
  int listener = ListenOnLoopback(&port_number);
  ASSERT_GE(listener, 0);
  std::string port = std::to_string(port_number);
  ExecResult r = Run(*sandbox, {"sh", "-c", "ls /sys/class/net; echo hi | nc -w 2 127.0.0.1 " + port});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.stdout_stream.text, "lo\n");
  pollfd pfd{listener, POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 200), 0) << "the container reached the host's loopback";
  ::close(listener);
  EXPECT_TRUE(r.network_isolated);
}

TEST_F(DockerBackendTest, OpenNetworkUsesHostNetworkOnLoopback) {
  int port = 0;
  int listener = ListenOnLoopback(&port);
  ASSERT_GE(listener, 0);
  SandboxSpec spec;
  spec.network = NetworkMode::kOpen;
  auto sandbox = MakeSandbox(spec);
  ASSERT_TRUE(sandbox);
  std::thread accept_one([&] {
    pollfd pfd{listener, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) == 1) {
      int c = ::accept(listener, nullptr, nullptr);
      ::write(c, "pong\n", 5);
      ::close(c);
    }
  });
  ExecResult r = Run(*sandbox, {"sh", "-c", "nc -w 5 127.0.0.1 " +
                                                std::to_string(port) + " </dev/null"});
  accept_one.join();
  ::close(listener);
  EXPECT_EQ(r.stdout_stream.text, "pong\n");
}

TEST_F(DockerBackendTest, TimeoutKillsTheWholeTreeInsideTheContainer) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  ExecRequest request;
  request.timeout = 1500ms;
  auto start = std::chrono::steady_clock::now();
  // A grandchild that ignores nothing but would outlive its parent, plus one
  // that sits in a subshell.
  ExecResult r = Run(*sandbox,
                     {"sh", "-c", "sleep 311 & (sleep 312; echo never) & echo started; wait"},
                     request);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(r.outcome, Outcome::kTimedOut);
  EXPECT_EQ(ExitCodeOf(r), kExitTimedOut);
  EXPECT_EQ(r.stdout_stream.text, "started\n");
  EXPECT_LT(took, 10s);
  ExecResult ps = Run(*sandbox, {"ps", "-o", "pid,args"});
  EXPECT_EQ(ps.stdout_stream.text.find("sleep 31"), std::string::npos) << ps.stdout_stream.text;

  // A command that ignores SIGTERM is killed after the grace period.
  r = Run(*sandbox, {"sh", "-c", "trap '' TERM; sleep 313 & wait; wait"}, request);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut);
  ps = Run(*sandbox, {"ps", "-o", "pid,args"});
  EXPECT_EQ(ps.stdout_stream.text.find("sleep 313"), std::string::npos) << ps.stdout_stream.text;
}

TEST_F(DockerBackendTest, OomKillIsReportedAsOom) {
  SandboxSpec spec;
  spec.memory_mb = 32;
  auto sandbox = MakeSandbox(spec);
  ASSERT_TRUE(sandbox);
  // The shell keeps 200 MB in a variable, far over the 32 MiB limit.
  ExecResult r = Run(*sandbox, {"sh", "-c", "a=$(head -c 200000000 /dev/zero | tr '\\0' x); echo ${#a}"});
  EXPECT_EQ(r.outcome, Outcome::kOomKilled) << OutcomeName(r.outcome) << " exit " << r.exit_code
                                            << " " << r.stderr_stream.text;
  // The sandbox survives and a plain SIGKILL is not mistaken for OOM.
  r = Run(*sandbox, {"sh", "-c", "kill -KILL $$"});
  EXPECT_EQ(r.outcome, Outcome::kSignaled);
  EXPECT_EQ(r.signal, SIGKILL);
}

// Whichever the user met first decides: a process OOM-killed before the
// timeout makes it an OOM, an OOM kill during the timeout's grace does not.
TEST_F(DockerBackendTest, FirstCauseWinsBetweenOomAndTimeout) {
  SandboxSpec spec;
  spec.memory_mb = 32;
  auto sandbox = MakeSandbox(spec);
  ASSERT_TRUE(sandbox);
  const std::string hog = "a=$(head -c 200000000 /dev/zero | tr '\\0' x)";
  ExecRequest request;
  request.timeout = 3s;
  // A child runs out of memory at once; the shell lives on until the timeout.
  // The kernel sometimes kills again before the child's memory is freed, and
  // takes the shell too (seen in CI: the outcome was right, but nothing
  // lived on to meet the timeout): then the case is tried again.
  ExecResult r;
  for (int attempt = 0; attempt < 3; ++attempt) {
    r = Run(*sandbox, {"sh", "-c", "(" + hog + "); echo survived; sleep 600"}, request);
    EXPECT_EQ(r.outcome, Outcome::kOomKilled) << OutcomeName(r.outcome) << " exit " << r.exit_code;
    EXPECT_EQ(ExitCodeOf(r), 128 + SIGKILL);
    if (!r.stdout_stream.text.empty()) break;
  }
  EXPECT_EQ(r.stdout_stream.text, "survived\n") << "the shell never outlived its child's OOM";

  // The timeout comes first; TERM is ignored, and the memory is taken only
  // during the grace before KILL.
  request.timeout = 1s;
  r = Run(*sandbox, {"sh", "-c", "trap '' TERM; sleep 1.5; (" + hog + "); sleep 600"}, request);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut) << OutcomeName(r.outcome) << " exit " << r.exit_code;
  EXPECT_EQ(ExitCodeOf(r), kExitTimedOut);
}

TEST_F(DockerBackendTest, TerminateFromAnotherThreadCancelsPromptly) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  std::string id = sandbox->Id();
  std::thread killer([&] {
    std::this_thread::sleep_for(1s);
    EXPECT_TRUE(sandbox->Terminate().ok());
  });
  auto start = std::chrono::steady_clock::now();
  ExecResult r = Run(*sandbox, {"sh", "-c", "echo begun; sleep 300"});
  auto took = std::chrono::steady_clock::now() - start;
  killer.join();
  EXPECT_EQ(r.outcome, Outcome::kCancelled);
  EXPECT_EQ(r.stdout_stream.text, "begun\n");
  EXPECT_LT(took, 8s);
  EXPECT_TRUE(Inspect(id).is_null()) << "container still exists";
  EXPECT_TRUE(sandbox->Terminate().ok());  // Idempotent.
}

TEST_F(DockerBackendTest, ContainerRemovedFromOutsideIsRetryableInfraError) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  std::string id = sandbox->Id();
  std::thread remover([&] {
    std::this_thread::sleep_for(1s);
    auto res = client_->Request("DELETE", "/containers/" + id + "?force=1");
    (void)res;
  });
  ExecRequest request;
  request.argv = {"sh", "-c", "sleep 300"};
  auto r = sandbox->Exec(request);
  remover.join();
  ASSERT_FALSE(r.ok()) << "outcome " << OutcomeName(r->outcome);
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_TRUE(r.status().retryable());
  auto again = sandbox->Exec(request);
  ASSERT_FALSE(again.ok());
  EXPECT_TRUE(again.status().retryable());
}

TEST_F(DockerBackendTest, PutAndGetFilesAndDirectories) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  sandrun::testing::TempDir host;
  host.Write("tree/a.txt", "alpha");
  host.Write("tree/sub/b.bin", std::string("\0\1\2", 3));
  host.Write("single.txt", "single");
  ASSERT_TRUE(sandbox->Put({(host.path() / "tree").string(), "", false}).ok());
  ASSERT_TRUE(sandbox->Put({(host.path() / "single.txt").string(), "deep/dir/renamed.txt", false}).ok());
  // Absolute destinations are refused, even inside a container (docs/security.md).
  EXPECT_EQ(sandbox->Put({(host.path() / "single.txt").string(), "/opt/abs.txt", false}).code(),
            StatusCode::kInvalidArgument);
  Status missing = sandbox->Put({(host.path() / "nope").string(), "", false});
  EXPECT_EQ(missing.code(), StatusCode::kNotFound);

  ExecResult r = Run(*sandbox, {"sh", "-c", "cat tree/a.txt deep/dir/renamed.txt; ls /opt/abs.txt"});
  EXPECT_EQ(r.stdout_stream.text, "alphasingle");

  Run(*sandbox, {"sh", "-c", "mkdir -p out/x && echo result > out/x/r.txt && ln -s x/r.txt out/link"});
  sandrun::testing::TempDir dest;
  auto got = sandbox->Get("out", dest.path());
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(sandrun::testing::ReadFile(dest.path() / "out/x/r.txt"), "result\n");
  EXPECT_EQ(sandrun::testing::ReadFile(dest.path() / "out/link"), "result\n");
  std::sort(got->begin(), got->end());
  EXPECT_EQ(*got, (std::vector<std::string>{"out/link", "out/x/r.txt"}));
  auto none = sandbox->Get("does/not/exist", dest.path());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
}

TEST_F(DockerBackendTest, GetRefusesSymlinkOutOfTheTarget) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  Run(*sandbox, {"sh", "-c", "mkdir evil && ln -s /etc/passwd evil/pw && ln -s ../../x evil/up"});
  sandrun::testing::TempDir dest;
  auto got = sandbox->Get("evil", dest.path());
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied);
  EXPECT_NE(got.status().message().find("evil/"), std::string::npos) << got.status().message();
}

TEST_F(DockerBackendTest, CleanupTouchesOnlyLabelledLeftovers) {
  // Other tests' sandboxes and leftovers share the engine (ctest -j): this
  // test removes only what carries its own marker.
  const std::string marker = RandomHex(12);
  // An unrelated container (no sandrun labels) that must survive.
  json unrelated = {{"Image", testing::kBusybox},
                    {"Cmd", json::array({"sleep", "300"})},
                    {"HostConfig", {{"NetworkMode", "none"}}}};
  auto res = client_->Request("POST", "/containers/create?name=unrelated-" + RandomHex(8),
                              unrelated.dump());
  ASSERT_TRUE(res.ok() && res->status == 201) << (res.ok() ? res->body : res.status().ToString());
  std::string unrelated_id = json::parse(res->body)["Id"];
  struct RemoveAtEnd {
    DockerClient* client;
    std::vector<std::string> ids;
    ~RemoveAtEnd() {
      for (const auto& id : ids) (void)client->Request("DELETE", "/containers/" + id + "?force=1");
    }
  } remove_at_end{client_.get(), {unrelated_id}};
  ASSERT_EQ(client_->Request("POST", "/containers/" + unrelated_id + "/start")->status, 204);

  // A leftover of a "dead" sandrun: labelled, owner pid gone, expired.
  json leftover = {{"Image", testing::kBusybox},
                   {"Cmd", json::array({"sleep", "300"})},
                   {"Labels",
                    {{"dev.sandrun.managed", "1"},
                     {"dev.sandrun.run", "old"},
                     {"dev.sandrun.task", "t"},
                     {"dev.sandrun.owner-pid", "999999999"},
                     {"dev.sandrun.owner-host", "some-other-host"},
                     {"dev.sandrun.expires", "1000"},
                     {"dev.sandrun.label.cleanup-test", marker}}},
                   {"HostConfig", {{"NetworkMode", "none"}}}};
  res = client_->Request("POST", "/containers/create", leftover.dump());
  ASSERT_TRUE(res.ok() && res->status == 201);
  std::string leftover_id = json::parse(res->body)["Id"];
  remove_at_end.ids.push_back(leftover_id);

  SandboxSpec live_spec;
  live_spec.labels["cleanup-test"] = marker;
  auto live = MakeSandbox(live_spec);
  ASSERT_TRUE(live);

  auto list = backend_->ListLeftovers();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  bool saw_leftover = false, saw_live = false;
  for (const auto& l : *list) {
    EXPECT_NE(l.id, unrelated_id) << "listed a container without sandrun's label";
    if (l.id == leftover_id) {
      saw_leftover = true;
      EXPECT_FALSE(l.owner_alive);
      EXPECT_TRUE(l.expired);
    }
    if (l.id == live->Id()) {
      saw_live = true;
      EXPECT_TRUE(l.owner_alive);
      EXPECT_FALSE(l.expired);
    }
  }
  EXPECT_TRUE(saw_leftover);
  EXPECT_TRUE(saw_live);
  // What `sandrun cleanup` does, limited to this test's marker: remove those
  // whose owner is gone or whose lifetime has passed.
  int removed = 0;
  for (const auto& l : *list) {
    auto mark = l.labels.find("cleanup-test");
    if (mark == l.labels.end() || mark->second != marker) continue;
    if (!l.owner_alive || l.expired) {
      EXPECT_TRUE(backend_->RemoveLeftover(l.id).ok());
      ++removed;
    }
  }
  EXPECT_EQ(removed, 1) << "only the dead leftover";
  Status refused = backend_->RemoveLeftover(unrelated_id);
  EXPECT_EQ(refused.code(), StatusCode::kPermissionDenied);
  EXPECT_TRUE(Inspect(leftover_id).is_null());
  EXPECT_FALSE(Inspect(unrelated_id).is_null()) << "cleanup removed an unrelated container";
  EXPECT_FALSE(Inspect(live->Id()).is_null());
}

// An image without /bin/sh: commands still run (directly), and a timeout says
// that the process tree could not be killed instead of pretending.
TEST_F(DockerBackendTest, ImageWithoutShellRunsCommandsDirectly) {
  const std::string image = "sandrun-test/no-shell:1";
  if (!testing::ImageExists(*client_, image)) {
    // busybox under the names sleep and echo only: no sh anywhere.
    std::string busybox;
    for (const char* candidate : {"/bin/busybox", "/usr/bin/busybox"}) {
      if (fs::exists(candidate)) busybox = candidate;
    }
    if (busybox.empty()) GTEST_SKIP() << "busybox-static is not installed on the host";
    TarBuilder tar;
    ASSERT_TRUE(tar.AddHostPath(busybox, "bin/busybox").ok());
    for (const char* applet : {"sleep", "echo"}) {
      TarEntry link;
      link.name = std::string("bin/") + applet;
      link.symlink_target = "busybox";
      ASSERT_TRUE(tar.AddEntry(link).ok());
    }
    auto bytes = tar.Finish();
    ASSERT_TRUE(bytes.ok());
    auto res = client_->Request("POST", "/images/create?fromSrc=-&repo=sandrun-test/no-shell&tag=1",
                                *bytes, "application/x-tar");
    ASSERT_TRUE(res.ok() && res->status == 200) << (res.ok() ? res->body : res.status().ToString());
  }
  auto has_note = [](const ExecResult& r, const std::string& part) {
    return std::any_of(r.notes.begin(), r.notes.end(),
                       [&](const std::string& n) { return n.find(part) != std::string::npos; });
  };
  ExecRequest request;
  request.timeout = 500ms;
  {
    // The agent needs no shell: the timed-out command is killed.
    auto sandbox = MakeSandbox(testing::ImageSpec(image));
    ASSERT_TRUE(sandbox);
    ExecResult r = Run(*sandbox, {"/bin/echo", "no", "shell"});
    EXPECT_EQ(r.outcome, Outcome::kExited);
    EXPECT_EQ(r.stdout_stream.text, "no shell\n");
    r = Run(*sandbox, {"/bin/sleep", "30"}, request);
    EXPECT_EQ(r.outcome, Outcome::kTimedOut) << r.stderr_stream.text;
    EXPECT_EQ(r.signal, SIGTERM);
    EXPECT_FALSE(has_note(r, "/bin/sh")) << ::testing::PrintToString(r.notes);
  }
  // Through the engine alone nothing can kill it, and a note says so.
  DockerOptions options = testing::TestOptions();
  options.agent = false;
  backend_ = CreateDockerBackend(options);
  auto sandbox = MakeSandbox(testing::ImageSpec(image));
  ASSERT_TRUE(sandbox);
  ExecResult r = Run(*sandbox, {"/bin/echo", "no", "shell"});
  EXPECT_EQ(r.stdout_stream.text, "no shell\n");
  r = Run(*sandbox, {"/bin/sleep", "30"}, request);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut);
  EXPECT_TRUE(has_note(r, "/bin/sh")) << "a note must say tree-kill is unavailable";
}

std::int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// As with `docker exec` and a local process: a command lasts until its
// output closes, so what it left behind still writing is waited for, and a
// timeout ends it.
TEST_F(DockerBackendTest, ACommandLastsUntilItsOutputCloses) {
  auto sandbox = MakeSandbox();
  ASSERT_TRUE(sandbox);
  ExecResult r = Run(*sandbox, {"sh", "-c", "echo hi; (sleep 1; echo late) & exit 3"});
  EXPECT_EQ(r.outcome, Outcome::kExited);
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.stdout_stream.text, "hi\nlate\n");
  ExecRequest request;
  request.timeout = 1500ms;
  r = Run(*sandbox, {"sh", "-c", "echo hi; sleep 100 & exit 0"}, request);
  EXPECT_EQ(r.outcome, Outcome::kTimedOut);
  EXPECT_EQ(r.stdout_stream.text, "hi\n");
  // Nothing of it is left for the next command.
  r = Run(*sandbox, {"sh", "-c", "ps -o comm | grep -c '^sleep$'"});
  EXPECT_EQ(r.stdout_stream.text, "1\n") << "only the keep-alive sleep";
}

// Docker's events say which execs a container saw: with the agent, one for
// all the commands and files; without it, one per command at least.
TEST_F(DockerBackendTest, TheAgentRunsEverythingThroughOneExec) {
  auto execs_of = [&](const std::string& id, std::int64_t since) {
    json filters = {{"container", {id}}, {"event", {"exec_create"}}};
    auto res = client_->Request("GET", "/events?since=" + std::to_string(since) + "&until=" +
                                           std::to_string(UnixNow() + 1) +
                                           "&filters=" + UrlEncode(filters.dump()));
    EXPECT_TRUE(res.ok() && res->status == 200) << (res.ok() ? res->body : res.status().ToString());
    int count = 0;
    if (!res.ok()) return count;
    std::istringstream lines(res->body);
    for (std::string line; std::getline(lines, line);) count += line.empty() ? 0 : 1;
    return count;
  };
  sandrun::testing::TempDir host;
  fs::path file = host.Write("in.txt", "payload");
  for (bool agent : {true, false}) {
    DockerOptions options = testing::TestOptions();
    options.agent = agent;
    backend_ = CreateDockerBackend(options);
    const std::int64_t since = UnixNow() - 1;
    auto sandbox = MakeSandbox();
    ASSERT_TRUE(sandbox);
    ASSERT_TRUE(sandbox->Put(FileUpload{file.string(), "dir/in.txt"}).ok());
    for (int i = 0; i < 5; ++i) {
      ExecResult r = Run(*sandbox, {"cat", "dir/in.txt"});
      EXPECT_EQ(r.stdout_stream.text, "payload");
    }
    auto got = sandbox->Get("dir", host.path() / ("out-" + std::to_string(agent)));
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(sandrun::testing::ReadFile(host.path() / ("out-" + std::to_string(agent)) / "dir" / "in.txt"),
              "payload");
    const int execs = execs_of(sandbox->Id(), since);
    if (agent) {
      EXPECT_EQ(execs, 1) << "with the agent";
    } else {
      EXPECT_GE(execs, 5) << "without the agent";
    }
  }
}

}  // namespace
}  // namespace sandrun::docker
