// The conformance suite against the Modal backend talking to the fake Modal
// server (tests/plugins/modal/fake_modal_server.h), embedded in this process
// on an ephemeral 127.0.0.1 port, in container mode: each sandbox is a
// Docker container of its image, as a Modal sandbox is a container. Built
// only with SANDRUN_WITH_MODAL (the fake is linked in by
// tests/plugins/modal/CMakeLists.txt).
#ifdef SANDRUN_WITH_MODAL_FAKE

#include <memory>

#include "conformance/backend_conformance.h"
#include "fake_modal_server.h"
#include "modal_backend.h"

namespace sandrun::conformance {
namespace {

std::unique_ptr<modal::fake::FakeModalServer>& Server() {
  static std::unique_ptr<modal::fake::FakeModalServer> server;
  return server;
}

// Stops the fake (and every process it runs) before gRPC's globals go away.
class StopFakeModal : public ::testing::Environment {
 public:
  void TearDown() override { Server().reset(); }
};

Result<std::unique_ptr<Backend>> MakeModal() {
  auto options = modal::ParseModalOptions(R"({"timeout_grace_ms": 3000})");
  if (!options.ok()) return options.status();
  auto& server = Server();
  return modal::CreateModalBackend(*options,
                                   {{"MODAL_TOKEN_ID", server->options().token_id},
                                    {"MODAL_TOKEN_SECRET", server->options().token_secret},
                                    {"MODAL_SERVER_URL", server->url()},
                                    {"HOME", "/nonexistent-sandrun-test-home"}});
}

ConformanceTarget ModalFakeTarget() {
  ConformanceTarget target;
  target.name = "modal_fake";
  target.make = MakeModal;
  // Modal ends it (evicted, out of credit, terminated from its dashboard).
  target.kill_sandbox_from_outside = [](const std::string& sandbox_id) {
    Server()->KillSandbox(sandbox_id);
    return OkStatus();
  };
  // Resolved by the fake to the local Debian test image (no registry here).
  target.base_spec.image = "debian:bookworm-slim";
  // Where the results Volume used to be mounted, seen from the workdir
  // /sandrun/work.
  target.archive_paths = {"../results", "/sandrun/results"};
  // Modal's servers enforce an exec's timeout; whether that ends processes
  // that left the exec's session is documented neither in modal-labs/
  // modal-client (modal_proto/task_command_router.proto) nor on
  // modal.com/docs/guide/sandbox, and the fake (which ends a timed-out exec
  // with timeout(1) in the container) cannot show what Modal does. sandrun
  // does not claim it (docs/security.md).
  target.unsupported_cases["TimeoutKillsAChildThatCalledSetsid"] =
      "modal: whether an exec timeout ends processes that called setsid is Modal's to "
      "decide and is not documented; the fake cannot stand in for it";
  if (!modal::fake::DockerEngineAnswers()) {
    SkipWithoutDocker(target,
                      "the fake Modal server runs sandboxes as Docker containers, and no Docker "
                      "engine answers (run scripts/docker-test-env)");
    return target;
  }
  if (!Server()) {
    modal::fake::FakeOptions options;
    options.containers = true;
    Server() = std::make_unique<modal::fake::FakeModalServer>(options);
    if (!Server()->Start()) {
      target.skip_reason = "the fake Modal server could not listen on 127.0.0.1";
      return target;
    }
    ::testing::AddGlobalTestEnvironment(new StopFakeModal);
  }
  return target;
}

}  // namespace

SANDRUN_INSTANTIATE_BACKEND_CONFORMANCE(ModalFake, ModalFakeTarget());

}  // namespace sandrun::conformance

#endif  // SANDRUN_WITH_MODAL_FAKE
