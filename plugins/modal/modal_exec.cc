// ModalSandbox::Exec and the raw executor under it: a command started
// through the task command router, its stdin written, its stdout and stderr
// read (resumed at their offsets when a stream breaks), its end waited for.
#include <signal.h>

#include <algorithm>
#include <condition_variable>
#include <thread>

#include "modal_sandbox.h"
#include "sandrun/output_collector.h"
#include "sandrun/util.h"

namespace sandrun::modal {
namespace {

constexpr std::size_t kStdinChunk = 1 << 20;
constexpr int kStdioRetries = 10;
// A TaskExecPoll not answered within this means the router stopped
// answering. At the host deadline it ends before the engine's own (timeout
// + 5 s) ends the sandbox, with the default timeout_grace_ms of 2 s.
constexpr milliseconds kPollDeadline{1500};

}  // namespace

Status ModalSandbox::ReadStdio(CallCanceller* canceller, const std::string& exec_id,
                               tcr::TaskExecStdioFileDescriptor fd,
                               const std::function<void(std::string_view)>& sink) {
  std::uint64_t offset = 0;
  int failures = 0;
  bool refreshed = false;
  milliseconds delay(10);
  while (true) {
    grpc::ClientContext context;
    const std::string jwt_sent = router_->PrepareStream(&context);
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
    // An expired router token: fetch a fresh one once and resume, as the
    // SDKs' stdio readers do (go/task_command_router_client.go).
    if (status.error_code() == grpc::StatusCode::UNAUTHENTICATED && !refreshed) {
      refreshed = true;
      if (router_->RefreshAccess(jwt_sent)) continue;
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
  // TaskExecWait and TaskExecPoll answer alike: a code or a signal.
  auto take_exit = [&](const auto& answer) {
    if (answer.has_signal()) {
      raw.signal = answer.signal();
    } else {
      raw.has_code = true;
      raw.code = answer.code();
    }
  };
  // One call about this exec to the router (TaskExecWait or TaskExecPoll,
  // which take and answer alike), not retried here; true when answered OK.
  auto ask = [&](const char* rpc, auto method, auto request, auto* answer,
                 milliseconds deadline) {
    request.set_task_id(task_id_);
    request.set_exec_id(exec_id);
    wait_status = router_->Unary(
        rpc,
        [&](grpc::ClientContext* context) {
          return (router_->stub().*method)(context, request, answer);
        },
        &canceller, deadline, RetryRule{0, milliseconds(10), milliseconds(10)});
    return wait_status.ok();
  };
  using Router = tcr::TaskCommandRouter::Stub;
  while (true) {
    milliseconds per_call(60000);
    // One reading of the clock: a per-call deadline of 0 would mean none.
    const milliseconds left =
        std::chrono::duration_cast<milliseconds>(host_deadline - Clock::now());
    const bool at_deadline = has_deadline && left.count() <= 0;
    if (has_deadline && !at_deadline) per_call = std::min(per_call, left);
    // An answer that is an error (from the wait or the poll) ends up below.
    bool answered_error = false;
    if (!at_deadline) {
      tcr::TaskExecWaitResponse response;
      if (ask("TaskExecWait", &Router::TaskExecWait, tcr::TaskExecWaitRequest(), &response,
              per_call)) {
        take_exit(response);
        break;
      }
      if (canceller.cancelled()) {
        raw.cancelled = true;
        break;
      }
      if (wait_status.code() != StatusCode::kDeadlineExceeded) {
        answered_error = true;
      } else if (has_deadline && Clock::now() >= host_deadline) {
        continue;  // The long poll ran into the host deadline: poll there.
      }
    }
    if (!answered_error) {
      // After a long poll that ended unanswered, and at the host deadline,
      // one TaskExecPoll answered within kPollDeadline tells a command still
      // running from a router that stopped answering, whose command may
      // well have ended (an infrastructure error, not a timeout).
      tcr::TaskExecPollResponse polled;
      const bool answered =
          ask("TaskExecPoll", &Router::TaskExecPoll, tcr::TaskExecPollRequest(), &polled,
              kPollDeadline);
      if (canceller.cancelled()) {
        raw.cancelled = true;
        break;
      }
      if (answered &&
          polled.exit_status_case() != tcr::TaskExecPollResponse::EXIT_STATUS_NOT_SET) {
        take_exit(polled);
        break;
      }
      if (wait_status.code() == StatusCode::kDeadlineExceeded) {
        raw.router_silent = true;
        break;
      }
      answered_error = !answered;
      if (!answered_error) {  // Still running.
        if (at_deadline) {
          raw.host_deadline = true;
          break;
        }
        continue;
      }
    }
    // A router that answers with an error: retried while retryable (the
    // sandbox's end is looked up by Exec).
    if (!wait_status.retryable()) break;
    if (at_deadline) {
      raw.host_deadline = true;
      break;
    }
    if (!canceller.SleepFor(milliseconds(1000))) {
      raw.cancelled = true;
      break;
    }
  }

  // The streams end once the command's output is drained; give them a
  // bounded time (something in the sandbox may keep a pipe open).
  {
    std::unique_lock<std::mutex> lock(done_mu);
    const bool abandoned = raw.cancelled || raw.host_deadline || raw.router_silent;
    auto limit = abandoned ? milliseconds(0) : milliseconds(10000);
    if (!done_cv.wait_for(lock, limit, [&] { return readers_done == 2; })) {
      canceller.Cancel();
      if (!abandoned) raw.streams_left_open = true;
    }
  }
  // Writes still pending after an abandoned wait would only delay the end.
  if (raw.cancelled || raw.host_deadline || raw.router_silent) canceller.Cancel();
  stdin_thread.join();
  out_thread.join();
  err_thread.join();
  raw.elapsed = Clock::now() - start;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (terminated_) raw.cancelled = true;
  }
  if (raw.cancelled || raw.host_deadline || raw.router_silent) return raw;
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
  if (raw->router_silent && !raw->cancelled) {
    // Past a sandbox's lifetime its router is gone with it: the lifetime
    // ended the command. Otherwise how the command ended is unknown.
    if (!lifetime_bound) return RouterStoppedAnswering();
    raw->host_deadline = true;
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

Status ModalSandbox::RouterStoppedAnswering() const {
  return UnavailableError("modal: the command router of sandbox " + id_ +
                          " stopped answering (a wait and then a poll of the command went "
                          "unanswered), so how the command ended is unknown");
}

Status ModalSandbox::EndedWhileRunning(const std::string& final_status) const {
  return UnavailableError("modal: sandbox " + id_ + " ended while the command ran (" +
                          final_status + ")");
}

std::string ModalSandbox::SandboxEnded() {
  auto response = WaitSandbox(*shared_->control, id_, 0);
  if (!response.ok() || !response->has_result() ||
      response->result().status() == mc::GenericResult::GENERIC_STATUS_UNSPECIFIED) {
    return "";
  }
  return GenericStatusName(response->result().status());
}

}  // namespace sandrun::modal
