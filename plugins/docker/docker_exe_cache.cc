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

// Removes what was unused for longer than $1 minutes from the volume at the
// working directory: first the files that never got their marker (an upload
// cut short) in directories nothing was written to for that long (files keep
// their host mtime; a directory's says when something last landed in it);
// then each file whose marker is that old, with the marker (asked again just
// before, so a marker written meanwhile keeps its file); then the
// directories left empty.
constexpr char kRemovalScript[] = R"sh(minutes="$1"
find . -mindepth 1 -maxdepth 1 -type d -mmin "+$minutes" |
while IFS= read -r dir; do
  for file in "$dir"/*; do
    [ -f "$file" ] && [ ! -e "$dir/.${file##*/}.complete" ] && rm -f "$file"
  done
done
find . -mindepth 2 -maxdepth 2 -type f -name '.*.complete' -mmin "+$minutes" |
while IFS= read -r marker; do
  dir="${marker%/*}"; name="${marker##*/.}"; name="${name%.complete}"
  [ -n "$(find "$marker" -mmin "+$minutes")" ] && rm -f "$marker" "$dir/$name"
done
for dir in */; do rmdir "$dir" 2>/dev/null; done
exit 0
)sh";

// "/sandrun/exe/<sha>/.<name>.complete": per name, because files of equal
// content share the <sha> directory under the names they are looked up by.
std::string MarkerOf(const std::string& sandbox_path) {
  std::size_t slash = sandbox_path.rfind('/');
  return sandbox_path.substr(0, slash + 1) + "." + sandbox_path.substr(slash + 1) + ".complete";
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
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, helper_.Call([&](const std::string& helper) {
    return helper_.client().Request("HEAD",
                                    "/containers/" + helper + "/archive?path=" + UrlEncode(path));
  }));
  if (res.status == 404) return std::optional<std::chrono::seconds>();
  if (res.status != 200) return VolumeApiError(res, "stat " + path + " in volume " + volume());
  // An answer without a readable time counts as new: never a reason to remove.
  std::optional<std::int64_t> mtime_ms = MtimeMsOf(res);
  const std::int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
  const std::int64_t age_ms = mtime_ms && *mtime_ms < now_ms ? now_ms - *mtime_ms : 0;
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
  std::lock_guard<std::mutex> upload(upload_mu_);
  const bool retains = retention_.keep.count() > 0;
  std::vector<const PortableFile*> to_send;   // with their markers
  std::vector<const PortableFile*> to_touch;  // their markers only
  for (const PortableFile* file : missing()) {
    SANDRUN_ASSIGN_OR_RETURN(std::optional<std::chrono::seconds> age,
                             AgeInVolume(MarkerOf(file->sandbox_path)));
    if (!age || (retains && *age >= retention_.keep / 2)) {
      to_send.push_back(file);
    } else if (retains && *age >= retention_.keep / 4) {
      to_touch.push_back(file);
    } else {
      std::lock_guard<std::mutex> lock(known_mu_);
      known_present_.insert(file->sandbox_path);
    }
  }
  if (to_send.empty() && to_touch.empty()) return 0;
  TarBuilder tar;
  std::uintmax_t bytes = 0;
  for (const PortableFile* file : to_send) {
    // Entries relative to "/": the helper mounts the volume at /sandrun/exe.
    SANDRUN_RETURN_IF_ERROR(tar.AddHostPath(file->host_path, file->sandbox_path.substr(1)));
    std::error_code ec;
    bytes += std::filesystem::file_size(file->host_path, ec);
  }
  // The markers after every file, written now.
  for (const auto* files : {&to_send, &to_touch}) {
    for (const PortableFile* file : *files) {
      TarEntry marker;
      marker.name = MarkerOf(file->sandbox_path).substr(1);
      SANDRUN_RETURN_IF_ERROR(tar.AddEntry(marker));
    }
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string body, tar.Finish());
  SANDRUN_ASSIGN_OR_RETURN(HttpResponse res, helper_.Call([&](const std::string& helper) {
    return helper_.client().Request("PUT", "/containers/" + helper + "/archive?path=%2F", body,
                                    "application/x-tar");
  }));
  if (res.status != 200) return VolumeApiError(res, "upload to volume " + volume());
  {
    std::lock_guard<std::mutex> lock(known_mu_);
    for (const auto* files : {&to_send, &to_touch}) {
      for (const PortableFile* file : *files) known_present_.insert(file->sandbox_path);
    }
  }
  // New files are what makes the cache grow: the time to see what can go.
  if (retains && !to_send.empty()) RemoveUnusedWhenDue();
  return bytes;
}

void ExeCache::RemoveUnusedWhenDue() {
  if (removal_checked_) return;
  removal_checked_ = true;
  auto age = AgeInVolume(std::string(kPortableExeRoot) + "/" + kRemovalStamp);
  if (!age.ok() || (age->has_value() && **age < kRemovalInterval)) return;
  // The stamp first: the other processes of the day then leave it to this one.
  TarEntry stamp;
  stamp.name = std::string(kPortableExeRoot).substr(1) + "/" + kRemovalStamp;
  auto body = TarOfEntries({stamp});
  if (!body.ok()) return;
  auto put = helper_.Call([&](const std::string& helper) {
    return helper_.client().Request("PUT", "/containers/" + helper + "/archive?path=%2F", *body,
                                    "application/x-tar");
  });
  if (!put.ok() || put->status != 200) return;
  (void)RemoveUnused();
}

Result<int> ExeCache::RemoveUnused() {
  if (retention_.keep.count() <= 0) return 0;
  const auto minutes = std::max<std::int64_t>(
      1, std::chrono::duration_cast<std::chrono::minutes>(retention_.keep).count());
  const std::string script = std::string("cd ") + kPortableExeRoot + " || exit 1\n" + kRemovalScript;
  return RunToolContainer(helper_.client(), retention_.tool_image, volume(),
                          {"sh", "-c", script, "sh", std::to_string(minutes)}, kPortableExeRoot);
}

}  // namespace sandrun::docker
