// The wire between the Docker backend and sandrun-docker-agent, the small
// program it keeps running inside a container (one `docker exec` for the
// sandbox's life) so that a command, an upload or a download costs no call
// to the engine. Shared by both ends; header-only and dependency-free.
//
// A frame is a 4-byte big-endian length N, then N bytes: a type byte and the
// payload. The agent reads frames on its stdin and writes them on its stdout;
// its stderr is for diagnostics only. One request at a time:
//
//   agent -> host  kHello {"version":N}                     once, at start
//   host -> agent  kExec {argv, env, cwd, timeout_ms, kill_grace_ms, stdin}
//                  then kStdin chunks and kStdinEnd when "stdin" is true
//   agent -> host  kStdout / kStderr chunks, then kDone {exit_code, signal,
//                  timed_out, oom_killed, failed?}
//   host -> agent  kEntry... kPutEnd     files written relative to "/"
//   agent -> host  kOk, or kError <message>
//   host -> agent  kGet <absolute path>
//   agent -> host  kEntry... kOk (names rooted at the path's base name), or
//                  kNotFound / kError <message>
//
// A kEntry is a JSON header line {path, kind: file|dir|symlink|hardlink,
// mode, target (links), append (a file's later chunks)}, '\n', then the
// file's bytes (at most kMaxChunk per entry). The host turns entries into
// tar streams and back with libarchive (docker_tar.h), so what comes from
// the agent meets the same checks as the engine's archive endpoint.
//
// The host ends the agent by closing its stdin (or by removing the
// container).
#ifndef SANDRUN_PLUGINS_DOCKER_DOCKER_AGENT_PROTOCOL_H_
#define SANDRUN_PLUGINS_DOCKER_DOCKER_AGENT_PROTOCOL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace sandrun::docker::agent {

/// Raised when the two ends change what a frame means.
inline constexpr int kProtocolVersion = 2;
/// No frame is larger: output and tar bodies come in chunks of this size.
inline constexpr std::size_t kMaxChunk = 1u << 20;
/// No frame is larger: a command's argv and env (which execve limits to a
/// few MiB) or an entry's header and bytes.
inline constexpr std::size_t kMaxFrame = 16u << 20;

enum class Frame : char {
  kHello = 'H',
  kExec = 'X',
  kStdin = 'I',
  kStdinEnd = 'E',
  kStdout = 'O',
  kStderr = 'R',
  kDone = 'D',
  kEntry = 'P',
  kPutEnd = 'Z',
  kGet = 'G',
  kOk = 'K',
  kNotFound = 'N',
  kError = 'F',
};

/// The bytes of one frame.
inline std::string EncodeFrame(Frame type, std::string_view payload) {
  const std::uint32_t size = static_cast<std::uint32_t>(payload.size() + 1);
  std::string out;
  out.reserve(size + 4);
  out.push_back(static_cast<char>((size >> 24) & 0xff));
  out.push_back(static_cast<char>((size >> 16) & 0xff));
  out.push_back(static_cast<char>((size >> 8) & 0xff));
  out.push_back(static_cast<char>(size & 0xff));
  out.push_back(static_cast<char>(type));
  out.append(payload);
  return out;
}

/// Collects bytes as they arrive and hands out whole frames.
class FrameReader {
 public:
  void Feed(std::string_view bytes) { buffer_.append(bytes); }
  /// The next whole frame, if one has arrived. Sets `bad` for a frame
  /// that is empty or larger than kMaxFrame (the stream is then useless).
  std::optional<std::pair<Frame, std::string>> Next(bool* bad) {
    *bad = false;
    if (buffer_.size() - pos_ < 4) return std::nullopt;
    const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data() + pos_);
    const std::size_t size = (std::size_t{p[0]} << 24) | (std::size_t{p[1]} << 16) |
                             (std::size_t{p[2]} << 8) | std::size_t{p[3]};
    if (size == 0 || size > kMaxFrame) {
      *bad = true;
      return std::nullopt;
    }
    if (buffer_.size() - pos_ < 4 + size) return std::nullopt;
    Frame type = static_cast<Frame>(buffer_[pos_ + 4]);
    std::string payload = buffer_.substr(pos_ + 5, size - 1);
    pos_ += 4 + size;
    if (pos_ == buffer_.size() || pos_ > (1u << 20)) {
      buffer_.erase(0, pos_);
      pos_ = 0;
    }
    return std::make_pair(type, std::move(payload));
  }

 private:
  std::string buffer_;
  std::size_t pos_ = 0;
};

}  // namespace sandrun::docker::agent

#endif  // SANDRUN_PLUGINS_DOCKER_DOCKER_AGENT_PROTOCOL_H_
