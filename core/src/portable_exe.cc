#include "sandrun/portable_exe.h"

#include <elf.h>
#include <fcntl.h>
#include <glob.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>

namespace sandrun {
namespace {

namespace fs = std::filesystem;

struct ElfInfo {
  std::uint16_t machine = 0;
  std::string interpreter;
  std::vector<std::string> needed;
  std::vector<std::string> rpath;
  std::vector<std::string> runpath;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

bool ReadAt(int fd, void* out, std::size_t size, std::uint64_t offset) {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

std::vector<std::string> SplitPath(std::string_view list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    std::size_t end = list.find(':', start);
    if (end == std::string_view::npos) end = list.size();
    if (end > start) out.emplace_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// Reads what the loader needs from an ELF64 little-endian file.
Result<ElfInfo> ReadElf(const fs::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return NotFoundError("cannot open " + path.string() + ": " + std::strerror(errno));
  Elf64_Ehdr eh;
  if (!ReadAt(fd.get(), &eh, sizeof eh, 0) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    return InvalidArgumentError(path.string() + " is not an ELF file");
  }
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB) {
    return InvalidArgumentError(path.string() + " is not a 64-bit little-endian ELF file");
  }
  ElfInfo info;
  info.machine = eh.e_machine;
  std::vector<Elf64_Phdr> phdrs(eh.e_phnum);
  for (std::size_t i = 0; i < phdrs.size(); ++i) {
    if (!ReadAt(fd.get(), &phdrs[i], sizeof(Elf64_Phdr), eh.e_phoff + i * eh.e_phentsize)) {
      return InvalidArgumentError(path.string() + ": truncated program headers");
    }
  }
  auto file_offset = [&](std::uint64_t vaddr) -> std::optional<std::uint64_t> {
    for (const auto& ph : phdrs) {
      if (ph.p_type == PT_LOAD && vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_filesz) {
        return vaddr - ph.p_vaddr + ph.p_offset;
      }
    }
    return std::nullopt;
  };
  for (const auto& ph : phdrs) {
    if (ph.p_type == PT_INTERP && ph.p_filesz > 0 && ph.p_filesz < 4096) {
      std::string interp(ph.p_filesz, '\0');
      if (!ReadAt(fd.get(), interp.data(), interp.size(), ph.p_offset)) {
        return InvalidArgumentError(path.string() + ": truncated PT_INTERP");
      }
      info.interpreter = interp.c_str();
    }
    if (ph.p_type != PT_DYNAMIC) continue;
    std::vector<Elf64_Dyn> dyn(ph.p_filesz / sizeof(Elf64_Dyn));
    if (!dyn.empty() && !ReadAt(fd.get(), dyn.data(), dyn.size() * sizeof(Elf64_Dyn), ph.p_offset)) {
      return InvalidArgumentError(path.string() + ": truncated dynamic section");
    }
    std::uint64_t strtab = 0, strsz = 0;
    std::vector<std::uint64_t> needed, rpath, runpath;
    for (const auto& d : dyn) {
      if (d.d_tag == DT_NULL) break;
      switch (d.d_tag) {
        case DT_STRTAB: strtab = d.d_un.d_ptr; break;
        case DT_STRSZ: strsz = d.d_un.d_val; break;
        case DT_NEEDED: needed.push_back(d.d_un.d_val); break;
        case DT_RPATH: rpath.push_back(d.d_un.d_val); break;
        case DT_RUNPATH: runpath.push_back(d.d_un.d_val); break;
        default: break;
      }
    }
    auto offset = file_offset(strtab);
    if (!offset || strsz == 0 || strsz > (64u << 20)) {
      if (needed.empty()) break;
      return InvalidArgumentError(path.string() + ": cannot locate the dynamic string table");
    }
    std::string strings(strsz, '\0');
    if (!ReadAt(fd.get(), strings.data(), strings.size(), *offset)) {
      return InvalidArgumentError(path.string() + ": truncated string table");
    }
    auto str = [&](std::uint64_t at) {
      return at < strings.size() ? std::string(strings.c_str() + at) : std::string();
    };
    for (auto n : needed) info.needed.push_back(str(n));
    for (auto r : rpath) for (auto& d : SplitPath(str(r))) info.rpath.push_back(d);
    for (auto r : runpath) for (auto& d : SplitPath(str(r))) info.runpath.push_back(d);
  }
  return info;
}

// Directories of ld.so.conf and the files it includes (globs allowed).
void ReadLdSoConf(const fs::path& conf, std::vector<std::string>& dirs, int depth = 0) {
  if (depth > 8) return;
  std::ifstream in(conf);
  std::string line;
  while (std::getline(in, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string word;
    if (!(words >> word)) continue;
    if (word == "include") {
      std::string pattern;
      while (words >> pattern) {
        if (pattern.front() != '/') pattern = (conf.parent_path() / pattern).string();
        glob_t g{};
        if (::glob(pattern.c_str(), 0, nullptr, &g) == 0) {
          for (std::size_t i = 0; i < g.gl_pathc; ++i) ReadLdSoConf(g.gl_pathv[i], dirs, depth + 1);
        }
        ::globfree(&g);
      }
    } else if (word.front() == '/') {
      dirs.push_back(word);
    }
  }
}

std::string ExpandOrigin(std::string dir, const fs::path& object) {
  const std::string origin = object.parent_path().string();
  for (const char* token : {"${ORIGIN}", "$ORIGIN"}) {
    std::size_t at;
    while ((at = dir.find(token)) != std::string::npos) dir.replace(at, std::strlen(token), origin);
  }
  return dir;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') out += "'\\''";
    else out += c;
  }
  return out + "'";
}

// Feeds `read(buffer) -> bytes` chunks to SHA-256 until it returns 0.
template <typename Reader>
std::string Sha256Of(Reader&& read) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::string buffer(1 << 16, '\0');
  for (std::size_t n; (n = read(buffer)) > 0;) EVP_DigestUpdate(ctx.get(), buffer.data(), n);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_DigestFinal_ex(ctx.get(), digest, &length);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < length; ++i) {
    hex += kHex[digest[i] >> 4];
    hex += kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace

Result<std::string> Sha256OfFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot read " + path.string());
  std::string hex = Sha256Of([&](std::string& buffer) -> std::size_t {
    if (!in) return 0;
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    return static_cast<std::size_t>(in.gcount());
  });
  if (in.bad()) return InternalError("error reading " + path.string());
  return hex;
}

std::string Sha256Hex(std::string_view data) {
  return Sha256Of([&](std::string& buffer) -> std::size_t {
    std::size_t n = std::min(buffer.size(), data.size());
    data.copy(buffer.data(), n);
    data.remove_prefix(n);
    return n;
  });
}

namespace {

// Hashing a large test binary takes a noticeable fraction of a second, and an
// adapter plans the same binary for every sandbox: hashes are remembered for
// the life of the process, keyed by what changes when the file does.
Result<std::string> CachedSha256OfFile(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return Sha256OfFile(path);
  const std::string key = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
                          std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) +
                          "." + std::to_string(st.st_mtim.tv_nsec) + ":" +
                          std::to_string(st.st_ctim.tv_sec) + "." +
                          std::to_string(st.st_ctim.tv_nsec);
  static std::mutex mu;
  static std::map<std::string, std::string> known;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = known.find(key); it != known.end()) return it->second;
  }
  SANDRUN_ASSIGN_OR_RETURN(std::string sha, Sha256OfFile(path));
  std::lock_guard<std::mutex> lock(mu);
  known[key] = sha;
  return sha;
}

}  // namespace

Result<PortablePlan> PlanPortableExecutable(const fs::path& executable,
                                            const PortableOptions& options) {
  std::error_code ec;
  if (!fs::is_regular_file(executable, ec)) {
    return NotFoundError("no such executable: " + executable.string());
  }
  SANDRUN_ASSIGN_OR_RETURN(ElfInfo exe, ReadElf(executable));
  PortablePlan plan;
  std::set<std::string> sent;
  auto add = [&](const fs::path& host, const std::string& name, bool exec) -> Result<std::string> {
    fs::path real = fs::canonical(host, ec);
    if (ec) return NotFoundError("cannot resolve " + host.string() + ": " + ec.message());
    SANDRUN_ASSIGN_OR_RETURN(std::string sha, CachedSha256OfFile(real));
    PortableFile f{real, sha, std::string(kPortableExeRoot) + "/" + sha + "/" + name, exec};
    if (sent.insert(f.sandbox_path).second) plan.files.push_back(f);
    return f.sandbox_path;
  };
  SANDRUN_ASSIGN_OR_RETURN(plan.exe_sandbox_path,
                           add(executable, executable.filename().string(), true));
  if (exe.interpreter.empty()) return plan;  // Static: nothing else to send.
  plan.host_interpreter = exe.interpreter;
  SANDRUN_ASSIGN_OR_RETURN(
      plan.interpreter_sandbox_path,
      add(exe.interpreter, fs::path(exe.interpreter).filename().string(), true));

  std::vector<std::string> conf_dirs;
  ReadLdSoConf(options.ld_so_conf, conf_dirs);
  const std::vector<std::string> ld_library_path = SplitPath(options.ld_library_path);

  struct Pending {
    std::string name;
    fs::path needed_by;
    ElfInfo by;
  };
  std::deque<Pending> queue;
  for (const auto& n : exe.needed) queue.push_back({n, executable, exe});
  std::set<std::string> resolved_names;
  std::set<std::string> dirs_seen;
  while (!queue.empty()) {
    Pending p = std::move(queue.front());
    queue.pop_front();
    if (!resolved_names.insert(p.name).second) continue;
    std::vector<std::string> search;
    if (p.name.find('/') == std::string::npos) {
      if (p.by.runpath.empty()) {
        for (const auto& d : p.by.rpath) search.push_back(ExpandOrigin(d, p.needed_by));
        if (p.needed_by != executable) {
          for (const auto& d : exe.rpath) search.push_back(ExpandOrigin(d, executable));
        }
      }
      search.insert(search.end(), ld_library_path.begin(), ld_library_path.end());
      for (const auto& d : p.by.runpath) search.push_back(ExpandOrigin(d, p.needed_by));
      search.insert(search.end(), conf_dirs.begin(), conf_dirs.end());
      search.insert(search.end(), options.default_dirs.begin(), options.default_dirs.end());
    }
    fs::path found;
    ElfInfo info;
    auto try_candidate = [&](const fs::path& candidate) {
      if (!fs::is_regular_file(candidate, ec)) return false;
      auto elf = ReadElf(candidate);
      if (!elf.ok() || elf->machine != exe.machine) return false;  // e.g. a 32-bit copy
      found = candidate;
      info = std::move(elf).value();
      return true;
    };
    if (search.empty()) {
      try_candidate(p.name);
    } else {
      for (const auto& dir : search) {
        if (try_candidate(fs::path(dir) / p.name)) break;
      }
    }
    if (found.empty()) {
      return NotFoundError("shared library " + p.name + " (needed by " + p.needed_by.string() +
                           ") not found on this host");
    }
    // The loader itself may appear as a dependency of libc: already sent.
    const std::string name = fs::path(p.name).filename().string();
    SANDRUN_ASSIGN_OR_RETURN(std::string where, add(found, name, false));
    if (where != plan.interpreter_sandbox_path) {
      std::string dir = fs::path(where).parent_path().string();
      if (dirs_seen.insert(dir).second) plan.library_dirs.push_back(dir);
    }
    for (const auto& n : info.needed) queue.push_back({n, found, info});
  }
  return plan;
}

std::vector<std::string> PortablePlan::WrapArgv(const std::vector<std::string>& args) const {
  std::vector<std::string> argv;
  if (!interpreter_sandbox_path.empty()) {
    argv.push_back(interpreter_sandbox_path);
    if (!library_dirs.empty()) {
      std::string joined;
      for (const auto& d : library_dirs) joined += (joined.empty() ? "" : ":") + d;
      argv.push_back("--library-path");
      argv.push_back(joined);
    }
  }
  argv.push_back(exe_sandbox_path);
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

std::string PortablePlan::LauncherScript() const {
  std::string script = "#!/bin/sh\n# sandrun portable launcher\nexec";
  for (const auto& word : WrapArgv({})) script += " " + ShellQuote(word);
  return script + " \"$@\"\n";
}

}  // namespace sandrun
