// A third-party backend plugin, built as a shared library the way a user
// would build one, to prove that SANDRUN_PLUGIN_PATH loading works. Its one
// backend, "external-echo", echoes argv back on stdout without running it.
// Built twice: once with the real ABI version, once with a wrong one.
#include "sandrun/archive.h"
#include "sandrun/backend.h"
#include "sandrun/output_collector.h"
#include "sandrun/plugin_abi.h"
#include "sandrun/registry.h"

#ifndef TEST_PLUGIN_ABI_VERSION
#define TEST_PLUGIN_ABI_VERSION SANDRUN_PLUGIN_ABI_VERSION
#endif
#ifndef TEST_PLUGIN_BACKEND_NAME
#define TEST_PLUGIN_BACKEND_NAME "external-echo"
#endif

namespace {

using namespace sandrun;

class EchoSandbox : public Sandbox {
 public:
  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload&) override { return UnimplementedError("echo backend has no files"); }
  Result<ExecResult> Exec(const ExecRequest& request) override {
    OutputCollector out(StreamKind::kStdout, request.output_cap_bytes, "", request.on_output);
    std::string line;
    for (const auto& arg : request.argv) line += (line.empty() ? "" : " ") + arg;
    out.Append(line + "\n");
    ExecResult result;
    result.outcome = Outcome::kExited;
    result.stdout_stream = out.Finish();
    result.sandbox_id = id_;
    return result;
  }
  Result<std::vector<std::string>> Get(const std::string&, const std::filesystem::path&) override {
    return UnimplementedError("echo backend has no files");
  }
  Status Terminate() override { return OkStatus(); }

 private:
  std::string id_ = "echo-1";
};

class EchoBackend : public Backend {
 public:
  explicit EchoBackend(std::filesystem::path archive) : archive_(std::move(archive)) {}
  std::string_view Name() const override { return TEST_PLUGIN_BACKEND_NAME; }
  Capabilities GetCapabilities() const override { return {}; }
  Status CheckAvailable() override { return OkStatus(); }
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec&) override {
    return std::unique_ptr<Sandbox>(new EchoSandbox());
  }
  Result<std::vector<Leftover>> ListLeftovers() override { return std::vector<Leftover>{}; }
  Status RemoveLeftover(const std::string&) override { return OkStatus(); }
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override {
    return std::unique_ptr<ArchiveStore>(new DirectoryArchiveStore(archive_));
  }

 private:
  std::filesystem::path archive_;
};

void RegisterEcho(BackendRegistry* registry) {
  registry
      ->Register(TEST_PLUGIN_BACKEND_NAME, "echoes its command (test plugin)",
                 [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                   return std::unique_ptr<Backend>(
                       new EchoBackend(context.config->archive_dir / "echo"));
                 })
      .IgnoreError();
}

}  // namespace

extern "C" SANDRUN_PLUGIN_EXPORT const SandrunPluginInfo* sandrun_plugin_entry() {
  static const SandrunPluginInfo info{TEST_PLUGIN_ABI_VERSION, "echo test plugin", &RegisterEcho};
  return &info;
}
