// The conformance suite against the local backend, created the way the CLI
// creates it: through its registration function and the registry.
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "conformance/backend_conformance.h"
#include "local_backend.h"
#include "sandrun/config.h"
#include "sandrun/registry.h"
#include "support/test_util.h"

namespace sandrun::conformance {
namespace {

// Whether this host lets a process cut itself off the network and hide /run,
// asked of util-linux's unshare(1) rather than of the backend's own probe, so
// a broken probe shows up as a failure instead of a skip.
bool HostAllowsNetworkIsolation() {
  std::string command = std::string("unshare ") + (geteuid() == 0 ? "" : "--map-root-user ") +
                        "--net --mount sh -c 'mount -t tmpfs tmpfs /run' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

ConformanceTarget LocalTarget() {
  ConformanceTarget target;
  target.name = "local";
  // Outlive every backend made from them; removed at exit.
  static ::sandrun::testing::TempDir state;
  static ::sandrun::testing::TempDir archive;
  target.make = []() -> Result<std::unique_ptr<Backend>> {
    static const Config config = [] {
      Config c;
      c.state_dir = state.path();
      c.archive_dir = archive.path();
      return c;
    }();
    BackendRegistry registry;
    RegisterLocalBackend(registry);
    return registry.Create("local", config);
  };
  // As `sandrun cleanup` in another process would: a backend of its own
  // removes the sandbox, killing its commands.
  target.kill_sandbox_from_outside = [make = target.make](const std::string& sandbox_id) {
    SANDRUN_ASSIGN_OR_RETURN(std::unique_ptr<Backend> other, make());
    return other->RemoveLeftover(sandbox_id);
  };
  target.required.isolates_network = HostAllowsNetworkIsolation();
  // Hidden by the same mount namespace that hides host sockets.
  target.archive_paths = {archive.path().string(), (state.path() / "outbox").string()};
  if (!target.required.isolates_network) {
    target.archive_visible_reason =
        "no mount namespace on this host: local sandboxes are processes of this user on this "
        "host's file system, so the archive directory is within their reach";
  }
  return target;
}

}  // namespace

SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(Local, LocalTarget());

}  // namespace sandrun::conformance
