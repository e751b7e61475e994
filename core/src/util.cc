#include "sandrun/util.h"

#include <fstream>

#include <pwd.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>

namespace sandrun {

std::string FormatRfc3339(std::chrono::system_clock::time_point when) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(when);
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(when - secs).count();
  std::time_t t = std::chrono::system_clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(millis));
  return out;
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "unknown-host";
  return buf;
}

std::string UserName() {
  if (const char* user = std::getenv("USER"); user != nullptr && *user != '\0') return user;
  struct passwd entry {};
  struct passwd* found = nullptr;
  char buf[4096];
  if (getpwuid_r(getuid(), &entry, buf, sizeof buf, &found) == 0 && found != nullptr &&
      found->pw_name != nullptr && *found->pw_name != '\0') {
    return found->pw_name;
  }
  return "uid" + std::to_string(getuid());
}

std::string RandomHex(int n) {
  static thread_local std::mt19937_64 gen{std::random_device{}() ^
                                          static_cast<std::uint64_t>(getpid()) << 32};
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n);
  for (int i = 0; i < n; ++i) out.push_back(kDigits[gen() & 0xf]);
  return out;
}

std::string QuoteForDisplay(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) out += ' ';
    bool plain = !arg.empty() && arg.find_first_not_of(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") ==
        std::string::npos;
    if (plain) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'') out += "'\\''";
      else out += c;
    }
    out += '\'';
  }
  return out;
}

bool ProcessAlive(int pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0 && errno != EPERM) return false;
  // A killed process stays a zombie until its parent reaps it (a moment
  // after `kill -9`, or for good under a parent that never waits): dead.
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return true;  // Another pid namespace: trust kill().
  const std::size_t close = line.rfind(')');
  if (close == std::string::npos || close + 2 >= line.size()) return true;
  const char state = line[close + 2];
  return state != 'Z' && state != 'X';
}

std::string SignalText(int signal) {
  const char* abbrev = sigabbrev_np(signal);
  return std::to_string(signal) + " (" + (abbrev ? std::string("SIG") + abbrev : "unknown signal") + ")";
}

std::optional<std::int64_t> ParseRfc3339Ms(const std::string& text) {
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return std::nullopt;
  std::int64_t ms = static_cast<std::int64_t>(::timegm(&tm)) * 1000;
  if (*end == '.') {
    int digits = 0, fraction = 0;
    for (++end; *end >= '0' && *end <= '9'; ++end, ++digits) {
      if (digits < 3) fraction = fraction * 10 + (*end - '0');
    }
    for (; digits < 3; ++digits) fraction *= 10;
    ms += fraction;
  }
  if (*end == '\0' || (end[0] == 'Z' && end[1] == '\0')) return ms;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if ((*end == '+' || *end == '-') && std::strlen(end) == 6 && digit(end[1]) && digit(end[2]) &&
      end[3] == ':' && digit(end[4]) && digit(end[5])) {
    // Local time at that offset: UTC is the time minus the offset.
    const int hours = (end[1] - '0') * 10 + (end[2] - '0');
    const int minutes = (end[4] - '0') * 10 + (end[5] - '0');
    const std::int64_t offset_ms = (hours * 60 + minutes) * 60 * 1000;
    return ms + (*end == '+' ? -offset_ms : offset_ms);
  }
  return std::nullopt;
}

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');  // EVP_EncodeBlock adds a NUL.
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(data.data()),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n > 0 ? n : 0));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  // EVP_DecodeBlock is lenient where this must not be: it skips surrounding
  // blanks and reads '=' anywhere as zero bits. Padding only at the end.
  std::size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
  if (text.substr(0, text.size() - pad).find_first_not_of(
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/") !=
      std::string_view::npos) {
    return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) < pad) return std::nullopt;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

}  // namespace sandrun
