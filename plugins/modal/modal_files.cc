// ModalSandbox::Put, PutAll and Get. A task's files go in as one tar that
// the image's `tar` unpacks (one exec), and a path comes back as one tar
// extracted with the checks any tar from a sandbox gets (plugin_tar.h). An
// image without tar gets a file at a time: each file one /bin/sh exec (its
// directories, content and mode together), read back through the file tool
// the SDKs use (kFsToolsPath) after a listing. Symlinks are checked before
// anything is sent; portable executables arrive with the libraries they need
// (sandrun/portable_exe.h).
#include <algorithm>
#include <fstream>
#include <optional>

#include "modal_sandbox.h"
#include "plugin_tar.h"
#include "sandrun/archive_store.h"  // IsSafeRelativePath
#include "sandrun/file_util.h"
#include "sandrun/portable_exe.h"
#include "sandrun/upload_symlinks.h"
#include "sandrun/util.h"

namespace sandrun::modal {

RawExec ModalSandbox::FileCommand(std::vector<std::string> argv) const {
  RawExec exec;
  exec.argv = std::move(argv);
  exec.workdir = workdir_;
  exec.env = env_;  // The sandbox's environment: its PATH finds the tools.
  return exec;
}

Result<int> ModalSandbox::RunFileExec(RawExec exec, std::string* err) {
  if (!exec.on_stdout) exec.on_stdout = [](std::string_view) {};
  exec.on_stderr = [err](std::string_view chunk) {
    if (err->size() < 65536) err->append(chunk);
  };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(exec));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (raw.router_silent) return RouterStoppedAnswering();
  if (!raw.stdio_status.ok()) return raw.stdio_status;
  if (raw.streams_left_open) {
    // Its output was cut off: what came may be short of what was sent.
    return UnavailableError("modal: the output of a file command in " + id_ +
                            " did not end with the command");
  }
  return raw.has_code ? raw.code : -1;
}

Status ModalSandbox::FsTool(const json& command, const std::string* stdin_data,
                            const std::function<void(std::string_view)>& on_stdout) {
  RawExec exec = FileCommand({std::string(kFsToolsPath), command.dump()});
  exec.stdin_data = stdin_data;
  exec.on_stdout = on_stdout;
  std::string err;
  SANDRUN_ASSIGN_OR_RETURN(int code, RunFileExec(std::move(exec), &err));
  if (code == 0) return OkStatus();
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

Status ModalSandbox::MakeDirectories(const std::vector<std::string>& paths) {
  constexpr std::size_t kArgBytes = 64 * 1024;  // Far below any ARG_MAX.
  for (std::size_t i = 0; i < paths.size();) {
    std::vector<std::string> argv = {"mkdir", "-p", "--"};
    std::size_t bytes = 0;
    for (; i < paths.size() && (argv.size() == 3 || bytes + paths[i].size() < kArgBytes); ++i) {
      bytes += paths[i].size() + 1;
      argv.push_back(paths[i]);
    }
    SANDRUN_RETURN_IF_ERROR(RunFileCommand(std::move(argv), "making directories"));
  }
  return OkStatus();
}

Status ModalSandbox::RunFileCommand(std::vector<std::string> argv, const std::string& what,
                                    const std::string* stdin_data) {
  RawExec exec = FileCommand(std::move(argv));
  exec.stdin_data = stdin_data;
  std::string err;
  SANDRUN_ASSIGN_OR_RETURN(int code, RunFileExec(std::move(exec), &err));
  if (code != 0) return InternalError("modal: " + what + " failed: " + Tail(err, 300));
  return OkStatus();
}

// Makes the parent directories of "$1", writes stdin to it, and makes it
// executable when "$2" is 1.
constexpr const char* kPutFileScript =
    "f=\"$1\"\n"
    "mkdir -p -- \"$(dirname -- \"$f\")\" || exit 1\n"
    "if [ -d \"$f\" ]; then echo \"$f is a directory\" >&2; exit 1; fi\n"
    "cat > \"$f\" || exit 1\n"
    "if [ \"$2\" = 1 ]; then chmod 0755 -- \"$f\" || exit 1; fi\n";

Status ModalSandbox::PutFile(const std::string& path, const std::string& data, bool executable) {
  return RunFileCommand({"/bin/sh", "-c", kPutFileScript, "sandrun-put", path,
                         executable ? "1" : "0"},
                        "writing " + path, &data);
}

Status ModalSandbox::MakeSymlinks(const std::vector<std::string>& pairs) {
  if (pairs.empty()) return OkStatus();
  std::vector<std::string> argv = {
      "/bin/sh", "-c", "while [ $# -gt 1 ]; do ln -s -- \"$1\" \"$2\" || exit 1; shift 2; done",
      "sh"};
  argv.insert(argv.end(), pairs.begin(), pairs.end());
  return RunFileCommand(std::move(argv), "making uploaded symlinks");
}

// Unpacks a tar from stdin in "$1", made first; 127 when the image has no
// tar.
constexpr const char* kUntarScript =
    "unset TAR_OPTIONS\n"
    "command -v tar >/dev/null 2>&1 || exit 127\n"
    "mkdir -p -- \"$1\" || exit 1\n"
    "exec tar -x -o -f - -C \"$1\"\n";

// The deepest directory holding every path in `paths` (absolute, normal).
std::string CommonDirectory(const std::vector<std::string>& paths) {
  fs::path common;
  for (std::size_t i = 0; i < paths.size(); ++i) {
    fs::path dir = fs::path(paths[i]).parent_path();
    if (i == 0) {
      common = dir;
      continue;
    }
    fs::path shared;
    for (auto a = common.begin(), b = dir.begin(); a != common.end() && b != dir.end() && *a == *b;
         ++a, ++b) {
      shared /= *a;
    }
    common = shared;
  }
  return common.empty() ? "/" : common.generic_string();
}

Result<std::string> ModalSandbox::UploadTarget(const FileUpload& upload) const {
  std::error_code ec;
  if (!fs::exists(upload.source, ec)) {
    return NotFoundError("modal: upload source " + upload.source + " does not exist");
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string destination, UploadDestination(upload));
  return JoinSandboxPath("upload destination", workdir_, destination);
}

Result<PortablePlan> ModalSandbox::PortablePlanFor(const FileUpload& upload) const {
  PortableOptions options;
  options.ld_library_path = shared_->options.host_library_path;
  return PlanPortableExecutable(upload.source, options);
}

Status ModalSandbox::PutAll(const std::vector<FileUpload>& uploads) {
  if (no_tar_.load()) return Sandbox::PutAll(uploads);
  // One tar, one exec, for all of a task's files: a warm sandbox's case
  // pays one call for its launcher and output directory together.
  // Where each upload lands (and, for a portable one, its plan), first:
  // the tar is rooted at the deepest directory they share.
  struct Planned {
    const FileUpload* upload;
    std::string target;
    std::optional<PortablePlan> plan;
  };
  std::vector<Planned> planned;
  std::vector<std::string> paths;
  for (const auto& upload : uploads) {
    auto plan_one = [&]() -> Status {
      SANDRUN_ASSIGN_OR_RETURN(std::string target, UploadTarget(upload));
      // (UploadDestination never names the working directory itself.)
      if (target == "/" || target == workdir_) {
        return InvalidArgumentError("modal: cannot upload onto " + target);
      }
      Planned one{&upload, target, std::nullopt};
      paths.push_back(target);
      if (upload.portable) {
        SANDRUN_ASSIGN_OR_RETURN(one.plan, PortablePlanFor(upload));
        for (const auto& file : one.plan->files) paths.push_back(file.sandbox_path);
      }
      planned.push_back(std::move(one));
      return OkStatus();
    };
    Status ok = plan_one();
    if (!ok.ok()) return ok.WithContext("uploading " + upload.source);
  }
  const std::string root = CommonDirectory(paths);
  auto entry_name = [&](const std::string& path) {
    return fs::path(path).lexically_relative(root).generic_string();
  };
  // Tasks that start together in a new warm sandbox all lack its portable
  // files: the first sends them, the others wait and send only their own,
  // so no task runs a loader another task's tar is rewriting.
  bool lacks_portable_files = false;
  {
    std::lock_guard<std::mutex> lock(portable_mu_);
    for (const auto& one : planned) {
      if (!one.plan) continue;
      for (const auto& file : one.plan->files) {
        lacks_portable_files = lacks_portable_files || !portable_sent_.count(file.sandbox_path);
      }
    }
  }
  std::unique_lock<std::mutex> closure_lock(closure_mu_, std::defer_lock);
  if (lacks_portable_files) closure_lock.lock();  // Then the loop below sees what was sent.
  TarBuilder tar;
  std::vector<std::string> closure;  // Portable files this tar sends.
  for (const auto& [upload_ptr, target, plan] : planned) {
    const FileUpload& upload = *upload_ptr;
    auto add = [&]() -> Status {
      if (!plan) return tar.AddUpload(upload.source, entry_name(target));
      for (const auto& file : plan->files) {
        {
          std::lock_guard<std::mutex> lock(portable_mu_);
          if (portable_sent_.count(file.sandbox_path)) continue;
        }
        if (std::find(closure.begin(), closure.end(), file.sandbox_path) != closure.end()) continue;
        SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(file.host_path));
        SANDRUN_RETURN_IF_ERROR(tar.AddEntry(TarEntry{.name = entry_name(file.sandbox_path),
                                                      .data = std::move(data),
                                                      .mode = file.executable ? 0755 : 0644}));
        closure.push_back(file.sandbox_path);
      }
      return tar.AddEntry(
          TarEntry{.name = entry_name(target), .data = plan->LauncherScript(), .mode = 0755});
    };
    Status added = add();
    if (!added.ok()) return added.WithContext("uploading " + upload.source);
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string bytes, tar.Finish());
  RawExec exec = FileCommand({"/bin/sh", "-c", kUntarScript, "sandrun-untar", root});
  exec.stdin_data = &bytes;
  std::string err;
  SANDRUN_ASSIGN_OR_RETURN(int code, RunFileExec(std::move(exec), &err));
  if (code == 127) {
    no_tar_ = true;  // This image has no tar: a file at a time from now on.
    return Sandbox::PutAll(uploads);
  }
  if (code != 0) {
    return InternalError("modal: unpacking the task's files in the sandbox failed: " +
                         Tail(err, 300));
  }
  std::lock_guard<std::mutex> lock(portable_mu_);
  portable_sent_.insert(closure.begin(), closure.end());
  return OkStatus();
}

Status ModalSandbox::Put(const FileUpload& upload) {
  std::error_code ec;
  const fs::path source(upload.source);
  SANDRUN_ASSIGN_OR_RETURN(const std::string target, UploadTarget(upload));
  if (upload.portable) {
    SANDRUN_ASSIGN_OR_RETURN(PortablePlan plan, PortablePlanFor(upload));
    for (const auto& file : plan.files) {
      {
        std::lock_guard<std::mutex> lock(portable_mu_);
        if (portable_sent_.count(file.sandbox_path)) continue;
      }
      SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(file.host_path));
      SANDRUN_RETURN_IF_ERROR(PutFile(file.sandbox_path, data, file.executable));
    }
    // A warm sandbox already has the closure: this one exec is all a task pays.
    SANDRUN_RETURN_IF_ERROR(PutFile(target, plan.LauncherScript(), true));
    std::lock_guard<std::mutex> lock(portable_mu_);
    for (const auto& file : plan.files) portable_sent_.insert(file.sandbox_path);
    return OkStatus();
  }
  // One exec per file: its directory, its content and its mode together.
  auto put_file = [&](const fs::path& host, const std::string& remote) -> Status {
    SANDRUN_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(host));
    auto perms = fs::status(host).permissions();
    return PutFile(remote, data, (perms & fs::perms::owner_exec) != fs::perms::none);
  };
  if (fs::is_directory(source, ec)) {
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
    // Every directory, empty ones included, in as few execs as the
    // command line allows.
    std::vector<std::string> directories = {target};
    for (const auto& entry : entries) {
      if (!entry.is_symlink() && entry.is_directory()) {
        directories.push_back(target + "/" +
                              entry.path().lexically_relative(source).generic_string());
      }
    }
    SANDRUN_RETURN_IF_ERROR(MakeDirectories(directories));
    for (const auto& entry : entries) {
      if (entry.is_symlink() || !entry.is_regular_file()) continue;
      SANDRUN_RETURN_IF_ERROR(put_file(
          entry.path(), target + "/" + entry.path().lexically_relative(source).generic_string()));
    }
    SANDRUN_RETURN_IF_ERROR(MakeSymlinks(links));
    return OkStatus();
  }
  return put_file(source, target);
}

// Writes "$1" (a file or a tree, symlinks as symlinks) as a tar on stdout,
// named by its last component; 3 when it does not exist, 127 when the
// image has no tar.
constexpr const char* kTarOutScript =
    "p=\"$1\"\n"
    "if [ ! -e \"$p\" ] && [ ! -L \"$p\" ]; then echo \"$p: not found\" >&2; exit 3; fi\n"
    "unset TAR_OPTIONS\n"
    "command -v tar >/dev/null 2>&1 || exit 127\n"
    "cd \"$(dirname -- \"$p\")\" || exit 4\n"
    "exec tar -c -f - \"./$(basename -- \"$p\")\"\n";

// True when every line of tar's stderr says a file changed while it was read.
bool OnlyChangedWhileRead(const std::string& err) {
  std::size_t lines = 0;
  for (std::size_t pos = 0; pos < err.size();) {
    std::size_t end = err.find('\n', pos);
    if (end == std::string::npos) end = err.size();
    std::string_view line(err.data() + pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (line.find("file changed as we read it") == std::string_view::npos) return false;
    ++lines;
  }
  return lines > 0;
}

Result<std::vector<std::string>> ModalSandbox::Get(const std::string& sandbox_path,
                                                   const fs::path& host_dir) {
  SANDRUN_ASSIGN_OR_RETURN(const std::string remote,
                           JoinSandboxPath("download path", workdir_, sandbox_path));
  const std::string base = fs::path(remote).filename().string();
  if (base.empty() || base == "." || base == "..") {
    return PermissionDeniedError("modal: refusing to download " + sandbox_path +
                                 ": it has no file name to land under " + host_dir.string());
  }
  if (no_tar_.load()) return GetFileByFile(sandbox_path, remote, base, host_dir);
  // One exec: the tree comes back as a tar, spooled to an unnamed temporary
  // file (memory stays flat whatever its size), then extracted with the
  // checks any tar from a sandbox gets (plugin_tar.h).
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> spool(std::tmpfile(), &std::fclose);
  if (!spool) return InternalError("modal: no temporary file to receive " + sandbox_path);
  bool spool_failed = false;
  RawExec exec = FileCommand({"/bin/sh", "-c", kTarOutScript, "sandrun-tar-out", remote});
  std::string err;
  exec.on_stdout = [&](std::string_view chunk) {
    if (std::fwrite(chunk.data(), 1, chunk.size(), spool.get()) != chunk.size()) {
      spool_failed = true;
    }
  };
  SANDRUN_ASSIGN_OR_RETURN(int code, RunFileExec(std::move(exec), &err));
  if (code == 3) return NotFoundError("modal: " + sandbox_path + " not found in the sandbox");
  if (code == 127) {
    no_tar_ = true;
    return GetFileByFile(sandbox_path, remote, base, host_dir);
  }
  // GNU tar's 1 with only "file changed as we read it" (something the task
  // left running still writes there): the archive is whole, take it.
  if (code != 0 && !(code == 1 && OnlyChangedWhileRead(err))) {
    return InternalError("modal: downloading " + sandbox_path + " failed: " + Tail(err, 300));
  }
  if (spool_failed || std::fflush(spool.get()) != 0) {
    return InternalError("modal: spooling " + sandbox_path + " to a temporary file failed");
  }
  std::rewind(spool.get());
  TarSource source = [&](char* data, std::size_t size) -> Result<std::size_t> {
    std::size_t got = std::fread(data, 1, size, spool.get());
    if (got == 0 && std::ferror(spool.get())) {
      return InternalError("modal: reading back the download of " + sandbox_path);
    }
    return got;
  };
  auto written = ExtractTarSafely(source, host_dir);
  if (!written.ok()) {
    return Status(written.status().code(), "modal: refusing to download " + sandbox_path + ": " +
                                               written.status().message());
  }
  std::sort(written->begin(), written->end());
  return written;
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

Result<std::vector<std::string>> ModalSandbox::GetFileByFile(const std::string& sandbox_path,
                                                             const std::string& remote,
                                                             const std::string& base,
                                                             const fs::path& host_dir) {
  RawExec list = FileCommand({"/bin/sh", "-c", kListScript, "sandrun-list", remote});
  std::string listing, err;
  list.on_stdout = [&](std::string_view chunk) { listing.append(chunk); };
  SANDRUN_ASSIGN_OR_RETURN(int code, RunFileExec(std::move(list), &err));
  if (code == 3) return NotFoundError("modal: " + sandbox_path + " not found in the sandbox");
  if (code != 0) {
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
