// Images the Docker backend makes itself or fetches: Dockerfile builds
// (cached by the content of the build context), the launcher of a portable
// executable, and pulls of images the engine does not have yet.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_IMAGES_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_IMAGES_H_

#include <string>

#include "docker_client.h"
#include "docker_exe_cache.h"
#include "sandrun/status.h"

namespace sandrun::docker {

/// Builds the image of `dockerfile` with its directory as the context through
/// POST /build, tagged sandrun-build:<sha256 of the context tar>; an existing
/// tag is reused without building. Returns the tag. Build errors come back as
/// kFailedPrecondition carrying the build's own output lines.
Result<std::string> BuildImage(DockerClient& client, const std::string& dockerfile);

/// Puts the host executable `source` with its loader and shared libraries
/// into the engine's exe cache, and returns the tar (entries relative to "/")
/// of the small sh launcher that replaces it at `entry` and runs it through
/// the bundled loader. See sandrun/portable_exe.h. The launcher needs /bin/sh
/// in the image.
Result<std::string> PortableLauncherTar(ExeCache& cache, const std::string& source,
                                        const std::string& entry);

/// Pulls `image` (name[:tag] or name@digest; the tag defaults to "latest")
/// through POST /images/create. kInvalidArgument when the registry has no
/// such image or the name is malformed (the user's to fix);
/// kFailedPrecondition for any other failure, with the engine's message.
Status PullImage(DockerClient& client, const std::string& image);

/// "docker: image 'IMAGE' is not available: not found locally, and pulling
/// it failed: <the first line of `pulled`>".
std::string ImageUnavailableMessage(const std::string& image, const Status& pulled);

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_IMAGES_H_
