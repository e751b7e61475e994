// Helpers shared by the benchmark drivers in bench/: spawn a command with its
// stdio on /dev/null and time it, summarise samples, format numbers.
// Header-only; each driver is one translation unit.
#ifndef SANDRUN_BENCH_BENCH_UTIL_H_
#define SANDRUN_BENCH_BENCH_UTIL_H_

#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace sandrun_bench {

using Clock = std::chrono::steady_clock;

struct Finished {
  int status = 0;
  double seconds = 0;
  long maxrss_kib = 0;  // wait4: peak over the child and the descendants it reaped
  long hwm_kib = 0;     // the child's own VmHWM, last seen before it exited
};

/// The process's own peak RSS from /proc, or 0 once it is gone.
inline long ReadVmHwm(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtol(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

/// Spawns argv (looked up on PATH) with stdin, stdout and stderr on /dev/null
/// and waits for it. With `sample_hwm`, polls the child's VmHWM every 5 ms
/// while it runs.
inline std::optional<Finished> Run(const std::vector<std::string>& argv, bool sample_hwm) {
  std::vector<std::string> copy = argv;
  std::vector<char*> args;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);

  Finished done;
  pid_t pid = 0;
  auto start = Clock::now();
  int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::cerr << "cannot run " << argv[0] << ": " << std::strerror(rc) << "\n";
    return std::nullopt;
  }
  rusage usage{};
  int status = 0;
  if (sample_hwm) {
    while (wait4(pid, &status, WNOHANG, &usage) == 0) {
      done.hwm_kib = std::max(done.hwm_kib, ReadVmHwm(pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  } else {
    while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
    }
  }
  done.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  done.status = status;
  done.maxrss_kib = usage.ru_maxrss;
  return done;
}

/// True when a Run() ended with exit code 0.
inline bool ExitedZero(const Finished& done) {
  return WIFEXITED(done.status) && WEXITSTATUS(done.status) == 0;
}

struct Stats {
  double median = 0, p90 = 0, min = 0, mean = 0;
};

/// Nearest-rank percentiles of `samples` (seconds). `samples` must not be empty.
inline Stats Summarize(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  auto rank = [&](double p) {
    std::size_t index =
        static_cast<std::size_t>(p * static_cast<double>(samples.size()) + 0.999999);
    return samples[std::clamp<std::size_t>(index, 1, samples.size()) - 1];
  };
  Stats s;
  s.median = rank(0.5);
  s.p90 = rank(0.9);
  s.min = samples.front();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) /
           static_cast<double>(samples.size());
  return s;
}

inline std::string Fixed(double value, int digits) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

/// Seconds as milliseconds with two decimals.
inline std::string Ms(double seconds) { return Fixed(seconds * 1000.0, 2); }

}  // namespace sandrun_bench

#endif  // SANDRUN_BENCH_BENCH_UTIL_H_
