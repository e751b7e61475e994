// The result archive on a Modal Volume, as Modal's Python SDK uses one
// (modal-labs/modal-client: py/modal/volume.py, py/modal/_utils/blob_utils.py;
// messages in modal_proto/api.proto): listing through VolumeListFiles2,
// reading through VolumeGetFile2 and its download URLs (each block's length
// checked), writing through VolumePutFiles2 (8 MiB blocks; each block is
// hashed and uploaded without its trailing zero bytes, and an empty file has
// no block; HTTP PUT of missing blocks, then a resend with the PUT
// responses), removing through VolumeRemoveFile2 (recursive). Block
// transfers are retried and may go through a proxy (modal_http.h).
//
// Memory stays at a few blocks whatever the size of a file: a host file is
// hashed one block at a time, keeping only the digests, and a block the
// Volume lacks is read again from the file for its PUT; Fetch writes each
// block to the host file as it arrives. (ReadBytes returns the whole file:
// it is for records.)
//
// Only version 2 Volumes: a version 1 Volume (what `modal volume create`
// makes without `--version 2`) is refused by CheckArchiveVolumeVersion,
// with the commands that fix it. Internal to plugins/modal.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_ARCHIVE_STORE_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_ARCHIVE_STORE_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "modal_client.h"
#include "sandrun/archive_store.h"

namespace sandrun::modal {

inline constexpr std::size_t kVolumeBlockSize = 8 * 1024 * 1024;

/// One block of a file as it goes to a Volume: `body` is its 8 MiB slice
/// without the trailing zero bytes (what is hashed and what is uploaded;
/// Modal hashes the body it receives), `sha256` the raw 32-byte SHA-256 of it.
struct VolumeBlock {
  std::string_view body;
  std::string sha256;
};

/// The blocks of `data` (a view into it); none for empty data.
std::vector<VolumeBlock> SplitVolumeBlocks(std::string_view data);

/// OK for a version 2 Volume; kFailedPrecondition, naming the commands that
/// fix it and the backend `setting` that names the Volume, for version 1 or
/// an unspecified version (which Modal's Python SDK reads as version 1:
/// py/modal/volume.py _validate_volume_version).
Status CheckArchiveVolumeVersion(::modal::client::VolumeFsVersion version,
                                 const std::string& volume_name,
                                 std::string_view setting = "volume");

std::unique_ptr<ArchiveStore> CreateModalArchiveStore(std::shared_ptr<ControlPlane> control,
                                                      std::string volume_id,
                                                      std::string volume_name);

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_ARCHIVE_STORE_H_
