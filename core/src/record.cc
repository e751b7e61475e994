#include "sandrun/record.h"

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string_view>
#include <utility>

#include <nlohmann/json.hpp>

#include "sandrun/util.h"
#include "utf8.h"

namespace sandrun {
namespace {

using internal::IsValidUtf8;

// ordered_json keeps the fields in the documented order, for human readers.
using Json = nlohmann::ordered_json;

// A readable copy of `text` that is no longer than it: each run of bytes
// that are not well-formed UTF-8 becomes one U+FFFD, and should that still
// come out longer (lone bad bytes: three bytes for one), the copy is cut at
// a character boundary. The output cap thus bounds every "text" in a record.
std::string ReadableCopy(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool in_bad_run = false;
  for (std::size_t i = 0; i < text.size();) {
    std::size_t len = internal::Utf8SequenceLength(text, i);
    if (len == 0) {
      if (!in_bad_run) out += internal::kReplacementChar;
      in_bad_run = true;
      ++i;
      continue;
    }
    in_bad_run = false;
    out += text.substr(i, len);
    i += len;
  }
  if (out.size() > text.size()) {
    std::size_t cut = text.size();
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    out.resize(cut);
  }
  return out;
}

// Stream text is arbitrary bytes. JSON strings must be UTF-8, so text that is
// not gets a readable copy plus the exact bytes in base64, which the reader
// prefers.
Json StreamToJson(const CapturedStream& stream) {
  Json j;
  if (IsValidUtf8(stream.text)) {
    j["text"] = stream.text;
  } else {
    j["text"] = ReadableCopy(stream.text);
    j["text_base64"] = Base64Encode(stream.text);
  }
  j["total_bytes"] = stream.total_bytes;
  j["truncated"] = stream.truncated;
  j["spill_path"] = stream.spill_path;
  return j;
}

Json StringMap(const std::map<std::string, std::string>& map) {
  Json j = Json::object();
  for (const auto& [key, value] : map) j[key] = value;
  return j;
}

std::string Dump(const Json& j, int indent) {
  // Fields other than stream text (argv, error, labels) may still hold invalid
  // UTF-8; replace those bytes rather than throw.
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// Reads typed fields out of a parsed record and remembers the first problem,
// so parsing code reads like a list of fields.
class FieldReader {
 public:
  FieldReader(const Json& root, std::string_view what) : root_(root), what_(what) {}

  std::string String(const Json& obj, const char* key, const std::string& path = "") {
    const Json* v = Find(obj, key);
    if (v == nullptr) return "";
    if (!v->is_string()) return Fail(path + key, "must be a string"), "";
    return v->get<std::string>();
  }
  std::int64_t Int(const Json& obj, const char* key, const std::string& path = "") {
    const Json* v = Find(obj, key);
    if (v == nullptr) return 0;
    if (!v->is_number_integer()) return Fail(path + key, "must be an integer"), 0;
    if (v->is_number_unsigned() &&
        v->get<std::uint64_t>() > static_cast<std::uint64_t>(
                                       std::numeric_limits<std::int64_t>::max())) {
      return Fail(path + key, "is out of range"), 0;
    }
    return v->get<std::int64_t>();
  }
  int SmallInt(const Json& obj, const char* key) {
    std::int64_t value = Int(obj, key);
    if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
      Fail(key, "is out of range");
      return 0;
    }
    return static_cast<int>(value);
  }
  std::uint64_t UInt(const Json& obj, const char* key, const std::string& path = "") {
    const Json* v = Find(obj, key);
    if (v == nullptr) return 0;
    if (!v->is_number_unsigned()) return Fail(path + key, "must be a non-negative integer"), 0;
    return v->get<std::uint64_t>();
  }
  bool Bool(const Json& obj, const char* key, bool fallback, const std::string& path = "") {
    const Json* v = Find(obj, key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) return Fail(path + key, "must be true or false"), fallback;
    return v->get<bool>();
  }
  std::vector<std::string> StringList(const Json& obj, const char* key) {
    std::vector<std::string> out;
    const Json* v = Find(obj, key);
    if (v == nullptr) return out;
    if (!v->is_array()) return Fail(key, "must be an array of strings"), out;
    for (const auto& item : *v) {
      if (!item.is_string()) return Fail(key, "must be an array of strings"), out;
      out.push_back(item.get<std::string>());
    }
    return out;
  }
  std::map<std::string, std::string> StringMap(const Json& obj, const char* key) {
    std::map<std::string, std::string> out;
    const Json* v = Find(obj, key);
    if (v == nullptr) return out;
    if (!v->is_object()) return Fail(key, "must be an object of strings"), out;
    for (const auto& [name, item] : v->items()) {
      if (!item.is_string()) {
        Fail(std::string(key) + "." + name, "must be a string");
        return out;
      }
      out[name] = item.get<std::string>();
    }
    return out;
  }
  // The sub-object at `key`, or an empty object when absent.
  const Json& Object(const Json& obj, const char* key) {
    static const Json kEmpty = Json::object();
    const Json* v = Find(obj, key);
    if (v == nullptr) return kEmpty;
    if (!v->is_object()) return Fail(key, "must be an object"), kEmpty;
    return *v;
  }
  std::string Required(const char* key) {
    if (Find(root_, key) == nullptr) Fail(key, "is missing");
    return String(root_, key);
  }
  void Fail(const std::string& field, const std::string& problem) {
    if (!status_.ok()) return;
    status_ = InvalidArgumentError(std::string(what_) + ": field '" + field + "' " + problem);
  }
  const Status& status() const { return status_; }

 private:
  static const Json* Find(const Json& obj, const char* key) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return nullptr;
    return &*it;
  }
  const Json& root_;
  std::string_view what_;
  Status status_;
};

CapturedStream StreamFromJson(FieldReader& reader, const Json& j, const std::string& name) {
  std::string path = name + ".";
  CapturedStream stream;
  stream.text = reader.String(j, "text", path);
  std::string exact = reader.String(j, "text_base64", path);
  if (!exact.empty()) {
    std::optional<std::string> decoded = Base64Decode(exact);
    if (!decoded) {
      reader.Fail(path + "text_base64", "is not valid base64");
    } else {
      stream.text = std::move(*decoded);
    }
  }
  stream.total_bytes = reader.UInt(j, "total_bytes", path);
  stream.truncated = reader.Bool(j, "truncated", false, path);
  stream.spill_path = reader.String(j, "spill_path", path);
  return stream;
}

// Parses `text` as a JSON object and checks its schema string.
Result<Json> ParseRecord(const std::string& text, std::string_view what,
                         std::string_view schema) {
  Json j;
  try {
    j = Json::parse(text);
  } catch (const std::exception& e) {
    return InvalidArgumentError(std::string(what) + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) return InvalidArgumentError(std::string(what) + ": not a JSON object");
  auto it = j.find("schema");
  if (it == j.end() || !it->is_string()) {
    return InvalidArgumentError(std::string(what) + ": field 'schema' is missing");
  }
  if (it->get<std::string>() != schema) {
    return InvalidArgumentError(std::string(what) + ": field 'schema' is '" +
                                it->get<std::string>() + "', expected '" +
                                std::string(schema) + "'");
  }
  return j;
}

// "K=V" -> "K=…". A bare value is a key (`-e K` passes the variable on)
// unless `bare_is_secret`.
std::string RedactValue(std::string_view value, bool bare_is_secret) {
  std::size_t eq = value.find('=');
  if (eq == std::string_view::npos) return bare_is_secret ? kRedacted : std::string(value);
  return std::string(value.substr(0, eq + 1)) + kRedacted;
}

}  // namespace

std::vector<std::string> RedactArgv(const std::vector<std::string>& argv) {
  // Flags whose value is a secret, given as the next argument or after '='
  // (and for -e, glued on: -eK=V).
  static constexpr std::string_view kFlags[] = {"-e", "--env", "--secret"};
  std::vector<std::string> out;
  out.reserve(argv.size());
  std::string_view value_of;  // the flag whose value comes next
  for (const std::string& arg : argv) {
    if (!value_of.empty()) {
      out.push_back(RedactValue(arg, value_of == "--secret"));
      value_of = {};
      continue;
    }
    std::string redacted = arg;
    for (std::string_view flag : kFlags) {
      std::string_view a = arg;
      if (a == flag) {
        value_of = flag;
      } else if (a.size() > flag.size() && a.substr(0, flag.size()) == flag &&
                 (a[flag.size()] == '=' || flag == "-e")) {
        std::size_t value_at = flag.size() + (a[flag.size()] == '=' ? 1 : 0);
        redacted = std::string(a.substr(0, value_at)) +
                   RedactValue(a.substr(value_at), flag == "--secret");
      } else {
        continue;
      }
      break;
    }
    out.push_back(std::move(redacted));
  }
  return out;
}

namespace {
constexpr std::pair<RunStatus, std::string_view> kRunStatusNames[] = {
    {RunStatus::kPassed, "passed"},       {RunStatus::kFailed, "failed"},
    {RunStatus::kCancelled, "cancelled"}, {RunStatus::kError, "error"},
    {RunStatus::kIncomplete, "incomplete"},
};
}  // namespace

std::string_view RunStatusName(RunStatus status) {
  for (const auto& [value, name] : kRunStatusNames) {
    if (value == status) return name;
  }
  return "unknown";
}

std::optional<RunStatus> RunStatusFromName(std::string_view name) {
  for (const auto& [value, known] : kRunStatusNames) {
    if (known == name) return value;
  }
  return std::nullopt;
}

std::string ExitText(const ExecResult& r) {
  switch (r.outcome) {
    case Outcome::kExited: return std::to_string(r.exit_code);
    case Outcome::kSignaled: return "signal " + std::to_string(r.signal);
    default: return std::to_string(ExitCodeOf(r));
  }
}

std::string VerdictOf(const ExecResult& result) {
  switch (result.outcome) {
    case Outcome::kExited: return result.exit_code == 0 ? "passed" : "failed";
    case Outcome::kSignaled: return "failed";
    case Outcome::kTimedOut: return "timed_out";
    case Outcome::kOomKilled: return "oom";
    case Outcome::kCancelled: return "cancelled";
    case Outcome::kInfraError: return "infra_error";
    case Outcome::kInterrupted: return "interrupted";
  }
  return "infra_error";
}

namespace {

// GoogleTest's console tags are 12 characters wide ("[  SKIPPED ] ").
bool HasGtestLine(std::string_view text, std::string_view tag, std::string_view test) {
  std::string needle = std::string(tag) + std::string(test) + " (";
  for (std::size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + 1)) {
    if (at == 0 || text[at - 1] == '\n') return true;
  }
  return false;
}

// The GoogleTest case a record ran: the one its --gtest_filter names (CTest's
// names carry a prefix and pretty values: "gt.Values/Even.IsEven/4" runs
// "Values/Even.IsEven/1"), else its test name, else its task id.
std::string GtestCaseOf(const TaskRecord& record) {
  constexpr std::string_view kFilter = "--gtest_filter=";
  for (const std::string& arg : record.argv) {
    if (arg.rfind(kFilter, 0) != 0) continue;
    std::string filter = arg.substr(kFilter.size());
    if (!filter.empty() && filter[0] != '-' && filter.find_first_of("*?:") == std::string::npos) {
      return filter;
    }
  }
  return record.test_name.empty() ? record.task_id : record.test_name;
}

bool SkippedByGtest(const TaskRecord& record) {
  if (!Passed(record.result)) return false;
  const std::string test = GtestCaseOf(record);
  std::string_view text = record.result.stdout_stream.text;
  return HasGtestLine(text, "[  SKIPPED ] ", test) && !HasGtestLine(text, "[       OK ] ", test);
}

}  // namespace

std::string TestVerdictOf(const TaskRecord& record) {
  return SkippedByGtest(record) ? "skipped" : VerdictOf(record.result);
}

std::string SkipMessageOf(const TaskRecord& record) {
  if (!SkippedByGtest(record)) return "";
  const std::string test = GtestCaseOf(record);
  const std::string& text = record.result.stdout_stream.text;
  std::size_t run = text.find("[ RUN      ] " + test + "\n");
  std::size_t end = text.find("[  SKIPPED ] " + test + " (", run == std::string::npos ? 0 : run);
  if (run == std::string::npos || end == std::string::npos) return "";
  std::string body = text.substr(run, end - run);
  std::size_t marker = body.find(": Skipped\n");
  if (marker == std::string::npos) return "";
  std::string message = body.substr(marker + 10);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  return message;
}

std::string GtestCaseOutput(std::string_view stdout_text, std::string_view test) {
  const std::string run = "[ RUN      ] " + std::string(test) + "\n";
  std::size_t start = std::string_view::npos;
  for (std::size_t at = stdout_text.find(run); at != std::string_view::npos;
       at = stdout_text.find(run, at + 1)) {
    if (at == 0 || stdout_text[at - 1] == '\n') {
      start = at + run.size();
      break;
    }
  }
  if (start == std::string_view::npos) return "";
  // The result line: the tag and the name, then " (12 ms)", ", where
  // GetParam() = ..." (a parameterised or typed case) or the line's end
  // (--gtest_print_time=0); after output with no newline of its own it is
  // not at a line's start. The first one after [ RUN ] is the case's (the
  // summary lists failures again, later).
  std::size_t end = stdout_text.size();
  for (const char* tag : {"[       OK ] ", "[  FAILED  ] ", "[  SKIPPED ] "}) {
    const std::string line = tag + std::string(test);
    for (std::size_t at = stdout_text.find(line, start); at < end;
         at = stdout_text.find(line, at + 1)) {
      std::string_view after = stdout_text.substr(at + line.size());
      if (after.empty() || after.front() == '\n' || after.rfind(" (", 0) == 0 ||
          after.rfind(", where ", 0) == 0) {
        end = at;
        break;
      }
    }
  }
  return std::string(stdout_text.substr(start, end - start));
}

std::string ToJson(const TaskRecord& record, int indent) {
  const ExecResult& r = record.result;
  Json j;
  j["schema"] = kTaskRecordSchema;
  j["run_id"] = record.run_id;
  j["task_id"] = record.task_id;
  j["test_name"] = record.test_name;
  j["backend"] = record.backend;
  j["image"] = record.image;
  j["sandbox_id"] = record.sandbox_id.empty() ? r.sandbox_id : record.sandbox_id;
  j["isolation"] = record.isolation;
  j["argv"] = RedactArgv(record.argv);
  j["outcome"] = std::string(OutcomeName(r.outcome));
  j["verdict"] = VerdictOf(r);
  j["exit_code"] = r.exit_code;
  j["signal"] = r.signal;
  j["error"] = r.error;
  j["stdout"] = StreamToJson(r.stdout_stream);
  j["stderr"] = StreamToJson(r.stderr_stream);
  j["durations_ms"] = Json{{"queue", r.durations.queue_ms},       {"create", r.durations.create_ms},
                           {"upload", r.durations.upload_ms},     {"exec", r.durations.exec_ms},
                           {"download", r.durations.download_ms}, {"total", r.durations.total_ms}};
  j["attempts"] = record.attempts;
  j["attempt_errors"] = record.attempt_errors;
  j["fallback_reason"] = record.fallback_reason;
  j["network_isolated"] = r.network_isolated;
  j["ended_by"] = r.ended_by;
  j["notes"] = r.notes;
  j["artifacts"] = r.artifacts;
  j["started_at"] = record.started_at;
  j["finished_at"] = record.finished_at;
  j["host"] = record.host;
  j["labels"] = StringMap(record.labels);
  return Dump(j, indent);
}

Result<TaskRecord> TaskRecordFromJson(const std::string& json) {
  constexpr std::string_view kWhat = "record";
  SANDRUN_ASSIGN_OR_RETURN(Json j, ParseRecord(json, kWhat, kTaskRecordSchema));
  FieldReader in(j, kWhat);
  TaskRecord record;
  ExecResult& r = record.result;
  record.run_id = in.Required("run_id");
  record.task_id = in.Required("task_id");
  std::string outcome = in.Required("outcome");
  if (in.status().ok()) {
    std::optional<Outcome> parsed = OutcomeFromName(outcome);
    if (!parsed) in.Fail("outcome", "has unknown value '" + outcome + "'");
    else r.outcome = *parsed;
  }
  record.test_name = in.String(j, "test_name");
  record.backend = in.String(j, "backend");
  record.image = in.String(j, "image");
  record.sandbox_id = in.String(j, "sandbox_id");
  r.sandbox_id = record.sandbox_id;
  record.isolation = in.String(j, "isolation");
  record.argv = in.StringList(j, "argv");
  r.exit_code = in.SmallInt(j, "exit_code");
  r.signal = in.SmallInt(j, "signal");
  r.error = in.String(j, "error");
  r.stdout_stream = StreamFromJson(in, in.Object(j, "stdout"), "stdout");
  r.stderr_stream = StreamFromJson(in, in.Object(j, "stderr"), "stderr");
  const Json& d = in.Object(j, "durations_ms");
  const std::string dp = "durations_ms.";
  r.durations.queue_ms = in.Int(d, "queue", dp);
  r.durations.create_ms = in.Int(d, "create", dp);
  r.durations.upload_ms = in.Int(d, "upload", dp);
  r.durations.exec_ms = in.Int(d, "exec", dp);
  r.durations.download_ms = in.Int(d, "download", dp);
  r.durations.total_ms = in.Int(d, "total", dp);
  record.attempts = j.contains("attempts") ? in.SmallInt(j, "attempts") : 1;
  record.attempt_errors = in.StringList(j, "attempt_errors");
  record.fallback_reason = in.String(j, "fallback_reason");
  r.network_isolated = in.Bool(j, "network_isolated", true);
  r.ended_by = in.String(j, "ended_by");  // absent in records written before it existed
  r.notes = in.StringList(j, "notes");
  r.artifacts = in.StringList(j, "artifacts");
  record.started_at = in.String(j, "started_at");
  record.finished_at = in.String(j, "finished_at");
  record.host = in.String(j, "host");
  record.labels = in.StringMap(j, "labels");
  if (!in.status().ok()) return in.status();
  return record;
}

std::string ToJson(const RunRecord& record, int indent) {
  Json j;
  j["schema"] = kRunRecordSchema;
  j["run_id"] = record.run_id;
  j["status"] = std::string(RunStatusName(record.status));
  j["backend"] = record.backend;
  j["started_at"] = record.started_at;
  j["finished_at"] = record.finished_at;
  j["wall_ms"] = record.wall_ms;
  j["host"] = record.host;
  j["user"] = record.user;
  j["command_line"] = RedactArgv(record.command_line);
  j["total"] = record.total;
  j["passed"] = record.passed;
  j["skipped"] = record.skipped;
  j["failed"] = record.failed;
  j["timed_out"] = record.timed_out;
  j["infra_errors"] = record.infra_errors;
  j["cancelled"] = record.cancelled;
  j["fastest_passing_task"] = record.fastest_passing_task;
  j["task_ids"] = record.task_ids;
  j["labels"] = StringMap(record.labels);
  if (!record.superseded.empty()) j["superseded"] = StringMap(record.superseded);
  return Dump(j, indent);
}

Result<RunRecord> RunRecordFromJson(const std::string& json) {
  constexpr std::string_view kWhat = "run record";
  SANDRUN_ASSIGN_OR_RETURN(Json j, ParseRecord(json, kWhat, kRunRecordSchema));
  FieldReader in(j, kWhat);
  RunRecord record;
  record.run_id = in.Required("run_id");
  std::string status = in.Required("status");
  if (!status.empty()) {
    std::optional<RunStatus> parsed = RunStatusFromName(status);
    if (!parsed) in.Fail("status", "has unknown value '" + status + "'");
    else record.status = *parsed;
  }
  record.backend = in.String(j, "backend");
  record.started_at = in.String(j, "started_at");
  record.finished_at = in.String(j, "finished_at");
  record.wall_ms = in.Int(j, "wall_ms");
  record.host = in.String(j, "host");
  record.user = in.String(j, "user");  // absent in records written before it existed
  record.command_line = in.StringList(j, "command_line");
  record.total = in.SmallInt(j, "total");
  record.passed = in.SmallInt(j, "passed");
  record.skipped = in.SmallInt(j, "skipped");  // absent in records written before it existed
  record.failed = in.SmallInt(j, "failed");
  record.timed_out = in.SmallInt(j, "timed_out");
  record.infra_errors = in.SmallInt(j, "infra_errors");
  record.cancelled = in.SmallInt(j, "cancelled");
  record.fastest_passing_task = in.String(j, "fastest_passing_task");
  record.task_ids = in.StringList(j, "task_ids");
  record.labels = in.StringMap(j, "labels");
  record.superseded = in.StringMap(j, "superseded");  // only in retried parts
  if (!in.status().ok()) return in.status();
  return record;
}

std::string_view RunCounterOf(const TaskRecord& record) {
  switch (record.result.outcome) {
    case Outcome::kExited:
      if (record.result.exit_code != 0) return "failed";
      return TestVerdictOf(record) == "skipped" ? "skipped" : "passed";
    case Outcome::kSignaled:
    case Outcome::kOomKilled: return "failed";
    case Outcome::kTimedOut: return "timed_out";
    case Outcome::kInfraError:
    case Outcome::kInterrupted: return "infra_errors";
    case Outcome::kCancelled: return "cancelled";
  }
  return "infra_errors";
}

int* RunCounter(RunRecord& run, std::string_view counter) {
  if (counter == "passed") return &run.passed;
  if (counter == "skipped") return &run.skipped;
  if (counter == "failed") return &run.failed;
  if (counter == "timed_out") return &run.timed_out;
  if (counter == "infra_errors") return &run.infra_errors;
  if (counter == "cancelled") return &run.cancelled;
  return nullptr;
}

}  // namespace sandrun
