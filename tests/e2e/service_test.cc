// `sandrun service` and `sandrun exec --service`, end to end on the local
// backend, as CTest uses them (docs/ctest.md, "The sandrun service"): an
// exec through the service behaves as one without it, in a warm sandbox it
// shares; with no service it runs the task itself and says so; a request
// written by hand that names paths outside its sandbox is refused; a service
// that dies or stops answering is an infrastructure failure (exit 125), never
// a hang or a test verdict; `service stop` ends it.
#include <sys/socket.h>
#include <sys/un.h>

#include "e2e_support.h"

namespace sandrun::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

/// `sandrun service run --socket S` in the background, for one test.
class Service {
 public:
  explicit Service(const Home& home)
      : home_(home), socket_(home.dir() / "s.sock"),
        process_(StartSandrun(home, {"service", "run", "--socket", socket_.string()})) {
    up_ = WaitUntil([&] { return fs::exists(socket_); }, milliseconds(20000));
  }
  bool up() const { return up_; }
  const fs::path& socket() const { return socket_; }
  Background& process() { return *process_; }
  /// `sandrun exec --service S args...`
  CommandOutput Exec(const std::vector<std::string>& args, CommandOptions extra = {}) const {
    std::vector<std::string> all{"exec", "--service", socket_.string()};
    all.insert(all.end(), args.begin(), args.end());
    return home_.Run(all, extra);
  }
  std::unique_ptr<Background> StartExec(const std::vector<std::string>& args) const {
    std::vector<std::string> all{"exec", "--service", socket_.string()};
    all.insert(all.end(), args.begin(), args.end());
    return StartSandrun(home_, all);
  }
  std::string Log() const { return ReadFile(socket_.string() + ".log"); }

 private:
  const Home& home_;
  fs::path socket_;
  std::unique_ptr<Background> process_;
  bool up_ = false;
};

// The wire (core/cli/service.h): a 4-byte big-endian length, a type byte,
// the payload. Written here from the description, not from the code.
bool WriteFrame(int fd, char type, const std::string& payload) {
  const std::uint32_t n = static_cast<std::uint32_t>(payload.size() + 1);
  std::string frame = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                       static_cast<char>(n >> 8), static_cast<char>(n)};
  frame += type;
  frame += payload;
  return ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size());
}

bool ReadExactly(int fd, char* data, std::size_t size) {
  while (size > 0) {
    ssize_t got = ::recv(fd, data, size, 0);
    if (got <= 0) return false;
    data += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

std::optional<std::pair<char, std::string>> ReadFrame(int fd) {
  unsigned char header[4];
  if (!ReadExactly(fd, reinterpret_cast<char*>(header), 4)) return std::nullopt;
  std::uint32_t n = (std::uint32_t{header[0]} << 24) | (std::uint32_t{header[1]} << 16) |
                    (std::uint32_t{header[2]} << 8) | header[3];
  if (n == 0 || n > (64u << 20)) return std::nullopt;
  std::string body(n, '\0');
  if (!ReadExactly(fd, body.data(), n)) return std::nullopt;
  return std::make_pair(body[0], body.substr(1));
}

int Listen(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::listen(fd, 4) != 0) {
    return -1;
  }
  return fd;
}

int Connect(const fs::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) return -1;
  return fd;
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

TEST(ServiceE2e, AnExecThroughTheServiceBehavesAsOneWithoutItAndSharesAWarmSandbox) {
  Home home;
  Service service(home);
  ASSERT_TRUE(service.up()) << service.process().Err();
  // Output, exit code and a crash come back as a sandrun of its own gives them.
  const std::vector<std::string> script = {
      "--", "sh", "-c", "echo to-out; echo to-err >&2; read line; echo \"got $line\"; exit 3"};
  CommandOptions with_input;
  with_input.stdin_data = "typed\n";
  std::vector<std::string> interactive = {"-i"};
  interactive.insert(interactive.end(), script.begin(), script.end());
  CommandOutput served = service.Exec(interactive, with_input);
  std::vector<std::string> alone_args = {"exec"};
  alone_args.insert(alone_args.end(), interactive.begin(), interactive.end());
  CommandOutput alone = home.Run(alone_args, with_input);
  EXPECT_EQ(served.exit_code, 3) << served.err;
  EXPECT_EQ(served.exit_code, alone.exit_code);
  EXPECT_EQ(served.out, "to-out\ngot typed\n");
  EXPECT_EQ(served.out, alone.out);
  EXPECT_NE(served.err.find("to-err"), std::string::npos) << served.err;
  EXPECT_EQ(served.err.find("running the task here"), std::string::npos)
      << "the service did not serve it: " << served.err;
  CommandOutput crash = service.Exec({"--", "sh", "-c", "kill -SEGV $$"});
  CommandOutput crash_alone = home.Run({"exec", "--", "sh", "-c", "kill -SEGV $$"});
  EXPECT_EQ(crash.exit_code, crash_alone.exit_code) << crash.err;
  EXPECT_EQ(crash.exit_code, 128 + SIGSEGV) << crash.err;
  // Two execs of the same spec with isolation process: one warm sandbox.
  const std::vector<std::string> where = {"--isolation", "process", "--", "sh", "-c",
                                          "echo $SANDRUN_SANDBOX_ID"};
  CommandOutput first = service.Exec(where);
  CommandOutput second = service.Exec(where);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_FALSE(first.out.empty());
  EXPECT_EQ(first.out, second.out) << "the two execs did not share the service's warm sandbox";
  // `service stop` ends it: the process exits, the socket goes.
  CommandOutput stop = home.Run({"service", "stop", "--socket", service.socket().string()});
  EXPECT_EQ(stop.exit_code, 0) << stop.err;
  EXPECT_EQ(service.process().Wait(milliseconds(20000)), std::optional<int>(0))
      << service.process().Err();
  EXPECT_FALSE(fs::exists(service.socket()));
}

// A service held by processes (ctest invocations): a second `start` on its
// socket joins it, a `stop --leave` from a process that does not hold it
// leaves it alone, and it ends when its last holder leaves, whoever died
// before.
TEST(ServiceE2e, AServiceEndsWithItsLastHolder) {
  Home home;
  const fs::path socket = home.dir() / "held.sock";
  Background first_ctest({"/bin/sleep", "300"}, home.Env(), home.work());
  Background second_ctest({"/bin/sleep", "300"}, home.Env(), home.work());
  ASSERT_TRUE(first_ctest.started() && second_ctest.started());
  const std::string first = std::to_string(first_ctest.pid());
  const std::string second = std::to_string(second_ctest.pid());
  auto service = StartSandrun(home, {"service", "run", "--socket", socket.string(),
                                     "--parent-pid", first});
  ASSERT_TRUE(WaitUntil([&] { return fs::exists(socket); }, milliseconds(20000)))
      << service->Err();

  CommandOutput joined =
      home.Run({"service", "start", "--socket", socket.string(), "--parent-pid", second});
  EXPECT_EQ(joined.exit_code, 0) << joined.err;
  EXPECT_CONTAINS(joined.err, "it now serves process " + second + " too");
  CommandOutput stranger = home.Run(
      {"service", "stop", "--leave", "--socket", socket.string(), "--parent-pid", "999999"});
  EXPECT_EQ(stranger.exit_code, 0) << stranger.err;
  EXPECT_CONTAINS(stranger.err, "left the one at");
  // The first holder dies (as a ctest killed with -9): the second still holds it.
  first_ctest.Signal(SIGKILL);
  ASSERT_TRUE(first_ctest.Wait(seconds(10)).has_value());
  std::this_thread::sleep_for(milliseconds(1500));  // The service looks every 0.5 s.
  EXPECT_FALSE(service->Wait(milliseconds(0)).has_value()) << service->Err();
  CommandOutput served = home.Run({"exec", "--service", socket.string(), "--", "echo", "hi"});
  EXPECT_EQ(served.out, "hi\n");
  EXPECT_LACKS(served.err, "running the task here");
  // The last holder leaves: the service ends.
  CommandOutput last = home.Run(
      {"service", "stop", "--leave", "--socket", socket.string(), "--parent-pid", second});
  EXPECT_EQ(last.exit_code, 0) << last.err;
  EXPECT_CONTAINS(last.err, "stopped at");
  EXPECT_EQ(service->Wait(milliseconds(20000)), std::optional<int>(0)) << service->Err();
  EXPECT_FALSE(fs::exists(socket));
  const std::string log = service->Err();
  EXPECT_CONTAINS(log, "shared with process " + second);
  EXPECT_CONTAINS(log, "the process " + first + " that holds the service is gone");
}

TEST(ServiceE2e, WithoutAServiceTheExecRunsTheTaskItselfAndSaysWhy) {
  Home home;
  CommandOutput out =
      home.Run({"exec", "--service", (home.dir() / "none.sock").string(), "--", "echo", "hi"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "hi\n");
  EXPECT_NE(out.err.find("no service answers at"), std::string::npos) << out.err;
  EXPECT_NE(out.err.find("running the task here"), std::string::npos) << out.err;
}

// A request written by hand on the socket (not by `sandrun exec`, which
// checks its own) that uploads to ../../ is refused with the reason, exit 2
// at the exec's end, and nothing lands outside the sandbox.
TEST(ServiceE2e, AHandWrittenRequestNamingPathsOutsideItsSandboxIsRefused) {
  Home home;
  Service service(home);
  ASSERT_TRUE(service.up()) << service.process().Err();
  // A real exec's request, caught by a listener of our own.
  const fs::path catcher = home.dir() / "catch.sock";
  Fd listener{Listen(catcher)};
  ASSERT_GE(listener.fd, 0);
  const fs::path payload = home.Write("payload.txt", "planted\n");
  auto exec = StartSandrun(home, {"exec", "--service", catcher.string(), "--upload",
                                  payload.string() + ":inside.txt", "--", "true"});
  Fd caught{::accept(listener.fd, nullptr, nullptr)};
  ASSERT_GE(caught.fd, 0);
  auto request = ReadFrame(caught.fd);
  ASSERT_TRUE(request.has_value());
  ASSERT_EQ(request->first, 'Q');
  WriteFrame(caught.fd, 'N', "not this time");  // The exec then runs it itself.
  EXPECT_EQ(exec->Wait(milliseconds(60000)), std::optional<int>(0)) << exec->Err();
  auto body = nlohmann::json::parse(request->second, nullptr, false);
  ASSERT_TRUE(body.is_object()) << request->second;
  auto& uploads = body["task"]["sandbox"]["uploads"];
  ASSERT_TRUE(uploads.is_array() && uploads.size() == 1) << request->second;
  ASSERT_EQ(uploads[0].value("destination", ""), "inside.txt") << request->second;
  // The same request, its upload now aimed above the sandbox.
  const std::string evil = "../../../evil-planted-" + std::to_string(::getpid());
  uploads[0]["destination"] = evil;
  const std::string bad = body.dump();
  Fd to_service{Connect(service.socket())};
  ASSERT_GE(to_service.fd, 0);
  ASSERT_TRUE(WriteFrame(to_service.fd, 'Q', bad));
  auto answer = ReadFrame(to_service.fd);
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->first, 'F') << answer->second;
  EXPECT_NE(answer->second.find("evil-planted"), std::string::npos) << answer->second;
  // Nowhere the path could have landed has it.
  for (const fs::path& root : {home.dir(), home.dir() / "state", fs::path("/tmp")}) {
    EXPECT_FALSE(fs::exists(root / ("evil-planted-" + std::to_string(::getpid())))) << root;
  }
  std::error_code ec;
  for (fs::recursive_directory_iterator it(home.dir(), ec), end; !ec && it != end; it.increment(ec)) {
    EXPECT_EQ(it->path().filename().string().find("evil-planted"), std::string::npos)
        << it->path();
  }
}

/// Starts `sandrun exec --service S args...` and waits until it printed
/// "started"; nullptr (with a test failure) if it never did.
std::unique_ptr<Background> StartedExec(const Service& service,
                                        const std::vector<std::string>& args) {
  auto exec = service.StartExec(args);
  if (!WaitUntil([&] { return exec->Out().find("started") != std::string::npos; },
                 milliseconds(30000))) {
    ADD_FAILURE() << "the exec never started: " << exec->Err();
    return nullptr;
  }
  return exec;
}

// CTest kills one test's `sandrun exec` (its TIMEOUT, or --stop-on-failure):
// that task's command ends, and the task beside it in the same warm sandbox
// runs on to its verdict, first attempt, not retried.
TEST(ServiceE2e, AnExecThatGoesAwayEndsItsCommandAloneNotItsNeighbours) {
  Home home;
  Service service(home);
  ASSERT_TRUE(service.up()) << service.process().Err();
  auto neighbour = StartedExec(
      service, {"--isolation", "process", "--", "sh", "-c",
                "echo started in $SANDRUN_SANDBOX_ID; sleep 8; echo survived"});
  ASSERT_NE(neighbour, nullptr);
  auto doomed = StartedExec(service, {"--isolation", "process", "--", "sh", "-c",
                                      "echo started in $SANDRUN_SANDBOX_ID; sleep 300"});
  ASSERT_NE(doomed, nullptr);
  const std::string where = neighbour->Out().substr(0, neighbour->Out().find('\n'));
  ASSERT_EQ(doomed->Out().substr(0, doomed->Out().find('\n')), where)
      << "the two execs did not share a warm sandbox";
  ASSERT_EQ(neighbour->Wait(milliseconds(0)), std::nullopt)
      << "the neighbour ended before the other exec could be killed beside it";
  doomed->Signal(SIGKILL);
  EXPECT_EQ(neighbour->Wait(milliseconds(30000)), std::optional<int>(0)) << neighbour->Err();
  const std::string out = neighbour->Out();
  EXPECT_EQ(out, where + "\nsurvived\n") << "ended, or started again: " << neighbour->Err();
  // The service goes on serving in that sandbox.
  CommandOutput next = service.Exec({"--isolation", "process", "--", "sh", "-c",
                                     "echo in $SANDRUN_SANDBOX_ID"});
  EXPECT_EQ(next.exit_code, 0) << next.err;
  EXPECT_EQ(next.out, "in " + where.substr(std::string("started in ").size()) + "\n");
}

TEST(ServiceE2e, AServiceKilledMidTaskIsAnInfrastructureFailure) {
  Home home;
  Service service(home);
  ASSERT_TRUE(service.up()) << service.process().Err();
  auto exec = StartedExec(service, {"--", "sh", "-c", "echo started; sleep 60"});
  ASSERT_NE(exec, nullptr);
  service.process().Signal(SIGKILL);
  const auto killed = Clock::now();
  EXPECT_EQ(exec->Wait(milliseconds(20000)), std::optional<int>(125)) << exec->Err();
  EXPECT_LT(SecondsSince(killed), 15.0);
  EXPECT_NE(exec->Err().find("went away while it ran the task"), std::string::npos) << exec->Err();
}

// A service that stops answering (here SIGSTOP) is given up on after its
// silence limit (30 s, core/cli/service.h) instead of holding ctest for ever.
TEST(ServiceE2e, AServiceThatStopsAnsweringIsGivenUpOn) {
  Home home;
  Service service(home);
  ASSERT_TRUE(service.up()) << service.process().Err();
  auto exec = StartedExec(service, {"--", "sh", "-c", "echo started; sleep 120"});
  ASSERT_NE(exec, nullptr);
  ::kill(service.process().pid(), SIGSTOP);
  const auto stopped = Clock::now();
  const std::optional<int> code = exec->Wait(milliseconds(60000));
  const double waited = SecondsSince(stopped);
  ::kill(service.process().pid(), SIGCONT);
  EXPECT_EQ(code, std::optional<int>(125)) << exec->Err();
  EXPECT_GE(waited, 25.0) << "gave up before the service had been silent for its limit";
  EXPECT_LT(waited, 45.0);
  EXPECT_NE(exec->Err().find("stopped answering"), std::string::npos) << exec->Err();
}

}  // namespace
}  // namespace sandrun::e2e
