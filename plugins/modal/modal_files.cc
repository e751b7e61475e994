// ModalSandbox::Put and Get: files moved through the in-sandbox file tool
// Modal's SDKs use (kFsToolsPath), directories walked on the host side,
// symlinks checked before anything is sent; portable executables arrive
// with the libraries they need (sandrun/portable_exe.h).
#include <algorithm>
#include <fstream>

#include "modal_sandbox.h"
#include "sandrun/archive_store.h"  // IsSafeRelativePath
#include "sandrun/file_util.h"
#include "sandrun/portable_exe.h"
#include "sandrun/upload_symlinks.h"
#include "sandrun/util.h"

namespace sandrun::modal {

Status ModalSandbox::FsTool(const json& command, const std::string* stdin_data,
                            const std::function<void(std::string_view)>& on_stdout) {
  RawExec exec;
  exec.argv = {std::string(kFsToolsPath), command.dump()};
  exec.workdir = workdir_;
  exec.stdin_data = stdin_data;
  std::string err;
  exec.on_stdout = on_stdout ? on_stdout : [](std::string_view) {};
  exec.on_stderr = [&](std::string_view chunk) {
    if (err.size() < 65536) err.append(chunk);
  };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(exec));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.stdio_status.ok()) return raw.stdio_status;
  if (raw.has_code && raw.code == 0) return OkStatus();
  std::string op = command.begin().key();
  std::string path = command.begin().value().value("path", "");
  auto parsed = json::parse(err, nullptr, false);
  std::string kind, message = err;
  if (parsed.is_object()) {
    kind = parsed.value("error_kind", "");
    message = parsed.value("message", err);
  }
  std::string text = "modal: " + op + " " + path + ": " + (kind.empty() ? "" : kind + ": ") +
                     Tail(message, 400);
  if (kind == "NotFound") return NotFoundError(text);
  if (kind == "PermissionDenied") return PermissionDeniedError(text);
  if (kind == "PathAlreadyExists") return AlreadyExistsError(text);
  return InternalError(text);
}

Status ModalSandbox::WriteFile(const std::string& path, const std::string& data) {
  return FsTool(json{{"WriteFile", {{"path", path}}}}, &data, {});
}

Status ModalSandbox::MakeDirectory(const std::string& path) {
  return FsTool(json{{"MakeDirectory", {{"path", path}, {"parents", true}}}}, nullptr, {});
}

Status ModalSandbox::RunFileCommand(std::vector<std::string> argv, const std::string& what) {
  RawExec exec;
  exec.argv = std::move(argv);
  exec.workdir = workdir_;
  std::string err;
  exec.on_stdout = [](std::string_view) {};
  exec.on_stderr = [&](std::string_view chunk) { err.append(chunk); };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(exec));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.has_code || raw.code != 0) {
    return InternalError("modal: " + what + " failed: " + Tail(err, 300));
  }
  return OkStatus();
}

Status ModalSandbox::MakeSymlinks(const std::vector<std::string>& pairs) {
  if (pairs.empty()) return OkStatus();
  std::vector<std::string> argv = {
      "/bin/sh", "-c", "while [ $# -gt 1 ]; do ln -s -- \"$1\" \"$2\" || exit 1; shift 2; done",
      "sh"};
  argv.insert(argv.end(), pairs.begin(), pairs.end());
  return RunFileCommand(std::move(argv), "making uploaded symlinks");
}

Status ModalSandbox::Chmod(const std::vector<std::string>& paths) {
  if (paths.empty()) return OkStatus();
  std::vector<std::string> argv = {"chmod", "0755"};
  argv.insert(argv.end(), paths.begin(), paths.end());
  return RunFileCommand(std::move(argv), "chmod 0755");
}

Status ModalSandbox::Put(const FileUpload& upload) {
  std::error_code ec;
  fs::path source(upload.source);
  if (!fs::exists(source, ec)) return NotFoundError("modal: upload source " + upload.source + " does not exist");
  std::string dest = upload.destination.empty() ? source.filename().string() : upload.destination;
  SANDRUN_ASSIGN_OR_RETURN(std::string target,
                           JoinSandboxPath("upload destination", workdir_, dest));
  if (upload.portable) {
    PortableOptions options;
    options.ld_library_path = shared_->options.host_library_path;
    SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan, PlanPortableExecutable(source, options));
    std::vector<std::string> executables;
    for (const auto& file : plan.files) {
      {
        std::lock_guard<std::mutex> lock(portable_mu_);
        if (portable_sent_.count(file.sandbox_path)) continue;
      }
      SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(file.host_path));
      SANDRUN_RETURN_IF_ERROR(MakeDirectory(fs::path(file.sandbox_path).parent_path().string()));
      SANDRUN_RETURN_IF_ERROR(WriteFile(file.sandbox_path, data));
      if (file.executable) executables.push_back(file.sandbox_path);
    }
    SANDRUN_RETURN_IF_ERROR(MakeDirectory(fs::path(target).parent_path().string()));
    SANDRUN_RETURN_IF_ERROR(WriteFile(target, plan.LauncherScript()));
    executables.push_back(target);
    SANDRUN_RETURN_IF_ERROR(Chmod(executables));
    std::lock_guard<std::mutex> lock(portable_mu_);
    for (const auto& file : plan.files) portable_sent_.insert(file.sandbox_path);
    return OkStatus();
  }
  std::vector<std::string> executables;
  auto put_file = [&](const fs::path& host, const std::string& remote) -> Status {
    SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(host));
    SANDRUN_RETURN_IF_ERROR(WriteFile(remote, data));
    auto perms = fs::status(host).permissions();
    if ((perms & fs::perms::owner_exec) != fs::perms::none) executables.push_back(remote);
    return OkStatus();
  };
  if (fs::is_directory(source, ec)) {
    SANDRUN_RETURN_IF_ERROR(MakeDirectory(target));
    std::vector<fs::directory_entry> entries;
    for (fs::recursive_directory_iterator it(source, ec), end; it != end; it.increment(ec)) {
      if (ec) break;
      entries.push_back(*it);
    }
    if (ec) return InternalError("modal: walking " + upload.source + ": " + ec.message());
    std::sort(entries.begin(), entries.end(),
              [](const auto& a, const auto& b) { return a.path() < b.path(); });
    // Links are checked before anything is sent, and made last, as links.
    std::vector<std::string> links;  // Pairs: target, sandbox path.
    for (const auto& entry : entries) {
      if (!entry.is_symlink()) continue;
      SANDRUN_RETURN_IF_ERROR(CheckUploadSymlink(source, entry.path()));
      links.push_back(fs::read_symlink(entry.path(), ec).string());
      links.push_back(target + "/" + entry.path().lexically_relative(source).generic_string());
    }
    for (const auto& entry : entries) {
      std::string remote =
          target + "/" + entry.path().lexically_relative(source).generic_string();
      if (entry.is_symlink()) continue;
      if (entry.is_directory()) {
        SANDRUN_RETURN_IF_ERROR(MakeDirectory(remote));
      } else if (entry.is_regular_file()) {
        SANDRUN_RETURN_IF_ERROR(put_file(entry.path(), remote));
      }
    }
    SANDRUN_RETURN_IF_ERROR(MakeSymlinks(links));
  } else {
    SANDRUN_RETURN_IF_ERROR(MakeDirectory(fs::path(target).parent_path().string()));
    SANDRUN_RETURN_IF_ERROR(put_file(source, target));
  }
  return Chmod(executables);
}

// Lists `path` in the sandbox as NUL-separated "<type> <relative path>"
// entries (type f, d or l; the first entry describes `path` itself, as ".").
constexpr const char* kListScript =
    "p=\"$1\"\n"
    "if [ -L \"$p\" ]; then printf 'l .\\0'; exit 0; fi\n"
    "if [ -f \"$p\" ]; then printf 'f .\\0'; exit 0; fi\n"
    "if [ ! -d \"$p\" ]; then echo \"$p: not found\" >&2; exit 3; fi\n"
    "printf 'd .\\0'\n"
    "cd \"$p\" || exit 4\n"
    "for t in d f l; do find . -mindepth 1 -type $t | while IFS= read -r e; do "
    "printf '%s %s\\0' \"$t\" \"${e#./}\"; done; done\n";

Result<std::vector<std::string>> ModalSandbox::Get(const std::string& sandbox_path,
                                                   const fs::path& host_dir) {
  SANDRUN_ASSIGN_OR_RETURN(const std::string remote,
                           JoinSandboxPath("download path", workdir_, sandbox_path));
  const std::string base = fs::path(remote).filename().string();
  if (base.empty() || base == "." || base == "..") {
    return PermissionDeniedError("modal: refusing to download " + sandbox_path +
                                 ": it has no file name to land under " + host_dir.string());
  }
  RawExec list;
  list.argv = {"/bin/sh", "-c", kListScript, "sandrun-list", remote};
  list.workdir = workdir_;
  std::string listing, err;
  list.on_stdout = [&](std::string_view chunk) { listing.append(chunk); };
  list.on_stderr = [&](std::string_view chunk) { err.append(chunk); };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(list));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.stdio_status.ok()) return raw.stdio_status;
  if (raw.has_code && raw.code == 3) return NotFoundError("modal: " + sandbox_path + " not found in the sandbox");
  if (!raw.has_code || raw.code != 0) {
    return InternalError("modal: listing " + sandbox_path + " failed: " + Tail(err, 300));
  }
  std::vector<std::pair<char, std::string>> entries;
  for (std::size_t pos = 0; pos < listing.size();) {
    std::size_t end = listing.find('\0', pos);
    if (end == std::string::npos) end = listing.size();
    std::string item = listing.substr(pos, end - pos);
    pos = end + 1;
    if (item.size() < 3) continue;
    entries.emplace_back(item[0], item.substr(2));
  }
  for (const auto& [type, rel] : entries) {
    if (type == 'l') {
      return PermissionDeniedError("modal: refusing to download " + sandbox_path + ": " +
                                   (rel == "." ? base : base + "/" + rel) +
                                   " is a symlink (it could point outside " + host_dir.string() +
                                   ")");
    }
    if (rel != "." && !IsSafeRelativePath(rel)) {
      return PermissionDeniedError("modal: refusing to download " + sandbox_path +
                                   ": unsafe entry name");
    }
  }
  std::error_code ec;
  fs::create_directories(host_dir, ec);
  std::vector<std::string> written;
  for (const auto& [type, rel] : entries) {
    std::string host_rel = rel == "." ? base : base + "/" + rel;
    fs::path host = host_dir / host_rel;
    if (type == 'd') {
      fs::create_directories(host, ec);
      continue;
    }
    fs::create_directories(host.parent_path(), ec);
    std::ofstream out(host, std::ios::binary | std::ios::trunc);
    if (!out) return InternalError("modal: cannot write " + host.string());
    std::string remote_file = rel == "." ? remote : remote + "/" + rel;
    SANDRUN_RETURN_IF_ERROR(FsTool(json{{"ReadFile", {{"path", remote_file}}}}, nullptr,
                                   [&](std::string_view chunk) {
                                     out.write(chunk.data(),
                                               static_cast<std::streamsize>(chunk.size()));
                                   }));
    out.close();
    if (!out) return InternalError("modal: writing " + host.string() + " failed");
    written.push_back(host_rel);
  }
  std::sort(written.begin(), written.end());
  return written;
}

}  // namespace sandrun::modal
