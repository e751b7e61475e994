#include "modal_options.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>

namespace sandrun::modal {
namespace {

using json = nlohmann::json;

Status StringList(const json& j, const char* key, std::vector<std::string>* out) {
  if (!j.contains(key)) return OkStatus();
  const json& value = j[key];
  if (!value.is_array()) return InvalidArgumentError(std::string("modal: ") + key + " must be a list of strings");
  for (const auto& item : value) {
    if (!item.is_string()) return InvalidArgumentError(std::string("modal: ") + key + " must be a list of strings");
    out->push_back(item.get<std::string>());
  }
  return OkStatus();
}

}  // namespace

Status ValidateCidr(const std::string& cidr) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("modal: invalid CIDR '" + cidr + "' in cidr_allowlist: " + why +
                                " (want ADDRESS/PREFIX, e.g. 203.0.113.0/24 or 2001:db8::/32)");
  };
  std::size_t slash = cidr.find('/');
  if (slash == std::string::npos) return bad("no /PREFIX");
  std::string address = cidr.substr(0, slash);
  std::string prefix = cidr.substr(slash + 1);
  unsigned char buffer[sizeof(struct in6_addr)];
  int max_prefix = 0;
  if (inet_pton(AF_INET, address.c_str(), buffer) == 1) max_prefix = 32;
  else if (inet_pton(AF_INET6, address.c_str(), buffer) == 1) max_prefix = 128;
  else return bad("'" + address + "' is not an IPv4 or IPv6 address");
  int length = -1;
  auto [ptr, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), length);
  if (prefix.empty() || ec != std::errc() || ptr != prefix.data() + prefix.size() || length < 0 ||
      length > max_prefix) {
    return bad("prefix must be 0 to " + std::to_string(max_prefix));
  }
  return OkStatus();
}

Result<ModalOptions> ParseModalOptions(std::string_view section_json) {
  ModalOptions options;
  json j = json::parse(section_json.empty() ? std::string_view("{}") : section_json, nullptr, false);
  if (j.is_discarded()) return InvalidArgumentError("modal: bad config section (not JSON)");
  if (!j.is_object()) return InvalidArgumentError("modal: config section must be an object");
  auto string_key = [&](const char* key, std::string* out) -> Status {
    if (!j.contains(key)) return OkStatus();
    if (!j[key].is_string()) return InvalidArgumentError(std::string("modal: ") + key + " must be a string");
    *out = j[key].get<std::string>();
    return OkStatus();
  };
  auto int_key = [&](const char* key, auto* out, long long min) -> Status {
    if (!j.contains(key)) return OkStatus();
    if (!j[key].is_number_integer() || j[key].get<long long>() < min) {
      return InvalidArgumentError(std::string("modal: ") + key + " must be an integer >= " + std::to_string(min));
    }
    *out = static_cast<std::remove_pointer_t<decltype(out)>>(j[key].get<long long>());
    return OkStatus();
  };
  SANDRUN_RETURN_IF_ERROR(string_key("app_name", &options.app_name));
  if (j.contains("environment")) options.environment_set = true;
  SANDRUN_RETURN_IF_ERROR(string_key("environment", &options.environment));
  SANDRUN_RETURN_IF_ERROR(string_key("volume", &options.volume));
  SANDRUN_RETURN_IF_ERROR(string_key("exe_cache_volume", &options.exe_cache_volume));
  SANDRUN_RETURN_IF_ERROR(string_key("server_url", &options.server_url));
  SANDRUN_RETURN_IF_ERROR(string_key("default_image", &options.default_image));
  SANDRUN_RETURN_IF_ERROR(StringList(j, "secrets", &options.secrets));
  SANDRUN_RETURN_IF_ERROR(StringList(j, "cidr_allowlist", &options.cidr_allowlist));
  SANDRUN_RETURN_IF_ERROR(int_key("idle_timeout_s", &options.idle_timeout_s, 0));
  SANDRUN_RETURN_IF_ERROR(int_key("max_parallel", &options.max_parallel, 1));
  SANDRUN_RETURN_IF_ERROR(int_key("timeout_grace_ms", &options.timeout_grace_ms, 0));
  SANDRUN_RETURN_IF_ERROR(int_key("router_ready_timeout_s", &options.router_ready_timeout_s, 0));
  for (const auto& cidr : options.cidr_allowlist) SANDRUN_RETURN_IF_ERROR(ValidateCidr(cidr));
  for (const auto& name : options.secrets) {
    bool bad = name.empty() || std::any_of(name.begin(), name.end(), [](char c) {
      return std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c));
    });
    if (bad) return InvalidArgumentError("modal: invalid secret name '" + name + "' (a Modal Secret's name)");
  }
  if (options.app_name.empty()) return InvalidArgumentError("modal: app_name must not be empty");
  if (options.volume.empty()) return InvalidArgumentError("modal: volume must not be empty");
  for (const auto& key : j.items()) {
    static const std::set<std::string> kKnown = {
        "app_name", "environment", "volume", "exe_cache_volume", "server_url", "default_image", "secrets",
        "cidr_allowlist", "idle_timeout_s", "max_parallel", "timeout_grace_ms",
        "router_ready_timeout_s"};
    if (!kKnown.count(key.key())) {
      return InvalidArgumentError("modal: unknown config key '" + key.key() + "'");
    }
  }
  return options;
}

}  // namespace sandrun::modal
