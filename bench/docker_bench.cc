// sandrun_bench_docker: the timing driver behind bench/run-docker.
//
//   sandrun_bench_docker cli --sandrun BIN --image IMG [--docker CLI]
//                            [--runs N] [--warmup N]
//       Interleaves `BIN exec --backend docker --image IMG -- true` with
//       `CLI run --rm --network none IMG true` (A, B, A, B, ...) and prints
//       median, p90, min and mean of each and their ratio (goal: <= 0.7).
//   sandrun_bench_docker warm --image IMG --container ID [--docker CLI]
//                             [--runs N] [--warmup N]
//       Through the library (no CLI process, no archive): creates one Docker
//       sandbox of IMG with the docker backend that sandrun.json / DOCKER_HOST
//       configure, then interleaves Sandbox::Exec(`true`) in it with
//       `CLI exec ID true` into a container the caller started (goal: <= 0.5).
//       Also prints how long Create and Terminate of the sandbox took.
//   sandrun_bench_docker batch --sandrun BIN --image IMG [--tasks N]
//                              [--jobs J] [--sleep S] [--repeat R]
//       Writes a batch file of N tasks `sleep S` to the working directory and
//       times `BIN batch FILE --backend docker --image IMG -j J`, R times,
//       against the ideal ceil(N / J) * S seconds; interleaved with the same
//       work done by N `CLI run --rm ... sleep S`, J at a time, as a
//       reference, and with the machine's CPU use during each.
//
// Every mode prints a human table and `result:` lines for scripts. The
// archive, outbox and volume are whatever the caller's XDG_* variables and
// sandrun.json (found from the working directory) say; bench/run-docker
// points them at scratch places.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "sandrun/backend.h"
#include "sandrun/config.h"
#include "sandrun/registry.h"
#include "sandrun/result.h"
#include "sandrun/spec.h"

namespace {

using sandrun_bench::Clock;
using sandrun_bench::ExitedZero;
using sandrun_bench::Fixed;
using sandrun_bench::Ms;
using sandrun_bench::Run;
using sandrun_bench::Stats;
using sandrun_bench::Summarize;

struct Options {
  std::string sandrun;
  std::string image;
  std::string container;
  std::string docker = "docker";
  int runs = 15;
  int warmup = 2;
  int tasks = 64;
  int jobs = 32;
  int sleep_s = 1;
  int repeat = 1;
};

void PrintRow(const std::string& name, const Stats& s) {
  std::printf("  %-58s %8s %8s %8s %8s\n", name.c_str(), Ms(s.median).c_str(),
              Ms(s.p90).c_str(), Ms(s.min).c_str(), Ms(s.mean).c_str());
}

void PrintHeader(int runs, int warmup) {
  std::cout << runs << " interleaved runs each (" << warmup
            << " warm-up pairs discarded), wall-clock ms:\n"
            << "  " << std::string(58, ' ') << "   median      p90      min     mean\n";
}

// Prints the ratio lines and the `result:` line shared by `cli` and `warm`.
void PrintComparison(const std::string& tag, const Stats& sa, const Stats& sb, double goal) {
  double ratio = sa.median / sb.median;
  std::cout << "  ratio (sandrun / docker CLI): median " << Fixed(ratio, 2) << ", p90 "
            << Fixed(sa.p90 / sb.p90, 2) << "; goal <= " << Fixed(goal, 1) << ": "
            << (ratio <= goal ? "met" : "NOT met") << "\n";
  std::cout << "result: " << tag << " sandrun_median_ms=" << Ms(sa.median)
            << " sandrun_p90_ms=" << Ms(sa.p90) << " cli_median_ms=" << Ms(sb.median)
            << " cli_p90_ms=" << Ms(sb.p90) << " median_ratio=" << Fixed(ratio, 3)
            << " goal=" << Fixed(goal, 1) << " met=" << (ratio <= goal ? 1 : 0) << "\n";
}

int Cli(const Options& o) {
  const std::vector<std::string> via_sandrun{o.sandrun, "exec",    "--backend", "docker",
                                             "--image", o.image,   "--",        "true"};
  const std::vector<std::string> via_cli{o.docker, "run",   "--rm", "--network",
                                         "none",   o.image, "true"};
  std::vector<double> a, b;
  for (int i = 0; i < o.warmup + o.runs; ++i) {
    auto first = Run(via_sandrun, false);
    auto second = Run(via_cli, false);
    if (!first || !second) return 1;
    if (!ExitedZero(*first)) {
      std::cerr << "sandrun exec --backend docker -- true failed (status " << first->status
                << ")\n";
      return 1;
    }
    if (!ExitedZero(*second)) {
      std::cerr << o.docker << " run --rm failed (status " << second->status << ")\n";
      return 1;
    }
    if (i < o.warmup) continue;
    a.push_back(first->seconds);
    b.push_back(second->seconds);
  }
  Stats sa = Summarize(a), sb = Summarize(b);
  std::cout << "one-shot `true` in a fresh container, ";
  PrintHeader(o.runs, o.warmup);
  PrintRow("sandrun exec --backend docker --image " + o.image + " -- true", sa);
  PrintRow("docker run --rm --network none " + o.image + " true", sb);
  PrintComparison("cli", sa, sb, 0.7);
  return 0;
}

int Warm(const Options& o) {
  sandrun::ConfigInputs inputs;
  inputs.env = sandrun::ProcessEnvironment();
  inputs.cwd = std::filesystem::current_path();
  auto config = sandrun::LoadConfig(inputs);
  if (!config.ok()) {
    std::cerr << "config: " << config.status().message() << "\n";
    return 1;
  }
  sandrun::BackendRegistry registry;
  sandrun::RegisterAllBackends(registry, sandrun::ProcessEnvironment());
  auto backend = registry.Create("docker", *config);
  if (!backend.ok()) {
    std::cerr << "docker backend: " << backend.status().message() << "\n";
    return 1;
  }
  sandrun::Status available = (*backend)->CheckAvailable();
  if (!available.ok()) {
    std::cerr << available.message() << "\n";
    return 1;
  }
  sandrun::SandboxSpec spec;
  spec.image = o.image;
  spec.lifetime = std::chrono::seconds(600);
  spec.labels = {{"managed-by", "sandrun"}, {"run", "bench-docker-warm"}, {"task", "true"}};
  auto create_start = Clock::now();
  auto sandbox = (*backend)->Create(spec);
  double create_s = std::chrono::duration<double>(Clock::now() - create_start).count();
  if (!sandbox.ok()) {
    std::cerr << "create: " << sandbox.status().message() << "\n";
    return 1;
  }
  sandrun::ExecRequest request;
  request.argv = {"true"};
  const std::vector<std::string> via_cli{o.docker, "exec", o.container, "true"};
  std::vector<double> a, b;
  int failures = 0;
  for (int i = 0; i < o.warmup + o.runs; ++i) {
    auto start = Clock::now();
    auto result = (*sandbox)->Exec(request);
    double exec_s = std::chrono::duration<double>(Clock::now() - start).count();
    auto second = Run(via_cli, false);
    if (!second) {
      failures = 1;
      break;
    }
    if (!result.ok() || !sandrun::Passed(*result)) {
      std::cerr << "Sandbox::Exec(true) failed: "
                << (result.ok() ? result->error : result.status().message()) << "\n";
      failures = 1;
      break;
    }
    if (!ExitedZero(*second)) {
      std::cerr << o.docker << " exec " << o.container << " true failed (status "
                << second->status << ")\n";
      failures = 1;
      break;
    }
    if (i < o.warmup) continue;
    a.push_back(exec_s);
    b.push_back(second->seconds);
  }
  auto terminate_start = Clock::now();
  sandrun::Status terminated = (*sandbox)->Terminate();
  double terminate_s = std::chrono::duration<double>(Clock::now() - terminate_start).count();
  if (!terminated.ok()) std::cerr << "terminate: " << terminated.message() << "\n";
  if (failures != 0) return 1;

  Stats sa = Summarize(a), sb = Summarize(b);
  std::cout << "`true` in an already running container, ";
  PrintHeader(o.runs, o.warmup);
  PrintRow("Sandbox::Exec(true) (library, " + o.image + ")", sa);
  PrintRow("docker exec CONTAINER true", sb);
  PrintComparison("warm", sa, sb, 0.5);
  std::cout << "  around it: Backend::Create " << Ms(create_s) << " ms (create + start),"
            << " Sandbox::Terminate " << Ms(terminate_s) << " ms (forced remove)\n";
  std::cout << "result: warm_lifecycle create_ms=" << Ms(create_s)
            << " terminate_ms=" << Ms(terminate_s) << "\n";
  return 0;
}

// Jiffies the whole machine spent busy and in total, from /proc/stat.
struct CpuTimes {
  double busy = 0, total = 0;
};

CpuTimes ReadCpu() {
  std::ifstream stat("/proc/stat");
  std::string cpu;
  double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
  CpuTimes t;
  t.busy = user + nice + system + irq + softirq + steal;
  t.total = t.busy + idle + iowait;
  return t;
}

// The share of all cores that were busy between two readings, in percent.
double BusyPercent(const CpuTimes& before, const CpuTimes& after) {
  double total = after.total - before.total;
  return total > 0 ? 100.0 * (after.busy - before.busy) / total : 0;
}

// Runs `count` copies of argv, at most `parallel` at a time; the wall time,
// or nullopt when one could not be started or did not exit 0.
std::optional<double> RunMany(const std::vector<std::string>& argv, int count, int parallel) {
  auto start = Clock::now();
  int started = 0, running = 0, failed = 0;
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  while (started < count || running > 0) {
    while (started < count && running < parallel) {
      posix_spawn_file_actions_t actions;
      posix_spawn_file_actions_init(&actions);
      posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
      posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
      posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
      pid_t pid = 0;
      int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
      posix_spawn_file_actions_destroy(&actions);
      if (rc != 0) {
        std::cerr << "cannot run " << argv[0] << ": " << std::strerror(rc) << "\n";
        ++failed;
        break;
      }
      ++started;
      ++running;
    }
    if (running == 0) break;
    int status = 0;
    pid_t done = wait(&status);
    if (done < 0) {
      if (errno == EINTR) continue;
      break;
    }
    --running;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  if (failed > 0) {
    std::cerr << failed << " of " << count << " `" << argv[0] << " " << argv[1]
              << "` failed\n";
    return std::nullopt;
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int Batch(const Options& o) {
  const std::string file = "bench-sleep-tasks.json";
  {
    std::ofstream out(file);
    out << "[\n";
    for (int i = 0; i < o.tasks; ++i) {
      out << "  {\"id\": \"sleep-" << i << "\", \"command\": [\"sleep\", \"" << o.sleep_s
          << "\"]}" << (i + 1 < o.tasks ? "," : "") << "\n";
    }
    out << "]\n";
    if (!out) {
      std::cerr << "cannot write " << file << "\n";
      return 1;
    }
  }
  const double ideal = std::ceil(static_cast<double>(o.tasks) / o.jobs) * o.sleep_s;
  const std::vector<std::string> argv{o.sandrun, "batch",  file, "--backend", "docker",
                                      "--image", o.image,  "-j", std::to_string(o.jobs)};
  // The same work with the docker CLI, as a reference for what the engine
  // itself manages on this machine: N `docker run --rm`, J at a time.
  const std::vector<std::string> cli{o.docker, "run",   "--rm",  "--network",
                                     "none",   o.image, "sleep", std::to_string(o.sleep_s)};
  std::vector<double> walls, cli_walls, busy, cli_busy;
  for (int i = 0; i < o.repeat; ++i) {
    CpuTimes before = ReadCpu();
    auto done = Run(argv, false);
    CpuTimes after = ReadCpu();
    if (!done) return 1;
    if (!ExitedZero(*done)) {
      std::cerr << "sandrun batch failed (status " << done->status << ")\n";
      return 1;
    }
    walls.push_back(done->seconds);
    busy.push_back(BusyPercent(before, after));
    before = ReadCpu();
    auto reference = RunMany(cli, o.tasks, o.jobs);
    after = ReadCpu();
    if (!reference) return 1;
    cli_walls.push_back(*reference);
    cli_busy.push_back(BusyPercent(before, after));
    std::cout << "  run " << (i + 1) << ": sandrun batch " << Fixed(done->seconds, 2)
              << " s (CPU " << Fixed(busy.back(), 0) << "% busy); " << o.tasks
              << " x docker run --rm, " << o.jobs << " at a time, "
              << Fixed(*reference, 2) << " s (CPU " << Fixed(cli_busy.back(), 0)
              << "% busy)\n";
  }
  Stats s = Summarize(walls), c = Summarize(cli_walls);
  std::cout << o.tasks << " tasks of `sleep " << o.sleep_s << "`, -j " << o.jobs << ", "
            << o.repeat << " run(s) each, interleaved; CPU = share of all "
            << std::thread::hardware_concurrency() << " cores busy (whole machine):\n"
            << "  sandrun batch:                 median wall " << Fixed(s.median, 2)
            << " s, min " << Fixed(s.min, 2) << " s, CPU " << Fixed(Summarize(busy).median, 0)
            << "% busy\n"
            << "  docker run --rm (reference):   median wall " << Fixed(c.median, 2)
            << " s, min " << Fixed(c.min, 2) << " s, CPU "
            << Fixed(Summarize(cli_busy).median, 0) << "% busy\n"
            << "  ideal " << Fixed(ideal, 0) << " s: sandrun takes " << Fixed(s.median / ideal, 1)
            << "x the ideal (" << Fixed(s.median - ideal, 2) << " s over), "
            << Fixed(s.median / c.median, 2) << "x the CLI reference\n";
  std::cout << "result: batch tasks=" << o.tasks << " jobs=" << o.jobs
            << " median_wall_s=" << Fixed(s.median, 3) << " min_wall_s=" << Fixed(s.min, 3)
            << " cpu_busy_pct=" << Fixed(Summarize(busy).median, 0)
            << " cli_median_wall_s=" << Fixed(c.median, 3)
            << " cli_cpu_busy_pct=" << Fixed(Summarize(cli_busy).median, 0)
            << " ideal_s=" << Fixed(ideal, 0) << "\n";
  return 0;
}

int Usage() {
  std::cerr
      << "usage: sandrun_bench_docker cli --sandrun BIN --image IMG [--docker CLI] [--runs N] "
         "[--warmup N]\n"
         "       sandrun_bench_docker warm --image IMG --container ID [--docker CLI] "
         "[--runs N] [--warmup N]\n"
         "       sandrun_bench_docker batch --sandrun BIN --image IMG [--tasks N] [--jobs J] "
         "[--sleep S] [--repeat R]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string mode = argv[1];
  Options o;
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) return Usage();
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--sandrun") o.sandrun = value;
    else if (flag == "--image") o.image = value;
    else if (flag == "--container") o.container = value;
    else if (flag == "--docker") o.docker = value;
    else if (flag == "--runs") o.runs = std::atoi(value.c_str());
    else if (flag == "--warmup") o.warmup = std::atoi(value.c_str());
    else if (flag == "--tasks") o.tasks = std::atoi(value.c_str());
    else if (flag == "--jobs") o.jobs = std::atoi(value.c_str());
    else if (flag == "--sleep") o.sleep_s = std::atoi(value.c_str());
    else if (flag == "--repeat") o.repeat = std::atoi(value.c_str());
    else return Usage();
  }
  if (o.image.empty() || o.runs <= 0 || o.warmup < 0) return Usage();
  if (mode == "cli" && !o.sandrun.empty()) return Cli(o);
  if (mode == "warm" && !o.container.empty()) return Warm(o);
  if (mode == "batch" && !o.sandrun.empty() && o.tasks > 0 && o.jobs > 0 && o.sleep_s > 0 &&
      o.repeat > 0) {
    return Batch(o);
  }
  return Usage();
}
