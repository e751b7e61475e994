// Tar streams for the plugins that move files as tar (Docker's archive
// endpoints and agent, Modal's in-sandbox tar), built and read with libarchive.
//
// Extraction to the host is the security-sensitive part: a tar coming from a
// container is untrusted. ExtractTarSafely refuses (kPermissionDenied, naming
// the entry) absolute paths, ".." components, symlinks whose target is
// absolute or leads outside the target directory, and hard links to anything
// outside the archive; it never writes through a symlink, and drops setuid,
// setgid and device entries.
#ifndef SANDRUN_PLUGINS_COMMON_PLUGIN_TAR_H_
#define SANDRUN_PLUGINS_COMMON_PLUGIN_TAR_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/status.h"

namespace sandrun {

/// One in-memory file for TarOfEntries.
struct TarEntry {
  std::string name;   ///< Relative path inside the tar, '/'-separated.
  std::string data;
  int mode = 0644;
  bool directory = false;
  std::string symlink_target;  ///< Non-empty: a symlink, `data` unused.
  std::string hardlink_target; ///< Non-empty: a hard link to that entry.
  std::int64_t mtime = 0;      ///< Seconds since the epoch; 0: the time it is added.
};

/// A tar holding `source` (a file, or a directory tree with its symlinks kept
/// as symlinks) under `entry_name`; an empty `entry_name` puts a directory's
/// contents at the top. kNotFound when `source` is missing.
Result<std::string> TarFromHost(const std::filesystem::path& source,
                                const std::string& entry_name);

/// Where a tar is read from piece by piece: fills up to `size` bytes, 0 at
/// the end (DockerClient's ResponseBody fits).
using TarSource = std::function<Result<std::size_t>(char* data, std::size_t size)>;
/// Where a tar being built goes piece by piece.
using TarSink = std::function<Status(std::string_view piece)>;

/// A tar of an upload (FileUpload::source) under `entry_name`, by the rule of
/// sandrun/upload_symlinks.h: a top-level symlink is followed, links inside a
/// directory are kept only when they stay inside it, any other refuses the
/// upload (kPermissionDenied naming the link). kNotFound when `source` is
/// missing or a dangling symlink.
Result<std::string> TarOfUpload(const std::filesystem::path& source,
                                const std::string& entry_name);

/// Builds one tar from several host paths and in-memory entries (several
/// uploads in one PUT). Add* calls have TarFromHost's contract.
class TarBuilder {
 public:
  /// Collects the tar in memory; Finish() returns it.
  TarBuilder();
  /// Sends the tar to `sink` as it is built, in pieces of about 256 KiB, so
  /// memory stays bounded whatever the files' sizes; Finish() returns "".
  explicit TarBuilder(TarSink sink);
  ~TarBuilder();
  TarBuilder(const TarBuilder&) = delete;
  TarBuilder& operator=(const TarBuilder&) = delete;
  Status AddHostPath(const std::filesystem::path& source, const std::string& entry_name);
  /// TarOfUpload's contract.
  Status AddUpload(const std::filesystem::path& source, const std::string& entry_name);
  Status AddEntry(const TarEntry& entry);
  /// Ends the archive and returns its bytes; the builder is then spent.
  Result<std::string> Finish();

  struct Impl;  ///< Opaque (libarchive stays in docker_tar.cc).

 private:
  Impl* impl_;
};

/// A tar of in-memory entries.
Result<std::string> TarOfEntries(const std::vector<TarEntry>& entries);

/// Every entry of a tar we made ourselves (an upload), with its bytes in
/// memory; names cleaned of "./" and trailing '/'. No safety checks: never
/// for a tar that came from a sandbox.
Result<std::vector<TarEntry>> ReadTarEntries(std::string_view tar);

/// What a tar holds, without extracting it.
struct TarMember {
  std::string name;   ///< As stored (directories may end with '/').
  bool directory = false;
  bool symlink = false;
  std::int64_t size = 0;
};
Result<std::vector<TarMember>> ListTar(std::string_view tar);
/// The same, reading headers only and skipping data as it streams past.
Result<std::vector<TarMember>> ListTar(const TarSource& tar);

/// The regular files of `tar` whose names (as stored) `wanted` accepts, read
/// whole as the tar streams past; the others' data is skipped. For a tar
/// from a volume: nothing is written anywhere.
Result<std::vector<TarEntry>> ReadTarFiles(const TarSource& tar,
                                           const std::function<bool(const std::string&)>& wanted);

/// The contents of the first regular file in `tar`. kInvalidArgument when the
/// first entry is a directory.
Result<std::string> ReadFirstFile(std::string_view tar);
/// The same, reading no further than the end of the first file.
Result<std::string> ReadFirstFile(const TarSource& tar);

/// Extracts `tar` under `host_dir` (created if needed) with the checks above.
/// Returns the files and symlinks written, relative to host_dir. On a refused
/// entry nothing after it is extracted and the Status names the entry.
Result<std::vector<std::string>> ExtractTarSafely(std::string_view tar,
                                                  const std::filesystem::path& host_dir);
/// The same, extracting as the tar streams in.
Result<std::vector<std::string>> ExtractTarSafely(const TarSource& tar,
                                                  const std::filesystem::path& host_dir);

/// Like ExtractTarSafely, but first strips the leading component `strip`
/// ("results/") from every entry name, skipping entries outside it.
Result<std::vector<std::string>> ExtractTarSafelyStripping(
    std::string_view tar, const std::filesystem::path& host_dir, std::string_view strip);

}  // namespace sandrun

#endif  // SANDRUN_PLUGINS_COMMON_PLUGIN_TAR_H_
