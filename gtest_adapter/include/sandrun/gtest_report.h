// The report GoogleTest writes for `--gtest_output=xml|json`, written by
// `sandrun gtest` for cases that ran in sandboxes (the one home of this
// format in sandrun; JUnit for other runs is core's junit.h). Same
// elements, attributes and keys as GoogleTest 1.12:
//   <testsuites tests failures disabled errors time timestamp name="AllTests">
//     <testsuite name tests failures disabled skipped errors time timestamp>
//       <testcase name [value_param] [type_param] file line status result
//                 time timestamp classname>
//         <failure message type=""><![CDATA[file:line\nmessage]]></failure>
//         <skipped message>...</skipped>
//         <properties><property name value/></properties>
// and the JSON of GoogleTest's schema (properties as keys of the test).
// The sandbox facts are test properties: sandrun_backend, sandrun_sandbox,
// sandrun_run, sandrun_task (the record: `sandrun results show RUN TASK`),
// sandrun_attempts (how many times the case ran), sandrun_verdict, and
// flaky="true" for a case that passed only on a retry. Two departures, for
// what GoogleTest has no word for: a sandrun infrastructure error is an
// <error> counted in `errors` (never a test failure), and a skip's message
// is kept in JSON as newer GoogleTest versions do ("skipped": [{message}]).
#ifndef SANDRUN_GTEST_REPORT_H_
#define SANDRUN_GTEST_REPORT_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "sandrun/gtest_protocol.h"
#include "sandrun/status.h"

namespace sandrun::gtest {

using ReportProperties = std::vector<std::pair<std::string, std::string>>;

/// One test of the report: a case that ran, or a disabled one (not run).
struct ReportedCase {
  ListedTest test;
  bool run = true;           ///< false: disabled, reported as notrun/suppressed.
  Verdict verdict;           ///< For a case that ran.
  std::int64_t ms = 0;       ///< Its own time.
  std::int64_t start_epoch_ms = 0;
  ReportProperties properties;
};

struct GtestReport {
  std::vector<ReportedCase> cases;  ///< In the binary's order (suites stay together).
  std::int64_t start_epoch_ms = 0;
  std::int64_t elapsed_ms = 0;
  ReportProperties properties;      ///< Of the whole run (attributes of the root).
};

std::string GtestXmlReport(const GtestReport& report);
std::string GtestJsonReport(const GtestReport& report);

/// Writes the report in `format` ("xml" or "json") to `path` atomically,
/// creating its directory as GoogleTest does.
Status WriteGtestReport(const std::filesystem::path& path, const std::string& format,
                        const GtestReport& report);

}  // namespace sandrun::gtest

#endif  // SANDRUN_GTEST_REPORT_H_
