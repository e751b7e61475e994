// The built `sandrun` against the fake Modal server, as a user drives it:
// the Modal flags (--secret, --allow-cidr, --modal-environment, --gpu) and
// their precedence, bad input refused with exit 2, the fallback from modal to
// docker or local (missing, rejected credentials, unreachable server), that
// no token or secret value reaches anything sandrun produces. (`results
// prune` on Modal: modal_volume_test.cc.)
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/e2e_support.h"
#include "support/docker_required.h"
#include "fake_modal_server.h"

namespace sandrun::modal {
namespace {

using ::sandrun::e2e::Home;
using ::sandrun::testing::CommandOptions;
using ::sandrun::testing::CommandOutput;
using ::sandrun::testing::PrivateDockerVolume;
using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr char kTokenId[] = "ak-cli-test-TOKENID-4411";
constexpr char kTokenSecret[] = "as-cli-test-TOKENSECRET-9287";
constexpr char kSecretValue[] = "s3cr3t-VALUE-of-app-secret-5521";
constexpr char kDockerImage[] = "sandrun-test/busybox";

/// Lines sandrun printed as warnings.
int WarningLines(const std::string& err) {
  int n = 0;
  std::size_t pos = 0;
  while ((pos = err.find("sandrun: warning:", pos)) != std::string::npos) {
    ++n;
    pos += 1;
  }
  return n;
}

/// Why Docker tests cannot run here, or "" when they can.
std::string DockerUnavailableReason() {
  CommandOutput out = sandrun::testing::RunCommand({"docker", "image", "inspect", kDockerImage});
  if (out.exit_code == 0) return "";
  return "no Docker engine with image " + std::string(kDockerImage) +
         " (run scripts/docker-test-env): " + out.err.substr(0, 200);
}

/// A loopback port nothing listens on.
int ClosedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

class ModalCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake::FakeOptions options;
    options.token_id = kTokenId;
    options.token_secret = kTokenSecret;
    options.secrets["app-secret"] = {{"APP_SECRET", kSecretValue}};
    server_ = std::make_unique<fake::FakeModalServer>(options);
    ASSERT_TRUE(server_->Start());
  }

  /// Every MODAL_* and SANDRUN_MODAL_* variable a developer may have set,
  /// cleared, then the fake's credentials.
  std::map<std::string, std::string> ModalEnv() const {
    return {{"MODAL_TOKEN_ID", kTokenId},
            {"MODAL_TOKEN_SECRET", kTokenSecret},
            {"MODAL_SERVER_URL", server_->url()},
            {"MODAL_ENVIRONMENT", ""},
            {"MODAL_PROFILE", ""},
            {"MODAL_CONFIG_PATH", ""},
            {"MODAL_IMAGE_BUILDER_VERSION", ""},
            {"MODAL_MAX_THROTTLE_WAIT", ""}};
  }

  CommandOutput Run(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env = {}) const {
    CommandOptions options;
    options.env = ModalEnv();
    for (const auto& [k, v] : env) options.env[k] = v;
    return home_.Run(args, options);
  }

  /// The one sandbox the fake created.
  std::string OnlySandbox() const {
    auto ids = server_->SandboxIds(false);
    EXPECT_EQ(ids.size(), 1u);
    return ids.empty() ? "" : ids.front();
  }

  Home home_;
  std::unique_ptr<fake::FakeModalServer> server_;
};

TEST_F(ModalCliTest, FlagsReachTheSandboxDefinition) {
  CommandOutput out = Run({"exec", "--backend", "modal", "--secret", "app-secret",
                           "--allow-cidr", "203.0.113.0/24", "--allow-cidr", "2001:db8::/32",
                           "--modal-environment", "staging", "--gpu", "A10G:2", "-e", "FOO=bar",
                           "--", "sh", "-c",
                           "test \"$APP_SECRET\" = '" + std::string(kSecretValue) +
                               "' && echo secret-attached; echo FOO=$FOO"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_CONTAINS(out.out, "secret-attached");
  EXPECT_CONTAINS(out.out, "FOO=bar");  // -e stays --env
  std::string id = OnlySandbox();
  fake::FakeSandboxDefinition def = server_->SandboxDefinition(id);
  EXPECT_EQ(def.secret_ids, std::vector<std::string>{"st-app-secret"});
  EXPECT_EQ(def.allowed_cidrs, (std::vector<std::string>{"203.0.113.0/24", "2001:db8::/32"}));
  EXPECT_EQ(server_->SandboxNetworkType(id), 3) << "ALLOWLIST";
  EXPECT_EQ(def.gpu_type, "A10G");
  EXPECT_EQ(def.gpu_count, 2);
  EXPECT_EQ(def.environment, "staging");
  auto seen = server_->EnvironmentsSeen();
  ASSERT_FALSE(seen.empty());
  for (const auto& env : seen) EXPECT_EQ(env, "staging");
}

TEST_F(ModalCliTest, AllowlistNarrowsAnOpenNetworkToo) {
  CommandOutput out = Run({"exec", "--backend", "modal", "--network", "open", "--allow-cidr",
                           "198.51.100.7/32", "--", "true"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(server_->SandboxNetworkType(OnlySandbox()), 3) << "ALLOWLIST, not OPEN";
}

TEST_F(ModalCliTest, BatchAndGtestTakeTheModalFlags) {
  home_.Write("tasks.json", R"([{"id": "a", "command": ["sh", "-c", "test -n \"$APP_SECRET\""],
                                 "gpu": "T4"}])");
  CommandOutput batch = Run({"batch", "tasks.json", "--backend", "modal", "--secret",
                             "app-secret", "--modal-environment", "ci"});
  ASSERT_EQ(batch.exit_code, 0) << batch.err;
  fake::FakeSandboxDefinition def = server_->SandboxDefinition(OnlySandbox());
  EXPECT_EQ(def.secret_ids, std::vector<std::string>{"st-app-secret"});
  EXPECT_EQ(def.gpu_type, "T4");  // per-task gpu
  EXPECT_EQ(def.gpu_count, 1);
  EXPECT_EQ(def.environment, "ci");
#ifdef GTEST_SAMPLE_BINARY
  // The case itself cannot pass on the fake, which runs a sandbox's commands
  // on this host and does not rewrite the /sandrun/ paths inside the
  // portable launcher script; what matters here is the sandbox it asked for.
  CommandOutput gtest = Run({"gtest", GTEST_SAMPLE_BINARY, "--filter", "Sample.Passes",
                             "--backend", "modal", "--secret", "app-secret", "--gpu", "L4:1"});
  EXPECT_CONTAINS(gtest.out, "backend modal");
  auto ids = server_->SandboxIds(false);
  ASSERT_EQ(ids.size(), 2u);
  for (const auto& id : ids) {
    auto d = server_->SandboxDefinition(id);
    if (d.gpu_type == "T4") continue;  // the batch's
    EXPECT_EQ(d.gpu_type, "L4");
    EXPECT_EQ(d.secret_ids, std::vector<std::string>{"st-app-secret"});
  }
#endif
}

TEST_F(ModalCliTest, ModalSettingsFollowTheConfigPrecedence) {
  home_.Write("sandrun.json", R"({"backends": {"modal": {"environment": "from-file",
                                                        "secrets": ["file-secret"]}}})");
  auto config = [&](const std::vector<std::string>& flags,
                    const std::map<std::string, std::string>& env) {
    std::vector<std::string> args{"config", "--json"};
    args.insert(args.end(), flags.begin(), flags.end());
    CommandOutput out = Run(args, env);
    EXPECT_EQ(out.exit_code, 0) << out.err;
    Json j = Json::parse(out.out, nullptr, false);
    return j.is_object() ? j["backends"]["modal"] : Json::object();
  };
  Json file = config({}, {});
  EXPECT_EQ(file["value"]["environment"], "from-file");
  EXPECT_EQ(file["value"]["secrets"], Json::array({"file-secret"}));

  Json modal_env = config({}, {{"MODAL_ENVIRONMENT", "from-modal-env"}});
  EXPECT_EQ(modal_env["value"]["environment"], "from-modal-env");
  EXPECT_EQ(modal_env["sources"]["environment"], "env MODAL_ENVIRONMENT");

  Json sandrun_env = config({}, {{"MODAL_ENVIRONMENT", "from-modal-env"},
                                 {"SANDRUN_MODAL_ENVIRONMENT", "from-sandrun-env"},
                                 {"SANDRUN_MODAL_SECRETS", "a, b"}});
  EXPECT_EQ(sandrun_env["value"]["environment"], "from-sandrun-env");
  EXPECT_EQ(sandrun_env["value"]["secrets"], Json::array({"a", "b"}));
  EXPECT_EQ(sandrun_env["sources"]["secrets"], "env SANDRUN_MODAL_SECRETS");

  Json flags = config({"--modal-environment", "from-flag", "--secret", "x", "--secret", "y"},
                      {{"SANDRUN_MODAL_ENVIRONMENT", "from-sandrun-env"},
                       {"SANDRUN_MODAL_SECRETS", "a"}});
  EXPECT_EQ(flags["value"]["environment"], "from-flag");
  EXPECT_EQ(flags["value"]["secrets"], Json::array({"x", "y"}));
  EXPECT_EQ(flags["sources"]["environment"], "flag --modal-environment");
}

TEST_F(ModalCliTest, EnvironmentFromTheProfileAndFromMODAL_ENVIRONMENT) {
  // ~/.modal.toml as `modal setup` writes it, with an environment.
  home_.Write("../.modal.toml", std::string("[default]\ntoken_id = \"") + kTokenId +
                                    "\"\ntoken_secret = \"" + kTokenSecret +
                                    "\"\nserver_url = \"" + server_->url() +
                                    "\"\nenvironment = \"profile-env\"\nactive = true\n");
  std::map<std::string, std::string> no_env_tokens = {
      {"MODAL_TOKEN_ID", ""}, {"MODAL_TOKEN_SECRET", ""}, {"MODAL_SERVER_URL", ""}};
  CommandOutput profile = Run({"exec", "--backend", "modal", "--", "true"}, no_env_tokens);
  ASSERT_EQ(profile.exit_code, 0) << profile.err;
  EXPECT_EQ(server_->SandboxDefinition(OnlySandbox()).environment, "profile-env");

  no_env_tokens["MODAL_ENVIRONMENT"] = "variable-env";
  CommandOutput variable = Run({"exec", "--backend", "modal", "--", "true"}, no_env_tokens);
  ASSERT_EQ(variable.exit_code, 0) << variable.err;
  auto seen = server_->EnvironmentsSeen();
  EXPECT_NE(std::find(seen.begin(), seen.end(), "variable-env"), seen.end());

  // An environment the server does not know: an infrastructure error that
  // names it, never a test failure.
  CommandOutput unknown =
      Run({"exec", "--backend", "modal", "--modal-environment", "missing-env", "--", "true"});
  EXPECT_EQ(unknown.exit_code, 125) << unknown.err;
  EXPECT_CONTAINS(unknown.err, "missing-env");
}

TEST_F(ModalCliTest, BadModalInputIsExit2AndRunsNothing) {
  ::sandrun::testing::TempDir dir;
  const std::string dockerfile = dir.Write("Dockerfile", "FROM debian\nCOPY app /app\n").string();
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--backend", "modal", "--allow-cidr", "300.1.2.3/8"}, "invalid CIDR '300.1.2.3/8'"},
      {{"--backend", "modal", "--allow-cidr", "203.0.113.0"}, "no /PREFIX"},
      {{"--backend", "modal", "--allow-cidr", "203.0.113.0/33"}, "prefix must be 0 to 32"},
      {{"--backend", "modal", "--allow-cidr", "2001:db8::/129"}, "prefix must be 0 to 128"},
      {{"--backend", "modal", "--secret", "has space"}, "invalid secret name"},
      {{"--backend", "modal", "--gpu", "A10G:0"}, "invalid gpu 'A10G:0'"},
      {{"--backend", "modal", "--gpu", ":2"}, "no GPU type"},
      {{"--backend", "local", "--secret", "app-secret"}, "--secret applies only to the modal backend"},
      {{"--backend", "local", "--gpu", "A10G"}, "can provide a GPU"},
      // What only Modal's side can tell is bad input too, found before any
      // sandbox or record: a Secret the environment lacks, a Dockerfile
      // that needs a build context.
      {{"--backend", "modal", "--secret", "missing-db-password"}, "missing-db-password"},
      {{"--backend", "modal", "--dockerfile", dockerfile}, "COPY needs a build context"},
  };
  const std::size_t records_before = server_->VolumeFiles("sandrun-results").size();
  for (const auto& c : cases) {
    std::vector<std::string> args{"exec"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    args.insert(args.end(), {"--", "true"});
    CommandOutput out = Run(args, {{"SANDRUN_MODAL_CIDR_ALLOWLIST", ""}});
    EXPECT_EQ(out.exit_code, 2) << c.args[3] << ": " << out.err;
    EXPECT_CONTAINS(out.err, c.says);
  }
  EXPECT_EQ(server_->VolumeFiles("sandrun-results").size(), records_before)
      << "a run was recorded for bad input";
  EXPECT_EQ(server_->Stats().sandboxes_created, 0);
  // The same check guards the variable and the file.
  CommandOutput env = Run({"exec", "--backend", "modal", "--", "true"},
                          {{"SANDRUN_MODAL_CIDR_ALLOWLIST", "203.0.113.0/24,bogus"}});
  EXPECT_EQ(env.exit_code, 2) << env.err;
  EXPECT_CONTAINS(env.err, "invalid CIDR 'bogus'");
  EXPECT_EQ(server_->Stats().sandboxes_created, 0);
}

// ---- fallback: one warning line naming the reason; the record says why ----

struct FallbackCase {
  const char* name;
  std::map<std::string, std::string> env;  // on top of ModalEnv()
  std::string reason;                      // in the warning and the record
};

class ModalFallbackTest : public ModalCliTest {
 protected:
  std::vector<FallbackCase> Cases() {
    std::string closed = "http://127.0.0.1:" + std::to_string(ClosedPort());
    return {
        {"missing credentials",
         {{"MODAL_TOKEN_ID", ""}, {"MODAL_TOKEN_SECRET", ""}, {"MODAL_SERVER_URL", ""}},
         "no credentials"},
        {"rejected credentials", {{"MODAL_TOKEN_SECRET", "as-rejected-TOKENSECRET-7777"}},
         "UNAUTHENTICATED"},
        {"unreachable server", {{"MODAL_SERVER_URL", closed}}, closed.substr(7)},
    };
  }

  /// Runs `exec ... --json -- echo hi` and checks the fallback to `to`.
  void ExpectFallback(const FallbackCase& c, const std::vector<std::string>& backend_args,
                      const std::string& to, std::map<std::string, std::string> env = {}) {
    SCOPED_TRACE(c.name);
    for (const auto& [k, v] : c.env) env[k] = v;
    std::vector<std::string> args{"exec"};
    args.insert(args.end(), backend_args.begin(), backend_args.end());
    // The local backend would add a note for an image it cannot use.
    if (to == "docker") args.insert(args.end(), {"--image", kDockerImage});
    args.insert(args.end(), {"--json", "--", "echo", "hi"});
    CommandOutput out = Run(args, env);
    ASSERT_EQ(out.exit_code, 0) << out.err;
    EXPECT_EQ(WarningLines(out.err), 1) << out.err;
    EXPECT_EQ(std::count(out.err.begin(), out.err.end(), '\n'), 1) << out.err;
    EXPECT_CONTAINS(out.err, "modal unavailable");
    EXPECT_CONTAINS(out.err, c.reason);
    EXPECT_CONTAINS(out.err, "used " + to);
    Json record = Json::parse(out.out, nullptr, false);
    ASSERT_TRUE(record.is_object()) << out.out;
    EXPECT_EQ(record.value("backend", ""), to);
    EXPECT_CONTAINS(record.value("fallback_reason", ""), c.reason);
    EXPECT_CONTAINS(record["stdout"].value("text", ""), "hi");
    // The archived record says so too.
    CommandOutput shown = Run({"results", "show", record.value("run_id", ""), "exec", "--json",
                               "--backend", to});
    ASSERT_EQ(shown.exit_code, 0) << shown.err;
    EXPECT_CONTAINS(shown.out, c.reason);
    for (const char* token : {kTokenSecret, "as-rejected-TOKENSECRET-7777"}) {
      EXPECT_EQ(out.err.find(token), std::string::npos) << out.err;
      EXPECT_EQ(out.out.find(token), std::string::npos);
    }
  }
};

TEST_F(ModalFallbackTest, ModalFallsBackToDocker) {
  std::string reason = DockerUnavailableReason();
  if (!reason.empty()) SANDRUN_SKIP_WITHOUT_DOCKER(reason);
  PrivateDockerVolume volume(home_.dir(), "modal-fallback");
  for (const auto& c : Cases()) {
    ExpectFallback(c, {"--backend", "modal", "--fallback", "docker"}, "docker");
  }
  // `auto` tries modal, then docker.
  ExpectFallback(Cases().front(), {"--backend", "auto"}, "docker");
  EXPECT_EQ(server_->Stats().sandboxes_created, 0);
}

TEST_F(ModalFallbackTest, ModalFallsBackToLocalWhenDockerIsNotThere) {
  for (const auto& c : Cases()) {
    ExpectFallback(c, {"--backend", "modal", "--fallback", "local"}, "local");
  }
  // `auto` with no Docker engine: modal, docker, then local; one line names both.
  FallbackCase c = Cases()[1];
  CommandOutput out = Run({"exec", "--backend", "auto", "--json", "--", "echo", "hi"},
                          {{"MODAL_TOKEN_SECRET", "as-rejected-TOKENSECRET-7777"},
                           {"DOCKER_HOST", "unix:///nonexistent/sandrun-test.sock"}});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(WarningLines(out.err), 1) << out.err;
  EXPECT_CONTAINS(out.err, "UNAUTHENTICATED");
  EXPECT_CONTAINS(out.err, "docker unavailable");
  Json record = Json::parse(out.out, nullptr, false);
  ASSERT_TRUE(record.is_object()) << out.out;
  EXPECT_EQ(record.value("backend", ""), "local");
  EXPECT_CONTAINS(record.value("fallback_reason", ""), "UNAUTHENTICATED");
  EXPECT_EQ(server_->Stats().sandboxes_created, 0);
}

TEST_F(ModalFallbackTest, WithoutAFallbackTheReasonIsExit125) {
  for (const auto& c : Cases()) {
    SCOPED_TRACE(c.name);
    CommandOutput out = Run({"exec", "--backend", "modal", "--", "echo", "hi"}, c.env);
    EXPECT_EQ(out.exit_code, 125) << out.err;
    EXPECT_CONTAINS(out.err, c.reason);
    EXPECT_EQ(out.out, "");
  }
}

// ---- no token id, token secret or secret value anywhere ----

/// Every regular file under `dir`, concatenated.
std::string AllFiles(const fs::path& dir) {
  std::string all;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) all += sandrun::testing::ReadFile(it->path()) + "\n";
  }
  return all;
}

TEST_F(ModalCliTest, NoTokenOrSecretValueInAnythingProduced) {
  home_.Write("tasks.json", R"([
    {"id": "ok", "command": ["sh", "-c", "env | grep -v '^APP_SECRET='; echo done"]},
    {"id": "fails", "command": ["sh", "-c", "echo to-stderr >&2; exit 3"]},
    {"id": "slow", "command": ["sleep", "30"], "timeout": 1}
  ])");
  std::string everything;
  auto collect = [&](const CommandOutput& out) {
    everything += out.out + "\n" + out.err + "\n";
  };
  const std::vector<std::string> modal = {"--backend", "modal", "--secret", "app-secret"};
  auto with = [&](std::vector<std::string> args) {  // the flags go before "--"
    args.insert(args.begin() + 1, modal.begin(), modal.end());
    return args;
  };
  collect(Run(with({"exec", "--json", "--", "sh", "-c",
                    "test -n \"$APP_SECRET\" && echo secret-present; env | grep -v '^APP_SECRET='"})));
  EXPECT_CONTAINS(everything, "secret-present");
  collect(Run(with({"exec", "--", "sh", "-c", "exit 7"})));
  collect(Run(with({"exec", "--timeout", "1", "--", "sleep", "30"})));
  collect(Run(with({"exec", "--", "/nonexistent/program"})));
  collect(Run(with({"batch", "tasks.json", "--json"})));
  // Rejected credentials, a missing secret and an unknown environment: errors.
  collect(Run(with({"exec", "--", "true"}), {{"MODAL_TOKEN_SECRET", "as-rejected-TOKENSECRET-7777"}}));
  collect(Run({"exec", "--backend", "modal", "--secret", "missing-secret", "--", "true"}));
  collect(Run(with({"exec", "--modal-environment", "missing-env", "--", "true"})));
  // Everything that reads or reports afterwards.
  collect(Run({"results", "list", "--backend", "modal", "--json"}));
  CommandOutput latest = Run({"results", "show", "latest", "--backend", "modal", "--full", "--json"});
  collect(latest);
  collect(Run({"results", "fetch", "latest", "--backend", "modal", "-o", "fetched"}));
  collect(Run({"doctor", "--backend", "modal"}));
  collect(Run({"doctor", "--backend", "modal"}, {{"MODAL_TOKEN_SECRET", "as-rejected-TOKENSECRET-7777"}}));
  collect(Run({"config", "--json"}));
  collect(Run({"cleanup", "--backend", "modal", "--dry-run"}));
  collect(Run({"backends"}));
  // The records, the outbox, fetched artifacts and the whole home.
  everything += AllFiles(home_.dir());
  // What the fake was asked to run in sandboxes: argv and env of every exec.
  for (const auto& request : server_->ExecRequestsSeen()) everything += request + "\n";
  ASSERT_GT(server_->Stats().exec_processes_started, 5);
  ASSERT_NE(everything.find("done"), std::string::npos) << "the batch ran";

  for (const char* needle : {kTokenId, kTokenSecret, kSecretValue, "as-rejected-TOKENSECRET-7777"}) {
    EXPECT_EQ(everything.find(needle), std::string::npos) << needle << " leaked";
  }
  for (const char* variable : {"MODAL_TOKEN_ID=", "MODAL_TOKEN_SECRET="}) {
    EXPECT_EQ(everything.find(variable), std::string::npos)
        << variable << ": a credential variable reached a sandbox or a record";
  }
}

}  // namespace
}  // namespace sandrun::modal
