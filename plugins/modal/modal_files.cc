// ModalSandbox::Put and Get: a file goes in with one /bin/sh exec (its
// directories, content and mode together) and a single file comes back with
// one; a directory's files are read through the in-sandbox file tool the
// SDKs use (kFsToolsPath). Directories are walked on the host side, symlinks
// checked before anything is sent; portable executables arrive with the
// libraries they need (sandrun/portable_exe.h).
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
  RawExec exec;
  exec.argv = std::move(argv);
  exec.workdir = workdir_;
  exec.stdin_data = stdin_data;
  std::string err;
  exec.on_stdout = [](std::string_view) {};
  exec.on_stderr = [&](std::string_view chunk) {
    if (err.size() < 65536) err.append(chunk);
  };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(exec));
  if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
  if (!raw.stdio_status.ok()) return raw.stdio_status;
  if (!raw.has_code || raw.code != 0) {
    return InternalError("modal: " + what + " failed: " + Tail(err, 300));
  }
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

// Lists `path` in the sandbox as NUL-separated "<type> <relative path>"
// entries (type f, d or l; the first entry describes `path` itself, as ".").
// A regular file's content follows its one entry at once: the common
// download (one file, a test's XML) is one exec.
constexpr const char* kListScript =
    "p=\"$1\"\n"
    "if [ -L \"$p\" ]; then printf 'l .\\0'; exit 0; fi\n"
    "if [ -f \"$p\" ]; then printf 'f .\\0'; exec cat -- \"$p\"; fi\n"
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
  // A regular file streams straight to host_dir/base after its entry.
  static const std::string kFileEntry("f .\0", 4);
  const fs::path single = host_dir / base;
  std::ofstream single_out;
  bool streaming = false;
  list.on_stdout = [&](std::string_view chunk) {
    if (!streaming) {
      listing.append(chunk);
      if (listing.size() < kFileEntry.size() || listing.compare(0, 4, kFileEntry) != 0) return;
      streaming = true;
      std::error_code made;
      fs::create_directories(host_dir, made);
      single_out.open(single, std::ios::binary | std::ios::trunc);
      chunk = std::string_view(listing).substr(kFileEntry.size());
    }
    single_out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (streaming && listing.size() > kFileEntry.size()) listing.resize(kFileEntry.size());
  };
  list.on_stderr = [&](std::string_view chunk) {
    if (err.size() < 65536) err.append(chunk);
  };
  SANDRUN_ASSIGN_OR_RETURN(RawResult raw, RunRaw(list));
  if (streaming) {
    single_out.close();
    const bool whole = raw.has_code && raw.code == 0 && raw.stdio_status.ok() && !raw.cancelled;
    if (!whole || !single_out) {
      std::error_code removed;
      fs::remove(single, removed);
      if (raw.cancelled) return CancelledError("modal: sandbox " + id_ + " was terminated");
      if (!raw.stdio_status.ok()) return raw.stdio_status;
      return InternalError("modal: downloading " + sandbox_path + " to " + single.string() +
                           " failed: " + Tail(err, 300));
    }
    return std::vector<std::string>{base};
  }
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
