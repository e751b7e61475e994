#include "docker_exe_cache.h"

#include <filesystem>
#include <vector>

#include <nlohmann/json.hpp>

#include "docker_archive_store.h"
#include "plugin_tar.h"
#include "sandrun/util.h"

namespace sandrun::docker {
namespace {

// In the volume's top directory; its mtime is when files were last removed.
constexpr char kRemovalStamp[] = ".sandrun-evicted";
constexpr std::chrono::hours kRemovalInterval{24};
// What AgeInVolume says of a file whose mtime the engine did not give.
constexpr std::chrono::seconds kAgeUnknown = std::chrono::hours(24 * 365);

// Removes what was unused for longer than $1 minutes from the volume at the
// working directory, touching only directories nothing landed in for $2
// minutes (an upload or a marker rewrite changes its directory's mtime; the
// files themselves keep their host mtime): first the files that never got
// their marker (an upload cut short), then each file whose marker is that old,
// with the marker, then the directories left empty. Each removal asks again
// just before, so only an upload landing in that instant can meet it.
constexpr char kRemovalScript[] = R"sh(minutes="$1"; settled="$2"
quiet() { [ -n "$(find "$1" -maxdepth 0 -mmin "+$settled")" ]; }
find . -mindepth 1 -maxdepth 1 -type d -mmin "+$minutes" |
while IFS= read -r dir; do
  for file in "$dir"/*; do
    [ -f "$file" ] && [ ! -e "$dir/.${file##*/}.complete" ] && quiet "$dir" && rm -f "$file"
  done
done
find . -mindepth 2 -maxdepth 2 -type f -name '.*.complete' -mmin "+$minutes" |
while IFS= read -r marker; do
  dir="${marker%/*}"; name="${marker##*/.}"; name="${name%.complete}"
  [ -n "$(find "$marker" -mmin "+$minutes")" ] && quiet "$dir" && rm -f "$dir/$name" "$marker"
done
for dir in */; do rmdir "$dir" 2>/dev/null; done
exit 0
)sh";

// How long a directory must have been left alone before anything in it goes.
constexpr std::chrono::minutes kSettled{10};

// "/sandrun/exe/<sha>/.<name>.complete": per name, because files of equal
// content share the <sha> directory under the names they are looked up by.
std::string MarkerOf(const std::string& sandbox_path) {
  std::size_t slash = sandbox_path.rfind('/');
  return sandbox_path.substr(0, slash + 1) + "." + sandbox_path.substr(slash + 1) + ".complete";
}

// "/sandrun/exe/<sha>/<name>" as a path in the volume: "<sha>/<name>".
std::string InVolume(const std::string& sandbox_path) {
  return sandbox_path.substr(std::string_view(kPortableExeRoot).size() + 1);
}

// The mtime in the engine's X-Docker-Container-Path-Stat answer header
// (base64 of {"name", "size", "mode", "mtime", "linkTarget"}).
std::optional<std::int64_t> MtimeMsOf(const HttpResponse& res) {
  auto header = res.headers.find("x-docker-container-path-stat");
  if (header == res.headers.end()) return std::nullopt;
  std::optional<std::string> stat = Base64Decode(header->second);
  if (!stat) return std::nullopt;
  auto parsed = nlohmann::json::parse(*stat, nullptr, false);
  if (!parsed.is_object() || !parsed.contains("mtime") || !parsed["mtime"].is_string()) {
    return std::nullopt;
  }
  return ParseRfc3339Ms(parsed["mtime"].get<std::string>());
}

}  // namespace

ExeCache::ExeCache(std::shared_ptr<DockerClient> client, std::string volume,
                   PortableOptions portable, ExeCacheRetention retention)
    : helper_(std::move(client), std::move(volume), kPortableExeRoot, kExeCacheHelperRole),
      portable_(std::move(portable)),
      retention_(std::move(retention)) {}

Result<std::optional<std::chrono::seconds>> ExeCache::AgeInVolume(const std::string& path) {
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res,
                           helper_.Stat(InVolume(path), "stat " + path + " in volume " + volume()));
  if (res.status == 404) return std::optional<std::chrono::seconds>();
  // An answer without a readable time counts as old enough to be written
  // again: the removal goes by the real mtime, which then is now.
  std::optional<std::int64_t> mtime_ms = MtimeMsOf(res);
  if (!mtime_ms) return std::optional<std::chrono::seconds>(kAgeUnknown);
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  const std::int64_t age_ms = *mtime_ms < now_ms ? now_ms - *mtime_ms : 0;
  return std::optional<std::chrono::seconds>(std::chrono::seconds(age_ms / 1000));
}

Result<std::uintmax_t> ExeCache::Ensure(const PortablePlan& plan) {
  auto missing = [&] {
    std::vector<const PortableFile*> out;
    std::lock_guard<std::mutex> lock(known_mu_);
    for (const PortableFile& file : plan.files) {
      if (!known_present_.count(file.sandbox_path)) out.push_back(&file);
    }
    return out;
  };
  if (missing().empty()) return 0;
  bool sent_new_files = false;
  std::uintmax_t bytes = 0;
  {
    std::lock_guard<std::mutex> upload(upload_mu_);
    SANDRUN_ASSIGN_OR_RETURN(bytes, UploadMissing(missing(), &sent_new_files));
  }
  // New files are what makes the cache grow: the time to see what can go
  // (after the upload lock: the other uploads of this process need not wait).
  if (sent_new_files && retention_.keep.count() > 0 && !removal_checked_.exchange(true)) {
    RemoveUnusedWhenDue();
  }
  return bytes;
}

Result<std::uintmax_t> ExeCache::UploadMissing(const std::vector<const PortableFile*>& files,
                                                bool* sent_new_files) {
  const bool retains = retention_.keep.count() > 0;
  std::vector<const PortableFile*> to_send;   // with their markers
  std::vector<const PortableFile*> to_touch;  // their markers only
  for (const PortableFile* file : files) {
    SANDRUN_ASSIGN_OR_RETURN(std::optional<std::chrono::seconds> age,
                             AgeInVolume(MarkerOf(file->sandbox_path)));
    if (!age) {
      to_send.push_back(file);
    } else if (retains && *age >= retention_.keep / 4) {
      // In use again after a while: the marker is written anew. The file is
      // never sent again while its marker is there (a sandbox may be about
      // to run it), unless a removal took it.
      SANDRUN_ASSIGN_OR_RETURN(std::optional<std::chrono::seconds> file_age,
                               AgeInVolume(file->sandbox_path));
      (file_age ? to_touch : to_send).push_back(file);
    } else {
      std::lock_guard<std::mutex> lock(known_mu_);
      known_present_.insert(file->sandbox_path);
    }
  }
  *sent_new_files = !to_send.empty();
  if (to_send.empty() && to_touch.empty()) return 0;
  TarBuilder tar;
  std::uintmax_t bytes = 0;
  for (const PortableFile* file : to_send) {
    SANDRUN_RETURN_IF_ERROR(tar.AddHostPath(file->host_path, InVolume(file->sandbox_path)));
    std::error_code ec;
    bytes += std::filesystem::file_size(file->host_path, ec);
  }
  // The markers after every file, written now.
  for (const auto* group : {&to_send, &to_touch}) {
    for (const PortableFile* file : *group) {
      TarEntry marker;
      marker.name = InVolume(MarkerOf(file->sandbox_path));
      SANDRUN_RETURN_IF_ERROR(tar.AddEntry(marker));
    }
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string body, tar.Finish());
  SANDRUN_RETURN_IF_ERROR(helper_.PutTar(std::move(body), "upload to volume " + volume()));
  std::lock_guard<std::mutex> lock(known_mu_);
  for (const auto* group : {&to_send, &to_touch}) {
    for (const PortableFile* file : *group) known_present_.insert(file->sandbox_path);
  }
  return bytes;
}

void ExeCache::RemoveUnusedWhenDue() {
  auto age = AgeInVolume(std::string(kPortableExeRoot) + "/" + kRemovalStamp);
  if (!age.ok() || (age->has_value() && **age < kRemovalInterval)) return;
  auto removed = RemoveUnused();
  if (!removed.ok() || *removed != 0) return;  // Tried again by the next process.
  // Done for the day: the other processes with new files leave it alone.
  TarEntry stamp;
  stamp.name = kRemovalStamp;
  auto body = TarOfEntries({stamp});
  if (body.ok()) helper_.PutTar(std::move(*body), "stamp volume " + volume()).IgnoreError();
}

void ExeCache::NoteSandboxImage(const std::string& image) {
  std::lock_guard<std::mutex> lock(image_mu_);
  sandbox_image_ = image;
}

Result<int> ExeCache::RemoveUnused() {
  if (retention_.keep.count() <= 0) return 0;
  std::string image = retention_.tool_image;
  if (image.empty()) {
    std::lock_guard<std::mutex> lock(image_mu_);
    image = sandbox_image_;
  }
  if (image.empty()) {
    return FailedPreconditionError("docker: no image to remove old exe cache files with");
  }
  const auto minutes = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::minutes>(retention_.keep).count());
  const std::string script = std::string("cd ") + kPortableExeRoot + " || exit 1\n" + kRemovalScript;
  // Never pulled: housekeeping must not reach a registry on its own.
  return RunToolContainer(helper_.client(), image, volume(),
                          {"sh", "-c", script, "sh", std::to_string(minutes),
                           std::to_string(kSettled.count())},
                          kPortableExeRoot);
}

}  // namespace sandrun::docker
