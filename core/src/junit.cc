#include "sandrun/junit.h"

#include <cstdint>
#include <cstdio>
#include <string_view>
#include <utility>

#include "sandrun/archive.h"
#include "sandrun/util.h"
#include "utf8.h"

namespace sandrun {
namespace {

// Escapes `text` for XML 1.0 character data or a double-quoted attribute.
// Characters XML 1.0 cannot represent at all (not even as references) become
// U+FFFD. In attributes, whitespace is written as references so parsers do
// not normalise it away.
std::string Escape(std::string_view text, bool attribute) {
  std::string out;
  out.reserve(text.size() + text.size() / 8);
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = internal::Utf8SequenceLength(text, i);
    if (len == 0) {
      out += internal::kReplacementChar;
      ++i;
      continue;
    }
    std::string_view seq = text.substr(i, len);
    i += len;
    if (len > 1) {
      // U+FFFE and U+FFFF are not XML characters.
      if (seq == "\xEF\xBF\xBE" || seq == "\xEF\xBF\xBF") out += internal::kReplacementChar;
      else out += seq;
      continue;
    }
    char c = seq[0];
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += attribute ? "&quot;" : "\""; break;
      case '\'': out += attribute ? "&apos;" : "'"; break;
      case '\n': out += attribute ? "&#10;" : "\n"; break;
      case '\r': out += "&#13;"; break;  // A raw CR would be read back as LF.
      case '\t': out += attribute ? "&#9;" : "\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) out += internal::kReplacementChar;
        else out += c;
    }
  }
  return out;
}

std::string Attr(std::string_view name, std::string_view value) {
  std::string out = " ";
  out += name;
  out += "=\"";
  out += Escape(value, /*attribute=*/true);
  out += '"';
  return out;
}

std::string Seconds(std::int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ms) / 1000.0);
  return buf;
}

// The JUnit schema's timestamp is an xs:dateTime without zone; ours is UTC.
std::string JUnitTimestamp(const std::string& rfc3339) {
  std::string out = rfc3339.substr(0, rfc3339.find('.'));
  if (!out.empty() && out.back() == 'Z') out.pop_back();
  return out;
}

std::string Property(std::string_view name, std::string_view value) {
  return "<property" + Attr("name", name) + Attr("value", value) + "/>";
}

// "Suite.Test" test names (from the adapters) split into classname and name;
// plain tasks are grouped under "sandrun".
std::pair<std::string, std::string> ClassAndName(const TaskRecord& task) {
  const std::string& name = task.test_name.empty() ? task.task_id : task.test_name;
  std::size_t dot = name.find('.');
  if (name != task.task_id && dot != std::string::npos && dot > 0 && dot + 1 < name.size()) {
    return {name.substr(0, dot), name.substr(dot + 1)};
  }
  return {"sandrun", name};
}

std::string FailureMessage(const ExecResult& r) {
  switch (r.outcome) {
    case Outcome::kExited: return "exited with code " + std::to_string(r.exit_code);
    case Outcome::kSignaled: return "killed by signal " + std::to_string(r.signal);
    case Outcome::kTimedOut: return "timed out";
    case Outcome::kOomKilled: return "killed: out of memory";
    case Outcome::kCancelled: return "cancelled";
    case Outcome::kInfraError: return r.error.empty() ? "infrastructure error" : r.error;
    case Outcome::kInterrupted: return r.error.empty() ? "interrupted" : r.error;
  }
  return "unknown outcome";
}

std::string StreamText(const CapturedStream& stream) {
  std::string text = stream.text;
  if (stream.truncated) {
    if (!text.empty() && text.back() != '\n') text += '\n';
    text += "[sandrun: " + std::to_string(stream.total_bytes) + " bytes in total";
    if (!stream.spill_path.empty()) text += "; full stream in " + stream.spill_path;
    text += "]\n";
  }
  return text;
}

void AppendTestCase(std::string& out, const TaskRecord& task) {
  const ExecResult& r = task.result;
  auto [classname, name] = ClassAndName(task);
  const std::string command = QuoteForDisplay(RedactArgv(task.argv));
  out += "    <testcase" + Attr("classname", classname) + Attr("name", name) +
         Attr("time", Seconds(r.durations.total_ms)) + ">\n";
  out += "      <properties>\n";
  auto prop = [&](std::string_view key, std::string_view value) {
    out += "        " + Property(key, value) + "\n";
  };
  prop("task_id", task.task_id);
  prop("run_id", task.run_id);
  prop("backend", task.backend);
  prop("sandbox_id", task.sandbox_id.empty() ? r.sandbox_id : task.sandbox_id);
  if (!task.image.empty()) prop("image", task.image);
  prop("command", command);
  prop("outcome", OutcomeName(r.outcome));
  prop("exit_code", std::to_string(ExitCodeOf(r)));
  prop("attempts", std::to_string(task.attempts));
  prop("queue_ms", std::to_string(r.durations.queue_ms));
  prop("create_ms", std::to_string(r.durations.create_ms));
  prop("upload_ms", std::to_string(r.durations.upload_ms));
  prop("exec_ms", std::to_string(r.durations.exec_ms));
  prop("download_ms", std::to_string(r.durations.download_ms));
  prop("total_ms", std::to_string(r.durations.total_ms));
  if (!task.fallback_reason.empty()) prop("fallback_reason", task.fallback_reason);
  out += "      </properties>\n";

  std::string verdict = VerdictOf(r);
  std::string message = FailureMessage(r);
  if (verdict == "failed" || verdict == "timed_out" || verdict == "oom") {
    out += "      <failure" + Attr("message", message) + Attr("type", OutcomeName(r.outcome)) +
           ">" + Escape(command + "\n" + message, false) + "</failure>\n";
  } else if (verdict == "infra_error" || verdict == "interrupted") {
    std::string body = message;
    for (const std::string& e : task.attempt_errors) body += "\nearlier attempt: " + e;
    out += "      <error" + Attr("message", message) + Attr("type", verdict) + ">" +
           Escape(body, false) + "</error>\n";
  } else if (verdict == "cancelled") {
    out += "      <skipped" + Attr("message", message) + "/>\n";
  }
  std::string stdout_text = StreamText(r.stdout_stream);
  std::string stderr_text = StreamText(r.stderr_stream);
  if (!stdout_text.empty()) {
    out += "      <system-out>" + Escape(stdout_text, false) + "</system-out>\n";
  }
  if (!stderr_text.empty()) {
    out += "      <system-err>" + Escape(stderr_text, false) + "</system-err>\n";
  }
  out += "    </testcase>\n";
}

// Keeps the last `max_bytes` of a stream's text (failures show at the end).
void KeepTail(CapturedStream& stream, std::size_t max_bytes) {
  if (stream.text.size() <= max_bytes) return;
  std::size_t dropped = stream.text.size() - max_bytes;
  stream.text = "[... " + std::to_string(dropped) + " bytes omitted ...]\n" +
                stream.text.substr(dropped);
  stream.truncated = true;
}

}  // namespace

std::string JUnitXml(const RunRecord& run, const std::vector<TaskRecord>& tasks) {
  int failures = 0, errors = 0, skipped = 0;
  std::int64_t total_ms = 0;
  for (const TaskRecord& task : tasks) {
    std::string verdict = VerdictOf(task.result);
    if (verdict == "failed" || verdict == "timed_out" || verdict == "oom") ++failures;
    if (verdict == "infra_error" || verdict == "interrupted") ++errors;
    if (verdict == "cancelled") ++skipped;
    total_ms += task.result.durations.total_ms;
  }
  std::int64_t wall_ms = run.wall_ms > 0 ? run.wall_ms : total_ms;
  std::string host = run.host;
  if (host.empty() && !tasks.empty()) host = tasks.front().host;
  std::string counts = Attr("tests", std::to_string(tasks.size())) +
                       Attr("failures", std::to_string(failures)) +
                       Attr("errors", std::to_string(errors)) +
                       Attr("skipped", std::to_string(skipped)) + Attr("time", Seconds(wall_ms));

  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<testsuites" + Attr("name", "sandrun") + counts + ">\n";
  out += "  <testsuite" + Attr("name", "sandrun " + run.run_id) + counts +
         Attr("timestamp", JUnitTimestamp(run.started_at)) + Attr("hostname", host) + ">\n";
  out += "    <properties>\n";
  auto prop = [&](std::string_view key, std::string_view value) {
    out += "      " + Property(key, value) + "\n";
  };
  prop("run_id", run.run_id);
  prop("backend", run.backend);
  prop("status", RunStatusName(run.status));
  prop("wall_ms", std::to_string(run.wall_ms));
  prop("started_at", run.started_at);
  prop("finished_at", run.finished_at);
  if (!run.command_line.empty()) {
    prop("command_line", QuoteForDisplay(RedactArgv(run.command_line)));
  }
  if (!run.fastest_passing_task.empty()) prop("fastest_passing_task", run.fastest_passing_task);
  for (const auto& [key, value] : run.labels) prop("label." + key, value);
  out += "    </properties>\n";
  for (const TaskRecord& task : tasks) AppendTestCase(out, task);
  out += "  </testsuite>\n</testsuites>\n";
  return out;
}

JUnitFileListener::JUnitFileListener(std::filesystem::path path, std::size_t max_stream_bytes)
    : path_(std::move(path)), max_stream_bytes_(max_stream_bytes) {}

void JUnitFileListener::OnTaskEnd(const TaskRecord& record) {
  TaskRecord kept = record;
  KeepTail(kept.result.stdout_stream, max_stream_bytes_);
  KeepTail(kept.result.stderr_stream, max_stream_bytes_);
  std::lock_guard<std::mutex> lock(mu_);
  tasks_.push_back(std::move(kept));
}

void JUnitFileListener::OnRunEnd(const RunRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  // Atomic (temp file + rename); creates no directory: a missing one is
  // the caller's mistake, caught by CheckWritableFile before the run.
  status_ = WriteFileAtomically(path_, JUnitXml(record, tasks_), 0644);
  if (!status_.ok()) status_ = status_.WithContext("cannot write JUnit file " + path_.string());
}

Status JUnitFileListener::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace sandrun
