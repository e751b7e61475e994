// The result archive on a Modal Volume against the strict fake: blocks are
// uploaded exactly as hashed (trailing zeros stripped, no block for an empty
// file), host files and trees go up and come back a block at a time, byte
// exact, a version 1 Volume is refused with the fix, block downloads are
// checked for length and block transfers retried, files are removed
// (`results prune`, doctor's probe), and block transfers honour a CONNECT
// proxy from the environment.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "e2e/e2e_support.h"
#include "fake_modal_server.h"
#include "modal_archive_store.h"
#include "modal_backend.h"
#include "modal_client.h"
#include "modal_http.h"
#include "modal_options.h"
#include "support/test_util.h"

namespace sandrun::modal {
namespace {

using fake::BlockFault;
using fake::FakeModalServer;
using fake::FakeOptions;
using ::sandrun::testing::ReadFile;
using ::sandrun::testing::TempDir;
namespace mc = ::modal::client;

// ---------------------------------------------------------------------------
// A fake server, a Modal backend pointed at it, and the backend's archive.

class ModalVolumeTest : public ::testing::Test {
 protected:
  void StartServer(FakeOptions options = {}) {
    server_ = std::make_unique<FakeModalServer>(options);
    ASSERT_TRUE(server_->Start());
  }

  std::map<std::string, std::string> Env() const {
    return {{"MODAL_TOKEN_ID", server_->options().token_id},
            {"MODAL_TOKEN_SECRET", server_->options().token_secret},
            {"MODAL_SERVER_URL", server_->url()},
            {"HOME", "/nonexistent-sandrun-test-home"}};
  }

  Result<std::unique_ptr<ArchiveStore>> OpenArchive() {
    auto options = ParseModalOptions(R"({"default_image": "sandrun-test/host"})");
    if (!options.ok()) return options.status();
    backend_ = CreateModalBackend(*options, Env());
    return backend_->OpenArchive();
  }

  /// The archive of a fresh default server.
  std::unique_ptr<ArchiveStore> Archive() {
    if (!server_) StartServer();
    auto store = OpenArchive();
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(*store) : nullptr;
  }

  std::unique_ptr<FakeModalServer> server_;
  std::unique_ptr<Backend> backend_;
};

/// `size` bytes of a pattern without zero bytes, then `zeros` zero bytes.
std::string BytesThenZeros(std::size_t size, std::size_t zeros) {
  std::string data(size, 'x');
  for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>('a' + i % 26);
  return data + std::string(zeros, '\0');
}

// ---- block uploads ----

TEST_F(ModalVolumeTest, ABlockEndingInZeroBytesIsUploadedAsHashed) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  // First block: 8 MiB whose last 4 KiB are zeros; second block: a tail
  // that also ends in zeros.
  std::string data = BytesThenZeros(kVolumeBlockSize - 4096, 4096) + BytesThenZeros(1000, 24);
  ASSERT_EQ(data.size(), kVolumeBlockSize + 1024);
  Status put = store->PutBytes("run/zeros.bin", data);
  ASSERT_TRUE(put.ok()) << put.ToString();
  auto back = store->ReadBytes("run/zeros.bin");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == data) << "read back " << back->size() << " bytes";
  // A small record ending in a newline and zeros, through PutFile.
  Status small = store->PutBytes("run/small", std::string("{}\n") + std::string(3, '\0'));
  ASSERT_TRUE(small.ok()) << small.ToString();
  EXPECT_EQ(*store->ReadBytes("run/small"), std::string("{}\n") + std::string(3, '\0'));
}

TEST_F(ModalVolumeTest, AnEmptyFileSendsNoBlock) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  Status put = store->PutBytes("run/empty", "");
  ASSERT_TRUE(put.ok()) << put.ToString();
  auto back = store->ReadBytes("run/empty");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "");
  EXPECT_EQ(server_->Stats().calls["VolumePutFiles2"], 1) << "nothing to upload: one call";
}

TEST_F(ModalVolumeTest, AnAllZeroBlockUploadsAnEmptyBody) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  std::string data(5000, '\0');
  Status put = store->PutBytes("run/zeros-only", data);
  ASSERT_TRUE(put.ok()) << put.ToString();
  EXPECT_EQ(*store->ReadBytes("run/zeros-only"), data);
}

TEST(VolumeBlocks, EachBlockIsItsSliceWithoutTrailingZeros) {
  EXPECT_TRUE(SplitVolumeBlocks("").empty());
  std::string data = BytesThenZeros(kVolumeBlockSize - 10, 10) + "tail" + std::string(5, '\0');
  auto blocks = SplitVolumeBlocks(data);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[0].body.size(), kVolumeBlockSize - 10);
  EXPECT_EQ(blocks[1].body, "tail");
  EXPECT_EQ(blocks[0].sha256.size(), 32u);
  EXPECT_NE(blocks[0].sha256, blocks[1].sha256);
  // The hash is the hash of the body: equal bodies, equal hashes.
  EXPECT_EQ(SplitVolumeBlocks("tail")[0].sha256, blocks[1].sha256);
}

/// Four blocks and a partial one, each kind a block can be: ending in zero
/// bytes, without a zero, all zeros (an empty body), and a final partial
/// block that ends in zeros too.
std::string SeveralBlocks() {
  std::string data = BytesThenZeros(kVolumeBlockSize - 4096, 4096) +
                     BytesThenZeros(kVolumeBlockSize, 0) + std::string(kVolumeBlockSize, '\0') +
                     BytesThenZeros(kVolumeBlockSize - 1, 1) + BytesThenZeros(777, 100);
  // Blocks that differ from one another, so a block put in the wrong place
  // or read from the wrong offset shows.
  data[1] = '1';
  data[kVolumeBlockSize + 1] = '2';
  data[3 * kVolumeBlockSize + 1] = '4';
  return data;
}

TEST_F(ModalVolumeTest, AHostFileOfSeveralBlocksRoundTripsThroughPutFileAndFetch) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  const std::string data = SeveralBlocks();
  ASSERT_EQ(SplitVolumeBlocks(data).size(), 5u);
  TempDir host;
  const auto source = host.Write("big.bin", data);
  Status put = store->PutFile("run/artifacts/t/big.bin", source);
  ASSERT_TRUE(put.ok()) << put.ToString();
  EXPECT_EQ(server_->Stats().calls["VolumePutFiles2"], 2) << "two rounds: hashes, then PUTs";
  TempDir dest;
  Status fetched = store->Fetch("run/artifacts", dest.path());
  ASSERT_TRUE(fetched.ok()) << fetched.ToString();
  const std::string back = ReadFile(dest.path() / "artifacts/t/big.bin");
  EXPECT_EQ(back.size(), data.size());
  EXPECT_TRUE(back == data) << "fetched bytes differ from the host file";
  // The file alone, fetched by its own path.
  TempDir alone;
  ASSERT_TRUE(store->Fetch("run/artifacts/t/big.bin", alone.path()).ok());
  EXPECT_TRUE(ReadFile(alone.path() / "big.bin") == data);
}

TEST_F(ModalVolumeTest, AHostTreeRoundTripsThroughPutFileAndFetch) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  const std::string big = SeveralBlocks();
  TempDir host;
  host.Write("tree/stdout.log", big);
  host.Write("tree/stderr.log", "");
  host.Write("tree/sub/zeros", std::string(3000, '\0'));
  Status put = store->PutFile("run/artifacts/t", host.path() / "tree");
  ASSERT_TRUE(put.ok()) << put.ToString();
  EXPECT_EQ(server_->Stats().calls["VolumePutFiles2"], 2) << "one request for the whole tree";
  TempDir dest;
  Status fetched = store->Fetch("run/artifacts/t", dest.path());
  ASSERT_TRUE(fetched.ok()) << fetched.ToString();
  EXPECT_TRUE(ReadFile(dest.path() / "t/stdout.log") == big);
  EXPECT_EQ(ReadFile(dest.path() / "t/stderr.log"), "");
  EXPECT_EQ(ReadFile(dest.path() / "t/sub/zeros"), std::string(3000, '\0'));
}

TEST_F(ModalVolumeTest, AMissingHostFileIsNotFound) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  TempDir host;
  Status put = store->PutFile("run/nothing", host.path() / "nothing");
  EXPECT_EQ(put.code(), StatusCode::kNotFound) << put.ToString();
  EXPECT_NE(put.message().find("nothing"), std::string::npos) << put.ToString();
  EXPECT_TRUE(server_->VolumeFiles("sandrun-results").empty());
}

// Blocks are written as they arrive, so a fetch that fails part way must
// not leave a cut file where a whole one was (nor its temporary name).
TEST_F(ModalVolumeTest, AFailedFetchLeavesTheTargetAsItWas) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PutBytes("run/f.bin", BytesThenZeros(kVolumeBlockSize + 5000, 0)).ok());
  TempDir dest;
  dest.Write("f.bin", "an earlier fetch");
  server_->FailNextBlockTransfers("GET", 5, BlockFault::kShort);  // every attempt at a block
  Status fetched = store->Fetch("run/f.bin", dest.path());
  ASSERT_FALSE(fetched.ok());
  EXPECT_TRUE(fetched.retryable()) << fetched.ToString();
  EXPECT_EQ(ReadFile(dest.path() / "f.bin"), "an earlier fetch");
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dest.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"f.bin"});
  // Once the block host answers again, the fetch replaces it whole.
  ASSERT_TRUE(store->Fetch("run/f.bin", dest.path()).ok());
  EXPECT_TRUE(ReadFile(dest.path() / "f.bin") == BytesThenZeros(kVolumeBlockSize + 5000, 0));
}

// The fake hashes the body it receives: uploading the whole slice for a
// block hashed without its zeros never completes the file.
TEST_F(ModalVolumeTest, FakeRefusesABodyThatIsNotTheHashedRange) {
  StartServer();
  auto credentials = LoadModalCredentials(Env());
  ASSERT_TRUE(credentials.ok()) << credentials.status().ToString();
  auto control = std::make_shared<ControlPlane>(*credentials);
  mc::VolumeGetOrCreateRequest get;
  get.set_deployment_name("judge");
  get.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  mc::VolumeGetOrCreateResponse volume;
  ASSERT_TRUE(control->Unary("VolumeGetOrCreate", [&](grpc::ClientContext* c) {
    return control->stub().VolumeGetOrCreate(c, get, &volume);
  }).ok());
  const std::string slice = "data" + std::string(12, '\0');
  mc::VolumePutFiles2Request put;
  put.set_volume_id(volume.volume_id());
  auto* file = put.add_files();
  file->set_path("/f");
  file->set_size(slice.size());
  file->add_blocks()->set_contents_sha256(SplitVolumeBlocks(slice)[0].sha256);
  for (const bool hashed_range : {false, true}) {
    mc::VolumePutFiles2Response missing;
    ASSERT_TRUE(control->Unary("VolumePutFiles2", [&](grpc::ClientContext* c) {
      return control->stub().VolumePutFiles2(c, put, &missing);
    }).ok());
    ASSERT_EQ(missing.missing_blocks_size(), 1);
    auto answer = HttpPut(missing.missing_blocks(0).put_url(), hashed_range ? "data" : slice);
    ASSERT_TRUE(answer.ok()) << answer.status().ToString();
    file->mutable_blocks(0)->set_put_response(*answer);
    mc::VolumePutFiles2Response after;
    ASSERT_TRUE(control->Unary("VolumePutFiles2", [&](grpc::ClientContext* c) {
      return control->stub().VolumePutFiles2(c, put, &after);
    }).ok());
    EXPECT_EQ(after.missing_blocks_size(), hashed_range ? 0 : 1)
        << (hashed_range ? "the hashed range completes the file"
                         : "the whole slice does not match the block's hash");
  }
  EXPECT_EQ(server_->VolumeFiles("judge"), std::vector<std::string>{"f"});
}

// ---- volume version ----

TEST_F(ModalVolumeTest, AVersion1VolumeIsRefusedWithTheFix) {
  StartServer();
  server_->AddVolume("sandrun-results", 1);  // as `modal volume create sandrun-results`
  auto store = OpenArchive();
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  const std::string message = store.status().message();
  EXPECT_NE(message.find("sandrun-results is a version 1 Volume"), std::string::npos) << message;
  EXPECT_NE(message.find("modal volume create --version 2 NAME"), std::string::npos) << message;
  EXPECT_NE(message.find(R"("volume": "NAME")"), std::string::npos) << message;
}

TEST_F(ModalVolumeTest, AServerThatMakesVersion1VolumesIsRefusedToo) {
  FakeOptions options;
  options.volume_version = 1;
  StartServer(options);
  auto store = OpenArchive();
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();
}

TEST(VolumeVersion, UnspecifiedCountsAsVersion1AsInPython) {
  EXPECT_TRUE(CheckArchiveVolumeVersion(mc::VOLUME_FS_VERSION_V2, "v").ok());
  EXPECT_FALSE(CheckArchiveVolumeVersion(mc::VOLUME_FS_VERSION_V1, "v").ok());
  EXPECT_FALSE(CheckArchiveVolumeVersion(mc::VOLUME_FS_VERSION_UNSPECIFIED, "v").ok());
}

// ---- downloads and retries ----

TEST_F(ModalVolumeTest, AShortBlockBodyIsRetriedNotAccepted) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  std::string data = BytesThenZeros(3000, 0);
  ASSERT_TRUE(store->PutBytes("run/f", data).ok());
  server_->FailNextBlockTransfers("GET", 2, BlockFault::kShort);
  auto back = store->ReadBytes("run/f");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->size(), data.size());
  EXPECT_TRUE(*back == data);
}

TEST_F(ModalVolumeTest, ABlockThatStaysShortFailsAfterFiveAttempts) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PutBytes("run/f", BytesThenZeros(3000, 0)).ok());
  server_->FailNextBlockTransfers("GET", 6, BlockFault::kShort);
  auto back = store->ReadBytes("run/f");
  ASSERT_FALSE(back.ok());
  EXPECT_TRUE(back.status().retryable()) << back.status().ToString();
  EXPECT_NE(back.status().message().find("expected 3000"), std::string::npos)
      << back.status().ToString();
  EXPECT_NE(back.status().message().find("after 5 attempts"), std::string::npos)
      << back.status().ToString();
  // Five attempts used five of the six faults: the next read needs a retry.
  auto again = store->ReadBytes("run/f");
  EXPECT_TRUE(again.ok()) << again.status().ToString();
}

TEST_F(ModalVolumeTest, ChunkedSlowAndDroppedDownloadsAreRead) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  std::string data = BytesThenZeros(5000, 0);
  ASSERT_TRUE(store->PutBytes("run/f", data).ok());
  for (BlockFault fault : {BlockFault::kChunked, BlockFault::kSlow, BlockFault::kDrop,
                           BlockFault::kError}) {
    server_->FailNextBlockTransfers("GET", 1, fault);
    auto back = store->ReadBytes("run/f");
    ASSERT_TRUE(back.ok()) << static_cast<int>(fault) << ": " << back.status().ToString();
    EXPECT_TRUE(*back == data) << static_cast<int>(fault);
  }
}

TEST_F(ModalVolumeTest, FailedUploadsAreRetried) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  std::string data = BytesThenZeros(2000, 7);
  server_->FailNextBlockTransfers("PUT", 2, BlockFault::kError);
  Status put = store->PutBytes("run/a", data);
  ASSERT_TRUE(put.ok()) << put.ToString();
  server_->FailNextBlockTransfers("PUT", 1, BlockFault::kDrop);
  put = store->PutBytes("run/b", data + "b");
  ASSERT_TRUE(put.ok()) << put.ToString();
  EXPECT_EQ(*store->ReadBytes("run/a"), data);
  EXPECT_EQ(*store->ReadBytes("run/b"), data + "b");
}

// ---- remove: prune and doctor ----

TEST_F(ModalVolumeTest, RemoveDeletesATreeAndIgnoresWhatIsAbsent) {
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->PutBytes("run1/a.json", "{}").ok());
  ASSERT_TRUE(store->PutBytes("run1/sub/b.json", "{}").ok());
  ASSERT_TRUE(store->PutBytes("run2/a.json", "{}").ok());
  Status removed = store->Remove("run1");
  ASSERT_TRUE(removed.ok()) << removed.ToString();
  EXPECT_EQ(server_->VolumeFiles("sandrun-results"), std::vector<std::string>{"run2/a.json"});
  EXPECT_TRUE(store->Remove("run1").ok()) << "already absent is fine";
  EXPECT_TRUE(store->Remove("run2/a.json").ok());
  EXPECT_TRUE(server_->VolumeFiles("sandrun-results").empty());
  EXPECT_FALSE(store->Remove("").ok()) << "never the whole volume";
}

class ModalVolumeCliTest : public ModalVolumeTest {
 protected:
  void SetUp() override { StartServer(); }
  testing::CommandOutput Run(const std::vector<std::string>& args) const {
    testing::CommandOptions options;
    options.env = Env();
    options.env.erase("HOME");  // Home's own
    for (const char* name : {"MODAL_ENVIRONMENT", "MODAL_PROFILE", "MODAL_CONFIG_PATH",
                             "MODAL_IMAGE_BUILDER_VERSION", "MODAL_MAX_THROTTLE_WAIT"}) {
      options.env[name] = "";
    }
    return home_.Run(args, options);
  }
  e2e::Home home_;
};

TEST_F(ModalVolumeCliTest, PruneRemovesOldRunsFromTheVolume) {
  std::vector<std::string> runs;
  for (int i = 0; i < 3; ++i) {
    testing::CommandOutput run = Run({"exec", "--backend", "modal", "--json", "--", "true"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    runs.push_back(nlohmann::json::parse(run.out).value("run_id", ""));
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // run ids order by second
  }
  testing::CommandOutput prune = Run({"results", "prune", "--keep", "1", "--backend", "modal"});
  ASSERT_EQ(prune.exit_code, 0) << prune.err << prune.out;
  testing::CommandOutput list = Run({"results", "list", "--backend", "modal", "--json"});
  ASSERT_EQ(list.exit_code, 0) << list.err;
  EXPECT_EQ(list.out.find(runs[0]), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find(runs[1]), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(runs[2]), std::string::npos) << list.out;
  for (const std::string& path : server_->VolumeFiles("sandrun-results")) {
    EXPECT_NE(path.rfind(runs[0], 0), 0u) << path;
    EXPECT_NE(path.rfind(runs[1], 0), 0u) << path;
  }
}

TEST_F(ModalVolumeCliTest, DoctorRemovesItsWriteProbe) {
  testing::CommandOutput doctor = Run({"doctor", "--backend", "modal"});
  ASSERT_EQ(doctor.exit_code, 0) << doctor.err << doctor.out;
  EXPECT_GE(server_->Stats().calls["VolumePutFiles2"], 1) << "the probe was written";
  for (const std::string& path : server_->VolumeFiles("sandrun-results")) {
    EXPECT_EQ(path.find(".sandrun-doctor-"), std::string::npos) << path << " left behind";
  }
}

// ---- proxy ----

/// A loopback HTTP CONNECT proxy: tunnels to 127.0.0.1 ports only and
/// records each CONNECT target and its Proxy-Authorization header.
class LoopbackConnectProxy {
 public:
  LoopbackConnectProxy() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
        ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }
  ~LoopbackConnectProxy() {
    stopping_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    accept_thread_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& thread : tunnels_) thread.join();
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<std::string> targets() const {
    std::lock_guard<std::mutex> lock(mu_);
    return targets_;
  }
  std::vector<std::string> authorizations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return authorizations_;
  }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      tunnels_.emplace_back([this, client] { Tunnel(client); });
    }
  }

  void Tunnel(int client) {
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::read(client, &c, 1) == 1) head += c;
    std::string target = head.substr(0, head.find("\r\n"));
    std::string authorization;
    if (std::size_t at = head.find("Proxy-Authorization: "); at != std::string::npos) {
      authorization = head.substr(at + 21, head.find("\r\n", at) - at - 21);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      targets_.push_back(target);
      authorizations_.push_back(authorization);
    }
    int upstream = -1;
    const std::string prefix = "CONNECT 127.0.0.1:";
    if (target.rfind(prefix, 0) == 0) {
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(target.c_str() + prefix.size())));
      upstream = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(upstream, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(upstream);
        upstream = -1;
      }
    }
    const std::string answer = upstream >= 0 ? "HTTP/1.1 200 Connection established\r\n\r\n"
                                             : "HTTP/1.1 403 Forbidden\r\n\r\n";
    if (::write(client, answer.data(), answer.size()) < 0 || upstream < 0) {
      ::close(client);
      return;
    }
    pollfd fds[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
    char buffer[65536];
    while (!stopping_) {
      if (::poll(fds, 2, 100) < 0) break;
      bool done = false;
      for (int i = 0; i < 2 && !done; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
        done = n <= 0 || ::write(fds[1 - i].fd, buffer, static_cast<std::size_t>(n)) != n;
      }
      if (done) break;
    }
    ::close(upstream);
    ::close(client);
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> tunnels_;         // Guarded by mu_.
  std::vector<std::string> targets_;         // Guarded by mu_.
  std::vector<std::string> authorizations_;  // Guarded by mu_.
};

/// Sets proxy variables for one test and restores every one afterwards.
class ProxyEnvironment {
 public:
  static constexpr const char* kNames[] = {"grpc_proxy", "https_proxy", "HTTPS_PROXY",
                                           "http_proxy", "HTTP_PROXY", "no_grpc_proxy",
                                           "no_proxy",   "NO_PROXY"};
  ProxyEnvironment() {
    for (const char* name : kNames) {
      if (const char* value = std::getenv(name)) saved_[name] = value;
      ::unsetenv(name);
    }
  }
  ~ProxyEnvironment() {
    for (const char* name : kNames) ::unsetenv(name);
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }
  void Set(const char* name, const std::string& value) { ::setenv(name, value.c_str(), 1); }

 private:
  std::map<std::string, std::string> saved_;
};

/// CONNECT lines the proxy saw for ports other than the control plane's.
std::vector<std::string> BlockTunnels(const LoopbackConnectProxy& proxy, int control_port) {
  std::vector<std::string> tunnels;
  for (const std::string& target : proxy.targets()) {
    if (target.find(":" + std::to_string(control_port) + " ") == std::string::npos) {
      tunnels.push_back(target);
    }
  }
  return tunnels;
}

TEST_F(ModalVolumeTest, BlockTransfersGoThroughTheProxyTheEnvironmentNames) {
  ProxyEnvironment env;
  LoopbackConnectProxy proxy;
  ASSERT_NE(proxy.port(), 0);
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  // Upper case: gRPC C-core reads only the lower-case spellings, so the
  // control plane stays direct and every tunnel is a block transfer.
  env.Set("HTTPS_PROXY", "http://user:pw@127.0.0.1:" + std::to_string(proxy.port()));
  std::string data = BytesThenZeros(4000, 0);
  ASSERT_TRUE(store->PutBytes("run/p", data).ok());
  auto back = store->ReadBytes("run/p");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == data);
  std::vector<std::string> tunnels = BlockTunnels(proxy, server_->port());
  EXPECT_GE(tunnels.size(), 2u) << "one PUT and one GET";
  for (const std::string& tunnel : tunnels) {
    EXPECT_EQ(tunnel.rfind("CONNECT 127.0.0.1:", 0), 0u) << tunnel;
  }
  for (const std::string& authorization : proxy.authorizations()) {
    EXPECT_EQ(authorization, "Basic dXNlcjpwdw==");  // base64("user:pw")
  }
}

TEST_F(ModalVolumeTest, NoProxyListsHostsReachedDirectly) {
  ProxyEnvironment env;
  LoopbackConnectProxy proxy;
  auto store = Archive();
  ASSERT_NE(store, nullptr);
  env.Set("HTTPS_PROXY", proxy.url());
  env.Set("NO_PROXY", "example.com, 127.0.0.1");
  ASSERT_TRUE(store->PutBytes("run/direct", "direct").ok());
  EXPECT_EQ(*store->ReadBytes("run/direct"), "direct");
  EXPECT_TRUE(BlockTunnels(proxy, server_->port()).empty());
}

TEST(ProxyFor, FollowsGrpcsVariablesAndNoProxy) {
  std::map<std::string, std::string> vars;
  auto lookup = [&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
  EXPECT_FALSE(ProxyFor("blocks.example.com", lookup).has_value());
  vars["HTTP_PROXY"] = "http://low:1";
  vars["https_proxy"] = "proxy.corp:3128";
  auto proxy = ProxyFor("blocks.example.com", lookup);
  ASSERT_TRUE(proxy.has_value());
  EXPECT_EQ(proxy->host, "proxy.corp") << "https_proxy comes before HTTP_PROXY";
  EXPECT_EQ(proxy->port, "3128");
  EXPECT_EQ(proxy->authorization, "");
  vars["grpc_proxy"] = "http://a:b@grpc.corp";
  proxy = ProxyFor("blocks.example.com", lookup);
  ASSERT_TRUE(proxy.has_value());
  EXPECT_EQ(proxy->host, "grpc.corp");
  EXPECT_EQ(proxy->port, "80");
  EXPECT_EQ(proxy->authorization, "Basic YTpi");
  vars["NO_PROXY"] = ".example.com";
  EXPECT_FALSE(ProxyFor("blocks.example.com", lookup).has_value());
  EXPECT_FALSE(ProxyFor("example.com", lookup).has_value());
  EXPECT_TRUE(ProxyFor("notexample.com", lookup).has_value());
  vars["no_proxy"] = "other.org";  // no_proxy comes before NO_PROXY
  EXPECT_TRUE(ProxyFor("blocks.example.com", lookup).has_value());
  vars["no_proxy"] = "*";
  EXPECT_FALSE(ProxyFor("anything", lookup).has_value());
  vars.erase("no_proxy");
  vars.erase("NO_PROXY");
  vars["grpc_proxy"] = "https://tls-proxy:443";  // as gRPC: only http:// proxies
  EXPECT_FALSE(ProxyFor("blocks.example.com", lookup).has_value());
}

}  // namespace
}  // namespace sandrun::modal
