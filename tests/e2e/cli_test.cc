// The command line itself: --version, --help for every subcommand, and the
// usage errors for unknown subcommands and flags.
#include <ostream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

TEST(E2eCli, VersionPrintsTheProjectVersion) {
  Home home;
  CommandOutput out = home.Run({"--version"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.out, "sandrun 0.1.0\n");
}

TEST(E2eCli, HelpListsEverySubcommand) {
  Home home;
  CommandOutput out = home.Run({"--help"});
  EXPECT_EQ(out.exit_code, 0) << out.err;
  for (const char* command : {"exec", "batch", "results", "backends", "config", "doctor", "cleanup"}) {
    EXPECT_CONTAINS(out.out, "  " + std::string(command) + " ") << command;
  }
}

TEST(E2eCli, NoArgumentsIsAUsageError) {
  Home home;
  CommandOutput out = home.Run({});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "usage: sandrun");
}

struct HelpCase {
  std::vector<std::string> args;
  std::vector<std::string> options;  // each must appear in the help text
};

// Names the case in test listings (ctest shows it next to the test name).
void PrintTo(const HelpCase& help_case, std::ostream* os) {
  *os << "sandrun";
  for (const auto& arg : help_case.args) *os << " " << arg;
  *os << " --help";
}

class E2eSubcommandHelp : public ::testing::TestWithParam<HelpCase> {};

TEST_P(E2eSubcommandHelp, ExitsZeroAndNamesItsOptions) {
  Home home;
  std::vector<std::string> args = GetParam().args;
  args.push_back("--help");
  CommandOutput out = home.Run(args);
  EXPECT_EQ(out.exit_code, 0) << out.err;
  EXPECT_EQ(out.err, "");
  for (const auto& option : GetParam().options) EXPECT_CONTAINS(out.out, option);
}

INSTANTIATE_TEST_SUITE_P(
    AllSubcommands, E2eSubcommandHelp,
    ::testing::Values(
        HelpCase{{"exec"},
                 {"--backend", "--image", "--timeout", "--cpu", "--memory", "--env", "--upload",
                  "--download", "--workdir", "--network", "--name", "--json", "--interactive"}},
        HelpCase{{"batch"}, {"FILE.json", "--jobs", "--race", "--junit", "--timeout", "--backend"}},
        HelpCase{{"results"}, {"list", "show", "fetch", "export", "prune", "sync"}},
        HelpCase{{"results", "list"}, {"--limit", "--json"}},
        HelpCase{{"results", "show"}, {"--full", "--json", "RUN [TEST]"}},
        HelpCase{{"results", "fetch"}, {"--output", "RUN"}},
        HelpCase{{"results", "export"}, {"--junit", "RUN"}},
        HelpCase{{"results", "prune"}, {"--keep"}},
        HelpCase{{"results", "sync"}, {"--backend", "--archive-dir"}},
        HelpCase{{"backends"}, {"--backend"}},
        HelpCase{{"config"}, {"--json", "--backend", "--timeout"}},
        HelpCase{{"doctor"}, {"--backend"}},
        HelpCase{{"cleanup"}, {"--dry-run", "--run"}}),
    [](const ::testing::TestParamInfo<HelpCase>& info) {
      std::string name;
      for (const auto& a : info.param.args) name += (name.empty() ? "" : "_") + a;
      return name;
    });

TEST(E2eCli, UnknownSubcommandIsNamed) {
  Home home;
  CommandOutput out = home.Run({"frobnicate"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "frobnicate");
  EXPECT_EQ(out.out, "");
}

TEST(E2eCli, UnknownResultsSubcommandIsNamed) {
  Home home;
  CommandOutput out = home.Run({"results", "frobnicate"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "frobnicate");
}

TEST(E2eCli, UnknownFlagIsNamedForEverySubcommand) {
  Home home;
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"exec", "--frobnicate", "--", "true"},
        {"batch", "--frobnicate", "tasks.json"},
        {"results", "list", "--frobnicate"},
        {"backends", "--frobnicate"},
        {"config", "--frobnicate"},
        {"doctor", "--frobnicate"},
        {"cleanup", "--frobnicate"}}) {
    CommandOutput out = home.Run(args);
    EXPECT_EQ(out.exit_code, 2) << args[0];
    EXPECT_CONTAINS(out.err, "frobnicate") << args[0];
    EXPECT_LACKS(out.out, "frobnicate") << args[0];
  }
}

}  // namespace
}  // namespace sandrun::e2e
