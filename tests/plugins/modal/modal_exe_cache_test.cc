// Portable executables on Modal cross once (modal_exe_cache.h): against the
// fake Modal server in container mode, a host binary runs in a busybox
// sandbox, and a second sandbox with the same binary gets no file of it
// through the file tool and puts nothing more into the cache Volume.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "fake_modal_server.h"
#include "modal_backend.h"
#include "support/docker_required.h"

namespace sandrun::modal {
namespace {

std::size_t CountContaining(const std::vector<std::string>& lines, const std::string& text) {
  return static_cast<std::size_t>(std::count_if(lines.begin(), lines.end(), [&](const auto& line) {
    return line.find(text) != std::string::npos;
  }));
}

class ModalExeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fake::DockerEngineAnswers()) {
      SANDRUN_SKIP_WITHOUT_DOCKER("the fake runs sandboxes as Docker containers, and no Docker "
                                  "engine answers (run scripts/docker-test-env)");
    }
    fake::FakeOptions options;
    options.containers = true;
    server_ = std::make_unique<fake::FakeModalServer>(options);
    ASSERT_TRUE(server_->Start());
  }
  Result<std::unique_ptr<Backend>> MakeBackend(const std::string& section) {
    auto options = ParseModalOptions(section);
    if (!options.ok()) return options.status();
    return CreateModalBackend(*options, {{"MODAL_TOKEN_ID", server_->options().token_id},
                                         {"MODAL_TOKEN_SECRET", server_->options().token_secret},
                                         {"MODAL_SERVER_URL", server_->url()},
                                         {"HOME", "/nonexistent-sandrun-test-home"}});
  }
  // Runs the host's `echo` (a dynamic glibc binary) in a busybox sandbox.
  std::string RunHostEcho(Backend& backend, const std::string& word) {
    SandboxSpec spec;
    spec.image = "sandrun-test/busybox";  // no glibc: only a portable upload runs there
    spec.lifetime = std::chrono::seconds(120);
    FileUpload upload;
    upload.source = "/bin/echo";
    upload.destination = "host-echo";
    upload.portable = true;
    spec.uploads.push_back(upload);
    auto sandbox = backend.Create(spec);
    if (!sandbox.ok()) return "create: " + sandbox.status().ToString();
    Status put = (*sandbox)->Put(upload);
    if (!put.ok()) return "put: " + put.ToString();
    ExecRequest request;
    request.argv = {"./host-echo", word};
    request.timeout = std::chrono::seconds(60);
    auto result = (*sandbox)->Exec(request);
    (*sandbox)->Terminate().IgnoreError();
    if (!result.ok()) return "exec: " + result.status().ToString();
    return result->stdout_stream.text;
  }
  std::unique_ptr<fake::FakeModalServer> server_;
};

TEST_F(ModalExeCacheTest, ABinaryAndItsLibrariesCrossOnceAndRunFromTheMount) {
  auto backend = MakeBackend(R"({"timeout_grace_ms": 3000})");
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ(RunHostEcho(**backend, "first"), "first\n");
  const auto puts_after_first = server_->Stats().calls["VolumePutFiles2"];
  EXPECT_GT(puts_after_first, 0) << "the binary never went into the cache Volume";
  EXPECT_EQ(RunHostEcho(**backend, "second"), "second\n");
  EXPECT_EQ(server_->Stats().calls["VolumePutFiles2"], puts_after_first)
      << "the second sandbox put the binary again";
  // No file of the closure was written into either sandbox: only the
  // launcher script was.
  const auto execs = server_->ExecRequestsSeen();
  EXPECT_EQ(CountContaining(execs, "sandrun-put /sandrun/exe/"), 0u)
      << ::testing::PrintToString(execs);
  // Per sandbox: the launcher (its directory, content and mode in one exec),
  // then the command.
  EXPECT_EQ(execs.size(), 4u) << ::testing::PrintToString(execs);
  EXPECT_EQ(CountContaining(execs, "sandrun-put /sandrun/work/host-echo 1 "), 2u)
      << ::testing::PrintToString(execs);
}

TEST_F(ModalExeCacheTest, WithoutTheCacheEverySandboxReceivesTheFiles) {
  auto backend = MakeBackend(R"({"timeout_grace_ms": 3000, "exe_cache_volume": ""})");
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ(RunHostEcho(**backend, "first"), "first\n");
  EXPECT_EQ(RunHostEcho(**backend, "second"), "second\n");
  EXPECT_EQ(server_->Stats().calls["VolumePutFiles2"], 0);
  EXPECT_GE(CountContaining(server_->ExecRequestsSeen(), "sandrun-put /sandrun/exe/"), 4u);
}

}  // namespace
}  // namespace sandrun::modal
