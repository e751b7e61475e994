// The installed package as a user gets it (the fixture installs this build to
// a fresh prefix): the CLI finds its backend modules beside its core library,
// also after the prefix is moved; a module that cannot load is listed with its
// reason while the others work; the example out-of-tree plugin builds against
// the package and loads; and a test binary linked with sandrun::gtest_main
// carries no backend's libraries.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

const fs::path kWork = CONSUMER_WORK;
constexpr bool kStaticPlugins = SANDRUN_STATIC_PLUGINS;
constexpr char kStaticReason[] =
    "this build links the backends statically (-DSANDRUN_STATIC_PLUGINS=ON): there are no "
    "modules, and its binaries carry every backend by design";
const fs::path kPrefix = kWork / "prefix";

CommandOutput RunInstalled(const Home& home, const fs::path& prefix,
                           const std::vector<std::string>& args,
                           std::map<std::string, std::string> env = {}) {
  CommandOptions options;
  options.env = home.Env();
  for (const auto& [k, v] : env) options.env[k] = v;
  options.cwd = home.work();
  std::vector<std::string> argv{(prefix / "bin" / "sandrun").string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return sandrun::testing::RunCommand(argv, options);
}

/// The first word of each backend line of `sandrun backends` ("* local" -> "local").
std::vector<std::string> ListedBackends(const std::string& out) {
  std::vector<std::string> names;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() < 3 || line[2] == ' ') continue;  // detail lines are indented further
    std::istringstream words(line.substr(2));
    std::string name;
    words >> name;
    names.push_back(name);
  }
  return names;
}

/// The shared libraries `ldd` lists for a binary.
std::vector<std::string> SharedLibraries(const fs::path& binary) {
  CommandOutput out = sandrun::testing::RunCommand({"ldd", binary.string()});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  std::vector<std::string> libraries;
  std::istringstream lines(out.out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    std::string first;
    if (words >> first) libraries.push_back(first);
  }
  return libraries;
}

TEST(InstalledPackage, TheCliFindsTheBuiltInModulesBesideItsCoreLibrary) {
  Home home;
  CommandOutput out = RunInstalled(home, kPrefix, {"backends"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  std::vector<std::string> names = ListedBackends(out.out);
  for (const char* backend : {"local", "docker", "modal"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), backend), names.end())
        << backend << " missing from:\n" << out.out;
  }
  EXPECT_LACKS(out.out, "not loaded");
  EXPECT_EQ(out.err, "");
  if (kStaticPlugins) return;
  // The CLI itself links no backend's libraries: they come with the modules.
  for (const auto& library : SharedLibraries(kPrefix / "bin" / "sandrun")) {
    EXPECT_EQ(library.find("grpc"), std::string::npos) << library;
    EXPECT_EQ(library.find("archive"), std::string::npos) << library;
  }
}

TEST(InstalledPackage, AMovedPrefixUsesItsOwnModulesAndListsOneThatCannotLoad) {
  if (kStaticPlugins) GTEST_SKIP() << kStaticReason;
  Home home;
  const fs::path moved = home.dir() / "moved";
  fs::copy(kPrefix, moved, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
  const fs::path plugins = moved / "lib" / "sandrun" / "plugins";
  ASSERT_TRUE(fs::exists(plugins / "sandrun-modal.so"));
  // Without its modal module, the moved copy has no modal: it reads its own
  // directory, not the prefix it was installed to.
  fs::remove(plugins / "sandrun-modal.so");
  // A module that is not a library at all.
  {
    std::ofstream broken(plugins / "sandrun-broken.so");
    broken << "not an ELF file\n";
  }
  CommandOutput out = RunInstalled(home, moved, {"backends"});
  ASSERT_EQ(out.exit_code, 0) << out.err;
  std::vector<std::string> names = ListedBackends(out.out);
  EXPECT_NE(std::find(names.begin(), names.end(), "local"), names.end()) << out.out;
  EXPECT_NE(std::find(names.begin(), names.end(), "docker"), names.end()) << out.out;
  EXPECT_EQ(std::find(names.begin(), names.end(), "modal"), names.end()) << out.out;
  ASSERT_EQ(LinesWith(out.out, "not loaded").size(), 1u) << out.out;
  EXPECT_CONTAINS(LinesWith(out.out, "not loaded")[0], "broken");
  EXPECT_CONTAINS(LinesWith(out.out, "not loaded")[0], (plugins / "sandrun-broken.so").string());
  EXPECT_CONTAINS(out.out, "file too short");  // the loader's own reason

  // The other backends still work, and asking for the broken one says why.
  CommandOutput ran = RunInstalled(home, moved, {"exec", "--backend", "local", "--", "echo", "ok"});
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  EXPECT_EQ(ran.out, "ok\n");
  CommandOutput refused = RunInstalled(home, moved, {"exec", "--backend", "broken", "--", "true"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_CONTAINS(refused.err, "sandrun-broken.so");
}

TEST(InstalledPackage, TheExamplePluginBuildsAgainstThePackageAndLoads) {
  Home home;
  const fs::path plugin_dir = kWork / "plugin-build";
  ASSERT_TRUE(fs::exists(plugin_dir / "sandrun-echo.so")) << "the fixture builds examples/plugin";
  std::map<std::string, std::string> env{{"SANDRUN_PLUGIN_PATH", plugin_dir.string()}};
  CommandOutput listed = RunInstalled(home, kPrefix, {"backends"}, env);
  EXPECT_EQ(listed.exit_code, 0) << listed.err;
  EXPECT_EQ(LinesWith(listed.out, "external-echo").size(), 1u) << listed.out;
  CommandOutput ran =
      RunInstalled(home, kPrefix, {"exec", "--backend", "external-echo", "--", "hi", "there"}, env);
  EXPECT_EQ(ran.exit_code, 0) << ran.err;
  EXPECT_EQ(ran.out, "hi there\n");
}

TEST(InstalledPackage, AGtestMainBinaryCarriesNoBackendLibraries) {
  if (kStaticPlugins) GTEST_SKIP() << kStaticReason;
  const fs::path consumer = kWork / "build";
  std::vector<std::string> with_sandrun = SharedLibraries(consumer / "consumer_marked_tests");
  std::vector<std::string> with_gtest = SharedLibraries(consumer / "consumer_gtests");
  ASSERT_FALSE(with_sandrun.empty());
  ASSERT_FALSE(with_gtest.empty());
  for (const auto& library : with_sandrun) {
    for (const char* backend_only : {"grpc", "protobuf", "absl", "archive"}) {
      EXPECT_EQ(library.find(backend_only), std::string::npos) << library;
    }
  }
  // The budget of the issue: at most a dozen more than GTest::gtest_main alone.
  EXPECT_LE(with_sandrun.size(), with_gtest.size() + 12)
      << with_sandrun.size() << " against " << with_gtest.size();
}

}  // namespace
}  // namespace sandrun::e2e
