// OutputCollector: the one place where a stream of command output is capped,
// counted, spilled to disk and forwarded live. Every backend feeds the bytes
// it reads into one collector per stream, so caps and byte counts mean the
// same thing everywhere.
//
// Memory is bounded by the cap whatever the stream's size: the first half of
// the cap is kept as the head, the last half in a ring as the tail. The text
// Finish() returns is at most the cap in bytes, the "[... N bytes omitted
// ...]" marker included (its room comes out of the head and the tail), and
// is cut on UTF-8 character boundaries so valid text stays valid.
#ifndef SANDRUN_OUTPUT_COLLECTOR_H_
#define SANDRUN_OUTPUT_COLLECTOR_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "sandrun/result.h"
#include "sandrun/spec.h"
#include "sandrun/status.h"

namespace sandrun {

/// Not thread-safe: one collector per stream, fed by one reader.
class OutputCollector {
 public:
  /// `spill_path` empty: no file. `live` may be empty.
  OutputCollector(StreamKind kind, std::size_t cap_bytes, std::string spill_path,
                  OutputCallback live);
  ~OutputCollector();
  OutputCollector(const OutputCollector&) = delete;
  OutputCollector& operator=(const OutputCollector&) = delete;

  /// Takes a chunk. Spill-file write errors are remembered, not thrown.
  void Append(std::string_view chunk);

  /// Flushes and closes the spill file; returns the captured stream. The
  /// Status is not OK when the spill file could not be written fully.
  CapturedStream Finish(Status* spill_status = nullptr);

  std::uint64_t total_bytes() const { return total_; }

 private:
  StreamKind kind_;
  std::size_t head_cap_;
  std::size_t tail_cap_;
  std::string head_;
  std::string tail_ring_;      // capacity tail_cap_, written circularly
  std::size_t tail_pos_ = 0;   // next write position in tail_ring_
  bool tail_wrapped_ = false;
  std::uint64_t total_ = 0;
  std::string spill_path_;
  std::FILE* spill_ = nullptr;
  Status spill_status_;
  OutputCallback live_;
};

}  // namespace sandrun

#endif  // SANDRUN_OUTPUT_COLLECTOR_H_
