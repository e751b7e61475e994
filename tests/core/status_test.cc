#include "sandrun/status.h"

#include <gtest/gtest.h>

#include "sandrun/result.h"

namespace sandrun {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError(std::to_string(x) + " is odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  SANDRUN_ASSIGN_OR_RETURN(int half, Half(x));
  SANDRUN_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

Status CheckEven(int x) {
  SANDRUN_RETURN_IF_ERROR(Half(x).status());
  return OkStatus();
}

TEST(StatusTest, CodesMessagesAndRetryability) {
  EXPECT_TRUE(OkStatus().ok());
  EXPECT_EQ(OkStatus().ToString(), "OK");
  Status s = UnavailableError("daemon restarting");
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(s.retryable());
  EXPECT_EQ(s.ToString(), "UNAVAILABLE: daemon restarting");
  EXPECT_FALSE(FailedPreconditionError("no daemon").retryable());
  Status c = s.WithContext("creating sandbox");
  EXPECT_EQ(c.message(), "creating sandbox: daemon restarting");
  EXPECT_TRUE(c.retryable());
}

TEST(StatusTest, EveryErrorCodeHasAFactory) {
  const std::pair<Status, const char*> cases[] = {
      {InvalidArgumentError("m"), "INVALID_ARGUMENT: m"},
      {NotFoundError("m"), "NOT_FOUND: m"},
      {AlreadyExistsError("m"), "ALREADY_EXISTS: m"},
      {FailedPreconditionError("m"), "FAILED_PRECONDITION: m"},
      {UnavailableError("m"), "UNAVAILABLE: m"},
      {DeadlineExceededError("m"), "DEADLINE_EXCEEDED: m"},
      {CancelledError("m"), "CANCELLED: m"},
      {PermissionDeniedError("m"), "PERMISSION_DENIED: m"},
      {ResourceExhaustedError("m"), "RESOURCE_EXHAUSTED: m"},
      {UnimplementedError("m"), "UNIMPLEMENTED: m"},
      {InternalError("m"), "INTERNAL: m"},
  };
  for (const auto& [status, text] : cases) {
    EXPECT_EQ(status.ToString(), text);
    EXPECT_EQ(status.retryable(), status.code() == StatusCode::kUnavailable) << text;
  }
}

TEST(StatusTest, ResultCarriesValueOrError) {
  EXPECT_EQ(*Quarter(8), 2);
  auto odd = Quarter(6);
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.status().message(), "3 is odd");
  EXPECT_EQ(CheckEven(3).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(CheckEven(4).ok());
  Result<int> from_ok_status = OkStatus();
  EXPECT_EQ(from_ok_status.status().code(), StatusCode::kInternal);
}

TEST(ExitCodeTest, FollowsTimeoutAndDockerConventions) {
  ExecResult r;
  r.outcome = Outcome::kExited;
  r.exit_code = 3;
  EXPECT_EQ(ExitCodeOf(r), 3);
  r.outcome = Outcome::kTimedOut;
  EXPECT_EQ(ExitCodeOf(r), 124);
  r.outcome = Outcome::kInfraError;
  EXPECT_EQ(ExitCodeOf(r), 125);
  r.outcome = Outcome::kSignaled;
  r.signal = 11;
  EXPECT_EQ(ExitCodeOf(r), 139);
  r.outcome = Outcome::kCancelled;
  EXPECT_EQ(ExitCodeOf(r), 130);
  for (auto o : {Outcome::kExited, Outcome::kSignaled, Outcome::kTimedOut, Outcome::kOomKilled,
                 Outcome::kCancelled, Outcome::kInfraError}) {
    EXPECT_EQ(OutcomeFromName(OutcomeName(o)), o);
  }
  EXPECT_FALSE(OutcomeFromName("bogus").has_value());
}

}  // namespace
}  // namespace sandrun
