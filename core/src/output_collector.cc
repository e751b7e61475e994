#include "sandrun/output_collector.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace sandrun {
namespace {

// Start of the character that `text[i]` belongs to, looking back at most 3
// bytes (UTF-8 continuation bytes are 10xxxxxx).
std::size_t CharStart(std::string_view text, std::size_t i) {
  std::size_t start = i;
  while (start > 0 && i - start < 3 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  return (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80 ? i : start;
}

std::string OmittedMarker(std::uint64_t omitted) {
  return "\n[... " + std::to_string(omitted) + " bytes omitted ...]\n";
}

// The head, a marker saying how much was dropped, and the tail, in at most
// `cap` bytes all told: the marker's room comes out of the head and tail,
// so the record never holds more than the cap. Cuts fall on UTF-8
// character boundaries, so valid text stays valid (and is not inflated by
// replacement characters when it is written to JSON).
std::string JoinWithinCap(std::string_view head, std::string_view tail, std::size_t cap,
                          std::uint64_t total) {
  // Room is reserved for the longest marker this stream can need (every
  // byte omitted); a cap too small for it gets a short marker, or none.
  constexpr std::string_view kShortMarker = "\n[...]\n";
  const bool counted = OmittedMarker(total).size() <= cap;
  std::size_t marker_room = counted ? OmittedMarker(total).size()
                            : kShortMarker.size() <= cap ? kShortMarker.size() : 0;
  std::size_t room = cap - marker_room;
  std::size_t tail_keep = std::min(tail.size(), room / 2);
  std::size_t head_keep = std::min(head.size(), room - tail_keep);
  tail_keep = std::min(tail.size(), room - head_keep);
  if (head_keep < head.size()) head_keep = CharStart(head, head_keep);
  std::size_t tail_from = tail.size() - tail_keep;
  while (tail_from < tail.size() && tail_from - (tail.size() - tail_keep) < 3 &&
         (static_cast<unsigned char>(tail[tail_from]) & 0xC0) == 0x80) {
    ++tail_from;
  }
  std::string_view kept_tail = tail.substr(tail_from);
  std::uint64_t omitted = total - head_keep - kept_tail.size();
  std::string text(head.substr(0, head_keep));
  if (counted) text += OmittedMarker(omitted);
  else if (marker_room > 0) text += kShortMarker;
  text += kept_tail;
  return text;
}

}  // namespace

OutputCollector::OutputCollector(StreamKind kind, std::size_t cap_bytes,
                                 std::string spill_path, OutputCallback live)
    : kind_(kind),
      head_cap_(cap_bytes - cap_bytes / 2),
      tail_cap_(cap_bytes / 2),
      spill_path_(std::move(spill_path)),
      live_(std::move(live)) {
  if (!spill_path_.empty()) {
    // 0600: spills sit in the outbox and then the archive, both private.
    int fd = ::open(spill_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      spill_ = ::fdopen(fd, "wb");
      if (spill_ == nullptr) {
        ::close(fd);
      } else {
        // Unbuffered: what the command wrote is on disk even if sandrun is
        // killed the next moment (a later `results sync` reads it there).
        std::setvbuf(spill_, nullptr, _IONBF, 0);
      }
    }
    if (spill_ == nullptr) {
      spill_status_ = InternalError("cannot write " + spill_path_ + ": " + std::strerror(errno));
      spill_path_.clear();
    }
  }
}

OutputCollector::~OutputCollector() {
  if (spill_ != nullptr) std::fclose(spill_);
}

void OutputCollector::Append(std::string_view chunk) {
  if (chunk.empty()) return;
  total_ += chunk.size();
  if (live_) live_(kind_, chunk);
  if (spill_ != nullptr && std::fwrite(chunk.data(), 1, chunk.size(), spill_) != chunk.size()) {
    spill_status_ = InternalError("short write to " + spill_path_ + ": " + std::strerror(errno));
  }
  // Fill the head first; whatever does not fit goes through the tail ring.
  if (head_.size() < head_cap_) {
    std::size_t take = std::min(head_cap_ - head_.size(), chunk.size());
    head_.append(chunk.substr(0, take));
    chunk.remove_prefix(take);
  }
  if (chunk.empty() || tail_cap_ == 0) return;
  if (tail_ring_.size() < tail_cap_) tail_ring_.reserve(tail_cap_);
  if (chunk.size() >= tail_cap_) {  // only the last tail_cap_ bytes matter
    tail_ring_.assign(chunk.substr(chunk.size() - tail_cap_));
    tail_pos_ = 0;
    tail_wrapped_ = true;
    return;
  }
  while (!chunk.empty()) {
    if (tail_ring_.size() < tail_cap_) {  // still growing to capacity
      std::size_t take = std::min(tail_cap_ - tail_ring_.size(), chunk.size());
      tail_ring_.append(chunk.substr(0, take));
      chunk.remove_prefix(take);
      tail_pos_ = tail_ring_.size() % tail_cap_;
      if (tail_ring_.size() == tail_cap_) tail_wrapped_ = true;
      continue;
    }
    std::size_t take = std::min(tail_cap_ - tail_pos_, chunk.size());
    tail_ring_.replace(tail_pos_, take, chunk.substr(0, take));
    chunk.remove_prefix(take);
    tail_pos_ = (tail_pos_ + take) % tail_cap_;
  }
}

CapturedStream OutputCollector::Finish(Status* spill_status) {
  CapturedStream out;
  out.total_bytes = total_;
  if (spill_ != nullptr) {
    if (std::fclose(spill_) != 0 && spill_status_.ok()) {
      spill_status_ = InternalError("cannot close " + spill_path_);
    }
    spill_ = nullptr;
  }
  out.spill_path = spill_path_;
  std::string tail;
  if (tail_wrapped_) {
    tail = tail_ring_.substr(tail_pos_) + tail_ring_.substr(0, tail_pos_);
  } else {
    tail = tail_ring_;
  }
  out.truncated = head_.size() + tail.size() < total_;
  if (!out.truncated) {
    out.text = head_ + tail;
  } else {
    out.text = JoinWithinCap(head_, tail, head_cap_ + tail_cap_, total_);
  }
  if (spill_status != nullptr) *spill_status = spill_status_;
  return out;
}

namespace {

std::string SpillFile(const ExecRequest& request, std::string_view name, const Status& dir) {
  if (request.spill_dir.empty() || !dir.ok()) return {};
  return (std::filesystem::path(request.spill_dir) / name).string();
}

Status MakeSpillDir(const std::string& dir) {
  if (dir.empty()) return OkStatus();
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InternalError("cannot create spill directory " + dir + ": " + ec.message());
  return OkStatus();
}

}  // namespace

ExecOutput::ExecOutput(const ExecRequest& request)
    : request_(request),
      spill_dir_status_(MakeSpillDir(request.spill_dir)),
      out_(StreamKind::kStdout, request.output_cap_bytes,
           SpillFile(request, kStdoutSpillName, spill_dir_status_),
           request.on_output ? OutputCallback([this](StreamKind k, std::string_view c) { Live(k, c); })
                             : OutputCallback()),
      err_(StreamKind::kStderr, request.output_cap_bytes,
           SpillFile(request, kStderrSpillName, spill_dir_status_),
           request.on_output ? OutputCallback([this](StreamKind k, std::string_view c) { Live(k, c); })
                             : OutputCallback()) {}

void ExecOutput::Live(StreamKind kind, std::string_view chunk) {
  std::lock_guard<std::mutex> lock(live_mu_);
  request_.on_output(kind, chunk);
}

void ExecOutput::FinishInto(ExecResult& result, std::string_view note_prefix) {
  Status out_status, err_status;
  result.stdout_stream = out_.Finish(&out_status);
  result.stderr_stream = err_.Finish(&err_status);
  for (const Status* spill : {&spill_dir_status_, &out_status, &err_status}) {
    if (!spill->ok()) result.notes.push_back(std::string(note_prefix) + spill->message());
  }
}

std::string RelocateSpillPath(const std::string& spill_path,
                              const std::filesystem::path& artifact_dir,
                              std::string_view archive_dir) {
  if (spill_path.empty()) return spill_path;
  std::filesystem::path rel = std::filesystem::path(spill_path).lexically_normal().lexically_relative(
      artifact_dir.lexically_normal());
  if (rel.empty() || rel == "." || *rel.begin() == "..") return spill_path;
  return std::string(archive_dir) + "/" + rel.generic_string();
}

}  // namespace sandrun
