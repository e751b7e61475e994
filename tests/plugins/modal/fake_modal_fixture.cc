// The shared fake runs as its own process (fake_modal_server): a test
// program that links gRPC code of its own must not also hold the Modal
// plugin's generated protos, which the registry loads with the module.
#include "fake_modal_fixture.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <memory>
#include <mutex>
#include <sstream>

#include "e2e/e2e_support.h"
#include "support/test_util.h"

namespace sandrun::modal::fake {
namespace {

constexpr char kTokenId[] = "ak-fixture-token-id";
constexpr char kTokenSecret[] = "as-fixture-token-secret";

std::unique_ptr<sandrun::e2e::Background>& Shared() {
  static std::unique_ptr<sandrun::e2e::Background> server;
  return server;
}

// Stops the fake by SIGTERM, so that it removes its containers.
class StopSharedFake : public ::testing::Environment {
 public:
  void TearDown() override {
    if (Shared()) {
      Shared()->Signal(SIGTERM);
      Shared()->Wait(std::chrono::seconds(60));
      Shared().reset();
    }
  }
};

bool DockerAnswers() {
  sandrun::testing::CommandOptions options;
  options.timeout = std::chrono::seconds(15);
  return sandrun::testing::RunCommand({"docker", "version", "--format", "{{.Server.Version}}"},
                                      options)
             .exit_code == 0;
}

}  // namespace

std::map<std::string, std::string> SharedContainerFakeEnv(std::string* reason) {
  static std::mutex mu;
  static std::string why_not, url;
  std::lock_guard<std::mutex> lock(mu);
  if (url.empty() && why_not.empty()) {
    if (!DockerAnswers()) {
      why_not = "the fake Modal server runs sandboxes as Docker containers, and no Docker "
                "engine answers (run scripts/docker-test-env)";
    } else {
      Shared() = std::make_unique<sandrun::e2e::Background>(
          std::vector<std::string>{FAKE_MODAL_SERVER_BINARY, "--token-id", kTokenId,
                                   "--token-secret", kTokenSecret},
          std::map<std::string, std::string>{}, std::filesystem::temp_directory_path());
      ::testing::AddGlobalTestEnvironment(new StopSharedFake);
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      while (url.empty() && Shared()->started() &&
             std::chrono::steady_clock::now() < deadline) {
        std::istringstream lines(Shared()->Out());
        for (std::string line; std::getline(lines, line);) {
          if (line.rfind("MODAL_SERVER_URL=", 0) == 0) url = line.substr(17);
        }
        if (url.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      if (url.empty()) {
        why_not = "fake_modal_server did not start: " + Shared()->Err();
      } else if (Shared()->Err().find("Docker containers") == std::string::npos) {
        why_not = "fake_modal_server is not in container mode: " + Shared()->Err();
        url.clear();
      }
    }
  }
  if (url.empty()) {
    *reason = why_not;
    return {};
  }
  return {{"MODAL_SERVER_URL", url},
          {"MODAL_TOKEN_ID", kTokenId},
          {"MODAL_TOKEN_SECRET", kTokenSecret}};
}

}  // namespace sandrun::modal::fake
