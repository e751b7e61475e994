// Files into and out of a Docker sandbox, as tar streams through the
// engine's archive endpoint: DockerSandbox::Put and DockerSandbox::Get.
#include <system_error>

#include "docker_images.h"
#include "docker_sandbox.h"
#include "plugin_tar.h"

namespace sandrun::docker {

namespace fs = std::filesystem;

Result<std::string> DockerSandbox::UploadTar(const FileUpload& upload) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(upload.source, ec))) {
    return NotFoundError("upload source not found: " + upload.source);
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string destination, UploadDestination(upload));
  SANDRUN_ASSIGN_OR_RETURN(std::string target,
                           JoinSandboxPath("upload destination", workdir_, destination));
  std::string entry = target.substr(1);  // Relative to "/": Docker creates the parents.
  if (entry.empty()) return InvalidArgumentError("docker: cannot upload onto /");
  if (upload.portable) return PortableLauncherTar(*exe_cache_, upload.source, entry);
  return TarOfUpload(upload.source, entry);
}

Status DockerSandbox::Put(const FileUpload& upload) {
  SANDRUN_ASSIGN_OR_RETURN(std::string tar, UploadTar(upload));
  // Through the agent when there is one; what it cannot write (or a broken
  // session) goes through the engine, which says what is wrong if anything.
  if (LentAgent agent{*this, BorrowAgent()}) {
    Result<std::vector<TarEntry>> entries = ReadTarEntries(tar);
    if (entries.ok() && agent.get()->Put(*entries, Soon()).ok()) return OkStatus();
  }
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("PUT", "/containers/" + id_ + "/archive?path=%2F", std::move(tar),
                       "application/x-tar", std::chrono::seconds(120), &calls_));
  if (res.status == 404) {
    return UnavailableError("docker: container " + id_.substr(0, 12) + " is gone");
  }
  if (res.status != 200) return HttpError(res, "upload of " + upload.source);
  return OkStatus();
}

Result<std::vector<std::string>> DockerSandbox::Get(const std::string& sandbox_path,
                                                    const fs::path& host_dir) {
  SANDRUN_ASSIGN_OR_RETURN(std::string path,
                           JoinSandboxPath("download path", workdir_, sandbox_path));
  if (LentAgent agent{*this, BorrowAgent()}) {
    // What the agent sends meets the checks of any tar from a sandbox.
    Result<std::vector<TarEntry>> entries = agent.get()->Get(path, Soon());
    if (entries.ok()) {
      SANDRUN_ASSIGN_OR_RETURN(std::string tar, TarOfEntries(*entries));
      return ExtractTarSafely(tar, host_dir);
    }
    if (entries.status().code() == StatusCode::kNotFound) return entries.status();
  }
  SANDRUN_ASSIGN_OR_RETURN(
      HttpResponse res,
      client_->Request("GET", "/containers/" + id_ + "/archive?path=" + UrlEncode(path), {},
                       "application/json", std::chrono::seconds(120), &calls_));
  if (res.status == 404) {
    std::string message = DockerErrorMessage(res);
    if (message.find("No such container") != std::string::npos) {
      return UnavailableError("docker: container " + id_.substr(0, 12) + " is gone");
    }
    return NotFoundError("docker: " + path + " not found in the sandbox");
  }
  if (res.status != 200) return HttpError(res, "download of " + path);
  return ExtractTarSafely(res.body, host_dir);
}

}  // namespace sandrun::docker
