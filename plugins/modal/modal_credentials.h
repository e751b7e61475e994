// Modal credentials and profile settings, found the way Modal's SDKs find
// them (modal-labs/modal-client go/config.go, py/modal/config.py):
//
//   1. ~/.modal.toml (or MODAL_CONFIG_PATH): one TOML table per profile with
//      token_id, token_secret, server_url, environment, image_builder_version,
//      sandbox_v2, active. The profile is MODAL_PROFILE, else the profile with
//      active = true (the first by name if several are), else "default".
//   2. MODAL_TOKEN_ID, MODAL_TOKEN_SECRET, MODAL_SERVER_URL,
//      MODAL_ENVIRONMENT, MODAL_IMAGE_BUILDER_VERSION, MODAL_MAX_THROTTLE_WAIT,
//      MODAL_SANDBOX_V2 override the file's values one by one.
//
// No grpc here: this is plain parsing, unit-tested on its own. Nothing this
// file returns or reports contains the token secret.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_CREDENTIALS_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_CREDENTIALS_H_

#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "sandrun/status.h"

namespace sandrun::modal {

inline constexpr const char* kDefaultServerUrl = "https://api.modal.com:443";

struct ModalCredentials {
  std::string token_id;
  std::string token_secret;  ///< Never logged, never put in a message.
  std::string server_url = kDefaultServerUrl;
  std::string environment;   ///< "" = the workspace's default environment.
  std::string image_builder_version;  ///< "" = ask the environment.
  /// MODAL_MAX_THROTTLE_WAIT in seconds (0 disables waiting on throttling);
  /// unset = no cap.
  std::optional<double> max_throttle_wait_s;
  /// Create sandboxes with SandboxCreateV2 (the JS SDK's default). Off when
  /// MODAL_SANDBOX_V2, else the profile's sandbox_v2, is "0" or "false"
  /// (any case) or empty, as the JS SDK's parseBooleanFlag reads them.
  bool sandbox_v2 = true;
  /// Where the tokens came from, for messages: "MODAL_TOKEN_ID/..." or
  /// "/root/.modal.toml profile 'default'".
  std::string source;
};

/// Finds credentials in `env` (the process environment, injectable) and the
/// config file (MODAL_CONFIG_PATH, else $HOME/.modal.toml from `env`).
/// Errors, all kFailedPrecondition and naming the file and what is wrong:
/// no tokens anywhere, a malformed file (line and column only, no text from
/// it), a named profile that does not exist, a token without its secret.
Result<ModalCredentials> LoadModalCredentials(const std::map<std::string, std::string>& env);

/// The config file LoadModalCredentials reads for `env`.
std::filesystem::path ModalConfigPath(const std::map<std::string, std::string>& env);

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_CREDENTIALS_H_
