// The conformance suite against the local backend, created the way the CLI
// creates it: through its registration function and the registry.
#include "conformance/backend_conformance.h"
#include "local_backend.h"
#include "sandrun/config.h"
#include "sandrun/registry.h"
#include "support/test_util.h"

namespace sandrun::conformance {
namespace {

ConformanceTarget LocalTarget() {
  ConformanceTarget target;
  target.name = "local";
  target.make = []() -> Result<std::unique_ptr<Backend>> {
    // Outlive every backend made from them; removed at exit.
    static ::sandrun::testing::TempDir state;
    static ::sandrun::testing::TempDir archive;
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
  target.archive_visible_reason =
      "local sandboxes are processes of this user on this host's file system, so the "
      "archive directory is within their reach";
  return target;
}

}  // namespace

SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(Local, LocalTarget());

}  // namespace sandrun::conformance
