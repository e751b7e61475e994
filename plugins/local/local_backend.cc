#include "local_backend.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "local_files.h"
#include "local_process.h"
#include "sandrun/archive_store.h"
#include "sandrun/output_collector.h"
#include "sandrun/util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Host variables a command may see; everything else (tokens, keys) stays out.
constexpr const char* kInheritedEnv[] = {"PATH", "LANG", "LC_ALL", "TZ", "LD_LIBRARY_PATH"};
constexpr const char* kDefaultPath = "/usr/local/bin:/usr/bin:/bin";
constexpr const char* kManifestName = "sandbox.json";

fs::path DirOrTemp(const fs::path& configured, const std::string& leaf) {
  if (!configured.empty()) return configured;
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) tmp = "/tmp";
  return tmp / (leaf + "-" + std::to_string(getuid()));
}

std::int64_t UnixNow() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool IsValidSandboxId(const std::string& id) {
  return !id.empty() && id.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") ==
                            std::string::npos;
}

Result<Json> ReadManifest(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("no manifest at " + path.string());
  Json manifest = Json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (manifest.is_discarded() || !manifest.is_object()) {
    return InternalError("unreadable manifest " + path.string());
  }
  return manifest;
}

class LocalSandbox : public Sandbox {
 public:
  LocalSandbox(std::string id, fs::path root, fs::path workdir, SandboxSpec spec,
               std::vector<std::string> notes, const LocalIsolation& isolation,
               std::vector<fs::path> hide_always,
               std::map<std::string, std::string> inherited_env)
      : id_(std::move(id)),
        root_(std::move(root)),
        workdir_(std::move(workdir)),
        spec_(std::move(spec)),
        notes_(std::move(notes)),
        isolate_network_(spec_.network == NetworkMode::kNone && isolation.isolates_network),
        hide_always_(std::move(hide_always)),
        inherited_env_(std::move(inherited_env)),
        pid_namespace_(isolation.pid_namespace),
        needs_user_namespace_(isolation.needs_user_namespace),
        created_(std::chrono::system_clock::now()),
        expires_(created_ + spec_.lifetime),
        tracker_([this] { WriteManifest(); }) {}

  ~LocalSandbox() override { Terminate().IgnoreError(); }

  const std::string& Id() const override { return id_; }

  void WriteManifest() {
    Json groups = Json::array();
    for (const auto& group : tracker_.Snapshot()) {
      groups.push_back({{"pgid", group.pgid}, {"start_time", group.start_time}});
    }
    Json manifest = {
        {"schema", "sandrun.local-sandbox/v1"},
        {"id", id_},
        {"owner_pid", getpid()},
        {"owner_start_time", local::ProcessStartTime(getpid())},
        {"host", HostName()},
        {"created_at", FormatRfc3339(created_)},
        {"expires_at", FormatRfc3339(expires_)},
        {"expires_at_unix", std::chrono::duration_cast<std::chrono::seconds>(
                                expires_.time_since_epoch()).count()},
        {"labels", spec_.labels},
        {"process_groups", groups},
    };
    std::lock_guard<std::mutex> lock(manifest_mu_);
    fs::path tmp = root_ / (std::string(kManifestName) + ".tmp");
    {
      std::ofstream out(tmp, std::ios::trunc);
      if (!out) return;  // removed by Terminate()
      out << manifest.dump(2) << '\n';
    }
    std::error_code ec;
    fs::rename(tmp, root_ / kManifestName, ec);
  }

  Status Put(const FileUpload& upload) override {
    SANDRUN_RETURN_IF_ERROR(CheckUsable());
    return local::CopyIn(upload, workdir_);
  }

  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const fs::path& host_dir) override {
    SANDRUN_RETURN_IF_ERROR(CheckUsable());
    return local::CopyOut(sandbox_path, host_dir, workdir_, root_);
  }

  Result<ExecResult> Exec(const ExecRequest& request) override {
    auto started = std::chrono::steady_clock::now();
    ExecResult result;
    result.sandbox_id = id_;
    result.notes = notes_;
    result.network_isolated = isolate_network_;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (terminated_) {
        result.outcome = Outcome::kCancelled;
        result.exit_code = kExitInterrupted;
        return result;
      }
      ++active_execs_;
    }
    Result<ExecResult> out = ExecActive(request, std::move(result));
    bool remove = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      remove = --active_execs_ == 0 && terminated_;
    }
    if (remove) RemoveDirectory().IgnoreError();  // Terminate() came during this Exec
    if (out.ok()) out->durations.exec_ms = MillisBetween(started, std::chrono::steady_clock::now());
    return out;
  }

  Status Terminate() override {
    bool remove = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      terminated_ = true;
      remove = active_execs_ == 0;
    }
    tracker_.CancelAll();
    return remove ? RemoveDirectory() : OkStatus();
  }

 private:
  Status CheckUsable() {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) return FailedPreconditionError("local sandbox " + id_ + " was terminated");
    return OkStatus();
  }

  // The directory is gone and not by Terminate(): RemoveLeftover moves it
  // away before it kills the command.
  bool RemovedFromOutside() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (terminated_) return false;
    }
    std::error_code ec;
    return !fs::exists(root_, ec) && !ec;
  }

  Status RemoveDirectory() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (removed_) return OkStatus();
      removed_ = true;
    }
    std::lock_guard<std::mutex> lock(manifest_mu_);
    std::error_code ec;
    fs::remove_all(root_, ec);
    if (ec) return InternalError("cannot remove " + root_.string() + ": " + ec.message());
    return OkStatus();
  }

  std::vector<std::string> Environment(const ExecRequest& request) const {
    std::map<std::string, std::string> env = inherited_env_;
    env.emplace("PATH", kDefaultPath);
    env["HOME"] = (root_ / "home").string();
    env["TMPDIR"] = (root_ / "tmp").string();
    for (const auto& [key, value] : spec_.env) env[key] = value;
    for (const auto& [key, value] : request.env) env[key] = value;
    std::vector<std::string> entries;
    for (const auto& [key, value] : env) entries.push_back(key + "=" + value);
    return entries;
  }

  Result<fs::path> ResolveCwd(const std::string& cwd) const {
    if (cwd.empty()) return workdir_;
    SANDRUN_RETURN_IF_ERROR(CheckSandboxRelativePath("working directory", cwd));
    // Created without following a symlink the task may have planted.
    SANDRUN_RETURN_IF_ERROR(local::OpenDirectoryBeneath(workdir_, cwd, true).status());
    return (workdir_ / cwd).lexically_normal();
  }

  Result<ExecResult> ExecActive(const ExecRequest& request, ExecResult result) {
    SANDRUN_ASSIGN_OR_RETURN(fs::path cwd, ResolveCwd(request.cwd));
    ExecOutput output(request);
    if (!output.spill_dir_status().ok()) return output.spill_dir_status();

    local::LaunchSpec launch;
    launch.argv = request.argv;
    launch.env = Environment(request);
    launch.cwd = cwd;
    launch.stdin_data = request.stdin_data;
    launch.timeout = request.timeout;
    launch.isolate_network = isolate_network_;
    launch.keep_visible = {root_, workdir_};
    launch.hide_always = hide_always_;
    launch.pid_namespace = pid_namespace_;
    launch.needs_user_namespace = needs_user_namespace_;
    launch.stop = request.stop;
    // The sandbox's lifetime bounds every command, so nothing outlives it.
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        expires_ - std::chrono::system_clock::now());
    bool lifetime_bound = launch.timeout.count() == 0 || left < launch.timeout;
    if (lifetime_bound) launch.timeout = std::max(left, std::chrono::milliseconds(1));

    Result<local::ProcessEnd> end =
        local::RunProcess(launch, tracker_, output.out(), output.err());
    if (!end.ok()) return end.status();
    if (end->outcome == Outcome::kSignaled && RemovedFromOutside()) {
      // Killed by whoever removed the sandbox (`sandrun cleanup` elsewhere,
      // RemoveLeftover): the sandbox's end, not the test's (backend.h).
      return UnavailableError("local: sandbox " + id_ + " was removed while the command ran");
    }
    result.outcome = end->outcome;
    result.exit_code = end->exit_code;
    result.signal = end->signal;
    if (end->stopped) result.ended_by = std::string(kEndedByCancel);
    for (auto& note : end->notes) result.notes.push_back(std::move(note));
    output.FinishInto(result, "local backend: ");
    if (result.outcome == Outcome::kTimedOut) {
      result.ended_by = lifetime_bound ? kEndedByLifetime : kEndedByTimeout;
      if (lifetime_bound) {
        result.notes.push_back("local backend: the sandbox lifetime (" +
                               std::to_string(spec_.lifetime.count()) +
                               " s) ended the command");
      }
    }
    return result;
  }

  const std::string id_;
  const fs::path root_;
  const fs::path workdir_;
  const SandboxSpec spec_;
  const std::vector<std::string> notes_;
  const bool isolate_network_;
  const std::vector<fs::path> hide_always_;  // The archive and the outbox.
  const std::map<std::string, std::string> inherited_env_;  // From the host (kInheritedEnv).
  const bool pid_namespace_;
  const bool needs_user_namespace_;
  const std::chrono::system_clock::time_point created_;
  const std::chrono::system_clock::time_point expires_;
  std::mutex manifest_mu_;
  std::mutex mu_;
  bool terminated_ = false;
  bool removed_ = false;
  int active_execs_ = 0;
  local::GroupTracker tracker_;  // last: its callback uses the members above
};

// What the spec asks for that processes on this host cannot honour.
std::vector<std::string> UnenforcedNotes(const SandboxSpec& spec,
                                         const LocalIsolation& isolation) {
  std::vector<std::string> notes;
  if (!spec.image.empty()) {
    notes.push_back("local backend: image '" + spec.image +
                    "' ignored (commands run on the host)");
  }
  if (spec.memory_mb > 0) {
    notes.push_back("local backend: memory limit of " + std::to_string(spec.memory_mb) +
                    " MiB not enforced");
  }
  if (spec.cpu > 0) {
    char cores[32];
    std::snprintf(cores, sizeof cores, "%g", spec.cpu);  // "1", "0.5", not "1.000000"
    notes.push_back("local backend: cpu limit of " + std::string(cores) + " cores not enforced");
  }
  if (spec.network == NetworkMode::kNone && !isolation.isolates_network) {
    notes.push_back("local backend: network isolation unavailable (" +
                    isolation.network_reason +
                    "); the command can reach the network and host unix sockets");
  }
  if (!isolation.isolates_network) {
    notes.push_back("local backend: no mount namespace; the result archive and the outbox "
                    "are within the command's reach");
  }
  if (!isolation.pid_namespace) {
    notes.push_back("local backend: no PID namespace (" + isolation.pid_reason +
                    "); processes that leave the command's process group (setsid) can "
                    "outlive its timeout and sandrun");
  }
  return notes;
}

}  // namespace

LocalBackend::LocalBackend(const Config& config,
                           const std::map<std::string, std::string>& host_env)
    : state_dir_(DirOrTemp(config.state_dir, "sandrun-state")),
      sandboxes_dir_(state_dir_ / "sandboxes" / "local"),
      archive_dir_(DirOrTemp(config.archive_dir, "sandrun-results")) {
  for (const char* key : kInheritedEnv) {
    if (auto it = host_env.find(key); it != host_env.end()) inherited_env_[key] = it->second;
  }
}

const LocalIsolation& LocalBackend::Isolation() const {
  std::call_once(probe_once_, [this] { isolation_ = local::ProbeIsolation(); });
  return isolation_;
}

Capabilities LocalBackend::GetCapabilities() const {
  Capabilities caps;
  caps.isolates_network = Isolation().isolates_network;
  caps.supports_images = false;
  caps.limits_memory = false;
  caps.max_parallel = static_cast<int>(std::thread::hardware_concurrency());
  // A local sandbox is a directory and namespaces; each command its own
  // process group, ended alone by its timeout.
  caps.tasks_per_sandbox = 8;
  caps.cancels_one_command = true;  // ExecRequest::stop kills the command's group.
  return caps;
}

Status LocalBackend::CheckAvailable() {
  std::error_code ec;
  fs::create_directories(sandboxes_dir_, ec);
  if (ec) {
    return FailedPreconditionError("local: cannot create " + sandboxes_dir_.string() + ": " +
                                   ec.message());
  }
  if (access(sandboxes_dir_.c_str(), W_OK | X_OK) != 0) {
    return PermissionDeniedError("local: " + sandboxes_dir_.string() + " is not writable: " +
                                 std::strerror(errno));
  }
  return OkStatus();
}

Result<std::unique_ptr<Sandbox>> LocalBackend::Create(const SandboxSpec& spec) {
  if (!spec.dockerfile.empty()) {
    return UnimplementedError("local backend cannot build Dockerfile '" + spec.dockerfile +
                              "': commands run on the host; use an image-capable backend");
  }
  if (!spec.gpu.empty()) {
    return UnimplementedError("local backend cannot provide GPU '" + spec.gpu + "'");
  }
  std::error_code ec;
  fs::create_directories(sandboxes_dir_, ec);
  if (ec) return InternalError("cannot create " + sandboxes_dir_.string() + ": " + ec.message());
  std::string id;
  fs::path root;
  for (int attempt = 0; attempt < 8 && root.empty(); ++attempt) {
    id = "local-" + RandomHex(12);
    if (fs::create_directory(sandboxes_dir_ / id, ec)) root = sandboxes_dir_ / id;
  }
  if (root.empty()) return InternalError("cannot create a sandbox under " + sandboxes_dir_.string());
  for (const char* sub : {"work", "home", "tmp"}) fs::create_directory(root / sub, ec);

  fs::path workdir = root / "work";
  if (!spec.workdir.empty()) {
    Status inside = CheckSandboxRelativePath("workdir", spec.workdir);
    if (inside.ok()) inside = local::OpenDirectoryBeneath(workdir, spec.workdir, true).status();
    if (!inside.ok()) {
      fs::remove_all(root, ec);
      return inside;
    }
    workdir = (workdir / spec.workdir).lexically_normal();
  }
  const LocalIsolation& isolation = Isolation();
  // The mount namespace that hides host sockets also hides the result
  // archive and the outbox, whatever the network mode: a task must neither
  // read other runs' records nor rewrite its own verdict.
  std::vector<fs::path> hide_always;
  if (isolation.isolates_network) hide_always = {archive_dir_, state_dir_ / "outbox"};
  auto sandbox = std::make_unique<LocalSandbox>(id, root, workdir, spec,
                                                UnenforcedNotes(spec, isolation), isolation,
                                                std::move(hide_always), inherited_env_);
  sandbox->WriteManifest();
  return std::unique_ptr<Sandbox>(std::move(sandbox));
}

Result<std::vector<Leftover>> LocalBackend::ListLeftovers() {
  std::vector<Leftover> leftovers;
  std::error_code ec;
  if (!fs::is_directory(sandboxes_dir_, ec)) return leftovers;
  for (const auto& entry : fs::directory_iterator(sandboxes_dir_, ec)) {
    Result<Json> manifest = ReadManifest(entry.path() / kManifestName);
    if (!manifest.ok()) continue;
    const Json& m = *manifest;
    Leftover leftover;
    leftover.id = entry.path().filename().string();
    leftover.labels = m.value("labels", std::map<std::string, std::string>{});
    leftover.labels.emplace("managed-by", "sandrun");
    std::string host = m.value("host", "");
    pid_t owner = m.value("owner_pid", 0);
    std::uint64_t owner_start = m.value("owner_start_time", std::uint64_t{0});
    // On another host (a shared state_dir) its owner cannot be checked: assume alive.
    leftover.owner_alive =
        host != HostName() || (owner_start != 0 && local::ProcessStartTime(owner) == owner_start);
    leftover.expired = UnixNow() >= m.value("expires_at_unix", std::int64_t{0});
    leftover.description = "local sandbox " + leftover.id + " created " +
                           m.value("created_at", "?") + " by pid " + std::to_string(owner) +
                           " on " + host + (leftover.owner_alive ? " (running)" : " (owner gone)") +
                           ", expires " + m.value("expires_at", "?");
    leftovers.push_back(std::move(leftover));
  }
  std::sort(leftovers.begin(), leftovers.end(),
            [](const Leftover& a, const Leftover& b) { return a.id < b.id; });
  return leftovers;
}

Status LocalBackend::RemoveLeftover(const std::string& id) {
  if (!IsValidSandboxId(id)) return InvalidArgumentError("not a local sandbox id: '" + id + "'");
  fs::path root = sandboxes_dir_ / id;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return NotFoundError("no local sandbox '" + id + "'");
  Result<Json> manifest = ReadManifest(root / kManifestName);
  // Moved away before its commands are killed, so a sandrun still running
  // one sees its sandbox removed, not its command crashed. The new name is
  // still an id: a removal that fails half-way stays listed and removable.
  fs::path doomed = sandboxes_dir_ / (id + "-removing");
  fs::rename(root, doomed, ec);
  if (!ec) root = doomed;
  if (manifest.ok() && manifest->value("host", "") == HostName()) {
    for (const auto& group : manifest->value("process_groups", Json::array())) {
      pid_t pgid = group.value("pgid", 0);
      // Only the same process: a pid reused since then has another start time.
      if (pgid > 0 && local::ProcessStartTime(pgid) == group.value("start_time", std::uint64_t{0})) {
        kill(-pgid, SIGKILL);
      }
    }
  }
  fs::remove_all(root, ec);
  if (ec) return InternalError("cannot remove " + root.string() + ": " + ec.message());
  return OkStatus();
}

Result<std::unique_ptr<ArchiveStore>> LocalBackend::OpenArchive() {
  return std::unique_ptr<ArchiveStore>(std::make_unique<DirectoryArchiveStore>(archive_dir_));
}

void RegisterLocalBackend(BackendRegistry& registry) {
  BackendInfo info;
  info.name = "local";
  info.description = "processes on this host, one directory per sandbox (no daemon)";
  info.auto_rank = 10;  // "auto": the last resort among the built-ins
  registry
      .Register(std::move(info),
                [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                  if (context.config == nullptr) {
                    return InvalidArgumentError("local backend: no config given");
                  }
                  return std::unique_ptr<Backend>(
                      std::make_unique<LocalBackend>(*context.config, context.env));
                })
      .IgnoreError();  // only fails for a duplicate name: the first one stays
}

}  // namespace sandrun
