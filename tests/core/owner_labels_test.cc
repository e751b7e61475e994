#include "sandrun/owner_labels.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "sandrun/util.h"

namespace sandrun {
namespace {

TEST(OwnerLabelsTest, NameThisProcessThisHostAndTheEndOfTheLifetime) {
  const std::int64_t before = UnixSecondsNow();
  auto labels = OwnerLabels("dev.sandrun.", std::chrono::seconds(600));
  const std::int64_t after = UnixSecondsNow();
  ASSERT_EQ(labels.size(), 3u);
  EXPECT_EQ(labels.at("dev.sandrun.owner-pid"), std::to_string(::getpid()));
  EXPECT_EQ(labels.at("dev.sandrun.owner-host"), HostName());
  const std::int64_t expires = std::stoll(labels.at("dev.sandrun.expires"));
  EXPECT_GE(expires, before + 600);
  EXPECT_LE(expires, after + 600);
}

// `kill -9` of sandrun, then `sandrun cleanup` at once: the killed owner may
// still be a zombie, and its sandboxes must count as abandoned.
TEST(OwnerLabelsTest, AZombieOwnerIsNotAlive) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  // Not reaped yet: a zombie once it has exited.
  siginfo_t info{};
  ASSERT_EQ(::waitid(P_PID, static_cast<id_t>(child), &info, WEXITED | WNOWAIT), 0);
  EXPECT_FALSE(ProcessAlive(child)) << "a zombie counted as a running owner";
  EXPECT_TRUE(ProcessAlive(::getpid()));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(ProcessAlive(child));
}

TEST(OwnerLabelsTest, ReadBackTheyNameALiveOwnerAndAnUnexpiredSandbox) {
  Leftover l;
  l.labels = OwnerLabels("", std::chrono::seconds(60));
  ReadOwnerLabels("", UnixSecondsNow(), l);
  EXPECT_TRUE(l.owner_alive);
  EXPECT_FALSE(l.expired);
}

// The lifetime ends at `expires`: at that very second the sandbox is expired
// (Docker said `<=`, Modal `<`; one rule now).
TEST(OwnerLabelsTest, ASandboxIsExpiredFromTheSecondItsLifetimeEnds) {
  Leftover l;
  l.labels = {{"expires", "1000"}};
  ReadOwnerLabels("", 999, l);
  EXPECT_FALSE(l.expired);
  ReadOwnerLabels("", 1000, l);
  EXPECT_TRUE(l.expired);
  ReadOwnerLabels("", 1001, l);
  EXPECT_TRUE(l.expired);
}

TEST(OwnerLabelsTest, MissingOrMalformedLabelsMeanOwnerGoneAndNotExpired) {
  Leftover l;
  l.owner_alive = true;
  l.expired = true;
  l.labels = {{"owner-pid", "abc"}, {"expires", "soon"}, {"owner-host", HostName()}};
  ReadOwnerLabels("", UnixSecondsNow(), l);
  EXPECT_FALSE(l.owner_alive);
  EXPECT_FALSE(l.expired);
  EXPECT_EQ(l.labels.size(), 3u);  // Reading adds no labels.
}

TEST(OwnerLabelsTest, AnOwnerOnAnotherHostOrLongGoneIsNotAlive) {
  Leftover other_host;
  other_host.labels = {{"p.owner-pid", std::to_string(::getpid())},
                       {"p.owner-host", HostName() + "-elsewhere"}};
  ReadOwnerLabels("p.", UnixSecondsNow(), other_host);
  EXPECT_FALSE(other_host.owner_alive);

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);  // reaped: the pid names nothing now
  Leftover gone;
  gone.labels = {{"p.owner-pid", std::to_string(child)}, {"p.owner-host", HostName()}};
  ReadOwnerLabels("p.", UnixSecondsNow(), gone);
  EXPECT_FALSE(gone.owner_alive);
}

TEST(OwnerLabelsTest, ThePrefixSeparatesNamespaces) {
  Leftover l;
  l.labels = OwnerLabels("", std::chrono::seconds(60));
  ReadOwnerLabels("dev.sandrun.", UnixSecondsNow(), l);  // not this backend's labels
  EXPECT_FALSE(l.owner_alive);
}

}  // namespace
}  // namespace sandrun
