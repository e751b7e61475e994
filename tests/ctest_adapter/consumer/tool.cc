// The consumer's tool: `pass`, `fail`, `hang`, or `data FILE` (prints FILE
// and $GREETING). Each prints where it runs, so the driver can tell a
// sandbox (Docker: /.dockerenv) from the host.
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  bool docker = std::ifstream("/.dockerenv").good();
  std::cout << "consumer_tool " << mode << " in-docker=" << (docker ? "yes" : "no") << std::endl;
  if (mode == "pass") return 0;
  if (mode == "fail") {
    std::cerr << "consumer_tool: failing on purpose" << std::endl;
    return 3;
  }
  if (mode == "hang") {
    std::cout << "hanging" << std::endl;
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  if (mode == "data" && argc > 2) {
    std::ifstream in(argv[2]);
    std::string line;
    if (!std::getline(in, line)) {
      std::cerr << "cannot read " << argv[2] << std::endl;
      return 4;
    }
    const char* greeting = std::getenv("GREETING");
    std::cout << "data: " << line << " greeting: " << (greeting ? greeting : "(unset)") << std::endl;
    return greeting ? 0 : 5;
  }
  std::cerr << "usage: consumer_tool pass|fail|hang|data FILE" << std::endl;
  return 2;
}
