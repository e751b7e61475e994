// BackendRegistry: backends by name. Every backend comes from a plugin: a
// module that exports `sandrun_plugin_entry` (plugin_abi.h) — the built-in
// ones in <libdir>/sandrun/plugins beside the core library, third-party ones
// on SANDRUN_PLUGIN_PATH — or, in a SANDRUN_STATIC_PLUGINS build, an explicit
// table CMake generates. RegisterAllBackends does all of it. No static-init magic.
#ifndef SANDRUN_REGISTRY_H_
#define SANDRUN_REGISTRY_H_

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sandrun/backend.h"
#include "sandrun/config.h"
#include "sandrun/status.h"

namespace sandrun {

/// What a backend factory is given.
struct BackendContext {
  const Config* config = nullptr;  ///< Never null; outlives the backend.
  std::string section_json;        ///< This backend's own section, "{}" if none.
};

using BackendFactory =
    std::function<Result<std::unique_ptr<Backend>>(const BackendContext&)>;

struct BackendInfo {
  std::string name;
  std::string description;
  std::string origin;  ///< "built-in" or the plugin's file path.
};

/// A plugin that could not be loaded, kept so `sandrun backends` can list it
/// and `--backend NAME` can say why NAME is missing.
struct UnloadedPlugin {
  std::string name;               ///< The backend it would provide, or the file's stem.
  std::filesystem::path library;
  std::string reason;             ///< e.g. the loader's "libgrpc++.so.1.51: cannot open ..."
};

/// Not thread-safe for registration; Create() may be called concurrently
/// once registration is done.
class BackendRegistry {
 public:
  /// Names are [a-z0-9_-]+; a duplicate name is kAlreadyExists.
  Status Register(std::string name, std::string description, BackendFactory factory,
                  std::string origin = "built-in");
  bool Has(const std::string& name) const;
  std::vector<BackendInfo> List() const;  ///< Sorted by name.
  /// kNotFound lists the known names: "unknown backend 'dokcer' (known: ...)";
  /// for a plugin that failed to load, kFailedPrecondition says why.
  Result<std::unique_ptr<Backend>> Create(const std::string& name,
                                          const Config& config) const;

  void RecordUnloaded(UnloadedPlugin plugin);
  const std::vector<UnloadedPlugin>& Unloaded() const { return unloaded_; }

 private:
  friend Status LoadPlugin(const std::filesystem::path&, BackendRegistry&, const std::string&);
  struct Entry {
    BackendInfo info;
    BackendFactory factory;
  };
  std::map<std::string, Entry> entries_;
  std::vector<UnloadedPlugin> unloaded_;
  std::vector<std::filesystem::path> libraries_;  ///< Loaded (canonical), so none loads twice.
};

/// Registers the plugins linked statically into this build (the table CMake
/// generates; empty unless SANDRUN_STATIC_PLUGINS=ON).
void RegisterBuiltinBackends(BackendRegistry& registry);

/// Every backend this installation provides, the one way every entry point
/// (CLI, GoogleTest adapter, tests) fills a registry: the static table, then
/// the plugin modules beside the core library (<libdir>/sandrun/plugins, in
/// the build tree as in an install), then each directory of
/// SANDRUN_PLUGIN_PATH taken from `env`. Returns one Status per plugin that
/// failed to load (missing library, ABI mismatch); the others still register.
/// Defined with the static table, in sandrun::builtin_backends.
std::vector<Status> RegisterAllBackends(BackendRegistry& registry,
                                        const std::map<std::string, std::string>& env);

/// Loads one plugin shared library; its backends are registered with
/// `origin` ("" = the library's path). Refuses, with a message naming the
/// file and both versions, a plugin built for another ABI version; a plugin
/// that fails is also recorded in registry.Unloaded().
Status LoadPlugin(const std::filesystem::path& library, BackendRegistry& registry,
                  const std::string& origin = "");

/// Loads every `*.so` in each directory of a ':'-separated list. Returns the
/// problems (one Status per bad file); good plugins still load.
std::vector<Status> LoadPluginsFromPath(const std::string& path_list,
                                        BackendRegistry& registry);

/// Where the built-in modules live: <directory of the core library>/
/// sandrun/plugins, found with dladdr, so the build tree and a relocated
/// install both work.
std::filesystem::path BuiltinPluginDirectory();

/// Loads the built-in modules (BuiltinPluginDirectory(), origin "built-in";
/// a module that fails is recorded in Unloaded() and not returned, so a
/// missing Modal library never troubles a local run), then SANDRUN_PLUGIN_PATH
/// from `env` (its problems returned). A library already loaded is skipped.
std::vector<Status> LoadPluginModules(BackendRegistry& registry,
                                      const std::map<std::string, std::string>& env);

}  // namespace sandrun

#endif  // SANDRUN_REGISTRY_H_
