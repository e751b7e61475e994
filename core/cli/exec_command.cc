// `sandrun exec`: one command in one sandbox, output streamed live, the
// command's exit code returned (124 timeout, 125 sandrun error, 128+N signal).
// With --exit-like-command (the CTest adapter passes it) a command killed by
// a signal ends sandrun by the same signal, so CTest reports
// "***Exception: SegFault" as for a local test.
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <sstream>

#include "commands.h"
#include "console_listener.h"
#include "run_support.h"
#include "sandrun/batch_file.h"
#include "sandrun/file_util.h"
#include "sandrun/interrupts.h"
#include "sandrun/spec.h"
#include "sandrun/util.h"
#include "service.h"

namespace sandrun::cli {
namespace {

/// A task id from any name (a CTest test name such as "Suite/Param.Case/0"
/// or "tool pass"): characters an id cannot hold become '_'.
std::string TaskIdFromName(const std::string& name) {
  std::string id = name.substr(0, 128);
  for (char& c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') c = '_';
  }
  if (id == "." || id == "..") id = "_";
  return id;
}

/// Ends this process by `signal`, as the command in the sandbox ended: no
/// core dump of sandrun itself, the default action restored, the signal
/// unblocked. Returns only when the signal does not end a process (then the
/// caller exits with 128+N).
void ExitBySignal(int signal) {
  std::fflush(stdout);
  std::fflush(stderr);
  struct rlimit no_core {};
  setrlimit(RLIMIT_CORE, &no_core);
  struct sigaction action {};
  action.sa_handler = SIG_DFL;
  sigemptyset(&action.sa_mask);
  sigaction(signal, &action, nullptr);
  sigset_t only;
  sigemptyset(&only);
  sigaddset(&only, signal);
  sigprocmask(SIG_UNBLOCK, &only, nullptr);
  raise(signal);
}

/// The whole of `sandrun exec` but the end: returns the exit code, and sets
/// `end_by_signal` when sandrun should end by the command's signal instead
/// (after everything here, the archive included, has been closed).
/// The task run by the service at `socket` (service.h): its record, or
/// nullopt when no service answers or it will not run this task (then the
/// caller runs it, and a note says why). A run the service could not start
/// ends here as it would without one.
Result<std::optional<TaskRecord>> RunThroughService(const std::string& socket, Task task,
                                            const Config& config, const CliContext& context,
                                            const std::string& run_group, int run_group_owner_pid,
                                            bool live_output) {
  // The service runs elsewhere: host paths must not depend on our cwd.
  for (auto& upload : task.sandbox.uploads) {
    upload.source = std::filesystem::absolute(upload.source).string();
  }
  if (!task.sandbox.dockerfile.empty()) {
    task.sandbox.dockerfile = std::filesystem::absolute(task.sandbox.dockerfile).string();
  }
  task.exec.on_output = nullptr;
  ServiceRequestOptions options;
  options.run_group = run_group;
  options.run_group_owner_pid = run_group_owner_pid;
  options.retries = config.retries;
  options.command_line = context.command_line;
  options.labels = config.labels;
  ServedExec served = ExecThroughService(socket, task, options, config, live_output);
  switch (served.kind) {
    case ServedExec::Kind::kDone:
      return std::optional<TaskRecord>(std::move(served.record));
    case ServedExec::Kind::kFailed:
      return Status(static_cast<StatusCode>(served.status_code), served.message);
    case ServedExec::Kind::kNotServed:
      break;
  }
  PrintError("note: " + served.message + "; running the task here");
  return std::optional<TaskRecord>();
}

int RunExec(const std::vector<std::string>& args, CliContext& context, int& end_by_signal) {
  // Everything after "--" is the command, untouched by option parsing.
  auto dashdash = std::find(args.begin(), args.end(), "--");
  std::vector<std::string> own(args.begin(), dashdash);
  std::vector<std::string> command;
  if (dashdash != args.end()) command.assign(dashdash + 1, args.end());

  cxxopts::Options options("sandrun exec", "Run one command in a sandbox.\n"
                                           "usage: sandrun exec [options] -- CMD [ARGS...]");
  AddConfigOptions(options, context);
  options.add_options("Exec")
      ("e,env", "Set K=V in the sandbox (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("upload", "Copy SRC[:DST] into the sandbox (repeatable)", cxxopts::value<std::vector<std::string>>())
      ("upload-exe", "Copy a host executable with its shared libraries (repeatable)",
       cxxopts::value<std::vector<std::string>>())
      ("download", "Copy PATH back as an artifact afterwards (repeatable)",
       cxxopts::value<std::vector<std::string>>())
      ("download-to", "Copy PATH back to HOST_PATH on this host too, as PATH:HOST_PATH "
                      "(repeatable; PATH has no ':'; HOST_PATH relative to the current "
                      "directory, replaced; symlinks in a tree are left out)",
       cxxopts::value<std::vector<std::string>>())
      ("workdir", "Working directory inside the sandbox", cxxopts::value<std::string>())
      ("dockerfile", "Build the image from this Dockerfile", cxxopts::value<std::string>())
      ("upload-command", "The command is a host executable even at an absolute path: "
                         "upload it with its shared libraries and run the copy")
      ("name", "Test name for the record (default: $SANDRUN_NAME, else exec)",
       cxxopts::value<std::string>())
      ("i,interactive", "Pass sandrun's standard input to the command")
      ("exit-like-command", "A command killed by signal N ends sandrun by signal N "
                            "(no core dump) instead of exiting 128+N, as CTest expects")
      ("default-isolation", "The isolation when none is configured (sandbox; "
                            "sandrun_discover_tests passes process)", cxxopts::value<std::string>())
      ("service", "Run the task through the sandrun service at this unix socket (warm "
                  "sandboxes shared with the other execs it serves; default: $SANDRUN_SERVICE); "
                  "without one answering, run it here", cxxopts::value<std::string>())
      ("json", "Print the record as JSON instead of streaming output");
  AddRunGroupOptions(options,
                     "Add this command to the run of group G, shared by every sandrun with the "
                     "same G on this host (default: $SANDRUN_RUN_GROUP)",
                     "Without a run group: share the run of the process that started sandrun "
                     "(one run per ctest invocation)");
  auto parsed = ParseOrThrow(options, own);
  if (!parsed) return 0;
  if (command.empty()) throw UsageError{"no command given: sandrun exec [options] -- CMD [ARGS...]"};
  Config config = LoadConfigOrThrow(*parsed, context);

  Task task = TaskFromConfig(config);
  if (parsed->count("default-isolation") && config.isolation.empty()) {
    auto isolation = IsolationFromName((*parsed)["default-isolation"].as<std::string>());
    if (!isolation) throw UsageError{"--default-isolation must be sandbox or process"};
    task.isolation = *isolation;
  }
  // Any text names the record (CTest names have spaces and '/'); the task id
  // is that name made safe for archive paths. SANDRUN_NAME lets a launcher
  // that cannot change the command line (CTest's TEST_LAUNCHER) name it.
  std::string name = "exec";
  if (parsed->count("name")) {
    name = (*parsed)["name"].as<std::string>();
  } else if (auto it = context.env.find("SANDRUN_NAME"); it != context.env.end() && !it->second.empty()) {
    name = it->second;
  }
  if (name.empty()) throw UsageError{"--name must not be empty"};
  task.id = TaskIdFromName(name);
  task.test_name = name;
  task.exec.argv = command;
  if (parsed->count("env")) {
    Status env = ParseEnvArgs((*parsed)["env"].as<std::vector<std::string>>(), task.exec.env);
    if (!env.ok()) throw UsageError{env.message()};
  }
  if (parsed->count("upload")) {
    for (const auto& u : (*parsed)["upload"].as<std::vector<std::string>>()) {
      task.sandbox.uploads.push_back(ParseUploadArg(u));
    }
  }
  if (parsed->count("upload-exe")) {
    for (const auto& u : (*parsed)["upload-exe"].as<std::vector<std::string>>()) {
      FileUpload upload = ParseUploadArg(u);
      upload.portable = true;
      task.sandbox.uploads.push_back(upload);
    }
  }
  // A relative command path (./build/my_test) names a file on this host; in
  // a fresh sandbox it would name nothing, so it goes up with its libraries
  // to the same relative path, unless the user uploads it already.
  // --upload-command says the same of an absolute path (a CMake target's
  // file); the copy runs as ./NAME in the sandbox's working directory.
  std::error_code ec;
  if (parsed->count("upload-command")) {
    std::string& host_program = task.exec.argv[0];
    if (!std::filesystem::is_regular_file(host_program, ec)) {
      throw UsageError{"--upload-command: '" + host_program + "' is not a file on this host"};
    }
    if (host_program[0] == '/') {
      std::string copy = std::filesystem::path(host_program).filename().string();
      task.sandbox.uploads.push_back(FileUpload{host_program, copy, true});
      host_program = "./" + copy;
    }
  }
  const std::string& program = task.exec.argv[0];
  if (program.find('/') != std::string::npos && program[0] != '/' &&
      std::filesystem::is_regular_file(program, ec)) {
    std::string destination = std::filesystem::path(program).lexically_normal().string();
    bool already = std::any_of(task.sandbox.uploads.begin(), task.sandbox.uploads.end(),
                               [&](const FileUpload& u) {
                                 auto lands = UploadDestination(u);
                                 return lands.ok() && *lands == destination;
                               });
    if (!already && destination.rfind("..", 0) != 0) {
      task.sandbox.uploads.push_back(FileUpload{program, destination, true});
    }
  }
  if (parsed->count("download")) task.downloads = (*parsed)["download"].as<std::vector<std::string>>();
  if (parsed->count("download-to")) {
    for (const auto& pair : (*parsed)["download-to"].as<std::vector<std::string>>()) {
      auto colon = pair.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == pair.size()) {
        throw UsageError{"--download-to expects PATH:HOST_PATH, got '" + pair + "'"};
      }
      std::string path = pair.substr(0, colon);
      if (std::find(task.downloads.begin(), task.downloads.end(), path) == task.downloads.end()) {
        task.downloads.push_back(path);
      }
      std::filesystem::path host_path = pair.substr(colon + 1);
      Status target = CheckCopyTarget(host_path);
      if (!target.ok()) throw UsageError{"--download-to: " + target.message()};
      if (task.host_copies.count(path)) {
        throw UsageError{"--download-to: '" + path + "' is given twice"};
      }
      task.host_copies[path] = std::filesystem::absolute(host_path);
    }
  }
  if (parsed->count("workdir")) task.sandbox.workdir = (*parsed)["workdir"].as<std::string>();
  if (parsed->count("dockerfile")) task.sandbox.dockerfile = (*parsed)["dockerfile"].as<std::string>();
  if (parsed->count("interactive")) {
    task.exec.stdin_data = std::string(std::istreambuf_iterator<char>(std::cin), {});
  }
  if (config.timeout_s < 0) throw UsageError{"--timeout must be positive"};
  Status valid = ValidateTask(task);
  if (!valid.ok()) throw UsageError{valid.message()};

  bool json = parsed->count("json") > 0;
  if (!json) {
    auto write_mutex = std::make_shared<std::mutex>();
    task.exec.on_output = [write_mutex](StreamKind kind, std::string_view chunk) {
      std::lock_guard lock(*write_mutex);
      WriteAll(kind == StreamKind::kStdout ? STDOUT_FILENO : STDERR_FILENO, chunk);
    };
  }

  // One ctest invocation (or CI job) is one run in the archive.
  int run_group_owner_pid = 0;
  const std::string run_group = RunGroupOf(*parsed, context, &run_group_owner_pid);
  InstallInterruptHandlers();
  std::string service;
  if (parsed->count("service")) {
    service = (*parsed)["service"].as<std::string>();
  } else if (auto it = context.env.find("SANDRUN_SERVICE"); it != context.env.end()) {
    service = it->second;
  }
  std::optional<TaskRecord> served;
  if (!service.empty()) {
    auto through = RunThroughService(service, task, config, context, run_group,
                                     run_group_owner_pid, !json);
    if (!through.ok()) return RunNotStarted(through.status());
    served = std::move(through).value();
  }
  std::optional<RunOutcome> outcome;
  if (!served) {
    RunSetup setup = SetUpRunOrThrow(*parsed, context, config, /*task_count=*/1);
    setup.options.run_group = run_group;
    setup.options.run_group_owner_pid = run_group_owner_pid;
    Engine engine(setup.candidates);
    engine.AddListener(std::make_shared<ConsoleListener>(
        stderr, ConsoleListener::Options{false, false, false}));
    auto ran = engine.Run({task}, setup.options, InterruptFlag());
    if (!ran.ok()) return RunNotStarted(ran.status());
    outcome = std::move(ran).value();
  }
  const TaskRecord& record = served ? *served : outcome->tasks.front();
  if (json) {
    std::cout << ToJson(record) << "\n";
  }
  const ExecResult& result = record.result;
  for (const auto& note : result.notes) PrintError("note: " + note);
  switch (result.outcome) {
    case Outcome::kTimedOut:
      if (result.ended_by == kEndedByLifetime) {  // A note above has said why.
        PrintError("timed out (" + record.backend + " sandbox " + record.sandbox_id + ")");
      } else {
        PrintError("timed out after " + FormatDuration(task.exec.timeout.count()) + " (" +
                   record.backend + " sandbox " + record.sandbox_id + ")");
      }
      break;
    case Outcome::kInfraError:
      PrintError(record.backend + " failed: " + result.error);
      break;
    case Outcome::kOomKilled:
      PrintError("killed: out of memory (limit " + std::to_string(task.sandbox.memory_mb) + " MiB)");
      break;
    case Outcome::kCancelled:
      PrintError("cancelled");
      break;
    case Outcome::kSignaled:
      PrintError("killed by signal " + SignalText(result.signal));
      break;
    default: break;
  }
  if (result.stdout_stream.truncated || result.stderr_stream.truncated) {
    PrintError("note: output longer than the record's cap; the full streams are in run " +
               record.run_id + " (sandrun results fetch " + record.run_id + " -o DIR)");
  }
  if (result.outcome == Outcome::kSignaled && parsed->count("exit-like-command")) {
    end_by_signal = result.signal;
  }
  return ExitCodeOf(result);
}

}  // namespace

int ExecCommand(const std::vector<std::string>& args, CliContext& context) {
  int end_by_signal = 0;
  int code = RunExec(args, context, end_by_signal);
  if (end_by_signal != 0) ExitBySignal(end_by_signal);
  return code;
}

}  // namespace sandrun::cli
