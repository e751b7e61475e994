// Local-backend specifics the generic conformance suite cannot see: the
// host environment, the manifest, process groups checked on the host, and
// leftovers.
#include "local_backend.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "local_process.h"
#include "sandrun/archive_store.h"
#include "sandrun/registry.h"
#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;
using ::sandrun::testing::ReadFile;
using ::sandrun::testing::TempDir;

Config ConfigIn(const TempDir& state, const TempDir& archive) {
  Config config;
  config.state_dir = state.path();
  config.archive_dir = archive.path();
  return config;
}

class LocalBackendTest : public ::testing::Test {
 protected:

  std::unique_ptr<Sandbox> Create(SandboxSpec spec = {}) {
    auto sandbox = backend_.Create(spec);
    EXPECT_TRUE(sandbox.ok()) << sandbox.status().ToString();
    return sandbox.ok() ? std::move(sandbox).value() : nullptr;
  }

  fs::path WorkDir(const Sandbox& sandbox) const {
    return backend_.sandboxes_dir() / sandbox.Id() / "work";
  }

  static ExecResult Sh(Sandbox& sandbox, const std::string& script, ExecRequest request = {}) {
    request.argv = {"/bin/sh", "-c", script};
    auto result = sandbox.Exec(request);
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    return result.ok() ? std::move(result).value() : ExecResult{};
  }

  TempDir state_;
  TempDir archive_;
  Config config_ = ConfigIn(state_, archive_);
  LocalBackend backend_{config_, ProcessEnvironment()};
};

// True while `pid` is a live (non-zombie) process.
bool Running(pid_t pid) {
  std::string stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  auto paren = stat.rfind(')');
  return paren != std::string::npos && stat.size() > paren + 2 && stat[paren + 2] != 'Z';
}

// Live processes on the host whose command line contains `token`. Commands
// run in a PID namespace of their own, so pids they print mean nothing here;
// a token in a shell script's text names them from the host.
std::vector<pid_t> HostProcessesWith(const std::string& token) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    if (pid == getpid()) continue;
    if (ReadFile(entry.path() / "cmdline").find(token) != std::string::npos && Running(pid)) {
      found.push_back(pid);
    }
  }
  return found;
}

bool EventuallyNoneWith(const std::string& token) {
  for (int i = 0; i < 100 && !HostProcessesWith(token).empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return HostProcessesWith(token).empty();
}

// A unix socket listener at `path`, made by the test in its own directory.
class UnixListener {
 public:
  explicit UnixListener(fs::path path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path_;
    EXPECT_EQ(listen(fd_, 16), 0);
  }
  UnixListener(UnixListener&& other) noexcept : fd_(other.fd_), path_(std::move(other.path_)) {
    other.fd_ = -1;
  }
  ~UnixListener() {
    if (fd_ >= 0) close(fd_);
  }
  const fs::path& path() const { return path_; }

 private:
  int fd_ = -1;
  fs::path path_;
};

TEST(LocalRegistrationTest, RegistersLocalWithADescription) {
  BackendRegistry registry;
  RegisterLocalBackend(registry);
  ASSERT_TRUE(registry.Has("local"));
  auto infos = registry.List();
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_FALSE(infos[0].description.empty());
  TempDir tmp;
  std::string old_tmpdir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "";
  setenv("TMPDIR", tmp.path().c_str(), 1);
  Config config;  // no dirs at all: falls back to $TMPDIR
  auto backend = registry.Create("local", config);
  if (old_tmpdir.empty()) {
    unsetenv("TMPDIR");
  } else {
    setenv("TMPDIR", old_tmpdir.c_str(), 1);
  }
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ((*backend)->Name(), "local");
  Status available = (*backend)->CheckAvailable();
  EXPECT_TRUE(available.ok()) << available.ToString();
  EXPECT_TRUE(fs::is_directory(tmp.path() / ("sandrun-state-" + std::to_string(getuid())) /
                               "sandboxes" / "local"));
}

TEST_F(LocalBackendTest, CapabilitiesFollowTheProbe) {
  Capabilities caps = backend_.GetCapabilities();
  EXPECT_EQ(caps.isolates_network, backend_.Isolation().isolates_network);
  if (!caps.isolates_network) {
    EXPECT_FALSE(backend_.Isolation().network_reason.empty());
  }
  EXPECT_FALSE(caps.supports_images);
  EXPECT_FALSE(caps.limits_memory);
  EXPECT_GT(caps.max_parallel, 0);
}

TEST_F(LocalBackendTest, HostEnvironmentDoesNotLeakIn) {
  ASSERT_EQ(setenv("SANDRUN_LOCAL_TEST_SECRET", "hunter2", 1), 0);
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  ExecResult result =
      Sh(*sandbox, "echo ${SANDRUN_LOCAL_TEST_SECRET-unset}; echo $HOME; echo $TMPDIR; echo $PATH");
  unsetenv("SANDRUN_LOCAL_TEST_SECRET");
  fs::path root = backend_.sandboxes_dir() / sandbox->Id();
  std::string expected = "unset\n" + (root / "home").string() + "\n" + (root / "tmp").string() +
                         "\n" + (std::getenv("PATH") ? std::getenv("PATH") : "") + "\n";
  EXPECT_EQ(result.stdout_stream.text, expected);
}

// The host variables commands inherit come from the backend's context (what
// the entry point handed the registry), not from this process's environment.
TEST_F(LocalBackendTest, InheritedVariablesComeFromTheContext) {
  BackendRegistry registry;
  RegisterLocalBackend(registry);
  auto backend = registry.Create("local", config_,
                                 {{"LANG", "sandrun-context-lang"}, {"TOKEN", "kept-out"}});
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  const char* old_lang = std::getenv("LANG");
  std::string saved = old_lang ? old_lang : "";
  ASSERT_EQ(setenv("LANG", "sandrun-process-lang", 1), 0);
  auto sandbox = (*backend)->Create({});
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
  ExecResult result = Sh(**sandbox, "echo $LANG; echo ${TOKEN-unset}; echo $PATH");
  if (old_lang) setenv("LANG", saved.c_str(), 1);
  else unsetenv("LANG");
  EXPECT_EQ(result.stdout_stream.text, "sandrun-context-lang\nunset\n/usr/local/bin:/usr/bin:/bin\n");
}

TEST_F(LocalBackendTest, WritesAManifestWithRunningGroups) {
  SandboxSpec spec;
  spec.labels = {{"run", "r1"}, {"task", "t1"}};
  auto sandbox = Create(spec);
  ASSERT_NE(sandbox, nullptr);
  fs::path manifest_path = backend_.sandboxes_dir() / sandbox->Id() / "sandbox.json";
  auto manifest = nlohmann::json::parse(ReadFile(manifest_path));
  EXPECT_EQ(manifest["owner_pid"].get<int>(), getpid());
  EXPECT_EQ(manifest["owner_start_time"].get<std::uint64_t>(), local::ProcessStartTime(getpid()));
  EXPECT_EQ(manifest["labels"]["run"], "r1");
  EXPECT_TRUE(manifest["process_groups"].empty());

  nlohmann::json during;
  ExecRequest request;
  request.on_output = [&](StreamKind, std::string_view) {
    if (during.is_null()) during = nlohmann::json::parse(ReadFile(manifest_path));
  };
  ExecResult result = Sh(*sandbox, "echo running; sleep 0.2", request);
  ASSERT_EQ(result.exit_code, 0);
  ASSERT_EQ(during["process_groups"].size(), 1u) << during.dump();
  EXPECT_GT(during["process_groups"][0]["pgid"].get<int>(), 0);
  EXPECT_TRUE(nlohmann::json::parse(ReadFile(manifest_path))["process_groups"].empty());
}

TEST_F(LocalBackendTest, TimeoutKillsGrandchildrenOnTheHost) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  const std::string token = "sandrun-bg-" + RandomHex(8);
  ExecRequest request;
  request.timeout = std::chrono::milliseconds(500);
  ExecResult result = Sh(*sandbox, "sh -c 'sleep 600; : " + token + "' & wait", request);
  EXPECT_EQ(result.outcome, Outcome::kTimedOut);
  EXPECT_EQ(result.ended_by, kEndedByTimeout);
  EXPECT_EQ(result.signal, SIGTERM);
  EXPECT_TRUE(EventuallyNoneWith(token)) << "a grandchild survived";
}

TEST_F(LocalBackendTest, TimeoutKillsADaemonThatCalledSetsid) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  const std::string token = "sandrun-daemon-" + RandomHex(8);
  ExecRequest request;
  request.timeout = std::chrono::seconds(1);
  ExecResult result = Sh(*sandbox,
                         "setsid sh -c 'sleep 300 & echo $! > pidfile; wait; : " + token +
                             "' </dev/null >/dev/null 2>&1 & sleep 600",
                         request);
  EXPECT_EQ(result.outcome, Outcome::kTimedOut);
  EXPECT_EQ(result.ended_by, kEndedByTimeout);
  EXPECT_TRUE(fs::exists(WorkDir(*sandbox) / "pidfile")) << "the daemon never started";
  EXPECT_TRUE(EventuallyNoneWith(token)) << "the setsid'd daemon survived the timeout";
}

TEST_F(LocalBackendTest, BackgroundProcessHoldingThePipeDoesNotHangExec) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  const std::string token = "sandrun-bg-" + RandomHex(8);
  auto start = std::chrono::steady_clock::now();
  ExecResult result = Sh(*sandbox, "sh -c 'sleep 600; : " + token + "' & echo done");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  EXPECT_EQ(result.outcome, Outcome::kExited);
  EXPECT_EQ(result.stdout_stream.text, "done\n");
  EXPECT_TRUE(EventuallyNoneWith(token)) << "a left-behind process still runs";
}

TEST_F(LocalBackendTest, LifetimeShorterThanTheCommandIsATimeout) {
  SandboxSpec spec;
  spec.lifetime = std::chrono::seconds(1);
  auto sandbox = Create(spec);
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = Sh(*sandbox, "sleep 60");  // no timeout of its own
  EXPECT_EQ(result.outcome, Outcome::kTimedOut);
  EXPECT_EQ(ExitCodeOf(result), kExitTimedOut);
  EXPECT_EQ(result.ended_by, kEndedByLifetime);
  bool noted = false;
  for (const auto& note : result.notes) {
    noted = noted || note.find("sandbox lifetime (1 s) ended") != std::string::npos;
  }
  EXPECT_TRUE(noted) << "no note says the lifetime ended it";
}

TEST_F(LocalBackendTest, TerminateAfterTheTimeoutStaysATimeout) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.timeout = std::chrono::milliseconds(200);
  request.argv = {"/bin/sh", "-c", "trap '' TERM; echo started; sleep 30"};
  Result<ExecResult> result = InternalError("not run");
  std::thread runner([&] { result = sandbox->Exec(request); });
  // The timeout's SIGTERM is ignored, so the command lives through the 2 s
  // grace; Terminate() lands in the middle of it.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  EXPECT_TRUE(sandbox->Terminate().ok());
  runner.join();
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->outcome, Outcome::kTimedOut) << "the timeout came first";
  EXPECT_EQ(result->ended_by, kEndedByTimeout);
}

TEST_F(LocalBackendTest, NetworkNoneHidesHostUnixSockets) {
  // A socket in the test's own temp dir under /tmp and one under /run.
  TempDir tmp_dir;
  char run_template[] = "/run/sandrun-local-test-XXXXXX";
  ASSERT_NE(mkdtemp(run_template), nullptr);
  const fs::path run_dir = run_template;
  struct RemoveRunDir {
    fs::path dir;
    ~RemoveRunDir() { fs::remove_all(dir); }
  } remove_run_dir{run_dir};
  std::vector<UnixListener> listeners;
  listeners.emplace_back(tmp_dir.path() / "test.sock");
  listeners.emplace_back(run_dir / "test.sock");

  for (NetworkMode mode : {NetworkMode::kNone, NetworkMode::kOpen}) {
    SandboxSpec spec;
    spec.network = mode;
    auto sandbox = Create(spec);
    ASSERT_NE(sandbox, nullptr);
    ASSERT_TRUE(sandbox->Put(FileUpload{SANDRUN_CONFORMANCE_HELPER, "helper"}).ok());
    for (const auto& listener : listeners) {
      ExecRequest request;
      request.argv = {"./helper", "connect-unix", listener.path().string()};
      auto result = sandbox->Exec(request);
      ASSERT_TRUE(result.ok()) << result.status().ToString();
      if (mode == NetworkMode::kOpen) {
        EXPECT_EQ(result->stdout_stream.text, "connected\n") << listener.path();
      } else if (backend_.Isolation().isolates_network) {
        EXPECT_TRUE(result->network_isolated);
        EXPECT_NE(result->exit_code, 0) << "reached " << listener.path();
      } else {
        EXPECT_FALSE(result->network_isolated) << "claims isolation it cannot provide";
      }
    }
    // The sandbox's own directories stay usable behind the hiding.
    ExecResult own = Sh(*sandbox, "echo a > $HOME/h && echo b > $TMPDIR/t && cat $HOME/h $TMPDIR/t");
    EXPECT_EQ(own.stdout_stream.text, "a\nb\n");
  }
}
TEST_F(LocalBackendTest, StdinIgnoredByTheCommandIsNotFatal) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  ExecRequest request;
  request.stdin_data = std::string(8 << 20, 'x');  // far more than a pipe holds
  ExecResult result = Sh(*sandbox, "exit 3", request);
  EXPECT_EQ(result.exit_code, 3);  // and no SIGPIPE killed this test
}

fs::path* atexit_marker = nullptr;
pid_t atexit_owner = 0;

// Touches the marker when run in any process but the test itself.
void TouchMarkerInForeignProcess() {
  if (atexit_marker != nullptr && getpid() != atexit_owner) std::ofstream(*atexit_marker) << "ran";
}

TEST_F(LocalBackendTest, FailedExecRunsNoAtexitHandlersInTheChild) {
  TempDir dir;
  static fs::path marker;
  marker = dir.path() / "atexit-ran";
  atexit_marker = &marker;
  atexit_owner = getpid();
  static bool registered = std::atexit(TouchMarkerInForeignProcess) == 0;
  ASSERT_TRUE(registered);
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  // Executable bit, but no format the kernel knows: execve fails with ENOEXEC.
  fs::path garbage = WorkDir(*sandbox) / "garbage";
  std::ofstream(garbage) << std::string(64, '\x01');
  fs::permissions(garbage, fs::perms::owner_all);
  ExecRequest request;
  request.argv = {"./garbage"};
  auto result = sandbox->Exec(request);
  atexit_marker = nullptr;
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  EXPECT_EQ(result->exit_code, kExitNotExecutable);
  EXPECT_NE(result->stderr_stream.text.find("sandrun: ./garbage: "), std::string::npos);
  EXPECT_FALSE(fs::exists(marker)) << "the failed child ran the parent's atexit handlers";
}

TEST_F(LocalBackendTest, SpillsBothStreams) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  TempDir spill;
  ExecRequest request;
  request.spill_dir = (spill.path() / "nested").string();
  request.output_cap_bytes = 4;
  ExecResult result = Sh(*sandbox, "echo 0123456789; echo abcdefgh >&2", request);
  EXPECT_EQ(ReadFile(spill.path() / "nested/stdout.log"), "0123456789\n");
  EXPECT_EQ(ReadFile(spill.path() / "nested/stderr.log"), "abcdefgh\n");
  EXPECT_EQ(result.stdout_stream.spill_path, (spill.path() / "nested/stdout.log").string());
  EXPECT_TRUE(result.stdout_stream.truncated);
}

TEST_F(LocalBackendTest, TerminateRemovesTheSandboxAndRefusesMore) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  fs::path root = backend_.sandboxes_dir() / sandbox->Id();
  ASSERT_TRUE(fs::exists(root));
  EXPECT_TRUE(sandbox->Terminate().ok());
  EXPECT_FALSE(fs::exists(root));
  EXPECT_TRUE(sandbox->Terminate().ok());
  ExecRequest request;
  request.argv = {"/bin/true"};
  auto result = sandbox->Exec(request);
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->outcome, Outcome::kCancelled);
  EXPECT_EQ(sandbox->Put(FileUpload{"/etc/hostname", ""}).code(),
            StatusCode::kFailedPrecondition);
}

TEST_F(LocalBackendTest, DestructorRemovesTheSandbox) {
  fs::path root;
  {
    auto sandbox = Create();
    ASSERT_NE(sandbox, nullptr);
    root = backend_.sandboxes_dir() / sandbox->Id();
  }
  EXPECT_FALSE(fs::exists(root));
}

TEST_F(LocalBackendTest, RefusesWhatItCannotIgnoreAndNotesTheRest) {
  SandboxSpec docker;
  docker.dockerfile = "Dockerfile";
  EXPECT_EQ(backend_.Create(docker).status().code(), StatusCode::kUnimplemented);
  SandboxSpec gpu;
  gpu.gpu = "A10G:1";
  auto refused = backend_.Create(gpu);
  EXPECT_EQ(refused.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(refused.status().message().find("A10G"), std::string::npos);

  SandboxSpec spec;
  spec.image = "debian:bookworm";
  spec.memory_mb = 512;
  auto sandbox = Create(spec);
  ASSERT_NE(sandbox, nullptr);
  ExecResult result = Sh(*sandbox, "true");
  std::string notes;
  for (const auto& note : result.notes) notes += note + "\n";
  EXPECT_NE(notes.find("image 'debian:bookworm' ignored"), std::string::npos) << notes;
  EXPECT_NE(notes.find("memory"), std::string::npos) << notes;
}

TEST_F(LocalBackendTest, WorkdirAndCwdResolveInsideTheSandbox) {
  SandboxSpec spec;
  spec.workdir = "project";
  auto sandbox = Create(spec);
  ASSERT_NE(sandbox, nullptr);
  fs::path expected = WorkDir(*sandbox) / "project";
  EXPECT_EQ(Sh(*sandbox, "pwd -P").stdout_stream.text, fs::canonical(expected).string() + "\n");
  TempDir outside;
  ExecRequest absolute;
  absolute.cwd = outside.path().string();
  absolute.argv = {"/bin/true"};
  EXPECT_EQ(sandbox->Exec(absolute).status().code(), StatusCode::kInvalidArgument);
  ExecRequest escaping;
  escaping.cwd = "../../../..";
  escaping.argv = {"/bin/true"};
  EXPECT_EQ(sandbox->Exec(escaping).status().code(), StatusCode::kInvalidArgument);
  SandboxSpec absolute_workdir;
  absolute_workdir.workdir = outside.path().string();
  EXPECT_EQ(backend_.Create(absolute_workdir).status().code(), StatusCode::kInvalidArgument);
  ExecRequest empty;
  EXPECT_EQ(sandbox->Exec(empty).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(LocalBackendTest, GetRefusesEscapes) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  Sh(*sandbox, "ln -s /etc/hostname host-link; mkdir d; ln -s /etc d/etc-link; "
               "printf in > inside.txt; ln -s inside.txt good-link");
  TempDir target;
  for (const std::string path : {"host-link", "d"}) {
    auto got = sandbox->Get(path, target.path());
    EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied) << path;
  }
  for (const std::string path : {"../../../../etc/passwd", "/etc/passwd"}) {
    auto got = sandbox->Get(path, target.path());
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument) << path;
  }
  auto good = sandbox->Get("good-link", target.path());
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(*good, std::vector<std::string>{"good-link"});
  EXPECT_EQ(ReadFile(target.path() / "good-link"), "in");
  EXPECT_FALSE(fs::is_symlink(target.path() / "good-link"));
}

TEST_F(LocalBackendTest, PutRefusesAbsoluteAndClimbingDestinations) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  TempDir host;
  fs::path payload = host.Write("payload.txt", "x");
  fs::path target = host.path() / "escaped.txt";
  for (const std::string& dest : {target.string(), "../../../../../../../../../../../../" +
                                                      target.relative_path().string()}) {
    EXPECT_EQ(sandbox->Put(FileUpload{payload.string(), dest}).code(), StatusCode::kInvalidArgument)
        << dest;
  }
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(LocalBackendTest, PutNeverWritesThroughASymlinkTheTaskPlanted) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  TempDir outside;
  TempDir host;
  fs::path payload = host.Write("payload.txt", "planted");
  Sh(*sandbox, "ln -s '" + outside.path().string() + "' dir-link; ln -s '" +
                   (outside.path() / "victim.txt").string() + "' file-link; mkdir real");
  EXPECT_EQ(sandbox->Put(FileUpload{payload.string(), "dir-link/x.txt"}).code(),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(sandbox->Put(FileUpload{payload.string(), "file-link"}).code(),
            StatusCode::kPermissionDenied);
  EXPECT_TRUE(fs::is_empty(outside.path())) << "an upload went through a planted symlink";
  // A working directory through the planted link is refused too, and not created.
  ExecRequest through;
  through.argv = {"/bin/true"};
  through.cwd = "dir-link/made-by-sandrun";
  EXPECT_FALSE(sandbox->Exec(through).ok());
  EXPECT_TRUE(fs::is_empty(outside.path()));
  // Real directories still take uploads.
  ASSERT_TRUE(sandbox->Put(FileUpload{payload.string(), "real/deeper/p.txt"}).ok());
  EXPECT_EQ(ReadFile(WorkDir(*sandbox) / "real" / "deeper" / "p.txt"), "planted");
}

TEST_F(LocalBackendTest, PutFollowsTheSourceLinkAndKeepsOnlyLinksInsideADirectory) {
  auto sandbox = Create();
  ASSERT_NE(sandbox, nullptr);
  TempDir host;
  fs::path file = host.Write("data/file.txt", "content");
  fs::create_symlink(file, host.path() / "top-link");
  ASSERT_TRUE(sandbox->Put(FileUpload{(host.path() / "top-link").string(), "copied"}).ok());
  EXPECT_FALSE(fs::is_symlink(WorkDir(*sandbox) / "copied"));
  EXPECT_EQ(ReadFile(WorkDir(*sandbox) / "copied"), "content");

  fs::create_symlink("file.txt", host.path() / "data" / "inside-link");
  ASSERT_TRUE(sandbox->Put(FileUpload{(host.path() / "data").string(), "tree"}).ok());
  EXPECT_TRUE(fs::is_symlink(WorkDir(*sandbox) / "tree" / "inside-link"));
  EXPECT_EQ(ReadFile(WorkDir(*sandbox) / "tree" / "inside-link"), "content");

  TempDir secret_dir;
  fs::path secret = secret_dir.Write("secret.txt", "secret");
  fs::create_symlink(secret, host.path() / "data" / "outside-link");
  Status put = sandbox->Put(FileUpload{(host.path() / "data").string(), "tree2"});
  EXPECT_EQ(put.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(put.message().find("outside-link"), std::string::npos) << put.message();
  EXPECT_FALSE(fs::exists(WorkDir(*sandbox) / "tree2")) << "a refused tree was partly copied";
}

// The archive is covered in the command's mount namespace; a command, even
// one run by root, can neither unmount the cover nor go round it through the
// host's /proc (/proc/<pid>/root), with or without network.
TEST_F(LocalBackendTest, CommandsCannotUncoverTheArchive) {
  if (!backend_.Isolation().isolates_network) {
    GTEST_SKIP() << "no mount namespace here: " << backend_.Isolation().network_reason;
  }
  archive_.Write("run-marker/run.json", "{}");
  const std::string archive = fs::canonical(archive_.path()).string();
  const std::string via_proc = "/proc/" + std::to_string(getpid()) + "/root" + archive;
  for (NetworkMode mode : {NetworkMode::kNone, NetworkMode::kOpen}) {
    SandboxSpec spec;
    spec.network = mode;
    auto sandbox = Create(spec);
    ASSERT_NE(sandbox, nullptr);
    ExecResult r = Sh(*sandbox, "umount '" + archive + "' 2>/dev/null; umount /proc 2>/dev/null; "
                                "ls '" + archive + "' '" + via_proc + "' 2>/dev/null; "
                                "echo planted > '" + archive + "/forged' 2>/dev/null; echo done");
    EXPECT_EQ(r.stdout_stream.text.find("run-marker"), std::string::npos)
        << NetworkModeName(mode) << ": " << r.stdout_stream.text;
    EXPECT_NE(r.stdout_stream.text.find("done"), std::string::npos) << r.stderr_stream.text;
    EXPECT_FALSE(fs::exists(archive_.path() / "forged")) << NetworkModeName(mode);
  }
}

// Writes a manifest for a sandbox that no live sandrun owns.
fs::path FakeLeftover(const fs::path& sandboxes_dir, const std::string& id,
                      const nlohmann::json& groups, std::int64_t expires_at_unix) {
  fs::create_directories(sandboxes_dir / id / "work");
  nlohmann::json manifest = {{"id", id},
                             {"owner_pid", 999999999},
                             {"owner_start_time", 1},
                             {"host", HostName()},
                             {"created_at", "2020-01-01T00:00:00.000Z"},
                             {"expires_at", "2020-01-01T01:00:00.000Z"},
                             {"expires_at_unix", expires_at_unix},
                             {"labels", {{"managed-by", "sandrun"}, {"run", "old"}}},
                             {"process_groups", groups}};
  std::ofstream(sandboxes_dir / id / "sandbox.json") << manifest.dump();
  return sandboxes_dir / id;
}

// A `sleep` in its own process group, as a leftover command would be.
pid_t SpawnGroupLeader() {
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    execl("/bin/sleep", "sleep", "600", static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

TEST_F(LocalBackendTest, ListsAndRemovesLeftoversWithoutKillingReusedPids) {
  auto live = Create();
  ASSERT_NE(live, nullptr);
  pid_t matching = SpawnGroupLeader();
  pid_t reused = SpawnGroupLeader();
  std::uint64_t matching_start = 0;
  for (int i = 0; i < 100 && matching_start == 0; ++i) matching_start = local::ProcessStartTime(matching);
  nlohmann::json groups = nlohmann::json::array(
      {{{"pgid", matching}, {"start_time", matching_start}},
       {{"pgid", reused}, {"start_time", 12345}}});  // the pid now names another process
  fs::path dead = FakeLeftover(backend_.sandboxes_dir(), "local-0123456789ab", groups, 1);

  auto listed = backend_.ListLeftovers();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  for (const auto& leftover : *listed) {
    if (leftover.id == live->Id()) {
      EXPECT_TRUE(leftover.owner_alive);
      EXPECT_FALSE(leftover.expired);
    } else {
      EXPECT_EQ(leftover.id, "local-0123456789ab");
      EXPECT_FALSE(leftover.owner_alive) << leftover.description;
      EXPECT_TRUE(leftover.expired);
      EXPECT_EQ(leftover.labels.at("run"), "old");
    }
  }
  EXPECT_TRUE(backend_.RemoveLeftover("local-0123456789ab").ok());
  EXPECT_FALSE(fs::exists(dead));
  int status = 0;
  EXPECT_EQ(waitpid(matching, &status, 0), matching);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "recorded group not killed";
  EXPECT_TRUE(Running(reused)) << "a reused pid was killed";
  kill(reused, SIGKILL);
  waitpid(reused, nullptr, 0);

  EXPECT_EQ(backend_.RemoveLeftover("local-0123456789ab").code(), StatusCode::kNotFound);
  EXPECT_EQ(backend_.RemoveLeftover("../etc").code(), StatusCode::kInvalidArgument);
}

TEST_F(LocalBackendTest, ArchiveIsTheConfiguredDirectory) {
  auto archive = backend_.OpenArchive();
  ASSERT_TRUE(archive.ok()) << archive.status().ToString();
  EXPECT_TRUE((*archive)->OnThisHost());  // Records are delivered at once.
  ASSERT_TRUE((*archive)->PutBytes("run/x.json", "{}").ok());
  EXPECT_EQ(ReadFile(archive_.path() / "run/x.json"), "{}");
}

TEST(LocalProcessTest, StartTimeNamesOneProcess) {
  EXPECT_GT(local::ProcessStartTime(getpid()), 0u);
  EXPECT_EQ(local::ProcessStartTime(0), 0u);
  EXPECT_EQ(local::ProcessStartTime(999999999), 0u);
}

}  // namespace
}  // namespace sandrun
