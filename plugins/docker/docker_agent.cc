#include "docker_agent.h"

#include <dlfcn.h>

#include <system_error>
#include <vector>

namespace sandrun::docker {

namespace fs = std::filesystem;
using agent::Frame;

namespace {
constexpr char kAgentName[] = "sandrun-docker-agent";
}  // namespace

Result<fs::path> FindDockerAgent(const std::map<std::string, std::string>& env) {
  std::error_code ec;
  if (auto it = env.find("SANDRUN_DOCKER_AGENT"); it != env.end() && !it->second.empty()) {
    if (fs::is_regular_file(it->second, ec)) return fs::path(it->second);
    return NotFoundError("SANDRUN_DOCKER_AGENT=" + it->second + " is not a file");
  }
  std::vector<fs::path> candidates;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&FindDockerAgent), &info) != 0 && info.dli_fname != nullptr) {
    fs::path here = fs::weakly_canonical(info.dli_fname, ec).parent_path();
    candidates.push_back(here.parent_path() / kAgentName);            // lib/sandrun/plugins/x.so
    candidates.push_back(here / "sandrun" / kAgentName);              // lib/libx.so
    candidates.push_back(here.parent_path() / "lib" / "sandrun" / kAgentName);  // bin/sandrun
  }
#ifdef SANDRUN_DOCKER_AGENT_BUILD_PATH
  candidates.push_back(SANDRUN_DOCKER_AGENT_BUILD_PATH);
#endif
  std::string looked;
  for (const fs::path& candidate : candidates) {
    if (fs::is_regular_file(candidate, ec)) return candidate;
    looked += (looked.empty() ? "" : ", ") + candidate.string();
  }
  return NotFoundError(std::string("no ") + kAgentName + " (looked in " + looked + ")");
}

void ExecStreamDemuxer::Feed(const char* data, std::size_t size) {
  buffer_.append(data, size);
  std::size_t pos = 0;
  for (;;) {
    if (remaining_ > 0) {
      std::size_t take = std::min(remaining_, buffer_.size() - pos);
      if (take == 0) break;
      sink_(stream_, std::string_view(buffer_).substr(pos, take));
      pos += take;
      remaining_ -= take;
      continue;
    }
    if (buffer_.size() - pos < 8) break;
    const auto* h = reinterpret_cast<const unsigned char*>(buffer_.data() + pos);
    stream_ = h[0];
    remaining_ = (std::size_t{h[4]} << 24) | (std::size_t{h[5]} << 16) |
                 (std::size_t{h[6]} << 8) | std::size_t{h[7]};
    pos += 8;
  }
  buffer_.erase(0, pos);
}

AgentSession::AgentSession(std::unique_ptr<HijackedStream> stream)
    : stream_(std::move(stream)), demuxer_([this](int stream, std::string_view bytes) {
        if (stream == 1) {
          frames_.Feed(bytes);
        } else if (diagnostics_.size() < 4096) {
          diagnostics_.append(bytes.substr(0, 4096 - diagnostics_.size()));
        }
      }) {}

Result<std::unique_ptr<AgentSession>> AgentSession::Open(std::unique_ptr<HijackedStream> stream,
                                                         Clock::time_point deadline) {
  std::unique_ptr<AgentSession> session(new AgentSession(std::move(stream)));
  SANDRUN_ASSIGN_OR_RETURN(auto hello, session->NextFrame(deadline));
  if (hello.first != Frame::kHello) {
    return UnavailableError("docker: the agent did not say hello");
  }
  auto body = nlohmann::json::parse(hello.second, nullptr, false);
  if (!body.is_object() || body.value("version", 0) != agent::kProtocolVersion) {
    return FailedPreconditionError("docker: the agent speaks another protocol version (" +
                                   hello.second + ")");
  }
  return session;
}

Status AgentSession::Broke(Status status) {
  broken_ = true;
  stream_->Abort();
  if (!diagnostics_.empty()) return status.WithContext("agent said: " + diagnostics_);
  return status;
}

Result<std::pair<Frame, std::string>> AgentSession::NextFrame(Clock::time_point deadline) {
  char buffer[65536];
  for (;;) {
    bool bad = false;
    if (auto frame = frames_.Next(&bad)) return std::move(*frame);
    if (bad) return Broke(UnavailableError("docker: a malformed frame from the agent"));
    auto n = stream_->Read(buffer, sizeof buffer, deadline);
    if (!n.ok()) return Broke(n.status());
    if (*n == 0) return Broke(UnavailableError("docker: the agent's stream ended"));
    demuxer_.Feed(buffer, *n);
  }
}

Status AgentSession::Send(Frame type, std::string_view payload) {
  Status sent = stream_->WriteAll(agent::EncodeFrame(type, payload));
  if (!sent.ok()) return Broke(sent);
  return OkStatus();
}

Result<nlohmann::json> AgentSession::Exec(
    const nlohmann::json& request, const std::optional<std::string>& stdin_data,
    const std::function<void(Frame, std::string_view)>& output, Clock::time_point deadline) {
  if (broken_) return UnavailableError("docker: the agent's session is broken");
  nlohmann::json body = request;
  body["stdin"] = stdin_data.has_value();
  std::string payload = body.dump();
  if (payload.size() + 1 > agent::kMaxFrame) {
    return InvalidArgumentError("docker: the command's argv and env take " +
                                std::to_string(payload.size()) + " bytes, more than a command "
                                "may have");
  }
  SANDRUN_RETURN_IF_ERROR(Send(Frame::kExec, payload));
  if (stdin_data) {
    // The agent keeps reading while the command runs, so this never waits
    // on a command that does not read its stdin.
    std::string_view rest = *stdin_data;
    while (!rest.empty()) {
      std::size_t take = std::min(rest.size(), agent::kMaxChunk);
      SANDRUN_RETURN_IF_ERROR(Send(Frame::kStdin, rest.substr(0, take)));
      rest.remove_prefix(take);
    }
    SANDRUN_RETURN_IF_ERROR(Send(Frame::kStdinEnd, {}));
  }
  for (;;) {
    SANDRUN_ASSIGN_OR_RETURN(auto frame, NextFrame(deadline));
    switch (frame.first) {
      case Frame::kStdout:
      case Frame::kStderr:
        output(frame.first, frame.second);
        break;
      case Frame::kDone: {
        auto done = nlohmann::json::parse(frame.second, nullptr, false);
        if (!done.is_object()) return Broke(UnavailableError("docker: a bad answer from the agent"));
        return done;
      }
      default:
        return Broke(UnavailableError("docker: an unexpected frame from the agent"));
    }
  }
}

Status AgentSession::Put(const std::vector<TarEntry>& entries, Clock::time_point deadline) {
  if (broken_) return UnavailableError("docker: the agent's session is broken");
  auto send_entry = [&](const nlohmann::json& header, std::string_view data) {
    std::string payload = header.dump();
    payload += '\n';
    payload.append(data);
    return Send(Frame::kEntry, payload);
  };
  for (const TarEntry& entry : entries) {
    nlohmann::json header = {{"path", entry.name}, {"mode", entry.mode}};
    if (entry.directory) {
      header["kind"] = "dir";
    } else if (!entry.symlink_target.empty()) {
      header["kind"] = "symlink";
      header["target"] = entry.symlink_target;
    } else if (!entry.hardlink_target.empty()) {
      header["kind"] = "hardlink";
      header["target"] = entry.hardlink_target;
    } else {
      header["kind"] = "file";
    }
    std::string_view data = header["kind"] == "file" ? std::string_view(entry.data) : "";
    bool append = false;
    do {
      std::size_t take = std::min(data.size(), agent::kMaxChunk);
      header["append"] = append;
      SANDRUN_RETURN_IF_ERROR(send_entry(header, data.substr(0, take)));
      data.remove_prefix(take);
      append = true;
    } while (!data.empty());
  }
  SANDRUN_RETURN_IF_ERROR(Send(Frame::kPutEnd, {}));
  SANDRUN_ASSIGN_OR_RETURN(auto frame, NextFrame(deadline));
  if (frame.first == Frame::kOk) return OkStatus();
  if (frame.first == Frame::kError) return FailedPreconditionError("docker agent: " + frame.second);
  return Broke(UnavailableError("docker: an unexpected frame from the agent"));
}

Result<std::vector<TarEntry>> AgentSession::Get(const std::string& path,
                                                Clock::time_point deadline) {
  if (broken_) return UnavailableError("docker: the agent's session is broken");
  SANDRUN_RETURN_IF_ERROR(Send(Frame::kGet, path));
  std::vector<TarEntry> entries;
  for (;;) {
    SANDRUN_ASSIGN_OR_RETURN(auto frame, NextFrame(deadline));
    switch (frame.first) {
      case Frame::kEntry: {
        std::size_t newline = frame.second.find('\n');
        auto header = nlohmann::json::parse(frame.second.substr(0, newline), nullptr, false);
        if (newline == std::string::npos || !header.is_object()) {
          return Broke(UnavailableError("docker: a bad entry from the agent"));
        }
        std::string_view data = std::string_view(frame.second).substr(newline + 1);
        const std::string name = header.value("path", std::string());
        if (header.value("append", false) && !entries.empty() && entries.back().name == name) {
          entries.back().data.append(data);
          break;
        }
        TarEntry entry;
        entry.name = name;
        entry.mode = header.value("mode", 0644);
        const std::string kind = header.value("kind", std::string());
        entry.directory = kind == "dir";
        if (kind == "symlink") entry.symlink_target = header.value("target", std::string());
        if (kind == "file") entry.data = std::string(data);
        if (kind == "dir" || kind == "symlink" || kind == "file") entries.push_back(std::move(entry));
        break;
      }
      case Frame::kOk:
        return entries;
      case Frame::kNotFound:
        return NotFoundError("docker: " + path + " not found in the sandbox");
      case Frame::kError:
        return FailedPreconditionError("docker agent: " + frame.second);
      default:
        return Broke(UnavailableError("docker: an unexpected frame from the agent"));
    }
  }
}

}  // namespace sandrun::docker
