// The fake's container mode (FakeOptions::containers): each sandbox is a
// Docker container of its image on the engine at DOCKER_HOST, driven with
// the docker CLI. Images resolve to local ones (there is no registry here);
// Dockerfile commands after FROM are built with `docker build`. Execs and the
// file tool run inside the container through `docker exec -i`, so stdin,
// stdout and stderr are the CLI's own pipes and files, as in process mode.
#include <signal.h>

#include <fstream>
#include <sstream>

#include "fake_modal_impl.h"
#include "support/test_util.h"

namespace sandrun::modal::fake {
namespace {

using sandrun::testing::CommandOptions;
using sandrun::testing::CommandOutput;
using sandrun::testing::RunCommand;

CommandOutput Docker(std::vector<std::string> args, std::optional<std::string> stdin_data = {},
                     std::chrono::seconds timeout = std::chrono::seconds(300)) {
  args.insert(args.begin(), "docker");
  CommandOptions options;
  options.stdin_data = std::move(stdin_data);
  options.timeout = timeout;
  options.env["DOCKER_BUILDKIT"] = "0";  // the classic builder: no buildx needed
  return RunCommand(args, options);
}

bool LocalImageExists(const std::string& ref) {
  return Docker({"image", "inspect", "--format", "{{.Id}}", ref}, {}, std::chrono::seconds(30))
             .exit_code == 0;
}

// "FROM ref [AS name]" -> ref.
std::string FromReference(const std::string& from_line) {
  std::istringstream words(from_line);
  std::string keyword, ref;
  words >> keyword >> ref;
  while (ref.rfind("--", 0) == 0) words >> ref;  // FROM --platform=... ref
  return ref;
}

// The in-container half of the file tool: one shell line per operation, its
// exit code mapped to the tool's error kinds by FsToolResult.
constexpr int kFsNotFound = 2, kFsIsDirectory = 21, kFsNotDirectory = 20;
constexpr const char* kReadScript =
    "[ -d \"$1\" ] && exit 21; [ -e \"$1\" ] || exit 2; exec cat -- \"$1\"";
constexpr const char* kWriteScript =
    "[ -d \"$1\" ] && exit 21; d=$(dirname -- \"$1\"); [ -d \"$d\" ] || exit 2; "
    "exec cat > \"$1\"";
constexpr const char* kMkdirScript =
    "if [ \"$2\" = 1 ]; then mkdir -p -- \"$1\" || exit 20; else "
    "[ -d \"$(dirname -- \"$1\")\" ] || exit 2; mkdir -- \"$1\" 2>/dev/null || [ -d \"$1\" ]; fi";

}  // namespace

bool DockerEngineAnswers() {
  // No engine fails at once; a busy one (a loaded CI machine removing many
  // containers) was seen to take over 10 s to answer.
  return Docker({"version", "--format", "{{.Server.Version}}"}, {}, std::chrono::seconds(45))
             .exit_code == 0;
}

std::string FakeModalServer::Impl::ContainerName(const FakeSandbox& sandbox) const {
  std::string name = "fake-modal-" + instance_ + "-" + sandbox.id;
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string FakeModalServer::Impl::LocalImageFor(const std::string& from_line) const {
  const std::string ref = FromReference(from_line);
  if (!ref.empty() && LocalImageExists(ref)) return ref;
  const bool small = ref.find("busybox") != std::string::npos ||
                     ref.find("alpine") != std::string::npos;
  return small ? options_.busybox_image : options_.debian_image;
}

// Runs in ImageJoinStreaming: FROM alone is the local image; anything more
// is a `docker build` on top of it, its log the build's log.
bool FakeModalServer::Impl::BuildContainerImage(const std::string& image_id,
                                                const std::vector<std::string>& commands,
                                                std::string* log) {
  std::string base = LocalImageFor(commands.front());
  if (commands.size() == 1) {
    std::lock_guard<std::mutex> lock(mu_);
    local_images_[image_id] = base;
    return true;
  }
  std::string dockerfile = "FROM " + base + "\n";
  for (std::size_t i = 1; i < commands.size(); ++i) dockerfile += commands[i] + "\n";
  std::string tag = "fake-modal-image:" + instance_ + "-" + image_id;
  for (char& c : tag) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  CommandOutput built = Docker({"build", "--network", "none", "--label",
                                "sandrun-fake-modal=" + instance_, "-t", tag, "-"},
                               dockerfile);
  *log = built.out + built.err;
  if (built.exit_code != 0) return false;
  std::lock_guard<std::mutex> lock(mu_);
  local_images_[image_id] = tag;
  docker_built_images_.push_back(tag);
  return true;
}

// On its own thread, after SandboxCreate answered: `docker run`, then the
// sandbox is ready (or failed to start, INIT_FAILURE).
void FakeModalServer::Impl::StartContainer(std::shared_ptr<FakeSandbox> sandbox,
                                           std::string image, std::vector<std::string> run_args) {
  std::vector<std::string> args = {"run", "-d", "--name", ContainerName(*sandbox), "--label",
                                   "sandrun-fake-modal=" + instance_};
  args.insert(args.end(), run_args.begin(), run_args.end());
  // Stays up until removed, whatever the image's entrypoint would do.
  args.insert(args.end(), {"--entrypoint", "/bin/sh", image, "-c",
                           "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done"});
  CommandOutput started = Docker(args);
  std::lock_guard<std::mutex> lock(mu_);
  if (started.exit_code == 0) {
    sandbox->container_state = ContainerState::kReady;
    ++stats_.containers_started;
  } else {
    sandbox->container_state = ContainerState::kFailed;
    sandbox->container_error = started.err;
    if (sandbox->running) {
      sandbox->running = false;
      sandbox->result_status = mc::GenericResult::GENERIC_STATUS_INIT_FAILURE;
    }
  }
  if (!sandbox->running) RemoveContainerLocked(*sandbox);  // terminated while starting
  exec_cv_.notify_all();
}

std::vector<std::string> FakeModalServer::Impl::ContainerRunArgs(const mc::Sandbox& def,
                                                                 const FakeSandbox& sandbox) {
  std::vector<std::string> args;
  // BLOCKED and the allowlist modes: no network at all (the allowlist cannot
  // be honoured here); OPEN: the host's, which on these machines is loopback
  // and nothing the tests may leave.
  args.insert(args.end(), {"--network", sandbox.network_type == 1 ? "host" : "none"});
  if (def.resources().milli_cpu() > 0) {
    args.insert(args.end(), {"--cpus", std::to_string(def.resources().milli_cpu() / 1000.0)});
  }
  if (def.resources().memory_mb() > 0) {
    std::uint32_t mb = std::max(def.resources().memory_mb_max(), def.resources().memory_mb());
    args.insert(args.end(), {"--memory", std::to_string(mb) + "m"});
  }
  args.insert(args.end(), {"--workdir", sandbox.workdir});
  for (const auto& mount : def.volume_mounts()) {
    std::error_code ec;
    fs::create_directories(VolumeMirror(mount.volume_id()), ec);
    args.insert(args.end(), {"-v", VolumeMirror(mount.volume_id()).string() + ":" +
                                       mount.mount_path() + (mount.read_only() ? ":ro" : "")});
  }
  for (const auto& [key, value] : sandbox.secret_env) args.insert(args.end(), {"-e", key + "=" + value});
  return args;
}

void FakeModalServer::Impl::RemoveContainerLocked(FakeSandbox& sandbox) {
  if (sandbox.container_state != ContainerState::kReady || sandbox.container_removed) return;
  sandbox.container_removed = true;
  threads_.emplace_back([this, &sandbox, name = ContainerName(sandbox)] {
    Docker({"rm", "-f", name});
    std::lock_guard<std::mutex> lock(mu_);
    sandbox.container_gone = true;
    exec_cv_.notify_all();
  });
}

void FakeModalServer::Impl::AwaitContainerGone(std::unique_lock<std::mutex>& lock,
                                               const FakeSandbox& sandbox) {
  exec_cv_.wait_for(lock, std::chrono::seconds(60), [&] {
    return !sandbox.container_removed || sandbox.container_gone;
  });
}

void FakeModalServer::Impl::RemoveBuiltImages() {
  std::vector<std::string> images;
  {
    std::lock_guard<std::mutex> lock(mu_);
    images.swap(docker_built_images_);
  }
  for (const auto& tag : images) Docker({"image", "rm", "-f", tag});
}

std::vector<std::string> FakeModalServer::Impl::ContainerExecArgv(
    const FakeSandbox& sandbox, const std::vector<std::string>& argv, const std::string& cwd,
    const std::map<std::string, std::string>& env, std::uint32_t timeout_secs) const {
  std::vector<std::string> out = {"docker", "exec", "-i"};
  if (!cwd.empty()) out.insert(out.end(), {"-w", cwd});
  for (const auto& [key, value] : env) out.insert(out.end(), {"-e", key + "=" + value});
  out.push_back(ContainerName(sandbox));
  // The exec timeout is enforced in the container: timeout(1) ends the
  // command's process group there (coreutils; busybox's ends the command).
  if (timeout_secs > 0) {
    out.insert(out.end(), {"timeout", "-s", "KILL", std::to_string(timeout_secs)});
  }
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

// The file tool's operation as a shell line in the container, or false for
// an operation the fake does not emulate.
bool FakeModalServer::Impl::ContainerFsToolArgv(const FakeSandbox& sandbox, const std::string& op,
                                                const json& args, std::vector<std::string>* argv,
                                                bool* takes_stdin) const {
  const std::string path = args.value("path", "");
  std::string script, extra;
  *takes_stdin = false;
  if (op == "ReadFile") {
    script = kReadScript;
  } else if (op == "WriteFile") {
    script = kWriteScript;
    *takes_stdin = true;
  } else if (op == "MakeDirectory") {
    script = kMkdirScript;
    extra = args.value("parents", false) ? "1" : "0";
  } else {
    return false;
  }
  *argv = {"docker", "exec", "-i", ContainerName(sandbox), "/bin/sh", "-c", script, "sh", path};
  if (!extra.empty()) argv->push_back(extra);
  return true;
}

// The file tool's answer for a finished shell line: exit 0, or 1 with the
// tool's JSON error on stderr.
void FakeModalServer::Impl::FsToolResult(Exec& exec) {
  if (!exec.has_code || exec.code == 0) return;
  std::string kind = "PermissionDenied";
  if (exec.code == kFsNotFound) kind = "NotFound";
  if (exec.code == kFsIsDirectory) kind = "IsDirectory";
  if (exec.code == kFsNotDirectory) kind = "NotDirectory";
  std::ifstream raw(exec.stderr_path + ".raw", std::ios::binary);
  std::string detail(512, '\0');
  raw.read(detail.data(), static_cast<std::streamsize>(detail.size()));
  detail.resize(static_cast<std::size_t>(raw.gcount()));
  std::ofstream(exec.stderr_path, std::ios::binary | std::ios::trunc)
      << FsError(kind, "fake modal file tool: exit " + std::to_string(exec.code) +
                           (detail.empty() ? "" : ": " + detail));
  exec.code = 1;
}

fs::path FakeModalServer::Impl::VolumeMirror(const std::string& volume_id) const {
  return scratch_ / "volumes" / volume_id;
}

// Written when a file is committed, so a container that mounts the volume
// later sees it (as a Modal sandbox sees what was committed before it
// started).
void FakeModalServer::Impl::MirrorVolumeFileLocked(const std::string& volume_id,
                                                   const std::string& path,
                                                   const std::string& data, std::uint32_t mode) {
  const fs::path target = VolumeMirror(volume_id) / path;
  std::error_code ec;
  fs::create_directories(target.parent_path(), ec);
  const fs::path partial = target.string() + ".partial";
  std::ofstream(partial, std::ios::binary | std::ios::trunc) << data;
  fs::permissions(partial, static_cast<fs::perms>(mode == 0 ? 0644 : mode & 0777), ec);
  fs::rename(partial, target, ec);
}

// Sandbox lifetime (timeout_secs) and idle timeout, enforced as Modal does:
// the sandbox ends with TIMEOUT or IDLE_TIMEOUT, every exec with it.
void FakeModalServer::Impl::WatchLifetimeLocked(const std::shared_ptr<FakeSandbox>& sandbox,
                                                std::uint32_t lifetime_secs,
                                                std::uint32_t idle_secs) {
  threads_.emplace_back([this, sandbox, lifetime_secs, idle_secs] {
    const auto deadline = Clock::now() + std::chrono::seconds(lifetime_secs);
    std::unique_lock<std::mutex> lock(mu_);
    auto last_busy = Clock::now();
    while (sandbox->running && !stopping_) {
      const auto now = Clock::now();
      if (now >= deadline) {
        KillLocked(*sandbox, mc::GenericResult::GENERIC_STATUS_TIMEOUT);
        break;
      }
      bool busy = false;
      for (const auto& [id, exec] : sandbox->execs) busy = busy || !exec->finished;
      if (busy) last_busy = now;
      if (idle_secs > 0 && now - last_busy >= std::chrono::seconds(idle_secs)) {
        KillLocked(*sandbox, mc::GenericResult::GENERIC_STATUS_IDLE_TIMEOUT);
        break;
      }
      exec_cv_.wait_for(lock, milliseconds(200));
    }
  });
}

}  // namespace sandrun::modal::fake
