#include "sandrun/config.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <charconv>
#include <functional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "json_errors.h"
#include "sandrun/file_util.h"

extern char** environ;

namespace sandrun {
namespace {

using json = nlohmann::json;

/// One config key: how to set it from text and how to print it.
struct Field {
  std::string key;
  std::function<Status(Config&, const std::string&)> set;
  std::function<std::string(const Config&)> get;
};

Status BadValue(const std::string& key, const std::string& value, const std::string& why) {
  return InvalidArgumentError("invalid " + key + " '" + value + "': " + why);
}

template <typename T>
Status ParseNumber(const std::string& key, const std::string& text, T min, T* out) {
  T value{};
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) return BadValue(key, text, "not a number");
  if (value < min) return BadValue(key, text, "must be at least " + std::to_string(min));
  *out = value;
  return OkStatus();
}

Status ParseDouble(const std::string& key, const std::string& text, bool allow_zero,
                   double* out) {
  try {
    std::size_t used = 0;
    double value = std::stod(text, &used);
    if (used != text.size()) return BadValue(key, text, "not a number");
    if (value < 0 || (!allow_zero && value == 0)) {
      return BadValue(key, text, allow_zero ? "must not be negative" : "must be positive");
    }
    *out = value;
    return OkStatus();
  } catch (...) {
    return BadValue(key, text, "not a number");
  }
}

std::string FormatDouble(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

std::string JoinList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : ",") + i;
  return out;
}

const std::vector<Field>& Fields() {
  static const std::vector<Field> fields = {
      {"backend",
       [](Config& c, const std::string& v) {
         if (v.empty()) return BadValue("backend", v, "empty");
         c.backend = v;
         return OkStatus();
       },
       [](const Config& c) { return c.backend; }},
      {"fallback",
       [](Config& c, const std::string& v) {
         c.fallback = SplitConfigList(v);
         return OkStatus();
       },
       [](const Config& c) { return JoinList(c.fallback); }},
      {"jobs",
       [](Config& c, const std::string& v) { return ParseNumber("jobs", v, 0, &c.jobs); },
       [](const Config& c) { return std::to_string(c.jobs); }},
      {"retries",
       [](Config& c, const std::string& v) { return ParseNumber("retries", v, 0, &c.retries); },
       [](const Config& c) { return std::to_string(c.retries); }},
      {"timeout",
       [](Config& c, const std::string& v) {
         double seconds = 0;
         SANDRUN_RETURN_IF_ERROR(ParseDouble("timeout", v, false, &seconds));
         Status range = CheckTimeoutSeconds("timeout", seconds);
         if (!range.ok()) return BadValue("timeout", v, range.message());
         c.timeout_s = seconds;
         return OkStatus();
       },
       [](const Config& c) { return FormatDouble(c.timeout_s); }},
      {"test_timeout",
       [](Config& c, const std::string& v) {
         double seconds = 0;
         SANDRUN_RETURN_IF_ERROR(ParseDouble("test_timeout", v, true, &seconds));
         if (seconds > 0) {
           Status range = CheckTimeoutSeconds("test_timeout", seconds);
           if (!range.ok()) return BadValue("test_timeout", v, range.message());
         }
         c.test_timeout_s = seconds;
         return OkStatus();
       },
       [](const Config& c) { return FormatDouble(c.test_timeout_s); }},
      {"lifetime",
       [](Config& c, const std::string& v) {
         SANDRUN_RETURN_IF_ERROR(ParseNumber<std::int64_t>("lifetime", v, 1, &c.lifetime_s));
         if (c.lifetime_s > kMaxTimeoutSeconds) {
           return BadValue("lifetime", v, "must be at most 30 days (2592000 s)");
         }
         return OkStatus();
       },
       [](const Config& c) { return std::to_string(c.lifetime_s); }},
      {"image",
       [](Config& c, const std::string& v) {
         c.image = v;
         return OkStatus();
       },
       [](const Config& c) { return c.image; }},
      {"cpu",
       [](Config& c, const std::string& v) { return ParseDouble("cpu", v, true, &c.cpu); },
       [](const Config& c) { return FormatDouble(c.cpu); }},
      {"memory",
       [](Config& c, const std::string& v) {
         return ParseNumber<std::int64_t>("memory", v, 0, &c.memory_mb);
       },
       [](const Config& c) { return std::to_string(c.memory_mb); }},
      {"gpu",
       [](Config& c, const std::string& v) {
         std::string type;
         int count = 0;
         if (!v.empty()) SANDRUN_RETURN_IF_ERROR(ParseGpuSpec(v, &type, &count));
         c.gpu = v;
         return OkStatus();
       },
       [](const Config& c) { return c.gpu; }},
      {"network",
       [](Config& c, const std::string& v) {
         if (v == "none") c.network = NetworkMode::kNone;
         else if (v == "open") c.network = NetworkMode::kOpen;
         else return BadValue("network", v, "use 'none' or 'open'");
         return OkStatus();
       },
       [](const Config& c) { return std::string(NetworkModeName(c.network)); }},
      {"isolation",
       [](Config& c, const std::string& v) {
         if (!v.empty() && v != "sandbox" && v != "process") {
           return BadValue("isolation", v,
                           "use 'sandbox' (a sandbox per task) or 'process' (tasks share warm "
                           "sandboxes, each in its own process and directory)");
         }
         c.isolation = v;
         return OkStatus();
       },
       [](const Config& c) { return c.isolation; }},
      {"tasks_per_sandbox",
       [](Config& c, const std::string& v) {
         return ParseNumber("tasks_per_sandbox", v, 0, &c.tasks_per_sandbox);
       },
       [](const Config& c) { return std::to_string(c.tasks_per_sandbox); }},
      {"sandboxes",
       [](Config& c, const std::string& v) { return ParseNumber("sandboxes", v, 0, &c.sandboxes); },
       [](const Config& c) { return std::to_string(c.sandboxes); }},
      {"output_cap",
       [](Config& c, const std::string& v) {
         return ParseNumber<std::size_t>("output_cap", v, 1024, &c.output_cap_bytes);
       },
       [](const Config& c) { return std::to_string(c.output_cap_bytes); }},
      {"labels",
       [](Config& c, const std::string& v) {
         c.labels.clear();
         for (const std::string& item : SplitConfigList(v)) {
           std::size_t eq = item.find('=');
           std::string key = item.substr(0, eq);
           bool key_ok = !key.empty() && key.find_first_not_of(
               "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") ==
               std::string::npos;
           if (eq == std::string::npos || !key_ok) {
             return BadValue("labels", v, "each label is KEY=VALUE with KEY of [A-Za-z0-9._-]");
           }
           c.labels[key] = item.substr(eq + 1);
         }
         return OkStatus();
       },
       [](const Config& c) {
         std::vector<std::string> items;
         for (const auto& [k, v] : c.labels) items.push_back(k + "=" + v);
         return JoinList(items);
       }},
      {"archive_dir",
       [](Config& c, const std::string& v) {
         if (v.empty()) return BadValue("archive_dir", v, "empty");
         c.archive_dir = v;
         return OkStatus();
       },
       [](const Config& c) { return c.archive_dir.string(); }},
      {"state_dir",
       [](Config& c, const std::string& v) {
         if (v.empty()) return BadValue("state_dir", v, "empty");
         c.state_dir = v;
         return OkStatus();
       },
       [](const Config& c) { return c.state_dir.string(); }},
      {"plugin_path",
       [](Config& c, const std::string& v) {
         c.plugin_path = v;
         return OkStatus();
       },
       [](const Config& c) { return c.plugin_path; }},
      {"report",
       [](Config& c, const std::string& v) {
         c.report = v;
         return OkStatus();
       },
       [](const Config& c) { return c.report.string(); }},
  };
  return fields;
}

const Field* FindField(const std::string& key) {
  for (const auto& f : Fields()) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

std::string EnvName(const std::string& key) {
  std::string name = "SANDRUN_";
  for (char c : key) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}

std::string Lookup(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? "" : it->second;
}

/// XDG base directories with the usual fallbacks under HOME.
void ApplyDefaults(Config& config, const std::map<std::string, std::string>& env) {
  std::string home = Lookup(env, "HOME");
  if (home.empty()) home = "/tmp";
  std::string data = Lookup(env, "XDG_DATA_HOME");
  std::string state = Lookup(env, "XDG_STATE_HOME");
  config.archive_dir = std::filesystem::path(data.empty() ? home + "/.local/share" : data) /
                       "sandrun" / "results";
  config.state_dir =
      std::filesystem::path(state.empty() ? home + "/.local/state" : state) / "sandrun";
  for (const auto& f : Fields()) config.origins[f.key] = "default";
}

std::filesystem::path FindConfigFile(std::filesystem::path dir) {
  std::error_code ec;
  dir = std::filesystem::absolute(dir, ec);
  while (!dir.empty()) {
    auto candidate = dir / "sandrun.json";
    if (std::filesystem::is_regular_file(candidate, ec)) return candidate;
    if (dir == dir.root_path()) break;
    dir = dir.parent_path();
  }
  return {};
}

Status ApplyFile(Config& config, const std::filesystem::path& file) {
  Result<std::string> read = ReadWholeFile(file);
  if (!read.ok()) return InvalidArgumentError("cannot read " + file.string());
  const std::string& text = *read;
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::parse_error& e) {
    return JsonSyntaxError(file.string(), text, e);
  }
  if (!doc.is_object()) return InvalidArgumentError(file.string() + ": must hold a JSON object");
  std::string origin = "file " + file.string();
  for (auto& [key, value] : doc.items()) {
    if (key == "backends") {
      if (!value.is_object()) {
        return InvalidArgumentError(file.string() + ": 'backends' must be an object of sections");
      }
      for (auto& [name, section] : value.items()) {
        config.backend_sections[name] = section.dump();
      }
      continue;
    }
    const Field* field = FindField(key);
    if (field == nullptr) {
      return InvalidArgumentError(file.string() + ": unknown key '" + key + "'");
    }
    std::string text_value;
    if (value.is_string()) text_value = value.get<std::string>();
    else if (value.is_array()) {
      for (const auto& item : value) {
        if (!item.is_string()) {
          return InvalidArgumentError(file.string() + ": '" + key + "' must list strings");
        }
        text_value += (text_value.empty() ? "" : ",") + item.get<std::string>();
      }
    } else if (value.is_number() || value.is_boolean()) {
      text_value = value.dump();
    } else {
      return InvalidArgumentError(file.string() + ": '" + key + "' has an unsupported type");
    }
    Status status = field->set(config, text_value);
    if (!status.ok()) return status.WithContext(file.string());
    config.origins[key] = origin;
  }
  return OkStatus();
}

}  // namespace

Status CheckTimeoutSeconds(std::string_view what, double seconds) {
  std::string name(what);
  if (std::isnan(seconds) || std::isinf(seconds)) {
    return InvalidArgumentError(name + " must be a finite number of seconds");
  }
  if (!(seconds > 0)) return InvalidArgumentError(name + " must be positive (more than 0 seconds)");
  if (seconds > kMaxTimeoutSeconds) {
    return InvalidArgumentError(name + " must be at most 30 days (2592000 s)");
  }
  // Below a millisecond the timeout would round to "none".
  if (seconds < 0.001) return InvalidArgumentError(name + " must be at least 0.001 seconds");
  return OkStatus();
}

std::string_view NetworkModeName(NetworkMode mode) {
  return mode == NetworkMode::kOpen ? "open" : "none";
}

const std::vector<std::string>& ConfigKeys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> out;
    for (const auto& f : Fields()) out.push_back(f.key);
    return out;
  }();
  return keys;
}

std::string ConfigValueText(const Config& config, const std::string& key) {
  const Field* field = FindField(key);
  return field == nullptr ? "" : field->get(config);
}

std::vector<std::string> SplitConfigList(const std::string& text) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(text);
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Status ParseGpuSpec(const std::string& gpu, std::string* type, int* count) {
  auto bad = [&](const std::string& why) {
    return BadValue("gpu", gpu, why + " (want TYPE[:N], e.g. A10G:1)");
  };
  std::size_t colon = gpu.find(':');
  *type = gpu.substr(0, colon);
  *count = 1;
  if (type->empty()) return bad("no GPU type");
  for (char c : *type) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') {
      return bad("bad character in the GPU type");
    }
  }
  if (colon != std::string::npos) {
    int n = 0;
    std::string text = gpu.substr(colon + 1);
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, n);
    if (ec != std::errc() || ptr != end || n < 1 || n > 64) return bad("count must be 1 to 64");
    *count = n;
  }
  return OkStatus();
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

Result<Config> LoadConfig(const ConfigInputs& inputs) {
  Config config;
  ApplyDefaults(config, inputs.env);

  std::string explicit_file = Lookup(inputs.env, "SANDRUN_CONFIG");
  config.config_file = explicit_file.empty() ? FindConfigFile(inputs.cwd.empty()
                                                                  ? std::filesystem::current_path()
                                                                  : inputs.cwd)
                                             : std::filesystem::path(explicit_file);
  if (!config.config_file.empty()) SANDRUN_RETURN_IF_ERROR(ApplyFile(config, config.config_file));

  for (const auto& f : Fields()) {
    std::string name = EnvName(f.key);
    auto it = inputs.env.find(name);
    if (it == inputs.env.end() || it->second.empty()) continue;
    Status status = f.set(config, it->second);
    if (!status.ok()) return status.WithContext("environment " + name);
    config.origins[f.key] = "env " + name;
  }

  for (const auto& [key, value] : inputs.flags) {
    const Field* field = FindField(key);
    if (field == nullptr) return InvalidArgumentError("unknown config key '" + key + "'");
    std::string flag = "--" + key;
    std::replace(flag.begin(), flag.end(), '_', '-');
    Status status = field->set(config, value);
    if (!status.ok()) return status.WithContext("flag " + flag);
    config.origins[key] = "flag " + flag;
  }
  return config;
}

}  // namespace sandrun
