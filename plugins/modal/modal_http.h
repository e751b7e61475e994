// HTTP(S) GET and PUT for a Modal Volume's block URLs (Boost.Beast; TLS with
// the system's roots for https), with the retries Modal's Python SDK uses
// for them, through an HTTP CONNECT proxy when the environment names one, as
// gRPC's channels do. Internal to plugins/modal.
//
// Proxy (the variables gRPC C-core reads, grpc/grpc doc/environment_variables.md,
// plus their upper-case spellings): the first set of grpc_proxy,
// https_proxy, HTTPS_PROXY, http_proxy, HTTP_PROXY names the proxy for every
// block URL, http:// and https:// alike; the first set of no_grpc_proxy,
// no_proxy, NO_PROXY lists hosts reached directly. Supported: a proxy URL
// "http://[user:password@]host[:port]" (port 80 when left out; the user
// part is sent as Proxy-Authorization: Basic) or a bare "host:port", and
// the tunnel is always a CONNECT, so the TLS session runs end to end. Not
// supported, as in gRPC: https:// or socks proxies (such a setting is
// ignored and the URL reached directly). NO_PROXY entries are host names
// (an entry also matches its subdomains, a leading '.' is optional),
// literal addresses, or "*" for every host; CIDR ranges and ports are not.
#ifndef SANDRUN_PLUGINS_MODAL_MODAL_HTTP_H_
#define SANDRUN_PLUGINS_MODAL_MODAL_HTTP_H_

#include <chrono>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "sandrun/status.h"

namespace sandrun::modal {

/// How often a block transfer is tried, and the wait before the first retry
/// (doubling after each). Only retryable failures are retried: connection
/// failures, 5xx and 429 answers, and a body of the wrong length.
struct TransferRetry {
  int attempts = 1;
  std::chrono::milliseconds first_delay{0};
};

/// The numbers of Modal's Python SDK (modal-labs/modal-client
/// py/modal/volume.py): block downloads `retry(n_attempts=5,
/// base_delay=0.1)`, block uploads `retry(n_attempts=11, base_delay=0.5)`;
/// `retry` in py/modal/_utils/async_utils.py doubles the delay
/// (delay_factor=2), with no cap. (Python retries every exception; we do not
/// retry a 4xx, which a retry cannot mend.)
inline constexpr TransferRetry kBlockGetRetry{5, std::chrono::milliseconds(100)};
inline constexpr TransferRetry kBlockPutRetry{11, std::chrono::milliseconds(500)};

/// GET `url`, expecting exactly `expected_length` body bytes on a 2xx answer
/// (any other length is a retryable failure: Modal's block host has answered
/// 200 with a short body). Errors: kUnavailable (retryable) for connection
/// failures, 5xx, 429 and wrong lengths, kNotFound for 404, kInternal
/// otherwise. Messages show the URL without its query (presigned URLs carry
/// secrets).
Result<std::string> HttpGet(const std::string& url, std::size_t expected_length,
                            const TransferRetry& retry = kBlockGetRetry);

/// PUT `body` to `url`; the response body on a 2xx answer.
Result<std::string> HttpPut(const std::string& url, std::string_view body,
                            const TransferRetry& retry = kBlockPutRetry);

/// Where a connection to `host` goes first: a CONNECT proxy.
struct HttpProxy {
  std::string host;
  std::string port;
  std::string authorization;  ///< "Basic ..." or empty.
};

/// The proxy for `host` as the environment (read through `getenv`) says;
/// nullopt for a direct connection.
std::optional<HttpProxy> ProxyFor(
    const std::string& host,
    const std::function<const char*(const char*)>& getenv = [](const char* name) {
      return std::getenv(name);
    });

}  // namespace sandrun::modal

#endif  // SANDRUN_PLUGINS_MODAL_MODAL_HTTP_H_
