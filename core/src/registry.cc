#include "sandrun/registry.h"

#include <dlfcn.h>

#include <algorithm>
#include <system_error>

#include "sandrun/plugin_abi.h"

namespace sandrun {
namespace {

bool ValidBackendName(const std::string& name) {
  return !name.empty() && name.size() <= 64 &&
         std::all_of(name.begin(), name.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
         });
}

}  // namespace

Status BackendRegistry::Register(BackendInfo info, BackendFactory factory) {
  const std::string name = info.name;  // a copy: `info` moves into the entry
  if (info.origin.empty()) info.origin = "built-in";
  if (!ValidBackendName(name)) {
    return InvalidArgumentError("backend name '" + name +
                                "' is not valid (use lowercase letters, digits, '-' and '_')");
  }
  if (entries_.count(name) != 0) {
    return AlreadyExistsError("backend '" + name + "' is registered twice (first by " +
                              entries_[name].info.origin + ", again by " + info.origin + ")");
  }
  for (const auto& flag : info.flags) {
    for (const auto& [other, entry] : entries_) {
      for (const auto& taken : entry.info.flags) {
        if (taken.name != flag.name) continue;
        return AlreadyExistsError("backend '" + name + "' declares flag --" + flag.name +
                                  ", which backend '" + other + "' already declares");
      }
    }
  }
  entries_[name] = Entry{std::move(info), std::move(factory)};
  return OkStatus();
}

Status BackendRegistry::Register(std::string name, std::string description,
                                 BackendFactory factory, std::string origin) {
  BackendInfo info;
  info.name = std::move(name);
  info.description = std::move(description);
  info.origin = std::move(origin);
  return Register(std::move(info), std::move(factory));
}

bool BackendRegistry::Has(const std::string& name) const { return entries_.count(name) != 0; }

std::vector<BackendInfo> BackendRegistry::List() const {
  std::vector<BackendInfo> out;
  for (const auto& [name, entry] : entries_) out.push_back(entry.info);
  return out;
}

void BackendRegistry::RecordUnloaded(UnloadedPlugin plugin) {
  unloaded_.push_back(std::move(plugin));
}

Result<std::unique_ptr<Backend>> BackendRegistry::Create(const std::string& name,
                                                         const Config& config) const {
  return Create(name, config, ProcessEnvironment());
}

Result<std::unique_ptr<Backend>> BackendRegistry::Create(
    const std::string& name, const Config& config,
    const std::map<std::string, std::string>& env) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    for (const auto& plugin : unloaded_) {
      if (plugin.name == name) {
        return FailedPreconditionError("backend '" + name + "' is not available: its plugin " +
                                       plugin.library.string() + " could not be loaded: " +
                                       plugin.reason);
      }
    }
    std::string known;
    for (const auto& [n, e] : entries_) known += (known.empty() ? "" : ", ") + n;
    return NotFoundError("unknown backend '" + name + "' (known: " +
                         (known.empty() ? "none" : known) + ")");
  }
  BackendContext context;
  context.config = &config;
  auto section = config.backend_sections.find(name);
  context.section_json = section == config.backend_sections.end() ? "{}" : section->second;
  context.env = env;
  auto backend = it->second.factory(context);
  if (!backend.ok()) return backend.status().WithContext("backend '" + name + "'");
  return backend;
}

namespace {

/// "sandrun-modal.so" -> "modal", "libfoo.so" -> "libfoo": the name a plugin
/// that failed before saying its own name is listed under.
std::string NameFromLibrary(const std::filesystem::path& library) {
  std::string stem = library.stem().string();
  const std::string prefix = "sandrun-";
  return stem.rfind(prefix, 0) == 0 ? stem.substr(prefix.size()) : stem;
}

Status Refuse(BackendRegistry& registry, const std::filesystem::path& library,
              std::string name, const std::string& reason) {
  registry.RecordUnloaded(UnloadedPlugin{std::move(name), library, reason});
  return FailedPreconditionError("plugin " + library.string() + ": " + reason);
}

}  // namespace

Status LoadPlugin(const std::filesystem::path& library, BackendRegistry& registry,
                  const std::string& origin) {
  std::error_code ec;
  std::filesystem::path canonical = std::filesystem::weakly_canonical(library, ec);
  if (ec) canonical = library;
  if (std::find(registry.libraries_.begin(), registry.libraries_.end(), canonical) !=
      registry.libraries_.end()) {
    return OkStatus();
  }
  // RTLD_NODELETE: backends created from the plugin may outlive any handle we keep.
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    return Refuse(registry, library, NameFromLibrary(library),
                  std::string("cannot be loaded: ") + (err ? err : "unknown error"));
  }
  auto entry = reinterpret_cast<SandrunPluginEntryFn>(dlsym(handle, SANDRUN_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    dlclose(handle);
    return Refuse(registry, library, NameFromLibrary(library),
                  std::string("does not export ") + SANDRUN_PLUGIN_ENTRY_SYMBOL + "()");
  }
  const SandrunPluginInfo* info = entry();
  if (info == nullptr || info->register_backends == nullptr) {
    return Refuse(registry, library, NameFromLibrary(library), "returned no entry table");
  }
  const std::string name = info->name ? info->name : NameFromLibrary(library);
  if (info->abi_version != SANDRUN_PLUGIN_ABI_VERSION) {
    return Refuse(registry, library, name,
                  "(" + name + ") was built for plugin ABI version " +
                      std::to_string(info->abi_version) + ", but this sandrun uses version " +
                      std::to_string(SANDRUN_PLUGIN_ABI_VERSION) +
                      "; rebuild the plugin against this sandrun's headers");
  }
  registry.libraries_.push_back(canonical);
  // Registrations made by the plugin are tagged with its origin.
  BackendRegistry staged;
  info->register_backends(&staged);
  for (auto& [backend_name, entry_data] : staged.entries_) {
    BackendInfo backend_info = entry_data.info;
    backend_info.origin = origin.empty() ? library.string() : origin;
    SANDRUN_RETURN_IF_ERROR(registry.Register(std::move(backend_info), entry_data.factory));
  }
  return OkStatus();
}

namespace {

std::vector<std::filesystem::path> LibrariesIn(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> libraries;
  std::error_code ec;
  for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
    if (item.path().extension() == ".so") libraries.push_back(item.path());
  }
  std::sort(libraries.begin(), libraries.end());
  return libraries;
}

}  // namespace

std::vector<Status> LoadPluginsFromPath(const std::string& path_list,
                                        BackendRegistry& registry) {
  std::vector<Status> problems;
  std::size_t start = 0;
  while (start <= path_list.size()) {
    std::size_t end = path_list.find(':', start);
    if (end == std::string::npos) end = path_list.size();
    std::filesystem::path dir = path_list.substr(start, end - start);
    start = end + 1;
    if (dir.empty()) continue;
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) {
      problems.push_back(NotFoundError("SANDRUN_PLUGIN_PATH entry " + dir.string() +
                                       " is not a directory"));
      continue;
    }
    for (const auto& library : LibrariesIn(dir)) {
      Status status = LoadPlugin(library, registry);
      if (!status.ok()) problems.push_back(status);
    }
  }
  return problems;
}

std::filesystem::path BuiltinPluginDirectory() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&BuiltinPluginDirectory), &info) == 0 ||
      info.dli_fname == nullptr) {
    return {};
  }
  std::error_code ec;
  std::filesystem::path self = std::filesystem::weakly_canonical(info.dli_fname, ec);
  if (ec) self = info.dli_fname;
  return self.parent_path() / SANDRUN_PLUGIN_SUBDIR;
}

std::vector<Status> LoadPluginModules(BackendRegistry& registry,
                                      const std::map<std::string, std::string>& env) {
  std::filesystem::path builtin = BuiltinPluginDirectory();
  std::error_code ec;
  if (!builtin.empty() && std::filesystem::is_directory(builtin, ec)) {
    for (const auto& library : LibrariesIn(builtin)) {
      LoadPlugin(library, registry, "built-in").IgnoreError();  // kept in Unloaded()
    }
  }
  auto path = env.find("SANDRUN_PLUGIN_PATH");
  if (path == env.end()) return {};
  return LoadPluginsFromPath(path->second, registry);
}

}  // namespace sandrun
