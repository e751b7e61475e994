#include "docker_archive_store.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include <nlohmann/json.hpp>

#include "docker_backend.h"
#include "plugin_tar.h"
#include "docker_volume_helper.h"
#include "sandrun/util.h"

namespace sandrun::docker {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

Status ApiError(const HttpResponse& res, const std::string& what) {
  return VolumeApiError(res, what);
}

class VolumeArchiveStore : public ArchiveStore {
 public:
  VolumeArchiveStore(std::shared_ptr<DockerClient> client, std::string volume,
                     std::string tool_image)
      : client_(client),
        volume_(volume),
        tool_image_(std::move(tool_image)),
        helper_(std::move(client), std::move(volume), std::string(kResultsMount),
                kArchiveHelperRole) {}

  std::string Describe() const override {
    return "docker volume " + volume_ + " on " + client_->host().text;
  }
  bool OnThisHost() const override { return false; }  // Every write is a request.

  Status PutFile(const std::string& path, const fs::path& host_path) override {
    return PutFiles({{path, host_path}});
  }

  // One PUT for all of them: dockerd extracts every upload in a re-executed
  // copy of itself, ~40 ms each however small (docs/performance.md). The tar
  // is built as it is sent, so a 1 GiB spill never sits in memory.
  Status PutFiles(const std::vector<ArchivePut>& puts) override {
    for (const ArchivePut& put : puts) {
      if (!IsSafeRelativePath(put.path)) {
        return InvalidArgumentError("unsafe archive path '" + put.path + "'");
      }
      std::error_code ec;
      if (fs::is_directory(put.host_path, ec)) {
        SANDRUN_ASSIGN_OR_RETURN(bool exists, Exists(put.path));
        if (exists) SANDRUN_RETURN_IF_ERROR(Remove(put.path));
      }
    }
    SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, Call([&](const std::string& helper) {
      return client_->RequestStreamingBody(
          "PUT", "/containers/" + helper + "/archive?path=" + UrlEncode(std::string(kResultsMount)),
          "application/x-tar", [&](const std::function<Status(std::string_view)>& send) {
            TarBuilder tar(send);
            for (const ArchivePut& put : puts) {
              SANDRUN_RETURN_IF_ERROR(tar.AddHostPath(put.host_path, put.path));
            }
            return tar.Finish().status();
          });
    }));
    if (res.status != 200) return ApiError(res, "write to volume " + volume_);
    return OkStatus();
  }

  Status PutBytes(const std::string& path, std::string_view data) override {
    if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
    TarEntry entry;
    entry.name = path;
    entry.data = std::string(data);
    SANDRUN_ASSIGN_OR_RETURN(std::string tar, TarOfEntries({entry}));
    return Upload(std::move(tar));
  }

  Result<std::string> ReadBytes(const std::string& path) override {
    if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
    SANDRUN_ASSIGN_OR_RETURN(TarSource tar, Download(path));
    return ReadFirstFile(tar);
  }

  Result<std::vector<std::string>> List(const std::string& dir) override {
    if (!dir.empty() && !IsSafeRelativePath(dir)) {
      return InvalidArgumentError("unsafe archive path '" + dir + "'");
    }
    // The archive endpoint has no listing: the tar of the directory is read
    // header by header as it streams past, its file data skipped, never held
    // (docs/docker.md notes the transfer cost on large archives).
    SANDRUN_ASSIGN_OR_RETURN(TarSource tar, Download(dir));
    SANDRUN_ASSIGN_OR_RETURN(std::vector<TarMember> members, ListTar(tar));
    std::set<std::string> names;
    for (const auto& m : members) {
      std::string name = m.name;
      while (!name.empty() && name.back() == '/') name.pop_back();
      std::size_t slash = name.find('/');
      if (slash == std::string::npos) continue;  // The directory itself.
      std::string rest = name.substr(slash + 1);
      std::size_t next = rest.find('/');
      std::string child = rest.substr(0, next);
      if (child.empty() || child.front() == '.') continue;  // Temp and hidden names.
      bool is_dir = next != std::string::npos || m.directory;
      names.insert(is_dir ? child + "/" : child);
    }
    // A name seen both as a file and as a directory prefix is a directory.
    std::vector<std::string> out;
    for (const auto& n : names) {
      if (n.back() != '/' && names.count(n + "/")) continue;
      out.push_back(n);
    }
    return out;
  }

  // One GET of `dir`'s tar, the wanted files picked out as it streams past:
  // every request through the helper waits its turn in the engine (~35 ms
  // each), so 500 run summaries read one by one took a minute.
  Result<std::map<std::string, std::string>> ReadTree(
      const std::string& dir, const std::function<bool(const std::string&)>& wanted) override {
    if (!dir.empty() && !IsSafeRelativePath(dir)) {
      return InvalidArgumentError("unsafe archive path '" + dir + "'");
    }
    const std::string prefix = dir.empty() ? "" : dir + "/";
    // The tar's names start with the last component of `dir` ("results" for
    // the root); this is the store path of one of them, "" for `dir` itself.
    auto store_path = [&](const std::string& name) -> std::string {
      std::size_t slash = name.find('/');
      if (slash == std::string::npos || slash + 1 == name.size()) return "";
      return prefix + name.substr(slash + 1);
    };
    auto accepted = [&](const std::string& name) {
      std::string path = store_path(name);
      if (path.empty()) return false;
      for (std::size_t start = prefix.size(); start < path.size();) {
        if (path[start] == '.') return false;  // Temporaries and hidden names.
        std::size_t slash = path.find('/', start);
        if (slash == std::string::npos) break;
        if (!wanted(path.substr(0, slash + 1))) return false;
        start = slash + 1;
      }
      return wanted(path);
    };
    SANDRUN_ASSIGN_OR_RETURN(TarSource tar, Download(dir));
    SANDRUN_ASSIGN_OR_RETURN(std::vector<TarEntry> files, ReadTarFiles(tar, accepted));
    std::map<std::string, std::string> out;
    for (TarEntry& file : files) out.emplace(store_path(file.name), std::move(file.data));
    return out;
  }

  Status Fetch(const std::string& path, const fs::path& dest) override {
    if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
    SANDRUN_ASSIGN_OR_RETURN(TarSource tar, Download(path));
    return ExtractTarSafely(tar, dest).status();
  }

  Status Remove(const std::string& path) override {
    if (!IsSafeRelativePath(path)) return InvalidArgumentError("unsafe archive path '" + path + "'");
    SANDRUN_ASSIGN_OR_RETURN(bool exists, Exists(path));
    if (!exists) return OkStatus();
    SANDRUN_ASSIGN_OR_RETURN(
        int code, RunToolContainer(*client_, tool_image_, volume_,
                                   {"rm", "-rf", "--", std::string(kResultsMount) + "/" + path}));
    if (code != 0) {
      return InternalError("docker: rm -rf " + path + " in volume " + volume_ + " exited " +
                           std::to_string(code));
    }
    return OkStatus();
  }

 private:
  template <typename F>
  Result<HttpResponse> Call(F&& request) {
    return helper_.Call(request);
  }

  std::string VolumePath(const std::string& path) const {
    return path.empty() ? std::string(kResultsMount) : std::string(kResultsMount) + "/" + path;
  }

  Status Upload(std::string tar) {
    return helper_.PutTar(std::move(tar), "write to volume " + volume_);
  }

  // The tar of `path`, to be read as it streams in.
  Result<TarSource> Download(const std::string& path) {
    std::shared_ptr<ResponseBody> body;
    SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, Call([&](const std::string& helper)
                                                        -> Result<HttpResponse> {
      SANDRUN_ASSIGN_OR_RETURN(StreamedResponse streamed,
                               client_->OpenStream("GET", "/containers/" + helper +
                                                              "/archive?path=" +
                                                              UrlEncode(VolumePath(path))));
      body = std::move(streamed.body);
      return std::move(streamed.head);
    }));
    if (res.status == 404) {
      return NotFoundError("not in the archive: " + (path.empty() ? "/" : path));
    }
    if (res.status != 200 || body == nullptr) return ApiError(res, "read from volume " + volume_);
    return TarSource([body](char* data, std::size_t size) { return body->Read(data, size); });
  }

  Result<bool> Exists(const std::string& path) {
    SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, helper_.Stat(path, "stat in volume " + volume_));
    return res.status == 200;
  }

  std::shared_ptr<DockerClient> client_;
  std::string volume_;
  std::string tool_image_;
  VolumeHelper helper_;
};

}  // namespace

Status EnsureVolume(DockerClient& client, const std::string& volume) {
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, client.Request("GET", "/volumes/" + volume));
  if (res.status == 200) return OkStatus();
  json body = {{"Name", volume}, {"Labels", {{std::string(kManagedLabel), "1"}}}};
  SANDRUN_ASSIGN_OR_RETURN(res, client.Request("POST", "/volumes/create", body.dump()));
  if (res.status != 201 && res.status != 200) return ApiError(res, "create volume " + volume);
  return OkStatus();
}

Result<int> RunToolContainer(DockerClient& client, const std::string& image,
                             const std::string& volume, const std::vector<std::string>& cmd,
                             std::string_view mount_target) {
  json body = {
      {"Image", image},
      {"Entrypoint", json::array()},
      {"Cmd", cmd},
      {"Labels",
       {{std::string(kManagedLabel), "1"},
        {"dev.sandrun.role", "tool"},
        {"dev.sandrun.owner-pid", std::to_string(::getpid())},
        {"dev.sandrun.owner-host", HostName()}}},
      {"HostConfig",
       {{"NetworkMode", "none"},
        {"Mounts", json::array({{{"Type", "volume"},
                                 {"Source", volume},
                                 {"Target", std::string(mount_target)}}})}}}};
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client.Request("POST", "/containers/create?name=sandrun-tool-" + RandomHex(12), body.dump()));
  if (res.status == 404) {
    return FailedPreconditionError("docker: tool image '" + image +
                                   "' is not available (set backends.docker.tool_image): " +
                                   DockerErrorMessage(res));
  }
  if (res.status != 201) return ApiError(res, "create a tool container from '" + image + "'");
  std::string id;
  try {
    id = json::parse(res.body).at("Id").get<std::string>();
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad create answer: ") + e.what());
  }
  auto cleanup = [&] {
    auto r = client.Request("DELETE", "/containers/" + id + "?force=1&v=1");
    (void)r;
  };
  SANDRUN_ASSIGN_OR_RETURN(res, client.Request("POST", "/containers/" + id + "/start"));
  if (res.status != 204) {
    cleanup();
    return ApiError(res, "start a tool container");
  }
  auto waited = client.Request("POST", "/containers/" + id + "/wait", {}, "application/json",
                               std::chrono::minutes(10));
  cleanup();
  if (!waited.ok()) return waited.status();
  if (waited->status != 200) return ApiError(*waited, "wait for a tool container");
  try {
    return json::parse(waited->body).value("StatusCode", -1);
  } catch (const std::exception& e) {
    return UnavailableError(std::string("docker: bad wait answer: ") + e.what());
  }
}

Result<std::unique_ptr<ArchiveStore>> OpenVolumeArchive(std::shared_ptr<DockerClient> client,
                                                        std::string volume,
                                                        std::string tool_image) {
  return std::unique_ptr<ArchiveStore>(
      new VolumeArchiveStore(std::move(client), std::move(volume), std::move(tool_image)));
}

}  // namespace sandrun::docker
