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

Status BackendRegistry::Register(std::string name, std::string description,
                                 BackendFactory factory, std::string origin) {
  if (!ValidBackendName(name)) {
    return InvalidArgumentError("backend name '" + name +
                                "' is not valid (use lowercase letters, digits, '-' and '_')");
  }
  if (entries_.count(name) != 0) {
    return AlreadyExistsError("backend '" + name + "' is registered twice (first by " +
                              entries_[name].info.origin + ", again by " + origin + ")");
  }
  entries_[name] = Entry{BackendInfo{name, std::move(description), std::move(origin)},
                         std::move(factory)};
  return OkStatus();
}

bool BackendRegistry::Has(const std::string& name) const { return entries_.count(name) != 0; }

std::vector<BackendInfo> BackendRegistry::List() const {
  std::vector<BackendInfo> out;
  for (const auto& [name, entry] : entries_) out.push_back(entry.info);
  return out;
}

Result<std::unique_ptr<Backend>> BackendRegistry::Create(const std::string& name,
                                                         const Config& config) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    std::string known;
    for (const auto& [n, e] : entries_) known += (known.empty() ? "" : ", ") + n;
    return NotFoundError("unknown backend '" + name + "' (known: " +
                         (known.empty() ? "none" : known) + ")");
  }
  BackendContext context;
  context.config = &config;
  auto section = config.backend_sections.find(name);
  context.section_json = section == config.backend_sections.end() ? "{}" : section->second;
  auto backend = it->second.factory(context);
  if (!backend.ok()) return backend.status().WithContext("backend '" + name + "'");
  return backend;
}

Status LoadPlugin(const std::filesystem::path& library, BackendRegistry& registry) {
  // RTLD_NODELETE: backends created from the plugin may outlive any handle we keep.
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* err = dlerror();
    return FailedPreconditionError("cannot load plugin " + library.string() + ": " +
                                   (err ? err : "unknown error"));
  }
  auto entry = reinterpret_cast<SandrunPluginEntryFn>(dlsym(handle, SANDRUN_PLUGIN_ENTRY_SYMBOL));
  if (entry == nullptr) {
    dlclose(handle);
    return FailedPreconditionError("plugin " + library.string() + " does not export " +
                                   SANDRUN_PLUGIN_ENTRY_SYMBOL + "()");
  }
  const SandrunPluginInfo* info = entry();
  if (info == nullptr || info->register_backends == nullptr) {
    return FailedPreconditionError("plugin " + library.string() + " returned no entry table");
  }
  if (info->abi_version != SANDRUN_PLUGIN_ABI_VERSION) {
    return FailedPreconditionError(
        "plugin " + library.string() + " (" + (info->name ? info->name : "?") +
        ") was built for plugin ABI version " + std::to_string(info->abi_version) +
        ", but this sandrun uses version " + std::to_string(SANDRUN_PLUGIN_ABI_VERSION) +
        "; rebuild the plugin against this sandrun's headers");
  }
  // Registrations made by the plugin are tagged with its path.
  BackendRegistry staged;
  info->register_backends(&staged);
  for (auto& [name, entry_data] : staged.entries_) {
    SANDRUN_RETURN_IF_ERROR(registry.Register(name, entry_data.info.description,
                                              entry_data.factory, library.string()));
  }
  return OkStatus();
}

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
    std::vector<std::filesystem::path> libraries;
    for (const auto& item : std::filesystem::directory_iterator(dir, ec)) {
      if (item.path().extension() == ".so") libraries.push_back(item.path());
    }
    std::sort(libraries.begin(), libraries.end());
    for (const auto& library : libraries) {
      Status status = LoadPlugin(library, registry);
      if (!status.ok()) problems.push_back(status);
    }
  }
  return problems;
}

}  // namespace sandrun
