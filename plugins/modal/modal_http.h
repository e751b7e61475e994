// Plain HTTP(S) GET and PUT for a Modal Volume's block URLs (Boost.Beast;
// TLS with the system's roots for https). Internal to plugins/modal.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_HTTP_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_HTTP_H_

#include <string>
#include <string_view>

#include "sandrun/status.h"

namespace sandrun::modal {

/// GET `url`; the body on a 2xx answer. kUnavailable (retryable) for
/// connection failures and 5xx, kNotFound for 404, kInternal otherwise.
/// Messages show the URL without its query (presigned URLs carry secrets).
Result<std::string> HttpGet(const std::string& url);

/// PUT `body` to `url`; the response body on a 2xx answer.
Result<std::string> HttpPut(const std::string& url, std::string_view body);

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_HTTP_H_
