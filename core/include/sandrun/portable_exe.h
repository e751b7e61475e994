// Portable executables: running a binary built on the host in an image that
// lacks its shared libraries (busybox, distroless, another distribution).
//
// PlanPortableExecutable reads the executable's ELF headers, finds its
// interpreter (PT_INTERP) and the closure of its DT_NEEDED libraries resolved
// the way the dynamic loader does (DT_RPATH of the loading objects when there
// is no DT_RUNPATH, LD_LIBRARY_PATH, DT_RUNPATH, the directories of
// /etc/ld.so.conf, then the default directories; $ORIGIN expanded), and
// content-addresses every file by SHA-256. Every file lands in the sandbox as
// /sandrun/exe/<sha256>/<name>, where <name> is the name the loader looks for,
// so the same file is sent once however many executables need it, and the
// command becomes
//
//   /sandrun/exe/<sha>/ld-linux-x86-64.so.2 --library-path <dirs> <exe> args...
//
// Limits: 64-bit little-endian ELF only; dlopen()ed libraries are not found
// (they are not in DT_NEEDED); /proc/self/exe is the loader, not the program,
// so a program that re-executes itself through it needs the real loader path.
// A static executable has no interpreter and is sent alone.
#ifndef SANDRUN_PORTABLE_EXE_H_
#define SANDRUN_PORTABLE_EXE_H_

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "sandrun/status.h"

namespace sandrun {

/// Where portable files live inside a sandbox.
inline constexpr const char* kPortableExeRoot = "/sandrun/exe";

/// One host file to send.
struct PortableFile {
  std::filesystem::path host_path;  ///< The real file (symlinks resolved).
  std::string sha256;               ///< Lowercase hex of its content.
  std::string sandbox_path;         ///< /sandrun/exe/<sha256>/<name>.
  bool executable = false;          ///< Mode 0755 rather than 0644.
};

struct PortablePlan {
  /// The executable first, then the interpreter (if any), then libraries in
  /// the order they were found; no two with the same sandbox_path.
  std::vector<PortableFile> files;
  std::string exe_sandbox_path;
  std::string interpreter_sandbox_path;   ///< Empty for a static executable.
  std::vector<std::string> library_dirs;  ///< Sandbox dirs holding the libraries.
  /// The host's interpreter path (PT_INTERP), for messages.
  std::string host_interpreter;

  /// The argv that runs the executable with `args` through the bundled loader.
  std::vector<std::string> WrapArgv(const std::vector<std::string>& args) const;
  /// A POSIX sh script that execs WrapArgv("$@"): installed in place of the
  /// executable so users keep calling it by its name.
  std::string LauncherScript() const;
};

struct PortableOptions {
  /// LD_LIBRARY_PATH to honour (the host's, normally); ':'-separated.
  std::string ld_library_path;
  /// The loader configuration; its "include" lines are followed.
  std::filesystem::path ld_so_conf = "/etc/ld.so.conf";
  /// Searched last, as the loader's built-in directories.
  std::vector<std::string> default_dirs = {"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                           "/lib64", "/usr/lib64", "/lib", "/usr/lib"};
};

/// Plans the upload of `executable`. kNotFound when it or a needed library is
/// missing (naming the library and who needs it); kInvalidArgument for a file
/// that is not a 64-bit ELF executable.
Result<PortablePlan> PlanPortableExecutable(const std::filesystem::path& executable,
                                            const PortableOptions& options = {});

/// SHA-256 of a file's content as lowercase hex (OpenSSL).
Result<std::string> Sha256OfFile(const std::filesystem::path& path);
/// SHA-256 of `data` as lowercase hex.
std::string Sha256Hex(std::string_view data);

}  // namespace sandrun

#endif  // SANDRUN_PORTABLE_EXE_H_
