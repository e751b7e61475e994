// The fake's volumes: the volume RPCs (get or create, list, get, put in
// blocks) and the HTTP server that hands out and takes in the blocks.
#include "fake_modal_impl.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <sstream>

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
  int status = 404;
  std::string answer;
  if (method == "GET" && target.rfind("/block/", 0) == 0) {
    if (store_(target.substr(7), &answer, false)) status = 200;
  } else if (method == "PUT" && target.rfind("/put/", 0) == 0) {
    std::string data = body;
    if (store_(target.substr(5), &data, true)) {
      status = 200;
      answer = "stored-" + target.substr(5);
    } else {
      status = 400;
    }
  }
  std::string response = "HTTP/1.1 " + std::to_string(status) + (status == 200 ? " OK" : " ERR") +
                         "\r\nContent-Length: " + std::to_string(answer.size()) +
                         "\r\nConnection: close\r\n\r\n" + answer;
  std::size_t sent = 0;
  while (sent < response.size()) {
    ssize_t n = ::write(client, response.data() + sent, response.size() - sent);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  ::close(client);
}

std::string FakeModalServer::Impl::BlockHash(std::string_view block) {
  std::size_t end = block.size();
  while (end > 0 && block[end - 1] == '\0') --end;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(block.data()), end, digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

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
  }
  response->set_volume_id(it->second);
  response->mutable_metadata()->set_name(request->deployment_name());
  response->mutable_metadata()->set_version(mc::VOLUME_FS_VERSION_V2);
  return grpc::Status::OK;
}

grpc::Status FakeModalServer::Impl::VolumeListFiles2(grpc::ServerContext* context,
                                                     const mc::VolumeListFiles2Request* request,
                                                     grpc::ServerWriter<mc::VolumeListFiles2Response>* writer) {
  FAKE_ENTER("VolumeListFiles2", true, false);
  mc::VolumeListFiles2Response response;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto volume = volumes_.find(request->volume_id());
    if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
    std::string dir = request->path();
    while (!dir.empty() && dir.front() == '/') dir.erase(0, 1);
    while (!dir.empty() && dir.back() == '/') dir.pop_back();
    std::set<std::string> dirs;
    bool found = dir.empty();
    for (const auto& [path, data] : volume->second) {
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
  auto volume = volumes_.find(request->volume_id());
  if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
  std::string path = request->path();
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  auto file = volume->second.find(path);
  if (file == volume->second.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "file not found");
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
  auto volume = volumes_.find(request->volume_id());
  if (volume == volumes_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "volume not found");
  bool complete = true;
  for (int f = 0; f < request->files_size(); ++f) {
    const auto& file = request->files(f);
    if (file.path().empty() || file.path().find("..") != std::string::npos) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad path");
    }
    for (int b = 0; b < file.blocks_size(); ++b) {
      const auto& block = file.blocks(b);
      if (block.contents_sha256().size() != 32) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "block hash must be 32 bytes");
      }
      if (blocks_.count(block.contents_sha256())) continue;
      complete = false;
      auto* missing = response->add_missing_blocks();
      missing->set_file_index(static_cast<std::uint64_t>(f));
      missing->set_block_index(static_cast<std::uint64_t>(b));
      missing->set_put_url("http://127.0.0.1:" + std::to_string(http_->port()) + "/put/" +
                           Hex(block.contents_sha256()));
    }
  }
  if (!complete) return grpc::Status::OK;
  for (const auto& file : request->files()) {
    std::string data;
    for (const auto& block : file.blocks()) data += blocks_[block.contents_sha256()];
    // Blocks were hashed without trailing zeros; the size restores them.
    data.resize(file.size(), '\0');
    std::string path = file.path();
    while (!path.empty() && path.front() == '/') path.erase(0, 1);
    if (request->disallow_overwrite_existing_files() && volume->second.count(path)) {
      return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "file exists");
    }
    volume->second[path] = data;
    if (options_.containers) MirrorVolumeFileLocked(request->volume_id(), path, data, file.mode());
  }
  return grpc::Status::OK;
}

bool FakeModalServer::Impl::BlockStore(const std::string& hex, std::string* data, bool put) {
  std::lock_guard<std::mutex> lock(mu_);
  if (put) {
    std::string hash = BlockHash(*data);
    if (Hex(hash) != hex) return false;
    blocks_[hash] = *data;
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
