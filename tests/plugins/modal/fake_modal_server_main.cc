// fake_modal_server: the fake Modal server as a program, for benchmarks and
// manual runs. Prints its URL and the credentials to use, then serves until
// SIGINT/SIGTERM.
//
//   fake_modal_server [--port N] [--latency-ms N] [--creation-delay-ms N]
//                     [--router-ready-delay-ms N] [--volume-version 1|2]
//                     [--token-id ID] [--token-secret SECRET] [--process]
//                     [--stats-file PATH]
//
// It is always as strict as Modal (--strict is accepted and changes nothing).
// --stats-file: what it has seen so far (sandboxes created, execs, calls per
// RPC) is written there as JSON on SIGUSR1 and when it ends; a benchmark
// takes the difference of two snapshots.
//
// Sandboxes are Docker containers when an engine answers (DOCKER_HOST);
// --process (or no engine) runs their commands as processes on this host.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "fake_modal_server.h"

int main(int argc, char** argv) {
  sandrun::modal::fake::FakeOptions options;
  long latency_ms = 0, creation_ms = 0;
  bool process_mode = false;
  std::string stats_file;
  if (const char* env = std::getenv("FAKE_MODAL_LATENCY_MS")) latency_ms = std::atol(env);
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "fake_modal_server: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--strict") {
      // Accepted for scripts that say so: the fake is always as strict as Modal.
    } else if (arg == "--port") {
      options.port = std::atoi(value().c_str());
    } else if (arg == "--latency-ms") {
      latency_ms = std::atol(value().c_str());
    } else if (arg == "--creation-delay-ms") {
      creation_ms = std::atol(value().c_str());
    } else if (arg == "--router-ready-delay-ms") {
      options.router_ready_delay = std::chrono::milliseconds(std::atol(value().c_str()));
    } else if (arg == "--volume-version") {
      options.volume_version = std::atoi(value().c_str());
    } else if (arg == "--token-id") {
      options.token_id = value();
    } else if (arg == "--token-secret") {
      options.token_secret = value();
    } else if (arg == "--stats-file") {
      stats_file = value();
    } else if (arg == "--process") {
      process_mode = true;
    } else {
      std::fprintf(stderr,
                   "usage: fake_modal_server [--strict] [--port N] [--latency-ms N] "
                   "[--creation-delay-ms N] [--router-ready-delay-ms N] [--volume-version 1|2] "
                   "[--token-id ID] [--token-secret SECRET] [--process] [--stats-file PATH]\n");
      return 2;
    }
  }
  options.containers = !process_mode && sandrun::modal::fake::DockerEngineAnswers();
  if (options.containers) {
    std::fprintf(stderr, "fake_modal_server: sandboxes are Docker containers (--process: "
                         "host processes)\n");
  } else {
    std::fprintf(stderr,
                 "fake_modal_server: sandboxes are processes on this host%s: images are only "
                 "recorded, a portable executable cannot run, /sandrun/ is a scratch directory\n",
                 process_mode ? "" : " (no Docker engine answers)");
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  sandrun::modal::fake::FakeModalServer server(options);
  if (!server.Start()) return 1;
  server.SetLatency(std::chrono::milliseconds(latency_ms));
  server.SetCreationDelay(std::chrono::milliseconds(creation_ms));
  std::printf("MODAL_SERVER_URL=%s\nMODAL_TOKEN_ID=%s\n", server.url().c_str(),
              options.token_id.c_str());
  std::fflush(stdout);
  auto write_stats = [&] {
    if (stats_file.empty()) return;
    const auto stats = server.Stats();
    long total = 0;
    for (const auto& [rpc, n] : stats.calls) total += n;
    nlohmann::json out = {{"sandboxes_created", stats.sandboxes_created},
                          {"sandboxes_terminated", stats.sandboxes_terminated},
                          {"exec_start_calls", stats.exec_start_calls},
                          {"exec_processes_started", stats.exec_processes_started},
                          {"total_calls", total},
                          {"stdin_bytes", stats.stdin_bytes},
                          {"block_bytes_put", stats.block_bytes_put},
                          {"calls", stats.calls}};
    const std::string temp = stats_file + ".tmp";
    std::ofstream(temp) << out.dump(1) << "\n";
    std::rename(temp.c_str(), stats_file.c_str());
  };
  for (int sig = 0;;) {
    sigwait(&set, &sig);
    write_stats();
    if (sig != SIGUSR1) break;
  }
  return 0;
}
