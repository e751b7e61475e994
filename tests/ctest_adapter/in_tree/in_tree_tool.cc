// Passes only when run as sandrun's uploaded copy (`./NAME` in a sandbox's
// working directory), never as the build tree's own file.
#include <cstring>
#include <iostream>

int main(int argc, char** argv) {
  bool copy = std::strncmp(argv[0], "./", 2) == 0;
  std::cout << "argv[0]=" << argv[0] << (copy ? " (sandbox copy)" : " (not through sandrun)")
            << std::endl;
  return argc > 1 && copy ? 0 : 1;
}
