// Status and Result<T>: sandrun's vocabulary for infrastructure errors.
//
// A Status says whether an operation of sandrun or of a backend worked. A test
// that fails is NOT an error: it is an ExecResult with an outcome (result.h).
// Codes follow abseil's meanings; `retryable()` tells the engine whether the
// same operation may be tried again (a daemon hiccup, a 503), never a verdict
// on a test. No exception crosses a module boundary: plugins convert theirs
// into a Status at their edge.
#ifndef SANDRUN_STATUS_H_
#define SANDRUN_STATUS_H_

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace sandrun {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     ///< Bad input from the user: fix the input.
  kNotFound,            ///< A named thing (image, run, file) does not exist.
  kAlreadyExists,
  kFailedPrecondition,  ///< The system is not in a state to do it (no daemon).
  kUnavailable,         ///< Transient: back off and retry.
  kDeadlineExceeded,    ///< An infrastructure call took too long.
  kCancelled,           ///< The user interrupted the run.
  kPermissionDenied,    ///< Credentials rejected, or the OS said no.
  kResourceExhausted,   ///< Quota or disk full.
  kUnimplemented,       ///< The backend cannot do this at all.
  kInternal,            ///< A broken invariant inside sandrun or a backend.
};

/// Name of a code, e.g. "UNAVAILABLE", for messages and records.
std::string_view StatusCodeName(StatusCode code);

/// A code, a human message, and whether retrying may help. Cheap to copy.
class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message, bool retryable = false)
      : code_(code), message_(std::move(message)), retryable_(retryable) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  /// True when the same operation may succeed if tried again. kUnavailable is
  /// retryable by default; others only when the producer says so.
  bool retryable() const { return retryable_; }

  /// "UNAVAILABLE: docker daemon restarted" (or "OK").
  std::string ToString() const;

  /// Returns a copy whose message is prefixed with `context`: "context: msg".
  Status WithContext(std::string_view context) const;

  /// Marks a deliberate decision not to look at a Status (grep-able).
  void IgnoreError() const {}

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  bool retryable_ = false;
};

inline Status OkStatus() { return Status(); }
Status InvalidArgumentError(std::string message);
Status NotFoundError(std::string message);
Status AlreadyExistsError(std::string message);
Status FailedPreconditionError(std::string message);
Status UnavailableError(std::string message);  // retryable
Status DeadlineExceededError(std::string message);
Status CancelledError(std::string message);
Status PermissionDeniedError(std::string message);
Status ResourceExhaustedError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);

/// Holds either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT
    if (std::get<Status>(data_).ok()) {
      data_ = Status(StatusCode::kInternal, "Result built from an OK Status");
    }
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  /// The error, or OK when a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(data_); }

  T& value() & { return std::get<T>(data_); }
  const T& value() const& { return std::get<T>(data_); }
  T&& value() && { return std::get<T>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace sandrun

#define SANDRUN_STATUS_CONCAT_INNER_(a, b) a##b
#define SANDRUN_STATUS_CONCAT_(a, b) SANDRUN_STATUS_CONCAT_INNER_(a, b)

/// Returns from the enclosing function when `expr` (a Status) is not OK.
#define SANDRUN_RETURN_IF_ERROR(expr)               \
  do {                                              \
    ::sandrun::Status sandrun_status_ = (expr);     \
    if (!sandrun_status_.ok()) return sandrun_status_; \
  } while (0)

/// `SANDRUN_ASSIGN_OR_RETURN(auto x, MakeX());` unwraps a Result or returns
/// its Status from the enclosing function.
#define SANDRUN_ASSIGN_OR_RETURN(lhs, expr)                                  \
  auto SANDRUN_STATUS_CONCAT_(sandrun_result_, __LINE__) = (expr);           \
  if (!SANDRUN_STATUS_CONCAT_(sandrun_result_, __LINE__).ok())               \
    return SANDRUN_STATUS_CONCAT_(sandrun_result_, __LINE__).status();       \
  lhs = std::move(SANDRUN_STATUS_CONCAT_(sandrun_result_, __LINE__)).value()

#endif  // SANDRUN_STATUS_H_
