// Small helpers shared by the core, the CLI and the plugins, so each lives in
// one place: time stamps, host identity, random ids, quoting for display.
#ifndef SANDRUN_UTIL_H_
#define SANDRUN_UTIL_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sandrun {

/// "2026-11-22T03:15:00.123Z".
std::string FormatRfc3339(std::chrono::system_clock::time_point when);
inline std::string NowRfc3339() { return FormatRfc3339(std::chrono::system_clock::now()); }
/// Milliseconds since the epoch of "2026-11-22T03:15:00.123Z" (what
/// FormatRfc3339 writes); any number of fraction digits, and a "+01:00" or
/// "-05:00" offset or none instead of "Z", are read too (Docker's times).
/// nullopt if the text is not such a time.
std::optional<std::int64_t> ParseRfc3339Ms(const std::string& text);

/// Standard base64 (RFC 4648, padded), through OpenSSL.
std::string Base64Encode(std::string_view data);
/// The bytes of standard padded base64; nullopt if `text` is anything else.
std::optional<std::string> Base64Decode(std::string_view text);

/// gethostname(), or "unknown-host".
std::string HostName();

/// The user running sandrun: $USER if set, else the passwd entry of the
/// real uid, else "uid<N>". Recorded in run.json so a shared archive can tell
/// one user's runs from another's.
std::string UserName();

/// `n` lowercase hex digits from a non-deterministic source.
std::string RandomHex(int n);

/// A shell-safe rendering of argv for humans (never executed by sandrun).
std::string QuoteForDisplay(const std::vector<std::string>& argv);

/// Milliseconds between two steady-clock points.
inline std::int64_t MillisBetween(std::chrono::steady_clock::time_point a,
                                  std::chrono::steady_clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

/// True if a process with this pid runs on this host (a zombie, killed but
/// not yet reaped, does not).
bool ProcessAlive(int pid);

/// "11 (SIGSEGV)": a signal's number and name, as sandrun's messages name a
/// signal that ended a command ("crashed: killed by signal 11 (SIGSEGV)").
std::string SignalText(int signal);

}  // namespace sandrun

#endif  // SANDRUN_UTIL_H_
