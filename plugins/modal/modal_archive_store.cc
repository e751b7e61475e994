#include "modal_archive_store.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
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
  Status Remove(const std::string& path) override;

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

// How many bytes of the range [start, start + length) fall into each of
// its 8 MiB-aligned blocks (Python's _expected_block_lengths in
// py/modal/volume.py).
std::vector<std::size_t> ExpectedBlockLengths(std::uint64_t start, std::uint64_t length,
                                              std::size_t blocks) {
  std::vector<std::size_t> lengths;
  std::uint64_t pos = start;
  for (std::size_t i = 0; i < blocks; ++i) {
    std::uint64_t block_end =
        std::min<std::uint64_t>(start + length, (start / kVolumeBlockSize + i + 1) * kVolumeBlockSize);
    lengths.push_back(block_end > pos ? static_cast<std::size_t>(block_end - pos) : 0);
    pos = std::max(pos, block_end);
  }
  return lengths;
}

Result<std::string> ModalArchiveStore::ReadBytes(const std::string& path) {
  mc::VolumeGetFile2Request request;
  request.set_volume_id(volume_id_);
  request.set_path("/" + Normalize(path));
  mc::VolumeGetFile2Response response;
  SANDRUN_RETURN_IF_ERROR(control_->Unary("VolumeGetFile2", [&](grpc::ClientContext* c) {
    return control_->stub().VolumeGetFile2(c, request, &response);
  }));
  const std::vector<std::size_t> lengths =
      ExpectedBlockLengths(response.start(), response.len(), response.get_urls_size());
  std::string data;
  data.reserve(response.len());
  for (int i = 0; i < response.get_urls_size(); ++i) {
    SANDRUN_ASSIGN_OR_RETURN(std::string block, HttpGet(response.get_urls(i), lengths[i]));
    data += block;
  }
  if (data.size() != response.len()) {
    return InternalError("modal: VolumeGetFile2 " + path + " promised " +
                         std::to_string(response.len()) + " bytes in " +
                         std::to_string(response.get_urls_size()) + " blocks; they hold " +
                         std::to_string(data.size()));
  }
  return data;
}

Status ModalArchiveStore::PutMany(const std::vector<std::pair<std::string, std::string>>& files,
                                  const std::vector<std::uint32_t>& modes) {
  mc::VolumePutFiles2Request request;
  request.set_volume_id(volume_id_);
  request.set_disallow_overwrite_existing_files(false);
  std::vector<std::vector<VolumeBlock>> blocks;  // per file, what each block uploads
  for (const auto& [path, data] : files) {
    auto* file = request.add_files();
    file->set_path("/" + Normalize(path));
    file->set_size(data.size());
    file->set_mode(modes.empty() ? 0644 : modes[static_cast<std::size_t>(request.files_size() - 1)]);
    blocks.push_back(SplitVolumeBlocks(data));
    for (const VolumeBlock& block : blocks.back()) {
      file->add_blocks()->set_contents_sha256(block.sha256);
    }
  }
  // Two rounds, as py/modal/volume.py _put_file_specs: the first may name
  // missing blocks, the second carries their PUT responses.
  for (int round = 0; round < 2; ++round) {
    mc::VolumePutFiles2Response response;
    SANDRUN_RETURN_IF_ERROR(control_->Unary("VolumePutFiles2", [&](grpc::ClientContext* c) {
      return control_->stub().VolumePutFiles2(c, request, &response);
    }));
    if (response.missing_blocks().empty()) return OkStatus();
    if (round == 1) break;
    for (const auto& missing : response.missing_blocks()) {
      if (missing.file_index() >= blocks.size() ||
          missing.block_index() >= blocks[missing.file_index()].size()) {
        return InternalError("modal: VolumePutFiles2 named a block that is not in the request");
      }
      const VolumeBlock& block = blocks[missing.file_index()][missing.block_index()];
      SANDRUN_ASSIGN_OR_RETURN(std::string put_response, HttpPut(missing.put_url(), block.body));
      request.mutable_files(static_cast<int>(missing.file_index()))
          ->mutable_blocks(static_cast<int>(missing.block_index()))
          ->set_put_response(put_response);
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

Status ModalArchiveStore::Remove(const std::string& path) {
  const std::string target = Normalize(path);
  if (target.empty()) {
    return InvalidArgumentError("modal: refusing to remove the whole volume " + volume_name_);
  }
  mc::VolumeRemoveFile2Request request;
  request.set_volume_id(volume_id_);
  request.set_path("/" + target);
  request.set_recursive(true);
  google::protobuf::Empty response;
  Status removed = control_->Unary("VolumeRemoveFile2", [&](grpc::ClientContext* c) {
    return control_->stub().VolumeRemoveFile2(c, request, &response);
  });
  if (removed.code() == StatusCode::kNotFound) return OkStatus();  // already absent
  return removed;
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

std::vector<VolumeBlock> SplitVolumeBlocks(std::string_view data) {
  std::vector<VolumeBlock> blocks;
  for (std::size_t offset = 0; offset < data.size(); offset += kVolumeBlockSize) {
    std::string_view body = data.substr(offset, kVolumeBlockSize);
    while (!body.empty() && body.back() == '\0') body.remove_suffix(1);
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest);
    blocks.push_back({body, std::string(reinterpret_cast<const char*>(digest), sizeof digest)});
  }
  return blocks;
}

Status CheckArchiveVolumeVersion(mc::VolumeFsVersion version, const std::string& volume_name,
                                 std::string_view setting) {
  if (version == mc::VOLUME_FS_VERSION_V2) return OkStatus();
  return FailedPreconditionError(
      "modal: volume " + volume_name + " is a version 1 Volume (as `modal volume create " +
      volume_name + "` makes one); sandrun uses only version 2 Volumes. "
      "Either create one, `modal volume create --version 2 NAME`, and name it in sandrun.json "
      "(\"backends\": {\"modal\": {\"" + std::string(setting) +
      "\": \"NAME\"}}), or, when nothing in it is needed, "
      "`modal volume delete " + volume_name + "` and sandrun creates it again as version 2 "
      "(add `--env ENV` outside the default environment)");
}

std::unique_ptr<ArchiveStore> CreateModalArchiveStore(std::shared_ptr<ControlPlane> control,
                                                      std::string volume_id,
                                                      std::string volume_name) {
  return std::make_unique<ModalArchiveStore>(std::move(control), std::move(volume_id),
                                             std::move(volume_name));
}

}  // namespace sandrun::modal
