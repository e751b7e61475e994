#include "docker_exe_cache.h"

#include <filesystem>
#include <vector>

#include "plugin_tar.h"

namespace sandrun::docker {
namespace {

// "/sandrun/exe/<sha>/.<name>.complete": per name, because files of equal
// content share the <sha> directory under the names they are looked up by.
std::string MarkerOf(const std::string& sandbox_path) {
  std::size_t slash = sandbox_path.rfind('/');
  return sandbox_path.substr(0, slash + 1) + "." + sandbox_path.substr(slash + 1) + ".complete";
}

}  // namespace

ExeCache::ExeCache(std::shared_ptr<DockerClient> client, std::string volume,
                   PortableOptions portable)
    : helper_(std::move(client), std::move(volume), kPortableExeRoot, kExeCacheHelperRole),
      portable_(std::move(portable)) {}

Result<bool> ExeCache::PresentInVolume(const PortableFile& file) {
  const std::string marker = MarkerOf(file.sandbox_path);
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, helper_.Call([&](const std::string& helper) {
    return helper_.client().Request("HEAD",
                                    "/containers/" + helper + "/archive?path=" + UrlEncode(marker));
  }));
  if (res.status == 200) return true;
  if (res.status == 404) return false;
  return VolumeApiError(res, "stat " + marker + " in volume " + volume());
}

Result<std::uintmax_t> ExeCache::Ensure(const PortablePlan& plan) {
  auto missing = [&] {
    std::vector<const PortableFile*> out;
    std::lock_guard<std::mutex> lock(known_mu_);
    for (const PortableFile& file : plan.files) {
      if (!known_present_.count(file.sandbox_path)) out.push_back(&file);
    }
    return out;
  };
  if (missing().empty()) return 0;
  std::lock_guard<std::mutex> upload(upload_mu_);
  std::vector<const PortableFile*> to_send;
  for (const PortableFile* file : missing()) {
    SANDRUN_ASSIGN_OR_RETURN(bool present, PresentInVolume(*file));
    if (present) {
      std::lock_guard<std::mutex> lock(known_mu_);
      known_present_.insert(file->sandbox_path);
    } else {
      to_send.push_back(file);
    }
  }
  if (to_send.empty()) return 0;
  TarBuilder tar;
  std::uintmax_t bytes = 0;
  for (const PortableFile* file : to_send) {
    // Entries relative to "/": the helper mounts the volume at /sandrun/exe.
    SANDRUN_RETURN_IF_ERROR(tar.AddHostPath(file->host_path, file->sandbox_path.substr(1)));
    TarEntry marker;
    marker.name = MarkerOf(file->sandbox_path).substr(1);
    SANDRUN_RETURN_IF_ERROR(tar.AddEntry(marker));
    std::error_code ec;
    bytes += std::filesystem::file_size(file->host_path, ec);
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string body, tar.Finish());
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, helper_.Call([&](const std::string& helper) {
    return helper_.client().Request("PUT", "/containers/" + helper + "/archive?path=%2F", body,
                                    "application/x-tar");
  }));
  if (res.status != 200) return VolumeApiError(res, "upload to volume " + volume());
  std::lock_guard<std::mutex> lock(known_mu_);
  for (const PortableFile* file : to_send) known_present_.insert(file->sandbox_path);
  return bytes;
}

}  // namespace sandrun::docker
