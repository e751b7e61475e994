// The Modal backend: one Modal Sandbox per sandrun sandbox, driven through
// Modal's gRPC API (modal_client.h) natively: no Python, no Modal CLI.
//
// Credentials: MODAL_TOKEN_ID/MODAL_TOKEN_SECRET, else ~/.modal.toml
// (modal_credentials.h). Settings from the backend's own section of
// sandrun.json ("backends": {"modal": {...}}):
//
//   app_name        Modal App the sandboxes belong to (default "sandrun")
//   environment     Modal environment (default: MODAL_ENVIRONMENT / profile)
//   volume          result-archive Volume (default "sandrun-results"),
//                   reached through the Volume API only, never mounted
//                   in a sandbox
//   server_url      control-plane URL (default: MODAL_SERVER_URL / profile /
//                   https://api.modal.com:443)
//   secrets         ["name", ...] Modal Secrets attached to every sandbox
//   cidr_allowlist  ["203.0.113.0/24", ...]: only these destinations are
//                   reachable, whatever the network mode (Modal ALLOWLIST)
//   default_image   registry tag for specs naming no image
//                   (default "debian:bookworm-slim")
//   idle_timeout_s  sandbox idle timeout (default: none; lifetime applies)
//   max_parallel    suggested -j (default 64)
//   timeout_grace_ms  how long after an exec's timeout the host gives the
//                   remote kill before reporting the timeout itself (2000)
//
// Sandboxes carry the tags managed-by=sandrun, every spec label (run, task,
// ...), owner-host, owner-pid and expires (unix seconds); ListLeftovers and
// RemoveLeftover only ever see sandboxes of this App tagged
// managed-by=sandrun. Tokens never appear in any Status, note or record.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_BACKEND_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_BACKEND_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/registry.h"
#include "sandrun/status.h"

namespace sandrun {

/// Registers "modal" (called from the generated built-in table).
void RegisterModalBackend(BackendRegistry& registry);

namespace modal {

inline constexpr std::string_view kDefaultWorkdir = "/sandrun/work";
/// The in-sandbox file tool Modal's SDKs exec for file transfers
/// (modal-labs/modal-client go/sandbox_fs.go, py/modal/sandbox_fs.py).
inline constexpr std::string_view kFsToolsPath = "/__modal/.bin/modal-sandbox-fs-tools";

struct ModalOptions {
  std::string app_name = "sandrun";
  std::string environment;   ///< Empty: from credentials.
  bool environment_set = false;
  std::string volume = "sandrun-results";
  std::string server_url;    ///< Empty: from credentials.
  std::vector<std::string> secrets;
  std::vector<std::string> cidr_allowlist;
  std::string default_image = "debian:bookworm-slim";
  std::int64_t idle_timeout_s = 0;
  int max_parallel = 64;
  int timeout_grace_ms = 2000;
  /// The host's LD_LIBRARY_PATH (BackendContext::env), for portable uploads.
  std::string host_library_path;
};

/// Checks "ADDRESS/PREFIX" syntax (IPv4 or IPv6). kInvalidArgument says why.
Status ValidateCidr(const std::string& cidr);

/// Reads the section JSON. kInvalidArgument names the bad key (and a bad
/// CIDR or secret name).
Result<ModalOptions> ParseModalOptions(std::string_view section_json);

/// The backend; contacts Modal only when first used. `env` is the process
/// environment (credentials, MODAL_*), injectable for tests.
std::unique_ptr<Backend> CreateModalBackend(ModalOptions options,
                                            std::map<std::string, std::string> env);

/// Calls the backend made so far (attempts included), for benchmarks; 0 for
/// a backend that is not a Modal backend.
std::uint64_t ModalCallCount(Backend& backend);

}  // namespace modal
}  // namespace sandrun

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_BACKEND_H_
