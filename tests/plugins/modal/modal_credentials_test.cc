// Credential discovery: environment, ~/.modal.toml profiles, the active
// profile, missing and malformed files; the secret never shows in a message.
#include "modal_credentials.h"

#include <gtest/gtest.h>

#include "support/test_util.h"

namespace sandrun::modal {
namespace {

using ::sandrun::testing::TempDir;

constexpr char kSecret[] = "as-very-secret-value";

std::map<std::string, std::string> EnvWithConfig(const TempDir& dir, const std::string& toml) {
  return {{"MODAL_CONFIG_PATH", dir.Write("modal.toml", toml).string()}};
}

TEST(ModalCredentialsTest, EnvironmentVariablesAlone) {
  auto creds = LoadModalCredentials({{"MODAL_TOKEN_ID", "ak-1"},
                                     {"MODAL_TOKEN_SECRET", kSecret},
                                     {"HOME", "/nonexistent"}});
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->token_id, "ak-1");
  EXPECT_EQ(creds->token_secret, kSecret);
  EXPECT_EQ(creds->server_url, kDefaultServerUrl);
  EXPECT_EQ(creds->environment, "");
  EXPECT_EQ(creds->source.find(kSecret), std::string::npos);
}

TEST(ModalCredentialsTest, DefaultProfileFromHome) {
  TempDir home;
  home.Write(".modal.toml",
             "[default]\ntoken_id = \"ak-home\"\ntoken_secret = \"as-home\"\n"
             "environment = \"dev\"\n");
  auto creds = LoadModalCredentials({{"HOME", home.path().string()}});
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->token_id, "ak-home");
  EXPECT_EQ(creds->environment, "dev");
  EXPECT_NE(creds->source.find("profile 'default'"), std::string::npos);
}

TEST(ModalCredentialsTest, ActiveProfileWinsOverDefault) {
  TempDir dir;
  auto env = EnvWithConfig(dir,
                           "[default]\ntoken_id = \"ak-d\"\ntoken_secret = \"as-d\"\n"
                           "[work]\ntoken_id = \"ak-w\"\ntoken_secret = \"as-w\"\nactive = true\n"
                           "server_url = \"https://example.invalid:8443\"\n");
  auto creds = LoadModalCredentials(env);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->token_id, "ak-w");
  EXPECT_EQ(creds->server_url, "https://example.invalid:8443");
}

TEST(ModalCredentialsTest, ModalProfileSelectsAndEnvOverridesKeys) {
  TempDir dir;
  auto env = EnvWithConfig(dir,
                           "[a]\ntoken_id = \"ak-a\"\ntoken_secret = \"as-a\"\nactive = true\n"
                           "[b]\ntoken_id = \"ak-b\"\ntoken_secret = \"as-b\"\n"
                           "environment = \"from-file\"\n");
  env["MODAL_PROFILE"] = "b";
  env["MODAL_ENVIRONMENT"] = "from-env";
  env["MODAL_TOKEN_SECRET"] = "as-env";
  auto creds = LoadModalCredentials(env);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->token_id, "ak-b");
  EXPECT_EQ(creds->token_secret, "as-env");
  EXPECT_EQ(creds->environment, "from-env");
}

TEST(ModalCredentialsTest, MissingEverythingSaysWhatToDo) {
  auto creds = LoadModalCredentials({{"HOME", "/nonexistent-home"}});
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(creds.status().message().find("/nonexistent-home/.modal.toml"), std::string::npos)
      << creds.status().message();
  EXPECT_NE(creds.status().message().find("modal setup"), std::string::npos);
}

TEST(ModalCredentialsTest, NamedProfileMissing) {
  TempDir dir;
  auto env = EnvWithConfig(dir, "[default]\ntoken_id = \"ak\"\ntoken_secret = \"as\"\n");
  env["MODAL_PROFILE"] = "nope";
  auto creds = LoadModalCredentials(env);
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(creds.status().message().find("nope"), std::string::npos);
}

TEST(ModalCredentialsTest, MalformedFileNamesPositionNotContent) {
  TempDir dir;
  auto env = EnvWithConfig(dir, std::string("[default]\ntoken_id = \"ak\"\ntoken_secret = \"") +
                                    kSecret + "\n");  // unterminated string
  auto creds = LoadModalCredentials(env);
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(creds.status().message().find("modal.toml"), std::string::npos);
  EXPECT_NE(creds.status().message().find("line 3"), std::string::npos) << creds.status().message();
  EXPECT_EQ(creds.status().message().find(kSecret), std::string::npos) << "secret leaked";
}

TEST(ModalCredentialsTest, TokenWithoutSecret) {
  TempDir dir;
  auto env = EnvWithConfig(dir, "[default]\ntoken_id = \"ak-only\"\n");
  auto creds = LoadModalCredentials(env);
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("token_secret"), std::string::npos);
}

TEST(ModalCredentialsTest, NonStringSecretIsRejectedWithoutEcho) {
  TempDir dir;
  auto env = EnvWithConfig(dir, "[default]\ntoken_id = \"ak\"\ntoken_secret = 12345678\n");
  auto creds = LoadModalCredentials(env);
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("token_secret must be a string"), std::string::npos);
  EXPECT_EQ(creds.status().message().find("12345678"), std::string::npos);
}

}  // namespace
}  // namespace sandrun::modal
