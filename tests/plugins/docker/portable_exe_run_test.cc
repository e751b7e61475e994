// Portable executables end to end: a C++ program built here with g++ (dynamic
// libstdc++) runs in the busybox-only image through its bundled loader and
// libraries, which reach the engine once, through its exe cache volume. The
// plan itself is tested in tests/core/portable_exe_test.cc.
#include "sandrun/portable_exe.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <optional>

#include "core/portable_test_program.h"
#include "docker_archive_store.h"
#include "docker_exe_cache.h"
#include "docker_test_env.h"
#include "docker_volume_helper.h"
#include "plugin_tar.h"
#include "sandrun/util.h"
#include "support/test_util.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;

TEST(PortableExeDockerTest, HostCppBinaryRunsInBusyboxImage) {
  auto backend = docker::CreateDockerBackend(docker::testing::TestOptions());
  SANDRUN_REQUIRE_DOCKER(*backend);
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
  ASSERT_FALSE(exe.empty());
  auto sandbox = backend->Create(docker::testing::ImageSpec(docker::testing::kBusybox));
  ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();

  ExecRequest plain;
  plain.argv = {"sh", "-c", "ls /lib/*/libstdc++* /usr/lib/*/libstdc++* 2>/dev/null | wc -l"};
  auto r = (*sandbox)->Exec(plain);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_stream.text, "0\n") << "the image should lack libstdc++";

  ASSERT_TRUE((*sandbox)->Put({exe.string(), "bin/hello", true}).ok());
  // A second executable with the same libraries sends only what is new.
  ASSERT_TRUE((*sandbox)->Put({exe.string(), "bin/hello2", true}).ok());
  ExecRequest run;
  run.argv = {"./bin/hello", "in", "busybox"};
  r = (*sandbox)->Exec(run);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 0) << r->stderr_stream.text;
  EXPECT_EQ(r->stdout_stream.text, "hello from C++ in busybox\n");
  run.argv = {"bin/hello2"};
  r = (*sandbox)->Exec(run);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stdout_stream.text, "hello from C++\n") << r->stderr_stream.text;
}

TEST(PortableExeDockerTest, FilesCrossToTheEngineOnceWhateverTheSandboxes) {
  auto client = docker::testing::TestClient();
  {
    auto probe = docker::CreateDockerBackend(docker::testing::TestOptions());
    SANDRUN_REQUIRE_DOCKER(*probe);
  }
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
  ASSERT_FALSE(exe.empty());
  auto plan = PlanPortableExecutable(exe);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  // A volume of this test's own, so the first upload really is the first.
  const std::string volume = "sandrun-test-exe-" + RandomHex(8);
  struct Cleanup {
    docker::DockerClient& client;
    std::string volume;
    ~Cleanup() {
      (void)client.Request("DELETE", "/containers/sandrun-exe-cache-" + volume + "?force=1");
      (void)client.Request("DELETE", "/volumes/" + volume + "?force=1");
    }
  } cleanup{*client, volume};
  ASSERT_TRUE(docker::EnsureVolume(*client, volume).ok());

  std::shared_ptr<docker::DockerClient> shared = docker::testing::TestClient();
  const docker::ExeCacheRetention retention{std::chrono::hours(24 * 7), docker::testing::kBusybox};
  docker::ExeCache first(shared, volume, {}, retention);
  auto sent = first.Ensure(*plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_GT(*sent, fs::file_size(exe)) << "the executable and its libraries go up";
  sent = first.Ensure(*plan);
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(*sent, 0u) << "the same process never sends a file twice";
  docker::ExeCache another_process(shared, volume, {}, retention);
  sent = another_process.Ensure(*plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, 0u) << "the volume already holds every file";

  // The same content under another name shares the <sha> directory: only
  // that name goes up, the libraries are there already.
  fs::path copy = dir.path() / "hello-copy";
  fs::copy_file(exe, copy);
  auto copy_plan = PlanPortableExecutable(copy);
  ASSERT_TRUE(copy_plan.ok());
  sent = another_process.Ensure(*copy_plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, fs::file_size(copy));

  // Sandboxes on that cache only receive the launcher, and run the program.
  docker::DockerOptions options = docker::testing::TestOptions();
  options.exe_cache_volume = volume;
  auto backend = docker::CreateDockerBackend(options);
  for (int i = 0; i < 2; ++i) {
    auto sandbox = backend->Create(docker::testing::ImageSpec(docker::testing::kBusybox));
    ASSERT_TRUE(sandbox.ok()) << sandbox.status().ToString();
    ASSERT_TRUE((*sandbox)->Put({exe.string(), "hello", true}).ok());
    ExecRequest run;
    run.argv = {"./hello", "from", "the", "cache"};
    auto r = (*sandbox)->Exec(run);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->stdout_stream.text, "hello from C++ from the cache\n") << r->stderr_stream.text;
    ASSERT_TRUE((*sandbox)->Put({copy.string(), "hello-copy", true}).ok());
    run.argv = {"./hello-copy"};
    r = (*sandbox)->Exec(run);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->stdout_stream.text, "hello from C++\n") << r->stderr_stream.text;
    // The cache is shared: a sandbox cannot change what others will run.
    run.argv = {"sh", "-c", "echo x > " + plan->exe_sandbox_path + " && echo wrote"};
    r = (*sandbox)->Exec(run);
    ASSERT_TRUE(r.ok());
    EXPECT_NE(r->exit_code, 0) << r->stdout_stream.text;
    EXPECT_TRUE((*sandbox)->Terminate().ok());
  }
}


// Retention of the exe cache: a volume of the test's own, entries written
// with the times the test wants, and an hour's `keep` standing for a week.
class ExeCacheRetentionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto probe = docker::CreateDockerBackend(docker::testing::TestOptions());
    SANDRUN_REQUIRE_DOCKER(*probe);
    ASSERT_TRUE(docker::EnsureVolume(*client_, volume_).ok());
  }
  void TearDown() override {
    (void)client_->Request("DELETE", "/containers/sandrun-exe-cache-" + volume_ + "?force=1");
    (void)client_->Request("DELETE", "/volumes/" + volume_ + "?force=1");
  }

  docker::ExeCacheRetention Hour() const { return {std::chrono::hours(1), docker::testing::kBusybox}; }

  /// Writes `entries` (names under /sandrun/exe) into the volume.
  void Write(const std::vector<TarEntry>& entries) {
    std::vector<TarEntry> rooted = entries;
    for (TarEntry& e : rooted) e.name = "sandrun/exe/" + e.name;
    auto tar = TarOfEntries(rooted);
    ASSERT_TRUE(tar.ok());
    auto res = helper_.Call([&](const std::string& id) {
      return client_->Request("PUT", "/containers/" + id + "/archive?path=%2F", *tar,
                              "application/x-tar");
    });
    ASSERT_TRUE(res.ok()) << res.status().ToString();
    ASSERT_EQ(res->status, 200) << res->body;
  }
  static TarEntry File(const std::string& name, std::int64_t minutes_old = 0) {
    TarEntry e;
    e.name = name;
    e.data = "content of " + name;
    e.mtime = minutes_old ? NowSeconds() - minutes_old * 60 : 0;
    return e;
  }
  static TarEntry Directory(const std::string& name, std::int64_t minutes_old) {
    TarEntry e = File(name, minutes_old);
    e.data.clear();
    e.directory = true;
    return e;
  }
  static std::int64_t NowSeconds() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }
  /// Minutes since `name` (under /sandrun/exe) was written; nullopt if absent.
  std::optional<std::int64_t> MinutesOld(const std::string& name) {
    auto res = helper_.Call([&](const std::string& id) {
      return client_->Request("HEAD", "/containers/" + id + "/archive?path=" +
                                          docker::UrlEncode("/sandrun/exe/" + name));
    });
    EXPECT_TRUE(res.ok());
    if (!res.ok() || res->status == 404) return std::nullopt;
    auto stat = Base64Decode(res->headers["x-docker-container-path-stat"]);
    EXPECT_TRUE(stat.has_value());
    auto mtime = ParseRfc3339Ms(nlohmann::json::parse(stat.value_or("{}")).value("mtime", ""));
    EXPECT_TRUE(mtime.has_value()) << *stat;
    return (NowSeconds() * 1000 - mtime.value_or(0)) / 60000;
  }
  bool Exists(const std::string& name) { return MinutesOld(name).has_value(); }

  std::shared_ptr<docker::DockerClient> client_ = docker::testing::TestClient();
  const std::string volume_ = "sandrun-test-exe-keep-" + RandomHex(8);
  docker::VolumeHelper helper_{client_, volume_, kPortableExeRoot, docker::kExeCacheHelperRole};
};

TEST_F(ExeCacheRetentionTest, FilesUnusedForLongerThanKeepAreRemovedAndTheRestStays) {
  // Directory entries last: their times are the ones an upload leaves.
  Write({File("old/a"), File("old/.a.complete", 90),               // unused 1.5 h
         File("shared/b"), File("shared/.b.complete", 90),         // one name old,
         File("shared/b2"), File("shared/.b2.complete", 5),        // the other used
         File("new/c"), File("new/.c.complete", 5),                // used 5 min ago
         File("cut/d", 600),                                       // no marker, long ago
         File("writing/e", 600),                                   // no marker, now
         File("busy/f"), File("busy/.f.complete", 90),             // old, but something
         Directory("old", 90), Directory("shared", 90),            // landed beside it
         Directory("new", 90), Directory("cut", 90)});             // a minute ago
  docker::ExeCache cache(client_, volume_, {}, Hour());
  auto code = cache.RemoveUnused();
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 0);
  EXPECT_FALSE(Exists("old/a"));
  EXPECT_FALSE(Exists("old/.a.complete"));
  EXPECT_FALSE(Exists("old")) << "an emptied directory goes too";
  EXPECT_FALSE(Exists("shared/b"));
  EXPECT_TRUE(Exists("shared/b2"));
  EXPECT_TRUE(Exists("shared/.b2.complete"));
  EXPECT_TRUE(Exists("new/c"));
  EXPECT_TRUE(Exists("new/.c.complete"));
  EXPECT_FALSE(Exists("cut/d")) << "an upload cut short long ago";
  EXPECT_TRUE(Exists("writing/e")) << "an upload under way keeps its file";
  EXPECT_TRUE(Exists("busy/f")) << "a directory something just landed in is left alone";
  EXPECT_TRUE(Exists("busy/.f.complete"));

  // No tool image set: the sandboxes' image does it, and with none seen
  // nothing is tried (nothing is pulled).
  Write({File("old/a"), File("old/.a.complete", 90), Directory("old", 90)});
  docker::ExeCache untooled(client_, volume_, {}, {std::chrono::hours(1), ""});
  EXPECT_EQ(untooled.RemoveUnused().status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Exists("old/a"));
  untooled.NoteSandboxImage(docker::testing::kBusybox);
  auto by_sandbox_image = untooled.RemoveUnused();
  ASSERT_TRUE(by_sandbox_image.ok()) << by_sandbox_image.status().ToString();
  EXPECT_FALSE(Exists("old/a"));

  // keep 0: nothing ever goes.
  Write({File("old/a"), File("old/.a.complete", 90), Directory("old", 90)});
  docker::ExeCache forever(client_, volume_, {}, {std::chrono::seconds(0), docker::testing::kBusybox});
  ASSERT_TRUE(forever.RemoveUnused().ok());
  EXPECT_TRUE(Exists("old/a"));
}

TEST_F(ExeCacheRetentionTest, UseWritesTheMarkerAgainAndAFileARemovalTookIsSentAgain) {
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
  ASSERT_FALSE(exe.empty());
  auto plan = PlanPortableExecutable(exe);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_GE(plan->files.size(), 3u);
  auto rel = [](const PortableFile& f) { return f.sandbox_path.substr(std::string(kPortableExeRoot).size() + 1); };
  auto marker = [&](const PortableFile& f) {
    std::string r = rel(f);
    std::size_t slash = r.rfind('/');
    return r.substr(0, slash + 1) + "." + r.substr(slash + 1) + ".complete";
  };
  {
    docker::ExeCache first(client_, volume_, {}, Hour());
    ASSERT_TRUE(first.Ensure(*plan).ok());
  }
  // One file last used 10 minutes ago, one 20, and one whose file a removal
  // took from under a marker written meanwhile.
  const PortableFile& recent = plan->files[0];
  const PortableFile& used = plan->files[1];
  const PortableFile& taken = plan->files[2];
  Write({File(marker(recent), 10), File(marker(used), 20), File(marker(taken), 20)});
  auto removed = docker::RunToolContainer(*client_, docker::testing::kBusybox, volume_,
                                          {"rm", "-f", taken.sandbox_path}, kPortableExeRoot);
  ASSERT_TRUE(removed.ok() && *removed == 0);
  ASSERT_FALSE(Exists(rel(taken)));
  ASSERT_EQ(MinutesOld(marker(used)).value_or(-1), 20);

  docker::ExeCache next_process(client_, volume_, {}, Hour());
  auto sent = next_process.Ensure(*plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, fs::file_size(taken.host_path)) << "only the file a removal took goes again";
  EXPECT_EQ(MinutesOld(marker(recent)).value_or(-1), 10) << "a recent use needs no writing";
  EXPECT_EQ(MinutesOld(marker(used)).value_or(-1), 0) << "its use was written down";
  EXPECT_EQ(MinutesOld(marker(taken)).value_or(-1), 0);
  for (const PortableFile& f : plan->files) EXPECT_TRUE(Exists(rel(f))) << f.sandbox_path;
}

TEST_F(ExeCacheRetentionTest, AnUploadRemovesUnusedFilesAtMostOnceADay) {
  sandrun::testing::TempDir dir;
  fs::path exe = sandrun::testing::BuildHelloProgram(dir.path());
  ASSERT_FALSE(exe.empty());
  auto plan = PlanPortableExecutable(exe);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  Write({File("old/a"), File("old/.a.complete", 90), Directory("old", 90)});
  {
    docker::ExeCache cache(client_, volume_, {}, Hour());
    auto sent = cache.Ensure(*plan);
    ASSERT_TRUE(sent.ok()) << sent.status().ToString();
    EXPECT_GT(*sent, 0u);
  }
  EXPECT_FALSE(Exists("old/a")) << "a new build's upload removed what went unused";
  EXPECT_EQ(MinutesOld(".sandrun-evicted").value_or(-1), 0);

  // Within the day, another process's upload leaves the removal alone.
  Write({File("old/a"), File("old/.a.complete", 90), Directory("old", 90)});
  fs::path copy = dir.path() / "hello-copy";
  fs::copy_file(exe, copy);
  auto copy_plan = PlanPortableExecutable(copy);
  ASSERT_TRUE(copy_plan.ok());
  docker::ExeCache later(client_, volume_, {}, Hour());
  auto sent = later.Ensure(*copy_plan);
  ASSERT_TRUE(sent.ok()) << sent.status().ToString();
  EXPECT_EQ(*sent, fs::file_size(copy));
  EXPECT_TRUE(Exists("old/a"));
}

}  // namespace
}  // namespace sandrun
