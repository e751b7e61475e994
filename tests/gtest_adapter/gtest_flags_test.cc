// Unit tests of `sandrun gtest`'s reading of GoogleTest's flags and
// environment (gtest_flags.h) and of its GoogleTest report (gtest_report.h).
#include <gtest/gtest.h>

#include "sandrun/gtest_flags.h"
#include "sandrun/gtest_report.h"
#include "support/test_util.h"

namespace sandrun::gtest {
namespace {

TEST(GtestFlags, InterpretedFlagsAreTakenTheRestStays) {
  std::vector<std::string> args = {"--gtest_filter=A.*", "--my-flag", "--gtest_brief",
                                   "--gtest_break_on_failure", "-gtest_repeat=3",
                                   "--gtest_also_run_disabled_tests=0", "x"};
  GtestFlags flags;
  ASSERT_TRUE(TakeGtestFlags(&args, &flags).ok());
  EXPECT_EQ(args, (std::vector<std::string>{"--my-flag", "--gtest_break_on_failure", "x"}));
  EXPECT_EQ(flags.filter, "A.*");
  EXPECT_EQ(flags.brief, true);
  EXPECT_EQ(flags.repeat, 3);
  EXPECT_EQ(flags.also_run_disabled, false);

  std::vector<std::string> bad = {"--gtest_repeat=many"};
  EXPECT_FALSE(TakeGtestFlags(&bad, &flags).ok());
}

TEST(GtestFlags, FlagsWinOverEnvironment) {
  sandrun::testing::TempDir dir;
  GtestFlags flags;
  flags.filter = "F.*";
  std::map<std::string, std::string> env = {
      {"GTEST_FILTER", "E.*"}, {"GTEST_BRIEF", "1"}, {"GTEST_COLOR", "yes"},
      {"GTEST_OUTPUT", "xml:out/"}, {"GTEST_TOTAL_SHARDS", "4"}, {"GTEST_SHARD_INDEX", "3"}};
  auto settings = ResolveGtestSettings(flags, env, false, "/bin/my_tests", dir.path());
  ASSERT_TRUE(settings.ok()) << settings.status().ToString();
  EXPECT_EQ(settings->filter, "F.*");
  EXPECT_TRUE(settings->brief);
  EXPECT_TRUE(settings->color);
  EXPECT_EQ(settings->output_format, "xml");
  EXPECT_EQ(settings->output_path, dir.path() / "out" / "my_tests.xml");
  EXPECT_EQ(settings->sharding.total, 4);
  EXPECT_EQ(settings->sharding.index, 3);

  // An existing report in the directory is kept: the next name is taken.
  std::filesystem::create_directories(dir.path() / "out");
  dir.Write("out/my_tests.xml", "");
  settings = ResolveGtestSettings(flags, env, false, "/bin/my_tests", dir.path());
  ASSERT_TRUE(settings.ok());
  EXPECT_EQ(settings->output_path, dir.path() / "out" / "my_tests_1.xml");

  // color=auto: a terminal, unless NO_COLOR.
  auto color = [&](std::map<std::string, std::string> e, bool tty) {
    return ResolveGtestSettings({}, e, tty, "t", dir.path())->color;
  };
  EXPECT_TRUE(color({{"TERM", "xterm"}}, true));
  EXPECT_FALSE(color({{"TERM", "xterm"}}, false));
  EXPECT_FALSE(color({{"TERM", "xterm"}, {"NO_COLOR", "1"}}, true));
  EXPECT_TRUE(color({{"TERM", "xterm"}, {"NO_COLOR", "1"}, {"GTEST_COLOR", "yes"}}, false));

  EXPECT_FALSE(ResolveGtestSettings({}, {{"GTEST_SHARD_INDEX", "0"}}, false, "t", dir.path()).ok());
  EXPECT_FALSE(ResolveGtestSettings({}, {{"GTEST_OUTPUT", "html:x"}}, false, "t", dir.path()).ok());
  EXPECT_FALSE(ResolveGtestSettings({}, {{"GTEST_REPEAT", "-1"}}, false, "t", dir.path()).ok());
}

TEST(GtestReport, XmlIsValidAndEscaped) {
  GtestReport report;
  ReportedCase c;
  c.test.name = "S.T";
  c.test.file = "a.cc";
  c.test.line = 7;
  c.verdict.kind = Verdict::Kind::kFailed;
  c.verdict.failures = {{"a.cc", 9, "x < y ]]> \"q\"\x01"}};
  c.properties = {{"flaky", "true"}};
  report.cases.push_back(c);
  std::string xml = GtestXmlReport(report);
  EXPECT_NE(xml.find("message=\"a.cc:9&#x0A;x &lt; y ]]&gt; &quot;q&quot;\""), std::string::npos)
      << xml;
  EXPECT_NE(xml.find("<![CDATA[a.cc:9\nx < y ]]>]]&gt;<![CDATA[ \"q\"]]>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<property name=\"flaky\" value=\"true\"/>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("tests=\"1\" failures=\"1\" disabled=\"0\" errors=\"0\""), std::string::npos);
}

}  // namespace
}  // namespace sandrun::gtest
