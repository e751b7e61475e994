// Portable executable uploads (FileUpload::portable): the executable, its
// loader and libraries under /sandrun/exe/<sha256>/, and a launcher script in
// the executable's place (see sandrun/portable_exe.h).
#include <cstdlib>

#include "docker_images.h"
#include "docker_tar.h"
#include "sandrun/portable_exe.h"

namespace sandrun::docker {

Result<std::string> PortableUploadTar(const std::string& source, const std::string& entry,
                                      std::set<std::string>* already_sent) {
  PortableOptions options;
  if (const char* path = std::getenv("LD_LIBRARY_PATH")) options.ld_library_path = path;
  SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan, PlanPortableExecutable(source, options));
  TarBuilder tar;
  for (const auto& file : plan.files) {
    if (already_sent != nullptr && already_sent->count(file.sandbox_path)) continue;
    SANDRUN_RETURN_IF_ERROR(tar.AddHostPath(file.host_path, file.sandbox_path.substr(1)));
  }
  TarEntry launcher;
  launcher.name = entry;
  launcher.data = plan.LauncherScript();
  launcher.mode = 0755;
  SANDRUN_RETURN_IF_ERROR(tar.AddEntry(launcher));
  SANDRUN_ASSIGN_OR_RETURN(std::string bytes, tar.Finish());
  if (already_sent != nullptr) {
    for (const auto& file : plan.files) already_sent->insert(file.sandbox_path);
  }
  return bytes;
}

}  // namespace sandrun::docker
