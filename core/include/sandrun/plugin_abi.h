// The one C entry point a third-party backend plugin exports.
//
//   extern "C" SANDRUN_PLUGIN_EXPORT const SandrunPluginInfo* sandrun_plugin_entry() {
//     static const SandrunPluginInfo info{SANDRUN_PLUGIN_ABI_VERSION, "mybackend",
//                                         &RegisterMyBackend};
//     return &info;
//   }
//
// sandrun loads the library, calls sandrun_plugin_entry(), and refuses the
// plugin unless abi_version equals its own SANDRUN_PLUGIN_ABI_VERSION. Bump
// the version whenever backend.h, spec.h, result.h, archive_store.h or
// registry.h change in a way that breaks binary compatibility.
#ifndef SANDRUN_PLUGIN_ABI_H_
#define SANDRUN_PLUGIN_ABI_H_

#include <cstdint>

#define SANDRUN_PLUGIN_ABI_VERSION 5
#define SANDRUN_PLUGIN_EXPORT __attribute__((visibility("default")))
#define SANDRUN_PLUGIN_ENTRY_SYMBOL "sandrun_plugin_entry"

namespace sandrun {
class BackendRegistry;
}

extern "C" {
struct SandrunPluginInfo {
  std::uint32_t abi_version;
  const char* name;  ///< For messages.
  void (*register_backends)(sandrun::BackendRegistry* registry);
};
typedef const SandrunPluginInfo* (*SandrunPluginEntryFn)(void);
}

#endif  // SANDRUN_PLUGIN_ABI_H_
