// A test program that passes.
#include <cstdio>
int main() {
  std::puts("dir tool ran");
  return 0;
}
