// ParseModalOptions and ValidateCidr: the Modal backend's section of
// sandrun.json read into ModalOptions, without any server.
#include "modal_options.h"

#include <gtest/gtest.h>

#include <string>

namespace sandrun::modal {
namespace {

std::string ErrorOf(std::string_view section) {
  auto options = ParseModalOptions(section);
  EXPECT_FALSE(options.ok()) << section;
  if (options.ok()) return "";
  EXPECT_EQ(options.status().code(), StatusCode::kInvalidArgument) << section;
  return options.status().message();
}

TEST(ModalOptionsTest, EmptySectionGivesTheDefaults) {
  for (std::string_view section : {"", "{}"}) {
    auto options = ParseModalOptions(section);
    ASSERT_TRUE(options.ok()) << options.status().ToString();
    EXPECT_EQ(options->app_name, "sandrun");
    EXPECT_EQ(options->volume, "sandrun-results");
    EXPECT_EQ(options->default_image, "debian:bookworm-slim");
    EXPECT_FALSE(options->environment_set);
    EXPECT_TRUE(options->secrets.empty());
    EXPECT_TRUE(options->cidr_allowlist.empty());
    EXPECT_EQ(options->idle_timeout_s, 0);
    EXPECT_EQ(options->max_parallel, 64);
    EXPECT_EQ(options->timeout_grace_ms, 2000);
  }
}

TEST(ModalOptionsTest, EveryKeyIsRead) {
  auto options = ParseModalOptions(R"({
    "app_name": "ci", "environment": "", "volume": "v", "server_url": "http://127.0.0.1:1",
    "default_image": "alpine:3", "secrets": ["a", "b"], "cidr_allowlist": ["10.0.0.0/8"],
    "idle_timeout_s": 30, "max_parallel": 8, "timeout_grace_ms": 0})");
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->app_name, "ci");
  EXPECT_TRUE(options->environment_set) << "an empty environment is still a choice";
  EXPECT_EQ(options->environment, "");
  EXPECT_EQ(options->volume, "v");
  EXPECT_EQ(options->server_url, "http://127.0.0.1:1");
  EXPECT_EQ(options->default_image, "alpine:3");
  EXPECT_EQ(options->secrets, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(options->cidr_allowlist, (std::vector<std::string>{"10.0.0.0/8"}));
  EXPECT_EQ(options->idle_timeout_s, 30);
  EXPECT_EQ(options->max_parallel, 8);
  EXPECT_EQ(options->timeout_grace_ms, 0);
}

TEST(ModalOptionsTest, BadSectionsNameTheProblem) {
  EXPECT_EQ(ErrorOf("{"), "modal: bad config section (not JSON)");
  EXPECT_EQ(ErrorOf("[]"), "modal: config section must be an object");
  EXPECT_EQ(ErrorOf(R"({"app_name": 3})"), "modal: app_name must be a string");
  EXPECT_EQ(ErrorOf(R"({"secrets": "a"})"), "modal: secrets must be a list of strings");
  EXPECT_EQ(ErrorOf(R"({"secrets": [1]})"), "modal: secrets must be a list of strings");
  EXPECT_EQ(ErrorOf(R"({"max_parallel": 0})"), "modal: max_parallel must be an integer >= 1");
  EXPECT_EQ(ErrorOf(R"({"idle_timeout_s": 1.5})"),
            "modal: idle_timeout_s must be an integer >= 0");
  EXPECT_EQ(ErrorOf(R"({"app_name": ""})"), "modal: app_name must not be empty");
  EXPECT_EQ(ErrorOf(R"({"volume": ""})"), "modal: volume must not be empty");
  EXPECT_EQ(ErrorOf(R"({"secrets": ["two words"]})"),
            "modal: invalid secret name 'two words' (a Modal Secret's name)");
  EXPECT_EQ(ErrorOf(R"({"gpu": "T4"})"), "modal: unknown config key 'gpu'");
}

TEST(ModalOptionsTest, CidrsAreCheckedAsAddressAndPrefix) {
  for (const char* good : {"203.0.113.0/24", "0.0.0.0/0", "10.1.2.3/32", "2001:db8::/32",
                           "::1/128"}) {
    EXPECT_TRUE(ValidateCidr(good).ok()) << good << ": " << ValidateCidr(good).ToString();
  }
  const std::pair<const char*, const char*> bad[] = {
      {"203.0.113.0", "no /PREFIX"},
      {"example.com/24", "is not an IPv4 or IPv6 address"},
      {"10.0.0.0/33", "prefix must be 0 to 32"},
      {"2001:db8::/129", "prefix must be 0 to 128"},
      {"10.0.0.0/", "prefix must be 0 to 32"},
      {"10.0.0.0/8x", "prefix must be 0 to 32"},
  };
  for (const auto& [cidr, why] : bad) {
    Status status = ValidateCidr(cidr);
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << cidr;
    EXPECT_NE(status.message().find(why), std::string::npos) << cidr << ": " << status.message();
  }
  EXPECT_NE(ErrorOf(R"({"cidr_allowlist": ["10.0.0.0/40"]})").find("'10.0.0.0/40'"),
            std::string::npos);
}

}  // namespace
}  // namespace sandrun::modal
