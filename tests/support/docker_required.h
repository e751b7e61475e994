// Whether a missing Docker engine skips the Docker tests (a developer's
// machine) or fails them (CI): in CI a skip would let about a hundred Docker
// tests pass without running.
#ifndef SANDRUN_TESTS_SUPPORT_DOCKER_REQUIRED_H_
#define SANDRUN_TESTS_SUPPORT_DOCKER_REQUIRED_H_

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace sandrun::testing {

/// True when the Docker tests must have an engine: SANDRUN_REQUIRE_DOCKER=1
/// (set by .ci/run and by scripts/test in CI), or CI=true with
/// SANDRUN_REQUIRE_DOCKER unset. SANDRUN_REQUIRE_DOCKER=0 allows skips even
/// in CI.
inline bool DockerRequired() {
  if (const char* flag = std::getenv("SANDRUN_REQUIRE_DOCKER"); flag != nullptr && *flag) {
    return std::string(flag) != "0";
  }
  const char* ci = std::getenv("CI");
  return ci != nullptr && (std::string(ci) == "true" || std::string(ci) == "1");
}

}  // namespace sandrun::testing

/// Ends the current test (or SetUp) because no Docker engine can be used:
/// a skip with the reason, or a failure with it when DockerRequired().
#define SANDRUN_SKIP_WITHOUT_DOCKER(reason)                                                  \
  do {                                                                                       \
    if (::sandrun::testing::DockerRequired()) {                                              \
      GTEST_FAIL() << "Docker is required here (SANDRUN_REQUIRE_DOCKER=1 or CI=true) but "   \
                   << (reason);                                                              \
    }                                                                                        \
    GTEST_SKIP() << (reason);                                                                \
  } while (0)

#endif  // SANDRUN_TESTS_SUPPORT_DOCKER_REQUIRED_H_
