#include "sandrun/gtest_flags.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>

namespace sandrun::gtest {
namespace fs = std::filesystem;

namespace {

/// "--gtest_NAME[=VALUE]" (or "-gtest_", "/gtest_") -> NAME and VALUE.
bool SplitGtestFlag(const std::string& arg, std::string* name, std::optional<std::string>* value) {
  std::string_view rest;
  for (std::string_view prefix : {"--gtest_", "-gtest_", "/gtest_"}) {
    if (arg.rfind(prefix, 0) == 0) {
      rest = std::string_view(arg).substr(prefix.size());
      break;
    }
  }
  if (rest.empty()) return false;
  std::size_t eq = rest.find('=');
  *name = std::string(rest.substr(0, eq));
  if (eq == std::string_view::npos) value->reset();
  else *value = std::string(rest.substr(eq + 1));
  return true;
}

/// GoogleTest's reading of a bool flag's value: "0", "f..." and "F..." are
/// false, anything else (and no value) true.
bool FlagBool(const std::optional<std::string>& value) {
  if (!value) return true;
  return !(*value == "0" || (!value->empty() && (value->front() == 'f' || value->front() == 'F')));
}

Result<int> ParseInt(const std::string& what, const std::string& text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return InvalidArgumentError(what + " '" + text + "' is not a whole number");
  }
  return value;
}

std::string Lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

const std::string* Find(const std::map<std::string, std::string>& env, const char* key) {
  auto it = env.find(key);
  return it == env.end() ? nullptr : &it->second;
}

/// GoogleTest's GTEST_* bool variables: set and not "0" is true.
std::optional<bool> EnvBool(const std::map<std::string, std::string>& env, const char* key) {
  const std::string* value = Find(env, key);
  if (value == nullptr) return std::nullopt;
  return *value != "0";
}

Result<Sharding> ShardingFromEnv(const std::map<std::string, std::string>& env) {
  Sharding sharding;
  if (const std::string* file = Find(env, "GTEST_SHARD_STATUS_FILE")) sharding.status_file = *file;
  const std::string* total = Find(env, "GTEST_TOTAL_SHARDS");
  const std::string* index = Find(env, "GTEST_SHARD_INDEX");
  if (total == nullptr && index == nullptr) return sharding;
  if (total == nullptr || index == nullptr) {
    return InvalidArgumentError(std::string("invalid environment: ") +
                                (total ? "GTEST_TOTAL_SHARDS" : "GTEST_SHARD_INDEX") +
                                " is set but " +
                                (total ? "GTEST_SHARD_INDEX" : "GTEST_TOTAL_SHARDS") +
                                " is not (GoogleTest's sharding needs both)");
  }
  SANDRUN_ASSIGN_OR_RETURN(sharding.total, ParseInt("GTEST_TOTAL_SHARDS", *total));
  SANDRUN_ASSIGN_OR_RETURN(sharding.index, ParseInt("GTEST_SHARD_INDEX", *index));
  if (sharding.index < 0 || sharding.total < 1 || sharding.index >= sharding.total) {
    return InvalidArgumentError("invalid environment: GoogleTest's sharding needs 0 <= "
                                "GTEST_SHARD_INDEX < GTEST_TOTAL_SHARDS, but they are " +
                                *index + " and " + *total);
  }
  return sharding;
}

/// GoogleTest's choice of a report file in a directory: <binary>.<ext>, else
/// <binary>_1.<ext>, <binary>_2.<ext> ... the first that does not exist.
fs::path UniqueReportFile(const fs::path& dir, const std::string& binary_name,
                          const std::string& ext) {
  std::error_code ec;
  fs::path candidate = dir / (binary_name + "." + ext);
  for (int n = 1; fs::exists(candidate, ec); ++n) {
    candidate = dir / (binary_name + "_" + std::to_string(n) + "." + ext);
  }
  return candidate;
}

}  // namespace

Status TakeGtestFlags(std::vector<std::string>* args, GtestFlags* flags) {
  std::vector<std::string> kept;
  for (const std::string& arg : *args) {
    std::string name;
    std::optional<std::string> value;
    if (!SplitGtestFlag(arg, &name, &value)) {
      kept.push_back(arg);
      continue;
    }
    auto text = [&]() -> Result<std::string> {
      if (!value) return InvalidArgumentError("--gtest_" + name + " needs a value (--gtest_" + name + "=...)");
      return *value;
    };
    if (name == "filter") {
      SANDRUN_ASSIGN_OR_RETURN(flags->filter, text());
    } else if (name == "also_run_disabled_tests") {
      flags->also_run_disabled = FlagBool(value);
    } else if (name == "repeat") {
      SANDRUN_ASSIGN_OR_RETURN(std::string repeat, text());
      SANDRUN_ASSIGN_OR_RETURN(flags->repeat, ParseInt("--gtest_repeat", repeat));
    } else if (name == "brief") {
      flags->brief = FlagBool(value);
    } else if (name == "color") {
      SANDRUN_ASSIGN_OR_RETURN(flags->color, text());
    } else if (name == "output") {
      SANDRUN_ASSIGN_OR_RETURN(flags->output, text());
    } else if (name == "list_tests") {
      flags->list_tests = FlagBool(value);
    } else {
      kept.push_back(arg);  // The case's own business (break_on_failure, ...).
    }
  }
  *args = std::move(kept);
  return OkStatus();
}

Result<GtestSettings> ResolveGtestSettings(const GtestFlags& flags,
                                           const std::map<std::string, std::string>& env,
                                           bool stdout_is_terminal, const fs::path& binary,
                                           const fs::path& cwd) {
  GtestSettings settings;
  if (flags.filter) settings.filter = *flags.filter;
  else if (const std::string* filter = Find(env, "GTEST_FILTER")) settings.filter = *filter;
  if (settings.filter.empty()) settings.filter = "*";

  settings.also_run_disabled = flags.also_run_disabled.value_or(
      EnvBool(env, "GTEST_ALSO_RUN_DISABLED_TESTS").value_or(false));
  settings.brief = flags.brief.value_or(EnvBool(env, "GTEST_BRIEF").value_or(false));
  settings.list_tests = flags.list_tests;

  if (flags.repeat) {
    settings.repeat = *flags.repeat;
  } else if (const std::string* repeat = Find(env, "GTEST_REPEAT")) {
    SANDRUN_ASSIGN_OR_RETURN(settings.repeat, ParseInt("GTEST_REPEAT", *repeat));
  }
  if (settings.repeat < 1) {
    return InvalidArgumentError(
        "repeat " + std::to_string(settings.repeat) +
        ": sandrun gtest runs a given number of rounds (1 or more); it does not repeat "
        "forever (-1) or run nothing (0)");
  }

  std::string color = flags.color ? *flags.color : "";
  if (!flags.color) {
    if (const std::string* env_color = Find(env, "GTEST_COLOR")) color = *env_color;
  }
  color = Lower(color.empty() ? "auto" : color);
  if (color == "auto") {
    const std::string* term = Find(env, "TERM");
    bool no_color = Find(env, "NO_COLOR") != nullptr && !Find(env, "NO_COLOR")->empty();
    settings.color = stdout_is_terminal && !no_color && term != nullptr && !term->empty() &&
                     *term != "dumb";
  } else {
    settings.color = color == "yes" || color == "true" || color == "t" || color == "1";
  }

  std::string output = flags.output ? *flags.output : "";
  if (!flags.output) {
    if (const std::string* env_output = Find(env, "GTEST_OUTPUT")) output = *env_output;
  }
  if (!output.empty()) {
    std::size_t colon = output.find(':');
    settings.output_format = output.substr(0, colon);
    if (settings.output_format != "xml" && settings.output_format != "json") {
      return InvalidArgumentError("output '" + output +
                                  "': the format must be xml or json (xml[:PATH], json[:PATH])");
    }
    std::string path = colon == std::string::npos ? "" : output.substr(colon + 1);
    if (path.empty()) {
      settings.output_path = cwd / ("test_detail." + settings.output_format);
    } else {
      fs::path given = fs::path(path).is_absolute() ? fs::path(path) : cwd / path;
      std::error_code ec;
      if (path.back() == '/' || fs::is_directory(given, ec)) {
        settings.output_path =
            UniqueReportFile(given, binary.filename().string(), settings.output_format);
      } else {
        settings.output_path = given;
      }
    }
  }

  SANDRUN_ASSIGN_OR_RETURN(settings.sharding, ShardingFromEnv(env));
  return settings;
}

Status TouchShardStatusFile(const Sharding& sharding) {
  if (sharding.status_file.empty()) return OkStatus();
  std::ofstream file(sharding.status_file, std::ios::trunc);
  if (!file) {
    return FailedPreconditionError("cannot write the test shard status file '" +
                                   sharding.status_file.string() +
                                   "' that GTEST_SHARD_STATUS_FILE names");
  }
  return OkStatus();
}

}  // namespace sandrun::gtest
