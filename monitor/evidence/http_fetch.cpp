#include "evidence/http_fetch.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <utility>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "common/build_info.hpp"

namespace driftwatch::evidence {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHeaderBytes = 16 * 1024;
// The body of an answer other than 200 is read (to keep the connection)
// only up to this; past it the connection is closed instead.
constexpr size_t kMaxErrorBodyBytes = 64 * 1024;

std::string describe(const error_code& ec) {
  if (ec == beast::error::timeout) return "timed out";
  std::string message = ec.message();
  if (!message.empty() && message[0] >= 'A' && message[0] <= 'Z' &&
      (message.size() < 2 || !(message[1] >= 'A' && message[1] <= 'Z'))) {
    message[0] = static_cast<char>(message[0] - 'A' + 'a');
  }
  return message;
}

std::string seconds(Clock::duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

bool starts_with_nocase(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         std::equal(prefix.begin(), prefix.end(), text.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) ==
                  std::tolower(static_cast<unsigned char>(b));
         });
}

bool is_path_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '~' || c == '-' || c == '/';
}

// Plain names joined by '/': what a tlog-tiles path is made of.
bool is_relative_path(std::string_view path) {
  if (path.empty() || !std::all_of(path.begin(), path.end(), is_path_char)) return false;
  for (;;) {
    const size_t slash = path.find('/');
    const std::string_view segment = path.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") return false;
    if (slash == std::string_view::npos) return true;
    path.remove_prefix(slash + 1);
  }
}

}  // namespace

struct HttpFetcher::Impl {
  std::string base_url;     // "http://host:port/prefix/"
  std::string host;         // without brackets, for the resolver
  std::string port;         // decimal
  std::string host_header;  // as in the URL: "host", "[::1]:8080"
  std::string prefix;       // "/prefix/"
  FetchTimeouts timeouts;

  asio::io_context io;
  beast::tcp_stream stream{io};
  beast::flat_buffer buffer;
  std::optional<tcp::resolver::results_type> endpoints;
  bool connected = false;
  uint64_t connections = 0;

  // Runs what was started on `io` to its end.
  void run() {
    io.restart();
    io.run();
  }

  void close() {
    error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    buffer.clear();
    connected = false;
  }

  Result<void> connect(const std::string& url) {
    if (!endpoints) {
      tcp::resolver resolver(io);
      error_code ec;
      auto results = resolver.resolve(host, port, ec);
      if (ec) return fail("GET ", url, ": cannot resolve ", host, ": ", describe(ec));
      endpoints = std::move(results);
    }
    error_code ec = asio::error::would_block;
    stream.expires_after(timeouts.connect);
    stream.async_connect(*endpoints,
                         [&ec](const error_code& error, const tcp::endpoint&) { ec = error; });
    run();
    if (ec) {
      close();
      if (ec == beast::error::timeout)
        return fail("GET ", url, ": cannot connect to ", host_header, ": no answer within ",
                    seconds(timeouts.connect));
      return fail("GET ", url, ": cannot connect to ", host_header, ": ", describe(ec));
    }
    connected = true;
    ++connections;
    return {};
  }

  // The next deadline: `read` from now, but never past the request's own.
  void arm(Clock::time_point request_due) {
    stream.expires_at(std::min(Clock::now() + timeouts.read, request_due));
  }

  // What a failed read or write says. `due`: the request's deadline.
  std::unexpected<Error> io_error(const std::string& url, const error_code& ec,
                                  Clock::time_point due, std::string_view doing) {
    close();
    if (ec == beast::error::timeout) {
      if (Clock::now() >= due)
        return fail("GET ", url, ": no complete answer within ", seconds(timeouts.request));
      return fail("GET ", url, ": the server sent nothing for ", seconds(timeouts.read), " while ",
                  doing);
    }
    return fail("GET ", url, ": ", describe(ec), " while ", doing);
  }

  // One request on the open connection. `stale` is set when it failed
  // before the server said anything, on a connection it may have closed.
  Result<std::optional<std::string>> exchange(const std::string& url, const std::string& target,
                                              size_t max_bytes, bool& stale) {
    stale = false;
    const Clock::time_point due = Clock::now() + timeouts.request;
    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, host_header);
    request.set(http::field::user_agent, std::string("driftwatch/") + build_version());
    request.set(http::field::accept_encoding, "identity");
    request.keep_alive(true);

    error_code ec = asio::error::would_block;
    arm(due);
    http::async_write(stream, request, [&ec](const error_code& error, size_t) { ec = error; });
    run();
    if (ec) {
      stale = true;
      return io_error(url, ec, due, "sending the request");
    }

    http::response_parser<http::string_body> parser;
    parser.header_limit(kMaxHeaderBytes);
    // Set for real once the status is known (no body is read before): with
    // it set now, a large Content-Length fails inside the parser, and the
    // error could not say how large. (Not boost::none: Beast 1.74 compares
    // `length > none` as true.)
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    ec = asio::error::would_block;
    arm(due);
    http::async_read_header(stream, buffer, parser,
                            [&ec](const error_code& error, size_t) { ec = error; });
    run();
    if (ec) {
      stale = !parser.got_some() && ec != beast::error::timeout;
      if (ec == http::error::header_limit) {
        close();
        return fail("GET ", url, ": the answer's header is larger than ",
                    std::to_string(kMaxHeaderBytes), " bytes");
      }
      return io_error(url, ec, due, "waiting for the answer");
    }

    const auto& header = parser.get();
    const unsigned status = header.result_int();
    const std::string reason(header.reason());
    if (status >= 300 && status < 400) {
      const auto location = header[http::field::location];
      close();
      return fail("GET ", url, ": redirected (HTTP ", std::to_string(status), ") to ",
                  location.empty() ? std::string("nowhere (no Location)")
                                   : std::string(location.data(), location.size()),
                  "; redirects are not followed: give the URL the log is served at");
    }
    if (status != 200 && status != 404) {
      close();
      return fail("GET ", url, ": HTTP ", std::to_string(status), reason.empty() ? "" : " ",
                  reason);
    }
    if (status == 200) {
      const auto encoding = header[http::field::content_encoding];
      if (!encoding.empty() && !beast::iequals(encoding, "identity")) {
        close();
        return fail("GET ", url, ": the answer is encoded as '",
                    std::string(encoding.data(), encoding.size()),
                    "', which is not supported (only identity)");
      }
      if (const auto length = parser.content_length(); length && *length > max_bytes) {
        close();
        return fail("GET ", url, ": the answer of ", std::to_string(*length),
                    " bytes is larger than the ", std::to_string(max_bytes), " allowed");
      }
    }
    const size_t limit = status == 200 ? max_bytes : kMaxErrorBodyBytes;
    parser.body_limit(limit);
    while (!parser.is_done()) {
      ec = asio::error::would_block;
      arm(due);
      http::async_read_some(stream, buffer, parser,
                            [&ec](const error_code& error, size_t) { ec = error; });
      run();
      if (ec == http::error::body_limit) {
        close();
        if (status == 404) return std::nullopt;
        return fail("GET ", url, ": the answer is larger than the ", std::to_string(max_bytes),
                    " bytes allowed");
      }
      if (ec) return io_error(url, ec, due, "reading the answer");
    }
    if (!parser.keep_alive()) close();
    if (status == 404) return std::nullopt;
    return std::move(parser.release().body());
  }
};

Result<HttpFetcher> HttpFetcher::for_url(std::string_view base_url, FetchTimeouts timeouts) {
  const std::string given(base_url);
  const auto bad = [&](std::string_view why) {
    return fail("evidence log URL '", given, "' ", why,
                " (write http://HOST[:PORT]/PATH/, e.g. http://127.0.0.1:9477/evidence/)");
  };
  if (starts_with_nocase(base_url, "https://"))
    return fail("evidence log URL '", given,
                "': https is not supported yet; fetch the directory with curl or serve it over "
                "http");
  if (!starts_with_nocase(base_url, "http://")) return bad("is not an http:// URL");
  std::string_view rest = base_url.substr(7);
  if (rest.find_first_of("?#") != std::string_view::npos) return bad("has a query or fragment");
  if (std::any_of(rest.begin(), rest.end(), [](char c) {
        return static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f;
      }))
    return bad("has a space, a control character or a non-ASCII byte");
  const size_t slash = rest.find('/');
  const std::string_view authority = rest.substr(0, slash);
  std::string path(slash == std::string_view::npos ? "/" : rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) return bad("has user info");

  auto impl = std::make_unique<Impl>();
  std::string_view host;
  std::string_view port_text;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("has no ']' after the IPv6 address");
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return bad("has text after ']'");
    if (!after.empty()) port_text = after.substr(1);
    if (after == ":") return bad("has an empty port");
  } else {
    const size_t colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("has an empty port");
    }
  }
  if (host.empty()) return bad("has no host");
  unsigned port = 80;
  if (!port_text.empty()) {
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 ||
        port > 65535)
      return bad("has a port that is not a number from 1 to 65535");
  }
  if (!path.ends_with('/')) path += '/';
  impl->host = std::string(host);
  impl->port = std::to_string(port);
  impl->host_header = std::string(authority);
  impl->prefix = path;
  impl->base_url = "http://" + impl->host_header + path;
  impl->timeouts = timeouts;
  return HttpFetcher(std::move(impl));
}

HttpFetcher::HttpFetcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpFetcher::HttpFetcher(HttpFetcher&&) noexcept = default;
HttpFetcher& HttpFetcher::operator=(HttpFetcher&&) noexcept = default;
HttpFetcher::~HttpFetcher() = default;

Result<std::optional<std::string>> HttpFetcher::get(std::string_view relative_path,
                                                    std::size_t max_bytes) {
  Impl& impl = *impl_;
  if (!is_relative_path(relative_path)) {
    return fail("cannot fetch '", std::string(relative_path), "' from ", impl.base_url,
                ": not a relative path of plain names (A-Z a-z 0-9 . _ ~ -)");
  }
  const std::string url = impl.base_url + std::string(relative_path);
  const std::string target = impl.prefix + std::string(relative_path);
  // A connection kept alive may have been closed by the server since the
  // last answer; a GET is safe to send again, once, on a new one.
  for (int attempt = 0;; ++attempt) {
    const bool reused = impl.connected;
    if (!impl.connected) {
      if (auto connected = impl.connect(url); !connected) return std::unexpected(connected.error());
    }
    bool stale = false;
    auto answer = impl.exchange(url, target, max_bytes, stale);
    if (answer || !(stale && reused) || attempt > 0) return answer;
  }
}

const std::string& HttpFetcher::base_url() const {
  return impl_->base_url;
}

uint64_t HttpFetcher::connections_opened() const {
  return impl_->connections;
}

}  // namespace driftwatch::evidence
