// Unit tests of gtest_adapter's protocol pieces: filters, listings, reports.
#include <gtest/gtest.h>

#include "sandrun/gtest_protocol.h"

namespace sandrun::gtest {
namespace {

TEST(GtestFilter, FollowsGoogleTestSyntax) {
  EXPECT_TRUE(FilterMatches("", "A.b"));
  EXPECT_TRUE(FilterMatches("*", "A.b"));
  EXPECT_TRUE(FilterMatches("A.*", "A.b"));
  EXPECT_FALSE(FilterMatches("A.*", "B.b"));
  EXPECT_TRUE(FilterMatches("B.*:A.?", "A.b"));
  EXPECT_FALSE(FilterMatches("A.?", "A.bc"));
  EXPECT_FALSE(FilterMatches("*-A.b", "A.b"));
  EXPECT_TRUE(FilterMatches("-A.b", "A.c"));
  EXPECT_FALSE(FilterMatches("*-B.*:A.*", "A.c"));
  EXPECT_TRUE(FilterMatches("*Death*", "SampleDeathTest.Dies"));
}

TEST(GtestList, ParsesSuitesCasesAndComments) {
  auto names = ParseTestList(
      "Running main() from gtest_main.cc\n"
      "Suite.\n  One\n  Two  # GetParam() = 3\n"
      "Typed/0.  # TypeParam = int\n  Case\n"
      "DISABLED_Off.\n  Case\nOn.\n  DISABLED_Case\n  Live\n");
  EXPECT_EQ(names, (std::vector<std::string>{"Suite.One", "Suite.Two", "Typed/0.Case", "On.Live"}));
}

TEST(GtestJson, ParsesFailuresSkipsAndLocations) {
  auto cases = ParseGtestJson(R"({"testsuites": [{"name": "S", "testsuite": [
      {"name": "ok", "status": "RUN", "result": "COMPLETED", "time": "0.5s"},
      {"name": "bad", "status": "RUN", "result": "COMPLETED",
       "failures": [{"failure": "/src/a.cc:12\nExpected: x\nmore", "type": ""},
                    {"failure": "unknown file\nthrown", "type": ""}]},
      {"name": "skip", "status": "RUN", "result": "SKIPPED",
       "skipped": [{"message": "/src/a.cc:20\nwhy"}]},
      {"name": "off", "status": "NOTRUN"}, 17]}]})");
  ASSERT_TRUE(cases.ok()) << cases.status().ToString();
  ASSERT_EQ(cases->size(), 4u);
  EXPECT_EQ((*cases)[0].name, "S.ok");
  EXPECT_DOUBLE_EQ((*cases)[0].seconds, 0.5);
  ASSERT_EQ((*cases)[1].failures.size(), 2u);
  EXPECT_EQ((*cases)[1].failures[0].file, "/src/a.cc");
  EXPECT_EQ((*cases)[1].failures[0].line, 12);
  EXPECT_EQ((*cases)[1].failures[0].message, "Expected: x\nmore");
  EXPECT_EQ((*cases)[1].failures[1].file, "");
  EXPECT_EQ((*cases)[1].failures[1].message, "thrown");
  EXPECT_TRUE((*cases)[2].skipped);
  EXPECT_FALSE((*cases)[3].ran);
  EXPECT_FALSE(ParseGtestJson("not json").ok());
  EXPECT_TRUE(ParseGtestJson("{}").ok());
}

TEST(GtestVerdict, JudgesEveryEnding) {
  TaskRecord record;
  record.backend = "docker";
  record.result.sandbox_id = "abc";
  record.result.outcome = Outcome::kTimedOut;
  Verdict v = Judge("S.t", record, {}, 2000);
  EXPECT_EQ(v.kind, Verdict::Kind::kTimedOut);
  EXPECT_NE(v.summary.find("after 2 s on backend docker, in docker sandbox abc"), std::string::npos)
      << v.summary;

  record.result.outcome = Outcome::kExited;
  record.result.exit_code = 0;
  v = Judge("S.t", record, {{"sandrun-gtest/premature-exit", ""}}, 0);
  EXPECT_EQ(v.kind, Verdict::Kind::kExitedEarly);
  v = Judge("S.t", record, {}, 0);
  EXPECT_EQ(v.kind, Verdict::Kind::kNoReport);
  v = Judge("S.t", record,
            {{"sandrun-gtest/report.json",
              R"({"testsuites":[{"name":"S","testsuite":[{"name":"t","status":"RUN"}]}]})"}},
            0);
  EXPECT_EQ(v.kind, Verdict::Kind::kPassed);

  record.result.outcome = Outcome::kInfraError;
  record.result.error = "daemon went away";
  v = Judge("S.t", record, {}, 0);
  EXPECT_EQ(v.kind, Verdict::Kind::kInfraError);
  EXPECT_NE(v.summary.find("infrastructure error (not a test failure)"), std::string::npos);
}

TEST(GtestTaskId, IsValidAndUnique) {
  std::map<std::string, int> used;
  EXPECT_EQ(TaskIdFor("A.b", &used), "A.b");
  EXPECT_EQ(TaskIdFor("A.b", &used), "A.b-2");
  EXPECT_EQ(TaskIdFor("P/A.b/0", &used), "P_A.b_0");
}

}  // namespace
}  // namespace sandrun::gtest
