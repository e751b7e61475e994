// `sandrun config`: the effective config, and where each value came from.
#include <iostream>

#include <nlohmann/json.hpp>

#include "commands.h"

namespace sandrun::cli {

int ConfigCommand(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun config",
                           "Print the effective config. Precedence: flags > SANDRUN_* environment >\n"
                           "sandrun.json (found upward from the working directory) > defaults.");
  AddConfigOptions(options, context);
  options.add_options("Output")("json", "Print as JSON");
  auto parsed = ParseOrThrow(options, args);
  if (!parsed) return 0;
  Config config = LoadConfigOrThrow(*parsed, context);
  if (parsed->count("json")) {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& key : ConfigKeys()) {
      out[key] = {{"value", ConfigValueText(config, key)}, {"source", config.origins[key]}};
    }
    for (const auto& [name, section] : config.backend_sections) {
      nlohmann::json sources = nlohmann::json::object();
      for (const auto& [key, origin] : config.origins) {
        std::string prefix = "backends." + name + ".";
        if (key.rfind(prefix, 0) == 0) sources[key.substr(prefix.size())] = origin;
      }
      out["backends"][name] = {{"value", nlohmann::json::parse(section, nullptr, false)},
                               {"sources", sources}};
    }
    out["config_file"] = config.config_file.string();
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "config file: "
            << (config.config_file.empty() ? "(none found)" : config.config_file.string()) << "\n";
  for (const auto& key : ConfigKeys()) {
    std::string value = ConfigValueText(config, key);
    std::cout << "  " << key << std::string(key.size() < 13 ? 13 - key.size() : 1, ' ')
              << (value.empty() ? "\"\"" : value) << "  (" << config.origins[key] << ")\n";
  }
  for (const auto& [name, section] : config.backend_sections) {
    std::string sources;
    for (const auto& [key, origin] : config.origins) {
      std::string prefix = "backends." + name + ".";
      if (key.rfind(prefix, 0) == 0) sources += "; " + key.substr(prefix.size()) + ": " + origin;
    }
    std::cout << "  backends." << name << " " << section << "  (file" << sources << ")\n";
  }
  return 0;
}

}  // namespace sandrun::cli
