#include "sandrun/task_json.h"

#include <nlohmann/json.hpp>

namespace sandrun {

using json = nlohmann::json;

Result<std::string> TaskToJson(const Task& task) {
  json uploads = json::array();
  for (const auto& u : task.sandbox.uploads) {
    uploads.push_back({{"source", u.source}, {"destination", u.destination}, {"portable", u.portable}});
  }
  json host_copies = json::object();
  for (const auto& [path, host] : task.host_copies) host_copies[path] = host.string();
  json out = {
      {"id", task.id},
      {"test_name", task.test_name},
      {"isolation", IsolationName(task.isolation)},
      {"sandbox",
       {{"image", task.sandbox.image},
        {"dockerfile", task.sandbox.dockerfile},
        {"cpu", task.sandbox.cpu},
        {"memory_mb", task.sandbox.memory_mb},
        {"gpu", task.sandbox.gpu},
        {"lifetime_s", task.sandbox.lifetime.count()},
        {"workdir", task.sandbox.workdir},
        {"env", task.sandbox.env},
        {"network", NetworkModeName(task.sandbox.network)},
        {"uploads", uploads},
        {"labels", task.sandbox.labels}}},
      {"exec",
       {{"argv", task.exec.argv},
        {"env", task.exec.env},
        {"cwd", task.exec.cwd},
        {"stdin", task.exec.stdin_data.has_value()},
        {"timeout_ms", task.exec.timeout.count()},
        {"output_cap_bytes", task.exec.output_cap_bytes}}},
      {"downloads", task.downloads},
      {"host_copies", host_copies},
  };
  try {
    return out.dump();
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("the task cannot be sent as JSON: ") + e.what());
  }
}

Result<Task> TaskFromJson(const std::string& text) {
  try {
    json in = json::parse(text);
    Task task;
    task.id = in.at("id").get<std::string>();
    task.test_name = in.value("test_name", std::string());
    auto isolation = IsolationFromName(in.value("isolation", std::string("sandbox")));
    if (!isolation) return InvalidArgumentError("task JSON: unknown isolation");
    task.isolation = *isolation;
    const json& sandbox = in.at("sandbox");
    task.sandbox.image = sandbox.value("image", std::string());
    task.sandbox.dockerfile = sandbox.value("dockerfile", std::string());
    task.sandbox.cpu = sandbox.value("cpu", 0.0);
    task.sandbox.memory_mb = sandbox.value("memory_mb", std::int64_t{0});
    task.sandbox.gpu = sandbox.value("gpu", std::string());
    task.sandbox.lifetime = std::chrono::seconds(sandbox.value("lifetime_s", std::int64_t{3600}));
    task.sandbox.workdir = sandbox.value("workdir", std::string());
    task.sandbox.env = sandbox.value("env", std::map<std::string, std::string>());
    task.sandbox.network =
        sandbox.value("network", std::string("none")) == "open" ? NetworkMode::kOpen : NetworkMode::kNone;
    for (const auto& u : sandbox.value("uploads", json::array())) {
      task.sandbox.uploads.push_back(FileUpload{u.at("source").get<std::string>(),
                                                u.value("destination", std::string()),
                                                u.value("portable", false)});
    }
    task.sandbox.labels = sandbox.value("labels", std::map<std::string, std::string>());
    const json& exec = in.at("exec");
    task.exec.argv = exec.at("argv").get<std::vector<std::string>>();
    task.exec.env = exec.value("env", std::map<std::string, std::string>());
    task.exec.cwd = exec.value("cwd", std::string());
    if (exec.value("stdin", false)) task.exec.stdin_data = std::string();
    task.exec.timeout = std::chrono::milliseconds(exec.value("timeout_ms", std::int64_t{0}));
    task.exec.output_cap_bytes = exec.value("output_cap_bytes", std::size_t{1} << 20);
    task.downloads = in.value("downloads", std::vector<std::string>());
    for (const auto& [path, host] : in.value("host_copies", json::object()).items()) {
      task.host_copies[path] = host.get<std::string>();
    }
    return task;
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("task JSON: ") + e.what());
  }
}

}  // namespace sandrun
