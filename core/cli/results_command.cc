// `sandrun results`: list, show, fetch, export, prune and sync the runs kept
// in a backend's result archive. Every subcommand reads the archive through
// ResultArchive, so they work the same for every backend.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "console_listener.h"
#include "run_support.h"
#include "sandrun/junit.h"
#include "sandrun/record.h"
#include "sandrun/report.h"
#include "sandrun/util.h"

namespace sandrun::cli {
namespace {

// ordered_json keeps the records' documented field order.
using Json = nlohmann::ordered_json;

constexpr int kExitFailure = 1;
constexpr std::size_t kShowMaxLines = 200;
constexpr std::size_t kShowMaxBytes = 16 * 1024;

constexpr char kResultsUsage[] =
    "usage: sandrun results <command> [options]\n\n"
    "Reads the result archive of a backend (--backend, default from config).\n\n"
    "commands:\n"
    "  list [--limit N] [--json] [--label K=V] [--host H] [--user U] [--status S]\n"
    "                                      runs, newest first, optionally filtered\n"
    "  show RUN [TEST] [--full] [--json]   a run's tests, or one test's record and output\n"
    "  fetch RUN -o DIR                    copy a run (records and artifacts) into DIR/RUN\n"
    "  export RUN --junit FILE             write a run as JUnit XML\n"
    "  report RUN... -o FILE.html          write runs as one self-contained HTML page\n"
    "  prune --keep N                      remove all but the newest N runs\n"
    "  sync                                deliver records waiting in the outbox\n\n"
    "RUN may be `latest`: your newest run from this host (the archive of a shared\n"
    "engine or cloud workspace holds everyone's runs); --any-host and\n"
    "--any-user widen it. TEST is a task id or a test's name (Suite.Case).\n"
    "`sandrun results <command> --help` describes each.\n\n"
    "examples:\n"
    "  sandrun results list --status failed --label ci.job=1234\n"
    "  sandrun results show latest 'Nums/ParamT.IsSmall/1'\n"
    "  sandrun results export latest --junit report.xml\n\n"
    "exit codes: 0 done, 1 the archive or run could not be read, 2 bad usage\n";

// Columns padded to their widest cell; the last column is not padded.
class Table {
 public:
  explicit Table(std::vector<std::string> header) { rows_.push_back(std::move(header)); }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void Print(std::ostream& out) const {
    std::vector<std::size_t> widths;
    for (const auto& row : rows_) {
      widths.resize(std::max(widths.size(), row.size()));
      for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    }
    for (const auto& row : rows_) {
      std::string line;
      for (std::size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
      }
      out << line << "\n";
    }
  }

 private:
  std::vector<std::vector<std::string>> rows_;
};

// The state every subcommand starts from: parsed flags and an open archive.
struct Session {
  cxxopts::ParseResult parsed;
  std::shared_ptr<ResultArchive> archive;
};

// Parses the subcommand's flags and opens the archive. Returns nullopt after
// --help (exit 0); `*exit_code` is set when the archive cannot be opened.
std::optional<Session> Open(cxxopts::Options& options, const std::vector<std::string>& args,
                            CliContext& context, int* exit_code) {
  AddConfigOptions(options, context, "backend");
  auto parsed = ParseOrThrow(options, args);
  *exit_code = 0;
  if (!parsed) return std::nullopt;
  Config config = LoadConfigOrThrow(*parsed, context);
  auto opened = OpenArchive(context, config);
  if (!opened.ok()) {
    PrintError(opened.status().message());
    *exit_code = kExitFailure;
    return std::nullopt;
  }
  return Session{std::move(*parsed), opened->archive};
}

// `name` is an option; positional ones are named in upper case in messages.
std::string RequireString(const cxxopts::ParseResult& parsed, const std::string& name,
                          const std::string& usage, bool positional = false) {
  if (parsed.count(name) == 0) {
    std::string shown = name;
    for (char& c : shown) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    throw UsageError{"missing " + (positional ? shown : "--" + name) + ": usage: " + usage};
  }
  return parsed[name].as<std::string>();
}

int NonNegativeInt(const cxxopts::ParseResult& parsed, const std::string& flag) {
  std::string text = parsed[flag].as<std::string>();
  std::size_t used = 0;
  long value = -1;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || value < 0 || value > std::numeric_limits<int>::max()) {
    throw UsageError{"--" + flag + " must be a non-negative integer, got '" + text + "'"};
  }
  return static_cast<int>(value);
}

// Prints the failure; a missing run also points at `sandrun results list`.
int Fail(const Status& status) {
  std::string message = status.message();
  if (status.code() == StatusCode::kNotFound) message += "; see `sandrun results list`";
  PrintError(message);
  return kExitFailure;
}

// Whose runs `latest` may name: by default this user's on this host.
struct LatestScope {
  std::string host;  ///< Empty: any host.
  std::string user;  ///< Empty: any user.
};

void AddLatestOptions(cxxopts::Options& options) {
  options.add_options("Latest")
      ("any-host", "`latest` may be a run from another host")
      ("any-user", "`latest` may be another user's run");
}

LatestScope LatestScopeOf(const cxxopts::ParseResult& parsed) {
  LatestScope scope;
  if (parsed.count("any-host") == 0) scope.host = HostName();
  if (parsed.count("any-user") == 0) scope.user = UserName();
  return scope;
}

// Whether the run with this listing belongs to `scope`. A run without
// run.json (still going, or killed) is judged by its tasks' host; records
// written before `user` existed match any user.
bool InScope(ResultArchive& archive, const RunListing& listing, const LatestScope& scope) {
  if (listing.has_summary) {
    const RunRecord& run = listing.summary;
    if (!scope.host.empty() && run.host != scope.host) return false;
    return scope.user.empty() || run.user.empty() || run.user == scope.user;
  }
  if (scope.host.empty()) return true;
  auto tasks = archive.ReadTasks(listing.run_id);
  return tasks.ok() && !tasks->empty() && tasks->front().host == scope.host;
}

// "latest" is the newest run in `scope`; anything else is taken as a run id.
Result<std::string> ResolveRun(ResultArchive& archive, const std::string& run,
                               const LatestScope& scope) {
  if (run != "latest") return run;
  SANDRUN_ASSIGN_OR_RETURN(std::vector<RunListing> runs, archive.ListRuns(0));
  // Summaries are read one by one (each is a request on a remote store)
  // until a run in scope is found; its second's other runs are read too,
  // since ids order runs by the second only.
  const RunListing* newest = nullptr;
  for (RunListing& listing : runs) {
    if (newest != nullptr && !RunIdsShareASecond(newest->run_id, listing.run_id)) break;
    auto summary = archive.ReadRun(listing.run_id);
    if (summary.ok()) {
      listing.summary = std::move(*summary);
      listing.has_summary = true;
    } else if (summary.status().code() != StatusCode::kNotFound) {
      return summary.status();
    }
    if (!InScope(archive, listing, scope)) continue;
    if (newest == nullptr || NewerRunFirst(listing, *newest)) newest = &listing;
  }
  if (newest != nullptr) return newest->run_id;
  if (runs.empty()) return NotFoundError("no runs in " + archive.store().Describe());
  std::string whose = scope.user.empty() ? "" : " of user " + scope.user;
  if (!scope.host.empty()) whose += " from host " + scope.host;
  return NotFoundError("no runs" + whose + " in " + archive.store().Describe() + " (" +
                       std::to_string(runs.size()) +
                       " of others; --any-host / --any-user include them)");
}

// The filters of `results list`; an empty filter keeps every run.
struct RunFilter {
  std::map<std::string, std::string> labels;
  std::string host;
  std::string user;
  std::optional<RunStatus> status;

  bool empty() const { return labels.empty() && host.empty() && user.empty() && !status; }
  // A run without run.json has status "incomplete" and nothing else known.
  bool Matches(const RunListing& listing) const {
    if (!listing.has_summary) {
      return labels.empty() && host.empty() && user.empty() &&
             (!status || *status == RunStatus::kIncomplete);
    }
    const RunRecord& run = listing.summary;
    if (status && run.status != *status) return false;
    if (!host.empty() && run.host != host) return false;
    if (!user.empty() && run.user != user) return false;
    for (const auto& [key, value] : labels) {
      auto it = run.labels.find(key);
      if (it == run.labels.end() || it->second != value) return false;
    }
    return true;
  }
};

RunFilter RunFilterOf(const cxxopts::ParseResult& parsed) {
  RunFilter filter;
  if (parsed.count("label")) {
    for (const std::string& label : parsed["label"].as<std::vector<std::string>>()) {
      std::size_t eq = label.find('=');
      if (eq == std::string::npos || eq == 0) {
        throw UsageError{"--label takes KEY=VALUE, got '" + label + "'"};
      }
      filter.labels[label.substr(0, eq)] = label.substr(eq + 1);
    }
  }
  if (parsed.count("host")) filter.host = parsed["host"].as<std::string>();
  if (parsed.count("user")) filter.user = parsed["user"].as<std::string>();
  if (parsed.count("mine")) {
    if (filter.host.empty()) filter.host = HostName();
    if (filter.user.empty()) filter.user = UserName();
  }
  if (parsed.count("status")) {
    std::string name = parsed["status"].as<std::string>();
    filter.status = RunStatusFromName(name);
    if (!filter.status) {
      throw UsageError{"--status must be passed, failed, cancelled, error or incomplete, got '" +
                       name + "'"};
    }
  }
  return filter;
}

void NotePending(const ResultArchive& archive) {
  int pending = archive.PendingCount();
  if (pending > 0) {
    std::cerr << pending << " record(s) wait in the outbox " << archive.outbox_dir().string()
              << "; `sandrun results sync` delivers them\n";
  }
}

std::string Count(int n) { return std::to_string(n); }

// "5 total: 3 passed, 1 skipped, 1 failed" from the tests' own verdicts
// (TestVerdictOf), so a GTEST_SKIP counts as a skip, not a pass.
std::string VerdictCounts(int total, const std::vector<TaskRecord>& tasks) {
  static constexpr const char* kOrder[] = {"passed",      "skipped",     "failed",
                                           "timed_out",   "oom",         "infra_error",
                                           "interrupted", "cancelled"};
  std::map<std::string, int> counts;
  for (const TaskRecord& t : tasks) ++counts[TestVerdictOf(t)];
  std::string out = Count(std::max<int>(total, static_cast<int>(tasks.size()))) + " total";
  const char* sep = ": ";
  for (const char* verdict : kOrder) {
    if (counts[verdict] == 0) continue;
    std::string word = verdict;
    std::replace(word.begin(), word.end(), '_', ' ');
    out += sep + Count(counts[verdict]) + " " + word;
    sep = ", ";
  }
  return out;
}

// ---------------------------------------------------------------------------

int ListRuns(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results list",
                           "List archived runs, newest first.\n"
                           "usage: sandrun results list [--limit N] [--json] [--label K=V]... "
                           "[--host H] [--user U] [--mine] [--status S] [--backend B]");
  options.add_options("List")
      ("limit", "Show at most N runs (0 = all)", cxxopts::value<std::string>()->default_value("20"))
      ("json", "Print the run summaries as a JSON array")
      ("label", "Only runs with this label, KEY=VALUE (repeat: all must match)",
       cxxopts::value<std::vector<std::string>>())
      ("host", "Only runs started on this host", cxxopts::value<std::string>())
      ("user", "Only runs of this user", cxxopts::value<std::string>())
      ("mine", "Only runs of this user on this host")
      ("status", "Only runs that ended so: passed, failed, cancelled, error or incomplete",
       cxxopts::value<std::string>());
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  int limit = NonNegativeInt(session->parsed, "limit");
  RunFilter filter = RunFilterOf(session->parsed);
  // A filter needs every run's summary; without one, only the shown ones.
  auto runs = session->archive->ListRuns(limit == 0 || !filter.empty()
                                             ? ResultArchive::kAllSummaries
                                             : static_cast<std::size_t>(limit));
  if (!runs.ok()) return Fail(runs.status());
  if (!filter.empty()) {
    std::erase_if(*runs, [&](const RunListing& run) { return !filter.Matches(run); });
  }
  std::size_t shown = limit == 0 ? runs->size() : std::min<std::size_t>(runs->size(), limit);

  if (session->parsed.count("json")) {
    Json out = Json::array();
    for (std::size_t i = 0; i < shown; ++i) {
      const RunListing& run = (*runs)[i];
      if (run.has_summary) {
        out.push_back(Json::parse(ToJson(run.summary, -1)));
      } else {
        out.push_back({{"run_id", run.run_id}, {"status", "incomplete"}});
      }
    }
    std::cout << out.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (runs->empty()) {
    std::cout << "no runs" << (filter.empty() ? "" : " that match") << " in "
              << session->archive->store().Describe() << "\n";
    NotePending(*session->archive);
    return 0;
  }
  // The counts add up to TOTAL: a cancelled test is none of the others.
  Table table({"RUN", "STATUS", "PASSED", "SKIPPED", "FAILED", "TIMED OUT", "ERRORS", "CANCELLED",
               "TOTAL", "WALL", "BACKEND", "BY"});
  for (std::size_t i = 0; i < shown; ++i) {
    const RunListing& run = (*runs)[i];
    if (!run.has_summary) {
      table.Add({run.run_id, "incomplete", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-"});
      continue;
    }
    const RunRecord& s = run.summary;
    table.Add({run.run_id, std::string(RunStatusName(s.status)), Count(s.passed), Count(s.skipped),
               Count(s.failed), Count(s.timed_out), Count(s.infra_errors), Count(s.cancelled),
               Count(s.total),
               FormatDuration(s.wall_ms), s.backend.empty() ? "-" : s.backend,
               (s.user.empty() ? "" : s.user + "@") + s.host});
  }
  table.Print(std::cout);
  if (shown < runs->size()) {
    std::cout << "(" << runs->size() - shown << " older run(s) not shown; --limit 0 shows all)\n";
  }
  NotePending(*session->archive);
  return 0;
}

// Prints a stream's text, cut to kShowMaxLines / kShowMaxBytes unless `full`.
void PrintStream(const char* name, const CapturedStream& stream, bool full,
                 const std::string& archive) {
  std::cout << "--- " << name << " (" << stream.total_bytes << " bytes"
            << (stream.truncated ? ", record keeps " + std::to_string(stream.text.size()) : "")
            << ") ---\n";
  std::string_view text = stream.text;
  bool cut = false;
  if (!full) {
    std::size_t end = std::min(text.size(), kShowMaxBytes);
    std::size_t lines = 0;
    for (std::size_t i = 0; i < end; ++i) {
      if (text[i] == '\n' && ++lines == kShowMaxLines) {
        end = i + 1;
        break;
      }
    }
    cut = end < text.size();
    text = text.substr(0, end);
  }
  std::cout << text;
  if (!text.empty() && text.back() != '\n') std::cout << "\n";
  if (cut) {
    std::cout << "[... " << stream.text.size() - text.size()
              << " more bytes in the record; --full prints them]\n";
  }
  if (stream.truncated && !stream.spill_path.empty()) {
    std::cout << "[the whole stream is the artifact " << stream.spill_path << " in " << archive
              << "; `sandrun results fetch` copies it]\n";
  }
}

// The record of `test` in the run: by task id, else by test name
// ("Nums/ParamT.IsSmall/1", whose task id is sanitised).
Result<TaskRecord> FindTask(ResultArchive& archive, const std::string& run_id,
                            const std::string& test) {
  // A test name is often no valid task id ('/'): then it is only a name.
  auto by_id = archive.ReadTask(run_id, test);
  if (by_id.ok() || (by_id.status().code() != StatusCode::kNotFound &&
                     by_id.status().code() != StatusCode::kInvalidArgument)) {
    return by_id;
  }
  SANDRUN_ASSIGN_OR_RETURN(std::vector<TaskRecord> tasks, archive.ReadTasks(run_id));
  for (TaskRecord& t : tasks) {
    if (t.test_name == test) return std::move(t);
  }
  return NotFoundError("run " + run_id + " has no task or test named '" + test +
                       "'; `sandrun results show " + run_id + "` lists them");
}

// A record as `results show --json` prints it: "verdict" is the test's
// (TestVerdictOf: a GTEST_SKIP is "skipped"), with the skip's reason.
Json ShownJson(const TaskRecord& t) {
  Json j = Json::parse(ToJson(t, -1));
  j["verdict"] = TestVerdictOf(t);
  if (j["verdict"] == "skipped") j["skip_message"] = SkipMessageOf(t);
  return j;
}

int ShowTask(const Session& session, const std::string& run_id, const std::string& test) {
  auto task = FindTask(*session.archive, run_id, test);
  if (!task.ok()) return Fail(task.status());
  const TaskRecord& t = *task;
  if (session.parsed.count("json")) {
    std::cout << ShownJson(t).dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    return 0;
  }
  const ExecResult& r = t.result;
  Table fields({"run", t.run_id});
  fields.Add({"task", t.task_id});
  if (t.test_name != t.task_id) fields.Add({"test", t.test_name});
  std::string verdict = TestVerdictOf(t);
  fields.Add({"verdict", verdict});
  if (verdict == "skipped" && !SkipMessageOf(t).empty()) {
    fields.Add({"skip reason", SkipMessageOf(t)});
  }
  fields.Add({"outcome", std::string(OutcomeName(r.outcome))});
  fields.Add({"exit code", ExitText(r)});
  if (!r.error.empty()) fields.Add({"error", r.error});
  fields.Add({"command", QuoteForDisplay(t.argv)});
  fields.Add({"backend", t.backend});
  if (!t.image.empty()) fields.Add({"image", t.image});
  fields.Add({"sandbox", t.sandbox_id});
  fields.Add({"host", t.host});
  fields.Add({"started", t.started_at});
  fields.Add({"finished", t.finished_at});
  const Durations& d = r.durations;
  fields.Add({"durations", "total " + FormatDuration(d.total_ms) + " (queue " +
                               FormatDuration(d.queue_ms) + ", create " +
                               FormatDuration(d.create_ms) + ", upload " +
                               FormatDuration(d.upload_ms) + ", exec " + FormatDuration(d.exec_ms) +
                               ", download " + FormatDuration(d.download_ms) + ")"});
  fields.Add({"attempts", std::to_string(t.attempts)});
  for (const auto& e : t.attempt_errors) fields.Add({"attempt error", e});
  if (!t.fallback_reason.empty()) fields.Add({"fallback", t.fallback_reason});
  fields.Add({"network", r.network_isolated ? "isolated" : "NOT isolated"});
  for (const auto& n : r.notes) fields.Add({"note", n});
  for (const auto& a : r.artifacts) fields.Add({"artifact", a});
  for (const auto& [k, v] : t.labels) fields.Add({"label", k + "=" + v});
  fields.Print(std::cout);
  bool full = session.parsed.count("full") > 0;
  std::string archive = session.archive->store().Describe();
  PrintStream("stdout", r.stdout_stream, full, archive);
  PrintStream("stderr", r.stderr_stream, full, archive);
  return 0;
}

int ShowRun(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results show",
                           "Show a run's summary and tests, or one test's record and output.\n"
                           "usage: sandrun results show RUN [TEST] [--full] [--json]");
  options.add_options("Show")
      ("full", "Print all of the output text kept in the record (default: 200 lines / 16 KiB)")
      ("json", "Print the record(s) as JSON")
      ("run", "Run id, or `latest`", cxxopts::value<std::string>())
      ("task", "Task id or test name (Suite.Case)", cxxopts::value<std::string>());
  AddLatestOptions(options);
  options.parse_positional({"run", "task"});
  options.positional_help("RUN [TEST]");
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  std::string run_arg =
      RequireString(session->parsed, "run", "sandrun results show RUN [TEST]", true);
  auto run_id = ResolveRun(*session->archive, run_arg, LatestScopeOf(session->parsed));
  if (!run_id.ok()) return Fail(run_id.status());
  if (session->parsed.count("task")) {
    return ShowTask(*session, *run_id, session->parsed["task"].as<std::string>());
  }

  auto run = session->archive->ReadRun(*run_id);
  // A run without run.json (still going, or killed) still has its tasks.
  if (!run.ok() && run.status().code() != StatusCode::kNotFound) {
    return Fail(run.status());
  }
  auto tasks = session->archive->ReadTasks(*run_id);
  if (!tasks.ok()) return Fail(tasks.status());

  if (session->parsed.count("json")) {
    Json out;
    out["run"] = run.ok() ? Json::parse(ToJson(*run, -1)) : Json();
    out["tasks"] = Json::array();
    for (const auto& t : *tasks) out["tasks"].push_back(ShownJson(t));
    std::cout << out.dump(2, ' ', false, Json::error_handler_t::replace) << "\n";
    return 0;
  }
  if (run.ok()) {
    const RunRecord& s = *run;
    Table fields({"run", s.run_id});
    fields.Add({"status", std::string(RunStatusName(s.status))});
    fields.Add({"backend", s.backend});
    fields.Add({"host", s.host});
    if (!s.user.empty()) fields.Add({"user", s.user});
    fields.Add({"started", s.started_at});
    fields.Add({"wall time", FormatDuration(s.wall_ms)});
    if (!s.command_line.empty()) fields.Add({"command", QuoteForDisplay(s.command_line)});
    for (const auto& [k, v] : s.labels) fields.Add({"label", k + "=" + v});
    fields.Add({"tests", VerdictCounts(s.total, *tasks)});
    // Set only by --race (older records set it always: shown for --race only).
    bool race = std::find(s.command_line.begin(), s.command_line.end(), "--race") !=
                s.command_line.end();
    if (race && !s.fastest_passing_task.empty()) {
      fields.Add({"fastest passing", s.fastest_passing_task});
    }
    fields.Print(std::cout);
  } else {
    std::cout << "run " << *run_id << ": incomplete (no run.json: still running, or killed)\n";
  }
  std::cout << "\n";
  if (tasks->empty()) {
    std::cout << "no task records\n";
    return 0;
  }
  bool named = std::any_of(tasks->begin(), tasks->end(),
                           [](const TaskRecord& t) { return t.test_name != t.task_id; });
  Table table(named ? std::vector<std::string>{"TEST", "VERDICT", "EXIT", "DURATION", "SANDBOX"}
                    : std::vector<std::string>{"TASK", "VERDICT", "EXIT", "DURATION", "SANDBOX"});
  for (const auto& t : *tasks) {
    table.Add({named && !t.test_name.empty() ? t.test_name : t.task_id, TestVerdictOf(t),
               ExitText(t.result), FormatDuration(t.result.durations.own_ms()),
               t.sandbox_id.empty() ? "-" : t.sandbox_id});
  }
  table.Print(std::cout);
  return 0;
}

int FetchRun(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results fetch",
                           "Copy a run (records and artifacts) into DIR/RUN.\n"
                           "usage: sandrun results fetch RUN -o DIR");
  options.add_options("Fetch")
      ("o,output", "Directory to copy into", cxxopts::value<std::string>())
      ("run", "Run id, or `latest`", cxxopts::value<std::string>());
  AddLatestOptions(options);
  options.parse_positional({"run"});
  options.positional_help("RUN");
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  const char* usage = "sandrun results fetch RUN -o DIR";
  std::string run_arg = RequireString(session->parsed, "run", usage, true);
  std::filesystem::path dest = RequireString(session->parsed, "output", usage);
  auto run_id = ResolveRun(*session->archive, run_arg, LatestScopeOf(session->parsed));
  if (!run_id.ok()) return Fail(run_id.status());
  Status fetched = session->archive->Fetch(*run_id, dest);
  if (!fetched.ok()) return Fail(fetched);
  std::cout << (dest / *run_id).string() << "\n";
  return 0;
}

int ExportRun(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results export",
                           "Write an archived run as JUnit XML.\n"
                           "usage: sandrun results export RUN --junit FILE");
  options.add_options("Export")
      ("junit", "The JUnit XML file to write", cxxopts::value<std::string>())
      ("run", "Run id, or `latest`", cxxopts::value<std::string>());
  AddLatestOptions(options);
  options.parse_positional({"run"});
  options.positional_help("RUN");
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  const char* usage = "sandrun results export RUN --junit FILE";
  std::string run_arg = RequireString(session->parsed, "run", usage, true);
  RequireString(session->parsed, "junit", usage);
  std::filesystem::path file = WritableReportPath(session->parsed, "junit");
  auto run_id = ResolveRun(*session->archive, run_arg, LatestScopeOf(session->parsed));
  if (!run_id.ok()) return Fail(run_id.status());
  auto tasks = session->archive->ReadTasks(*run_id);
  if (!tasks.ok()) return Fail(tasks.status());
  auto run = session->archive->ReadRun(*run_id);
  RunRecord summary;
  if (run.ok()) {
    summary = std::move(*run);
  } else {
    summary.run_id = *run_id;
    summary.status = RunStatus::kIncomplete;
  }
  // The listener writes atomically; the archive's records are written whole.
  JUnitFileListener writer(file, std::numeric_limits<std::size_t>::max());
  for (const auto& t : *tasks) writer.OnTaskEnd(t);
  writer.OnRunEnd(summary);
  if (!writer.status().ok()) return Fail(writer.status());
  std::cout << "wrote " << file.string() << " (" << tasks->size() << " test(s) of run "
            << *run_id << ")\n";
  return 0;
}

int ReportRun(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results report",
                           "Write archived runs as one self-contained HTML page: the runs'\n"
                           "facts, a sortable task table with failures and output tails, a\n"
                           "timeline of the sandboxes and a histogram of durations\n"
                           "(docs/report.md). The page loads nothing from the network.\n"
                           "usage: sandrun results report RUN... -o FILE.html\n"
                           "       sandrun results report --since UTC -o FILE.html\n"
                           "       sandrun results report --run-group-of-parent -o FILE.html");
  options.add_options("Report")
      ("o,output", "The HTML file to write", cxxopts::value<std::string>())
      ("since", "Every run started at or after UTC (a run id's time, YYYYMMDDTHHMMSSZ, or a "
                "prefix of it): all the runs of a CTest suite, say",
       cxxopts::value<std::string>())
      ("runs", "Run ids, or `latest`", cxxopts::value<std::vector<std::string>>());
  AddLatestOptions(options);
  AddRunGroupOptions(options, "The run of group G (sandrun exec --run-group G)",
                     "The run of the process that started sandrun: the ctest invocation "
                     "whose tests ran with --run-group-of-parent (the CTest adapter's "
                     "report test)");
  options.parse_positional({"runs"});
  options.positional_help("RUN...");
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  const char* usage =
      "sandrun results report RUN...|--since UTC|--run-group[-of-parent] -o FILE.html";
  const bool by_group =
      session->parsed.count("run-group") > 0 || session->parsed.count("run-group-of-parent") > 0;
  if (session->parsed.count("runs") == 0 && session->parsed.count("since") == 0 && !by_group) {
    throw UsageError{std::string("missing RUN, --since or a run group: usage: ") + usage};
  }
  RequireString(session->parsed, "output", usage);
  std::filesystem::path file = WritableReportPath(session->parsed, "output");
  std::vector<std::string> run_ids;
  if (session->parsed.count("runs")) {
    for (const auto& arg : session->parsed["runs"].as<std::vector<std::string>>()) {
      auto id = ResolveRun(*session->archive, arg, LatestScopeOf(session->parsed));
      if (!id.ok()) return Fail(id.status());
      run_ids.push_back(*id);
    }
  }
  if (by_group) {
    std::string group = RunGroupOf(session->parsed, context, nullptr);
    if (group.empty()) {
      return Fail(NotFoundError("cannot tell the process that started sandrun (no /proc?)"));
    }
    auto id = session->archive->RunOfGroup(group);
    if (!id.ok()) return Fail(id.status());
    run_ids.push_back(*id);
  }
  if (session->parsed.count("since")) {
    std::string since = session->parsed["since"].as<std::string>();
    auto listed = session->archive->ListRuns(0);
    if (!listed.ok()) return Fail(listed.status());
    for (auto it = listed->rbegin(); it != listed->rend(); ++it) {  // oldest first
      bool named = std::find(run_ids.begin(), run_ids.end(), it->run_id) != run_ids.end();
      if (it->run_id >= since && !named) run_ids.push_back(it->run_id);
    }
    if (run_ids.empty()) {
      return Fail(NotFoundError("no run started at or after " + since + " in " +
                                session->archive->store().Describe()));
    }
  }
  ReportBuilder page;
  std::size_t task_count = 0;
  for (const auto& run_id : run_ids) {
    auto run = session->archive->ReadRun(run_id);
    // A run without run.json (still going, or killed) still has its tasks.
    if (!run.ok() && run.status().code() != StatusCode::kNotFound) return Fail(run.status());
    auto tasks = session->archive->ReadTasks(run_id);
    if (!tasks.ok()) return Fail(tasks.status());
    if (!run.ok() && tasks->empty()) {
      return Fail(NotFoundError("run " + run_id + " has neither a summary nor task records"));
    }
    if (run.ok()) page.AddRun(*run);
    for (const auto& t : *tasks) page.AddTask(t);
    task_count += tasks->size();
  }
  Status written = WriteFileAtomically(file, page.Html(), 0644);
  if (!written.ok()) return Fail(written);
  std::cout << "wrote " << file.string() << " (" << task_count << " task(s) of "
            << (run_ids.size() == 1 ? "run " + run_ids[0] : std::to_string(run_ids.size()) + " runs")
            << ")\n";
  return 0;
}

int PruneRuns(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results prune",
                           "Remove all but the newest N runs from the archive.\n"
                           "usage: sandrun results prune --keep N");
  options.add_options("Prune")("keep", "How many of the newest runs to keep",
                               cxxopts::value<std::string>());
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  RequireString(session->parsed, "keep", "sandrun results prune --keep N");
  int keep = NonNegativeInt(session->parsed, "keep");
  auto pruned = session->archive->Prune(keep);
  if (!pruned.ok()) return Fail(pruned.status());
  for (const auto& id : pruned->removed) std::cout << "removed " << id << "\n";
  for (const auto& [id, why] : pruned->kept_running) {
    std::cout << "kept " << id << ": no run.json yet, " << why << "\n";
  }
  std::cout << "removed " << pruned->removed.size() << " run(s), kept the newest " << keep;
  if (!pruned->kept_running.empty()) {
    std::cout << " and " << pruned->kept_running.size() << " that may still be running";
  }
  std::cout << "\n";
  return 0;
}

int SyncOutbox(const std::vector<std::string>& args, CliContext& context) {
  cxxopts::Options options("sandrun results sync",
                           "Deliver records left in the outbox to the archive.\n"
                           "usage: sandrun results sync [--backend B]");
  int exit_code = 0;
  auto session = Open(options, args, context, &exit_code);
  if (!session) return exit_code;
  auto delivered = session->archive->Sync();
  if (!delivered.ok()) {
    PrintError(delivered.status().message());
    NotePending(*session->archive);
    return kExitFailure;
  }
  std::cout << "delivered " << *delivered << " record(s) to "
            << session->archive->store().Describe() << "\n";
  return 0;
}

struct ResultsSubcommand {
  const char* name;
  int (*run)(const std::vector<std::string>&, CliContext&);
};

constexpr ResultsSubcommand kResultsSubcommands[] = {
    {"list", ListRuns},   {"show", ShowRun},    {"fetch", FetchRun},
    {"export", ExportRun}, {"report", ReportRun}, {"prune", PruneRuns},
    {"sync", SyncOutbox},
};

}  // namespace

int ResultsCommand(const std::vector<std::string>& args, CliContext& context) {
  if (args.size() >= 2 && (args[1] == "-h" || args[1] == "--help" || args[1] == "help")) {
    std::cout << kResultsUsage;
    return 0;
  }
  if (args.size() < 2) throw UsageError{std::string("missing command\n") + kResultsUsage};
  for (const auto& sub : kResultsSubcommands) {
    if (args[1] != sub.name) continue;
    std::vector<std::string> sub_args(args.begin() + 1, args.end());
    sub_args[0] = "sandrun results " + args[1];
    return sub.run(sub_args, context);
  }
  throw UsageError{"unknown results command '" + args[1] + "' (see `sandrun results --help`)"};
}

}  // namespace sandrun::cli
