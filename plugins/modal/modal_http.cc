#include "modal_http.h"

#include <openssl/ssl.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <cctype>
#include <thread>
#include <vector>

#include "sandrun/util.h"

namespace sandrun::modal {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct Url {
  bool tls = false;
  std::string host;
  std::string port;
  std::string target;
  std::string shown;  // without the query
};

// "host[:port]" or "[v6]:port" into host and port (`default_port` if none).
void SplitAuthority(const std::string& authority, const std::string& default_port,
                    std::string* host, std::string* port) {
  std::size_t colon = authority.rfind(':');
  std::size_t bracket = authority.rfind(']');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    *host = authority.substr(0, colon);
    *port = authority.substr(colon + 1);
  } else {
    *host = authority;
    *port = default_port;
  }
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
}

Result<Url> ParseUrl(const std::string& text) {
  Url url;
  std::string rest;
  if (text.rfind("https://", 0) == 0) {
    url.tls = true;
    rest = text.substr(8);
  } else if (text.rfind("http://", 0) == 0) {
    rest = text.substr(7);
  } else {
    return InvalidArgumentError("modal: unsupported block url scheme");
  }
  std::size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  url.target = slash == std::string::npos ? "/" : rest.substr(slash);
  SplitAuthority(authority, url.tls ? "443" : "80", &url.host, &url.port);
  url.shown = (url.tls ? "https://" : "http://") + authority +
              url.target.substr(0, url.target.find('?'));
  return url;
}

std::string Lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// The value of the first of `names` that is set and not empty.
std::optional<std::string> FirstSet(std::initializer_list<const char*> names,
                                    const std::function<const char*(const char*)>& getenv) {
  for (const char* name : names) {
    const char* value = getenv(name);
    if (value != nullptr && *value != '\0') return std::string(value);
  }
  return std::nullopt;
}

// True when the comma-separated NO_PROXY list names `host`.
bool Bypassed(const std::string& host, const std::string& no_proxy) {
  const std::string lower_host = Lower(host);
  std::size_t start = 0;
  while (start <= no_proxy.size()) {
    std::size_t comma = no_proxy.find(',', start);
    std::string entry = no_proxy.substr(start, comma - start);
    start = comma == std::string::npos ? no_proxy.size() + 1 : comma + 1;
    entry.erase(0, entry.find_first_not_of(" \t"));
    entry.erase(entry.find_last_not_of(" \t") + 1);
    if (entry.empty()) continue;
    if (entry == "*") return true;
    entry = Lower(entry);
    if (entry.front() == '.') entry.erase(0, 1);
    if (lower_host == entry) return true;
    if (lower_host.size() > entry.size() &&
        lower_host.compare(lower_host.size() - entry.size(), entry.size(), entry) == 0 &&
        lower_host[lower_host.size() - entry.size() - 1] == '.') {
      return true;
    }
  }
  return false;
}

// Opens a tunnel to url.host:url.port through `proxy` on a connected stream.
void ConnectThroughProxy(beast::tcp_stream& stream, const HttpProxy& proxy, const Url& url) {
  const std::string authority =
      (url.host.find(':') != std::string::npos ? "[" + url.host + "]" : url.host) + ":" + url.port;
  http::request<http::empty_body> connect{http::verb::connect, authority, 11};
  connect.set(http::field::host, authority);
  connect.set(http::field::user_agent, "sandrun");
  if (!proxy.authorization.empty()) {
    connect.set(http::field::proxy_authorization, proxy.authorization);
  }
  http::write(stream, connect);
  beast::flat_buffer buffer;
  http::response_parser<http::empty_body> parser;
  parser.skip(true);  // a 2xx answer to CONNECT has no body: the tunnel follows
  http::read_header(stream, buffer, parser);
  unsigned status = parser.get().result_int();
  if (status < 200 || status >= 300) {
    throw std::runtime_error("proxy " + proxy.host + ":" + proxy.port + " refused CONNECT " +
                             authority + ": HTTP " + std::to_string(status));
  }
  if (buffer.size() != 0) {
    throw std::runtime_error("proxy " + proxy.host + ":" + proxy.port +
                             " sent data before the tunnel was used");
  }
}

// A connected TCP stream to the URL's host, directly or through a proxy.
void Open(beast::tcp_stream& stream, asio::io_context& io, const Url& url) {
  tcp::resolver resolver(io);
  std::optional<HttpProxy> proxy = ProxyFor(url.host);
  if (!proxy) {
    stream.connect(resolver.resolve(url.host, url.port));
    return;
  }
  stream.connect(resolver.resolve(proxy->host, proxy->port));
  ConnectThroughProxy(stream, *proxy, url);
}

template <typename Stream>
Result<std::string> Exchange(Stream& stream, const Url& url, http::verb verb,
                             std::string_view body) {
  http::request<http::string_body> request{verb, url.target, 11};
  request.set(http::field::host, url.host);
  request.set(http::field::user_agent, "sandrun");
  if (verb == http::verb::put) {
    request.body() = std::string(body);
    request.prepare_payload();
  }
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1ull << 31);
  http::read(stream, buffer, parser);
  auto& response = parser.get();
  unsigned status = response.result_int();
  if (status >= 200 && status < 300) return std::move(response.body());
  std::string what = std::string(http::to_string(verb)) + " " + url.shown + ": HTTP " +
                     std::to_string(status);
  if (status == 404) return NotFoundError("modal: " + what);
  if (status >= 500 || status == 429) return UnavailableError("modal: " + what);
  return InternalError("modal: " + what);
}

// One attempt.
Result<std::string> Request(const Url& url, http::verb verb, std::string_view body) {
  try {
    asio::io_context io;
    beast::tcp_stream tcp_stream(io);
    tcp_stream.expires_after(std::chrono::minutes(5));
    Open(tcp_stream, io, url);
    if (!url.tls) {
      auto result = Exchange(tcp_stream, url, verb, body);
      beast::error_code ignored;
      tcp_stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return result;
    }
    asio::ssl::context ssl(asio::ssl::context::tls_client);
    ssl.set_default_verify_paths();
    ssl.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(std::move(tcp_stream), ssl);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str())) {
      return UnavailableError("modal: TLS SNI setup failed for " + url.shown);
    }
    stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
    stream.handshake(asio::ssl::stream_base::client);
    auto result = Exchange(stream, url, verb, body);
    beast::error_code ignored;
    stream.shutdown(ignored);
    return result;
  } catch (const std::exception& e) {
    return UnavailableError("modal: " + std::string(http::to_string(verb)) + " " + url.shown +
                            ": " + e.what());
  }
}

// Up to retry.attempts attempts while the failure is retryable.
Result<std::string> WithRetries(const TransferRetry& retry,
                                const std::function<Result<std::string>()>& attempt) {
  std::chrono::milliseconds delay = retry.first_delay;
  for (int done = 1;; ++done) {
    Result<std::string> result = attempt();
    if (result.ok() || !result.status().retryable() || done >= retry.attempts) {
      if (result.ok() || done == 1) return result;
      return Status(result.status().code(),
                    result.status().message() + " (after " + std::to_string(done) + " attempts)",
                    result.status().retryable());
    }
    std::this_thread::sleep_for(delay);
    delay *= 2;
  }
}

}  // namespace

std::optional<HttpProxy> ProxyFor(const std::string& host,
                                  const std::function<const char*(const char*)>& getenv) {
  std::optional<std::string> setting =
      FirstSet({"grpc_proxy", "https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"}, getenv);
  if (!setting) return std::nullopt;
  std::optional<std::string> no_proxy = FirstSet({"no_grpc_proxy", "no_proxy", "NO_PROXY"}, getenv);
  if (no_proxy && Bypassed(host, *no_proxy)) return std::nullopt;
  std::string rest = *setting;
  if (std::size_t scheme = rest.find("://"); scheme != std::string::npos) {
    if (Lower(rest.substr(0, scheme)) != "http") return std::nullopt;  // as gRPC: http only
    rest = rest.substr(scheme + 3);
  }
  rest = rest.substr(0, rest.find('/'));
  HttpProxy proxy;
  if (std::size_t at = rest.rfind('@'); at != std::string::npos) {
    proxy.authorization = "Basic " + Base64Encode(rest.substr(0, at));
    rest = rest.substr(at + 1);
  }
  SplitAuthority(rest, "80", &proxy.host, &proxy.port);
  if (proxy.host.empty()) return std::nullopt;
  return proxy;
}

Result<std::string> HttpGet(const std::string& url, std::size_t expected_length,
                            const TransferRetry& retry) {
  SANDRUN_ASSIGN_OR_RETURN(Url parsed, ParseUrl(url));
  return WithRetries(retry, [&]() -> Result<std::string> {
    SANDRUN_ASSIGN_OR_RETURN(std::string body, Request(parsed, http::verb::get, {}));
    if (body.size() != expected_length) {
      return UnavailableError("modal: GET " + parsed.shown + ": got " +
                              std::to_string(body.size()) + " bytes, expected " +
                              std::to_string(expected_length));
    }
    return body;
  });
}

Result<std::string> HttpPut(const std::string& url, std::string_view body,
                            const TransferRetry& retry) {
  SANDRUN_ASSIGN_OR_RETURN(Url parsed, ParseUrl(url));
  return WithRetries(retry, [&] { return Request(parsed, http::verb::put, body); });
}

}  // namespace sandrun::modal
