#include "sandrun/junit.h"

#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace sandrun {
namespace {

// A strict little XML 1.0 reader, enough to check the writer's output is
// well-formed and to look at its structure: elements, attributes (entities
// decoded), text. Any malformation fails the parse.
struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
  std::string text;
  std::vector<std::unique_ptr<Element>> children;

  const Element* Child(const std::string& child_name) const {
    for (const auto& c : children) {
      if (c->name == child_name) return c.get();
    }
    return nullptr;
  }
  std::vector<const Element*> All(const std::string& child_name) const {
    std::vector<const Element*> out;
    for (const auto& c : children) {
      if (c->name == child_name) out.push_back(c.get());
    }
    return out;
  }
};

class XmlReader {
 public:
  explicit XmlReader(std::string doc) : doc_(std::move(doc)) {}

  std::unique_ptr<Element> Parse() {
    const std::string decl = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";
    if (doc_.compare(0, decl.size(), decl) != 0) return Fail("missing XML declaration");
    pos_ = decl.size();
    CheckChars();
    if (!error_.empty()) return nullptr;
    SkipSpace();
    auto root = ParseElement();
    SkipSpace();
    if (root && pos_ != doc_.size()) return Fail("content after the root element");
    return root;
  }
  const std::string& error() const { return error_; }

 private:
  std::unique_ptr<Element> Fail(const std::string& why) {
    if (error_.empty()) error_ = why + " at offset " + std::to_string(pos_);
    return nullptr;
  }
  // XML 1.0 Char: no C0 controls but tab, LF, CR.
  void CheckChars() {
    for (unsigned char c : doc_) {
      if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
        error_ = "forbidden control character " + std::to_string(c);
        return;
      }
    }
  }
  void SkipSpace() {
    while (pos_ < doc_.size() && std::isspace(static_cast<unsigned char>(doc_[pos_]))) ++pos_;
  }
  std::string Name() {
    std::size_t start = pos_;
    while (pos_ < doc_.size() && (std::isalnum(static_cast<unsigned char>(doc_[pos_])) ||
                                  doc_[pos_] == '-' || doc_[pos_] == '_' || doc_[pos_] == ':')) {
      ++pos_;
    }
    return doc_.substr(start, pos_ - start);
  }
  // Decodes text up to `stop`, validating entity and character references.
  std::optional<std::string> Text(char stop) {
    std::string out;
    while (pos_ < doc_.size() && doc_[pos_] != stop) {
      char c = doc_[pos_];
      if (c == '<') return std::nullopt;
      if (c == '&') {
        std::size_t semi = doc_.find(';', pos_);
        if (semi == std::string::npos) return std::nullopt;
        std::string ref = doc_.substr(pos_ + 1, semi - pos_ - 1);
        static const std::map<std::string, std::string> kNamed = {
            {"amp", "&"}, {"lt", "<"}, {"gt", ">"}, {"quot", "\""}, {"apos", "'"}};
        if (auto it = kNamed.find(ref); it != kNamed.end()) {
          out += it->second;
        } else if (ref.size() > 1 && ref[0] == '#') {
          long code = ref[1] == 'x' ? std::stol(ref.substr(2), nullptr, 16) : std::stol(ref.substr(1));
          if (code != 9 && code != 10 && code != 13 && code < 0x20) return std::nullopt;
          if (code >= 0x80) return std::nullopt;  // The writer only needs ASCII refs.
          out += static_cast<char>(code);
        } else {
          return std::nullopt;
        }
        pos_ = semi + 1;
        continue;
      }
      out += c;
      ++pos_;
    }
    if (pos_ >= doc_.size()) return std::nullopt;
    return out;
  }
  std::unique_ptr<Element> ParseElement() {
    if (doc_[pos_] != '<') return Fail("expected '<'");
    ++pos_;
    auto element = std::make_unique<Element>();
    element->name = Name();
    if (element->name.empty()) return Fail("empty element name");
    while (true) {
      SkipSpace();
      if (pos_ >= doc_.size()) return Fail("unterminated tag");
      if (doc_.compare(pos_, 2, "/>") == 0) {
        pos_ += 2;
        return element;
      }
      if (doc_[pos_] == '>') {
        ++pos_;
        break;
      }
      std::string attr = Name();
      if (attr.empty() || doc_[pos_] != '=' || doc_[pos_ + 1] != '"') return Fail("bad attribute");
      pos_ += 2;
      auto value = Text('"');
      if (!value) return Fail("bad attribute value");
      ++pos_;
      if (!element->attrs.emplace(attr, *value).second) return Fail("duplicate attribute");
    }
    while (true) {
      auto text = Text('<');
      if (!text) return Fail("bad character data");
      element->text += *text;
      if (doc_.compare(pos_, 2, "</") == 0) {
        pos_ += 2;
        if (Name() != element->name || doc_[pos_] != '>') return Fail("mismatched end tag");
        ++pos_;
        return element;
      }
      auto child = ParseElement();
      if (!child) return nullptr;
      element->children.push_back(std::move(child));
    }
  }

  std::string doc_;
  std::size_t pos_ = 0;
  std::string error_;
};

TaskRecord SampleTask(const std::string& id, Outcome outcome, int exit_code = 0) {
  TaskRecord t;
  t.run_id = "20261122T031500Z-4f2a";
  t.task_id = id;
  t.test_name = id;
  t.backend = "local";
  t.sandbox_id = "sb-" + id;
  t.argv = {"run", id};
  t.result.outcome = outcome;
  t.result.exit_code = exit_code;
  t.result.durations.total_ms = 1500;
  t.result.durations.exec_ms = 1400;
  t.host = "ci-host";
  return t;
}

RunRecord SampleRun() {
  RunRecord run;
  run.run_id = "20261122T031500Z-4f2a";
  run.status = RunStatus::kFailed;
  run.backend = "local";
  run.started_at = "2026-11-22T03:15:00.123Z";
  run.wall_ms = 2500;
  run.host = "ci-host";
  return run;
}

std::map<std::string, std::string> Properties(const Element& e) {
  std::map<std::string, std::string> out;
  const Element* props = e.Child("properties");
  if (props == nullptr) return out;
  for (const Element* p : props->All("property")) out[p->attrs.at("name")] = p->attrs.at("value");
  return out;
}

TEST(JUnitXmlTest, OneTestcasePerOutcomeWithCorrectCounts) {
  TaskRecord pass = SampleTask("pass", Outcome::kExited, 0);
  pass.result.stdout_stream.text = "all good\n";
  TaskRecord fail = SampleTask("fail", Outcome::kExited, 3);
  fail.result.stderr_stream.text = "assertion failed\n";
  TaskRecord sig = SampleTask("sig", Outcome::kSignaled);
  sig.result.signal = 11;
  TaskRecord slow = SampleTask("slow", Outcome::kTimedOut);
  TaskRecord oom = SampleTask("oom", Outcome::kOomKilled);
  TaskRecord infra = SampleTask("infra", Outcome::kInfraError);
  infra.result.error = "docker: no daemon";
  TaskRecord cancel = SampleTask("cancel", Outcome::kCancelled);

  std::string xml = JUnitXml(SampleRun(), {pass, fail, sig, slow, oom, infra, cancel});
  XmlReader reader(xml);
  auto root = reader.Parse();
  ASSERT_TRUE(root) << reader.error() << "\n" << xml;
  EXPECT_EQ(root->name, "testsuites");
  const Element* suite = root->Child("testsuite");
  ASSERT_NE(suite, nullptr);
  EXPECT_EQ(suite->attrs.at("tests"), "7");
  EXPECT_EQ(suite->attrs.at("failures"), "4");  // fail, sig, slow, oom
  EXPECT_EQ(suite->attrs.at("errors"), "1");
  EXPECT_EQ(suite->attrs.at("skipped"), "1");
  EXPECT_EQ(suite->attrs.at("time"), "2.500");
  EXPECT_EQ(suite->attrs.at("timestamp"), "2026-11-22T03:15:00");
  EXPECT_EQ(suite->attrs.at("hostname"), "ci-host");
  EXPECT_EQ(root->attrs.at("tests"), "7");
  auto suite_props = Properties(*suite);
  EXPECT_EQ(suite_props["backend"], "local");
  EXPECT_EQ(suite_props["run_id"], "20261122T031500Z-4f2a");

  auto cases = suite->All("testcase");
  ASSERT_EQ(cases.size(), 7u);
  std::map<std::string, const Element*> by_name;
  for (const Element* c : cases) by_name[c->attrs.at("name")] = c;

  const Element* p = by_name.at("pass");
  EXPECT_EQ(p->attrs.at("classname"), "sandrun");
  EXPECT_EQ(p->attrs.at("time"), "1.500");
  EXPECT_EQ(p->Child("failure"), nullptr);
  EXPECT_EQ(p->Child("error"), nullptr);
  ASSERT_NE(p->Child("system-out"), nullptr);
  EXPECT_EQ(p->Child("system-out")->text, "all good\n");
  auto props = Properties(*p);
  EXPECT_EQ(props["sandbox_id"], "sb-pass");
  EXPECT_EQ(props["backend"], "local");
  EXPECT_EQ(props["exec_ms"], "1400");

  const Element* f = by_name.at("fail")->Child("failure");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->attrs.at("message"), "exited with code 3");
  EXPECT_EQ(f->attrs.at("type"), "exited");
  EXPECT_EQ(by_name.at("fail")->Child("system-err")->text, "assertion failed\n");
  EXPECT_EQ(by_name.at("sig")->Child("failure")->attrs.at("message"), "crashed: killed by signal 11 (SIGSEGV)");
  EXPECT_EQ(by_name.at("slow")->Child("failure")->attrs.at("type"), "timed_out");
  EXPECT_EQ(by_name.at("oom")->Child("failure")->attrs.at("type"), "oom_killed");
  const Element* e = by_name.at("infra")->Child("error");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->attrs.at("message"), "docker: no daemon");
  EXPECT_EQ(by_name.at("infra")->Child("failure"), nullptr);
  const Element* s = by_name.at("cancel")->Child("skipped");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->attrs.at("message"), "cancelled");
}

TEST(JUnitXmlTest, EscapesMarkupAndControlCharacters) {
  TaskRecord t = SampleTask("esc", Outcome::kInfraError);
  t.test_name = "Suite<1>.Case\"&'";
  t.result.error = "bad <thing> & \"quote\"\nline2";
  t.result.stdout_stream.text = std::string("a<b>&c ]]> \x1b[31mred\x1b[0m \x01\x02\x00 ok\r\n", 32);
  t.result.stderr_stream.text = "bad utf8 \xff\xfe and U+FFFF \xEF\xBF\xBF end";
  std::string xml = JUnitXml(SampleRun(), {t});
  XmlReader reader(xml);
  auto root = reader.Parse();
  ASSERT_TRUE(root) << reader.error() << "\n" << xml;
  const Element* tc = root->Child("testsuite")->Child("testcase");
  ASSERT_NE(tc, nullptr);
  EXPECT_EQ(tc->attrs.at("classname"), "Suite<1>");
  EXPECT_EQ(tc->attrs.at("name"), "Case\"&'");
  EXPECT_EQ(tc->Child("error")->attrs.at("message"), "bad <thing> & \"quote\"\nline2");
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(tc->Child("system-out")->text,
            "a<b>&c ]]> " + fffd + "[31mred" + fffd + "[0m " + fffd + fffd + fffd + " ok\r\n");
  EXPECT_EQ(tc->Child("system-err")->text,
            "bad utf8 " + fffd + fffd + " and U+FFFF " + fffd + " end");
}

TEST(JUnitXmlTest, TruncatedStreamPointsAtTheSpillFile) {
  TaskRecord t = SampleTask("big", Outcome::kExited, 0);
  t.result.stdout_stream.text = "head\n[... 100 bytes omitted ...]\ntail";
  t.result.stdout_stream.truncated = true;
  t.result.stdout_stream.total_bytes = 130;
  t.result.stdout_stream.spill_path = "r/artifacts/big/stdout.log";
  std::string xml = JUnitXml(SampleRun(), {t});
  EXPECT_NE(xml.find("130 bytes in total; full stream in r/artifacts/big/stdout.log"),
            std::string::npos);
}

// What GitHub's and GitLab's readers need (junit.h): a failed case points at
// its first failure, files are relative to the checkout, `type` has no
// spaces, a skip's reason is its text too, a passing case's log is a tail.
TEST(JUnitXmlTest, WritesWhatCiReadersUse) {
  JUnitReport report;
  report.source_root = "/ci/checkout";
  JUnitCase failed;
  failed.classname = "Math";
  failed.name = "Divides";
  failed.file = "/ci/checkout/tests/math_test.cc";
  failed.line = 20;
  failed.kind = JUnitCase::Kind::kFailed;
  failed.problem = {"Expected equality", "timed out", "body", "/ci/checkout/tests/math_test.cc", 23};
  JUnitCase passed;
  passed.classname = "Math";
  passed.name = "Adds";
  passed.file = "/elsewhere/math_test.cc";
  passed.line = 10;
  passed.system_out = "early" + std::string(20000, '.') + "late";
  JUnitCase skipped;
  skipped.classname = "Math";
  skipped.name = "Ipv6";
  skipped.kind = JUnitCase::Kind::kSkipped;
  skipped.problem.message = "no IPv6 here";
  report.cases = {failed, passed, skipped};

  std::string xml = JUnitXml(report);
  XmlReader reader(xml);
  auto root = reader.Parse();
  ASSERT_TRUE(root) << reader.error() << "\n" << xml;
  auto cases = root->Child("testsuite")->All("testcase");
  ASSERT_EQ(cases.size(), 3u);
  // The failing assertion's line, relative to the checkout.
  EXPECT_EQ(cases[0]->attrs.at("file"), "tests/math_test.cc");
  EXPECT_EQ(cases[0]->attrs.at("line"), "23");
  const Element* failure = cases[0]->Child("failure");
  ASSERT_NE(failure, nullptr);
  EXPECT_EQ(failure->attrs.at("type"), "timed_out");
  // Outside the checkout: as it is; a passing case keeps its own line.
  EXPECT_EQ(cases[1]->attrs.at("file"), "/elsewhere/math_test.cc");
  EXPECT_EQ(cases[1]->attrs.at("line"), "10");
  std::string out = cases[1]->Child("system-out")->text;
  EXPECT_LE(out.size(), kPassedStreamBytes + 64);
  EXPECT_NE(out.find("late"), std::string::npos);
  EXPECT_EQ(out.find("early"), std::string::npos);
  EXPECT_NE(out.find("bytes omitted"), std::string::npos);
  const Element* skip = cases[2]->Child("skipped");
  ASSERT_NE(skip, nullptr);
  EXPECT_EQ(skip->attrs.at("message"), "no IPv6 here");
  EXPECT_EQ(skip->text, "no IPv6 here");

  // Unset root: the CI's checkout from the environment.
  report.source_root.reset();
  const char* saved = std::getenv("GITHUB_WORKSPACE");
  std::string saved_value = saved ? saved : "";
  setenv("GITHUB_WORKSPACE", "/ci", 1);
  std::string from_env = JUnitXml(report);
  if (saved) setenv("GITHUB_WORKSPACE", saved_value.c_str(), 1);
  else unsetenv("GITHUB_WORKSPACE");
  XmlReader again(from_env);
  auto root2 = again.Parse();
  ASSERT_TRUE(root2);
  EXPECT_EQ(root2->Child("testsuite")->All("testcase")[0]->attrs.at("file"),
            "checkout/tests/math_test.cc");
}

TEST(JUnitFileListenerTest, WritesTheFileAtRunEnd) {
  testing::TempDir dir;
  auto path = dir.path() / "junit.xml";
  JUnitFileListener listener(path, /*max_stream_bytes=*/8);
  TaskRecord t = SampleTask("t1", Outcome::kExited, 1);
  t.result.stdout_stream.text = "0123456789abcdef";
  listener.OnTaskEnd(t);
  listener.OnTaskEnd(SampleTask("t2", Outcome::kExited, 0));
  EXPECT_FALSE(std::filesystem::exists(path));
  listener.OnRunEnd(SampleRun());
  ASSERT_TRUE(listener.status().ok()) << listener.status().ToString();
  XmlReader reader(testing::ReadFile(path));
  auto root = reader.Parse();
  ASSERT_TRUE(root) << reader.error();
  const Element* suite = root->Child("testsuite");
  EXPECT_EQ(suite->attrs.at("tests"), "2");
  EXPECT_EQ(suite->attrs.at("failures"), "1");
  // Only the tail of the stream was kept.
  std::string out = suite->All("testcase")[0]->Child("system-out")->text;
  EXPECT_EQ(out.find("01234567"), std::string::npos);
  EXPECT_NE(out.find("89abcdef"), std::string::npos);
  EXPECT_NE(out.find("8 bytes omitted"), std::string::npos);
}

TEST(JUnitFileListenerTest, CreatesNoMissingDirectory) {
  testing::TempDir dir;
  JUnitFileListener listener(dir.path() / "reports" / "junit.xml");
  listener.OnRunEnd(SampleRun());
  EXPECT_EQ(listener.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "reports"));
}

TEST(JUnitFileListenerTest, ReportsAWriteFailure) {
  testing::TempDir dir;
  dir.Write("blocker", "a file where a directory should be");
  JUnitFileListener listener(dir.path() / "blocker" / "junit.xml");
  listener.OnRunEnd(SampleRun());
  EXPECT_FALSE(listener.status().ok());
  EXPECT_NE(listener.status().message().find("junit.xml"), std::string::npos);
}

}  // namespace
}  // namespace sandrun
