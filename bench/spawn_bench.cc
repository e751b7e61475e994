// sandrun_bench_spawn: the timing and memory driver behind bench/run-foundation.
//
//   sandrun_bench_spawn latency --sandrun BIN [--runs N] [--warmup N]
//       Interleaves `BIN exec --backend local -- true` with spawning `true`
//       directly (A, B, A, B, ...) so both see the same machine noise, and
//       prints the median, p90, min and mean of each and their ratio.
//   sandrun_bench_spawn memory --sandrun BIN --bytes N
//       Runs `BIN exec --backend local -- head -c N /dev/zero` with stdout on
//       /dev/null and prints sandrun's peak resident memory.
//
// Both modes print a human table and one `result:` line per figure for
// scripts. sandrun's archive and outbox go wherever the caller's
// XDG_DATA_HOME / XDG_STATE_HOME point (the script uses a scratch dir).
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "bench_util.h"

namespace {

using sandrun_bench::Fixed;
using sandrun_bench::Ms;
using sandrun_bench::Run;
using sandrun_bench::Stats;
using sandrun_bench::Summarize;

int Latency(const std::string& sandrun, int runs, int warmup) {
  const std::vector<std::string> via_sandrun{sandrun, "exec", "--backend", "local", "--", "true"};
  const std::vector<std::string> direct{"true"};
  std::vector<double> a, b;
  for (int i = 0; i < warmup + runs; ++i) {
    auto first = Run(via_sandrun, false);
    auto second = Run(direct, false);
    if (!first || !second) return 1;
    if (!WIFEXITED(first->status) || WEXITSTATUS(first->status) != 0) {
      std::cerr << "sandrun exec -- true failed (status " << first->status << ")\n";
      return 1;
    }
    if (i < warmup) continue;
    a.push_back(first->seconds);
    b.push_back(second->seconds);
  }
  Stats sa = Summarize(a), sb = Summarize(b);
  std::cout << "spawn latency, " << runs << " interleaved runs each (" << warmup
            << " warm-up pairs discarded), wall-clock ms:\n"
            << "  command                                  median      p90      min     mean\n";
  auto row = [](const std::string& name, const Stats& s) {
    std::printf("  %-38s %8s %8s %8s %8s\n", name.c_str(), Ms(s.median).c_str(), Ms(s.p90).c_str(),
                Ms(s.min).c_str(), Ms(s.mean).c_str());
  };
  row("sandrun exec --backend local -- true", sa);
  row("true (posix_spawn + wait)", sb);
  std::cout << "  ratio (sandrun / direct): median " << Fixed(sa.median / sb.median, 1) << "x, p90 "
            << Fixed(sa.p90 / sb.p90, 1) << "x; sandrun adds " << Ms(sa.median - sb.median)
            << " ms at the median\n";
  std::cout << "result: latency sandrun_median_ms=" << Ms(sa.median) << " sandrun_p90_ms="
            << Ms(sa.p90) << " direct_median_ms=" << Ms(sb.median) << " direct_p90_ms="
            << Ms(sb.p90) << " median_ratio=" << Fixed(sa.median / sb.median, 1) << "\n";
  return 0;
}

int Memory(const std::string& sandrun, long long bytes) {
  std::vector<std::string> argv{sandrun, "exec", "--backend", "local", "--",
                                "head", "-c", std::to_string(bytes), "/dev/zero"};
  auto done = Run(argv, true);
  if (!done) return 1;
  if (!WIFEXITED(done->status) || WEXITSTATUS(done->status) != 0) {
    std::cerr << "sandrun exec -- head -c " << bytes << " failed (status " << done->status << ")\n";
    return 1;
  }
  double mib = static_cast<double>(bytes) / (1024.0 * 1024.0);
  std::cout << "peak memory for " << Fixed(mib, 0) << " MiB of output: sandrun VmHWM "
            << Fixed(static_cast<double>(done->hwm_kib) / 1024.0, 1) << " MiB, max RSS of the tree "
            << Fixed(static_cast<double>(done->maxrss_kib) / 1024.0, 1) << " MiB, wall "
            << Fixed(done->seconds, 2) << " s (" << Fixed(mib / done->seconds, 0) << " MiB/s)\n";
  std::cout << "result: memory bytes=" << bytes << " sandrun_hwm_kib=" << done->hwm_kib
            << " tree_maxrss_kib=" << done->maxrss_kib << " wall_s=" << Fixed(done->seconds, 3)
            << "\n";
  return 0;
}

int Usage() {
  std::cerr << "usage: sandrun_bench_spawn latency --sandrun BIN [--runs N] [--warmup N]\n"
               "       sandrun_bench_spawn memory --sandrun BIN --bytes N\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage();
  std::string mode = argv[1];
  std::string sandrun;
  int runs = 30, warmup = 3;
  long long bytes = 0;
  for (int i = 2; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--sandrun") sandrun = value;
    else if (flag == "--runs") runs = std::atoi(value.c_str());
    else if (flag == "--warmup") warmup = std::atoi(value.c_str());
    else if (flag == "--bytes") bytes = std::atoll(value.c_str());
    else return Usage();
  }
  if (sandrun.empty() || runs <= 0 || warmup < 0) return Usage();
  if (mode == "latency") return Latency(sandrun, runs, warmup);
  if (mode == "memory" && bytes > 0) return Memory(sandrun, bytes);
  return Usage();
}
