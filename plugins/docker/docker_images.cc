#include "docker_images.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <fstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "docker_tar.h"

namespace sandrun::docker {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// SHA-256 over every file's relative path, mode and content, in sorted order:
// the cache key of a build context (mtimes do not matter).
Result<std::string> HashContext(const fs::path& dir) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return InternalError("sha256: cannot initialise");
  }
  std::vector<fs::path> paths;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    paths.push_back(it->path());
  }
  if (ec) return PermissionDeniedError("cannot read " + dir.string() + ": " + ec.message());
  std::sort(paths.begin(), paths.end());
  std::string buffer(1 << 16, '\0');
  for (const auto& p : paths) {
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) continue;
    std::string header = p.lexically_relative(dir).generic_string() + '\0' +
                         std::to_string(st.st_mode) + '\0';
    if (S_ISLNK(st.st_mode)) header += fs::read_symlink(p, ec).string();
    EVP_DigestUpdate(ctx.get(), header.data(), header.size());
    if (!S_ISREG(st.st_mode)) continue;
    std::ifstream in(p, std::ios::binary);
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      if (in.gcount() > 0) EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<size_t>(in.gcount()));
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
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
