#include "sandrun/gtest_report.h"

#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sandrun/archive.h"

namespace sandrun::gtest {
namespace fs = std::filesystem;

namespace {

using ordered_json = nlohmann::ordered_json;

/// GoogleTest's number of seconds: the double, streamed ("0.5", "12", "0").
std::string Seconds(std::int64_t ms) {
  std::ostringstream out;
  out << static_cast<double>(ms) * 1e-3;
  return out.str();
}

/// "YYYY-MM-DDThh:mm:ss" in local time (XML) or UTC (JSON).
std::string DateTime(std::int64_t epoch_ms, bool utc) {
  std::time_t seconds = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm parts{};
  if ((utc ? gmtime_r(&seconds, &parts) : localtime_r(&seconds, &parts)) == nullptr) return "";
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &parts);
  return text;
}

std::string XmlTimestamp(std::int64_t epoch_ms) {
  char millis[8];
  std::snprintf(millis, sizeof millis, ".%03d", static_cast<int>(epoch_ms % 1000));
  return DateTime(epoch_ms, false) + millis;
}

std::string JsonTimestamp(std::int64_t epoch_ms) { return DateTime(epoch_ms, true) + "Z"; }

/// Text XML 1.0 can carry: other control characters are dropped, as
/// GoogleTest drops them.
std::string XmlText(std::string_view text) {
  std::string out;
  for (char c : text) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t' && c != '\n' && c != '\r') continue;
    out += c;
  }
  return out;
}

std::string XmlAttribute(std::string_view text) {
  std::string out;
  for (char c : XmlText(text)) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      case '\n': out += "&#x0A;"; break;
      case '\r': out += "&#x0D;"; break;
      case '\t': out += "&#x09;"; break;
      default: out += c;
    }
  }
  return out;
}

/// A CDATA section; "]]>" inside is split across two sections.
std::string XmlCData(std::string_view text) {
  std::string body = XmlText(text);
  std::string out = "<![CDATA[";
  std::size_t from = 0;
  for (std::size_t at; (at = body.find("]]>", from)) != std::string::npos; from = at + 3) {
    out += body.substr(from, at - from) + "]]>]]&gt;<![CDATA[";
  }
  return out + body.substr(from) + "]]>";
}

std::string Location(const Failure& failure, const ListedTest& test) {
  if (!failure.file.empty()) return failure.file + ":" + std::to_string(failure.line);
  if (!test.file.empty()) return test.file + ":" + std::to_string(test.line);
  return "unknown file";
}

std::string SuiteOf(const std::string& name) { return name.substr(0, name.find('.')); }
std::string TestOf(const std::string& name) { return name.substr(name.find('.') + 1); }

bool Skipped(const ReportedCase& c) { return c.run && c.verdict.kind == Verdict::Kind::kSkipped; }
bool Errored(const ReportedCase& c) {
  return c.run && c.verdict.kind == Verdict::Kind::kInfraError;
}
bool Failed(const ReportedCase& c) { return c.run && !c.verdict.ok() && !Errored(c); }

struct Counts {
  int tests = 0, failures = 0, disabled = 0, skipped = 0, errors = 0;
  std::int64_t ms = 0;
  std::int64_t start_epoch_ms = 0;
};

Counts Count(const std::vector<const ReportedCase*>& cases) {
  Counts counts;
  for (const ReportedCase* c : cases) {
    ++counts.tests;
    counts.failures += Failed(*c);
    counts.disabled += !c->run;
    counts.skipped += Skipped(*c);
    counts.errors += Errored(*c);
    counts.ms += c->ms;
    if (c->run && (counts.start_epoch_ms == 0 || c->start_epoch_ms < counts.start_epoch_ms)) {
      counts.start_epoch_ms = c->start_epoch_ms;
    }
  }
  return counts;
}

/// Suites in the order they first appear, each with its cases.
std::vector<std::pair<std::string, std::vector<const ReportedCase*>>> BySuite(
    const GtestReport& report) {
  std::vector<std::pair<std::string, std::vector<const ReportedCase*>>> suites;
  std::map<std::string, std::size_t> index;
  for (const ReportedCase& c : report.cases) {
    std::string suite = SuiteOf(c.test.name);
    auto [it, added] = index.try_emplace(suite, suites.size());
    if (added) suites.push_back({suite, {}});
    suites[it->second].second.push_back(&c);
  }
  return suites;
}

/// The failures a case reports: its assertions, else its ending.
std::vector<Failure> Failures(const ReportedCase& c) {
  if (!c.run || c.verdict.ok()) return {};
  std::vector<Failure> failures = c.verdict.failures;
  if (failures.empty()) failures.push_back({"", -1, c.verdict.summary});
  return failures;
}

void XmlCase(std::ostringstream& xml, const ReportedCase& c) {
  const std::string suite = SuiteOf(c.test.name);
  xml << "    <testcase name=\"" << XmlAttribute(TestOf(c.test.name)) << "\"";
  if (!c.test.value_param.empty()) {
    xml << " value_param=\"" << XmlAttribute(c.test.value_param) << "\"";
  }
  if (!c.test.type_param.empty()) {
    xml << " type_param=\"" << XmlAttribute(c.test.type_param) << "\"";
  }
  xml << " file=\"" << XmlAttribute(c.test.file) << "\" line=\"" << c.test.line << "\""
      << " status=\"" << (c.run ? "run" : "notrun") << "\" result=\""
      << (!c.run ? "suppressed" : Skipped(c) ? "skipped" : "completed") << "\" time=\""
      << Seconds(c.ms) << "\" timestamp=\"" << XmlTimestamp(c.start_epoch_ms)
      << "\" classname=\"" << XmlAttribute(suite) << "\"";
  std::ostringstream body;
  const char* element = Errored(c) ? "error" : "failure";
  for (const Failure& f : Failures(c)) {
    std::string text = Location(f, c.test) + "\n" + f.message;
    body << "      <" << element << " message=\"" << XmlAttribute(text) << "\" type=\"\">"
         << XmlCData(text) << "</" << element << ">\n";
  }
  if (Skipped(c)) {
    std::string text = Location({}, c.test) + "\n" + c.verdict.skip_message;
    body << "      <skipped message=\"" << XmlAttribute(text) << "\">" << XmlCData(text)
         << "</skipped>\n";
  }
  if (!c.properties.empty()) {
    body << "      <properties>\n";
    for (const auto& [name, value] : c.properties) {
      body << "        <property name=\"" << XmlAttribute(name) << "\" value=\""
           << XmlAttribute(value) << "\"/>\n";
    }
    body << "      </properties>\n";
  }
  if (body.str().empty()) {
    xml << " />\n";
  } else {
    xml << ">\n" << body.str() << "    </testcase>\n";
  }
}

ordered_json JsonCase(const ReportedCase& c) {
  ordered_json test;
  test["name"] = TestOf(c.test.name);
  if (!c.test.value_param.empty()) test["value_param"] = c.test.value_param;
  if (!c.test.type_param.empty()) test["type_param"] = c.test.type_param;
  test["file"] = c.test.file;
  test["line"] = c.test.line;
  test["status"] = c.run ? "RUN" : "NOTRUN";
  test["result"] = !c.run ? "SUPPRESSED" : Skipped(c) ? "SKIPPED" : "COMPLETED";
  test["timestamp"] = JsonTimestamp(c.start_epoch_ms);
  test["time"] = Seconds(c.ms) + "s";
  test["classname"] = SuiteOf(c.test.name);
  for (const auto& [name, value] : c.properties) test[name] = value;
  std::vector<Failure> failures = Failures(c);
  if (!failures.empty()) {
    ordered_json list = ordered_json::array();
    for (const Failure& f : failures) {
      list.push_back({{"failure", Location(f, c.test) + "\n" + f.message},
                      {"type", Errored(c) ? "sandrun infrastructure error" : ""}});
    }
    test["failures"] = std::move(list);
  }
  if (Skipped(c)) {
    test["skipped"] = ordered_json::array(
        {{{"message", Location({}, c.test) + "\n" + c.verdict.skip_message}}});
  }
  return test;
}

}  // namespace

std::string GtestXmlReport(const GtestReport& report) {
  std::vector<const ReportedCase*> all;
  for (const auto& c : report.cases) all.push_back(&c);
  Counts total = Count(all);
  std::ostringstream xml;
  xml << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites tests=\"" << total.tests
      << "\" failures=\"" << total.failures << "\" disabled=\"" << total.disabled
      << "\" errors=\"" << total.errors << "\" time=\"" << Seconds(report.elapsed_ms)
      << "\" timestamp=\"" << XmlTimestamp(report.start_epoch_ms) << "\"";
  for (const auto& [name, value] : report.properties) {
    xml << " " << name << "=\"" << XmlAttribute(value) << "\"";
  }
  xml << " name=\"AllTests\">\n";
  for (const auto& [suite, cases] : BySuite(report)) {
    Counts counts = Count(cases);
    xml << "  <testsuite name=\"" << XmlAttribute(suite) << "\" tests=\"" << counts.tests
        << "\" failures=\"" << counts.failures << "\" disabled=\"" << counts.disabled
        << "\" skipped=\"" << counts.skipped << "\" errors=\"" << counts.errors << "\" time=\""
        << Seconds(counts.ms) << "\" timestamp=\""
        << XmlTimestamp(counts.start_epoch_ms ? counts.start_epoch_ms : report.start_epoch_ms)
        << "\">\n";
    for (const ReportedCase* c : cases) XmlCase(xml, *c);
    xml << "  </testsuite>\n";
  }
  xml << "</testsuites>\n";
  return xml.str();
}

std::string GtestJsonReport(const GtestReport& report) {
  std::vector<const ReportedCase*> all;
  for (const auto& c : report.cases) all.push_back(&c);
  Counts total = Count(all);
  ordered_json doc;
  doc["tests"] = total.tests;
  doc["failures"] = total.failures;
  doc["disabled"] = total.disabled;
  doc["errors"] = total.errors;
  doc["timestamp"] = JsonTimestamp(report.start_epoch_ms);
  doc["time"] = Seconds(report.elapsed_ms) + "s";
  for (const auto& [name, value] : report.properties) doc[name] = value;
  doc["name"] = "AllTests";
  doc["testsuites"] = ordered_json::array();
  for (const auto& [suite, cases] : BySuite(report)) {
    Counts counts = Count(cases);
    ordered_json s;
    s["name"] = suite;
    s["tests"] = counts.tests;
    s["failures"] = counts.failures;
    s["disabled"] = counts.disabled;
    s["errors"] = counts.errors;
    s["timestamp"] =
        JsonTimestamp(counts.start_epoch_ms ? counts.start_epoch_ms : report.start_epoch_ms);
    s["time"] = Seconds(counts.ms) + "s";
    s["testsuite"] = ordered_json::array();
    for (const ReportedCase* c : cases) s["testsuite"].push_back(JsonCase(*c));
    doc["testsuites"].push_back(std::move(s));
  }
  return doc.dump(2) + "\n";
}

Status WriteGtestReport(const fs::path& path, const std::string& format,
                        const GtestReport& report) {
  std::error_code ec;
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  if (ec) {
    return FailedPreconditionError("cannot create " + path.parent_path().string() + ": " +
                                   ec.message());
  }
  std::string text = format == "json" ? GtestJsonReport(report) : GtestXmlReport(report);
  return WriteFileAtomically(path, text, 0644);
}

}  // namespace sandrun::gtest
