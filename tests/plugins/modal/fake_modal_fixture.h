// One fake Modal server in container mode per test process, for tests that
// run sandrun as users do (the CLI, the GoogleTest and CTest adapters) with
// --backend modal: started on first use, stopped at the end of the test
// program (before gRPC's globals go away).
#ifndef SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_FIXTURE_H_
#define SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_FIXTURE_H_

#include <map>
#include <string>

namespace sandrun::modal::fake {

/// MODAL_SERVER_URL, MODAL_TOKEN_ID and MODAL_TOKEN_SECRET for the shared
/// fake. Empty, with `*reason` saying why, when no Docker engine answers or
/// the fake cannot listen.
std::map<std::string, std::string> SharedContainerFakeEnv(std::string* reason);

}  // namespace sandrun::modal::fake

#endif  // SANDRUN_TESTS_PLUGINS_MODAL_FAKE_MODAL_FIXTURE_H_
