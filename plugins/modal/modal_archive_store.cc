#include "modal_archive_store.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <set>

#include "modal_http.h"
#include "sandrun/file_util.h"

namespace sandrun::modal {
namespace {

namespace fs = std::filesystem;
namespace mc = ::modal::client;

/// A slice of a file without its trailing zero bytes: what a block hashes
/// and uploads.
std::string_view BlockBody(std::string_view slice) {
  while (!slice.empty() && slice.back() == '\0') slice.remove_suffix(1);
  return slice;
}

std::string Sha256(std::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

/// What an upload keeps of one block: where its body lies in the file, and
/// its hash.
struct BlockDigest {
  std::uint64_t offset = 0;
  std::size_t body_length = 0;
  std::string sha256;
};

/// One file of a VolumePutFiles2 request, and where its bytes come from:
/// `bytes` in memory, or else the host file `host_path`, read a block at a
/// time (never whole) when it is hashed and again for each block the Volume
/// lacks.
struct VolumePut {
  std::string path;
  std::uint32_t mode = 0644;
  std::string_view bytes;
  fs::path host_path;
};

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
  Status PutFiles(const std::vector<ArchivePut>& puts) override;
  Status PutBytes(const std::string& path, std::string_view data) override;
  Result<std::string> ReadBytes(const std::string& path) override;
  Result<std::vector<std::string>> List(const std::string& dir) override;
  Status Fetch(const std::string& path, const fs::path& dest) override;
  Status Remove(const std::string& path) override;

 private:
  Result<std::vector<mc::FileEntry>> ListEntries(const std::string& dir, bool recursive);
  /// Reads `path` block by block, handing each block to `take_block` as it
  /// arrives.
  Status ReadBlocks(const std::string& path,
                    const std::function<Status(std::string_view)>& take_block);
  Status PutMany(const std::vector<VolumePut>& puts);
  /// Writes file `path` to host file `target` a block at a time.
  Status FetchFile(const std::string& path, const fs::path& target);

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

Status ModalArchiveStore::ReadBlocks(const std::string& path,
                                     const std::function<Status(std::string_view)>& take_block) {
  mc::VolumeGetFile2Request request;
  request.set_volume_id(volume_id_);
  request.set_path("/" + Normalize(path));
  mc::VolumeGetFile2Response response;
  SANDRUN_RETURN_IF_ERROR(control_->Unary("VolumeGetFile2", [&](grpc::ClientContext* c) {
    return control_->stub().VolumeGetFile2(c, request, &response);
  }));
  const std::vector<std::size_t> lengths =
      ExpectedBlockLengths(response.start(), response.len(), response.get_urls_size());
  std::uint64_t received = 0;
  for (int i = 0; i < response.get_urls_size(); ++i) {
    SANDRUN_ASSIGN_OR_RETURN(std::string block, HttpGet(response.get_urls(i), lengths[i]));
    received += block.size();
    SANDRUN_RETURN_IF_ERROR(take_block(block));
  }
  if (received != response.len()) {
    return InternalError("modal: VolumeGetFile2 " + path + " promised " +
                         std::to_string(response.len()) + " bytes in " +
                         std::to_string(response.get_urls_size()) + " blocks; they hold " +
                         std::to_string(received));
  }
  return OkStatus();
}

Result<std::string> ModalArchiveStore::ReadBytes(const std::string& path) {
  std::string data;
  SANDRUN_RETURN_IF_ERROR(ReadBlocks(path, [&](std::string_view block) {
    data += block;
    return OkStatus();
  }));
  return data;
}

/// The digests of the blocks of the host file `host_path` and its size,
/// reading one block at a time.
Result<std::vector<BlockDigest>> HashFileBlocks(const fs::path& host_path, std::uint64_t* size) {
  SANDRUN_ASSIGN_OR_RETURN(std::ifstream in, OpenFileForReading(host_path));
  std::vector<BlockDigest> blocks;
  std::string slice(kVolumeBlockSize, '\0');
  *size = 0;
  while (in) {
    in.read(slice.data(), static_cast<std::streamsize>(slice.size()));
    const auto length = static_cast<std::size_t>(in.gcount());
    if (length == 0) break;
    const std::string_view body = BlockBody(std::string_view(slice.data(), length));
    blocks.push_back({*size, body.size(), Sha256(body)});
    *size += length;
  }
  if (in.bad()) return InternalError("cannot read " + host_path.string());
  return blocks;
}

/// The digests of the blocks of `bytes` (SplitVolumeBlocks, as offsets).
std::vector<BlockDigest> BytesBlocks(std::string_view bytes) {
  std::vector<BlockDigest> blocks;
  for (const VolumeBlock& block : SplitVolumeBlocks(bytes)) {
    blocks.push_back({static_cast<std::uint64_t>(block.body.data() - bytes.data()),
                      block.body.size(), block.sha256});
  }
  return blocks;
}

/// The body of `block` of the host file `host_path`, read again into
/// `buffer` for its upload. kFailedPrecondition when the file no longer
/// holds what was hashed.
Result<std::string_view> ReadBlockBodyAgain(const fs::path& host_path, const BlockDigest& block,
                                            std::string& buffer) {
  SANDRUN_ASSIGN_OR_RETURN(std::ifstream in, OpenFileForReading(host_path));
  buffer.resize(block.body_length);
  in.seekg(static_cast<std::streamoff>(block.offset));
  in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
  if (in.bad()) return InternalError("cannot read " + host_path.string());
  if (static_cast<std::size_t>(in.gcount()) != buffer.size() || Sha256(buffer) != block.sha256) {
    return FailedPreconditionError("modal: " + host_path.string() +
                                   " changed while it was being put into the volume");
  }
  return std::string_view(buffer);
}

Status ModalArchiveStore::PutMany(const std::vector<VolumePut>& puts) {
  mc::VolumePutFiles2Request request;
  request.set_volume_id(volume_id_);
  request.set_disallow_overwrite_existing_files(false);
  std::vector<std::vector<BlockDigest>> blocks;  // per file
  for (const VolumePut& put : puts) {
    std::uint64_t size = put.bytes.size();
    if (put.host_path.empty()) {
      blocks.push_back(BytesBlocks(put.bytes));
    } else {
      SANDRUN_ASSIGN_OR_RETURN(auto file_blocks, HashFileBlocks(put.host_path, &size));
      blocks.push_back(std::move(file_blocks));
    }
    auto* file = request.add_files();
    file->set_path("/" + Normalize(put.path));
    file->set_size(size);
    file->set_mode(put.mode);
    for (const BlockDigest& block : blocks.back()) {
      file->add_blocks()->set_contents_sha256(block.sha256);
    }
  }
  // Two rounds, as py/modal/volume.py _put_file_specs: the first may name
  // missing blocks, the second carries their PUT responses.
  std::string buffer;  // the body of a block read again from its host file
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
      const VolumePut& put = puts[missing.file_index()];
      const BlockDigest& block = blocks[missing.file_index()][missing.block_index()];
      std::string_view body;
      if (put.host_path.empty()) {
        body = put.bytes.substr(block.offset, block.body_length);
      } else {
        SANDRUN_ASSIGN_OR_RETURN(body, ReadBlockBodyAgain(put.host_path, block, buffer));
      }
      SANDRUN_ASSIGN_OR_RETURN(std::string put_response, HttpPut(missing.put_url(), body));
      request.mutable_files(static_cast<int>(missing.file_index()))
          ->mutable_blocks(static_cast<int>(missing.block_index()))
          ->set_put_response(put_response);
    }
  }
  return UnavailableError("modal: VolumePutFiles2 still reports missing blocks after upload");
}

Status ModalArchiveStore::PutBytes(const std::string& path, std::string_view data) {
  return PutMany({{path, 0644, data, {}}});
}

Status ModalArchiveStore::PutFile(const std::string& path, const fs::path& host_path) {
  return PutFiles({{path, host_path}});
}

// One VolumePutFiles2 exchange for all of them: a delivery group (records
// and artifact trees of many tasks) costs two calls, not two per file.
Status ModalArchiveStore::PutFiles(const std::vector<ArchivePut>& items) {
  std::vector<VolumePut> puts;
  for (const ArchivePut& item : items) {
    std::error_code ec;
    if (fs::is_directory(item.host_path, ec)) {
      for (fs::recursive_directory_iterator it(item.host_path, ec), end; it != end;
           it.increment(ec)) {
        if (ec) break;
        if (!it->is_regular_file() || it->is_symlink()) continue;
        puts.push_back({item.path + "/" + fs::relative(it->path(), item.host_path).generic_string(),
                        0644, {}, it->path()});
      }
      if (ec) {
        return InternalError("modal: walking " + item.host_path.string() + ": " + ec.message());
      }
      continue;
    }
    // An executable stays one (the portable-executable cache's loader).
    const bool executable = (fs::status(item.host_path, ec).permissions() &
                             fs::perms::owner_exec) != fs::perms::none;
    puts.push_back({item.path, executable ? 0755u : 0644u, {}, item.host_path});
  }
  if (puts.empty()) return OkStatus();
  return PutMany(puts);
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
    fs::create_directories(target.parent_path(), ec);
    SANDRUN_RETURN_IF_ERROR(FetchFile(rel.empty() ? base : base + "/" + rel, target));
  }
  return OkStatus();
}

Status ModalArchiveStore::FetchFile(const std::string& path, const fs::path& target) {
  // Blocks go to a temporary name beside the target, renamed into place
  // once whole: a failed fetch leaves no truncated file behind.
  const fs::path partial = target.parent_path() / ("." + target.filename().string() + ".fetching");
  const std::string cannot_write = "modal: cannot write " + target.string();
  std::ofstream out(partial, std::ios::binary | std::ios::trunc);
  if (!out) return InternalError(cannot_write);
  Status read = ReadBlocks(path, [&](std::string_view block) {
    out.write(block.data(), static_cast<std::streamsize>(block.size()));
    return out ? OkStatus() : InternalError(cannot_write);
  });
  out.close();
  std::error_code ec;
  if (read.ok() && !out) read = InternalError(cannot_write);
  if (read.ok()) {
    fs::rename(partial, target, ec);
    if (ec) read = InternalError(cannot_write + ": " + ec.message());
  }
  if (!read.ok()) fs::remove(partial, ec);
  return read;
}

}  // namespace

std::vector<VolumeBlock> SplitVolumeBlocks(std::string_view data) {
  std::vector<VolumeBlock> blocks;
  for (std::size_t offset = 0; offset < data.size(); offset += kVolumeBlockSize) {
    const std::string_view body = BlockBody(data.substr(offset, kVolumeBlockSize));
    blocks.push_back({body, Sha256(body)});
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
