#include "modal_exe_cache.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "modal_archive_store.h"

namespace sandrun::modal {
namespace mc = ::modal::client;

ExeCache::ExeCache(std::shared_ptr<ControlPlane> control, std::string volume_name,
                   std::string environment, PortableOptions portable)
    : control_(std::move(control)),
      volume_name_(std::move(volume_name)),
      environment_(std::move(environment)),
      portable_(std::move(portable)) {}

Result<std::string> ExeCache::VolumeIdLocked() {
  if (!volume_id_.empty()) return volume_id_;
  mc::VolumeGetOrCreateRequest request;
  request.set_deployment_name(volume_name_);
  request.set_environment_name(environment_);
  request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  request.set_version(mc::VOLUME_FS_VERSION_V2);
  mc::VolumeGetOrCreateResponse response;
  SANDRUN_RETURN_IF_ERROR(control_->Unary("VolumeGetOrCreate", [&](grpc::ClientContext* c) {
    return control_->stub().VolumeGetOrCreate(c, request, &response);
  }).WithContext("modal: the executable cache volume '" + volume_name_ + "'"));
  volume_id_ = response.volume_id();
  return volume_id_;
}

Result<ExeCache::Mount> ExeCache::Prepare(const SandboxSpec& spec) {
  std::vector<PortableFile> files;
  for (const auto& upload : spec.uploads) {
    if (!upload.portable) continue;
    SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan, PlanPortableExecutable(upload.source, portable_));
    files.insert(files.end(), plan.files.begin(), plan.files.end());
  }
  Mount mount;
  if (files.empty()) return mount;
  std::lock_guard<std::mutex> lock(mu_);
  SANDRUN_ASSIGN_OR_RETURN(mount.volume_id, VolumeIdLocked());
  auto store = CreateModalArchiveStore(control_, mount.volume_id, volume_name_);
  const std::string root = std::string(kPortableExeRoot) + "/";
  std::vector<ArchivePut> missing;
  std::set<std::string> queued;
  for (const auto& file : files) {
    // /sandrun/exe/<sha>/<name> in the sandbox is <sha>/<name> in the Volume.
    const std::string path = file.sandbox_path.substr(root.size());
    mount.served.insert(file.sandbox_path);
    if (present_.count(path) || queued.count(path)) continue;
    const std::string dir = std::filesystem::path(path).parent_path().string();
    auto listed = store->List(dir);
    const std::string name = std::filesystem::path(path).filename().string();
    bool there = false;
    if (listed.ok()) {
      for (const auto& entry : *listed) there = there || entry == name;
    }
    if (there) {
      present_.insert(path);
      continue;
    }
    queued.insert(path);
    missing.push_back({path, file.host_path});
    std::error_code ec;
    mount.bytes_sent += std::filesystem::file_size(file.host_path, ec);
  }
  if (!missing.empty()) {
    SANDRUN_RETURN_IF_ERROR(store->PutFiles(missing).WithContext(
        "modal: putting portable executables into volume '" + volume_name_ + "'"));
    present_.insert(queued.begin(), queued.end());
  }
  return mount;
}

}  // namespace sandrun::modal
