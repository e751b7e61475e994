#include "sandrun/junit.h"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <tuple>
#include <string_view>
#include <utility>

#include "sandrun/archive.h"
#include "sandrun/file_util.h"
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

void AppendProperties(std::string& out, const JUnitProperties& properties,
                      const std::string& indent) {
  if (properties.empty()) return;
  out += indent + "<properties>\n";
  for (const auto& [key, value] : properties) out += indent + "  " + Property(key, value) + "\n";
  out += indent + "</properties>\n";
}

std::string FailureMessage(const ExecResult& r) {
  switch (r.outcome) {
    case Outcome::kExited: return "exited with code " + std::to_string(r.exit_code);
    case Outcome::kSignaled: return "crashed: killed by signal " + SignalText(r.signal);
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

// The first "FILE:LINE: Failure" (or ": Skipped") GoogleTest printed.
bool FirstGtestLocation(const std::string& text, std::string* file, int* line) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    std::string_view l(text.data() + pos, (eol == std::string::npos ? text.size() : eol) - pos);
    pos = eol == std::string::npos ? text.size() : eol + 1;
    for (std::string_view tail : {std::string_view(": Failure"), std::string_view(": Skipped")}) {
      if (l.size() <= tail.size() || l.substr(l.size() - tail.size()) != tail) continue;
      std::string_view loc = l.substr(0, l.size() - tail.size());
      std::size_t colon = loc.rfind(':');
      if (colon == std::string_view::npos || colon == 0) continue;
      std::string_view digits = loc.substr(colon + 1);
      if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) {
        continue;
      }
      int number = 0;
      auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
      if (error != std::errc() || end != digits.data() + digits.size() || number <= 0) continue;
      *file = std::string(loc.substr(0, colon));
      *line = number;
      return true;
    }
  }
  return false;
}

// The last `max_bytes` of `text`, marked when shortened.
std::string Tail(const std::string& text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  std::size_t dropped = text.size() - max_bytes;
  return "[... " + std::to_string(dropped) + " bytes omitted ...]\n" + text.substr(dropped);
}

// Keeps the last `max_bytes` of a stream's text (failures show at the end).
void KeepTail(CapturedStream& stream, std::size_t max_bytes) {
  if (stream.text.size() <= max_bytes) return;
  stream.text = Tail(stream.text, max_bytes);
  stream.truncated = true;
}

struct Counts {
  int tests = 0, failures = 0, errors = 0, skipped = 0;
  std::int64_t time_ms = 0;
  void Add(const JUnitCase& c) {
    ++tests;
    if (c.kind == JUnitCase::Kind::kFailed) ++failures;
    if (c.kind == JUnitCase::Kind::kError) ++errors;
    if (c.kind == JUnitCase::Kind::kSkipped) ++skipped;
    time_ms += c.time_ms;
  }
  std::string Attrs(std::int64_t wall_ms) const {
    return Attr("tests", std::to_string(tests)) + Attr("failures", std::to_string(failures)) +
           Attr("errors", std::to_string(errors)) + Attr("skipped", std::to_string(skipped)) +
           Attr("time", Seconds(wall_ms >= 0 ? wall_ms : time_ms));
  }
};

// `file` relative to `root` when it lies under it (readers link it into the
// repository); otherwise as it is.
std::string SourcePath(const std::string& file, const std::filesystem::path& root) {
  if (root.empty() || file.empty() || file[0] != '/') return file;
  std::filesystem::path normal = std::filesystem::path(file).lexically_normal();
  std::filesystem::path base = root.lexically_normal();
  if (!IsWithin(normal, base)) return file;
  std::string relative = normal.lexically_relative(base).generic_string();
  return relative.empty() || relative == "." ? file : relative;
}


// (The problem's file:line goes on its <testcase>: Surefire's schema has
// none on <failure>.)
void AppendProblem(std::string& out, const char* element, const JUnitProblem& p) {
  out += std::string("      <") + element + Attr("message", p.message);
  if (!p.type.empty()) {
    std::string type = p.type;
    std::replace(type.begin(), type.end(), ' ', '_');
    out += Attr("type", type);
  }
  if (p.text.empty()) {
    out += "/>\n";
    return;
  }
  out += ">" + Escape(p.text, false) + "</" + element + ">\n";
}

void AppendCase(std::string& out, const JUnitCase& c, const std::filesystem::path& root) {
  out += "    <testcase" + Attr("classname", c.classname) + Attr("name", c.name);
  // A failed case points at its first failure, where an annotation helps.
  const bool failed = c.kind == JUnitCase::Kind::kFailed || c.kind == JUnitCase::Kind::kError;
  const bool at_failure = failed && !c.problem.file.empty();
  const std::string& file = at_failure ? c.problem.file : c.file;
  const int line = at_failure ? c.problem.line : c.line;
  if (!file.empty()) out += Attr("file", SourcePath(file, root));
  if (line > 0) out += Attr("line", std::to_string(line));
  out += Attr("time", Seconds(c.time_ms)) + ">\n";
  JUnitProperties properties = c.properties;
  if (!c.flaky_failures.empty()) {
    properties.emplace_back("flaky", "true");
    properties.emplace_back("failed_attempts", std::to_string(c.flaky_failures.size()));
  }
  AppendProperties(out, properties, "      ");
  switch (c.kind) {
    case JUnitCase::Kind::kPassed: break;
    case JUnitCase::Kind::kFailed: AppendProblem(out, "failure", c.problem); break;
    case JUnitCase::Kind::kError: AppendProblem(out, "error", c.problem); break;
    case JUnitCase::Kind::kSkipped:
      out += "      <skipped" + Attr("message", c.problem.message);
      out += c.problem.message.empty() ? "/>\n"
                                       : ">" + Escape(c.problem.message, false) + "</skipped>\n";
      break;
  }
  // Surefire's elements for a case that passed on a rerun (GitLab and the
  // GitHub reporters that know them show the case as flaky).
  if (c.kind == JUnitCase::Kind::kPassed) {
    for (const JUnitProblem& p : c.flaky_failures) AppendProblem(out, "flakyFailure", p);
  }
  const std::size_t keep = c.kind == JUnitCase::Kind::kPassed ? kPassedStreamBytes : std::string::npos;
  if (!c.system_out.empty()) {
    out += "      <system-out>" + Escape(Tail(c.system_out, keep), false) + "</system-out>\n";
  }
  if (!c.system_err.empty()) {
    out += "      <system-err>" + Escape(Tail(c.system_err, keep), false) + "</system-err>\n";
  }
  out += "    </testcase>\n";
}

}  // namespace

std::pair<std::string, std::string> JUnitClassAndName(const std::string& test_name,
                                                      const std::string& default_class) {
  std::size_t dot = test_name.find('.');
  if (dot != std::string::npos && dot > 0 && dot + 1 < test_name.size()) {
    return {test_name.substr(0, dot), test_name.substr(dot + 1)};
  }
  return {default_class, test_name};
}

std::string JUnitXml(const JUnitReport& report) {
  // Suites by classname, in the order their first case came.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const JUnitCase*>> suites;
  Counts total;
  for (const JUnitCase& c : report.cases) {
    auto [it, added] = suites.try_emplace(c.classname);
    if (added) order.push_back(c.classname);
    it->second.push_back(&c);
    total.Add(c);
  }
  std::filesystem::path root;
  if (report.source_root) {
    root = *report.source_root;
  } else {
    for (const char* name : {"GITHUB_WORKSPACE", "CI_PROJECT_DIR"}) {
      const char* value = std::getenv(name);
      if (value != nullptr && value[0] == '/') {
        root = value;
        break;
      }
    }
  }
  std::string timestamp = JUnitTimestamp(report.timestamp);
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<testsuites" + Attr("name", report.name) + total.Attrs(report.time_ms);
  if (!timestamp.empty()) out += Attr("timestamp", timestamp);
  out += ">\n";
  for (const std::string& name : order) {
    Counts counts;
    for (const JUnitCase* c : suites[name]) counts.Add(*c);
    // With one suite the run's wall time is the suite's; otherwise each
    // suite's time is the sum of its cases'.
    out += "  <testsuite" + Attr("name", name) +
           counts.Attrs(order.size() == 1 ? report.time_ms : -1);
    if (!timestamp.empty()) out += Attr("timestamp", timestamp);
    if (!report.hostname.empty()) out += Attr("hostname", report.hostname);
    out += ">\n";
    AppendProperties(out, report.properties, "    ");
    for (const JUnitCase* c : suites[name]) AppendCase(out, *c, root);
    out += "  </testsuite>\n";
  }
  out += "</testsuites>\n";
  return out;
}

Status WriteJUnitFile(const std::filesystem::path& path, const JUnitReport& report) {
  Status written = WriteFileAtomically(path, JUnitXml(report), 0644);
  if (!written.ok()) return written.WithContext("cannot write JUnit file " + path.string());
  return OkStatus();
}

JUnitCase JUnitCaseFromRecord(const TaskRecord& task) {
  const ExecResult& r = task.result;
  JUnitCase c;
  std::tie(c.classname, c.name) =
      JUnitClassAndName(task.test_name.empty() ? task.task_id : task.test_name, "sandrun");
  // The task's own time: without the time it waited for a free slot.
  c.time_ms = r.durations.own_ms();
  const std::string command = QuoteForDisplay(RedactArgv(task.argv));
  if (auto file = task.labels.find(kTestFileLabel); file != task.labels.end()) {
    c.file = file->second;
    if (auto line = task.labels.find(kTestLineLabel); line != task.labels.end()) {
      c.line = std::atoi(line->second.c_str());
    }
  } else {
    FirstGtestLocation(r.stdout_stream.text, &c.file, &c.line);
  }

  auto prop = [&](std::string key, std::string value) {
    c.properties.emplace_back(std::move(key), std::move(value));
  };
  prop("task_id", task.task_id);
  prop("run_id", task.run_id);
  prop("backend", task.backend);
  prop("sandbox_id", task.sandbox_id.empty() ? r.sandbox_id : task.sandbox_id);
  if (!task.image.empty()) prop("image", task.image);
  prop("command", command);
  prop("outcome", std::string(OutcomeName(r.outcome)));
  prop("exit_code", std::to_string(ExitCodeOf(r)));
  prop("attempts", std::to_string(task.attempts));
  prop("queue_ms", std::to_string(r.durations.queue_ms));
  prop("create_ms", std::to_string(r.durations.create_ms));
  prop("upload_ms", std::to_string(r.durations.upload_ms));
  prop("exec_ms", std::to_string(r.durations.exec_ms));
  prop("download_ms", std::to_string(r.durations.download_ms));
  prop("total_ms", std::to_string(r.durations.total_ms));
  if (!task.fallback_reason.empty()) prop("fallback_reason", task.fallback_reason);

  std::string verdict = TestVerdictOf(task);
  std::string message = FailureMessage(r);
  if (verdict == "failed" || verdict == "timed_out" || verdict == "oom") {
    c.kind = JUnitCase::Kind::kFailed;
    c.problem = {message, std::string(OutcomeName(r.outcome)), command + "\n" + message};
    FirstGtestLocation(r.stdout_stream.text, &c.problem.file, &c.problem.line);
  } else if (verdict == "infra_error" || verdict == "interrupted") {
    std::string body = message;
    for (const std::string& e : task.attempt_errors) body += "\nearlier attempt: " + e;
    c.kind = JUnitCase::Kind::kError;
    c.problem = {message, verdict, body};
  } else if (verdict == "cancelled") {
    c.kind = JUnitCase::Kind::kSkipped;
    c.problem.message = message;
  } else if (verdict == "skipped") {
    c.kind = JUnitCase::Kind::kSkipped;
    c.problem.message = SkipMessageOf(task);
  }
  c.system_out = StreamText(r.stdout_stream);
  c.system_err = StreamText(r.stderr_stream);
  return c;
}

JUnitReport JUnitReportFromRun(const RunRecord& run, const std::vector<TaskRecord>& tasks) {
  JUnitReport report;
  report.timestamp = run.started_at;
  report.hostname = run.host.empty() && !tasks.empty() ? tasks.front().host : run.host;
  report.time_ms = run.wall_ms > 0 ? run.wall_ms : -1;
  auto prop = [&](std::string key, std::string value) {
    report.properties.emplace_back(std::move(key), std::move(value));
  };
  prop("run_id", run.run_id);
  prop("backend", run.backend);
  prop("status", std::string(RunStatusName(run.status)));
  prop("wall_ms", std::to_string(run.wall_ms));
  prop("started_at", run.started_at);
  prop("finished_at", run.finished_at);
  if (!run.user.empty()) prop("user", run.user);
  if (!run.command_line.empty()) {
    prop("command_line", QuoteForDisplay(RedactArgv(run.command_line)));
  }
  if (!run.fastest_passing_task.empty()) prop("fastest_passing_task", run.fastest_passing_task);
  for (const auto& [key, value] : run.labels) prop("label." + key, value);
  // A test's retry rounds (kRetryRoundLabel) are one case: the last round's.
  auto round_of = [](const TaskRecord& task) {
    auto it = task.labels.find(kRetryRoundLabel);
    return it == task.labels.end() ? 1 : std::max(1, std::atoi(it->second.c_str()));
  };
  std::set<std::string> retried;  // Tests with a later round.
  for (const TaskRecord& task : tasks) {
    if (round_of(task) > 1) retried.insert(task.test_name);
  }
  std::map<std::string, std::vector<const TaskRecord*>> rounds;  // Their records.
  for (const TaskRecord& task : tasks) {
    if (retried.count(task.test_name)) rounds[task.test_name].push_back(&task);
  }
  for (const TaskRecord& task : tasks) {
    auto it = rounds.find(task.test_name);
    if (it == rounds.end()) {
      report.cases.push_back(JUnitCaseFromRecord(task));
      continue;
    }
    if (it->second.empty()) continue;  // Written at its first record.
    std::vector<const TaskRecord*> all = std::move(it->second);
    it->second.clear();
    std::stable_sort(all.begin(), all.end(), [&](const TaskRecord* a, const TaskRecord* b) {
      return round_of(*a) < round_of(*b);
    });
    JUnitCase last = JUnitCaseFromRecord(*all.back());
    if (last.kind == JUnitCase::Kind::kPassed) {
      for (std::size_t i = 0; i + 1 < all.size(); ++i) {
        JUnitCase earlier = JUnitCaseFromRecord(*all[i]);
        if (earlier.kind == JUnitCase::Kind::kFailed || earlier.kind == JUnitCase::Kind::kError) {
          last.flaky_failures.push_back(earlier.problem);
        }
      }
    }
    report.cases.push_back(std::move(last));
  }
  return report;
}

std::string JUnitXml(const RunRecord& run, const std::vector<TaskRecord>& tasks) {
  return JUnitXml(JUnitReportFromRun(run, tasks));
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
  status_ = WriteJUnitFile(path_, JUnitReportFromRun(record, tasks_));
}

Status JUnitFileListener::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

}  // namespace sandrun
