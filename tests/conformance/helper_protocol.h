// What conformance_helper writes, shared with the suite that checks it, so
// the expected bytes are computed in one place.
#ifndef SANDRUN_TESTS_CONFORMANCE_HELPER_PROTOCOL_H_
#define SANDRUN_TESTS_CONFORMANCE_HELPER_PROTOCOL_H_

#include <cstdint>
#include <string_view>

namespace sandrun::conformance {

/// Byte `offset` of the stream `conformance_helper bytes N` writes: varies
/// with the position so a dropped or repeated chunk is noticed.
inline unsigned char PatternByte(std::uint64_t offset) {
  return static_cast<unsigned char>((offset * 131 + (offset >> 16)) & 0xff);
}

/// Multi-byte UTF-8 (2, 3 and 4 byte sequences) and a combining mark.
inline constexpr std::string_view kUtf8Sample =
    "gr\xC3\xBC\xC3\x9F dich \xE2\x82\xAC \xE6\x97\xA5\xE6\x9C\xAC "
    "\xF0\x9F\x98\x80 e\xCC\x81\n";

inline constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;

/// FNV-1a 64, continued from `hash`.
inline std::uint64_t Fnv1a(std::uint64_t hash, std::string_view data) {
  for (unsigned char c : data) {
    hash ^= c;
    hash *= 1099511628211ull;
  }
  return hash;
}

}  // namespace sandrun::conformance

#endif  // SANDRUN_TESTS_CONFORMANCE_HELPER_PROTOCOL_H_
