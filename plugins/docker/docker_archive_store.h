// The Docker backend's result archive: a named volume, read and written only
// through the Engine API so it works against a remote engine too.
//
// Reads and writes go through the volume's helper container (a created,
// never-started container, docker_volume_helper.h), so no registry or image
// with tools is needed. Only Remove needs to run something ("rm -rf"), in a
// short-lived container of the tool image.
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_ARCHIVE_STORE_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_ARCHIVE_STORE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "docker_client.h"
#include "docker_options.h"
#include "sandrun/archive_store.h"
#include "sandrun/status.h"

namespace sandrun::docker {

/// Creates `volume` (labelled dev.sandrun.managed=1) unless it exists.
Status EnsureVolume(DockerClient& client, const std::string& volume);

/// An ArchiveStore over `volume`. `tool_image` must have sh and rm; it is only
/// used by Remove().
Result<std::unique_ptr<ArchiveStore>> OpenVolumeArchive(std::shared_ptr<DockerClient> client,
                                                        std::string volume,
                                                        std::string tool_image);

/// Runs `cmd` to completion in a fresh container of `image` with `volume` at
/// `mount_target`, network none, then removes it. Returns the exit code.
Result<int> RunToolContainer(DockerClient& client, const std::string& image,
                             const std::string& volume, const std::vector<std::string>& cmd,
                             std::string_view mount_target = kResultsMount);

}  // namespace sandrun::docker

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_ARCHIVE_STORE_H_
