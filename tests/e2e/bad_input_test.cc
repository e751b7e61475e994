// Bad input: a clear message, exit 2, and nothing runs. "Nothing runs" is
// checked two ways: a command that would leave a marker file did not, and
// no run appears in the archive or the outbox.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "e2e/e2e_support.h"

namespace sandrun::e2e {
namespace {

class E2eBadInput : public ::testing::Test {
 protected:
  /// A command that proves it ran by creating marker().
  std::vector<std::string> Marking() const { return {"touch", marker().string()}; }
  fs::path marker() const { return home_.dir() / "marker"; }

  /// A batch task that would create marker().
  std::string MarkingTask(const std::string& id) const {
    return "{\"id\": \"" + id + "\", \"command\": [\"touch\", \"" + marker().string() + "\"]}";
  }

  void ExpectNothingRan() const {
    EXPECT_FALSE(fs::exists(marker())) << "the command ran";
    EXPECT_EQ(home_.Runs().size(), 0u);
    EXPECT_EQ(Home::CountFiles(home_.outbox(), ".json"), 0) << "records in the outbox";
  }

  CommandOutput Exec(const std::vector<std::string>& flags) const {
    std::vector<std::string> args{"exec", "--backend", "local"};
    args.insert(args.end(), flags.begin(), flags.end());
    args.push_back("--");
    for (const auto& a : Marking()) args.push_back(a);
    return home_.Run(args);
  }

  Home home_;
};

TEST_F(E2eBadInput, MalformedBatchJsonNamesFileLineAndColumn) {
  // Line 3, column 10 holds the '}' where a value should be.
  fs::path file = home_.Write("broken.json", "[\n  " + MarkingTask("first") +
                                                 ",\n  {\"id\": }\n]\n");
  CommandOutput out = home_.Run({"batch", "--backend", "local", file.string()});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, file.string() + ":3:10");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, BatchTaskWithoutCommandIsRefusedBeforeAnythingRuns) {
  fs::path file = home_.Write("tasks.json", "[" + MarkingTask("first") + ", {\"id\": \"second\"}]");
  CommandOutput out = home_.Run({"batch", "--backend", "local", file.string()});
  EXPECT_EQ(out.exit_code, 2) << out.err;
  EXPECT_CONTAINS(out.err, "second");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, MissingBatchFile) {
  fs::path file = home_.work() / "no-such-tasks.json";
  CommandOutput out = home_.Run({"batch", "--backend", "local", file.string()});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, file.string());
  ExpectNothingRan();
}

TEST_F(E2eBadInput, BatchWithoutAFile) {
  CommandOutput out = home_.Run({"batch", "--backend", "local"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "FILE.json");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, UnknownBackendListsTheKnownOnes) {
  CommandOutput out = home_.Run({"exec", "--backend", "nosuch", "--", "touch", marker().string()});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "nosuch");
  EXPECT_CONTAINS(out.err, "local");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, UnknownBackendInBatch) {
  fs::path file = home_.Write("tasks.json", "[" + MarkingTask("only") + "]");
  CommandOutput out = home_.Run({"batch", "--backend", "nosuch", file.string()});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "nosuch");
  EXPECT_CONTAINS(out.err, "local");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, ZeroTimeout) {
  CommandOutput out = Exec({"--timeout", "0"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "--timeout");
  ExpectNothingRan();
  // ... and the help does not offer 0 as "no timeout".
  EXPECT_LACKS(home_.Run({"exec", "--help"}).out, "0 = none");
}

TEST_F(E2eBadInput, NegativeTimeout) {
  CommandOutput out = Exec({"--timeout", "-1"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "--timeout");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, NonNumericTimeout) {
  CommandOutput out = Exec({"--timeout", "soon"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "soon");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, NegativeTimeoutInABatchTask) {
  fs::path file = home_.Write(
      "tasks.json", "[" + MarkingTask("fine") + ", {\"id\": \"neg\", \"command\": [\"true\"], "
                                                "\"timeout\": -1}]");
  CommandOutput out = home_.Run({"batch", "--backend", "local", file.string()});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "timeout");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, EmptyCommand) {
  CommandOutput out = home_.Run({"exec", "--backend", "local", "--"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "no command");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, NoDoubleDash) {
  CommandOutput out = home_.Run({"exec", "--backend", "local"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "no command");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, UploadSourceThatDoesNotExist) {
  fs::path missing = home_.work() / "missing-input.txt";
  CommandOutput out = Exec({"--upload", missing.string()});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, missing.string());
  ExpectNothingRan();
}

TEST_F(E2eBadInput, UploadSourceThatDoesNotExistInABatch) {
  fs::path file = home_.Write(
      "tasks.json", "[" + MarkingTask("fine") +
                        ", {\"id\": \"up\", \"command\": [\"true\"], \"upload\": [\"gone.txt\"]}]");
  CommandOutput out = home_.Run({"batch", "--backend", "local", file.string()});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "gone.txt");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, UnknownFlag) {
  CommandOutput out = Exec({"--frobnicate"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "frobnicate");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, MalformedEnv) {
  CommandOutput out = Exec({"--env", "NOEQUALS"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "NOEQUALS");
  ExpectNothingRan();
}

TEST_F(E2eBadInput, UnknownNetworkMode) {
  CommandOutput out = Exec({"--network", "wide"});
  EXPECT_EQ(out.exit_code, 2);
  EXPECT_CONTAINS(out.err, "wide");
  ExpectNothingRan();
}

}  // namespace
}  // namespace sandrun::e2e
