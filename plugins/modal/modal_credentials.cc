#include "modal_credentials.h"

#include <cctype>
#include <cstdlib>
#include <toml++/toml.h>

#include "sandrun/file_util.h"

namespace sandrun::modal {
namespace {

namespace fs = std::filesystem;

std::string Get(const std::map<std::string, std::string>& env, const std::string& key) {
  auto it = env.find(key);
  return it == env.end() ? std::string() : it->second;
}

Status FileError(const fs::path& path, const std::string& what) {
  return FailedPreconditionError("modal: " + path.string() + ": " + what);
}

// Reads one string key of a profile table; a non-string value is an error
// that names the key but never shows the value.
Status ReadKey(const toml::table& profile, const std::string& key, const fs::path& path,
               const std::string& profile_name, std::string* out) {
  const toml::node* node = profile.get(key);
  if (node == nullptr) return OkStatus();
  if (!node->is_string()) {
    return FileError(path, "profile '" + profile_name + "': " + key + " must be a string");
  }
  *out = node->as_string()->get();
  return OkStatus();
}

// MODAL_SANDBOX_V2 / sandbox_v2 as the JS SDK reads them (parseBooleanFlag):
// empty, "0" and "false" (any case) are off, anything else on.
bool SandboxV2Flag(std::string value) {
  for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return !value.empty() && value != "0" && value != "false";
}

}  // namespace

fs::path ModalConfigPath(const std::map<std::string, std::string>& env) {
  std::string explicit_path = Get(env, "MODAL_CONFIG_PATH");
  if (!explicit_path.empty()) return explicit_path;
  std::string home = Get(env, "HOME");
  if (home.empty()) home = "/";
  return fs::path(home) / ".modal.toml";
}

Result<ModalCredentials> LoadModalCredentials(const std::map<std::string, std::string>& env) {
  ModalCredentials creds;
  const fs::path path = ModalConfigPath(env);
  std::error_code ec;
  const bool have_file = fs::is_regular_file(path, ec);
  std::string profile_name = Get(env, "MODAL_PROFILE");
  const bool profile_named = !profile_name.empty();

  if (have_file) {
    Result<std::string> text = ReadWholeFile(path);
    if (!text.ok()) return FileError(path, "cannot be read");
    toml::table root;
    try {
      root = toml::parse(*text, path.string());
    } catch (const toml::parse_error& error) {
      // Only the position: the parser's description may quote file content,
      // and the file holds the token secret.
      const auto& where = error.source().begin;
      return FileError(path, "malformed TOML at line " + std::to_string(where.line) +
                                 ", column " + std::to_string(where.column));
    }
    if (!profile_named) {
      // The first active profile by name (std::map-like order of toml::table
      // keys is by insertion; sort for a deterministic choice).
      std::map<std::string, const toml::table*> profiles;
      for (const auto& [key, node] : root) {
        if (node.is_table()) profiles[std::string(key.str())] = node.as_table();
      }
      for (const auto& [name, table] : profiles) {
        const toml::node* active = table->get("active");
        if (active != nullptr && active->is_boolean() && active->as_boolean()->get()) {
          profile_name = name;
          break;
        }
      }
      if (profile_name.empty()) profile_name = "default";
    }
    const toml::node* node = root.get(profile_name);
    if (node == nullptr) {
      if (profile_named) {
        return FileError(path, "no profile '" + profile_name + "' (named by MODAL_PROFILE)");
      }
    } else if (!node->is_table()) {
      return FileError(path, "'" + profile_name + "' is not a table of settings");
    } else {
      const toml::table& profile = *node->as_table();
      SANDRUN_RETURN_IF_ERROR(ReadKey(profile, "token_id", path, profile_name, &creds.token_id));
      SANDRUN_RETURN_IF_ERROR(
          ReadKey(profile, "token_secret", path, profile_name, &creds.token_secret));
      std::string url;
      SANDRUN_RETURN_IF_ERROR(ReadKey(profile, "server_url", path, profile_name, &url));
      if (!url.empty()) creds.server_url = url;
      SANDRUN_RETURN_IF_ERROR(
          ReadKey(profile, "environment", path, profile_name, &creds.environment));
      SANDRUN_RETURN_IF_ERROR(ReadKey(profile, "image_builder_version", path, profile_name,
                                      &creds.image_builder_version));
      if (const toml::node* v2 = profile.get("sandbox_v2")) {
        if (v2->is_boolean()) {
          creds.sandbox_v2 = v2->as_boolean()->get();
        } else if (v2->is_string()) {
          creds.sandbox_v2 = SandboxV2Flag(v2->as_string()->get());
        } else {
          return FileError(path, "profile '" + profile_name + "': sandbox_v2 must be a boolean");
        }
      }
      creds.source = path.string() + " profile '" + profile_name + "'";
    }
  } else if (profile_named) {
    return FileError(path, "does not exist (MODAL_PROFILE names profile '" + profile_name +
                               "'); run `modal setup` or set MODAL_TOKEN_ID/MODAL_TOKEN_SECRET");
  }

  const std::string env_id = Get(env, "MODAL_TOKEN_ID");
  const std::string env_secret = Get(env, "MODAL_TOKEN_SECRET");
  if (!env_id.empty()) creds.token_id = env_id;
  if (!env_secret.empty()) creds.token_secret = env_secret;
  if (!env_id.empty() || !env_secret.empty()) {
    creds.source = "environment (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET)";
  }
  if (!Get(env, "MODAL_SERVER_URL").empty()) creds.server_url = Get(env, "MODAL_SERVER_URL");
  if (env.count("MODAL_ENVIRONMENT")) creds.environment = Get(env, "MODAL_ENVIRONMENT");
  if (!Get(env, "MODAL_IMAGE_BUILDER_VERSION").empty()) {
    creds.image_builder_version = Get(env, "MODAL_IMAGE_BUILDER_VERSION");
  }
  if (!Get(env, "MODAL_SANDBOX_V2").empty()) creds.sandbox_v2 = SandboxV2Flag(Get(env, "MODAL_SANDBOX_V2"));
  const std::string throttle = Get(env, "MODAL_MAX_THROTTLE_WAIT");
  if (!throttle.empty()) {
    char* end = nullptr;
    double value = std::strtod(throttle.c_str(), &end);
    if (end == throttle.c_str() || *end != '\0' || value < 0) {
      return FailedPreconditionError("modal: MODAL_MAX_THROTTLE_WAIT must be seconds >= 0, got '" +
                                     throttle + "'");
    }
    creds.max_throttle_wait_s = value;
  }

  if (creds.token_id.empty() && creds.token_secret.empty()) {
    return FailedPreconditionError(
        "modal: no credentials: MODAL_TOKEN_ID/MODAL_TOKEN_SECRET are unset and " +
        path.string() +
        (have_file ? " has no token in profile '" + profile_name + "'" : " does not exist") +
        "; run `modal setup` or set both variables");
  }
  if (creds.token_id.empty() || creds.token_secret.empty()) {
    return FailedPreconditionError(
        std::string("modal: ") + (creds.token_id.empty() ? "token_id" : "token_secret") +
        " is missing (credentials from " +
        (creds.source.empty() ? path.string() : creds.source) + ")");
  }
  if (creds.server_url.rfind("https://", 0) != 0 && creds.server_url.rfind("http://", 0) != 0) {
    return FailedPreconditionError("modal: server_url must start with https:// or http://, got '" +
                                   creds.server_url + "'");
  }
  return creds;
}

}  // namespace sandrun::modal
