// The fake's volumes: the volume RPCs (get or create, list, get, put in
// blocks, remove) and the HTTP server that hands out and takes in the blocks.
#include "fake_modal_impl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <thread>

namespace sandrun::modal::fake {

bool BlockHttpServer::Start() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd_, 64) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return false;
  }
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { Loop(); });
  return true;
}

void BlockHttpServer::Stop() {
  if (fd_ >= 0) {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    fd_ = -1;
  }
  if (thread_.joinable()) thread_.join();
}

void BlockHttpServer::Loop() {
  while (!stopping_) {
    int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) {
      if (stopping_) return;
      continue;
    }
    std::thread([this, client] { Serve(client); }).detach();
  }
}

void BlockHttpServer::Serve(int client) {
  std::string buffer;
  char chunk[65536];
  std::size_t header_end;
  while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
    ssize_t n = ::read(client, chunk, sizeof chunk);
    if (n <= 0) {
      ::close(client);
      return;
    }
    buffer.append(chunk, static_cast<std::size_t>(n));
  }
  std::string head = buffer.substr(0, header_end);
  std::string body = buffer.substr(header_end + 4);
  std::size_t length = 0;
  std::istringstream lines(head);
  std::string line, method, target;
  std::getline(lines, line);
  std::istringstream(line) >> method >> target;
  target = target.substr(0, target.find('?'));  // presigned-URL style query
  while (std::getline(lines, line)) {
    std::string lower = line;
    for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower.rfind("content-length:", 0) == 0) length = std::stoull(line.substr(15));
  }
  while (body.size() < length) {
    ssize_t n = ::read(client, chunk, sizeof chunk);
    if (n <= 0) break;
    body.append(chunk, static_cast<std::size_t>(n));
  }
  BlockFault fault = BlockFault::kError;
  const bool faulty = TakeFault(method, &fault);
  if (faulty && fault == BlockFault::kDrop) {
    ::close(client);
    return;
  }
  int status = 404;
  std::string answer;
  if (faulty && fault == BlockFault::kError) {
    status = 503;  // before the store: a failed PUT stores nothing
  } else if (method == "GET" && target.rfind("/block/", 0) == 0) {
    if (store_(target.substr(7), &answer, false)) status = 200;
  } else if (method == "PUT" && target.rfind("/put/", 0) == 0) {
    answer = body;
    status = store_(target.substr(5), &answer, true) ? 200 : 400;
    if (status != 200) answer.clear();
  }
  if (faulty && fault == BlockFault::kSlow) std::this_thread::sleep_for(std::chrono::seconds(2));
  std::string head_out = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " ERR") + "\r\n";
  std::string response;
  if (faulty && fault == BlockFault::kChunked) {
    response = head_out + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    // Two chunks (when there is anything to split), then the last one.
    std::size_t half = answer.size() / 2;
    for (std::string_view part : {std::string_view(answer).substr(0, half),
                                  std::string_view(answer).substr(half)}) {
      if (part.empty()) continue;
      std::ostringstream size;
      size << std::hex << part.size();
      response += size.str() + "\r\n" + std::string(part) + "\r\n";
    }
    response += "0\r\n\r\n";
  } else {
    if (faulty && fault == BlockFault::kShort) answer.resize(answer.size() / 2);
    response = head_out + "Content-Length: " + std::to_string(answer.size()) +
               "\r\nConnection: close\r\n\r\n" + answer;
  }
  std::size_t sent = 0;
  while (sent < response.size()) {
    ssize_t n = ::write(client, response.data() + sent, response.size() - sent);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::close(client);
}

void BlockHttpServer::FailNext(const std::string& method, int n, BlockFault fault) {
  std::lock_guard<std::mutex> lock(fault_mu_);
  fault_method_ = method;
  faults_left_ = n;
  fault_ = fault;
}

bool BlockHttpServer::TakeFault(const std::string& method, BlockFault* fault) {
  std::lock_guard<std::mutex> lock(fault_mu_);
  if (faults_left_ <= 0 || (!fault_method_.empty() && fault_method_ != method)) return false;
  --faults_left_;
  *fault = fault_;
  return true;
}

void FakeModalServer::FailNextBlockTransfers(const std::string& method, int n, BlockFault fault) {
  impl_->http_->FailNext(method, n, fault);
}

// The SHA-256 of exactly these bytes: Modal hashes the body it receives. (A
// client strips a block's trailing zeros before hashing it, and must then
// upload just that range.)
std::string FakeModalServer::Impl::BlockHash(std::string_view block) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(block.data()), block.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

namespace {
// What the block server answers to a PUT of a block with this hash; the
// client hands it back in put_response.
std::string PutAnswer(const std::string& hash) { return "stored-" + Hex(hash); }
}  // namespace

grpc::Status FakeModalServer::Impl::VolumeGetOrCreate(grpc::ServerContext* context,
                                                      const mc::VolumeGetOrCreateRequest* request,
                                                      mc::VolumeGetOrCreateResponse* response) {
  FAKE_ENTER("VolumeGetOrCreate", true, true);
  if (grpc::Status env = SeeEnvironment(request->environment_name()); !env.ok()) return env;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = volume_ids_.find(request->deployment_name());
  if (it == volume_ids_.end()) {
    if (request->object_creation_type() != mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
    }
    it = volume_ids_.emplace(request->deployment_name(), RandomId("vo-", 22)).first;
    volumes_[it->second];
    volume_versions_[it->second] = options_.volume_version;
  }
  response->set_volume_id(it->second);
  response->mutable_metadata()->set_name(request->deployment_name());
  // An existing volume keeps its version, whatever the request asks for.
  response->mutable_metadata()->set_version(
      static_cast<decltype(response->metadata().version())>(volume_versions_[it->second]));
  return grpc::Status::OK;
}

// The *2 calls serve only version 2 volumes.
grpc::Status FakeModalServer::Impl::VolumeV2Locked(
    const std::string& volume_id, std::map<std::string, std::string>** files) {
  auto volume = volumes_.find(volume_id);
  if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
  if (volume_versions_[volume_id] != 2) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "volume " + volume_id + " is a v1 volume; this call needs a v2 volume");
  }
  *files = &volume->second;
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::VolumeListFiles2(grpc::ServerContext* context,
                                                     const mc::VolumeListFiles2Request* request,
                                                     grpc::ServerWriter<mc::VolumeListFiles2Response>* writer) {
  FAKE_ENTER("VolumeListFiles2", true, false);
  mc::VolumeListFiles2Response response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::map<std::string, std::string>* files = nullptr;
    if (grpc::Status v2 = VolumeV2Locked(request->volume_id(), &files); !v2.ok()) return v2;
    std::string dir = request->path();
    while (!dir.empty() && dir.front() == '/') dir.erase(0, 1);
    while (!dir.empty() && dir.back() == '/') dir.pop_back();
    std::set<std::string> dirs;
    bool found = dir.empty();
    for (const auto& [path, data] : *files) {
      if (path == dir) {
        found = true;
        auto* entry = response.add_entries();
        entry->set_path(path);
        entry->set_type(mc::FileEntry::FILE);
        entry->set_size(data.size());
        continue;
      }
      if (!dir.empty() && path.rfind(dir + "/", 0) != 0) continue;
      found = true;
      std::string rel = dir.empty() ? path : path.substr(dir.size() + 1);
      std::string prefix = dir.empty() ? "" : dir + "/";
      // Directories implied by the file's path.
      for (std::size_t slash = rel.find('/'); slash != std::string::npos;
           slash = rel.find('/', slash + 1)) {
        if (!request->recursive() && dirs.size() && rel.find('/') < slash) break;
        dirs.insert(prefix + rel.substr(0, slash));
        if (!request->recursive()) break;
      }
      if (!request->recursive() && rel.find('/') != std::string::npos) continue;
      auto* entry = response.add_entries();
      entry->set_path(prefix + rel);
      entry->set_type(mc::FileEntry::FILE);
      entry->set_size(data.size());
    }
    if (!found) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such path in volume");
    for (const auto& d : dirs) {
      auto* entry = response.add_entries();
      entry->set_path(d);
      entry->set_type(mc::FileEntry::DIRECTORY);
    }
  }
  writer->Write(response);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::VolumeGetFile2(grpc::ServerContext* context,
                                                   const mc::VolumeGetFile2Request* request,
                                                   mc::VolumeGetFile2Response* response) {
  FAKE_ENTER("VolumeGetFile2", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string>* files = nullptr;
  if (grpc::Status v2 = VolumeV2Locked(request->volume_id(), &files); !v2.ok()) return v2;
  std::string path = request->path();
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  auto file = files->find(path);
  if (file == files->end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "file not found");
  const std::string& data = file->second;
  for (std::size_t offset = 0; offset < data.size(); offset += kBlock) {
    std::string block = data.substr(offset, kBlock);
    std::string hash = BlockHash(block);
    blocks_[hash] = block;
    response->add_get_urls("http://127.0.0.1:" + std::to_string(http_->port()) + "/block/" +
                           Hex(hash) + "?X-Fake-Signature=secret");
  }
  response->set_size(data.size());
  response->set_len(data.size());
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::VolumePutFiles2(grpc::ServerContext* context,
                                                    const mc::VolumePutFiles2Request* request,
                                                    mc::VolumePutFiles2Response* response) {
  FAKE_ENTER("VolumePutFiles2", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string>* files = nullptr;
  if (grpc::Status v2 = VolumeV2Locked(request->volume_id(), &files); !v2.ok()) return v2;
  for (int f = 0; f < request->files_size(); ++f) {
    const auto& file = request->files(f);
    if (file.path().empty() || file.path().find("..") != std::string::npos) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad path");
    }
    const std::uint64_t blocks_needed = (file.size() + kBlock - 1) / kBlock;
    if (static_cast<std::uint64_t>(file.blocks_size()) != blocks_needed) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "a file of " + std::to_string(file.size()) + " bytes has " +
                              std::to_string(blocks_needed) + " blocks, not " +
                              std::to_string(file.blocks_size()));
    }
    for (int b = 0; b < file.blocks_size(); ++b) {
      const auto& block = file.blocks(b);
      if (block.contents_sha256().size() != 32) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "block hash must be 32 bytes");
      }
      // A block counts once it is stored under exactly this hash and, if it
      // was uploaded for this client, the client hands back what the PUT
      // answered for it.
      const std::string& hash = block.contents_sha256();
      const bool stored = blocks_.count(hash) != 0;
      const bool confirmed = block.has_put_response() ? block.put_response() == PutAnswer(hash)
                                                      : awaiting_put_response_.count(hash) == 0;
      if (stored && confirmed) continue;
      awaiting_put_response_.insert(hash);
      auto* missing = response->add_missing_blocks();
      missing->set_file_index(static_cast<std::uint64_t>(f));
      missing->set_block_index(static_cast<std::uint64_t>(b));
      missing->set_put_url("http://127.0.0.1:" + std::to_string(http_->port()) + "/put/" + Hex(hash));
    }
  }
  if (!response->missing_blocks().empty()) return grpc::Status::OK;
  std::map<std::string, std::string> accepted;
  std::map<std::string, std::uint32_t> modes;
  for (const auto& file : request->files()) {
    // Each block holds its 8 MiB slice without the trailing zeros (the range
    // the client hashed); the zeros come back from the file's size.
    std::string data;
    for (int b = 0; b < file.blocks_size(); ++b) {
      const std::string& bytes = blocks_[file.blocks(b).contents_sha256()];
      const std::uint64_t extent = std::min<std::uint64_t>(kBlock, file.size() - data.size());
      if (bytes.size() > extent) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "block " + std::to_string(b) + " of " + file.path() + " is longer than its slice");
      }
      data += bytes;
      data.resize(data.size() + (extent - bytes.size()), '\0');
    }
    std::string path = file.path();
    while (!path.empty() && path.front() == '/') path.erase(0, 1);
    if (request->disallow_overwrite_existing_files() && files->count(path)) {
      return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "file exists");
    }
    modes[path] = file.mode();
    accepted[path] = std::move(data);
  }
  for (auto& [path, data] : accepted) {
    if (options_.containers) MirrorVolumeFileLocked(request->volume_id(), path, data, modes[path]);
    (*files)[path] = std::move(data);
  }
  for (const auto& file : request->files()) {
    for (const auto& block : file.blocks()) awaiting_put_response_.erase(block.contents_sha256());
  }
  return grpc::Status::OK;
}

// A file, or a directory with everything under it when `recursive` is set.
// Missing: NOT_FOUND, as Python's Volume.remove_file expects
// (py/modal/volume.py maps it to FileNotFoundError). A directory without
// `recursive`: INVALID_ARGUMENT (the code Modal uses is UNCONFIRMED).
grpc::Status FakeModalServer::Impl::VolumeRemoveFile2(grpc::ServerContext* context,
                                                      const mc::VolumeRemoveFile2Request* request,
                                                      google::protobuf::Empty*) {
  FAKE_ENTER("VolumeRemoveFile2", true, true);
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string>* files = nullptr;
  if (grpc::Status v2 = VolumeV2Locked(request->volume_id(), &files); !v2.ok()) return v2;
  std::string path = request->path();
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.empty() || path.find("..") != std::string::npos) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad path");
  }
  if (files->erase(path) != 0) return grpc::Status::OK;
  auto first = files->lower_bound(path + "/");
  auto last = first;
  while (last != files->end() && last->first.rfind(path + "/", 0) == 0) ++last;
  if (first == last) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such path in volume");
  if (!request->recursive()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        path + " is a directory; removing it needs recursive");
  }
  files->erase(first, last);
  return grpc::Status::OK;
}

bool FakeModalServer::Impl::BlockStore(const std::string& hex, std::string* data, bool put) {
  std::lock_guard<std::mutex> lock(mu_);
  if (put) {
    // Stored under the hash of what arrived, whatever the URL names: a body
    // that is not the hashed range leaves the named block missing.
    (void)hex;
    std::string hash = BlockHash(*data);
    stats_.block_bytes_put += static_cast<std::int64_t>(data->size());
    blocks_[hash] = std::move(*data);
    *data = PutAnswer(hash);
    return true;
  }
  for (const auto& [hash, bytes] : blocks_) {
    if (Hex(hash) == hex) {
      *data = bytes;
      return true;
    }
  }
  return false;
}

}  // namespace sandrun::modal::fake
