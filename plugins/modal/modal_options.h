// The Modal backend's settings: its own section of sandrun.json
// ("backends": {"modal": {...}}) read into ModalOptions. Pure: no I/O, no
// call to Modal.
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
//   exe_cache_volume  Volume caching portable executables, mounted read-only
//                   at /sandrun/exe (default "sandrun-exe-cache"; "" sends
//                   them to each sandbox through the file tool instead)
//   router_ready_timeout_s  how long the first call to a new sandbox's
//                   command router keeps retrying while the worker does not
//                   accept it yet (310, Python SDK's bound; Go's is ~10)
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_OPTIONS_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_OPTIONS_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/status.h"

namespace sandrun::modal {

struct ModalOptions {
  std::string app_name = "sandrun";
  std::string environment;   ///< Empty: from credentials.
  bool environment_set = false;
  std::string volume = "sandrun-results";
  std::string exe_cache_volume = "sandrun-exe-cache";
  std::string server_url;    ///< Empty: from credentials.
  std::vector<std::string> secrets;
  std::vector<std::string> cidr_allowlist;
  std::string default_image = "debian:bookworm-slim";
  std::int64_t idle_timeout_s = 0;
  int max_parallel = 64;
  int timeout_grace_ms = 2000;
  int router_ready_timeout_s = 310;
  /// The host's LD_LIBRARY_PATH (BackendContext::env), for portable uploads.
  std::string host_library_path;
};

/// Checks "ADDRESS/PREFIX" syntax (IPv4 or IPv6). kInvalidArgument says why.
Status ValidateCidr(const std::string& cidr);

/// Reads the section JSON. kInvalidArgument names the bad key (and a bad
/// CIDR or secret name).
Result<ModalOptions> ParseModalOptions(std::string_view section_json);

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_OPTIONS_H_
