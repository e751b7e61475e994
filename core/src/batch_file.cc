#include "sandrun/batch_file.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "json_errors.h"
#include "sandrun/file_util.h"

namespace sandrun {
namespace {

using json = nlohmann::json;

/// Line of the start of each element of the task list (the top-level array,
/// or the array under "tasks"), found by scanning the text with string and
/// nesting awareness. Only used to point messages at the right line.
std::vector<int> ElementLines(const std::string& text) {
  std::vector<int> lines;
  int line = 1, depth = 0, list_depth = -1;
  bool in_string = false, escaped = false, expect_element = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') ++line;
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    if (expect_element && c != ']') {
      lines.push_back(line);
      expect_element = false;
    }
    switch (c) {
      case '"': in_string = true; break;
      case '[':
        ++depth;
        // The task list is the first array at depth 1 (a bare list) or 2 ({"tasks": [...]}).
        if (list_depth < 0 && depth <= 2) {
          list_depth = depth;
          expect_element = true;
        }
        break;
      case '{': ++depth; break;
      case ']':
      case '}': --depth; break;
      case ',':
        if (depth == list_depth) expect_element = true;
        break;
      default: break;
    }
  }
  return lines;
}

class TaskParser {
 public:
  TaskParser(std::string where, const std::filesystem::path& base_dir)
      : where_(std::move(where)), base_dir_(base_dir) {}

  Status Error(const std::string& message) const {
    return InvalidArgumentError(where_ + ": " + message);
  }

  Status String(const json& value, const std::string& key, std::string* out) const {
    if (!value.is_string()) return Error("'" + key + "' must be a string");
    *out = value.get<std::string>();
    return OkStatus();
  }

  Status StringList(const json& value, const std::string& key, std::vector<std::string>* out) const {
    if (!value.is_array()) return Error("'" + key + "' must be an array of strings");
    for (const auto& item : value) {
      if (!item.is_string()) return Error("'" + key + "' must be an array of strings");
      out->push_back(item.get<std::string>());
    }
    return OkStatus();
  }

  Status Number(const json& value, const std::string& key, double* out) const {
    if (!value.is_number()) return Error("'" + key + "' must be a number");
    *out = value.get<double>();
    return OkStatus();
  }

  std::string Resolve(const std::string& path) const {
    std::filesystem::path p(path);
    return p.is_absolute() || base_dir_.empty() ? path : (base_dir_ / p).lexically_normal().string();
  }

  Status Apply(const json& item, Task& task) const {
    if (!item.is_object()) return Error("a task must be a JSON object");
    for (const auto& [key, value] : item.items()) {
      if (key == "id") {
        SANDRUN_RETURN_IF_ERROR(String(value, key, &task.id));
        if (task.id.empty()) return Error("'id' is empty; leave it out to get task-N");
      } else if (key == "name") {
        SANDRUN_RETURN_IF_ERROR(String(value, key, &task.test_name));
      } else if (key == "command") {
        if (value.is_string()) {
          return Error("'command' must be an argv array, e.g. [\"make\", \"test\"]; for a shell "
                       "line write [\"sh\", \"-c\", \"...\"]");
        }
        SANDRUN_RETURN_IF_ERROR(StringList(value, key, &task.exec.argv));
      } else if (key == "timeout") {
        double seconds = 0;
        SANDRUN_RETURN_IF_ERROR(Number(value, key, &seconds));
        Status range = CheckTimeoutSeconds("'timeout'", seconds);
        if (!range.ok()) return Error(range.message());
        task.exec.timeout = TimeoutFromSeconds(seconds);
      } else if (key == "env") {
        if (!value.is_object()) return Error("'env' must be an object of strings");
        for (const auto& [name, v] : value.items()) {
          if (!v.is_string()) return Error("env '" + name + "' must be a string");
          task.exec.env[name] = v.get<std::string>();
        }
      } else if (key == "image") {
        SANDRUN_RETURN_IF_ERROR(String(value, key, &task.sandbox.image));
      } else if (key == "cpu") {
        SANDRUN_RETURN_IF_ERROR(Number(value, key, &task.sandbox.cpu));
        if (task.sandbox.cpu < 0) return Error("'cpu' must not be negative");
      } else if (key == "memory") {
        double mb = 0;
        SANDRUN_RETURN_IF_ERROR(Number(value, key, &mb));
        if (mb < 0) return Error("'memory' must not be negative");
        task.sandbox.memory_mb = static_cast<std::int64_t>(mb);
      } else if (key == "gpu") {
        SANDRUN_RETURN_IF_ERROR(String(value, key, &task.sandbox.gpu));
        std::string type;
        int count = 0;
        if (!task.sandbox.gpu.empty()) {
          Status gpu = ParseGpuSpec(task.sandbox.gpu, &type, &count);
          if (!gpu.ok()) return Error(gpu.message());
        }
      } else if (key == "network") {
        std::string mode;
        SANDRUN_RETURN_IF_ERROR(String(value, key, &mode));
        if (mode == "none") task.sandbox.network = NetworkMode::kNone;
        else if (mode == "open") task.sandbox.network = NetworkMode::kOpen;
        else return Error("'network' must be \"none\" or \"open\"");
      } else if (key == "upload") {
        if (!value.is_array()) return Error("'upload' must be an array");
        for (const auto& u : value) {
          FileUpload upload;
          if (u.is_string()) {
            upload = ParseUploadArg(u.get<std::string>());
          } else if (u.is_object() && u.contains("source") && u["source"].is_string()) {
            for (const auto& [field, unused] : u.items()) {
              if (field != "source" && field != "destination" && field != "portable") {
                return Error("unknown key '" + field +
                             "' in an 'upload' entry (known: source, destination, portable)");
              }
            }
            upload.source = u["source"].get<std::string>();
            if (u.contains("destination")) {
              SANDRUN_RETURN_IF_ERROR(String(u["destination"], "destination", &upload.destination));
            }
            if (u.contains("portable")) upload.portable = u["portable"].is_boolean() && u["portable"].get<bool>();
          } else {
            return Error("each 'upload' entry is \"SRC[:DST]\" or {\"source\": ..., \"destination\": ...}");
          }
          // Resolving "" would name the batch file's directory: refuse it first.
          if (upload.source.empty()) return Error("an 'upload' entry names no source file");
          upload.source = Resolve(upload.source);
          task.sandbox.uploads.push_back(upload);
        }
      } else if (key == "download") {
        SANDRUN_RETURN_IF_ERROR(StringList(value, key, &task.downloads));
      } else if (key == "stdin") {
        std::string data;
        SANDRUN_RETURN_IF_ERROR(String(value, key, &data));
        task.exec.stdin_data = data;
      } else if (key == "cwd") {
        SANDRUN_RETURN_IF_ERROR(String(value, key, &task.exec.cwd));
      } else if (key == "isolation") {
        std::string name;
        SANDRUN_RETURN_IF_ERROR(String(value, key, &name));
        std::optional<Isolation> isolation = IsolationFromName(name);
        if (!isolation) return Error("'isolation' must be \"sandbox\" or \"process\"");
        task.isolation = *isolation;
      } else {
        return Error("unknown key '" + key +
                     "' (known: id, name, command, timeout, env, image, cpu, memory, gpu, "
                     "network, isolation, upload, download, stdin, cwd)");
      }
    }
    if (!item.contains("command")) return Error("'command' is missing");
    if (task.exec.argv.empty()) return Error("'command' is empty");
    return OkStatus();
  }

 private:
  std::string where_;
  std::filesystem::path base_dir_;
};

}  // namespace

FileUpload ParseUploadArg(const std::string& text) {
  FileUpload upload;
  auto colon = text.find(':');
  upload.source = text.substr(0, colon);
  if (colon != std::string::npos) upload.destination = text.substr(colon + 1);
  return upload;
}

Status ParseEnvArgs(const std::vector<std::string>& items,
                    std::map<std::string, std::string>& env) {
  for (const auto& item : items) {
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgumentError("--env expects K=V, got '" + item + "'");
    }
    env[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return OkStatus();
}

std::chrono::milliseconds TimeoutFromSeconds(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
}

void DeriveDefaultLifetime(const Config& config, Task& task) {
  auto origin = config.origins.find("lifetime");
  bool explicit_lifetime = origin != config.origins.end() && origin->second != "default";
  if (explicit_lifetime || task.exec.timeout.count() <= 0) return;
  // The deadline plus a margin for creating the sandbox, uploads and
  // downloads: a quarter of the timeout, at least a minute, at most ten.
  auto timeout = std::chrono::ceil<std::chrono::seconds>(task.exec.timeout);
  auto margin = std::clamp<std::chrono::seconds>(timeout / 4, std::chrono::seconds(60),
                                                 std::chrono::seconds(600));
  task.sandbox.lifetime = timeout + margin;
}

Task TaskFromConfig(const Config& config) {
  Task task;
  task.sandbox.image = config.image;
  task.sandbox.cpu = config.cpu;
  task.sandbox.memory_mb = config.memory_mb;
  task.sandbox.gpu = config.gpu;
  task.sandbox.network = config.network;
  task.sandbox.lifetime = std::chrono::seconds(config.lifetime_s);
  task.exec.timeout = TimeoutFromSeconds(config.timeout_s);
  DeriveDefaultLifetime(config, task);
  task.exec.output_cap_bytes = config.output_cap_bytes;
  task.isolation = IsolationFor(config, Isolation::kSandbox);
  return task;
}

Isolation IsolationFor(const Config& config, Isolation entry_default) {
  return IsolationFromName(config.isolation).value_or(entry_default);
}

Result<std::vector<Task>> ParseBatch(const std::string& text, const std::string& origin,
                                     const std::filesystem::path& base_dir, const Config& config) {
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    return JsonSyntaxError(origin, text, e);
  } catch (const json::exception& e) {  // A number out of range (1e309).
    return InvalidArgumentError(origin + ": " + e.what());
  }
  const json* list = &doc;
  if (doc.is_object() && doc.contains("tasks")) {
    list = &doc["tasks"];
    for (const auto& [key, value] : doc.items()) {
      if (key != "tasks") {
        return InvalidArgumentError(origin + ": unknown top-level key '" + key +
                                    "' (a batch is a list of tasks or {\"tasks\": [...]})");
      }
    }
  }
  if (!list->is_array()) {
    return InvalidArgumentError(origin + ": expected a JSON list of tasks (or {\"tasks\": [...]})");
  }
  if (list->empty()) return InvalidArgumentError(origin + ": the batch has no tasks");
  std::vector<int> lines = ElementLines(text);
  std::vector<Task> tasks;
  std::set<std::string> ids;
  for (std::size_t i = 0; i < list->size(); ++i) {
    const json& item = (*list)[i];
    std::string where = origin;
    if (i < lines.size()) where += ":" + std::to_string(lines[i]);
    where += ": task #" + std::to_string(i + 1);
    if (item.is_object() && item.contains("id") && item["id"].is_string()) {
      where += " '" + item["id"].get<std::string>() + "'";
    }
    Task task = TaskFromConfig(config);
    TaskParser parser(where, base_dir);
    SANDRUN_RETURN_IF_ERROR(parser.Apply(item, task));
    DeriveDefaultLifetime(config, task);  // The task's own timeout may differ.
    if (task.id.empty()) task.id = "task-" + std::to_string(i + 1);
    if (!ids.insert(task.id).second) {
      return InvalidArgumentError(where + ": id '" + task.id + "' is used by an earlier task");
    }
    Status valid = ValidateTask(task);
    if (!valid.ok()) {
      std::string message = valid.message();
      std::string prefix = "task '" + task.id + "': ";
      if (message.rfind(prefix, 0) == 0) message.erase(0, prefix.size());
      return InvalidArgumentError(where + ": " + message);
    }
    tasks.push_back(std::move(task));
  }
  return tasks;
}

Result<std::vector<Task>> ParseBatchFile(const std::filesystem::path& file, const Config& config) {
  Result<std::string> text = ReadWholeFile(file);
  if (!text.ok()) return InvalidArgumentError("cannot read batch file " + file.string());
  std::filesystem::path base = std::filesystem::absolute(file).parent_path();
  return ParseBatch(*text, file.string(), base, config);
}

}  // namespace sandrun
