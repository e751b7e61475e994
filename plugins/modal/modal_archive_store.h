// The result archive on a Modal Volume, as Modal's Python SDK uses one
// (modal-labs/modal-client: py/modal/volume.py, py/modal/_utils/blob_utils.py;
// messages in modal_proto/api.proto): listing through VolumeListFiles2,
// reading through VolumeGetFile2 and its download URLs, writing through
// VolumePutFiles2 (8 MiB blocks, SHA-256 of each block with trailing zero
// bytes stripped, HTTP PUT of missing blocks, then a resend with the PUT
// responses). Internal to plugins/modal.
//
// Not supported: Remove (sandrun's client, proto/modal_client.proto, has no
// RPC that removes a file from a Volume), so `sandrun results prune` reports
// kUnimplemented for Modal, with the `modal volume rm` command that does it
// instead.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_ARCHIVE_STORE_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_ARCHIVE_STORE_H_

#include <memory>
#include <string>
#include <string_view>

#include "modal_client.h"
#include "sandrun/archive_store.h"

namespace sandrun::modal {

inline constexpr std::size_t kVolumeBlockSize = 8 * 1024 * 1024;

/// SHA-256 (raw 32 bytes) of one volume block, trailing zero bytes stripped.
std::string VolumeBlockHash(std::string_view block);

std::unique_ptr<ArchiveStore> CreateModalArchiveStore(std::shared_ptr<ControlPlane> control,
                                                      std::string volume_id,
                                                      std::string volume_name);

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_ARCHIVE_STORE_H_
