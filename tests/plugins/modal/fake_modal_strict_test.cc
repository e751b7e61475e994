// The fake Modal server is as strict as Modal (issue 12): each test here
// speaks gRPC and HTTP to the fake directly, with no sandrun client in
// between, and would fail against the fake as it was before: an
// http:// router on the control port, fresh image ids, tags in SandboxList,
// the host's environment and "/", zero-stripped block hashes, no V1 volumes,
// no V2 sandboxes, a block server that never misbehaved.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "fake_modal_server.h"
#include "modal_client.grpc.pb.h"
#include "task_command_router.grpc.pb.h"

namespace sandrun::modal::fake {
namespace {

namespace mc = ::modal::client;
namespace tcr = ::modal::task_command_router;
using std::chrono::milliseconds;

std::string Sha256(const std::string& bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<const char*>(digest), sizeof digest);
}

// One HTTP/1.1 exchange with a 127.0.0.1 URL; the raw answer, read to EOF
// (the block server closes every connection).
std::string Http(const std::string& method, const std::string& url, const std::string& body = "") {
  std::smatch m;
  std::regex pattern(R"(http://127\.0\.0\.1:(\d+)(/.*))");
  if (!std::regex_match(url, m, pattern)) return "bad url " + url;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(m[1])));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "cannot connect";
  }
  std::string request = method + " " + std::string(m[2]) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  for (std::size_t sent = 0; sent < request.size();) {
    ssize_t n = ::write(fd, request.data() + sent, request.size() - sent);
    if (n <= 0) break;
    sent += static_cast<std::size_t>(n);
  }
  std::string answer;
  char buffer[65536];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;) answer.append(buffer, static_cast<std::size_t>(n));
  ::close(fd);
  return answer;
}
std::string HttpBody(const std::string& answer) {
  std::size_t end = answer.find("\r\n\r\n");
  return end == std::string::npos ? "" : answer.substr(end + 4);
}

// A client of the strict fake: control-plane calls carry the credentials,
// the client metadata and an auth token; router calls the bearer JWT.
class StrictFakeTest : public ::testing::Test {
 protected:
  void StartFake(FakeOptions options = FakeOptions()) {
    server_ = std::make_unique<FakeModalServer>(options);
    ASSERT_TRUE(server_->Start());
    control_ = mc::ModalClient::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->port()), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    Prepare(&context, false);
    mc::AuthTokenGetResponse token;
    ASSERT_TRUE(control_->AuthTokenGet(&context, {}, &token).ok());
    auth_token_ = token.token();
  }
  void SetUp() override { StartFake(); }

  void Prepare(grpc::ClientContext* context, bool with_token = true) {
    context->AddMetadata("x-modal-token-id", server_->options().token_id);
    context->AddMetadata("x-modal-token-secret", server_->options().token_secret);
    context->AddMetadata("x-modal-client-type", "8");
    context->AddMetadata("x-modal-client-version", "1.0.0");
    if (with_token) context->AddMetadata("x-modal-auth-token", auth_token_);
  }
  // A control-plane call: `call(stub, context)` with the metadata in place.
  template <typename Call>
  grpc::Status Control(Call&& call) {
    grpc::ClientContext context;
    Prepare(&context);
    return call(*control_, &context);
  }

  std::string App() {
    mc::AppGetOrCreateRequest request;
    request.set_app_name("strict-app");
    request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
    mc::AppGetOrCreateResponse response;
    EXPECT_TRUE(Control([&](auto& s, auto* c) { return s.AppGetOrCreate(c, request, &response); }).ok());
    return response.app_id();
  }
  mc::ImageGetOrCreateResponse AskImage(const std::string& app_id, bool force_build = false) {
    mc::ImageGetOrCreateRequest request;
    request.set_app_id(app_id);
    request.mutable_image()->add_dockerfile_commands("FROM debian:bookworm-slim");
    request.set_builder_version("2024.10");
    request.set_force_build(force_build);
    mc::ImageGetOrCreateResponse response;
    EXPECT_TRUE(Control([&](auto& s, auto* c) { return s.ImageGetOrCreate(c, request, &response); }).ok());
    return response;
  }
  mc::Sandbox Definition() {
    mc::Sandbox def;
    def.set_image_id(AskImage(App()).image_id());
    def.set_timeout_secs(300);
    return def;
  }
  // A V1 sandbox with a task; its id.
  std::string CreateV1(const std::map<std::string, std::string>& tags = {}) {
    mc::SandboxCreateRequest request;
    request.set_app_id(App());
    *request.mutable_definition() = Definition();
    for (const auto& [name, value] : tags) {
      auto* tag = request.add_tags();
      tag->set_tag_name(name);
      tag->set_tag_value(value);
    }
    mc::SandboxCreateResponse response;
    EXPECT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxCreate(c, request, &response); }).ok());
    return response.sandbox_id();
  }
  // Asks until the sandbox is scheduled, as the SDKs do (a container takes
  // a moment to start); "" if it ended first or never was.
  std::string TaskId(const std::string& sandbox_id) {
    mc::SandboxGetTaskIdRequest request;
    request.set_sandbox_id(sandbox_id);
    auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (true) {
      mc::SandboxGetTaskIdResponse response;
      grpc::Status asked =
          Control([&](auto& s, auto* c) { return s.SandboxGetTaskId(c, request, &response); });
      EXPECT_TRUE(asked.ok()) << asked.error_message();
      if (!asked.ok() || !response.task_id().empty() || response.has_task_result() ||
          std::chrono::steady_clock::now() > give_up) {
        return response.task_id();
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }
  // Joins an image's build to its end; the final status.
  int JoinImage(const std::string& image_id) {
    mc::ImageJoinStreamingRequest request;
    request.set_image_id(image_id);
    grpc::ClientContext context;
    Prepare(&context);
    auto stream = control_->ImageJoinStreaming(&context, request);
    mc::ImageJoinStreamingResponse message;
    int status = 0;
    while (stream->Read(&message)) {
      if (message.has_result()) status = message.result().status();
    }
    EXPECT_TRUE(stream->Finish().ok());
    return status;
  }
  mc::TaskGetCommandRouterAccessResponse Access(const std::string& task_id) {
    mc::TaskGetCommandRouterAccessRequest request;
    request.set_task_id(task_id);
    mc::TaskGetCommandRouterAccessResponse response;
    EXPECT_TRUE(
        Control([&](auto& s, auto* c) { return s.TaskGetCommandRouterAccess(c, request, &response); }).ok());
    return response;
  }
  // A plaintext channel to host:port of a router URL, as the SDKs dial a
  // router when the control plane is on loopback.
  std::unique_ptr<tcr::TaskCommandRouter::Stub> Router(const std::string& url) {
    std::string target = url.substr(url.find("://") + 3);
    return tcr::TaskCommandRouter::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  }
  grpc::Status Start(tcr::TaskCommandRouter::Stub& router, const std::string& jwt,
                     const std::string& task_id, const std::string& exec_id,
                     const std::vector<std::string>& argv) {
    tcr::TaskExecStartRequest request;
    request.set_task_id(task_id);
    request.set_exec_id(exec_id);
    for (const auto& arg : argv) request.add_command_args(arg);
    request.set_stdout_config(tcr::TASK_EXEC_STDOUT_CONFIG_PIPE);
    request.set_stderr_config(tcr::TASK_EXEC_STDERR_CONFIG_PIPE);
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + jwt);
    tcr::TaskExecStartResponse response;
    return router.TaskExecStart(&context, request, &response);
  }
  // Runs a command in a fresh V1 sandbox; its stdout.
  std::string RunInSandbox(const std::vector<std::string>& argv) {
    std::string task_id = TaskId(CreateV1());
    auto access = Access(task_id);
    auto router = Router(access.url());
    EXPECT_TRUE(Start(*router, access.jwt(), task_id, "ex-1", argv).ok());
    grpc::ClientContext wait_context;
    wait_context.AddMetadata("authorization", "Bearer " + access.jwt());
    tcr::TaskExecWaitRequest wait;
    wait.set_task_id(task_id);
    wait.set_exec_id("ex-1");
    tcr::TaskExecWaitResponse waited;
    EXPECT_TRUE(router->TaskExecWait(&wait_context, wait, &waited).ok());
    grpc::ClientContext read_context;
    read_context.AddMetadata("authorization", "Bearer " + access.jwt());
    tcr::TaskExecStdioReadRequest read;
    read.set_task_id(task_id);
    read.set_exec_id("ex-1");
    read.set_file_descriptor(tcr::TASK_EXEC_STDIO_FILE_DESCRIPTOR_STDOUT);
    auto stream = router->TaskExecStdioRead(&read_context, read);
    std::string out;
    for (tcr::TaskExecStdioReadResponse chunk; stream->Read(&chunk);) out += chunk.data();
    EXPECT_TRUE(stream->Finish().ok());
    return out;
  }

  std::string Volume(const std::string& name = "strict-volume") {
    mc::VolumeGetOrCreateRequest request;
    request.set_deployment_name(name);
    request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
    request.set_version(mc::VOLUME_FS_VERSION_V2);
    mc::VolumeGetOrCreateResponse response;
    EXPECT_TRUE(Control([&](auto& s, auto* c) { return s.VolumeGetOrCreate(c, request, &response); }).ok());
    return response.volume_id();
  }
  // One VolumePutFiles2 of a file named "f" of `size` bytes whose blocks have
  // these hashes and (when not empty) these put responses.
  grpc::Status PutFile(const std::string& volume_id, std::uint64_t size,
                       const std::vector<std::string>& hashes,
                       const std::vector<std::optional<std::string>>& put_responses,
                       mc::VolumePutFiles2Response* response) {
    mc::VolumePutFiles2Request request;
    request.set_volume_id(volume_id);
    auto* file = request.add_files();
    file->set_path("f");
    file->set_size(size);
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      auto* block = file->add_blocks();
      block->set_contents_sha256(hashes[i]);
      if (i < put_responses.size() && put_responses[i]) block->set_put_response(*put_responses[i]);
    }
    return Control([&](auto& s, auto* c) { return s.VolumePutFiles2(c, request, response); });
  }
  // The contents of "f", downloaded block by block.
  std::string GetFile(const std::string& volume_id) {
    mc::VolumeGetFile2Request request;
    request.set_volume_id(volume_id);
    request.set_path("f");
    mc::VolumeGetFile2Response response;
    EXPECT_TRUE(Control([&](auto& s, auto* c) { return s.VolumeGetFile2(c, request, &response); }).ok());
    std::string data;
    for (const auto& url : response.get_urls()) data += HttpBody(Http("GET", url));
    return data;
  }

  std::unique_ptr<FakeModalServer> server_;
  std::unique_ptr<mc::ModalClient::Stub> control_;
  std::string auth_token_;
};

TEST_F(StrictFakeTest, RouterIsAServerOfItsOwnBehindAnHttpsUrl) {
  std::string task_id = TaskId(CreateV1());
  auto access = Access(task_id);
  EXPECT_EQ(access.url(), "https://127.0.0.1:" + std::to_string(server_->router_port()));
  EXPECT_NE(server_->router_port(), server_->port());
  // The control plane does not serve the router ...
  auto on_control_port = Router("https://127.0.0.1:" + std::to_string(server_->port()));
  EXPECT_EQ(Start(*on_control_port, access.jwt(), task_id, "ex-1", {"true"}).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  // ... its own port does, in plaintext on loopback.
  EXPECT_TRUE(Start(*Router(access.url()), access.jwt(), task_id, "ex-1", {"true"}).ok());
}

TEST_F(StrictFakeTest, RouterIsNotReadyRightAfterTheSandboxStarts) {
  FakeOptions options = FakeOptions();
  options.router_ready_delay = milliseconds(700);
  StartFake(options);
  std::string task_id = TaskId(CreateV1());
  auto access = Access(task_id);
  auto router = Router(access.url());
  EXPECT_EQ(Start(*router, access.jwt(), task_id, "ex-1", {"true"}).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  std::this_thread::sleep_for(milliseconds(800));
  EXPECT_TRUE(Start(*router, access.jwt(), task_id, "ex-1", {"true"}).ok());
}

TEST_F(StrictFakeTest, TheSecondAskForAnImageIsAnsweredFromTheCache) {
  std::string app_id = App();
  auto first = AskImage(app_id);
  EXPECT_FALSE(first.has_result());  // not built yet: the client joins the build
  auto while_building = AskImage(app_id);
  EXPECT_EQ(while_building.image_id(), first.image_id());
  EXPECT_FALSE(while_building.has_result());
  EXPECT_EQ(JoinImage(first.image_id()), mc::GenericResult::GENERIC_STATUS_SUCCESS);
  auto built = AskImage(app_id);
  EXPECT_EQ(built.image_id(), first.image_id());
  EXPECT_EQ(built.result().status(), mc::GenericResult::GENERIC_STATUS_SUCCESS);
  EXPECT_NE(AskImage(app_id, /*force_build=*/true).image_id(), first.image_id());
}

TEST_F(StrictFakeTest, TagsComeFromSandboxTagsGetNotFromSandboxList) {
  std::string id = CreateV1({{"sandrun", "yes"}});
  mc::SandboxListRequest list;
  list.set_app_id(App());
  mc::SandboxListResponse listed;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxList(c, list, &listed); }).ok());
  ASSERT_EQ(listed.sandboxes_size(), 1);
  EXPECT_EQ(listed.sandboxes(0).id(), id);
  EXPECT_EQ(listed.sandboxes(0).tags_size(), 0);

  mc::SandboxTagsGetRequest get;
  get.set_sandbox_id(id);
  mc::SandboxTagsGetResponse tags;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxTagsGet(c, get, &tags); }).ok());
  ASSERT_EQ(tags.tags_size(), 1);
  EXPECT_EQ(tags.tags(0).tag_name(), "sandrun");
  EXPECT_EQ(tags.tags(0).tag_value(), "yes");

  mc::SandboxTagsSetRequest set;  // replaces the whole set
  set.set_sandbox_id(id);
  auto* tag = set.add_tags();
  tag->set_tag_name("other");
  tag->set_tag_value("1");
  google::protobuf::Empty empty;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxTagsSet(c, set, &empty); }).ok());
  EXPECT_EQ(server_->SandboxTags(id), (std::map<std::string, std::string>{{"other", "1"}}));
}

TEST_F(StrictFakeTest, V2SandboxesAnswerOnlyToTheV2Calls) {
  mc::SandboxCreateV2Request request;
  request.set_app_id(App());
  *request.mutable_definition() = Definition();
  mc::SandboxCreateV2Response created;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxCreateV2(c, request, &created); }).ok());
  // Not the V1 shape ("sb-" and 22 base62 characters), by which SDKs route.
  EXPECT_FALSE(std::regex_match(created.sandbox_id(), std::regex("sb-[0-9A-Za-z]{22}")));
  EXPECT_FALSE(created.task_id().empty());
  EXPECT_EQ(created.command_router_access().url().rfind("https://127.0.0.1:", 0), 0u);
  // Its router works with the access that came with the create.
  EXPECT_TRUE(Start(*Router(created.command_router_access().url()), created.command_router_access().jwt(),
                    created.task_id(), "ex-1", {"true"})
                  .ok());

  mc::SandboxWaitRequest wait;
  wait.set_sandbox_id(created.sandbox_id());
  mc::SandboxWaitResponse waited;
  EXPECT_EQ(Control([&](auto& s, auto* c) { return s.SandboxWait(c, wait, &waited); }).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxWaitV2(c, wait, &waited); }).ok());
  EXPECT_FALSE(waited.has_result());  // still running

  mc::SandboxTerminateRequest terminate;
  terminate.set_sandbox_id(created.sandbox_id());
  mc::SandboxTerminateResponse terminated;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxTerminateV2(c, terminate, &terminated); }).ok());
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.SandboxWaitV2(c, wait, &waited); }).ok());
  EXPECT_EQ(waited.result().status(), mc::GenericResult::GENERIC_STATUS_TERMINATED);
}

TEST_F(StrictFakeTest, CommandsRunWithAMinimalEnvironmentInAPrivateDirectory) {
  ::setenv("SANDRUN_STRICT_FAKE_HOST_ONLY", "leaked", 1);
  std::string out = RunInSandbox({"sh", "-c", "echo ${SANDRUN_STRICT_FAKE_HOST_ONLY:-unset}; pwd; echo $PATH"});
  ::unsetenv("SANDRUN_STRICT_FAKE_HOST_ONLY");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(out, m, std::regex("unset\n(.*)\n(.*)\n"))) << out;
  if (server_->options().containers) {
    EXPECT_EQ(m[1].str(), "/");  // the container's root, as on Modal with no workdir
  } else {
    EXPECT_NE(m[1].str(), "/");  // not the host's root
    EXPECT_NE(m[1].str().find("/sb-"), std::string::npos) << m[1].str();  // the sandbox's own directory
  }
  EXPECT_EQ(m[2].str(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
}

TEST_F(StrictFakeTest, UploadedBlocksAreHashedExactlyAsReceived) {
  std::string volume = Volume();
  const std::string content = "abc" + std::string(100, '\0');  // a block ending in zeros
  const std::string hashed_range = "abc";
  const std::string hash = Sha256(hashed_range);
  mc::VolumePutFiles2Response missing;
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {}, &missing).ok());
  ASSERT_EQ(missing.missing_blocks_size(), 1);
  const std::string put_url = missing.missing_blocks(0).put_url();

  // The whole slice is not the hashed range: Modal hashes what it receives,
  // so the block stays missing however often the client confirms it.
  std::string whole = HttpBody(Http("PUT", put_url, content));
  mc::VolumePutFiles2Response again;
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {whole}, &again).ok());
  EXPECT_EQ(again.missing_blocks_size(), 1);

  // Uploading exactly the hashed range is accepted; the zeros come back.
  std::string answer = HttpBody(Http("PUT", put_url, hashed_range));
  mc::VolumePutFiles2Response done;
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {answer}, &done).ok());
  EXPECT_EQ(done.missing_blocks_size(), 0);
  EXPECT_TRUE(GetFile(volume) == content);
}

TEST_F(StrictFakeTest, AnUploadedBlockCountsOnlyWithItsPutResponse) {
  std::string volume = Volume();
  const std::string content = "block body";
  const std::string hash = Sha256(content);
  mc::VolumePutFiles2Response missing;
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {}, &missing).ok());
  ASSERT_EQ(missing.missing_blocks_size(), 1);
  std::string answer = HttpBody(Http("PUT", missing.missing_blocks(0).put_url(), content));
  ASSERT_FALSE(answer.empty());
  for (std::optional<std::string> wrong : {std::optional<std::string>(), std::optional<std::string>("bogus")}) {
    mc::VolumePutFiles2Response still;
    ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {wrong}, &still).ok());
    EXPECT_EQ(still.missing_blocks_size(), 1) << (wrong ? *wrong : "no put_response");
  }
  mc::VolumePutFiles2Response done;
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {answer}, &done).ok());
  EXPECT_EQ(done.missing_blocks_size(), 0);
  EXPECT_EQ(GetFile(volume), content);
}

TEST_F(StrictFakeTest, AnEmptyFileHasNoBlock) {
  std::string volume = Volume();
  mc::VolumePutFiles2Response response;
  EXPECT_EQ(PutFile(volume, 0, {Sha256("")}, {}, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(PutFile(volume, 0, {}, {}, &response).ok());
  EXPECT_EQ(response.missing_blocks_size(), 0);
  EXPECT_EQ(GetFile(volume), "");
}

TEST_F(StrictFakeTest, VolumesCanBeVersion1AndTheV2CallsRefuseThem) {
  FakeOptions options = FakeOptions();
  options.volume_version = 1;  // as `modal volume create` makes them
  StartFake(options);
  mc::VolumeGetOrCreateRequest request;
  request.set_deployment_name("made-by-the-cli");
  request.set_object_creation_type(mc::OBJECT_CREATION_TYPE_CREATE_IF_MISSING);
  request.set_version(mc::VOLUME_FS_VERSION_V2);
  mc::VolumeGetOrCreateResponse response;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.VolumeGetOrCreate(c, request, &response); }).ok());
  EXPECT_EQ(response.metadata().version(), mc::VOLUME_FS_VERSION_V1);
  mc::VolumePutFiles2Response put;
  EXPECT_EQ(PutFile(response.volume_id(), 0, {}, {}, &put).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // An existing V1 volume stays V1 whatever the request asks for.
  server_->AddVolume("old", 1);
  request.set_deployment_name("old");
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.VolumeGetOrCreate(c, request, &response); }).ok());
  EXPECT_EQ(response.metadata().version(), mc::VOLUME_FS_VERSION_V1);
}

TEST_F(StrictFakeTest, TheBlockServerMisbehavesOnRequest) {
  std::string volume = Volume();
  const std::string content = "0123456789abcdef";
  const std::string hash = Sha256(content);
  mc::VolumePutFiles2Response missing;
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {}, &missing).ok());
  ASSERT_EQ(missing.missing_blocks_size(), 1);
  // A failing PUT stores nothing.
  server_->FailNextBlockTransfers("PUT", 1, BlockFault::kError);
  EXPECT_EQ(Http("PUT", missing.missing_blocks(0).put_url(), content).rfind("HTTP/1.1 503", 0), 0u);
  std::string answer = HttpBody(Http("PUT", missing.missing_blocks(0).put_url(), content));
  ASSERT_TRUE(PutFile(volume, content.size(), {hash}, {answer}, &missing).ok());
  ASSERT_EQ(missing.missing_blocks_size(), 0);

  mc::VolumeGetFile2Request get;
  get.set_volume_id(volume);
  get.set_path("f");
  mc::VolumeGetFile2Response urls;
  ASSERT_TRUE(Control([&](auto& s, auto* c) { return s.VolumeGetFile2(c, get, &urls); }).ok());
  ASSERT_EQ(urls.get_urls_size(), 1);
  const std::string url = urls.get_urls(0);

  server_->FailNextBlockTransfers("GET", 1, BlockFault::kChunked);
  std::string chunked = Http("GET", url);
  EXPECT_NE(chunked.find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_EQ(HttpBody(chunked), "8\r\n01234567\r\n8\r\n89abcdef\r\n0\r\n\r\n");

  server_->FailNextBlockTransfers("GET", 1, BlockFault::kShort);
  std::string short_answer = Http("GET", url);
  EXPECT_EQ(short_answer.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(HttpBody(short_answer), "01234567");  // half, and Content-Length agrees

  server_->FailNextBlockTransfers("", 1, BlockFault::kDrop);
  EXPECT_EQ(Http("GET", url), "");

  server_->FailNextBlockTransfers("GET", 1, BlockFault::kSlow);
  auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(HttpBody(Http("GET", url)), content);
  EXPECT_GE(std::chrono::steady_clock::now() - started, milliseconds(1900));

  EXPECT_EQ(HttpBody(Http("GET", url)), content);  // the faults were used up
}

}  // namespace
}  // namespace sandrun::modal::fake
