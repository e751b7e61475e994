// Portable executable uploads (FileUpload::portable): the executable, its
// loader and libraries go to the engine's exe cache (docker_exe_cache.h), and
// the sandbox gets a launcher script in the executable's place (see
// sandrun/portable_exe.h).
#include "docker_images.h"
#include "plugin_tar.h"
#include "sandrun/portable_exe.h"

namespace sandrun::docker {

Result<std::string> PortableLauncherTar(ExeCache& cache, const std::string& source,
                                        const std::string& entry) {
  SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan,
                           PlanPortableExecutable(source, cache.portable_options()));
  SANDRUN_RETURN_IF_ERROR(cache.Ensure(plan).status());
  TarEntry launcher;
  launcher.name = entry;
  launcher.data = plan.LauncherScript();
  launcher.mode = 0755;
  return TarOfEntries({launcher});
}

}  // namespace sandrun::docker
