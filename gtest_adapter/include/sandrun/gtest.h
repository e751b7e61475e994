// The GoogleTest adapter: mark a test, run the binary as always, the marked
// test runs in a sandbox.
//
//   #include <sandrun/gtest.h>
//   SANDRUN_TEST(Storage, SurvivesKill) { ... }                 // in a sandbox
//   SANDRUN_TEST(Storage, Big, sandrun::gtest::Options().Timeout(30).Memory(512)) { ... }
//   SANDRUN_TEST_F(GpuFixture, Kernel) { ... }                  // fixtures too
//   TEST(Parser, Small) { ... }                                 // locally, as before
//
// Link `sandrun::gtest_main` (or call sandrun::gtest::Init(&argc, argv) after
// testing::InitGoogleTest in your own main).
//
// How it works, with GoogleTest's public API only. The same binary runs in
// two roles:
//  - On the host, when RUN_ALL_TESTS starts an iteration, every marked test
//    the gtest filter selects is launched at once through sandrun's Engine
//    (up to the configured concurrency). Each marked test's TestBody then
//    waits for its own result and replays it: its own stdout/stderr, every
//    remote failure at its original file:line with its message, a skip as a
//    skip, a timeout, crash, premature exit or infrastructure error as a
//    failure that says so; its time is its own time in the sandbox. The
//    body itself does not run on the host, nor do the fixture's
//    SetUp/TearDown (its constructor and SetUpTestSuite do).
//  - In the sandbox (environment SANDRUN_GTEST_INSIDE=1) the binary runs with
//    --gtest_filter naming one test and --gtest_output=json, and the body runs
//    for real.
//  - In any other sandrun sandbox (SANDRUN_SANDBOX_ID set: `sandrun exec`,
//    sandrun_add_test) marked tests run in that process like plain tests.
//
// Marking without code: --sandrun_filter=PATTERN (or SANDRUN_FILTER), in
// GoogleTest's filter syntax, marks existing TEST()s. A TEST()'s body cannot
// be swapped inside a running process, so Init removes each marked TEST from
// the local run (by extending --gtest_filter) and registers a stand-in named
// "sandrun/Suite.Name" that runs "Suite.Name" in a sandbox and reports it.
//
// Config comes from the same layers as the CLI: --sandrun_<key>=V flags >
// SANDRUN_<KEY> environment > sandrun.json > defaults, with the keys of
// `sandrun config` (backend, jobs, timeout, image, ...). Per-test Options
// override config.
#ifndef SANDRUN_GTEST_H_
#define SANDRUN_GTEST_H_

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sandrun/spec.h"

namespace sandrun::gtest {

/// Per-test settings, declared next to the test. Unset fields fall back to
/// the config (flags, SANDRUN_* env, sandrun.json).
class Options {
 public:
  /// Seconds before the test's sandboxed process is killed; 0 = config's.
  Options& Timeout(double seconds) { timeout_s_ = seconds; return *this; }
  Options& Image(std::string image) { image_ = std::move(image); return *this; }
  Options& Memory(std::int64_t mib) { memory_mb_ = mib; return *this; }
  Options& Cpu(double cores) { cpu_ = cores; return *this; }
  Options& Gpu(std::string gpu) { gpu_ = std::move(gpu); return *this; }
  /// Sets an environment variable in the sandbox (repeatable).
  Options& Env(std::string key, std::string value) {
    env_[std::move(key)] = std::move(value);
    return *this;
  }
  /// Copies a host file or directory into the sandbox's working directory
  /// (destination empty: its file name). A relative source is relative to
  /// the directory of the source file that declares the test (as CMake's
  /// paths are to CMAKE_CURRENT_SOURCE_DIR), wherever the binary runs. A
  /// missing source fails this test (by its name) and no other.
  Options& Upload(std::string source, std::string destination = "") {
    uploads_.push_back({std::move(source), std::move(destination), false});
    return *this;
  }
  Options& Network(NetworkMode mode) { network_ = mode; network_set_ = true; return *this; }
  /// Runs on this backend instead of the configured one.
  Options& Backend(std::string name) { backend_ = std::move(name); return *this; }
  /// Runs this test with the binary's other Reuse() tests of the same
  /// settings one after another in a single sandbox (expensive images).
  Options& Reuse(bool reuse = true) { reuse_ = reuse; return *this; }

  double timeout_s() const { return timeout_s_; }
  const std::string& image() const { return image_; }
  std::int64_t memory_mb() const { return memory_mb_; }
  double cpu() const { return cpu_; }
  const std::string& gpu() const { return gpu_; }
  const std::map<std::string, std::string>& env() const { return env_; }
  const std::vector<FileUpload>& uploads() const { return uploads_; }
  bool network_set() const { return network_set_; }
  NetworkMode network() const { return network_; }
  const std::string& backend() const { return backend_; }
  bool reuse() const { return reuse_; }

 private:
  double timeout_s_ = 0;
  std::string image_;
  std::int64_t memory_mb_ = 0;
  double cpu_ = 0;
  std::string gpu_;
  std::map<std::string, std::string> env_;
  std::vector<FileUpload> uploads_;
  NetworkMode network_ = NetworkMode::kNone;
  bool network_set_ = false;
  std::string backend_;
  bool reuse_ = false;
};

/// Call after testing::InitGoogleTest(argc, argv). Removes --sandrun_* flags
/// from argv, loads the config, marks the TESTs that --sandrun_filter names
/// and installs the listener that launches the marked tests. A bad flag or
/// config value is printed and the process exits with status 2. Does nothing
/// but strip flags inside a sandbox.
void Init(int* argc, char** argv);

/// True when the binary runs in a sandrun sandbox: the adapter's own
/// (SANDRUN_GTEST_INSIDE=1) or any other (the engine sets SANDRUN_SANDBOX_ID,
/// SANDRUN_RUN_ID and SANDRUN_TASK_ID in every sandbox). Marked tests then
/// run here, their bodies and fixtures' SetUp/TearDown included.
bool InsideSandbox();

namespace internal {

/// Registers a marked test with GoogleTest and the adapter (static init).
/// `compile_dir`: what a relative `file` is relative to (may be empty).
bool RegisterMarked(const char* suite, const char* name, const char* file, int line,
                    const char* compile_dir, const Options& options);

/// What a marked test's TestBody does: inside a sandbox, runs `body`; on the
/// host, waits for the remote result of `suite.name` and replays it.
void Dispatch(const char* suite, const char* name, const std::function<void()>& body);

template <typename Fixture, typename Derived>
bool Register(const char* suite, const char* name, const char* file, int line,
              const char* compile_dir, const Options& options) {
  // The factory returns the fixture type so GoogleTest sees the same fixture
  // class as TEST/TEST_F in this suite.
  ::testing::RegisterTest(suite, name, nullptr, nullptr, file, line,
                          []() -> Fixture* { return new Derived(); });
  return RegisterMarked(suite, name, file, line, compile_dir, options);
}

}  // namespace internal
}  // namespace sandrun::gtest

/// The compiler's working directory, for a relative __FILE__ (ccache's
/// base_dir makes them); sandrun::gtest's CMake target defines it.
#ifndef SANDRUN_GTEST_COMPILE_DIR
#define SANDRUN_GTEST_COMPILE_DIR ""
#endif

#define SANDRUN_GTEST_CLASS_(suite, name) suite##_##name##_SandrunTest

#define SANDRUN_GTEST_IMPL_(suite, name, fixture, options)                            \
  class SANDRUN_GTEST_CLASS_(suite, name) : public fixture {                          \
   public:                                                                            \
    void SandrunBody();                                                               \
                                                                                      \
   protected:                                                                         \
    void SetUp() override {                                                           \
      if (::sandrun::gtest::InsideSandbox()) this->fixture::SetUp();                  \
    }                                                                                 \
    void TearDown() override {                                                        \
      if (::sandrun::gtest::InsideSandbox()) this->fixture::TearDown();               \
    }                                                                                 \
                                                                                      \
   private:                                                                           \
    void TestBody() override {                                                        \
      ::sandrun::gtest::internal::Dispatch(#suite, #name, [this] { SandrunBody(); }); \
    }                                                                                 \
    static const bool sandrun_registered_;                                            \
  };                                                                                  \
  const bool SANDRUN_GTEST_CLASS_(suite, name)::sandrun_registered_ =                 \
      ::sandrun::gtest::internal::Register<fixture, SANDRUN_GTEST_CLASS_(suite, name)>( \
          #suite, #name, __FILE__, __LINE__, SANDRUN_GTEST_COMPILE_DIR, options);     \
  void SANDRUN_GTEST_CLASS_(suite, name)::SandrunBody()

#define SANDRUN_GTEST_PICK_(_1, _2, _3, which, ...) which
#define SANDRUN_GTEST_TEST2_(suite, name) \
  SANDRUN_GTEST_IMPL_(suite, name, ::testing::Test, ::sandrun::gtest::Options())
#define SANDRUN_GTEST_TEST3_(suite, name, options) \
  SANDRUN_GTEST_IMPL_(suite, name, ::testing::Test, options)
#define SANDRUN_GTEST_TESTF2_(fixture, name) \
  SANDRUN_GTEST_IMPL_(fixture, name, fixture, ::sandrun::gtest::Options())
#define SANDRUN_GTEST_TESTF3_(fixture, name, options) \
  SANDRUN_GTEST_IMPL_(fixture, name, fixture, options)

/// SANDRUN_TEST(Suite, Name[, options]) { body }: like TEST, in a sandbox.
#define SANDRUN_TEST(...) \
  SANDRUN_GTEST_PICK_(__VA_ARGS__, SANDRUN_GTEST_TEST3_, SANDRUN_GTEST_TEST2_, unused)(__VA_ARGS__)
/// SANDRUN_TEST_F(Fixture, Name[, options]) { body }: like TEST_F, in a sandbox.
#define SANDRUN_TEST_F(...) \
  SANDRUN_GTEST_PICK_(__VA_ARGS__, SANDRUN_GTEST_TESTF3_, SANDRUN_GTEST_TESTF2_, unused)(__VA_ARGS__)

#endif  // SANDRUN_GTEST_H_
