#include "modal_archive_store.h"

#include <openssl/sha.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "modal_http.h"
#include "sandrun/file_util.h"

namespace sandrun::modal {
namespace {

namespace fs = std::filesystem;
namespace mc = ::modal::client;

class ModalArchiveStore : public ArchiveStore {
 public:
  ModalArchiveStore(std::shared_ptr<ControlPlane> control, std::string volume_id,
                    std::string volume_name)
      : control_(std::move(control)),
        volume_id_(std::move(volume_id)),
        volume_name_(std::move(volume_name)) {}

  std::string Describe() const override {
    return "modal volume " + volume_name_ + " (" + volume_id_ + ")";
  }
  bool OnThisHost() const override { return false; }  // Every write is a request.
  Status PutFile(const std::string& path, const fs::path& host_path) override;
  Status PutBytes(const std::string& path, std::string_view data) override;
  Result<std::string> ReadBytes(const std::string& path) override;
  Result<std::vector<std::string>> List(const std::string& dir) override;
  Status Fetch(const std::string& path, const fs::path& dest) override;
  Status Remove(const std::string& path) override {
    // sandrun's client speaks only the Volume RPCs that create, list, read,
    // write and delete a whole Volume (modal-labs/modal-client
    // modal_proto/api.proto); none deletes one file.
    return UnimplementedError(
        "modal: cannot remove " + path + " from volume " + volume_name_ +
        ": Modal's API has no call sandrun can use to delete files in a Volume, so nothing was "
        "removed; delete old runs with Modal's CLI: `modal volume rm " + volume_name_ + " /" +
        path + " -r` (add `--env ENV` outside the default environment)");
  }

 private:
  Result<std::vector<mc::FileEntry>> ListEntries(const std::string& dir, bool recursive);
  // `modes`: one per file (default 0644 for all).
  Status PutMany(const std::vector<std::pair<std::string, std::string>>& files,
                 const std::vector<std::uint32_t>& modes = {});

  std::shared_ptr<ControlPlane> control_;
  std::string volume_id_;
  std::string volume_name_;
};

std::string Normalize(std::string path) {
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path;
}

Result<std::vector<mc::FileEntry>> ModalArchiveStore::ListEntries(const std::string& dir,
                                                                  bool recursive) {
  std::vector<mc::FileEntry> entries;
  int failures = 0;
  while (true) {
    entries.clear();
    grpc::ClientContext context;
    SANDRUN_RETURN_IF_ERROR(control_->PrepareStream(&context));
    mc::VolumeListFiles2Request request;
    request.set_volume_id(volume_id_);
    request.set_path(dir.empty() ? "/" : "/" + dir);
    request.set_recursive(recursive);
    auto reader = control_->stub().VolumeListFiles2(&context, request);
    mc::VolumeListFiles2Response response;
    while (reader->Read(&response)) {
      for (const auto& entry : response.entries()) entries.push_back(entry);
    }
    grpc::Status status = reader->Finish();
    if (status.ok()) return entries;
    if (!IsRetryableGrpcCode(status.error_code()) || ++failures > 3) {
      return MapGrpcStatus(status, "VolumeListFiles2 " + dir);
    }
  }
}

Result<std::vector<std::string>> ModalArchiveStore::List(const std::string& dir) {
  const std::string base = Normalize(dir);
  SANDRUN_ASSIGN_OR_RETURN(auto entries, ListEntries(base, false));
  std::set<std::string> names;
  for (const auto& entry : entries) {
    std::string path = Normalize(entry.path());
    if (!base.empty() && path.rfind(base + "/", 0) == 0) path = path.substr(base.size() + 1);
    if (path.empty()) continue;
    path = path.substr(0, path.find('/'));
    names.insert(entry.type() == mc::FileEntry::DIRECTORY ? path + "/" : path);
  }
  return std::vector<std::string>(names.begin(), names.end());
}

Result<std::string> ModalArchiveStore::ReadBytes(const std::string& path) {
  mc::VolumeGetFile2Request request;
  request.set_volume_id(volume_id_);
  request.set_path("/" + Normalize(path));
  mc::VolumeGetFile2Response response;
  SANDRUN_RETURN_IF_ERROR(control_->Unary("VolumeGetFile2", [&](grpc::ClientContext* c) {
    return control_->stub().VolumeGetFile2(c, request, &response);
  }));
  std::string data;
  data.reserve(response.size());
  for (const auto& url : response.get_urls()) {
    Result<std::string> block = HttpGet(url);
    for (int attempt = 0; !block.ok() && block.status().retryable() && attempt < 3; ++attempt) {
      block = HttpGet(url);
    }
    if (!block.ok()) return block.status();
    data += *block;
  }
  return data;
}

Status ModalArchiveStore::PutMany(const std::vector<std::pair<std::string, std::string>>& files,
                                  const std::vector<std::uint32_t>& modes) {
  mc::VolumePutFiles2Request request;
  request.set_volume_id(volume_id_);
  request.set_disallow_overwrite_existing_files(false);
  for (const auto& [path, data] : files) {
    auto* file = request.add_files();
    file->set_path("/" + Normalize(path));
    file->set_size(data.size());
    file->set_mode(modes.empty() ? 0644 : modes[static_cast<std::size_t>(request.files_size() - 1)]);
    for (std::size_t offset = 0; offset < data.size() || offset == 0; offset += kVolumeBlockSize) {
      std::string_view block = std::string_view(data).substr(offset, kVolumeBlockSize);
      file->add_blocks()->set_contents_sha256(VolumeBlockHash(block));
      if (data.empty()) break;
    }
  }
  for (int round = 0; round < 3; ++round) {
    mc::VolumePutFiles2Response response;
    SANDRUN_RETURN_IF_ERROR(control_->Unary("VolumePutFiles2", [&](grpc::ClientContext* c) {
      return control_->stub().VolumePutFiles2(c, request, &response);
    }));
    if (response.missing_blocks().empty()) return OkStatus();
    if (round == 2) break;
    for (const auto& missing : response.missing_blocks()) {
      if (missing.file_index() >= files.size()) {
        return InternalError("modal: VolumePutFiles2 named a file index out of range");
      }
      const std::string& data = files[missing.file_index()].second;
      std::string_view block =
          std::string_view(data).substr(std::min<std::size_t>(data.size(),
                                                              missing.block_index() * kVolumeBlockSize),
                                        kVolumeBlockSize);
      SANDRUN_ASSIGN_OR_RETURN(std::string put_response, HttpPut(missing.put_url(), block));
      auto* file = request.mutable_files(static_cast<int>(missing.file_index()));
      if (missing.block_index() >= static_cast<std::uint64_t>(file->blocks_size())) {
        return InternalError("modal: VolumePutFiles2 named a block index out of range");
      }
      file->mutable_blocks(static_cast<int>(missing.block_index()))->set_put_response(put_response);
    }
  }
  return UnavailableError("modal: VolumePutFiles2 still reports missing blocks after upload");
}

Status ModalArchiveStore::PutBytes(const std::string& path, std::string_view data) {
  return PutMany({{path, std::string(data)}});
}

Status ModalArchiveStore::PutFile(const std::string& path, const fs::path& host_path) {
  std::error_code ec;
  std::vector<std::pair<std::string, std::string>> files;
  if (fs::is_directory(host_path, ec)) {
    for (fs::recursive_directory_iterator it(host_path, ec), end; it != end; it.increment(ec)) {
      if (ec) break;
      if (!it->is_regular_file() || it->is_symlink()) continue;
      SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(it->path()));
      files.emplace_back(path + "/" + fs::relative(it->path(), host_path).generic_string(),
                         std::move(data));
    }
    if (ec) return InternalError("modal: walking " + host_path.string() + ": " + ec.message());
    if (files.empty()) return OkStatus();
    return PutMany(files);
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(host_path));
  // An executable stays one (the portable-executable cache's loader).
  const bool executable =
      (fs::status(host_path, ec).permissions() & fs::perms::owner_exec) != fs::perms::none;
  return PutMany({{path, std::move(data)}}, {executable ? 0755u : 0644u});
}

Status ModalArchiveStore::Fetch(const std::string& path, const fs::path& dest) {
  const std::string base = Normalize(path);
  const std::string name = fs::path(base).filename().string();
  SANDRUN_ASSIGN_OR_RETURN(auto entries, ListEntries(base, true));
  for (const auto& entry : entries) {
    if (entry.type() == mc::FileEntry::SYMLINK) {
      return PermissionDeniedError("modal: refusing to fetch " + path + ": it holds symlink " +
                                   entry.path());
    }
  }
  std::error_code ec;
  for (const auto& entry : entries) {
    std::string rel = Normalize(entry.path());
    if (rel == base) {
      rel = "";
    } else if (rel.rfind(base + "/", 0) == 0) {
      rel = rel.substr(base.size() + 1);
    }
    if (!rel.empty() && !IsSafeRelativePath(rel)) {
      return PermissionDeniedError("modal: refusing to fetch unsafe path " + entry.path());
    }
    fs::path target = rel.empty() ? dest / name : dest / name / rel;
    if (entry.type() == mc::FileEntry::DIRECTORY) {
      fs::create_directories(target, ec);
      continue;
    }
    if (entry.type() != mc::FileEntry::FILE) continue;
    SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadBytes(rel.empty() ? base : base + "/" + rel));
    fs::create_directories(target.parent_path(), ec);
    std::ofstream out(target, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return InternalError("modal: cannot write " + target.string());
  }
  return OkStatus();
}

}  // namespace

std::string VolumeBlockHash(std::string_view block) {
  std::size_t end = block.size();
  while (end > 0 && block[end - 1] == '\0') --end;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(block.data()), end, digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

std::unique_ptr<ArchiveStore> CreateModalArchiveStore(std::shared_ptr<ControlPlane> control,
                                                      std::string volume_id,
                                                      std::string volume_name) {
  return std::make_unique<ModalArchiveStore>(std::move(control), std::move(volume_id),
                                             std::move(volume_name));
}

}  // namespace sandrun::modal
