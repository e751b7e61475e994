// fake_modal_server: the fake Modal server as a program, for benchmarks and
// manual runs. Prints its URL and the credentials to use, then serves until
// SIGINT/SIGTERM.
//
//   fake_modal_server [--strict] [--port N] [--latency-ms N] [--creation-delay-ms N]
//                     [--router-ready-delay-ms N] [--volume-version 1|2]
//                     [--token-id ID] [--token-secret SECRET] [--process]
//
// Sandboxes are Docker containers when an engine answers (DOCKER_HOST);
// --process (or no engine) runs their commands as processes on this host.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fake_modal_server.h"

int main(int argc, char** argv) {
  // --strict: as strict as Modal, as the SDK judge runs it; otherwise with
  // the leniencies the tests of today's client use (kLenientForTodaysClient).
  sandrun::modal::fake::FakeOptions options;
  long latency_ms = 0, creation_ms = 0;
  bool process_mode = false;
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
      auto strict = sandrun::modal::fake::FakeOptions::Strict();
      options.lenient = strict.lenient;
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
    } else if (arg == "--process") {
      process_mode = true;
    } else {
      std::fprintf(stderr,
                   "usage: fake_modal_server [--strict] [--port N] [--latency-ms N] "
                   "[--creation-delay-ms N] [--router-ready-delay-ms N] [--volume-version 1|2] "
                   "[--token-id ID] [--token-secret SECRET] [--process]\n");
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
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  sandrun::modal::fake::FakeModalServer server(options);
  if (!server.Start()) return 1;
  server.SetLatency(std::chrono::milliseconds(latency_ms));
  server.SetCreationDelay(std::chrono::milliseconds(creation_ms));
  std::printf("MODAL_SERVER_URL=%s\nMODAL_TOKEN_ID=%s\n", server.url().c_str(),
              options.token_id.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&set, &sig);
  return 0;
}
