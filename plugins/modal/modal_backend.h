// The Modal backend: one Modal Sandbox per sandrun sandbox, driven through
// Modal's gRPC API (modal_client.h) natively: no Python, no Modal CLI.
//
// Credentials: MODAL_TOKEN_ID/MODAL_TOKEN_SECRET, else ~/.modal.toml
// (modal_credentials.h). Settings: the backend's own section of sandrun.json
// (modal_options.h).
//
// The rooms behind it: modal_backend.cc (the Backend: create, terminate,
// list, cleanup, capabilities), modal_exec.cc (exec, router, output
// streams), modal_files.cc (put/get), modal_images.cc (image building),
// modal_options.cc (settings), modal_sandbox.h (what they share).
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

#include "modal_options.h"
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
