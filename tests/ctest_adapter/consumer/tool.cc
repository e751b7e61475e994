// The consumer's tool: `pass`, `fail`, `hang`, or `data FILE` (prints FILE
// and $GREETING). Each prints its working directory, so the driver can tell
// which sandbox ran it (local: under sandrun's state dir; Docker: in the
// container).
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

int main(int argc, char** argv) {
  std::string mode = argc > 1 ? argv[1] : "";
  char cwd[4096] = "?";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = '?';
  std::cout << "consumer_tool " << mode << " cwd=" << cwd << std::endl;
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
