#include "fake_modal_fixture.h"

#include <gtest/gtest.h>

#include <memory>
#include <mutex>

#include "fake_modal_server.h"

namespace sandrun::modal::fake {
namespace {

std::unique_ptr<FakeModalServer>& Shared() {
  static std::unique_ptr<FakeModalServer> server;
  return server;
}

class StopSharedFake : public ::testing::Environment {
 public:
  void TearDown() override { Shared().reset(); }
};

}  // namespace

std::map<std::string, std::string> SharedContainerFakeEnv(std::string* reason) {
  static std::mutex mu;
  static std::string why_not;
  std::lock_guard<std::mutex> lock(mu);
  if (!Shared() && why_not.empty()) {
    if (!DockerEngineAnswers()) {
      why_not = "the fake Modal server runs sandboxes as Docker containers, and no Docker "
                "engine answers (run scripts/docker-test-env)";
    } else {
      FakeOptions options;
      options.containers = true;
      auto server = std::make_unique<FakeModalServer>(options);
      if (server->Start()) {
        Shared() = std::move(server);
        ::testing::AddGlobalTestEnvironment(new StopSharedFake);
      } else {
        why_not = "the fake Modal server could not listen on 127.0.0.1";
      }
    }
  }
  if (!Shared()) {
    *reason = why_not;
    return {};
  }
  return {{"MODAL_SERVER_URL", Shared()->url()},
          {"MODAL_TOKEN_ID", Shared()->options().token_id},
          {"MODAL_TOKEN_SECRET", Shared()->options().token_secret}};
}

}  // namespace sandrun::modal::fake
