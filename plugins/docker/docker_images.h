// Images the Docker backend makes itself: Dockerfile builds (cached by the
// content of the build context) and the tar of a portable executable upload.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_IMAGES_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_IMAGES_H_

#include <set>
#include <string>

#include "docker_client.h"
#include "sandrun/status.h"

namespace sandrun::docker {

/// Builds the image of `dockerfile` with its directory as the context through
/// POST /build, tagged sandrun-build:<sha256 of the context tar>; an existing
/// tag is reused without building. Returns the tag. Build errors come back as
/// kFailedPrecondition carrying the build's own output lines.
Result<std::string> BuildImage(DockerClient& client, const std::string& dockerfile);

/// The tar (entries relative to "/") that uploads the host executable `source`
/// as `entry` (relative to "/") together with its loader and shared libraries
/// under sandrun/exe/<sha256>/..., with `entry` itself a small sh launcher that
/// runs the bundled loader. See sandrun/portable_exe.h. Files whose sandbox
/// path is in `already_sent` are left out, and the ones sent are added to it,
/// so a file goes to a sandbox once. The launcher needs /bin/sh in the image.
Result<std::string> PortableUploadTar(const std::string& source, const std::string& entry,
                                      std::set<std::string>* already_sent);

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_IMAGES_H_
