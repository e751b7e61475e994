// Compiled and run inside a sandbox by examples/quickstart/tasks.json.
#include <iostream>

int main(int argc, char** argv) {
  std::cout << "hello, " << (argc > 1 ? argv[1] : "world") << " (built in a sandbox)\n";
  return 0;
}
