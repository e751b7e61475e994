#include "modal_http.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <openssl/ssl.h>

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
  std::size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']') == std::string::npos) {
    url.host = authority.substr(0, colon);
    url.port = authority.substr(colon + 1);
  } else {
    url.host = authority;
    url.port = url.tls ? "443" : "80";
  }
  url.shown = (url.tls ? "https://" : "http://") + authority +
              url.target.substr(0, url.target.find('?'));
  return url;
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

Result<std::string> Request(const std::string& text, http::verb verb, std::string_view body) {
  SANDRUN_ASSIGN_OR_RETURN(Url url, ParseUrl(text));
  try {
    asio::io_context io;
    tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(url.host, url.port);
    if (!url.tls) {
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::minutes(5));
      stream.connect(endpoints);
      auto result = Exchange(stream, url, verb, body);
      beast::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      return result;
    }
    asio::ssl::context ssl(asio::ssl::context::tls_client);
    ssl.set_default_verify_paths();
    ssl.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(io, ssl);
    if (!SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str())) {
      return UnavailableError("modal: TLS SNI setup failed for " + url.shown);
    }
    stream.set_verify_callback(asio::ssl::host_name_verification(url.host));
    beast::get_lowest_layer(stream).expires_after(std::chrono::minutes(5));
    beast::get_lowest_layer(stream).connect(endpoints);
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

}  // namespace

Result<std::string> HttpGet(const std::string& url) {
  return Request(url, http::verb::get, {});
}

Result<std::string> HttpPut(const std::string& url, std::string_view body) {
  return Request(url, http::verb::put, body);
}

}  // namespace sandrun::modal
