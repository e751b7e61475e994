// The backend conformance suite: one set of cases, written against the
// Backend/Sandbox interface and Capabilities only, run against every backend.
//
// A backend joins with one file, tests/conformance/<name>_conformance_test.cc:
//
//   namespace sandrun::conformance {
//   ConformanceTarget DockerTarget() { ... }
//   SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(Docker, DockerTarget());
//   }
//
// Cases run their commands with /bin/sh (POSIX/busybox only) or with
// conformance_helper, a static program they upload with Sandbox::Put, so the
// same case works on the host and in a busybox-only image. A case a backend
// cannot honour (Capabilities say so) is checked for saying so and then
// reported as skipped ("unsupported: ..."), never as passed.
#ifndef SANDRUN_TESTS_CONFORMANCE_BACKEND_CONFORMANCE_H_
#define SANDRUN_TESTS_CONFORMANCE_BACKEND_CONFORMANCE_H_

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun::conformance {

/// One backend under test.
struct ConformanceTarget {
  /// Test-name suffix: letters, digits and '_' only.
  std::string name;
  /// Makes a fresh backend; called once per case. Whatever it needs (a
  /// Config) must outlive the backend it returns.
  std::function<Result<std::unique_ptr<Backend>>()> make;
  /// Every sandbox a case creates starts from this (image, labels...). Cases
  /// change only env, network, and resource fields on top of it.
  SandboxSpec base_spec;
  /// Non-empty: every case is skipped with this reason (no daemon, no token).
  std::string skip_reason;
  /// Cases (by test name) the backend says it cannot honour, with the reason;
  /// such a case is reported unsupported (skipped with the reason), never passed.
  std::map<std::string, std::string> unsupported_cases;
  /// Paths, as a sandbox sees them, where the result archive would be if it
  /// leaked into sandboxes (where it was once mounted, where it lives).
  std::vector<std::string> archive_paths = {"/sandrun/results"};
  /// Non-empty: the backend cannot hide its archive from its sandboxes; the
  /// archive case is reported unsupported with this reason.
  std::string archive_visible_reason;
  /// With a skip_reason: every case fails with it instead (a backend the run
  /// requires, such as Docker in CI).
  bool skip_is_failure = false;
  /// Ends a sandbox (by Sandbox::Id()) the way something outside this
  /// sandrun would while a command runs in it: another sandrun's cleanup,
  /// `docker kill`, Modal ending it. Called from another thread.
  std::function<Status(const std::string& sandbox_id)> kill_sandbox_from_outside;
  /// Capabilities this target's environment is known to offer, found
  /// independently of the backend (a daemon always isolates, the host allows
  /// namespaces). A backend that then does not declare one fails: a lost
  /// capability must not turn its cases into skips.
  Capabilities required;
};

/// gtest prints parameters in failure messages; print just the name.
void PrintTo(const ConformanceTarget& target, std::ostream* os);

/// Skips every case of `target` for want of a Docker engine, saying
/// `reason`; where Docker is required (CI), every case fails with it instead.
void SkipWithoutDocker(ConformanceTarget& target, const std::string& reason);
/// Names instances after ConformanceTarget::name.
std::string ConformanceTargetName(const ::testing::TestParamInfo<ConformanceTarget>& info);

/// The fixture all cases share (see backend_conformance.cc for the cases).
class BackendConformanceTest : public ::testing::TestWithParam<ConformanceTarget> {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// A sandbox from base_spec after `adjust`; ADD_FAILURE and null on error.
  std::unique_ptr<Sandbox> NewSandbox(const std::function<void(SandboxSpec&)>& adjust = {});
  /// NewSandbox, then uploads conformance_helper as ./conformance_helper.
  std::unique_ptr<Sandbox> NewSandboxWithHelper(
      const std::function<void(SandboxSpec&)>& adjust = {});
  /// Runs and unwraps; on a backend error, ADD_FAILURE and an kInfraError result.
  static ExecResult Run(Sandbox& sandbox, ExecRequest request);
  /// Runs a request with a timeout like the engine does, with a watchdog in
  /// place of the engine's host deadline: if the backend's own timeout has
  /// not ended the command well after it should have, the watchdog calls
  /// Terminate() and the case fails. So a broken backend timer cannot hide
  /// behind a fallback.
  ExecResult RunWithTimeout(Sandbox& sandbox, ExecRequest request);
  /// The backend's capabilities; fails the case when one of the target's
  /// `required` ones is not declared.
  Capabilities DeclaredCapabilities();
  /// Run of {"./conformance_helper", args...}.
  static ExecResult RunHelper(Sandbox& sandbox, std::vector<std::string> args,
                              ExecRequest request = {});

  std::unique_ptr<Backend> backend_;
};

/// Outcome, codes, notes and the head of both streams, for failure messages.
std::string Describe(const ExecResult& result);

}  // namespace sandrun::conformance

/// Instantiates every conformance case for `target` (a ConformanceTarget).
/// Use at namespace scope inside `namespace sandrun::conformance` (gtest
/// pastes the suite name into identifiers, so it cannot be qualified).
#define SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(prefix, target)                    \
  INSTANTIATE_TEST_SUITE_P(prefix, BackendConformanceTest, ::testing::Values(target), \
                           ::sandrun::conformance::ConformanceTargetName)

#endif  // SANDRUN_TESTS_CONFORMANCE_BACKEND_CONFORMANCE_H_
