// UTF-8 checks shared by the record and JUnit writers (private to core).
#ifndef SANDRUN_SRC_UTF8_H_
#define SANDRUN_SRC_UTF8_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace sandrun::internal {

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

/// Length of the well-formed UTF-8 sequence at text[i] (RFC 3629: no overlong
/// forms, no surrogates, nothing above U+10FFFF), or 0 if it is malformed.
std::size_t Utf8SequenceLength(std::string_view text, std::size_t i);

bool IsValidUtf8(std::string_view text);

/// `text` with every byte that is not part of a well-formed sequence
/// replaced by U+FFFD.
std::string SanitizeUtf8(std::string_view text);

}  // namespace sandrun::internal

#endif  // SANDRUN_SRC_UTF8_H_
