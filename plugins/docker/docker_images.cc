#include "docker_images.h"

#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "docker_tar.h"
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

}  // namespace sandrun::docker
