// BackendRegistry: backends by name. Built-in plugins are registered by an
// explicit table that CMake generates (RegisterBuiltinBackends, linked by the
// CLI); third-party plugins are shared libraries found on SANDRUN_PLUGIN_PATH
// that export `sandrun_plugin_entry` (plugin_abi.h). No static-init magic.
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

/// Not thread-safe for registration; Create() may be called concurrently
/// once registration is done.
class BackendRegistry {
 public:
  /// Names are [a-z0-9_-]+; a duplicate name is kAlreadyExists.
  Status Register(std::string name, std::string description, BackendFactory factory,
                  std::string origin = "built-in");
  bool Has(const std::string& name) const;
  std::vector<BackendInfo> List() const;  ///< Sorted by name.
  /// kNotFound lists the known names: "unknown backend 'dokcer' (known: ...)".
  Result<std::unique_ptr<Backend>> Create(const std::string& name,
                                          const Config& config) const;

 private:
  friend Status LoadPlugin(const std::filesystem::path&, BackendRegistry&);
  struct Entry {
    BackendInfo info;
    BackendFactory factory;
  };
  std::map<std::string, Entry> entries_;
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

/// Loads one plugin shared library. Refuses, with a message naming the file
/// and both versions, a plugin built for another ABI version.
Status LoadPlugin(const std::filesystem::path& library, BackendRegistry& registry);

/// Loads every `*.so` in each directory of a ':'-separated list. Returns the
/// problems (one Status per bad file); good plugins still load.
std::vector<Status> LoadPluginsFromPath(const std::string& path_list,
                                        BackendRegistry& registry);

}  // namespace sandrun

#endif  // SANDRUN_REGISTRY_H_
