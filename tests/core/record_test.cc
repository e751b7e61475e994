#include "sandrun/record.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

namespace sandrun {
namespace {

TaskRecord FullTaskRecord() {
  TaskRecord r;
  r.run_id = "20261122T031500Z-4f2a";
  r.task_id = "case-7";
  r.test_name = "Suite.Case7";
  r.backend = "local";
  r.image = "debian:12";
  r.sandbox_id = "sb-123";
  r.argv = {"/bin/sh", "-c", "echo 'hi there' \"$X\""};
  r.result.outcome = Outcome::kSignaled;
  r.result.exit_code = 137;
  r.result.signal = 9;
  r.result.sandbox_id = "sb-123";
  r.result.error = "";
  r.result.stdout_stream.text = "line one\nünïcødé ✓ 日本語 😀\n";
  r.result.stdout_stream.total_bytes = 5000000000ULL;  // > 4 GiB: needs 64 bits.
  r.result.stdout_stream.truncated = true;
  r.result.stdout_stream.spill_path = "20261122T031500Z-4f2a/artifacts/case-7/stdout.log";
  r.result.stderr_stream.text = std::string("nul\0byte\x01\x7f", 11);
  r.result.stderr_stream.total_bytes = 11;
  r.result.durations = {1, 2, 3, 4, 5, 15};
  r.result.artifacts = {"out/report.txt", "core"};
  r.result.network_isolated = false;
  r.result.notes = {"memory limit not enforced locally"};
  r.result.ended_by = std::string(kEndedByLifetime);
  r.attempts = 3;
  r.attempt_errors = {"UNAVAILABLE: daemon restarted", "UNAVAILABLE: again"};
  r.fallback_reason = "docker: no daemon";
  r.started_at = "2026-11-22T03:15:00.123Z";
  r.finished_at = "2026-11-22T03:15:01.456Z";
  r.host = "ci-7";
  r.labels = {{"team", "infra"}, {"managed-by", "sandrun"}};
  return r;
}

void ExpectStreamEq(const CapturedStream& a, const CapturedStream& b) {
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.total_bytes, b.total_bytes);
  EXPECT_EQ(a.truncated, b.truncated);
  EXPECT_EQ(a.spill_path, b.spill_path);
}

void ExpectTaskEq(const TaskRecord& a, const TaskRecord& b) {
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.task_id, b.task_id);
  EXPECT_EQ(a.test_name, b.test_name);
  EXPECT_EQ(a.backend, b.backend);
  EXPECT_EQ(a.image, b.image);
  EXPECT_EQ(a.sandbox_id, b.sandbox_id);
  EXPECT_EQ(a.argv, b.argv);
  EXPECT_EQ(a.result.outcome, b.result.outcome);
  EXPECT_EQ(a.result.exit_code, b.result.exit_code);
  EXPECT_EQ(a.result.signal, b.result.signal);
  EXPECT_EQ(a.result.sandbox_id, b.result.sandbox_id);
  EXPECT_EQ(a.result.error, b.result.error);
  ExpectStreamEq(a.result.stdout_stream, b.result.stdout_stream);
  ExpectStreamEq(a.result.stderr_stream, b.result.stderr_stream);
  EXPECT_EQ(a.result.durations.queue_ms, b.result.durations.queue_ms);
  EXPECT_EQ(a.result.durations.create_ms, b.result.durations.create_ms);
  EXPECT_EQ(a.result.durations.upload_ms, b.result.durations.upload_ms);
  EXPECT_EQ(a.result.durations.exec_ms, b.result.durations.exec_ms);
  EXPECT_EQ(a.result.durations.download_ms, b.result.durations.download_ms);
  EXPECT_EQ(a.result.durations.total_ms, b.result.durations.total_ms);
  EXPECT_EQ(a.result.artifacts, b.result.artifacts);
  EXPECT_EQ(a.result.network_isolated, b.result.network_isolated);
  EXPECT_EQ(a.result.notes, b.result.notes);
  EXPECT_EQ(a.result.ended_by, b.result.ended_by);
  EXPECT_EQ(a.attempts, b.attempts);
  EXPECT_EQ(a.attempt_errors, b.attempt_errors);
  EXPECT_EQ(a.fallback_reason, b.fallback_reason);
  EXPECT_EQ(a.started_at, b.started_at);
  EXPECT_EQ(a.finished_at, b.finished_at);
  EXPECT_EQ(a.host, b.host);
  EXPECT_EQ(a.labels, b.labels);
}

TEST(TaskRecordTest, RoundTripsEveryField) {
  TaskRecord original = FullTaskRecord();
  std::string json = ToJson(original);
  auto parsed = TaskRecordFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  ExpectTaskEq(original, *parsed);
  // And the second trip produces identical text.
  EXPECT_EQ(ToJson(*parsed), json);
}

TEST(TaskRecordTest, JsonUsesDocumentedFieldNames) {
  auto j = nlohmann::json::parse(ToJson(FullTaskRecord()));
  EXPECT_EQ(j["schema"], "sandrun.result/v1");
  EXPECT_EQ(j["outcome"], "signaled");
  EXPECT_EQ(j["verdict"], "failed");
  EXPECT_EQ(j["signal"], 9);
  EXPECT_EQ(j["stdout"]["total_bytes"], 5000000000ULL);
  EXPECT_EQ(j["stdout"]["truncated"], true);
  EXPECT_EQ(j["durations_ms"]["exec"], 4);
  EXPECT_EQ(j["durations_ms"]["total"], 15);
  EXPECT_EQ(j["labels"]["team"], "infra");
  EXPECT_EQ(j["attempt_errors"].size(), 2u);
  EXPECT_EQ(j["network_isolated"], false);
  EXPECT_EQ(j["ended_by"], "lifetime");
  EXPECT_FALSE(j["stdout"].contains("text_base64"));  // Valid UTF-8 is stored as is.
}

TEST(TaskRecordTest, InvalidUtf8OutputIsStoredExactlyWithoutThrowing) {
  TaskRecord record = FullTaskRecord();
  std::string binary;
  for (int i = 0; i < 256; ++i) binary += static_cast<char>(i);
  binary += "\xC0\xAF" "\xED\xA0\x80" "\xF4\x90\x80\x80" "tail\xE2\x82";  // Overlong, surrogate, too big, cut.
  record.result.stdout_stream.text = binary;
  std::string json = ToJson(record, -1);
  auto j = nlohmann::json::parse(json);  // Valid JSON, hence valid UTF-8.
  ASSERT_TRUE(j["stdout"].contains("text_base64"));
  std::string readable = j["stdout"]["text"];
  EXPECT_NE(readable.find("\xEF\xBF\xBD"), std::string::npos);  // U+FFFD marks bad bytes.
  EXPECT_NE(readable.find("tail"), std::string::npos);

  auto parsed = TaskRecordFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->result.stdout_stream.text, binary);
}

TEST(TaskRecordTest, TheReadableCopyOfInvalidUtf8IsNoLongerThanTheBytes) {
  TaskRecord record = FullTaskRecord();
  std::string lone_bad_bytes;
  for (int i = 0; i < 300; ++i) lone_bad_bytes += i % 2 ? "\xFF" : "a";
  for (const std::string& text : {lone_bad_bytes, std::string("ok \xFF\xFE\xFD done")}) {
    record.result.stdout_stream.text = text;
    auto j = nlohmann::json::parse(ToJson(record, -1));
    std::string readable = j["stdout"]["text"];
    EXPECT_LE(readable.size(), text.size());
    EXPECT_NE(readable.find("\xEF\xBF\xBD"), std::string::npos);
    auto parsed = TaskRecordFromJson(ToJson(record, -1));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(parsed->result.stdout_stream.text, text);
  }
}

// A CTest test's name is not GoogleTest's ("gt.Math.Skipped" runs
// "Math.Skipped"): the skip is found by the case its --gtest_filter names.
TEST(TaskRecordTest, AGtestSkipIsASkipUnderACTestName) {
  TaskRecord record;
  record.task_id = "gt.Math.Skipped";
  record.test_name = "gt.Math.Skipped";
  record.argv = {"./tests", "--gtest_filter=Math.Skipped", "--gtest_also_run_disabled_tests"};
  record.result.outcome = Outcome::kExited;
  record.result.exit_code = 0;
  record.result.stdout_stream.text =
      "[ RUN      ] Math.Skipped\nt.cc:9: Skipped\nno GPU here\n\n"
      "[  SKIPPED ] Math.Skipped (0 ms)\n";
  EXPECT_EQ(TestVerdictOf(record), "skipped");
  EXPECT_EQ(SkipMessageOf(record), "no GPU here");
  // The same output under a passing case's name is not a skip of it.
  record.argv = {"./tests", "--gtest_filter=Math.Adds"};
  EXPECT_EQ(TestVerdictOf(record), "passed");
}

TEST(RedactArgvTest, HidesEnvAndSecretValuesKeepingTheKeys) {
  std::vector<std::string> argv = {"sandrun", "exec",  "-e",       "A=1",    "-eB=2",
                                   "--env",   "C=3",   "--env=D=4", "--secret", "name",
                                   "--secret=E=5",     "-e",       "PLAIN",  "--",
                                   "sh",      "-c",    "echo hi"};
  std::vector<std::string> expected = {
      "sandrun", "exec",   "-e",          "A=\u2026", "-eB=\u2026", "--env", "C=\u2026",
      "--env=D=\u2026",    "--secret",    "\u2026",   "--secret=E=\u2026",  "-e",
      "PLAIN",   "--",     "sh",          "-c",       "echo hi"};
  EXPECT_EQ(RedactArgv(argv), expected);
  EXPECT_EQ(RedactArgv(expected), expected) << "idempotent";
}

TEST(RedactArgvTest, RecordsAndRunsAreWrittenRedacted) {
  TaskRecord task = FullTaskRecord();
  task.argv = {"docker", "run", "-e", "TOKEN=hunter2", "img"};
  RunRecord run;
  run.run_id = "r";
  run.status = RunStatus::kPassed;
  run.command_line = {"sandrun", "exec", "--env=TOKEN=hunter2", "--", "true"};
  EXPECT_EQ(ToJson(task).find("hunter2"), std::string::npos);
  EXPECT_EQ(ToJson(run).find("hunter2"), std::string::npos);
  EXPECT_NE(ToJson(run).find("--env=TOKEN=\u2026"), std::string::npos);
}

TEST(TaskRecordTest, InvalidUtf8InOtherFieldsIsReplacedNotThrown) {
  TaskRecord record = FullTaskRecord();
  record.argv = {"echo", "bad\xFF" "byte"};
  std::string json = ToJson(record);
  auto parsed = TaskRecordFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->argv[1], "bad\xEF\xBF\xBD" "byte");
}

TEST(TaskRecordTest, ToleratesUnknownFieldsAndMissingOptionalOnes) {
  auto parsed = TaskRecordFromJson(R"({
    "schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "exited",
    "exit_code": 3, "future_field": {"nested": [1, 2]}, "stdout": {"text": "x", "also_new": 1}
  })");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->result.exit_code, 3);
  EXPECT_EQ(parsed->result.stdout_stream.text, "x");
  EXPECT_EQ(parsed->attempts, 1);
  EXPECT_TRUE(parsed->result.network_isolated);
  EXPECT_EQ(parsed->result.ended_by, "") << "records written before ended_by existed";
  EXPECT_TRUE(parsed->labels.empty());
}

TEST(TaskRecordTest, RejectsBadInputWithNamedProblems) {
  struct Case {
    std::string json;
    std::string message;
  };
  const Case cases[] = {
      {"{not json", "record: not valid JSON"},
      {"[1, 2]", "record: not a JSON object"},
      {R"({"run_id": "r"})", "record: field 'schema' is missing"},
      {R"({"schema": "sandrun.run/v1", "run_id": "r"})",
       "record: field 'schema' is 'sandrun.run/v1', expected 'sandrun.result/v1'"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "x"})",
       "record: field 'outcome' has unknown value 'x'"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t"})",
       "record: field 'outcome' is missing"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "exited",
           "exit_code": "zero"})",
       "record: field 'exit_code' must be an integer"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "exited",
           "stdout": {"total_bytes": -1}})",
       "record: field 'stdout.total_bytes' must be a non-negative integer"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "exited",
           "argv": ["a", 1]})",
       "record: field 'argv' must be an array of strings"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "exited",
           "labels": {"k": 1}})",
       "record: field 'labels.k' must be a string"},
      {R"({"schema": "sandrun.result/v1", "run_id": "r", "task_id": "t", "outcome": "exited",
           "stderr": {"text_base64": "!!!"}})",
       "record: field 'stderr.text_base64' is not valid base64"},
  };
  for (const Case& c : cases) {
    auto parsed = TaskRecordFromJson(c.json);
    ASSERT_FALSE(parsed.ok()) << c.json;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << c.json;
    EXPECT_EQ(parsed.status().message().rfind(c.message, 0), 0u)
        << "got: " << parsed.status().message() << "\nwant prefix: " << c.message;
  }
}

TEST(RunRecordTest, RoundTripsEveryField) {
  RunRecord run;
  run.run_id = "20261122T031500Z-4f2a";
  run.status = RunStatus::kFailed;
  run.backend = "docker";
  run.started_at = "2026-11-22T03:15:00.000Z";
  run.finished_at = "2026-11-22T03:16:00.000Z";
  run.wall_ms = 60000;
  run.host = "laptop";
  run.command_line = {"sandrun", "batch", "tasks.json", "-j", "8"};
  run.total = 12;
  run.passed = 7;
  run.failed = 2;
  run.timed_out = 1;
  run.infra_errors = 1;
  run.cancelled = 1;
  run.fastest_passing_task = "t3";
  run.task_ids = {"t1", "t2", "t3"};
  run.labels = {{"ci", "yes"}};
  std::string json = ToJson(run);
  auto parsed = RunRecordFromJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->run_id, run.run_id);
  EXPECT_EQ(parsed->status, run.status);
  EXPECT_EQ(parsed->backend, run.backend);
  EXPECT_EQ(parsed->started_at, run.started_at);
  EXPECT_EQ(parsed->finished_at, run.finished_at);
  EXPECT_EQ(parsed->wall_ms, run.wall_ms);
  EXPECT_EQ(parsed->host, run.host);
  EXPECT_EQ(parsed->command_line, run.command_line);
  EXPECT_EQ(parsed->total, 12);
  EXPECT_EQ(parsed->passed, 7);
  EXPECT_EQ(parsed->failed, 2);
  EXPECT_EQ(parsed->timed_out, 1);
  EXPECT_EQ(parsed->infra_errors, 1);
  EXPECT_EQ(parsed->cancelled, 1);
  EXPECT_EQ(parsed->fastest_passing_task, "t3");
  EXPECT_EQ(parsed->task_ids, run.task_ids);
  EXPECT_EQ(parsed->labels, run.labels);
  EXPECT_EQ(ToJson(*parsed), json);
  EXPECT_EQ(nlohmann::json::parse(json)["schema"], "sandrun.run/v1");
}

TEST(RunRecordTest, RejectsTaskSchemaAndMissingStatus) {
  auto wrong = RunRecordFromJson(R"({"schema": "sandrun.result/v1", "run_id": "r"})");
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().message(),
            "run record: field 'schema' is 'sandrun.result/v1', expected 'sandrun.run/v1'");
  auto missing = RunRecordFromJson(R"({"schema": "sandrun.run/v1", "run_id": "r"})");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().message(), "run record: field 'status' is missing");
}

TEST(RunRecordTest, StatusIsWrittenAsItsNameAndReadBack) {
  const std::pair<RunStatus, const char*> cases[] = {
      {RunStatus::kPassed, "passed"},       {RunStatus::kFailed, "failed"},
      {RunStatus::kCancelled, "cancelled"}, {RunStatus::kError, "error"},
      {RunStatus::kIncomplete, "incomplete"},
  };
  for (const auto& [status, name] : cases) {
    RunRecord run;
    run.run_id = "r";
    run.status = status;
    std::string json = ToJson(run);
    EXPECT_EQ(nlohmann::json::parse(json)["status"], name);
    auto parsed = RunRecordFromJson(json);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    EXPECT_EQ(parsed->status, status) << name;
  }
  auto unknown = RunRecordFromJson(R"({"schema": "sandrun.run/v1", "run_id": "r",
                                       "status": "smouldering"})");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("'smouldering'"), std::string::npos)
      << unknown.status().message();
}

TEST(VerdictOfTest, MapsEveryOutcome) {
  ExecResult r;
  r.outcome = Outcome::kExited;
  r.exit_code = 0;
  EXPECT_EQ(VerdictOf(r), "passed");
  r.exit_code = 1;
  EXPECT_EQ(VerdictOf(r), "failed");
  r.outcome = Outcome::kSignaled;
  r.exit_code = 0;
  EXPECT_EQ(VerdictOf(r), "failed");
  r.outcome = Outcome::kTimedOut;
  EXPECT_EQ(VerdictOf(r), "timed_out");
  r.outcome = Outcome::kOomKilled;
  EXPECT_EQ(VerdictOf(r), "oom");
  r.outcome = Outcome::kCancelled;
  EXPECT_EQ(VerdictOf(r), "cancelled");
  r.outcome = Outcome::kInfraError;
  EXPECT_EQ(VerdictOf(r), "infra_error");
}

// What a case printed, between its [ RUN ] line and its own result line,
// whatever shape that line takes.
TEST(GtestCaseOutputTest, TheCaseOwnLinesWhateverItsResultLineLooksLike) {
  const std::string head = "Note: Google Test filter = X\n[==========] Running 1 test\n";
  // A failed parameterised case, then the summary that lists it again.
  const std::string param =
      head + "[ RUN      ] In/P.T/0\nmine\nf.cc:3: Failure\nboom\n"
             "[  FAILED  ] In/P.T/0, where GetParam() = 1 (0 ms)\n"
             "[==========] 1 test ran.\n[  FAILED  ] 1 test, listed below:\n"
             "[  FAILED  ] In/P.T/0, where GetParam() = 1\n";
  EXPECT_EQ(GtestCaseOutput(param, "In/P.T/0"), "mine\nf.cc:3: Failure\nboom\n");
  // --gtest_print_time=0: no time after the name.
  EXPECT_EQ(GtestCaseOutput(head + "[ RUN      ] A.B\nout\n[       OK ] A.B\n[==========] done\n",
                            "A.B"),
            "out\n");
  // Output without a final newline puts the result line mid-line.
  EXPECT_EQ(GtestCaseOutput(head + "[ RUN      ] A.B\npartial[       OK ] A.B (1 ms)\n", "A.B"),
            "partial");
  // A name that is a prefix of another's is not its end.
  EXPECT_EQ(GtestCaseOutput("[ RUN      ] A.B\nx\n[  SKIPPED ] A.B2 (0 ms)\n[  SKIPPED ] A.B (0 ms)\n",
                            "A.B"),
            "x\n[  SKIPPED ] A.B2 (0 ms)\n");
  // A case that never ended (a crash): everything after [ RUN ].
  EXPECT_EQ(GtestCaseOutput(head + "[ RUN      ] A.B\nabout to crash\n", "A.B"), "about to crash\n");
  EXPECT_EQ(GtestCaseOutput(head, "A.B"), "");
}

}  // namespace
}  // namespace sandrun
