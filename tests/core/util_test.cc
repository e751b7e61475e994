#include "sandrun/util.h"

#include <gtest/gtest.h>

#include <string>

namespace sandrun {
namespace {

TEST(Base64Test, RoundTripsEveryByteAndEveryPadding) {
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  for (std::size_t n : {0u, 1u, 2u, 3u, 4u, 255u, 256u}) {
    const std::string bytes = all.substr(0, n);
    const std::string text = Base64Encode(bytes);
    EXPECT_EQ(text.size() % 4, 0u);
    std::optional<std::string> back = Base64Decode(text);
    ASSERT_TRUE(back.has_value()) << text;
    EXPECT_EQ(*back, bytes);
  }
  EXPECT_EQ(Base64Encode("user:pass"), "dXNlcjpwYXNz");
  EXPECT_EQ(Base64Decode("aGk="), std::optional<std::string>("hi"));
}

TEST(Base64Test, AnythingButPaddedBase64IsRefused) {
  for (const char* bad : {"aGk", "aG=k", "a===", " aGk=", "aGk=\n", "aGk!", "=aGk"}) {
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
  }
}

TEST(ParseRfc3339MsTest, ReadsFractionsOfAnyLengthAndOffsets) {
  const std::int64_t base = *ParseRfc3339Ms("2026-12-05T04:19:58Z");
  EXPECT_EQ(*ParseRfc3339Ms("2026-12-05T04:19:58.123Z"), base + 123);
  EXPECT_EQ(*ParseRfc3339Ms("2026-12-05T04:19:58.123456789Z"), base + 123);
  EXPECT_EQ(*ParseRfc3339Ms("2026-12-05T04:19:58.5Z"), base + 500);
  EXPECT_EQ(*ParseRfc3339Ms("2026-12-05T05:49:58.123456789+01:30"), base + 123);
  EXPECT_EQ(*ParseRfc3339Ms("2026-12-04T23:19:58-05:00"), base);
  EXPECT_EQ(*ParseRfc3339Ms("2026-12-05T04:19:58"), base);
  for (const char* bad : {"yesterday", "2026-12-05T04:19:58+0100", "2026-12-05T04:19:58Zjunk",
                          "2026-12-05T04:19:58.5 UTC", "2026-12-05T04:19:58+ab:cd"}) {
    EXPECT_FALSE(ParseRfc3339Ms(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace sandrun
