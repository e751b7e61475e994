#include "modal_backend.h"

#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cctype>
#include <cmath>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "modal_archive_store.h"
#include "modal_client.h"
#include "modal_credentials.h"
#include "sandrun/archive_store.h"
#include "sandrun/config.h"
#include "sandrun/file_util.h"
#include "sandrun/output_collector.h"
#include "sandrun/owner_labels.h"
#include "sandrun/portable_exe.h"
#include "sandrun/upload_symlinks.h"
#include "sandrun/util.h"

namespace sandrun {
namespace modal {
namespace {

namespace fs = std::filesystem;
namespace mc = ::modal::client;
namespace tcr = ::modal::task_command_router;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kStdinChunk = 1 << 20;
constexpr int kStdioRetries = 10;

std::string Tail(const std::string& text, std::size_t n) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

std::string GenericStatusName(int status) {
  static const char* kNames[] = {"UNSPECIFIED", "SUCCESS",          "FAILURE",
                                 "TERMINATED",  "TIMEOUT",          "INIT_FAILURE",
                                 "INTERNAL_FAILURE", "IDLE_TIMEOUT", "MEMORY_MANAGER_EVICTION"};
  if (status >= 0 && status < 9) return kNames[status];
  return std::to_string(status);
}

// The Dockerfile's instructions as Modal dockerfile_commands: continuation
// lines joined, comments and blank lines dropped. COPY/ADD need a build
// context, which this backend does not upload.
Result<std::vector<std::string>> DockerfileCommands(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFoundError("modal: cannot read Dockerfile " + path);
  std::vector<std::string> commands;
  std::string line, pending;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::size_t first = line.find_first_not_of(" \t");
    if (pending.empty() && (first == std::string::npos || line[first] == '#')) continue;
    bool continued = !line.empty() && line.back() == '\\';
    if (continued) line.pop_back();
    pending += line;
    if (continued) {
      pending += ' ';
      continue;
    }
    std::string upper = pending.substr(pending.find_first_not_of(" \t"));
    std::string keyword = upper.substr(0, upper.find_first_of(" \t"));
    std::transform(keyword.begin(), keyword.end(), keyword.begin(), ::toupper);
    if (keyword == "COPY" || keyword == "ADD") {
      return UnimplementedError("modal: " + path + ": " + keyword +
                                " needs a build context, which the modal backend does not upload "
                                "yet; use RUN steps or a registry image");
    }
    commands.push_back(pending);
    pending.clear();
  }
  if (!pending.empty()) commands.push_back(pending);
  if (commands.empty()) return InvalidArgumentError("modal: empty Dockerfile " + path);
  return commands;
}

struct Shared {
  ModalOptions options;
  std::shared_ptr<ControlPlane> control;
  std::string environment;
  std::string app_id;
  bool plaintext = false;
  std::mutex mu;
  std::map<std::string, std::string> images;   // key -> image id. Guarded by mu.
  std::string volume_id;                       // Guarded by mu.
  std::vector<std::string> secret_ids;         // Guarded by mu.
  bool secrets_resolved = false;               // Guarded by mu.
  std::string builder_version;                 // Guarded by mu.
};

// Output of one exec, as the sandbox's raw executor sees it.
struct RawExec {
  std::vector<std::string> argv;
  std::map<std::string, std::string> env;
  std::string workdir;
  const std::string* stdin_data = nullptr;
  milliseconds timeout{0};
  std::function<void(std::string_view)> on_stdout;
  std::function<void(std::string_view)> on_stderr;
};

struct RawResult {
  bool has_code = false;
  int code = 0;
  int signal = 0;
  bool host_deadline = false;  // The host gave up waiting at the deadline.
  bool cancelled = false;      // Terminate() interrupted it.
  Clock::duration elapsed{};
  Status stdio_status;         // A stdio stream that could not be resumed.
  bool streams_left_open = false;  // Output still open 10 s after the exit.
};

class ModalSandbox : public Sandbox {
 public:
  ModalSandbox(std::shared_ptr<Shared> shared, std::string sandbox_id, std::string task_id,
               std::unique_ptr<CommandRouter> router, std::string workdir,
               std::map<std::string, std::string> env, std::vector<std::string> notes,
               std::chrono::seconds lifetime, Clock::time_point expires)
      : shared_(std::move(shared)),
        id_(std::move(sandbox_id)),
        task_id_(std::move(task_id)),
        router_(std::move(router)),
        workdir_(std::move(workdir)),
        env_(std::move(env)),
        notes_(std::move(notes)),
        lifetime_(lifetime),
        expires_(expires) {}
  ~ModalSandbox() override { Terminate().IgnoreError(); }

  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload& upload) override;
  Result<ExecResult> Exec(const ExecRequest& request) override;
  Result<std::vector<std::string>> Get(const std::string& sandbox_path,
                                       const fs::path& host_dir) override;
  Status Terminate() override;

  std::uint64_t router_calls() const { return router_->calls(); }

 private:
  Result<RawResult> RunRaw(const RawExec& exec);
  // The sandbox's final status if it has ended ("" while it runs).
  std::string SandboxEnded();
  // The retryable infrastructure error for a sandbox that ended (evicted,
  // killed from outside) while a command ran in it.
  Status EndedWhileRunning(const std::string& final_status) const;
  // Runs the in-sandbox file tool with `command` (a JSON object).
  Status FsTool(const json& command, const std::string* stdin_data,
                const std::function<void(std::string_view)>& on_stdout);
  Status WriteFile(const std::string& path, const std::string& data);
  Status MakeDirectory(const std::string& path);
  Status Chmod(const std::vector<std::string>& paths);
  /// Makes symlinks in one exec; `pairs` alternates target and path.
  Status MakeSymlinks(const std::vector<std::string>& pairs);
  /// Runs a short file command (chmod, ln) in the workdir; its stderr names
  /// the failure.
  Status RunFileCommand(std::vector<std::string> argv, const std::string& what);
  Status ReadStdio(CallCanceller* canceller, const std::string& exec_id,
                   tcr::TaskExecStdioFileDescriptor fd,
                   const std::function<void(std::string_view)>& sink);

  std::shared_ptr<Shared> shared_;
  std::string id_;
  std::string task_id_;
  std::unique_ptr<CommandRouter> router_;
  std::string workdir_;
  std::map<std::string, std::string> env_;
  std::vector<std::string> notes_;
  std::chrono::seconds lifetime_;
  // When Modal ends the sandbox (its timeout_secs); taken before it existed,
  // so the host's own bound comes first.
  Clock::time_point expires_;

  std::mutex mu_;
  bool terminated_ = false;              // Guarded by mu_.
  std::set<CallCanceller*> active_;      // Guarded by mu_.
  std::mutex portable_mu_;
  std::set<std::string> portable_sent_;  // Guarded by portable_mu_.
};

Status ModalSandbox::ReadStdio(CallCanceller* canceller, const std::string& exec_id,
                               tcr::TaskExecStdioFileDescriptor fd,
                               const std::function<void(std::string_view)>& sink) {
  std::uint64_t offset = 0;
  int failures = 0;
  milliseconds delay(10);
  while (true) {
    grpc::ClientContext context;
    router_->PrepareStream(&context);
    if (!canceller->Add(&context)) return CancelledError("modal: stdio read cancelled");
    tcr::TaskExecStdioReadRequest request;
    request.set_task_id(task_id_);
    request.set_exec_id(exec_id);
    request.set_offset(offset);
    request.set_file_descriptor(fd);
    auto reader = router_->stub().TaskExecStdioRead(&context, request);
    tcr::TaskExecStdioReadResponse response;
    bool progressed = false;
    while (reader->Read(&response)) {
      if (response.data().empty()) continue;
      sink(response.data());
      offset += response.data().size();
      progressed = true;
    }
    grpc::Status status = reader->Finish();
    canceller->Remove(&context);
    if (status.ok()) return OkStatus();
    if (canceller->cancelled()) return CancelledError("modal: stdio read cancelled");
    if (progressed) {
      failures = 0;
      delay = milliseconds(10);
    }
    if (!IsRetryableGrpcCode(status.error_code()) || ++failures > kStdioRetries) {
      return MapGrpcStatus(status, "TaskExecStdioRead");
    }
    if (!canceller->SleepFor(delay)) return CancelledError("modal: stdio read cancelled");
    delay = std::min(delay * 2, milliseconds(1000));
  }
}

Result<RawResult> ModalSandbox::RunRaw(const RawExec& exec) {
  CallCanceller canceller;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) return CancelledError("modal: sandbox " + id_ + " was terminated");
    active_.insert(&canceller);
  }
  struct Unregister {
    ModalSandbox* self;
    CallCanceller* canceller;
    ~Unregister() {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->active_.erase(canceller);
    }
  } unregister{this, &canceller};

  const Clock::time_point start = Clock::now();
  RawResult raw;
  const std::string exec_id = NewUuid();
  tcr::TaskExecStartRequest start_request;
  start_request.set_task_id(task_id_);
  start_request.set_exec_id(exec_id);
  for (const auto& arg : exec.argv) start_request.add_command_args(arg);
  start_request.set_stdout_config(tcr::TASK_EXEC_STDOUT_CONFIG_PIPE);
  start_request.set_stderr_config(tcr::TASK_EXEC_STDERR_CONFIG_PIPE);
  if (exec.timeout.count() > 0) {
    start_request.set_timeout_secs(
        static_cast<std::uint32_t>((exec.timeout.count() + 999) / 1000));
  }
  start_request.set_workdir(exec.workdir);
  for (const auto& [key, value] : exec.env) (*start_request.mutable_env())[key] = value;
  tcr::TaskExecStartResponse start_response;
  // exec_id makes a repeated start a no-op on the server, so retrying is safe.
  Status started = router_->Unary(
      "TaskExecStart",
      [&](grpc::ClientContext* context) {
        return router_->stub().TaskExecStart(context, start_request, &start_response);
      },
      &canceller, milliseconds(60000));
  if (!started.ok()) {
    if (canceller.cancelled()) {
      raw.cancelled = true;
      raw.elapsed = Clock::now() - start;
      return raw;
    }
    return started;
  }

  std::mutex done_mu;
  std::condition_variable done_cv;
  int readers_done = 0;
  Status stdio_status[2];
  auto reader = [&](int index, tcr::TaskExecStdioFileDescriptor fd,
                    const std::function<void(std::string_view)>& sink) {
    Status status = ReadStdio(&canceller, exec_id, fd, sink);
    std::lock_guard<std::mutex> lock(done_mu);
    stdio_status[index] = status;
    ++readers_done;
    done_cv.notify_all();
  };
  std::thread out_thread(reader, 0, tcr::TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT,
                         exec.on_stdout);
  std::thread err_thread(reader, 1, tcr::TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDERR,
                         exec.on_stderr);

  // Stdin: the data in chunks at their offsets, then EOF; an unset stdin is
  // closed at once so the command reads it as empty. Written beside the
  // wait below, not before it: neither needs the other's answer, and one
  // round trip less per execution adds up at -j 256.
  std::thread stdin_thread([&] {
    const std::string empty;
    const std::string& data = exec.stdin_data != nullptr ? *exec.stdin_data : empty;
    std::size_t offset = 0;
    Status stdin_status;
    do {
      std::size_t n = std::min(kStdinChunk, data.size() - offset);
      tcr::TaskExecStdinWriteRequest write;
      write.set_task_id(task_id_);
      write.set_exec_id(exec_id);
      write.set_offset(offset);
      write.set_data(data.substr(offset, n));
      write.set_eof(offset + n == data.size());
      tcr::TaskExecStdinWriteResponse ignored;
      stdin_status = router_->Unary(
          "TaskExecStdinWrite",
          [&](grpc::ClientContext* context) {
            return router_->stub().TaskExecStdinWrite(context, write, &ignored);
          },
          &canceller, milliseconds(60000));
      offset += n;
    } while (stdin_status.ok() && offset < data.size());
    // A command that exits without reading all its stdin makes later writes
    // fail; that is the command's business, not an infrastructure error.
  });

  // Wait: the remote timeout kills the command; the host deadline (timeout
  // plus a grace) stops waiting if the remote kill never shows up.
  const bool has_deadline = exec.timeout.count() > 0;
  const Clock::time_point host_deadline =
      start + exec.timeout + milliseconds(shared_->options.timeout_grace_ms);
  Status wait_status;
  while (true) {
    milliseconds per_call(60000);
    if (has_deadline) {
      auto left = std::chrono::duration_cast<milliseconds>(host_deadline - Clock::now());
      if (left.count() <= 0) {
        raw.host_deadline = true;
        break;
      }
      per_call = std::min(per_call, left);
    }
    tcr::TaskExecWaitRequest wait;
    wait.set_task_id(task_id_);
    wait.set_exec_id(exec_id);
    tcr::TaskExecWaitResponse response;
    wait_status = router_->Unary(
        "TaskExecWait",
        [&](grpc::ClientContext* context) {
          return router_->stub().TaskExecWait(context, wait, &response);
        },
        &canceller, per_call, RetryRule{0, milliseconds(10), milliseconds(10)});
    if (wait_status.ok()) {
      if (response.exit_status_case() == tcr::TaskExecWaitResponse::kSignal) {
        raw.signal = response.signal();
      } else {
        raw.has_code = true;
        raw.code = response.code();
      }
      break;
    }
    if (canceller.cancelled()) {
      raw.cancelled = true;
      break;
    }
    if (wait_status.code() == StatusCode::kDeadlineExceeded) continue;  // long poll ended
    if (wait_status.retryable()) {
      if (!canceller.SleepFor(milliseconds(1000))) {
        raw.cancelled = true;
        break;
      }
      continue;
    }
    break;
  }

  // The streams end once the command's output is drained; give them a
  // bounded time (something in the sandbox may keep a pipe open).
  {
    std::unique_lock<std::mutex> lock(done_mu);
    auto limit = raw.cancelled || raw.host_deadline ? milliseconds(0) : milliseconds(10000);
    if (!done_cv.wait_for(lock, limit, [&] { return readers_done == 2; })) {
      canceller.Cancel();
      if (!raw.cancelled && !raw.host_deadline) raw.streams_left_open = true;
    }
  }
  // Writes still pending after an abandoned wait would only delay the end.
  if (raw.cancelled || raw.host_deadline) canceller.Cancel();
  stdin_thread.join();
  out_thread.join();
  err_thread.join();
  raw.elapsed = Clock::now() - start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) raw.cancelled = true;
  }
  if (raw.cancelled || raw.host_deadline) return raw;
  if (!wait_status.ok()) return wait_status;
  for (const Status& status : stdio_status) {
    if (!status.ok() && status.code() != StatusCode::kCancelled) raw.stdio_status = status;
  }
  return raw;
}

Result<ExecResult> ModalSandbox::Exec(const ExecRequest& request) {
  ExecResult result;
  result.sandbox_id = id_;
  result.notes = notes_;
  if (request.argv.empty()) return InvalidArgumentError("modal: empty argv");
  ExecOutput output(request);  // Its live callback is serialised for the two stream threads.

  RawExec exec;
  exec.argv = request.argv;
  exec.env = env_;
  for (const auto& [key, value] : request.env) exec.env[key] = value;
  SANDRUN_ASSIGN_OR_RETURN(exec.workdir,
                           JoinSandboxPath("cwd", workdir_, request.cwd, EmptySandboxPath::kIsBase));
  exec.stdin_data = request.stdin_data ? &*request.stdin_data : nullptr;
  exec.timeout = request.timeout;
  // The sandbox lifetime bounds every command: its end is the command's
  // timeout, not an infrastructure failure.
  const auto lifetime_left = std::chrono::duration_cast<milliseconds>(expires_ - Clock::now());
  const bool lifetime_bound =
      request.timeout.count() == 0 || lifetime_left < request.timeout;
  if (lifetime_bound) exec.timeout = std::max(lifetime_left, milliseconds(1));
  exec.on_stdout = [&](std::string_view chunk) { output.out().Append(chunk); };
  exec.on_stderr = [&](std::string_view chunk) { output.err().Append(chunk); };
  auto raw = RunRaw(exec);
  if (!raw.ok()) {
    // A sandbox that died before or under the exec shows up as a failed
    // call (its task is gone): the sandbox's end, retryable as such.
    if (auto ended = SandboxEnded(); !ended.empty()) {
      return UnavailableError("modal: sandbox " + id_ + " has ended (" + ended +
                              "): " + raw.status().message());
    }
    return raw.status();
  }
  output.FinishInto(result);
  result.durations.exec_ms = std::chrono::duration_cast<milliseconds>(raw->elapsed).count();

  const bool past_timeout = exec.timeout.count() > 0 && raw->elapsed >= exec.timeout;
  if (raw->cancelled) {
    result.outcome = Outcome::kCancelled;
    result.exit_code = kExitInterrupted;
  } else if (raw->host_deadline) {
    result.outcome = Outcome::kTimedOut;
    result.exit_code = kExitTimedOut;
    result.signal = SIGKILL;
    result.notes.push_back(
        "modal: the remote exec timeout did not end the command within the grace period; "
        "it may run until the sandbox ends");
  } else if (past_timeout && (raw->signal != 0 || (raw->has_code && (raw->code == 124 ||
                                                                     raw->code == 137)))) {
    // Ended by the remote exec timeout (TaskExecStart.timeout_secs; what
    // status Modal reports for it is not documented in modal-labs/modal-client
    // modal_proto/task_command_router.proto, so a signal or the timeout/kill
    // codes count).
    result.outcome = Outcome::kTimedOut;
    result.exit_code = kExitTimedOut;
    result.signal = raw->signal != 0 ? raw->signal : SIGKILL;
  } else if (!raw->has_code) {
    result.outcome = Outcome::kSignaled;
    result.signal = raw->signal;
    result.exit_code = kExitSignalBase + raw->signal;
  } else {
    result.outcome = Outcome::kExited;
    result.exit_code = raw->code;
  }
  if (raw->streams_left_open) {
    result.notes.push_back(
        "modal: output streams stayed open 10 s after the command exited (a background "
        "process holds them?); later output is not captured");
  }
  if (result.outcome == Outcome::kSignaled) {
    // A kill may be the sandbox itself dying (evicted, out of lifetime):
    // that is an infrastructure failure, not the test's.
    if (lifetime_bound && Clock::now() + std::chrono::seconds(1) >= expires_) {
      result.outcome = Outcome::kTimedOut;
      result.exit_code = kExitTimedOut;
    } else if (auto ended = SandboxEnded(); !ended.empty()) {
      return EndedWhileRunning(ended);
    }
  }
  if (result.outcome == Outcome::kTimedOut) {
    result.ended_by = std::string(lifetime_bound ? kEndedByLifetime : kEndedByTimeout);
  }
  if (lifetime_bound && result.outcome == Outcome::kTimedOut) {
    result.notes.push_back("the sandbox lifetime (" + std::to_string(lifetime_.count()) +
                           " s) ended the command");
  }
  if (!raw->stdio_status.ok() && result.outcome != Outcome::kCancelled) {
    // The command ran to an end but part of its output is lost: an
    // infrastructure error (retryable, backend.h), never a silent truncation.
    return UnavailableError("output stream lost: " + raw->stdio_status.message());
  }
  return result;
}

Status ModalSandbox::EndedWhileRunning(const std::string& final_status) const {
  return UnavailableError("modal: sandbox " + id_ + " ended while the command ran (" +
                          final_status + ")");
}

std::string ModalSandbox::SandboxEnded() {
  mc::SandboxWaitRequest request;
  request.set_sandbox_id(id_);
  request.set_timeout(0);
  mc::SandboxWaitResponse response;
  Status status = shared_->control->Unary("SandboxWait", [&](grpc::ClientContext* c) {
    return shared_->control->stub().SandboxWait(c, request, &response);
  });
  if (!status.ok() || !response.has_result() ||
      response.result().status() == mc::GENERIC_STATUS_UNSPECIFIED) {
    return "";
  }
  return GenericStatusName(response.result().status());
}

Status ModalSandbox::FsTool(const json& command, const std::string* stdin_data,
                            const std::function<void(std::string_view)>& on_stdout) {
  RawExec exec;
  exec.argv = {std::string(kFsToolsPath), command.dump()};
  exec.workdir = workdir_;
  exec.stdin_data = stdin_data;
  std::string err;
  exec.on_stdout = on_stdout ? on_stdout : [](std::string_view) {};
  exec.on_stderr = [&](std::string_view chunk) {
    if (err.size() < 65536) err.append(chunk);
  };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(exec));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.stdio_status.ok()) return raw.stdio_status;
  if (raw.has_code && raw.code == 0) return OkStatus();
  std::string op = command.begin().key();
  std::string path = command.begin().value().value("path", "");
  auto parsed = json::parse(err, nullptr, false);
  std::string kind, message = err;
  if (parsed.is_object()) {
    kind = parsed.value("error_kind", "");
    message = parsed.value("message", err);
  }
  std::string text = "modal: " + op + " " + path + ": " + (kind.empty() ? "" : kind + ": ") +
                     Tail(message, 400);
  if (kind == "NotFound") return NotFoundError(text);
  if (kind == "PermissionDenied") return PermissionDeniedError(text);
  if (kind == "PathAlreadyExists") return AlreadyExistsError(text);
  return InternalError(text);
}

Status ModalSandbox::WriteFile(const std::string& path, const std::string& data) {
  return FsTool(json{{"WriteFile", {{"path", path}}}}, &data, {});
}

Status ModalSandbox::MakeDirectory(const std::string& path) {
  return FsTool(json{{"MakeDirectory", {{"path", path}, {"parents", true}}}}, nullptr, {});
}

Status ModalSandbox::RunFileCommand(std::vector<std::string> argv, const std::string& what) {
  RawExec exec;
  exec.argv = std::move(argv);
  exec.workdir = workdir_;
  std::string err;
  exec.on_stdout = [](std::string_view) {};
  exec.on_stderr = [&](std::string_view chunk) { err.append(chunk); };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(exec));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.has_code || raw.code != 0) {
    return InternalError("modal: " + what + " failed: " + Tail(err, 300));
  }
  return OkStatus();
}

Status ModalSandbox::MakeSymlinks(const std::vector<std::string>& pairs) {
  if (pairs.empty()) return OkStatus();
  std::vector<std::string> argv = {
      "/bin/sh", "-c", "while [ $# -gt 1 ]; do ln -s -- \"$1\" \"$2\" || exit 1; shift 2; done",
      "sh"};
  argv.insert(argv.end(), pairs.begin(), pairs.end());
  return RunFileCommand(std::move(argv), "making uploaded symlinks");
}

Status ModalSandbox::Chmod(const std::vector<std::string>& paths) {
  if (paths.empty()) return OkStatus();
  std::vector<std::string> argv = {"chmod", "0755"};
  argv.insert(argv.end(), paths.begin(), paths.end());
  return RunFileCommand(std::move(argv), "chmod 0755");
}

Status ModalSandbox::Put(const FileUpload& upload) {
  std::error_code ec;
  fs::path source(upload.source);
  if (!fs::exists(source, ec)) return NotFoundError("modal: upload source " + upload.source + " does not exist");
  std::string dest = upload.destination.empty() ? source.filename().string() : upload.destination;
  SANDRUN_ASSIGN_OR_RETURN(std::string target,
                           JoinSandboxPath("upload destination", workdir_, dest));
  if (upload.portable) {
    PortableOptions options;
    options.ld_library_path = shared_->options.host_library_path;
    SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan, PlanPortableExecutable(source, options));
    std::vector<std::string> executables;
    for (const auto& file : plan.files) {
      {
        std::lock_guard<std::mutex> lock(portable_mu_);
        if (portable_sent_.count(file.sandbox_path)) continue;
      }
      SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(file.host_path));
      SANDRUN_RETURN_IF_ERROR(MakeDirectory(fs::path(file.sandbox_path).parent_path().string()));
      SANDRUN_RETURN_IF_ERROR(WriteFile(file.sandbox_path, data));
      if (file.executable) executables.push_back(file.sandbox_path);
    }
    SANDRUN_RETURN_IF_ERROR(MakeDirectory(fs::path(target).parent_path().string()));
    SANDRUN_RETURN_IF_ERROR(WriteFile(target, plan.LauncherScript()));
    executables.push_back(target);
    SANDRUN_RETURN_IF_ERROR(Chmod(executables));
    std::lock_guard<std::mutex> lock(portable_mu_);
    for (const auto& file : plan.files) portable_sent_.insert(file.sandbox_path);
    return OkStatus();
  }
  std::vector<std::string> executables;
  auto put_file = [&](const fs::path& host, const std::string& remote) -> Status {
    SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(host));
    SANDRUN_RETURN_IF_ERROR(WriteFile(remote, data));
    auto perms = fs::status(host).permissions();
    if ((perms & fs::perms::owner_exec) != fs::perms::none) executables.push_back(remote);
    return OkStatus();
  };
  if (fs::is_directory(source, ec)) {
    SANDRUN_RETURN_IF_ERROR(MakeDirectory(target));
    std::vector<fs::directory_entry> entries;
    for (fs::recursive_directory_iterator it(source, ec), end; it != end; it.increment(ec)) {
      if (ec) break;
      entries.push_back(*it);
    }
    if (ec) return InternalError("modal: walking " + upload.source + ": " + ec.message());
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.path() < b.path(); });
    // Links are checked before anything is sent, and made last, as links.
    std::vector<std::string> links;  // Pairs: target, sandbox path.
    for (const auto& entry : entries) {
      if (!entry.is_symlink()) continue;
      SANDRUN_RETURN_IF_ERROR(CheckUploadSymlink(source, entry.path()));
      links.push_back(fs::read_symlink(entry.path(), ec).string());
      links.push_back(target + "/" + entry.path().lexically_relative(source).generic_string());
    }
    for (const auto& entry : entries) {
      std::string remote =
          target + "/" + entry.path().lexically_relative(source).generic_string();
      if (entry.is_symlink()) continue;
      if (entry.is_directory()) {
        SANDRUN_RETURN_IF_ERROR(MakeDirectory(remote));
      } else if (entry.is_regular_file()) {
        SANDRUN_RETURN_IF_ERROR(put_file(entry.path(), remote));
      }
    }
    SANDRUN_RETURN_IF_ERROR(MakeSymlinks(links));
  } else {
    SANDRUN_RETURN_IF_ERROR(MakeDirectory(fs::path(target).parent_path().string()));
    SANDRUN_RETURN_IF_ERROR(put_file(source, target));
  }
  return Chmod(executables);
}

// Lists `path` in the sandbox as NUL-separated "<type> <relative path>"
// entries (type f, d or l; the first entry describes `path` itself, as ".").
constexpr const char* kListScript =
    "p=\"$1\"\n"
    "if [ -L \"$p\" ]; then printf 'l .\\0'; exit 0; fi\n"
    "if [ -f \"$p\" ]; then printf 'f .\\0'; exit 0; fi\n"
    "if [ ! -d \"$p\" ]; then echo \"$p: not found\" >&2; exit 3; fi\n"
    "printf 'd .\\0'\n"
    "cd \"$p\" || exit 4\n"
    "for t in d f l; do find . -mindepth 1 -type $t | while IFS= read -r e; do "
    "printf '%s %s\\0' \"$t\" \"${e#./}\"; done; done\n";

Result<std::vector<std::string>> ModalSandbox::Get(const std::string& sandbox_path,
                                                   const fs::path& host_dir) {
  SANDRUN_ASSIGN_OR_RETURN(const std::string remote,
                           JoinSandboxPath("download path", workdir_, sandbox_path));
  const std::string base = fs::path(remote).filename().string();
  if (base.empty() || base == "." || base == "..") {
    return PermissionDeniedError("modal: refusing to download " + sandbox_path +
                                 ": it has no file name to land under " + host_dir.string());
  }
  RawExec list;
  list.argv = {"/bin/sh", "-c", kListScript, "sandrun-list", remote};
  list.workdir = workdir_;
  std::string listing, err;
  list.on_stdout = [&](std::string_view chunk) { listing.append(chunk); };
  list.on_stderr = [&](std::string_view chunk) { err.append(chunk); };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(list));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.stdio_status.ok()) return raw.stdio_status;
  if (raw.has_code && raw.code == 3) return NotFoundError("modal: " + sandbox_path + " not found in the sandbox");
  if (!raw.has_code || raw.code != 0) {
    return InternalError("modal: listing " + sandbox_path + " failed: " + Tail(err, 300));
  }
  std::vector<std::pair<char, std::string>> entries;
  for (std::size_t pos = 0; pos < listing.size();) {
    std::size_t end = listing.find('\0', pos);
    if (end == std::string::npos) end = listing.size();
    std::string item = listing.substr(pos, end - pos);
    pos = end + 1;
    if (item.size() < 3) continue;
    entries.emplace_back(item[0], item.substr(2));
  }
  for (const auto& [type, rel] : entries) {
    if (type == 'l') {
      return PermissionDeniedError("modal: refusing to download " + sandbox_path + ": " +
                                   (rel == "." ? base : base + "/" + rel) +
                                   " is a symlink (it could point outside " + host_dir.string() +
                                   ")");
    }
    if (rel != "." && !IsSafeRelativePath(rel)) {
      return PermissionDeniedError("modal: refusing to download " + sandbox_path +
                                   ": unsafe entry name");
    }
  }
  std::error_code ec;
  fs::create_directories(host_dir, ec);
  std::vector<std::string> written;
  for (const auto& [type, rel] : entries) {
    std::string host_rel = rel == "." ? base : base + "/" + rel;
    fs::path host = host_dir / host_rel;
    if (type == 'd') {
      fs::create_directories(host, ec);
      continue;
    }
    fs::create_directories(host.parent_path(), ec);
    std::ofstream out(host, std::ios::binary | std::ios::trunc);
    if (!out) return InternalError("modal: cannot write " + host.string());
    std::string remote_file = rel == "." ? remote : remote + "/" + rel;
    SANDRUN_RETURN_IF_ERROR(FsTool(json{{"ReadFile", {{"path", remote_file}}}}, nullptr,
                                   [&](std::string_view chunk) {
                                     out.write(chunk.data(),
                                               static_cast<std::streamsize>(chunk.size()));
                                   }));
    out.close();
    if (!out) return InternalError("modal: writing " + host.string() + " failed");
    written.push_back(host_rel);
  }
  std::sort(written.begin(), written.end());
  return written;
}

Status ModalSandbox::Terminate() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) return OkStatus();
    terminated_ = true;
    for (CallCanceller* canceller : active_) canceller->Cancel();
  }
  mc::SandboxTerminateRequest request;
  request.set_sandbox_id(id_);
  mc::SandboxTerminateResponse response;
  Status status = shared_->control->Unary(
      "SandboxTerminate", [&](grpc::ClientContext* context) {
        return shared_->control->stub().SandboxTerminate(context, request, &response);
      });
  if (status.code() == StatusCode::kNotFound) return OkStatus();  // already gone
  return status;
}

class ModalBackend : public Backend {
 public:
  ModalBackend(ModalOptions options, std::map<std::string, std::string> env)
      : options_(std::move(options)), env_(std::move(env)) {}

  std::string_view Name() const override { return "modal"; }
  Capabilities GetCapabilities() const override {
    Capabilities caps;
    caps.isolates_network = true;   // NetworkAccess BLOCKED
    caps.limits_memory = true;      // memory_mb_max = memory_mb
    caps.limits_cpu = true;         // milli_cpu_max = milli_cpu
    caps.supports_gpu = true;
    caps.supports_images = true;
    caps.reports_oom = false;       // an exec's OOM kill is not told apart
    caps.max_parallel = options_.max_parallel;
    return caps;
  }
  Status CheckAvailable() override;
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec& spec) override;
  Result<std::vector<Leftover>> ListLeftovers() override;
  Status RemoveLeftover(const std::string& id) override;
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override;

  std::uint64_t calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return (shared_ ? shared_->control->calls() : 0) + router_calls_.load();
  }
  std::atomic<std::uint64_t> router_calls_{0};

 private:
  Result<std::shared_ptr<Shared>> Connect();
  Result<std::string> ImageId(Shared& shared, const SandboxSpec& spec);
  Result<std::string> VolumeId(Shared& shared);
  Status ResolveSecrets(Shared& shared);

  ModalOptions options_;
  std::map<std::string, std::string> env_;
  std::mutex mu_;
  std::shared_ptr<Shared> shared_;  // Guarded by mu_.
};

Result<std::shared_ptr<Shared>> ModalBackend::Connect() {
  std::lock_guard<std::mutex> lock(mu_);
  if (shared_) return shared_;
  SANDRUN_ASSIGN_OR_RETURN(ModalCredentials creds, LoadModalCredentials(env_));
  if (!options_.server_url.empty() && env_.count("MODAL_SERVER_URL") == 0) {
    creds.server_url = options_.server_url;
  }
  auto shared = std::make_shared<Shared>();
  shared->options = options_;
  shared->environment = options_.environment_set ? options_.environment : creds.environment;
  shared->builder_version = creds.image_builder_version;
  shared->plaintext = creds.server_url.rfind("http://", 0) == 0;
  bool tls = true;
  SANDRUN_RETURN_IF_ERROR(GrpcTarget(creds.server_url, &tls).status());
  shared->control = std::make_shared<ControlPlane>(std::move(creds));
  mc::AppGetOrCreateRequest request;
  request.set_app_name(options_.app_name);
  request.set_environment_name(shared->environment);
  request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  mc::AppGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(shared->control->Unary("AppGetOrCreate", [&](grpc::ClientContext* c) {
    return shared->control->stub().AppGetOrCreate(c, request, &response);
  }));
  shared->app_id = response.app_id();
  shared_ = shared;
  return shared;
}

Status ModalBackend::CheckAvailable() {
  // Missing credentials are kFailedPrecondition, an unreachable server
  // kUnavailable, rejected credentials kPermissionDenied (MapGrpcStatus).
  SANDRUN_RETURN_IF_ERROR(LoadModalCredentials(env_).status());
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  // A cheap authenticated call: the auth token (cached after the first).
  return shared->control->AuthToken().status();
}

Result<std::string> ModalBackend::ImageId(Shared& shared, const SandboxSpec& spec) {
  std::vector<std::string> commands;
  if (!spec.dockerfile.empty()) {
    SANDRUN_ASSIGN_OR_RETURN(commands, DockerfileCommands(spec.dockerfile));
  } else {
    commands = {"FROM " + (spec.image.empty() ? shared.options.default_image : spec.image)};
  }
  std::string key;
  for (const auto& c : commands) key += c + "\n";
  std::string builder_version;
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    auto it = shared.images.find(key);
    if (it != shared.images.end()) return it->second;
    builder_version = shared.builder_version;
  }
  if (builder_version.empty()) {
    mc::EnvironmentGetOrCreateRequest request;
    request.set_deployment_name(shared.environment);
    mc::EnvironmentGetOrCreateResponse response;
    SANDRUN_RETURN_IF_ERROR(shared.control->Unary(
        "EnvironmentGetOrCreate",
        [&](grpc::ClientContext* c) {
          return shared.control->stub().EnvironmentGetOrCreate(c, request, &response);
        },
        nullptr, milliseconds(30000)));
    builder_version = response.metadata().settings().image_builder_version();
    std::lock_guard<std::mutex> lock(shared.mu);
    shared.builder_version = builder_version;
  }
  mc::ImageGetOrCreateRequest request;
  for (const auto& c : commands) request.mutable_image()->add_dockerfile_commands(c);
  request.set_app_id(shared.app_id);
  request.set_builder_version(builder_version);
  mc::ImageGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(shared.control->Unary("ImageGetOrCreate", [&](grpc::ClientContext* c) {
    return shared.control->stub().ImageGetOrCreate(c, request, &response);
  }));
  const std::string image_id = response.image_id();
  mc::GenericResult result = response.result();
  std::string logs;  // kept for the error message of a failed build
  std::string last_entry;
  int stream_failures = 0;
  while (result.status() == mc::GENERIC_STATUS_UNSPECIFIED) {
    grpc::ClientContext context;
    SANDRUN_RETURN_IF_ERROR(shared.control->PrepareStream(&context));
    mc::ImageJoinStreamingRequest join;
    join.set_image_id(image_id);
    join.set_timeout(55);
    join.set_last_entry_id(last_entry);
    auto reader = shared.control->stub().ImageJoinStreaming(&context, join);
    mc::ImageJoinStreamingResponse item;
    bool done = false;
    while (reader->Read(&item)) {
      for (const auto& log : item.task_logs()) {
        logs += log.data();
        if (logs.size() > 65536) logs = logs.substr(logs.size() - 32768);
      }
      if (!item.entry_id().empty()) last_entry = item.entry_id();
      if (item.has_result() && item.result().status() != mc::GENERIC_STATUS_UNSPECIFIED) {
        result = item.result();
        done = true;
      }
      if (item.eof()) break;
    }
    grpc::Status status = reader->Finish();
    if (done) break;
    if (!status.ok()) {
      if (!IsRetryableGrpcCode(status.error_code()) || ++stream_failures > 10) {
        return MapGrpcStatus(status, "ImageJoinStreaming");
      }
      std::this_thread::sleep_for(milliseconds(100 * stream_failures));
    }
  }
  if (result.status() != mc::GENERIC_STATUS_SUCCESS) {
    return FailedPreconditionError(
        "modal: image build " + GenericStatusName(result.status()) + " for '" +
        commands.front() + "'" + (result.exception().empty() ? "" : ": " + result.exception()) +
        (logs.empty() ? "" : "\nbuild log (tail):\n" + Tail(logs, 4000)));
  }
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.images[key] = image_id;
  return image_id;
}

Result<std::string> ModalBackend::VolumeId(Shared& shared) {
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (!shared.volume_id.empty()) return shared.volume_id;
  }
  mc::VolumeGetOrCreateRequest request;
  request.set_deployment_name(shared.options.volume);
  request.set_environment_name(shared.environment);
  request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  request.set_version(mc::VOLUME_FS_VERSION_V2);
  mc::VolumeGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(shared.control->Unary("VolumeGetOrCreate", [&](grpc::ClientContext* c) {
    return shared.control->stub().VolumeGetOrCreate(c, request, &response);
  }));
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.volume_id = response.volume_id();
  return shared.volume_id;
}

Status ModalBackend::ResolveSecrets(Shared& shared) {
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (shared.secrets_resolved) return OkStatus();
  }
  std::vector<std::string> ids;
  for (const auto& name : shared.options.secrets) {
    mc::SecretGetOrCreateRequest request;
    request.set_deployment_name(name);
    request.set_environment_name(shared.environment);
    mc::SecretGetOrCreateResponse response;
    Status status = shared.control->Unary("SecretGetOrCreate", [&](grpc::ClientContext* c) {
      return shared.control->stub().SecretGetOrCreate(c, request, &response);
    });
    if (!status.ok()) return status.WithContext("modal secret '" + name + "'");
    ids.push_back(response.secret_id());
  }
  std::lock_guard<std::mutex> lock(shared.mu);
  shared.secret_ids = ids;
  shared.secrets_resolved = true;
  return OkStatus();
}

Result<std::unique_ptr<Sandbox>> ModalBackend::Create(const SandboxSpec& spec) {
  const auto lifetime = std::chrono::seconds(std::max<std::int64_t>(1, spec.lifetime.count()));
  const Clock::time_point expires = Clock::now() + lifetime;
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  Shared& s = *shared;
  std::string gpu_type;
  int gpu_count = 0;
  if (!spec.gpu.empty()) SANDRUN_RETURN_IF_ERROR(ParseGpuSpec(spec.gpu, &gpu_type, &gpu_count));
  SANDRUN_ASSIGN_OR_RETURN(std::string image_id, ImageId(s, spec));
  SANDRUN_RETURN_IF_ERROR(ResolveSecrets(s));

  SANDRUN_ASSIGN_OR_RETURN(const std::string workdir,
                           JoinSandboxPath("workdir", kDefaultWorkdir, spec.workdir,
                                           EmptySandboxPath::kIsBase));
  mc::SandboxCreateRequest request;
  request.set_app_id(s.app_id);
  mc::Sandbox* def = request.mutable_definition();
  def->set_image_id(image_id);
  for (const auto& id : s.secret_ids) def->add_secret_ids(id);
  mc::Resources* resources = def->mutable_resources();
  if (spec.cpu > 0) {
    auto milli = static_cast<std::uint32_t>(std::llround(spec.cpu * 1000));
    resources->set_milli_cpu(milli);
    resources->set_milli_cpu_max(milli);
  }
  if (spec.memory_mb > 0) {
    resources->set_memory_mb(static_cast<std::uint32_t>(spec.memory_mb));
    resources->set_memory_mb_max(static_cast<std::uint32_t>(spec.memory_mb));
  }
  if (gpu_count > 0) {
    resources->mutable_gpu_config()->set_type(0);
    resources->mutable_gpu_config()->set_gpu_type(gpu_type);
    resources->mutable_gpu_config()->set_count(static_cast<std::uint32_t>(gpu_count));
  }
  def->set_timeout_secs(static_cast<std::uint32_t>(std::max<std::int64_t>(1, spec.lifetime.count())));
  if (s.options.idle_timeout_s > 0) {
    def->set_idle_timeout_secs(static_cast<std::uint32_t>(s.options.idle_timeout_s));
  }
  def->set_workdir(workdir);
  // No volume mounts: the results Volume would let a task read and rewrite
  // every record of the archive. Records and spills reach the Volume only
  // through sandrun's own Volume API calls (modal_archive_store.h).
  mc::NetworkAccess* network = def->mutable_network_access();
  // An allowlist narrows either mode to exactly its CIDRs, as Modal's own
  // cidr_allowlist does; without one, "open" is OPEN and "none" BLOCKED.
  if (!s.options.cidr_allowlist.empty()) {
    network->set_network_access_type(mc::NETWORK_ACCESS_TYPE_ALLOWLIST);
    for (const auto& cidr : s.options.cidr_allowlist) network->add_allowed_cidrs(cidr);
  } else if (spec.network == NetworkMode::kOpen) {
    network->set_network_access_type(mc::NETWORK_ACCESS_TYPE_OPEN);
  } else {
    network->set_network_access_type(mc::NETWORK_ACCESS_TYPE_BLOCKED);
  }
  std::map<std::string, std::string> tags = spec.labels;
  tags["managed-by"] = "sandrun";
  for (auto& [name, value] : OwnerLabels("", lifetime)) tags[name] = value;
  for (const auto& [name, value] : tags) {
    mc::SandboxTag* tag = request.add_tags();
    tag->set_tag_name(name);
    tag->set_tag_value(value);
  }
  mc::SandboxCreateResponse created;
  SANDRUN_RETURN_IF_ERROR(s.control->Unary("SandboxCreate", [&](grpc::ClientContext* c) {
    return s.control->stub().SandboxCreate(c, request, &created);
  }));
  const std::string sandbox_id = created.sandbox_id();
  auto terminate = [&] {
    mc::SandboxTerminateRequest t;
    t.set_sandbox_id(sandbox_id);
    mc::SandboxTerminateResponse ignored;
    s.control->Unary("SandboxTerminate", [&](grpc::ClientContext* c) {
      return s.control->stub().SandboxTerminate(c, t, &ignored);
    }).IgnoreError();
  };

  // The task id appears once the sandbox is scheduled.
  std::string task_id;
  milliseconds poll(50);
  const Clock::time_point give_up = Clock::now() + std::chrono::minutes(5);
  while (task_id.empty()) {
    mc::SandboxGetTaskIdRequest get;
    get.set_sandbox_id(sandbox_id);
    get.set_wait_until_ready(false);
    mc::SandboxGetTaskIdResponse response;
    Status status = s.control->Unary("SandboxGetTaskId", [&](grpc::ClientContext* c) {
      return s.control->stub().SandboxGetTaskId(c, get, &response);
    });
    if (!status.ok()) {
      terminate();
      return status;
    }
    if (response.has_task_result()) {
      terminate();
      return UnavailableError("modal: sandbox " + sandbox_id + " ended before it started: " +
                              GenericStatusName(response.task_result().status()) + " " +
                              response.task_result().exception());
    }
    if (response.has_task_id() && !response.task_id().empty()) {
      task_id = response.task_id();
      break;
    }
    if (Clock::now() > give_up) {
      terminate();
      return DeadlineExceededError("modal: sandbox " + sandbox_id + " was not scheduled in 5 minutes");
    }
    std::this_thread::sleep_for(poll);
    poll = std::min(poll * 2, milliseconds(500));
  }

  auto access = [shared, task_id]() -> Result<mc::TaskGetCommandRouterAccessResponse> {
    mc::TaskGetCommandRouterAccessRequest request;
    request.set_task_id(task_id);
    mc::TaskGetCommandRouterAccessResponse response;
    SANDRUN_RETURN_IF_ERROR(shared->control->Unary(
        "TaskGetCommandRouterAccess", [&](grpc::ClientContext* c) {
          return shared->control->stub().TaskGetCommandRouterAccess(c, request, &response);
        }));
    return response;
  };
  auto first_access = access();
  if (!first_access.ok()) {
    terminate();
    return first_access.status();
  }
  auto router = CommandRouter::Connect(*first_access, s.plaintext, access);
  if (!router.ok()) {
    terminate();
    return router.status();
  }
  std::vector<std::string> notes;
  if (!spec.gpu.empty()) notes.push_back("modal: gpu " + gpu_type + " x" + std::to_string(gpu_count));
  return std::unique_ptr<Sandbox>(new ModalSandbox(shared, sandbox_id, task_id,
                                                   std::move(router).value(), workdir, spec.env,
                                                   std::move(notes), lifetime, expires));
}

Result<std::vector<Leftover>> ModalBackend::ListLeftovers() {
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  std::vector<Leftover> out;
  double before = 0;
  const std::int64_t now = UnixSecondsNow();
  for (int page = 0; page < 1000; ++page) {
    mc::SandboxListRequest request;
    request.set_app_id(shared->app_id);
    request.set_environment_name(shared->environment);
    request.set_include_finished(false);
    if (before > 0) request.set_before_timestamp(before);
    mc::SandboxTag* tag = request.add_tags();
    tag->set_tag_name("managed-by");
    tag->set_tag_value("sandrun");
    mc::SandboxListResponse response;
    SANDRUN_RETURN_IF_ERROR(shared->control->Unary("SandboxList", [&](grpc::ClientContext* c) {
      return shared->control->stub().SandboxList(c, request, &response);
    }));
    if (response.sandboxes().empty()) break;
    for (const auto& info : response.sandboxes()) {
      before = before == 0 ? info.created_at() : std::min(before, info.created_at());
      Leftover l;
      l.id = info.id();
      for (const auto& t : info.tags()) l.labels[t.tag_name()] = t.tag_value();
      // Trust nothing the filter let through by mistake.
      if (l.labels["managed-by"] != "sandrun" ||
          (!info.app_id().empty() && info.app_id() != shared->app_id)) {
        continue;
      }
      ReadOwnerLabels("", now, l);
      l.description = l.id + " run " + l.labels["run"] + " task " + l.labels["task"] +
                      " (owner pid " + l.labels["owner-pid"] + "@" + l.labels["owner-host"] +
                      (l.owner_alive ? " alive" : " gone") + (l.expired ? ", expired" : "") + ")";
      out.push_back(std::move(l));
    }
  }
  return out;
}

Status ModalBackend::RemoveLeftover(const std::string& id) {
  SANDRUN_ASSIGN_OR_RETURN(std::vector<Leftover> ours, ListLeftovers());
  bool found = std::any_of(ours.begin(), ours.end(), [&](const Leftover& l) { return l.id == id; });
  if (!found) {
    return NotFoundError("modal: " + id + " is not a running sandbox tagged managed-by=sandrun in app '" +
                         options_.app_name + "'");
  }
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  mc::SandboxTerminateRequest request;
  request.set_sandbox_id(id);
  mc::SandboxTerminateResponse response;
  return shared->control->Unary("SandboxTerminate", [&](grpc::ClientContext* c) {
    return shared->control->stub().SandboxTerminate(c, request, &response);
  });
}

Result<std::unique_ptr<ArchiveStore>> ModalBackend::OpenArchive() {
  SANDRUN_ASSIGN_OR_RETURN(std::shared_ptr<Shared> shared, Connect());
  SANDRUN_ASSIGN_OR_RETURN(std::string volume_id, VolumeId(*shared));
  return CreateModalArchiveStore(shared->control, volume_id, shared->options.volume);
}

Status StringList(const json& j, const char* key, std::vector<std::string>* out) {
  if (!j.contains(key)) return OkStatus();
  const json& value = j[key];
  if (!value.is_array()) return InvalidArgumentError(std::string("modal: ") + key + " must be a list of strings");
  for (const auto& item : value) {
    if (!item.is_string()) return InvalidArgumentError(std::string("modal: ") + key + " must be a list of strings");
    out->push_back(item.get<std::string>());
  }
  return OkStatus();
}

}  // namespace

Status ValidateCidr(const std::string& cidr) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("modal: invalid CIDR '" + cidr + "' in cidr_allowlist: " + why +
                                " (want ADDRESS/PREFIX, e.g. 203.0.113.0/24 or 2001:db8::/32)");
  };
  std::size_t slash = cidr.find('/');
  if (slash == std::string::npos) return bad("no /PREFIX");
  std::string address = cidr.substr(0, slash);
  std::string prefix = cidr.substr(slash + 1);
  unsigned char buffer[sizeof(struct in6_addr)];
  int max_prefix = 0;
  if (inet_pton(AF_INET, address.c_str(), buffer) == 1) max_prefix = 32;
  else if (inet_pton(AF_INET6, address.c_str(), buffer) == 1) max_prefix = 128;
  else return bad("'" + address + "' is not an IPv4 or IPv6 address");
  int length = -1;
  auto [ptr, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), length);
  if (prefix.empty() || ec != std::errc() || ptr != prefix.data() + prefix.size() || length < 0 ||
      length > max_prefix) {
    return bad("prefix must be 0 to " + std::to_string(max_prefix));
  }
  return OkStatus();
}

Result<ModalOptions> ParseModalOptions(std::string_view section_json) {
  ModalOptions options;
  json j = json::parse(section_json.empty() ? std::string_view("{}") : section_json, nullptr, false);
  if (j.is_discarded()) return InvalidArgumentError("modal: bad config section (not JSON)");
  if (!j.is_object()) return InvalidArgumentError("modal: config section must be an object");
  auto string_key = [&](const char* key, std::string* out) -> Status {
    if (!j.contains(key)) return OkStatus();
    if (!j[key].is_string()) return InvalidArgumentError(std::string("modal: ") + key + " must be a string");
    *out = j[key].get<std::string>();
    return OkStatus();
  };
  auto int_key = [&](const char* key, auto* out, long long min) -> Status {
    if (!j.contains(key)) return OkStatus();
    if (!j[key].is_number_integer() || j[key].get<long long>() < min) {
      return InvalidArgumentError(std::string("modal: ") + key + " must be an integer >= " + std::to_string(min));
    }
    *out = static_cast<std::remove_pointer_t<decltype(out)>>(j[key].get<long long>());
    return OkStatus();
  };
  SANDRUN_RETURN_IF_ERROR(string_key("app_name", &options.app_name));
  if (j.contains("environment")) options.environment_set = true;
  SANDRUN_RETURN_IF_ERROR(string_key("environment", &options.environment));
  SANDRUN_RETURN_IF_ERROR(string_key("volume", &options.volume));
  SANDRUN_RETURN_IF_ERROR(string_key("server_url", &options.server_url));
  SANDRUN_RETURN_IF_ERROR(string_key("default_image", &options.default_image));
  SANDRUN_RETURN_IF_ERROR(StringList(j, "secrets", &options.secrets));
  SANDRUN_RETURN_IF_ERROR(StringList(j, "cidr_allowlist", &options.cidr_allowlist));
  SANDRUN_RETURN_IF_ERROR(int_key("idle_timeout_s", &options.idle_timeout_s, 0));
  SANDRUN_RETURN_IF_ERROR(int_key("max_parallel", &options.max_parallel, 1));
  SANDRUN_RETURN_IF_ERROR(int_key("timeout_grace_ms", &options.timeout_grace_ms, 0));
  for (const auto& cidr : options.cidr_allowlist) SANDRUN_RETURN_IF_ERROR(ValidateCidr(cidr));
  for (const auto& name : options.secrets) {
    bool bad = name.empty() || std::any_of(name.begin(), name.end(), [](char c) {
      return std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c));
    });
    if (bad) return InvalidArgumentError("modal: invalid secret name '" + name + "' (a Modal Secret's name)");
  }
  if (options.app_name.empty()) return InvalidArgumentError("modal: app_name must not be empty");
  if (options.volume.empty()) return InvalidArgumentError("modal: volume must not be empty");
  for (const auto& key : j.items()) {
    static const std::set<std::string> kKnown = {
        "app_name", "environment", "volume", "server_url", "default_image", "secrets",
        "cidr_allowlist", "idle_timeout_s", "max_parallel", "timeout_grace_ms"};
    if (!kKnown.count(key.key())) {
      return InvalidArgumentError("modal: unknown config key '" + key.key() + "'");
    }
  }
  return options;
}

std::unique_ptr<Backend> CreateModalBackend(ModalOptions options,
                                            std::map<std::string, std::string> env) {
  return std::make_unique<ModalBackend>(std::move(options), std::move(env));
}

std::uint64_t ModalCallCount(Backend& backend) {
  auto* modal = dynamic_cast<ModalBackend*>(&backend);
  return modal == nullptr ? 0 : modal->calls();
}

}  // namespace modal

void RegisterModalBackend(BackendRegistry& registry) {
  BackendInfo info;
  info.name = "modal";
  info.description =
      "Modal sandboxes over Modal's gRPC API (credentials from MODAL_TOKEN_* or ~/.modal.toml)";
  info.auto_rank = 30;  // "auto": remote capacity first
  info.flags = {
      {"secret", "secrets",
       "Attach this Modal Secret, by name, to every sandbox (repeatable; modal only)",
       /*list=*/true, {"SANDRUN_MODAL_SECRETS"}},
      {"allow-cidr", "cidr_allowlist",
       "Let sandboxes reach this CIDR, and only the listed ones (repeatable; modal only)",
       /*list=*/true, {"SANDRUN_MODAL_CIDR_ALLOWLIST"}},
      {"modal-environment", "environment", "Modal environment to use (modal only; -e is --env)",
       /*list=*/false, {"SANDRUN_MODAL_ENVIRONMENT", "MODAL_ENVIRONMENT"},
       /*every_command=*/true},
  };
  registry
      .Register(std::move(info),
                [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                  SANDRUN_ASSIGN_OR_RETURN(modal::ModalOptions options,
                                           modal::ParseModalOptions(context.section_json));
                  if (auto path = context.env.find("LD_LIBRARY_PATH"); path != context.env.end()) {
                    options.host_library_path = path->second;
                  }
                  return modal::CreateModalBackend(std::move(options), context.env);
                })
      .IgnoreError();
}

}  // namespace sandrun
