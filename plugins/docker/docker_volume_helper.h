// Reaching into a named volume through the Engine API alone (so it works
// against a remote engine): a helper container that mounts the volume is
// created but never started, and the archive endpoints (GET/HEAD/PUT
// /containers/{id}/archive) read and write the volume through it. Its image is
// a tiny one the plugin imports itself from an empty tar, so no registry or
// image with tools is needed.
//
// The helper is named sandrun-<role>-<volume> and labelled
// dev.sandrun.managed=1, dev.sandrun.role=<role>, dev.sandrun.volume=<volume>;
// `sandrun cleanup` keeps it (IsVolumeHelperRole). A helper removed from
// outside is created again on the next call.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_VOLUME_HELPER_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_VOLUME_HELPER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "docker_client.h"
#include "sandrun/status.h"

namespace sandrun::docker {

/// Roles of the helpers: the result archive and the portable-executable cache.
inline constexpr std::string_view kArchiveHelperRole = "archive";
inline constexpr std::string_view kExeCacheHelperRole = "exe-cache";
bool IsVolumeHelperRole(std::string_view role);

/// Maps an Engine API error answer to a Status: 404 kNotFound, 5xx
/// kUnavailable (retryable), anything else kFailedPrecondition.
Status VolumeApiError(const HttpResponse& res, const std::string& what);

class VolumeHelper {
 public:
  /// `mount_target` is where the volume is mounted in the helper (and in
  /// sandboxes): archive paths under it reach the volume.
  VolumeHelper(std::shared_ptr<DockerClient> client, std::string volume, std::string mount_target,
               std::string_view role);

  /// Runs `request` with the helper's container id; creates the helper on
  /// first use, and once more when the request finds it gone.
  Result<HttpResponse> Call(const std::function<Result<HttpResponse>(const std::string&)>& request);

  /// Writes `tar` (entries relative to the mount target) into the volume;
  /// an error says `what` failed.
  Status PutTar(std::string tar, const std::string& what);
  /// HEAD of `path` (relative to the mount target; "" is the target): the
  /// answer when it is 200 (with the X-Docker-Container-Path-Stat header) or
  /// 404 (not there); any other is an error saying `what` failed.
  Result<HttpResponse> Stat(const std::string& path, const std::string& what);

  DockerClient& client() { return *client_; }
  const std::string& volume() const { return volume_; }
  const std::string& mount_target() const { return mount_target_; }

 private:
  Result<std::string> Id();

  std::shared_ptr<DockerClient> client_;
  std::string volume_;
  std::string mount_target_;
  std::string role_;
  std::mutex mu_;
  std::string id_;  // Guarded by mu_; empty until created or found.
};

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_VOLUME_HELPER_H_
