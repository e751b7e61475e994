#include "docker_options.h"

#include <algorithm>
#include <cctype>

#include "docker_agent.h"
#include "docker_client.h"
#include "sandrun/portable_exe.h"

namespace sandrun::docker {
namespace {

using json = nlohmann::json;

// Docker's rule for volume names; checked here because the engine would say
// so only when the first sandbox or the archive is made.
Status CheckVolumeName(std::string_view key, const std::string& name) {
  auto allowed = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  };
  if (name.size() >= 2 && std::isalnum(static_cast<unsigned char>(name.front())) &&
      std::all_of(name.begin(), name.end(), allowed)) {
    return OkStatus();
  }
  return InvalidArgumentError("docker: '" + std::string(key) + "': '" + name +
                              "' is not a valid volume name (a letter or digit, then at least "
                              "one of letters, digits, '_', '.', '-')");
}

// One of the user's "source:/target[:ro]" mounts; an absolute source is a
// bind mount the user named, any other a volume.
Result<json> UserMount(const std::string& m) {
  std::size_t first = m.find(':');
  if (first == std::string::npos) return InvalidArgumentError("docker: bad mount '" + m + "'");
  std::string source = m.substr(0, first), rest = m.substr(first + 1);
  bool read_only = false;
  if (rest.size() > 3 && rest.compare(rest.size() - 3, 3, ":ro") == 0) {
    read_only = true;
    rest.resize(rest.size() - 3);
  }
  return json{{"Type", source.front() == '/' ? "bind" : "volume"},
              {"Source", source},
              {"Target", rest},
              {"ReadOnly", read_only}};
}

}  // namespace

std::string ToolImage(const DockerOptions& options) {
  if (!options.tool_image.empty()) return options.tool_image;
  return options.default_image.empty() ? "busybox" : options.default_image;
}

Result<DockerOptions> ParseDockerOptions(std::string_view section_json,
                                         const std::map<std::string, std::string>& env) {
  DockerOptions o;
  json j;
  try {
    j = section_json.empty() ? json::object() : json::parse(section_json);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string("docker: bad config section: ") + e.what());
  }
  if (!j.is_object()) return InvalidArgumentError("docker: config section must be an object");
  for (const auto& [key, value] : j.items()) {
    try {
      if (key == "host") o.host = value.get<std::string>();
      else if (key == "volume") o.volume = value.get<std::string>();
      else if (key == "exe_cache_volume") o.exe_cache_volume = value.get<std::string>();
      else if (key == "default_image") o.default_image = value.get<std::string>();
      else if (key == "tool_image") o.tool_image = value.get<std::string>();
      else if (key == "exe_cache_keep_days") o.exe_cache_keep_days = value.get<int>();
      else if (key == "pids_limit") o.pids_limit = value.get<std::int64_t>();
      else if (key == "max_parallel") o.max_parallel = value.get<int>();
      else if (key == "kill_grace_ms") o.kill_grace_ms = value.get<int>();
      else if (key == "mounts") o.mounts = value.get<std::vector<std::string>>();
      else if (key == "agent") o.agent = value.get<bool>();
      else return InvalidArgumentError("docker: unknown config key '" + key + "'");
    } catch (const std::exception& e) {
      // Name the key: a type error alone ("must be number") does not.
      return InvalidArgumentError("docker: bad value for '" + key + "': " + e.what());
    }
  }
  if (auto it = env.find("DOCKER_HOST"); it != env.end() && !it->second.empty()) {
    o.host = it->second;
  }
  SANDRUN_RETURN_IF_ERROR(CheckVolumeName("volume", o.volume));
  SANDRUN_RETURN_IF_ERROR(CheckVolumeName("exe_cache_volume", o.exe_cache_volume));
  if (o.exe_cache_keep_days < 0) {
    return InvalidArgumentError("docker: exe_cache_keep_days must be 0 (keep everything) or more, not " +
                                std::to_string(o.exe_cache_keep_days));
  }
  for (const auto& m : o.mounts) {
    // "source:/target[:ro]"; a source that is not an absolute path is a volume.
    std::size_t colon = m.find(':');
    std::string source = m.substr(0, colon);
    if (colon == std::string::npos || source.empty() || m.size() <= colon + 1 ||
        m[colon + 1] != '/') {
      return InvalidArgumentError("docker: mount '" + m +
                                  "' is not SOURCE:/ABSOLUTE/TARGET[:ro]");
    }
    if (source.front() != '/') SANDRUN_RETURN_IF_ERROR(CheckVolumeName("mounts", source));
  }
  SANDRUN_RETURN_IF_ERROR(ParseDockerHost(o.host).status());
  if (o.agent) {
    auto found = FindDockerAgent(env);
    if (found.ok()) {
      o.agent_path = found->string();
    } else {
      o.agent_missing = found.status().message();
    }
  }
  return o;
}

std::int64_t LifetimeSeconds(const SandboxSpec& spec) {
  return std::max<std::int64_t>(spec.lifetime.count(), 1);
}

Result<std::string> ContainerWorkdir(const SandboxSpec& spec) {
  return JoinSandboxPath("workdir", kDefaultWorkdir, spec.workdir, EmptySandboxPath::kIsBase);
}

Result<json> ContainerCreateBody(const SandboxSpec& spec, const DockerOptions& options,
                                 const ContainerFacts& facts) {
  SANDRUN_ASSIGN_OR_RETURN(std::string workdir, ContainerWorkdir(spec));
  json labels = {{std::string(kManagedLabel), "1"},
                 {std::string(kLabelPrefix) + "volume", options.volume}};
  for (const auto& [k, v] : facts.owner_labels) labels[k] = v;
  for (const auto& [k, v] : spec.labels) {
    if (k == "run" || k == "task") labels[std::string(kLabelPrefix) + k] = v;
    labels[std::string(kLabelPrefix) + "label." + k] = v;
  }
  for (const char* key : {"run", "task"}) {  // Always there, for `sandrun cleanup`.
    const std::string label = std::string(kLabelPrefix) + key;
    if (!labels.contains(label)) labels[label] = "";
  }
  json env = json::array();
  for (const auto& [k, v] : spec.env) env.push_back(k + "=" + v);
  // The result volume is never mounted here: a task could read or rewrite
  // every record. Records and spills reach it only through sandrun (the
  // archive helper, docker_volume_helper.h). The exe cache is content the
  // task is meant to run, read-only.
  json mounts = json::array({{{"Type", "volume"},
                              {"Source", options.exe_cache_volume},
                              {"Target", kPortableExeRoot},
                              {"ReadOnly", true}}});
  for (const auto& m : options.mounts) {
    SANDRUN_ASSIGN_OR_RETURN(json mount, UserMount(m));
    mounts.push_back(std::move(mount));
  }
  json host_config = {{"NetworkMode", spec.network == NetworkMode::kOpen ? "host" : "none"},
                      {"PidsLimit", options.pids_limit},
                      {"Privileged", false},
                      {"Init", true},
                      {"AutoRemove", false},
                      {"Mounts", mounts}};
  if (spec.memory_mb > 0) {
    host_config["Memory"] = spec.memory_mb * 1024 * 1024;
    host_config["MemorySwap"] = spec.memory_mb * 1024 * 1024;  // No swap: OOM, not thrash.
  }
  if (spec.cpu > 0) host_config["NanoCpus"] = static_cast<std::int64_t>(spec.cpu * 1e9);
  json body = {{"Image", facts.image},
               {"Entrypoint", json::array({"sleep"})},
               {"Cmd", json::array({std::to_string(LifetimeSeconds(spec))})},
               {"Labels", labels},
               {"WorkingDir", workdir},
               {"Env", env},
               {"AttachStdin", false},
               {"AttachStdout", false},
               {"AttachStderr", false},
               {"HostConfig", host_config}};
  if (spec.network != NetworkMode::kOpen) body["NetworkDisabled"] = false;
  return body;
}

}  // namespace sandrun::docker
