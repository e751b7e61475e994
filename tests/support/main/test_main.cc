// main() of sandrun's own test executables: GoogleTest's gtest_main, except
// that a failure message never contains GoogleTest's "[  SKIPPED ]" tag.
// gtest_discover_tests makes CTest report a test as skipped when its output
// has that tag anywhere, and many tests print a sample binary's output when
// they fail; CTest then showed those failures as skips (and a CI run passed).
// The tag in such a message is written "[  skipped ]"; the test's own skip
// still prints the real one.
#include <memory>
#include <string>

#include <gtest/gtest.h>

namespace {

class NoSkipTagInFailures : public ::testing::TestEventListener {
 public:
  explicit NoSkipTagInFailures(::testing::TestEventListener* printer) : printer_(printer) {}

  void OnTestPartResult(const ::testing::TestPartResult& result) override {
    std::string message = result.message();
    if (result.skipped()) return printer_->OnTestPartResult(result);
    static const std::string kTag = "[  SKIPPED ]";
    for (std::size_t at = message.find(kTag); at != std::string::npos;
         at = message.find(kTag, at)) {
      message.replace(at, kTag.size(), "[  skipped ]");
    }
    printer_->OnTestPartResult(::testing::TestPartResult(
        result.type(), result.file_name(), result.line_number(), message.c_str()));
  }
  void OnTestProgramStart(const ::testing::UnitTest& u) override { printer_->OnTestProgramStart(u); }
  void OnTestIterationStart(const ::testing::UnitTest& u, int i) override {
    printer_->OnTestIterationStart(u, i);
  }
  void OnEnvironmentsSetUpStart(const ::testing::UnitTest& u) override {
    printer_->OnEnvironmentsSetUpStart(u);
  }
  void OnEnvironmentsSetUpEnd(const ::testing::UnitTest& u) override {
    printer_->OnEnvironmentsSetUpEnd(u);
  }
  void OnTestSuiteStart(const ::testing::TestSuite& s) override { printer_->OnTestSuiteStart(s); }
  void OnTestStart(const ::testing::TestInfo& t) override { printer_->OnTestStart(t); }
  void OnTestDisabled(const ::testing::TestInfo& t) override { printer_->OnTestDisabled(t); }
  void OnTestEnd(const ::testing::TestInfo& t) override { printer_->OnTestEnd(t); }
  void OnTestSuiteEnd(const ::testing::TestSuite& s) override { printer_->OnTestSuiteEnd(s); }
  void OnEnvironmentsTearDownStart(const ::testing::UnitTest& u) override {
    printer_->OnEnvironmentsTearDownStart(u);
  }
  void OnEnvironmentsTearDownEnd(const ::testing::UnitTest& u) override {
    printer_->OnEnvironmentsTearDownEnd(u);
  }
  void OnTestIterationEnd(const ::testing::UnitTest& u, int i) override {
    printer_->OnTestIterationEnd(u, i);
  }
  void OnTestProgramEnd(const ::testing::UnitTest& u) override { printer_->OnTestProgramEnd(u); }

 private:
  std::unique_ptr<::testing::TestEventListener> printer_;
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  ::testing::TestEventListeners& listeners = ::testing::UnitTest::GetInstance()->listeners();
  if (::testing::TestEventListener* printer = listeners.Release(listeners.default_result_printer())) {
    listeners.Append(new NoSkipTagInFailures(printer));
  }
  return RUN_ALL_TESTS();
}
