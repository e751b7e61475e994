#include "plugin_tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <system_error>

#include "sandrun/file_util.h"
#include "sandrun/upload_symlinks.h"

namespace sandrun {
namespace {

namespace fs = std::filesystem;

struct ArchiveDeleter {
  void operator()(archive* a) const {
    if (a != nullptr) archive_free(a);
  }
};
using ArchivePtr = std::unique_ptr<archive, ArchiveDeleter>;

struct EntryDeleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using EntryPtr = std::unique_ptr<archive_entry, EntryDeleter>;

std::string ArchiveError(archive* a, std::string_view what) {
  const char* msg = archive_error_string(a);
  return "tar: " + std::string(what) + ": " + (msg != nullptr ? msg : "unknown error");
}

ArchivePtr OpenReader(std::string_view tar) {
  ArchivePtr a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_none(a.get());
  archive_read_support_filter_gzip(a.get());
  if (archive_read_open_memory(a.get(), tar.data(), tar.size()) != ARCHIVE_OK) return nullptr;
  return a;
}

// Feeds libarchive from a TarSource through a fixed buffer.
struct SourceReader {
  const TarSource* source;
  std::string buffer = std::string(1 << 16, '\0');
  Status status;
};

la_ssize_t ReadFromSource(archive* a, void* client, const void** out) {
  auto* reader = static_cast<SourceReader*>(client);
  auto got = (*reader->source)(reader->buffer.data(), reader->buffer.size());
  if (!got.ok()) {
    reader->status = got.status();
    archive_set_error(a, EIO, "%s", got.status().message().c_str());
    return -1;
  }
  *out = reader->buffer.data();
  return static_cast<la_ssize_t>(*got);
}

// `reader` must outlive the returned archive.
ArchivePtr OpenStreamReader(SourceReader* reader) {
  ArchivePtr a(archive_read_new());
  archive_read_support_format_tar(a.get());
  archive_read_support_filter_none(a.get());
  archive_read_support_filter_gzip(a.get());
  if (archive_read_open(a.get(), reader, nullptr, &ReadFromSource, nullptr) != ARCHIVE_OK) {
    return nullptr;
  }
  return a;
}

// True for a relative '/'-separated path with no "..", empty or absolute part.
bool SafeRelative(std::string_view path) {
  if (path.empty() || path.front() == '/') return false;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(start, end - start);
    if (part == "..") return false;
    start = end + 1;
  }
  return true;
}

// Normalises "./a//b/" to "a/b".
std::string CleanName(std::string_view name) {
  std::string out;
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    std::string_view part = name.substr(start, end - start);
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    start = end + 1;
  }
  return out;
}

// Whether a symlink at `entry` (relative to the root) pointing at `target`
// stays inside the root, by lexical resolution.
bool SymlinkStaysInside(const std::string& entry, std::string_view target) {
  if (target.empty() || target.front() == '/') return false;
  std::vector<std::string> parts;
  std::string dir = entry;
  std::size_t slash = dir.rfind('/');
  dir = slash == std::string::npos ? "" : dir.substr(0, slash);
  std::string joined = dir.empty() ? std::string(target) : dir + "/" + std::string(target);
  std::size_t start = 0;
  while (start <= joined.size()) {
    std::size_t end = joined.find('/', start);
    if (end == std::string::npos) end = joined.size();
    std::string part = joined.substr(start, end - start);
    if (part == "..") {
      if (parts.empty()) return false;
      parts.pop_back();
    } else if (!part.empty() && part != ".") {
      parts.push_back(part);
    }
    start = end + 1;
  }
  return true;
}

}  // namespace

struct TarBuilder::Impl {
  ArchivePtr archive;
  std::string bytes;
  TarSink sink;  // Empty: collect in `bytes`.
  Status sink_status;
  bool failed = false;
};

namespace {

constexpr std::size_t kSinkPiece = 256 * 1024;

// Collects into Impl::bytes; with a sink, hands every full piece on.
la_ssize_t WriteToImpl(archive* a, void* client, const void* buffer, size_t length) {
  auto* impl = static_cast<TarBuilder::Impl*>(client);
  impl->bytes.append(static_cast<const char*>(buffer), length);
  if (impl->sink && impl->bytes.size() >= kSinkPiece) {
    impl->sink_status = impl->sink(impl->bytes);
    impl->bytes.clear();
    if (!impl->sink_status.ok()) {
      archive_set_error(a, EIO, "%s", impl->sink_status.message().c_str());
      return -1;
    }
  }
  return static_cast<la_ssize_t>(length);
}

}  // namespace

TarBuilder::TarBuilder() : TarBuilder(TarSink()) {}

TarBuilder::TarBuilder(TarSink sink) : impl_(new Impl) {
  impl_->sink = std::move(sink);
  impl_->archive.reset(archive_write_new());
  archive_write_set_format_pax_restricted(impl_->archive.get());
  archive_write_set_bytes_in_last_block(impl_->archive.get(), 1);
  if (archive_write_open2(impl_->archive.get(), impl_, nullptr, &WriteToImpl, nullptr,
                          nullptr) != ARCHIVE_OK) {
    impl_->failed = true;
  }
}

TarBuilder::~TarBuilder() { delete impl_; }

Status TarBuilder::AddEntry(const TarEntry& e) {
  archive* a = impl_->archive.get();
  EntryPtr entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), e.name.c_str());
  archive_entry_set_mtime(entry.get(), e.mtime != 0 ? static_cast<time_t>(e.mtime) : time(nullptr), 0);
  if (e.directory) {
    archive_entry_set_filetype(entry.get(), AE_IFDIR);
    archive_entry_set_perm(entry.get(), e.mode == 0644 ? 0755 : e.mode);
  } else if (!e.hardlink_target.empty()) {
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), e.mode);
    archive_entry_set_hardlink(entry.get(), e.hardlink_target.c_str());
  } else if (!e.symlink_target.empty()) {
    archive_entry_set_filetype(entry.get(), AE_IFLNK);
    archive_entry_set_perm(entry.get(), 0777);
    archive_entry_set_symlink(entry.get(), e.symlink_target.c_str());
  } else {
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), e.mode);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.data.size()));
  }
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
    return InternalError(ArchiveError(a, "writing " + e.name));
  }
  if (!e.directory && e.symlink_target.empty() && e.hardlink_target.empty() && !e.data.empty() &&
      archive_write_data(a, e.data.data(), e.data.size()) < 0) {
    return InternalError(ArchiveError(a, "writing " + e.name));
  }
  return OkStatus();
}

namespace {

// Writes one host file, directory or symlink as the entry `name`; `follow`
// stats through a symlink (its target's content goes in). Sockets, fifos and
// devices are skipped.
Status AddPathEntry(archive* a, const fs::path& path, const std::string& name, bool follow) {
  struct stat st;
  if ((follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) != 0) {
    return NotFoundError("cannot read " + path.string() + ": " + std::strerror(errno));
  }
  EntryPtr entry(archive_entry_new());
  archive_entry_copy_stat(entry.get(), &st);
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_uid(entry.get(), 0);
  archive_entry_set_gid(entry.get(), 0);
  archive_entry_set_uname(entry.get(), "root");
  archive_entry_set_gname(entry.get(), "root");
  if (S_ISLNK(st.st_mode)) {
    std::error_code lec;
    fs::path target = fs::read_symlink(path, lec);
    archive_entry_set_symlink(entry.get(), target.c_str());
  } else if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
    return OkStatus();
  }
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
    return InternalError(ArchiveError(a, "adding " + path.string()));
  }
  if (S_ISREG(st.st_mode)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return PermissionDeniedError("cannot open " + path.string());
    std::string buffer(1 << 16, '\0');
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      std::streamsize got = in.gcount();
      if (got > 0 && archive_write_data(a, buffer.data(), static_cast<size_t>(got)) < 0) {
        return InternalError(ArchiveError(a, "adding " + path.string()));
      }
    }
  }
  return OkStatus();
}

// Everything under directory `root`, sorted so the same tree always gives the
// same tar order.
Result<std::vector<fs::path>> SortedTree(const fs::path& root) {
  std::error_code ec;
  std::vector<fs::path> paths;
  for (auto it = fs::recursive_directory_iterator(root, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    paths.push_back(it->path());
  }
  if (ec) return PermissionDeniedError("cannot walk " + root.string() + ": " + ec.message());
  std::sort(paths.begin(), paths.end());
  return paths;
}

std::string EntryName(const std::string& entry_name, const fs::path& path, const fs::path& root) {
  std::string rel = path.lexically_relative(root).generic_string();
  return entry_name.empty() ? rel : entry_name + "/" + rel;
}

}  // namespace

Status TarBuilder::AddHostPath(const fs::path& source, const std::string& entry_name) {
  archive* a = impl_->archive.get();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(source, ec))) {
    return NotFoundError("no such file or directory: " + source.string());
  }
  if (!entry_name.empty()) SANDRUN_RETURN_IF_ERROR(AddPathEntry(a, source, entry_name, false));
  if (fs::is_directory(fs::symlink_status(source, ec))) {
    SANDRUN_ASSIGN_OR_RETURN(std::vector<fs::path> paths, SortedTree(source));
    for (const auto& p : paths) {
      SANDRUN_RETURN_IF_ERROR(AddPathEntry(a, p, EntryName(entry_name, p, source), false));
    }
  }
  return OkStatus();
}

Status TarBuilder::AddUpload(const fs::path& source, const std::string& entry_name) {
  archive* a = impl_->archive.get();
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(source, ec))) {
    return NotFoundError("no such file or directory: " + source.string());
  }
  if (!fs::exists(fs::status(source, ec))) {
    return NotFoundError("upload source " + source.string() + " is a symlink to '" +
                         fs::read_symlink(source, ec).string() + "', which does not exist");
  }
  if (!fs::is_directory(fs::status(source, ec))) {
    return AddPathEntry(a, source, entry_name, /*follow=*/true);
  }
  SANDRUN_ASSIGN_OR_RETURN(std::vector<fs::path> paths, SortedTree(source));
  // Every link is checked before anything is written: a refused upload sends nothing.
  for (const auto& p : paths) {
    if (fs::is_symlink(fs::symlink_status(p, ec))) {
      SANDRUN_RETURN_IF_ERROR(CheckUploadSymlink(source, p));
    }
  }
  if (!entry_name.empty()) SANDRUN_RETURN_IF_ERROR(AddPathEntry(a, source, entry_name, true));
  for (const auto& p : paths) {
    SANDRUN_RETURN_IF_ERROR(AddPathEntry(a, p, EntryName(entry_name, p, source), false));
  }
  return OkStatus();
}

Result<std::string> TarBuilder::Finish() {
  if (impl_->failed) return InternalError("tar: cannot open the archive writer");
  if (!impl_->sink_status.ok()) return impl_->sink_status;
  if (archive_write_close(impl_->archive.get()) != ARCHIVE_OK) {
    if (!impl_->sink_status.ok()) return impl_->sink_status;
    return InternalError(ArchiveError(impl_->archive.get(), "closing"));
  }
  if (impl_->sink) {
    SANDRUN_RETURN_IF_ERROR(impl_->sink(impl_->bytes));
    impl_->bytes.clear();
  }
  return std::move(impl_->bytes);
}

Result<std::string> TarFromHost(const fs::path& source, const std::string& entry_name) {
  TarBuilder builder;
  SANDRUN_RETURN_IF_ERROR(builder.AddHostPath(source, entry_name));
  return builder.Finish();
}

Result<std::string> TarOfUpload(const fs::path& source, const std::string& entry_name) {
  TarBuilder builder;
  SANDRUN_RETURN_IF_ERROR(builder.AddUpload(source, entry_name));
  return builder.Finish();
}

Result<std::string> TarOfEntries(const std::vector<TarEntry>& entries) {
  TarBuilder builder;
  for (const auto& e : entries) SANDRUN_RETURN_IF_ERROR(builder.AddEntry(e));
  return builder.Finish();
}

namespace {

// A reader's failure: the source's own Status when it broke, else libarchive's.
Status ReadError(archive* a, const SourceReader* reader, std::string_view what) {
  if (reader != nullptr && !reader->status.ok()) return reader->status;
  return InternalError(ArchiveError(a, what));
}

// Calls `visit` with each entry's header of an opened archive, to its end;
// `visit` reads or skips the entry's data.
Status ForEachEntry(const ArchivePtr& a, const SourceReader* reader,
                    const std::function<Status(archive_entry*)>& visit) {
  if (!a) return InternalError("tar: cannot open the stream");
  archive_entry* entry = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a.get(), &entry)) == ARCHIVE_OK) {
    SANDRUN_RETURN_IF_ERROR(visit(entry));
  }
  if (rc != ARCHIVE_EOF) return ReadError(a.get(), reader, "reading");
  return OkStatus();
}

// Appends the data of the entry just read to `data`.
Status ReadEntryData(archive* a, const SourceReader* reader, std::string& data) {
  char buffer[1 << 16];
  la_ssize_t n;
  while ((n = archive_read_data(a, buffer, sizeof buffer)) > 0) {
    data.append(buffer, static_cast<std::size_t>(n));
  }
  if (n < 0) return ReadError(a, reader, "reading data");
  return OkStatus();
}

Result<std::vector<TarMember>> ListOpened(ArchivePtr a, const SourceReader* reader) {
  std::vector<TarMember> out;
  SANDRUN_RETURN_IF_ERROR(ForEachEntry(a, reader, [&](archive_entry* entry) {
    TarMember m;
    m.name = archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "";
    m.directory = archive_entry_filetype(entry) == AE_IFDIR;
    m.symlink = archive_entry_filetype(entry) == AE_IFLNK;
    m.size = archive_entry_size(entry);
    out.push_back(std::move(m));
    archive_read_data_skip(a.get());
    return OkStatus();
  }));
  return out;
}

Result<std::string> ReadFirstOpened(ArchivePtr a, const SourceReader* reader) {
  if (!a) return InternalError("tar: cannot open the stream");
  archive_entry* entry = nullptr;
  int rc = archive_read_next_header(a.get(), &entry);
  if (rc == ARCHIVE_EOF) return NotFoundError("tar: empty archive");
  if (rc != ARCHIVE_OK) return ReadError(a.get(), reader, "reading");
  if (archive_entry_filetype(entry) == AE_IFDIR) {
    return InvalidArgumentError(std::string("is a directory: ") + archive_entry_pathname(entry));
  }
  std::string data;
  SANDRUN_RETURN_IF_ERROR(ReadEntryData(a.get(), reader, data));
  return data;
}

Result<std::vector<std::string>> ExtractOpened(const std::function<ArchivePtr()>& open,
                                               const SourceReader* reader,
                                               const fs::path& host_dir, std::string_view strip);

}  // namespace

Result<std::vector<TarEntry>> ReadTarEntries(std::string_view tar) {
  ArchivePtr a = OpenReader(tar);
  std::vector<TarEntry> out;
  SANDRUN_RETURN_IF_ERROR(ForEachEntry(a, nullptr, [&](archive_entry* entry) {
    TarEntry e;
    e.name = CleanName(archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "");
    e.mode = static_cast<int>(archive_entry_perm(entry));
    e.directory = archive_entry_filetype(entry) == AE_IFDIR;
    if (const char* target = archive_entry_hardlink(entry)) e.hardlink_target = CleanName(target);
    if (archive_entry_filetype(entry) == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      e.symlink_target = target != nullptr ? target : "";
    }
    SANDRUN_RETURN_IF_ERROR(ReadEntryData(a.get(), nullptr, e.data));
    if (!e.name.empty()) out.push_back(std::move(e));
    return OkStatus();
  }));
  return out;
}

Result<std::vector<TarMember>> ListTar(std::string_view tar) {
  return ListOpened(OpenReader(tar), nullptr);
}

Result<std::vector<TarMember>> ListTar(const TarSource& tar) {
  SourceReader reader{&tar};
  return ListOpened(OpenStreamReader(&reader), &reader);
}

Result<std::vector<TarEntry>> ReadTarFiles(const TarSource& tar,
                                           const std::function<bool(const std::string&)>& wanted) {
  SourceReader reader{&tar};
  ArchivePtr a = OpenStreamReader(&reader);
  std::vector<TarEntry> out;
  SANDRUN_RETURN_IF_ERROR(ForEachEntry(a, &reader, [&](archive_entry* entry) {
    const char* name = archive_entry_pathname(entry);
    if (archive_entry_filetype(entry) != AE_IFREG || name == nullptr || !wanted(name)) {
      archive_read_data_skip(a.get());
      return OkStatus();
    }
    TarEntry file;
    file.name = name;
    SANDRUN_RETURN_IF_ERROR(ReadEntryData(a.get(), &reader, file.data));
    out.push_back(std::move(file));
    return OkStatus();
  }));
  return out;
}

Result<std::string> ReadFirstFile(std::string_view tar) {
  return ReadFirstOpened(OpenReader(tar), nullptr);
}

Result<std::string> ReadFirstFile(const TarSource& tar) {
  SourceReader reader{&tar};
  return ReadFirstOpened(OpenStreamReader(&reader), &reader);
}

Result<std::vector<std::string>> ExtractTarSafelyStripping(std::string_view tar,
                                                           const fs::path& host_dir,
                                                           std::string_view strip) {
  return ExtractOpened([&] { return OpenReader(tar); }, nullptr, host_dir, strip);
}

Result<std::vector<std::string>> ExtractTarSafely(const TarSource& tar, const fs::path& host_dir) {
  SourceReader reader{&tar};
  return ExtractOpened([&] { return OpenStreamReader(&reader); }, &reader, host_dir, "");
}

namespace {

Result<std::vector<std::string>> ExtractOpened(const std::function<ArchivePtr()>& open,
                                               const SourceReader* reader,
                                               const fs::path& host_dir, std::string_view strip) {
  std::error_code ec;
  fs::create_directories(host_dir, ec);
  if (ec) return PermissionDeniedError("cannot create " + host_dir.string() + ": " + ec.message());
  // A canonical root: libarchive's symlink check then sees no symlink above it.
  const fs::path root = fs::canonical(host_dir, ec);
  if (ec) return PermissionDeniedError("cannot resolve " + host_dir.string() + ": " + ec.message());

  ArchivePtr in = open();
  if (!in) return InternalError("tar: cannot open the stream");
  ArchivePtr out(archive_write_disk_new());
  archive_write_disk_set_options(out.get(), ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM |
                                                ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                                                ARCHIVE_EXTRACT_SECURE_NODOTDOT);
  std::vector<std::string> written;
  std::vector<std::string> symlinks;
  const std::string strip_clean = CleanName(strip);
  archive_entry* entry = nullptr;
  int rc;
  while ((rc = archive_read_next_header(in.get(), &entry)) == ARCHIVE_OK) {
    const char* raw = archive_entry_pathname(entry);
    std::string raw_name = raw != nullptr ? raw : "";
    if (raw_name.empty() || raw_name.front() == '/' || !SafeRelative(raw_name)) {
      return PermissionDeniedError("refusing tar entry '" + raw_name +
                                   "': path escapes the target directory");
    }
    std::string name = CleanName(raw_name);
    if (!strip_clean.empty()) {
      if (name == strip_clean) {
        archive_read_data_skip(in.get());
        continue;
      }
      if (name.rfind(strip_clean + "/", 0) != 0) {
        archive_read_data_skip(in.get());
        continue;
      }
      name = name.substr(strip_clean.size() + 1);
    }
    if (name.empty()) {
      archive_read_data_skip(in.get());
      continue;
    }
    const char* hardlink = archive_entry_hardlink(entry);
    if (hardlink != nullptr) {
      std::string link = CleanName(hardlink);
      if (!SafeRelative(hardlink) || link.empty()) {
        return PermissionDeniedError("refusing tar entry '" + raw_name + "': hard link to '" +
                                     hardlink + "' outside the target directory");
      }
      if (!strip_clean.empty()) {
        if (link.rfind(strip_clean + "/", 0) != 0) {
          return PermissionDeniedError("refusing tar entry '" + raw_name + "': hard link to '" +
                                       hardlink + "' outside the target directory");
        }
        link = link.substr(strip_clean.size() + 1);
      }
      archive_entry_copy_hardlink(entry, (root / link).c_str());
    }
    auto type = archive_entry_filetype(entry);
    if (hardlink == nullptr && type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK) {
      archive_read_data_skip(in.get());  // Devices, fifos, sockets: never created.
      continue;
    }
    if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr || !SymlinkStaysInside(name, target)) {
        return PermissionDeniedError("refusing tar entry '" + raw_name + "': symlink to '" +
                                     (target ? target : "") + "' points outside the target directory");
      }
    }
    archive_entry_set_perm(entry, archive_entry_perm(entry) & 0777);  // No setuid/setgid.
    archive_entry_copy_pathname(entry, (root / name).c_str());
    if (archive_write_header(out.get(), entry) != ARCHIVE_OK) {
      return PermissionDeniedError(ArchiveError(out.get(), "refusing tar entry '" + raw_name + "'"));
    }
    if (type == AE_IFREG && hardlink == nullptr) {
      const void* block;
      size_t size;
      la_int64_t offset;
      int r;
      while ((r = archive_read_data_block(in.get(), &block, &size, &offset)) == ARCHIVE_OK) {
        if (archive_write_data_block(out.get(), block, size, offset) != ARCHIVE_OK) {
          return PermissionDeniedError(ArchiveError(out.get(), "writing " + name));
        }
      }
      if (r != ARCHIVE_EOF) return ReadError(in.get(), reader, "reading " + raw_name);
    }
    if (archive_write_finish_entry(out.get()) != ARCHIVE_OK) {
      return PermissionDeniedError(ArchiveError(out.get(), "finishing " + name));
    }
    if (type == AE_IFLNK) symlinks.push_back(name);
    if (type != AE_IFDIR) written.push_back(name);
  }
  if (rc != ARCHIVE_EOF) return ReadError(in.get(), reader, "reading");
  if (archive_write_close(out.get()) != ARCHIVE_OK) {
    return PermissionDeniedError(ArchiveError(out.get(), "closing"));
  }
  // Lexical checks cannot see a chain of links (a -> ".", b -> "a/../x"); check
  // where each link really leads now that all of them exist.
  for (const auto& name : symlinks) {
    fs::path resolved = fs::weakly_canonical(root / name, ec);
    if (ec || !IsWithin(resolved, root)) {
      fs::remove(root / name, ec);
      return PermissionDeniedError("refusing tar entry '" + name +
                                   "': symlink resolves outside the target directory");
    }
  }
  return written;
}

}  // namespace

Result<std::vector<std::string>> ExtractTarSafely(std::string_view tar, const fs::path& host_dir) {
  return ExtractTarSafelyStripping(tar, host_dir, "");
}

}  // namespace sandrun
