#include "docker_volume_helper.h"

#include <algorithm>

#include <chrono>

#include <thread>

#include <nlohmann/json.hpp>

#include "docker_backend.h"
#include "plugin_tar.h"

namespace sandrun::docker {
namespace {

using json = nlohmann::json;

// Holds nothing but the mount points; never started.
constexpr char kHelperImage[] = "sandrun-archive-helper:1";

Status EnsureHelperImage(DockerClient& client) {
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           client.Request("GET", std::string("/images/") + kHelperImage + "/json"));
  if (res.status == 200) return OkStatus();
  TarEntry dir;
  dir.name = "sandrun/results";
  dir.directory = true;
  dir.mode = 0755;
  TarEntry parent = dir;
  parent.name = "sandrun";
  SANDRUN_ASSIGN_OR_RETURN(std::string tar, TarOfEntries({parent, dir}));
  SANDRUN_ASSIGN_OR_RETURN(
      res, client.Request("POST", "/images/create?fromSrc=-&repo=sandrun-archive-helper&tag=1",
                          std::move(tar), "application/x-tar"));
  if (res.status != 200 || res.body.find("\"error") != std::string::npos) {
    return VolumeApiError(res, "import of the volume helper image");
  }
  return OkStatus();
}

}  // namespace

bool IsVolumeHelperRole(std::string_view role) {
  return role == kArchiveHelperRole || role == kExeCacheHelperRole;
}

Status VolumeApiError(const HttpResponse& res, const std::string& what) {
  std::string message = "docker: " + what + ": " + DockerErrorMessage(res);
  if (res.status == 404) return NotFoundError(message);
  if (res.status >= 500) return UnavailableError(message);
  return FailedPreconditionError(message);
}

VolumeHelper::VolumeHelper(std::shared_ptr<DockerClient> client, std::string volume,
                           std::string mount_target, std::string_view role)
    : client_(std::move(client)),
      volume_(std::move(volume)),
      mount_target_(std::move(mount_target)),
      role_(role) {}

Result<std::string> VolumeHelper::Id() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!id_.empty()) return id_;
  const std::string name = "sandrun-" + role_ + "-" + volume_;
  // Several sandrun processes may meet a fresh engine at once: the name is
  // taken (409) while the other's create is still under way, and inspect
  // answers 404 for a moment longer; wait a little and look again (seen
  // with four `results list` started together: 3 attempts were not enough).
  constexpr int kAttempts = 20;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                             client_->Request("GET", "/containers/" + name + "/json"));
    if (res.status == 200) {
      try {
        auto j = json::parse(res.body);
        auto labels = j.at("Config").value("Labels", json::object());
        if (labels.value("dev.sandrun.role", "") != role_) {
          return FailedPreconditionError("docker: a container named " + name +
                                         " exists but is not sandrun's " + role_ + " helper");
        }
        id_ = j.at("Id").get<std::string>();
        return id_;
      } catch (const std::exception& e) {
        return UnavailableError(std::string("docker: bad inspect answer: ") + e.what());
      }
    }
    if (res.status != 404) return VolumeApiError(res, "inspect " + name);
    SANDRUN_RETURN_IF_ERROR(EnsureHelperImage(*client_));
    json body = {
        {"Image", kHelperImage},
        {"Cmd", json::array({"/sandrun-volume-helper-never-runs"})},
        {"Labels",
         {{std::string(kManagedLabel), "1"}, {"dev.sandrun.role", role_},
          {"dev.sandrun.volume", volume_}}},
        {"HostConfig",
         {{"NetworkMode", "none"},
          {"Mounts", json::array({{{"Type", "volume"},
                                   {"Source", volume_},
                                   {"Target", mount_target_}}})}}}};
    SANDRUN_ASSIGN_OR_RETURN(HttpResponse created,
                             client_->Request("POST", "/containers/create?name=" + name, body.dump()));
    if (created.status == 201) continue;  // Inspect it on the next round.
    if (created.status != 409) return VolumeApiError(created, "create the " + role_ + " helper");
    // 409: another process is creating it; inspect again shortly.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 * (attempt + 1), 500)));
  }
  return UnavailableError("docker: could not create the " + role_ + " helper container");
}

Result<HttpResponse> VolumeHelper::Call(
    const std::function<Result<HttpResponse>(const std::string&)>& request) {
  for (int attempt = 0;; ++attempt) {
    SANDRUN_ASSIGN_OR_RETURN(std::string helper, Id());
    SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, request(helper));
    bool helper_gone =
        res.status == 404 && DockerErrorMessage(res).find("No such container") != std::string::npos;
    if (!helper_gone || attempt > 0) return res;
    std::lock_guard<std::mutex> lock(mu_);
    id_.clear();
  }
}

Status VolumeHelper::PutTar(std::string tar, const std::string& what) {
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, Call([&](const std::string& helper) {
    return client_->Request("PUT", "/containers/" + helper + "/archive?path=" + UrlEncode(mount_target_),
                            tar, "application/x-tar");
  }));
  if (res.status != 200) return VolumeApiError(res, what);
  return OkStatus();
}

Result<HttpResponse> VolumeHelper::Stat(const std::string& path, const std::string& what) {
  const std::string target = path.empty() ? mount_target_ : mount_target_ + "/" + path;
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, Call([&](const std::string& helper) {
    return client_->Request("HEAD", "/containers/" + helper + "/archive?path=" + UrlEncode(target));
  }));
  if (res.status != 200 && res.status != 404) return VolumeApiError(res, what);
  return res;
}

}  // namespace sandrun::docker
