#include "modal_exe_cache.h"

#include <filesystem>
#include <utility>
#include <vector>

#include "modal_archive_store.h"

namespace sandrun::modal {

ExeCache::ExeCache(std::shared_ptr<ControlPlane> control, std::string volume_name,
                   std::function<Result<std::string>()> volume_id, PortableOptions portable)
    : control_(std::move(control)),
      volume_name_(std::move(volume_name)),
      volume_id_(std::move(volume_id)),
      portable_(std::move(portable)) {}

Result<ExeCache::Mount> ExeCache::Prepare(const SandboxSpec& spec) {
  std::vector<PortableFile> files;
  for (const auto& upload : spec.uploads) {
    if (!upload.portable) continue;
    SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan, PlanPortableExecutable(upload.source, portable_));
    files.insert(files.end(), plan.files.begin(), plan.files.end());
  }
  Mount mount;
  if (files.empty()) return mount;
  auto volume_id = volume_id_();
  if (!volume_id.ok()) {
    return volume_id.status().WithContext("modal: the executable cache volume '" + volume_name_ +
                                          "'");
  }
  mount.volume_id = *volume_id;
  std::lock_guard<std::mutex> lock(mu_);
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
