// An out-of-tree backend plugin, the smallest complete one: a module that
// exports sandrun_plugin_entry() (sandrun/plugin_abi.h) and registers one
// backend, "external-echo", which echoes argv back on stdout without running
// it, after the "prefix" of its section: a flag it declares (--echo-prefix,
// or SANDRUN_ECHO_PREFIX) that the CLI offers without knowing the plugin.
// CMakeLists.txt beside it builds it against an installed sandrun; put the
// directory of the .so on SANDRUN_PLUGIN_PATH and `sandrun backends` lists it
// (docs/plugins.md). sandrun's own tests build it twice, the second time
// claiming another ABI version (TEST_PLUGIN_* below), to check refusal.
#include <nlohmann/json.hpp>

#include "sandrun/archive_store.h"
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
  explicit EchoSandbox(std::string prefix) : prefix_(std::move(prefix)) {}
  const std::string& Id() const override { return id_; }
  Status Put(const FileUpload&) override { return UnimplementedError("echo backend has no files"); }
  Result<ExecResult> Exec(const ExecRequest& request) override {
    OutputCollector out(StreamKind::kStdout, request.output_cap_bytes, "", request.on_output);
    std::string line;
    for (const auto& arg : request.argv) line += (line.empty() ? "" : " ") + arg;
    out.Append(prefix_ + line + "\n");
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
  std::string prefix_;
  std::string id_ = "echo-1";
};

class EchoBackend : public Backend {
 public:
  EchoBackend(std::filesystem::path archive, std::string prefix)
      : archive_(std::move(archive)), prefix_(std::move(prefix)) {}
  std::string_view Name() const override { return TEST_PLUGIN_BACKEND_NAME; }
  Capabilities GetCapabilities() const override { return {}; }
  Status CheckAvailable() override { return OkStatus(); }
  Result<std::unique_ptr<Sandbox>> Create(const SandboxSpec&) override {
    return std::unique_ptr<Sandbox>(new EchoSandbox(prefix_));
  }
  Result<std::vector<Leftover>> ListLeftovers() override { return std::vector<Leftover>{}; }
  Status RemoveLeftover(const std::string&) override { return OkStatus(); }
  Result<std::unique_ptr<ArchiveStore>> OpenArchive() override {
    return std::unique_ptr<ArchiveStore>(new DirectoryArchiveStore(archive_));
  }

 private:
  std::filesystem::path archive_;
  std::string prefix_;
};

void RegisterEcho(BackendRegistry* registry) {
  BackendInfo info;
  info.name = TEST_PLUGIN_BACKEND_NAME;
  info.description = "echoes its command (test plugin)";
  info.flags = {{"echo-prefix", "prefix", "Text printed before the echoed command",
                 /*list=*/false, {"SANDRUN_ECHO_PREFIX"}}};
  registry
      ->Register(std::move(info),
                 [](const BackendContext& context) -> Result<std::unique_ptr<Backend>> {
                   auto section = nlohmann::json::parse(context.section_json, nullptr, false);
                   if (!section.is_object()) return InvalidArgumentError("echo: bad section");
                   return std::unique_ptr<Backend>(new EchoBackend(
                       context.config->archive_dir / "echo", section.value("prefix", "")));
                 })
      .IgnoreError();
}

}  // namespace

extern "C" SANDRUN_PLUGIN_EXPORT const SandrunPluginInfo* sandrun_plugin_entry() {
  static const SandrunPluginInfo info{TEST_PLUGIN_ABI_VERSION, "echo test plugin", &RegisterEcho};
  return &info;
}
