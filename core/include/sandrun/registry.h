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
  /// The process environment as the entry point gave it (DOCKER_HOST,
  /// MODAL_TOKEN_ID, LD_LIBRARY_PATH...). Plugins read variables here, never
  /// with getenv, so an entry point (or a test) decides what they see.
  std::map<std::string, std::string> env;
};

using BackendFactory =
    std::function<Result<std::unique_ptr<Backend>>(const BackendContext&)>;

/// A command-line flag a backend declares for a key of its own config
/// section ("backends": {"<name>": {"<key>": ...}}). The CLI offers it under
/// the backend's name in --help; sandrun/run_setup.h applies it with the
/// config precedence: the flag, then the first variable of `env` that is set
/// and not empty, then sandrun.json, then the backend's default. The backend
/// validates the value when it is built.
struct BackendFlag {
  std::string name;              ///< Long name without "--" ("secret"); unique among backends.
  std::string key;               ///< Key in the backend's section ("secrets").
  std::string help;
  bool list = false;             ///< Repeatable; a comma list in a variable.
  std::vector<std::string> env;  ///< Variables read when the flag is absent.
  /// Also offered by commands that only open a backend (results, backends,
  /// doctor, cleanup), because it says where things are, not how they run.
  bool every_command = false;
};

/// What a backend declares when it registers.
struct BackendInfo {
  std::string name;         ///< [a-z0-9_-]+.
  std::string description;
  std::string origin;       ///< "built-in" or the plugin's file path (set by the loader).
  /// Where "auto" tries this backend: higher ranks first, ties by name. The
  /// default, 0, puts a backend after every built-in one.
  int auto_rank = 0;
  std::vector<BackendFlag> flags;
  /// What `sandrun doctor` suggests when the backend says it is unavailable.
  std::string unavailable_hint;
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
  /// Names are [a-z0-9_-]+; a duplicate name, or a flag name another
  /// backend declared, is kAlreadyExists. An empty origin is "built-in".
  Status Register(BackendInfo info, BackendFactory factory);
  /// The same with rank 0 and no flags.
  Status Register(std::string name, std::string description, BackendFactory factory,
                  std::string origin = "built-in");
  bool Has(const std::string& name) const;
  std::vector<BackendInfo> List() const;  ///< Sorted by name.
  /// kNotFound lists the known names: "unknown backend 'dokcer' (known: ...)";
  /// for a plugin that failed to load, kFailedPrecondition says why.
  /// `env` reaches the factory as BackendContext::env.
  Result<std::unique_ptr<Backend>> Create(const std::string& name, const Config& config,
                                          const std::map<std::string, std::string>& env) const;
  /// The same with ProcessEnvironment(), for tools and tests.
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
