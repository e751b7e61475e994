// The fake's task command router: exec start, stdio read, stdin write, wait
// and poll; commands are local process groups, and the in-sandbox file tool
// is emulated in-process.
#include "fake_modal_impl.h"

#include "fake_modal_sdk_fields.pb.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace sandrun::modal::fake {

// Router auth: the bearer JWT of the task's sandbox.
grpc::Status FakeModalServer::Impl::RouterSandbox(grpc::ServerContext* context,
                                                  const std::string& task_id,
                                                  std::shared_ptr<FakeSandbox>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, sandbox] : sandboxes_) {
    if (sandbox->task_id != task_id) continue;
    if (sandbox->jwt.empty() || Metadata(context, "authorization") != "Bearer " + sandbox->jwt) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad router token");
    }
    if (!sandbox->running) return grpc::Status(grpc::StatusCode::NOT_FOUND, "task has finished");
    if (grpc::Status ready = RouterReady(*sandbox); !ready.ok()) return ready;
    *out = sandbox;
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::NOT_FOUND, "task not found");
}

grpc::Status FakeModalServer::Impl::TaskExecStart(grpc::ServerContext* context,
                                                  const tcr::TaskExecStartRequest* request,
                                                  tcr::TaskExecStartResponse*) {
  FAKE_ENTER("TaskExecStart", false, false);
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.exec_start_calls;
  }
  std::shared_ptr<FakeSandbox> sandbox;
  grpc::Status auth = RouterSandbox(context, request->task_id(), &sandbox);
  if (!auth.ok()) return auth;
  if (request->exec_id().empty() || request->command_args().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "exec_id and command_args are required");
  }
  if (request->stdout_config() != tcr::TASK_EXEC_STDOUT_CONFIG_PIPE ||
      request->stderr_config() != tcr::TASK_EXEC_STDERR_CONFIG_PIPE) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the fake expects stdout and stderr PIPE (0 means DEVNULL)");
  }
  std::unique_lock<std::mutex> lock(mu_);
  // Container mode: the router answers once the sandbox's container is up.
  exec_cv_.wait_for(lock, std::chrono::seconds(120), [&] {
    return sandbox->container_state != ContainerState::kStarting || !sandbox->running;
  });
  if (!sandbox->running) return grpc::Status(grpc::StatusCode::NOT_FOUND, "task has finished");
  {
    std::string seen;
    for (const auto& arg : request->command_args()) seen += arg + " ";
    for (const auto& [k, v] : request->env()) seen += k + "=" + v + " ";
    exec_requests_.push_back(seen);
  }
  if (sandbox->execs.count(request->exec_id())) {
    return Leave("TaskExecStart", grpc::Status::OK);  // idempotent by exec id
  }
  auto exec = std::make_shared<Exec>();
  exec->id = request->exec_id();
  fs::path dir = sandbox->root / ".execs" / exec->id;
  std::error_code ec;
  fs::create_directories(dir, ec);
  exec->stdout_path = (dir / "stdout").string();
  exec->stderr_path = (dir / "stderr").string();
  std::vector<std::string> argv(request->command_args().begin(), request->command_args().end());
  std::string workdir = request->has_workdir() ? request->workdir() : sandbox->workdir;
  const std::uint32_t timeout_secs =
      request->has_timeout_secs() && !ignore_exec_timeouts_ ? request->timeout_secs() : 0;
  // Variables: secret ids, then secret sources (the SDKs' env), then env.
  std::map<std::string, std::string> env;
  for (const auto& id : request->secret_ids()) {
    if (grpc::Status found = SecretEnvLocked(id, &env); !found.ok()) return found;
  }
  sandrun::fake_modal::TaskExecStartSecretSources extra;
  extra.ParseFromString(request->SerializeAsString());
  if (grpc::Status sources = AddSecretSourcesLocked(extra.secret_sources(), &env); !sources.ok()) {
    return sources;
  }
  for (const auto& [k, v] : request->env()) env[k] = v;
  if (argv[0] == kFsTools) {
    StartFsToolLocked(*sandbox, exec, argv);
  } else if (options_.containers) {
    exec->signal_from_code = true;
    SpawnLocked(exec, ContainerExecArgv(*sandbox, argv, workdir, env, timeout_secs),
                HostEnvironment(), "/", false, 0);
  } else {
    // No workdir: the sandbox's private directory, never the host's "/".
    std::string cwd = workdir == "/" ? sandbox->root.string() : MapPath(*sandbox, workdir);
    StartProcessLocked(*sandbox, exec, argv, cwd, env, timeout_secs);
  }
  sandbox->execs[exec->id] = exec;
  return Leave("TaskExecStart", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::FindExec(grpc::ServerContext* context,
                                             const std::string& task_id,
                                             const std::string& exec_id,
                                             std::shared_ptr<Exec>* out) {
  std::shared_ptr<FakeSandbox> sandbox;
  grpc::Status auth = RouterSandbox(context, task_id, &sandbox);
  if (!auth.ok()) return auth;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sandbox->execs.find(exec_id);
  if (it == sandbox->execs.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "exec not found");
  *out = it->second;
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TaskExecStdioRead(grpc::ServerContext* context,
                                                      const tcr::TaskExecStdioReadRequest* request,
                                                      grpc::ServerWriter<tcr::TaskExecStdioReadResponse>* writer) {
  FAKE_ENTER("TaskExecStdioRead", false, false);
  std::shared_ptr<Exec> exec;
  grpc::Status found = FindExec(context, request->task_id(), request->exec_id(), &exec);
  if (!found.ok()) return found;
  std::uint64_t cut_after = 0;
  bool cut = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cut_streams_ > 0) {
      --cut_streams_;
      cut = true;
      cut_after = cut_bytes_;
    }
  }
  const std::string path = request->file_descriptor() == tcr::TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT
                               ? exec->stdout_path
                               : exec->stderr_path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return grpc::Status(grpc::StatusCode::INTERNAL, "cannot open output");
  std::uint64_t offset = request->offset();
  std::uint64_t sent = 0;
  std::string buffer(kChunk, '\0');
  grpc::Status result = grpc::Status::OK;
  while (true) {
    if (context->IsCancelled()) {
      result = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      break;
    }
    bool finished;
    {
      std::lock_guard<std::mutex> lock(mu_);
      finished = exec->finished;
    }
    std::size_t want = kChunk;
    if (cut && cut_after - sent < want) want = static_cast<std::size_t>(cut_after - sent);
    ssize_t n = want == 0 ? 0 : ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
    if (cut && sent >= cut_after) {
      result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "injected stream cut");
      break;
    }
    if (n > 0) {
      if (grpc::Status thawed = WhileFrozen(context); !thawed.ok()) {
        result = thawed;
        break;
      }
      tcr::TaskExecStdioReadResponse response;
      response.set_data(buffer.data(), static_cast<std::size_t>(n));
      if (!writer->Write(response)) {
        result = grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
        break;
      }
      offset += static_cast<std::uint64_t>(n);
      sent += static_cast<std::uint64_t>(n);
      continue;
    }
    if (finished) {  // everything written before the exit was sent
      result = WhileFrozen(context);
      break;
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  ::close(fd);
  return result;
}

grpc::Status FakeModalServer::Impl::WriteStdin(Exec& exec, std::uint64_t offset,
                                               std::string_view data, bool eof) {
  std::lock_guard<std::mutex> lock(exec.stdin_mu);
  if (exec.stdin_closed) {
    if (data.empty() && eof) return grpc::Status::OK;
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "stdin is closed");
  }
  if (offset > exec.stdin_offset) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "stdin offset skips data");
  }
  // A retried write: skip what already arrived.
  std::size_t skip = static_cast<std::size_t>(exec.stdin_offset - offset);
  data = skip >= data.size() ? std::string_view() : data.substr(skip);
  int fd = exec.is_virtual ? exec.write_file_fd : exec.stdin_fd;
  std::size_t done = 0;
  while (done < data.size() && fd >= 0) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the command closed its stdin; drop the rest
    done += static_cast<std::size_t>(n);
  }
  exec.stdin_offset += data.size();
  if (!data.empty()) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.stdin_bytes += static_cast<std::int64_t>(data.size());
  }
  if (eof) {
    exec.stdin_closed = true;
    if (fd >= 0) ::close(fd);
    if (exec.is_virtual) {
      exec.write_file_fd = -1;
      std::lock_guard<std::mutex> lock(mu_);
      exec.finished = true;
      exec.has_code = true;
      exec_cv_.notify_all();
    } else {
      exec.stdin_fd = -1;
    }
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TaskExecStdinWrite(grpc::ServerContext* context,
                                                       const tcr::TaskExecStdinWriteRequest* request,
                                                       tcr::TaskExecStdinWriteResponse*) {
  FAKE_ENTER("TaskExecStdinWrite", false, false);
  std::shared_ptr<Exec> exec;
  grpc::Status found = FindExec(context, request->task_id(), request->exec_id(), &exec);
  if (!found.ok()) return found;
  return WriteStdin(*exec, request->offset(), request->data(), request->eof());
}

grpc::Status FakeModalServer::Impl::TaskExecStdinWriteStream(
    grpc::ServerContext* context, grpc::ServerReader<tcr::TaskExecStdinWriteStreamRequest>* reader,
    tcr::TaskExecStdinWriteStreamResponse*) {
  FAKE_ENTER("TaskExecStdinWriteStream", false, false);
  tcr::TaskExecStdinWriteStreamRequest message;
  if (!reader->Read(&message) || !message.has_start()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be start");
  }
  std::shared_ptr<Exec> exec;
  grpc::Status found = FindExec(context, message.start().task_id(), message.start().exec_id(), &exec);
  if (!found.ok()) return found;
  std::uint64_t offset = message.start().offset();
  while (reader->Read(&message)) {
    if (message.has_start()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "start may come only first");
    }
    const bool eof = message.has_end();
    grpc::Status written = WriteStdin(*exec, offset, message.data(), eof);
    if (!written.ok()) return written;
    offset += message.data().size();
    if (eof) break;
  }
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TaskExecStdinStatus(grpc::ServerContext* context,
                                                        const tcr::TaskExecStdinStatusRequest* request,
                                                        tcr::TaskExecStdinStatusResponse* response) {
  FAKE_ENTER("TaskExecStdinStatus", false, false);
  std::shared_ptr<Exec> exec;
  grpc::Status found = FindExec(context, request->task_id(), request->exec_id(), &exec);
  if (!found.ok()) return found;
  std::lock_guard<std::mutex> lock(exec->stdin_mu);
  response->set_num_bytes_written(exec->stdin_offset);
  response->set_closed(exec->stdin_closed);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::WaitFor(grpc::ServerContext* context,
                                            const std::string& task_id,
                                            const std::string& exec_id, bool block,
                                            bool* has_code, int* code, int* signal,
                                            bool* finished) {
  std::shared_ptr<Exec> exec;
  grpc::Status found = FindExec(context, task_id, exec_id, &exec);
  if (!found.ok()) return found;
  std::unique_lock<std::mutex> lock(mu_);
  while (block && !exec->finished) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    exec_cv_.wait_for(lock, milliseconds(50));
  }
  *finished = exec->finished;
  *has_code = exec->has_code;
  *code = exec->code;
  *signal = exec->signal;
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::TaskExecWait(grpc::ServerContext* context,
                                                 const tcr::TaskExecWaitRequest* request,
                                                 tcr::TaskExecWaitResponse* response) {
  FAKE_ENTER("TaskExecWait", false, false);
  bool has_code, finished;
  int code, signal;
  grpc::Status status =
      WaitFor(context, request->task_id(), request->exec_id(), true, &has_code, &code, &signal, &finished);
  if (!status.ok()) return status;
  if (grpc::Status thawed = WhileFrozen(context); !thawed.ok()) return thawed;
  if (has_code) {
    response->set_code(code);
  } else {
    response->set_signal(signal);
  }
  return Leave("TaskExecWait", grpc::Status::OK);
}

grpc::Status FakeModalServer::Impl::TaskExecPoll(grpc::ServerContext* context,
                                                 const tcr::TaskExecPollRequest* request,
                                                 tcr::TaskExecPollResponse* response) {
  FAKE_ENTER("TaskExecPoll", false, false);
  bool has_code, finished;
  int code, signal;
  grpc::Status status = WaitFor(context, request->task_id(), request->exec_id(), false, &has_code,
                                &code, &signal, &finished);
  if (!status.ok()) return status;
  if (grpc::Status thawed = WhileFrozen(context); !thawed.ok()) return thawed;
  if (finished) {
    if (has_code) {
      response->set_code(code);
    } else {
      response->set_signal(signal);
    }
  }
  return grpc::Status::OK;
}

FakeSandbox* FakeModalServer::Impl::ByTaskLocked(const std::string& task_id) {
  for (const auto& [id, sandbox] : sandboxes_) {
    if (sandbox->task_id == task_id && sandbox->running) return sandbox.get();
  }
  return nullptr;
}

// Paths under /sandrun/ live in the sandbox's root directory.
std::string FakeModalServer::Impl::MapPath(const FakeSandbox& sandbox, const std::string& path) {
  if (path == "/sandrun" || path.rfind("/sandrun/", 0) == 0) {
    return (sandbox.root.string() + path);
  }
  return path;
}

void FakeModalServer::Impl::FinishVirtual(Exec& exec, int code, const std::string& err_json) {
  if (!err_json.empty()) {
    std::ofstream(exec.stderr_path, std::ios::binary) << err_json;
  }
  exec.finished = true;
  exec.has_code = true;
  exec.code = code;
  exec.stdin_closed = true;
  exec_cv_.notify_all();
}

std::string FakeModalServer::Impl::FsError(const std::string& kind, const std::string& message) {
  return json{{"error_kind", kind}, {"message", message}, {"detail", nullptr}}.dump();
}

void FakeModalServer::Impl::StartFsToolLocked(FakeSandbox& sandbox,
                                              const std::shared_ptr<Exec>& exec_ptr,
                                              const std::vector<std::string>& argv) {
  Exec& exec = *exec_ptr;
  exec.is_virtual = true;
  std::ofstream(exec.stdout_path).close();
  std::ofstream(exec.stderr_path).close();
  json command = argv.size() > 1 ? json::parse(argv[1], nullptr, false) : json();
  if (!command.is_object() || command.size() != 1) {
    FinishVirtual(exec, 2, FsError("NotSupported", "bad command"));
    return;
  }
  const std::string op = command.begin().key();
  const json& args = command.begin().value();
  if (options_.containers) {
    std::vector<std::string> tool_argv;
    bool takes_stdin = false;
    if (!ContainerFsToolArgv(sandbox, op, args, &tool_argv, &takes_stdin)) {
      return FinishVirtual(exec, 2, FsError("NotSupported", op + " is not emulated by the fake"));
    }
    exec.is_virtual = false;
    exec.fs_tool = true;
    SpawnLocked(exec_ptr, tool_argv, HostEnvironment(), "/", false, 0);
    if (!takes_stdin && exec.stdin_fd >= 0) {
      ::close(exec.stdin_fd);
      exec.stdin_fd = -1;
    }
    return;
  }
  const std::string path = MapPath(sandbox, args.value("path", ""));
  std::error_code ec;
  if (op == "ReadFile") {
    if (!fs::exists(path, ec)) return FinishVirtual(exec, 1, FsError("NotFound", path + " not found"));
    if (fs::is_directory(path, ec)) return FinishVirtual(exec, 1, FsError("IsDirectory", "is a directory"));
    exec.stdout_path = path;  // the file itself is the output
    FinishVirtual(exec, 0, "");
  } else if (op == "WriteFile") {
    if (fs::is_directory(path, ec)) return FinishVirtual(exec, 1, FsError("IsDirectory", "is a directory"));
    fs::create_directories(fs::path(path).parent_path(), ec);  // "created if needed"
    exec.write_file_fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (exec.write_file_fd < 0) {
      return FinishVirtual(exec, 1, FsError(errno == ENOENT ? "NotFound" : "PermissionDenied",
                                            std::strerror(errno)));
    }
    // Finishes when stdin reaches EOF.
  } else if (op == "MakeDirectory") {
    if (args.value("parents", false)) {
      fs::create_directories(path, ec);
    } else {
      fs::create_directory(path, ec);
    }
    if (ec) return FinishVirtual(exec, 1, FsError("NotFound", ec.message()));
    FinishVirtual(exec, 0, "");
  } else {
    FinishVirtual(exec, 2, FsError("NotSupported", op + " is not emulated by the fake"));
  }
}

void FakeModalServer::Impl::StartProcessLocked(FakeSandbox& sandbox,
                                               const std::shared_ptr<Exec>& exec,
                                               std::vector<std::string> argv,
                                               const std::string& cwd,
                                               const std::map<std::string, std::string>& env,
                                               std::uint32_t timeout_secs) {
  for (auto& arg : argv) arg = MapPath(sandbox, arg);
  // A minimal environment, as a container's: never the host's variables.
  std::error_code ec;
  fs::create_directories(sandbox.root / "home", ec);
  fs::create_directories(sandbox.root / "tmp", ec);
  std::map<std::string, std::string> merged = {
      {"PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
      {"HOME", (sandbox.root / "home").string()},
      {"TMPDIR", (sandbox.root / "tmp").string()},
      {"LANG", "C.UTF-8"},
  };
  for (const auto& [k, v] : sandbox.secret_env) merged[k] = v;
  for (const auto& [k, v] : env) merged[k] = v;
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  const bool block_network = sandbox.network_type == 2 || sandbox.network_type == 3;
  SpawnLocked(exec, argv, env_strings, cwd, block_network, timeout_secs);
}

std::vector<std::string> FakeModalServer::Impl::HostEnvironment() {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

void FakeModalServer::Impl::SpawnLocked(const std::shared_ptr<Exec>& exec,
                                        const std::vector<std::string>& argv_in,
                                        const std::vector<std::string>& env_in,
                                        const std::string& cwd, bool block_network,
                                        std::uint32_t timeout_secs) {
  // Everything the child needs, prepared before fork.
  std::vector<std::string> argv = argv_in, env_strings = env_in;
  std::vector<char*> envp, args;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  for (auto& s : argv) args.push_back(s.data());
  args.push_back(nullptr);
  const std::string not_found = argv[0] + ": not found\n";
  const std::string denied = argv[0] + ": Permission denied\n";
  const std::string bad_cwd = "cannot enter " + cwd + "\n";

  int out = ::open(exec->stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  // A file-tool op's own stderr is kept apart: the tool's answer on stderr
  // is only its JSON error, written when the op ends (FsToolResult).
  const std::string err_path = exec->fs_tool ? exec->stderr_path + ".raw" : exec->stderr_path;
  int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int in[2];
  if (out < 0 || err < 0 || ::pipe2(in, O_CLOEXEC) != 0) {
    if (out >= 0) ::close(out);
    if (err >= 0) ::close(err);
    exec->finished = true;
    exec->has_code = true;
    exec->code = 125;
    return;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(in[0], 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (block_network) {
      if (::unshare(CLONE_NEWNET) == 0) {
        // Bring up lo so local-only programs behave; nothing else exists.
        int s = ::socket(AF_INET, SOCK_DGRAM, 0);
        if (s >= 0) {
          struct ifreq ifr;
          std::memset(&ifr, 0, sizeof ifr);
          std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
          if (::ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
            ifr.ifr_flags |= IFF_UP;
            ::ioctl(s, SIOCSIFFLAGS, &ifr);
          }
          ::close(s);
        }
      } else {
        static const char msg[] = "fake modal: cannot block the network (unshare failed)\n";
        ::write(2, msg, sizeof msg - 1);
        ::_exit(125);
      }
    }
    if (::chdir(cwd.c_str()) != 0) {
      ::write(2, bad_cwd.data(), bad_cwd.size());
      ::_exit(125);
    }
    ::execvpe(args[0], args.data(), envp.data());
    int e = errno;
    if (e == ENOENT) {
      ::write(2, not_found.data(), not_found.size());
      ::_exit(127);
    }
    ::write(2, denied.data(), denied.size());
    ::_exit(126);
  }
  ::close(in[0]);
  ::close(out);
  ::close(err);
  if (pid < 0) {
    ::close(in[1]);
    exec->finished = true;
    exec->has_code = true;
    exec->code = 125;
    return;
  }
  ::setpgid(pid, pid);
  exec->pid = pid;
  exec->stdin_fd = in[1];
  if (!exec->fs_tool) ++stats_.exec_processes_started;
  threads_.emplace_back([this, exec, pid] {
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    std::lock_guard<std::mutex> lock(mu_);
    exec->finished = true;
    if (WIFSIGNALED(status)) {
      exec->signal = WTERMSIG(status);
    } else if (int code = WEXITSTATUS(status);
               exec->signal_from_code && code > 128 && code <= 128 + 31) {
      exec->signal = code - 128;  // `docker exec` reports death by signal N as 128+N
    } else {
      exec->has_code = true;
      exec->code = code;
    }
    if (exec->fs_tool) FsToolResult(*exec);
    exec_cv_.notify_all();
  });
  if (timeout_secs > 0) {
    threads_.emplace_back([this, exec, pid, timeout_secs] {
      std::unique_lock<std::mutex> lock(mu_);
      exec_cv_.wait_for(lock, std::chrono::seconds(timeout_secs), [&] { return exec->finished; });
      if (!exec->finished) ::kill(-pid, SIGKILL);  // the whole process group
    });
  }
}

}  // namespace sandrun::modal::fake
