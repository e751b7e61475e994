#include "docker_images.h"

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugin_tar.h"
#include "sandrun/portable_exe.h"

namespace sandrun::docker {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// SHA-256 over a manifest of every file's relative path, mode and content
// hash, in sorted order: the cache key of a build context (mtimes do not
// matter).
Result<std::string> HashContext(const fs::path& dir) {
  std::vector<fs::path> paths;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    paths.push_back(it->path());
  }
  if (ec) return PermissionDeniedError("cannot read " + dir.string() + ": " + ec.message());
  std::sort(paths.begin(), paths.end());
  std::string manifest;
  for (const auto& p : paths) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    manifest += p.lexically_relative(dir).generic_string() + '\0' + std::to_string(st.st_mode) + '\0';
    if (S_ISLNK(st.st_mode)) manifest += fs::read_symlink(p, ec).string();
    if (S_ISREG(st.st_mode)) {
      SANDRUN_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(p));
      manifest += sha;
    }
    manifest += '\n';
  }
  return Sha256Hex(manifest);
}

}  // namespace

Result<std::string> BuildImage(DockerClient& client, const std::string& dockerfile) {
  std::error_code ec;
  fs::path file = fs::absolute(dockerfile, ec);
  if (ec || !fs::is_regular_file(file, ec)) {
    return InvalidArgumentError("docker: no Dockerfile at " + dockerfile);
  }
  fs::path context = file.parent_path();
  SANDRUN_ASSIGN_OR_RETURN(std::string sha, HashContext(context));
  const std::string tag = "sandrun-build:" + sha;
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, client.Request("GET", "/images/" + tag + "/json"));
  if (res.status == 200) return tag;  // Same context, already built.

  SANDRUN_ASSIGN_OR_RETURN(std::string tar, TarFromHost(context, ""));
  std::string target = "/build?t=" + UrlEncode(tag) +
                       "&dockerfile=" + UrlEncode(file.filename().string()) +
                       "&rm=1&forcerm=1&labels=" +
                       UrlEncode(json({{"dev.sandrun.managed", "1"}}).dump());
  SANDRUN_ASSIGN_OR_RETURN(res, client.Request("POST", target, std::move(tar), "application/x-tar",
                                               std::chrono::minutes(60)));
  // The body is a stream of JSON lines; keep the last lines of output for the
  // error message.
  std::deque<std::string> tail;
  std::string error;
  std::size_t start = 0;
  while (start < res.body.size()) {
    std::size_t end = res.body.find('\n', start);
    if (end == std::string::npos) end = res.body.size();
    std::string line = res.body.substr(start, end - start);
    start = end + 1;
    try {
      auto j = json::parse(line);
      if (j.contains("error")) {
        error = j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump();
      } else if (j.contains("stream") && j["stream"].is_string()) {
        std::string text = j["stream"].get<std::string>();
        while (!text.empty() && text.back() == '\n') text.pop_back();
        if (!text.empty()) tail.push_back(text);
        if (tail.size() > 20) tail.pop_front();
      }
    } catch (...) {
    }
  }
  if (res.status != 200 && error.empty()) error = DockerErrorMessage(res);
  if (!error.empty()) {
    std::string message = "docker: building " + file.string() + " failed: " + error;
    if (!tail.empty()) {
      message += "\n--- last build output ---";
      for (const auto& line : tail) message += "\n" + line;
    }
    return FailedPreconditionError(message);
  }
  return tag;
}

Status PullImage(DockerClient& client, const std::string& image) {
  std::string name = image, tag = "latest";
  std::size_t at = name.find('@');
  std::size_t colon = name.rfind(':');
  if (at == std::string::npos && colon != std::string::npos &&
      name.find('/', colon) == std::string::npos) {
    tag = name.substr(colon + 1);
    name = name.substr(0, colon);
  }
  std::string target = "/images/create?fromImage=" + UrlEncode(name);
  if (at == std::string::npos) target += "&tag=" + UrlEncode(tag);
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, client.Request("POST", target, {}, "text/plain",
                                                              std::chrono::minutes(30)));
  // 404: the registry has no such image (or refuses to say); 400: the name
  // is malformed. Both are the user's to fix. Anything else (the registry
  // could not be reached) says nothing about the image.
  if (res.status == 404 || res.status == 400) return InvalidArgumentError(DockerErrorMessage(res));
  if (res.status != 200) return FailedPreconditionError(DockerErrorMessage(res));
  // The pull reports failures inside its JSON progress stream.
  std::size_t start = 0;
  while (start < res.body.size()) {
    std::size_t end = res.body.find('\n', start);
    if (end == std::string::npos) end = res.body.size();
    try {
      auto j = json::parse(res.body.substr(start, end - start));
      if (j.contains("error")) {
        return FailedPreconditionError(j["error"].is_string() ? j["error"].get<std::string>()
                                                              : j["error"].dump());
      }
    } catch (...) {
    }
    start = end + 1;
  }
  return OkStatus();
}

std::string ImageUnavailableMessage(const std::string& image, const Status& pulled) {
  std::string why = pulled.message();
  return "docker: image '" + image +
         "' is not available: not found locally, and pulling it failed: " +
         why.substr(0, why.find('\n'));
}

}  // namespace sandrun::docker
