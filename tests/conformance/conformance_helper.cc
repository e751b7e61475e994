// conformance_helper: a static program the backend conformance suite uploads
// into a sandbox, so every case runs the same way on the host and in an image
// that has nothing but busybox. One mode per invocation:
//
//   exit N            exit with code N
//   signal N          die by signal N (default disposition restored first)
//   bytes N           write N bytes of a fixed pattern (PatternByte) to stdout
//   allbytes          write the 256 byte values 0..255 to stdout
//   utf8              write kUtf8Sample to stdout
//   streams           "to-stdout\n" on stdout, "to-stderr\n" on stderr
//   cat               copy stdin to stdout
//   checksum          print "<bytes> <fnv1a-64 hex>\n" of stdin
//   env NAME          print $NAME (exit 1 if unset)
//   pwd               print the working directory
//   sleep S           print "started\n", then sleep S seconds
//   ignore-term S     ignore SIGTERM, print "started\n", sleep S seconds
//   grandchild FILE   fork a child that writes its pid to FILE and sleeps;
//                     the parent sleeps too (both must be killed)
//   alive PID         print "alive" or "gone" (a zombie counts as gone)
//   setsid-heartbeat FILE  fork a child that leaves the process group and
//                     session (setsid) and appends a byte to FILE every 50 ms;
//                     the parent prints "started\n" and sleeps
//   size FILE         print FILE's size in bytes (-1 when missing)
//   connect-unix PATH connect to the unix socket PATH; "connected" or exit 3
//   connect PORT      TCP connect to 127.0.0.1:PORT; "connected" or exit 3
//   fork N            fork N children exiting 0..N-1, check their codes
//   alloc MB          allocate and touch MB MiB
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "conformance/helper_protocol.h"

namespace {

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool WriteText(int fd, std::string_view text) { return WriteAll(fd, text.data(), text.size()); }

void SleepSeconds(long seconds) {
  for (long i = 0; i < seconds; ++i) sleep(1);
}

int Bytes(unsigned long long count) {
  std::vector<char> chunk(64 * 1024);
  unsigned long long offset = 0;
  while (offset < count) {
    size_t n = static_cast<size_t>(std::min<unsigned long long>(chunk.size(), count - offset));
    for (size_t i = 0; i < n; ++i) chunk[i] = static_cast<char>(sandrun::conformance::PatternByte(offset + i));
    if (!WriteAll(1, chunk.data(), n)) return 1;
    offset += n;
  }
  return 0;
}

int Grandchild(const char* pid_file) {
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    FILE* f = std::fopen(pid_file, "w");
    if (f == nullptr) _exit(1);
    std::fprintf(f, "%d\n", static_cast<int>(getpid()));
    std::fclose(f);
    SleepSeconds(3600);
    _exit(0);
  }
  WriteText(1, "started\n");
  SleepSeconds(3600);
  return 0;
}

int SetsidHeartbeat(const char* file) {
  pid_t child = fork();
  if (child < 0) return 1;
  if (child == 0) {
    setsid();
    int null_fd = open("/dev/null", O_RDWR);
    for (int fd = 0; fd <= 2; ++fd) dup2(null_fd, fd);
    for (int beat = 0; beat < 20 * 60 * 10; ++beat) {  // ten minutes at most
      int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) {
        WriteText(fd, ".");
        close(fd);
      }
      usleep(50 * 1000);
    }
    _exit(0);
  }
  WriteText(1, "started\n");
  SleepSeconds(3600);
  return 0;
}

int Size(const char* file) {
  struct stat st;
  long long size = stat(file, &st) == 0 ? static_cast<long long>(st.st_size) : -1;
  return WriteText(1, std::to_string(size) + "\n") ? 0 : 1;
}

int Alive(long pid) {
  bool alive = kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
  if (alive) {
    std::string path = "/proc/" + std::to_string(pid) + "/stat";
    if (FILE* f = std::fopen(path.c_str(), "r")) {
      char buf[512] = {};
      size_t n = std::fread(buf, 1, sizeof buf - 1, f);
      std::fclose(f);
      const char* paren = std::strrchr(buf, ')');
      if (n > 0 && paren != nullptr && paren[1] == ' ' && paren[2] == 'Z') alive = false;
    }
  }
  WriteText(1, alive ? "alive\n" : "gone\n");
  return 0;
}

// Connects a fresh socket of `family` to `addr`; "connected" or exit 3.
int ConnectTo(int family, const sockaddr* addr, socklen_t len) {
  int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0) return 4;
  if (connect(fd, addr, len) != 0) {
    WriteText(1, std::string("failed: ") + std::strerror(errno) + "\n");
    close(fd);
    return 3;
  }
  close(fd);
  WriteText(1, "connected\n");
  return 0;
}

int Connect(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ConnectTo(AF_INET, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
}

int ConnectUnix(const char* path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
  return ConnectTo(AF_UNIX, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
}

int Fork(int count) {
  std::vector<pid_t> children;
  for (int i = 0; i < count; ++i) {
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid == 0) _exit(i);
    children.push_back(pid);
  }
  for (int i = 0; i < count; ++i) {
    int status = 0;
    if (waitpid(children[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != i) {
      return 1;
    }
  }
  WriteText(1, "forked " + std::to_string(count) + "\n");
  return 0;
}

int Alloc(long megabytes) {
  std::vector<char*> blocks;
  for (long i = 0; i < megabytes; ++i) {
    char* block = static_cast<char*>(std::malloc(1 << 20));
    if (block == nullptr) return 1;
    std::memset(block, 1, 1 << 20);
    blocks.push_back(block);
  }
  WriteText(1, "allocated " + std::to_string(megabytes) + "\n");
  for (char* block : blocks) std::free(block);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    WriteText(2, "usage: conformance_helper MODE [ARG]\n");
    return 2;
  }
  std::string mode = argv[1];
  const char* arg = argc > 2 ? argv[2] : "0";
  if (mode == "exit") return std::atoi(arg);
  if (mode == "signal") {
    int sig = std::atoi(arg);
    signal(sig, SIG_DFL);
    raise(sig);
    return 1;
  }
  if (mode == "bytes") return Bytes(std::strtoull(arg, nullptr, 10));
  if (mode == "allbytes") {
    char all[256];
    for (int i = 0; i < 256; ++i) all[i] = static_cast<char>(i);
    return WriteAll(1, all, sizeof all) ? 0 : 1;
  }
  if (mode == "utf8") return WriteText(1, sandrun::conformance::kUtf8Sample) ? 0 : 1;
  if (mode == "streams") return WriteText(1, "to-stdout\n") && WriteText(2, "to-stderr\n") ? 0 : 1;
  if (mode == "cat" || mode == "checksum") {
    char buf[65536];
    std::uint64_t total = 0;
    std::uint64_t hash = sandrun::conformance::kFnvOffset;
    ssize_t n;
    while ((n = read(0, buf, sizeof buf)) != 0) {
      if (n < 0) {
        if (errno == EINTR) continue;
        return 1;
      }
      if (mode == "cat" && !WriteAll(1, buf, static_cast<size_t>(n))) return 1;
      hash = sandrun::conformance::Fnv1a(hash, std::string_view(buf, static_cast<size_t>(n)));
      total += static_cast<std::uint64_t>(n);
    }
    if (mode == "checksum") {
      char line[64];
      std::snprintf(line, sizeof line, "%llu %016llx\n", static_cast<unsigned long long>(total),
                    static_cast<unsigned long long>(hash));
      WriteText(1, line);
    }
    return 0;
  }
  if (mode == "env") {
    const char* value = std::getenv(arg);
    if (value == nullptr) return 1;
    return WriteText(1, std::string(value) + "\n") ? 0 : 1;
  }
  if (mode == "pwd") {
    char buf[4096];
    if (getcwd(buf, sizeof buf) == nullptr) return 1;
    return WriteText(1, std::string(buf) + "\n") ? 0 : 1;
  }
  if (mode == "sleep" || mode == "ignore-term") {
    if (mode == "ignore-term") signal(SIGTERM, SIG_IGN);
    WriteText(1, "started\n");
    SleepSeconds(std::atol(arg));
    return 0;
  }
  if (mode == "grandchild") return Grandchild(arg);
  if (mode == "alive") return Alive(std::atol(arg));
  if (mode == "connect") return Connect(std::atoi(arg));
  if (mode == "setsid-heartbeat") return SetsidHeartbeat(arg);
  if (mode == "size") return Size(arg);
  if (mode == "connect-unix") return ConnectUnix(arg);
  if (mode == "fork") return Fork(std::atoi(arg));
  if (mode == "alloc") return Alloc(std::atol(arg));
  WriteText(2, "conformance_helper: unknown mode " + mode + "\n");
  return 2;
}
