// Benchmark: a plain GoogleTest binary with 200 small cases, for
// `sandrun gtest` against running the binary locally.
#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#define CASE(n)                                     \
  TEST(Cases200, C##n) {                            \
    std::vector<int> v(10000);                      \
    std::iota(v.begin(), v.end(), n);               \
    EXPECT_GT(std::accumulate(v.begin(), v.end(), 0LL), 0); \
  }
#define CASE10(n) CASE(n##0) CASE(n##1) CASE(n##2) CASE(n##3) CASE(n##4) \
                  CASE(n##5) CASE(n##6) CASE(n##7) CASE(n##8) CASE(n##9)
#define CASE100(n) CASE10(n##0) CASE10(n##1) CASE10(n##2) CASE10(n##3) CASE10(n##4) \
                   CASE10(n##5) CASE10(n##6) CASE10(n##7) CASE10(n##8) CASE10(n##9)
CASE100(1) CASE100(2)
