// Test helpers: a fake Modal server on 127.0.0.1 and Modal backends pointed
// at it (credentials through an injected environment, never the process's).
#ifndef SANDRUN_TESTS_PLUGINS_MODAL_MODAL_TEST_ENV_H_
#define SANDRUN_TESTS_PLUGINS_MODAL_MODAL_TEST_ENV_H_

#include <map>
#include <memory>
#include <string>

#include "fake_modal_server.h"
#include "modal_backend.h"
#include "sandrun/backend.h"

namespace sandrun::modal::testing {

/// Started on construction; everything it ran is killed on destruction.
class FakeModalEnv {
 public:
  explicit FakeModalEnv(fake::FakeOptions options = {})
      : server_(std::make_unique<fake::FakeModalServer>(std::move(options))) {
    started_ = server_->Start();
  }
  bool started() const { return started_; }
  fake::FakeModalServer& server() { return *server_; }

  /// MODAL_* variables that point a client at the fake. HOME is a path that
  /// does not exist, so no real ~/.modal.toml is ever read.
  std::map<std::string, std::string> Env() const {
    return {{"MODAL_TOKEN_ID", server_->options().token_id},
            {"MODAL_TOKEN_SECRET", server_->options().token_secret},
            {"MODAL_SERVER_URL", server_->url()},
            {"HOME", "/nonexistent-sandrun-test-home"}};
  }

  /// A backend from a config section (JSON) and Env() plus `extra_env`.
  Result<std::unique_ptr<Backend>> MakeBackend(
      const std::string& section = R"({"default_image": "sandrun-test/host", "timeout_grace_ms": 3000})",
      const std::map<std::string, std::string>& extra_env = {}) const {
    auto options = ParseModalOptions(section);
    if (!options.ok()) return options.status();
    auto env = Env();
    for (const auto& [k, v] : extra_env) env[k] = v;
    return CreateModalBackend(*options, env);
  }

 private:
  std::unique_ptr<fake::FakeModalServer> server_;
  bool started_ = false;
};

}  // namespace sandrun::modal::testing

#endif  // SANDRUN_TESTS_PLUGINS_MODAL_MODAL_TEST_ENV_H_
