#include "service.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "sandrun/interrupts.h"
#include "sandrun/task_json.h"

namespace sandrun::cli {
namespace {

using json = nlohmann::json;

// No frame is larger: output comes in the chunks the command wrote.
constexpr std::size_t kMaxServiceFrame = 64u << 20;

bool WriteFully(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

bool ReadFully(int fd, char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::read(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

bool WriteServiceFrame(int fd, ServiceFrame type, std::string_view payload) {
  const std::uint32_t size = static_cast<std::uint32_t>(payload.size() + 1);
  char header[5] = {static_cast<char>((size >> 24) & 0xff), static_cast<char>((size >> 16) & 0xff),
                    static_cast<char>((size >> 8) & 0xff), static_cast<char>(size & 0xff),
                    static_cast<char>(type)};
  return WriteFully(fd, header, sizeof header) && WriteFully(fd, payload.data(), payload.size());
}

std::optional<std::pair<ServiceFrame, std::string>> ReadServiceFrame(int fd) {
  unsigned char header[5];
  if (!ReadFully(fd, reinterpret_cast<char*>(header), sizeof header)) return std::nullopt;
  const std::size_t size = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                           (std::size_t{header[2]} << 8) | std::size_t{header[3]};
  if (size == 0 || size > kMaxServiceFrame) return std::nullopt;
  std::string payload(size - 1, '\0');
  if (!ReadFully(fd, payload.data(), payload.size())) return std::nullopt;
  return std::make_pair(static_cast<ServiceFrame>(header[4]), std::move(payload));
}

std::string ServiceFingerprint(const Config& config) {
  json sections = json::object();
  for (const auto& [name, text] : config.backend_sections) sections[name] = text;
  return json{{"backend", config.backend},
              {"fallback", config.fallback},
              {"backend_sections", sections},
              {"plugin_path", config.plugin_path},
              {"archive_dir", config.archive_dir.string()},
              {"state_dir", config.state_dir.string()}}
      .dump();
}

bool PeerIsThisUser(int fd, long* peer_uid) {
  ucred peer{};
  socklen_t peer_size = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_size) != 0) {
    *peer_uid = -1;
    return false;
  }
  *peer_uid = static_cast<long>(peer.uid);
  return peer.uid == ::geteuid();
}

int ConnectServiceSocket(const std::filesystem::path& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string text = path.string();
  if (text.size() >= sizeof address.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  std::memcpy(address.sun_path, text.c_str(), text.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

ServedExec ExecThroughService(const std::filesystem::path& socket, const Task& task,
                              const ServiceRequestOptions& options, const Config& config,
                              bool live_output) {
  ServedExec served;
  Result<std::string> task_json = TaskToJson(task);
  if (!task_json.ok()) {
    served.message = task_json.status().message();
    return served;
  }
  if (task.exec.stdin_data && task.exec.stdin_data->size() + 1 > kMaxServiceFrame) {
    served.message = "its stdin is larger than the service takes";
    return served;
  }
  int fd = ConnectServiceSocket(socket);
  if (fd < 0) {
    served.message = "no service answers at " + socket.string() + ": " + std::strerror(errno);
    return served;
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  // Only a service of this user gets the task (and is believed).
  if (long peer_uid = -1; !PeerIsThisUser(fd, &peer_uid)) {
    served.message = "the service at " + socket.string() + " runs as another user (uid " +
                     std::to_string(peer_uid) + ")";
    return served;
  }
  json request = {{"version", kServiceProtocolVersion},
                  {"task", json::parse(*task_json)},
                  {"options",
                   {{"run_group", options.run_group},
                    {"run_group_owner_pid", options.run_group_owner_pid},
                    {"retries", options.retries},
                    {"command_line", options.command_line},
                    {"labels", options.labels}}},
                  {"fingerprint", ServiceFingerprint(config)}};
  std::string request_text;
  try {
    request_text = request.dump();
  } catch (const json::exception& e) {
    served.message = std::string("the request cannot be sent as JSON: ") + e.what();
    return served;
  }
  if (!WriteServiceFrame(fd, ServiceFrame::kRequest, request_text) ||
      (task.exec.stdin_data && !WriteServiceFrame(fd, ServiceFrame::kStdin, *task.exec.stdin_data))) {
    served.message = "the service at " + socket.string() + " closed the connection";
    return served;
  }
  bool cancel_sent = false;
  auto heard = std::chrono::steady_clock::now();
  for (;;) {
    // Ctrl-C: half-close, which the service takes as a cancel; it still
    // answers with the record of the cancelled task.
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, 100);
    if (!cancel_sent && InterruptFlag().cancelled()) {
      ::shutdown(fd, SHUT_WR);
      cancel_sent = true;
    }
    if (ready <= 0) {
      if (std::chrono::steady_clock::now() - heard > kServiceSilenceLimit) {
        served.kind = ServedExec::Kind::kFailed;
        served.status_code = static_cast<int>(StatusCode::kUnavailable);
        served.message = "the service at " + socket.string() + " stopped answering (nothing for " +
                         std::to_string(kServiceSilenceLimit.count()) + " s)";
        return served;
      }
      continue;
    }
    heard = std::chrono::steady_clock::now();
    auto frame = ReadServiceFrame(fd);
    if (!frame) {
      served.kind = ServedExec::Kind::kFailed;
      served.status_code = static_cast<int>(StatusCode::kUnavailable);
      served.message = "the service at " + socket.string() + " went away while it ran the task";
      return served;
    }
    auto& [type, payload] = *frame;
    switch (type) {
      case ServiceFrame::kStdout:
        if (live_output) WriteAll(STDOUT_FILENO, payload);
        break;
      case ServiceFrame::kStderr:
        if (live_output) WriteAll(STDERR_FILENO, payload);
        break;
      case ServiceFrame::kWarning:
        PrintError("warning: " + payload);
        break;
      case ServiceFrame::kNotServed:
        served.message = payload;
        return served;
      case ServiceFrame::kFailed: {
        json failed = json::parse(payload, nullptr, false);
        served.kind = ServedExec::Kind::kFailed;
        served.status_code = failed.is_object() ? failed.value("code", 13) : 13;
        served.message = failed.is_object() ? failed.value("message", payload) : payload;
        return served;
      }
      case ServiceFrame::kDone: {
        json done = json::parse(payload, nullptr, false);
        Result<TaskRecord> record = done.is_object() && done.contains("record")
                                        ? TaskRecordFromJson(done["record"].get<std::string>())
                                        : InvalidArgumentError("no record");
        if (!record.ok()) {
          served.kind = ServedExec::Kind::kFailed;
          served.status_code = static_cast<int>(StatusCode::kInternal);
          served.message = "the service's answer was unreadable: " + record.status().message();
          return served;
        }
        served.kind = ServedExec::Kind::kDone;
        served.record = std::move(record).value();
        return served;
      }
      default:
        break;  // Unknown frames from a newer service: ignored.
    }
  }
}

}  // namespace sandrun::cli
