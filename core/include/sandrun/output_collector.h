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
#include <filesystem>
#include <mutex>
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

/// The names of the spill files in an ExecRequest's spill_dir.
inline constexpr std::string_view kStdoutSpillName = "stdout.log";
inline constexpr std::string_view kStderrSpillName = "stderr.log";

/// The output capture of one exec, as every backend does it: a collector per
/// stream, capped at the request's output_cap_bytes, spilling the whole
/// stream to `<spill_dir>/stdout.log` and `stderr.log` when the request names
/// a spill_dir (created here), and forwarding chunks to its on_output. The
/// live callback is serialised, so the two streams may be fed from two
/// threads; each stream must still be fed by one thread at a time.
class ExecOutput {
 public:
  /// `request` must outlive this object (its on_output is called).
  explicit ExecOutput(const ExecRequest& request);
  ExecOutput(const ExecOutput&) = delete;
  ExecOutput& operator=(const ExecOutput&) = delete;

  OutputCollector& out() { return out_; }
  OutputCollector& err() { return err_; }

  /// Not OK when spill_dir could not be created (the streams are then
  /// captured without spill files, and Finish notes the failed writes).
  const Status& spill_dir_status() const { return spill_dir_status_; }

  /// Finishes both streams into `result`'s stdout_stream and stderr_stream;
  /// a spill file that could not be written fully adds a note,
  /// `note_prefix` + the reason.
  void FinishInto(ExecResult& result, std::string_view note_prefix = {});

 private:
  void Live(StreamKind kind, std::string_view chunk);

  const ExecRequest& request_;
  Status spill_dir_status_;
  std::mutex live_mu_;
  OutputCollector out_;
  OutputCollector err_;
};

/// A spill file written inside a task's outbox artifact directory
/// (`artifact_dir`), renamed to the same place under `archive_dir`, the
/// archive-relative directory it is delivered to ("RUN/artifacts/TASK"): that
/// name stays true once delivery has moved the file out of the outbox. Any
/// other path (empty, elsewhere, the directory itself) is returned unchanged.
std::string RelocateSpillPath(const std::string& spill_path,
                              const std::filesystem::path& artifact_dir,
                              std::string_view archive_dir);

}  // namespace sandrun

#endif  // SANDRUN_OUTPUT_COLLECTOR_H_
