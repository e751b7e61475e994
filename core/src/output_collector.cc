#include "sandrun/output_collector.h"

#include <cerrno>
#include <cstring>

namespace sandrun {

OutputCollector::OutputCollector(StreamKind kind, std::size_t cap_bytes,
                                 std::string spill_path, OutputCallback live)
    : kind_(kind),
      head_cap_(cap_bytes - cap_bytes / 2),
      tail_cap_(cap_bytes / 2),
      spill_path_(std::move(spill_path)),
      live_(std::move(live)) {
  if (!spill_path_.empty()) {
    spill_ = std::fopen(spill_path_.c_str(), "wb");
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
  std::uint64_t kept = head_.size() + tail.size();
  out.truncated = kept < total_;
  out.text = head_;
  if (out.truncated) {
    out.text += "\n[... " + std::to_string(total_ - kept) + " bytes omitted ...]\n";
  }
  out.text += tail;
  if (spill_status != nullptr) *spill_status = spill_status_;
  return out;
}

}  // namespace sandrun
