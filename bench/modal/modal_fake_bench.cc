// modal_fake_bench: N tasks at -j J through the Modal backend against the
// fake Modal server (in-process, 127.0.0.1) with L ms of added latency per
// call. Each task creates a sandbox, runs `true`, and terminates it. Prints
// wall time, the ideal (calls per task x latency x rounds, rounds = N/J), and
// calls per execution.
//
//   modal_fake_bench [tasks=100] [jobs=50] [latency_ms=50]
#include <atomic>
#include <map>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "fake_modal_server.h"
#include "modal_backend.h"

int main(int argc, char** argv) {
  using namespace sandrun;
  int tasks = argc > 1 ? std::atoi(argv[1]) : 100;
  int jobs = argc > 2 ? std::atoi(argv[2]) : 50;
  int latency_ms = argc > 3 ? std::atoi(argv[3]) : 50;
  modal::fake::FakeModalServer server;
  if (!server.Start()) return 1;
  auto options = modal::ParseModalOptions("{}");
  std::map<std::string, std::string> env = {{"MODAL_TOKEN_ID", server.options().token_id},
                                            {"MODAL_TOKEN_SECRET", server.options().token_secret},
                                            {"MODAL_SERVER_URL", server.url()},
                                            {"HOME", "/nonexistent"}};
  // MODAL_SANDBOX_V2=0 measures V1 sandboxes (the default is V2).
  if (const char* v2 = std::getenv("MODAL_SANDBOX_V2")) env["MODAL_SANDBOX_V2"] = v2;
  auto backend = modal::CreateModalBackend(*options, env);
  // Warm-up outside the measurement: app, image, volume, auth token.
  {
    SandboxSpec spec;
    auto sandbox = backend->Create(spec);
    if (!sandbox.ok()) {
      std::fprintf(stderr, "warm-up failed: %s\n", sandbox.status().ToString().c_str());
      return 1;
    }
  }
  auto before = server.Stats();
  int calls_before = 0;
  for (const auto& [rpc, n] : before.calls) calls_before += n;
  server.SetLatency(std::chrono::milliseconds(latency_ms));
  std::atomic<int> next{0}, failed{0};
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> workers;
  for (int j = 0; j < jobs; ++j) {
    workers.emplace_back([&] {
      for (int i; (i = next++) < tasks;) {
        SandboxSpec spec;
        spec.labels = {{"managed-by", "sandrun"}, {"task", std::to_string(i)}};
        auto sandbox = backend->Create(spec);
        if (!sandbox.ok()) {
          ++failed;
          continue;
        }
        ExecRequest request;
        request.argv = {"true"};
        auto result = (*sandbox)->Exec(request);
        if (!result.ok() || result->exit_code != 0) ++failed;
        (*sandbox)->Terminate().IgnoreError();
      }
    });
  }
  for (auto& w : workers) w.join();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto after = server.Stats();
  int calls = 0;
  for (const auto& [rpc, n] : after.calls) calls += n;
  double per_task = static_cast<double>(calls - calls_before) / tasks;
  double rounds = static_cast<double>((tasks + jobs - 1) / jobs);
  double ideal = per_task * latency_ms / 1000.0 * rounds;
  std::printf("tasks=%d jobs=%d latency=%dms failed=%d\n", tasks, jobs, latency_ms, failed.load());
  std::printf("wall=%.2fs ideal=%.2fs (%.1f calls/task x %dms x %.0f rounds) ratio=%.2f\n", wall,
              ideal, per_task, latency_ms, rounds, wall / ideal);
  for (const auto& [rpc, n] : after.calls) {
    int b = before.calls.count(rpc) ? before.calls.at(rpc) : 0;
    std::printf("  %-28s %.2f/task\n", rpc.c_str(), static_cast<double>(n - b) / tasks);
  }
  return failed.load() == 0 ? 0 : 1;
}
