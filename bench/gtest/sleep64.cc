// Benchmark: 64 marked tests of one second each. Run on Docker, the binary's
// wall time against the serial sum (64 s) and the ideal at the concurrency.
#include <chrono>
#include <thread>

#include "sandrun/gtest.h"

#define SLEEPY(n) \
  SANDRUN_TEST(Sleep64, S##n) { std::this_thread::sleep_for(std::chrono::seconds(1)); }
#define SLEEPY8(n) \
  SLEEPY(n##0) SLEEPY(n##1) SLEEPY(n##2) SLEEPY(n##3) SLEEPY(n##4) SLEEPY(n##5) SLEEPY(n##6) SLEEPY(n##7)

SLEEPY8(0) SLEEPY8(1) SLEEPY8(2) SLEEPY8(3) SLEEPY8(4) SLEEPY8(5) SLEEPY8(6) SLEEPY8(7)
