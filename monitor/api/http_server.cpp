#include "api/http_server.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <exception>
#include <limits>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace driftwatch::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// After an error answer (413, 400) the client may still be sending the body
// we refused. Closing with unread input makes the kernel send a reset, which
// can destroy our answer before the client reads it; so we half-close and
// discard what still arrives, for a bounded time, into a small fixed buffer
// (nginx's "lingering close"). Nothing of it is kept.
constexpr std::chrono::seconds kLingerTime{5};
constexpr size_t kDrainChunk = 16 * 1024;
// Unparsed input held between reads: a read chunk plus a pipelined request.
constexpr size_t kMaxReadBuffer = 256 * 1024;
// After a failed accept (EMFILE, ENFILE, ENOBUFS) retry after a pause
// instead of spinning on the error.
constexpr std::chrono::milliseconds kAcceptRetry{100};

std::string describe(const error_code& ec) {
  std::string message = ec.message();
  // "Address already in use" → "address already in use": it ends a sentence.
  if (!message.empty() && message[0] >= 'A' && message[0] <= 'Z' &&
      (message.size() < 2 || !(message[1] >= 'A' && message[1] <= 'Z'))) {
    message[0] = static_cast<char>(message[0] - 'A' + 'a');
  }
  return message;
}

// Client-supplied text (paths) may not be UTF-8; nlohmann's default dump
// would throw on it.
std::string dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

HttpResponse json_response(int status, const nlohmann::json& body) {
  return HttpResponse{status, "application/json", dump(body)};
}

HttpResponse error_response(int status, std::string message) {
  return json_response(status, {{"error", std::move(message)}});
}

HttpResponse too_large_response(std::optional<uint64_t> length) {
  const std::string size =
      length ? std::to_string(*length) + " bytes"
             : "more than " + std::to_string(HttpServer::kMaxBodyBytes) + " bytes";
  return json_response(413, {{"result", "too_large"},
                             {"reason", "request body of " + size + " exceeds the 1 MiB limit"}});
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 percent-decoding; '+' is a space only in a query (form encoding).
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_value(text[i + 1]);
      const int low = hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// "a=1&b=x%20y&flag" → {a: "1", b: "x y", flag: ""}. A repeated key keeps its
// last value.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view text) {
  std::map<std::string, std::string> query;
  while (!text.empty()) {
    const size_t amp = text.find('&');
    const std::string_view pair = text.substr(0, amp);
    text = amp == std::string_view::npos ? std::string_view{} : text.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto key = percent_decode(pair.substr(0, eq), true);
    auto value = percent_decode(
        eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
    if (!key || !value) return std::nullopt;
    query[std::move(*key)] = std::move(*value);
  }
  return query;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

class Connection;

// What connections and pending handlers share. It outlives the HttpServer
// object while handlers are still queued on the io_context, so a handler
// that runs after ~HttpServer touches live memory (and sees `stopped`).
struct Core : std::enable_shared_from_this<Core> {
  explicit Core(asio::io_context& context) : io(context), acceptor(context), retry_timer(context) {}

  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  // path → method → handler
  std::map<std::string, std::map<std::string, Handler>, std::less<>> routes;
  std::unordered_map<Connection*, std::weak_ptr<Connection>> connections;
  std::chrono::steady_clock::duration timeout = HttpServer::kDefaultTimeout;
  size_t max_connections = HttpServer::kDefaultMaxConnections;
  uint16_t port = 0;
  bool accept_pending = false;
  bool stopped = false;

  void accept_next();
  void on_accept(const error_code& ec, tcp::socket socket);
  void connection_closed(Connection* connection);
  void stop();
  // The response and, for 405, the Allow header.
  std::pair<HttpResponse, std::string> dispatch(const HttpRequest& request) const;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Core> core, tcp::socket socket)
      : core_(std::move(core)), stream_(std::move(socket)), buffer_(kMaxReadBuffer) {}
  ~Connection() { core_->connection_closed(this); }

  void start() { read_header(); }

  // From Core::stop: every pending operation completes with an error.
  void abort() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void read_header() {
    if (core_->stopped) return;
    parser_.emplace();
    parser_->header_limit(HttpServer::kMaxHeaderBytes);
    // The real body limit is set once the header is in: with it set now, a
    // large Content-Length fails inside the parser and we could not say how
    // large. (Not boost::none: Beast 1.74 compares `len > none` as true.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    stream_.expires_after(core_->timeout);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, size_t) { self->on_header(ec); });
  }

  void on_header(const error_code& ec) {
    if (ec) {
      if (ec == http::error::header_limit) {
        return answer_and_close(error_response(
            431,
            "request header exceeds " + std::to_string(HttpServer::kMaxHeaderBytes) + " bytes"));
      }
      if (is_parse_error(ec)) {
        return answer_and_close(error_response(400, "bad request: " + ec.message()));
      }
      return close();  // end of stream, timeout, reset, or stop()
    }
    if (core_->stopped) return close();
    const auto length = parser_->content_length();
    if (length && *length > HttpServer::kMaxBodyBytes) {
      return answer_too_large(std::optional<uint64_t>(*length));  // the body is never read
    }
    parser_->body_limit(HttpServer::kMaxBodyBytes);
    if (parser_->is_done()) return handle();
    const auto expect = parser_->get()[http::field::expect];
    if (iequals(std::string_view(expect.data(), expect.size()), "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      stream_.expires_after(core_->timeout);
      asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](const error_code& error, size_t) {
                          if (error) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_.expires_after(core_->timeout);
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, size_t) { self->on_body(ec); });
  }

  void on_body(const error_code& ec) {
    if (ec == http::error::body_limit) {
      return answer_too_large(std::nullopt);  // a chunked body grew too far
    }
    if (ec) {
      if (is_parse_error(ec)) {
        return answer_and_close(error_response(400, "bad request: " + ec.message()));
      }
      return close();
    }
    handle();
  }

  static bool is_parse_error(const error_code& ec) {
    return ec.category() == make_error_code(http::error::bad_target).category() &&
           ec != http::error::end_of_stream && ec != http::error::partial_message;
  }

  // The route still hears of a refused body (an ingest endpoint counts it);
  // the answer is a 413 whatever the handler says.
  void answer_too_large(std::optional<uint64_t> length) {
    const auto& header = parser_->get();
    HttpRequest request;
    request.method = std::string(header.method_string());
    const std::string_view target(header.target().data(), header.target().size());
    auto path = percent_decode(target.substr(0, target.find('?')), false);
    request.body_too_large = true;
    request.declared_length = length;
    HttpResponse response = too_large_response(length);
    if (path && !path->empty() && path->front() == '/') {
      request.path = std::move(*path);
      auto [answer, allow] = core_->dispatch(request);
      if (answer.status == 413) response = std::move(answer);
    }
    answer_and_close(std::move(response));
  }

  void handle() {
    if (core_->stopped) return close();
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    const unsigned version = message.version();
    const bool keep_alive = message.keep_alive();

    HttpRequest request;
    request.method = std::string(message.method_string());
    const std::string_view target(message.target().data(), message.target().size());
    const size_t question = target.find('?');
    const std::string_view raw_path = target.substr(0, question);
    auto path = percent_decode(raw_path, false);
    auto query = question == std::string_view::npos
                     ? std::optional<std::map<std::string, std::string>>(std::in_place)
                     : parse_query(target.substr(question + 1));
    if (raw_path.empty() || raw_path.front() != '/') {
      return write(error_response(400, "request target must be a path starting with '/'"), {},
                   version, false);
    }
    if (!path || !query) {
      return write(error_response(400, "bad percent-encoding in the request target"), {}, version,
                   false);
    }
    request.path = std::move(*path);
    request.query = std::move(*query);
    request.body = std::move(message.body());

    auto [response, allow] = core_->dispatch(request);
    write(std::move(response), std::move(allow), version, keep_alive);
  }

  void write(HttpResponse response, std::string allow, unsigned version, bool keep_alive,
             bool linger = false) {
    response_.emplace();
    response_->version(version);
    const int status = response.status >= 100 && response.status <= 599 ? response.status : 500;
    response_->result(static_cast<unsigned>(status));
    response_->set(http::field::server, "driftwatch");
    response_->set(http::field::content_type, response.content_type);
    if (!allow.empty()) response_->set(http::field::allow, allow);
    response_->keep_alive(keep_alive);
    response_->body() = std::move(response.body);
    response_->prepare_payload();
    stream_.expires_after(core_->timeout);
    http::async_write(
        stream_, *response_,
        [self = shared_from_this(), keep_alive, linger](const error_code& ec, size_t) {
          self->response_.reset();
          if (ec) return self->close();
          if (linger) return self->linger();
          if (!keep_alive || self->core_->stopped) return self->close();
          self->read_header();
        });
  }

  // An answer to a request whose rest is not read (too large, unparsable):
  // the connection cannot carry another request after it.
  void answer_and_close(HttpResponse response) {
    const unsigned version = parser_ ? parser_->get().version() : 11;
    write(std::move(response), {}, version == 10 ? 10 : 11, false, true);
  }

  void linger() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(kLingerTime);
    drain();
  }

  void drain() {
    if (!drain_buffer_) drain_buffer_ = std::make_unique<std::array<char, kDrainChunk>>();
    stream_.async_read_some(asio::buffer(*drain_buffer_),
                            [self = shared_from_this()](const error_code& ec, size_t) {
                              if (ec || self->core_->stopped) return self->close();
                              self->drain();
                            });
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  std::shared_ptr<Core> core_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;  // alive while being written
  std::unique_ptr<std::array<char, kDrainChunk>> drain_buffer_;
};

void Core::accept_next() {
  if (stopped || accept_pending || !acceptor.is_open()) return;
  if (connections.size() >= max_connections) return;  // resumed by connection_closed
  accept_pending = true;
  acceptor.async_accept(io, [self = shared_from_this()](const error_code& ec, tcp::socket socket) {
    self->on_accept(ec, std::move(socket));
  });
}

void Core::on_accept(const error_code& ec, tcp::socket socket) {
  accept_pending = false;
  if (stopped || ec == asio::error::operation_aborted) return;
  if (ec) {
    retry_timer.expires_after(kAcceptRetry);
    retry_timer.async_wait([self = shared_from_this()](const error_code& error) {
      if (!error) self->accept_next();
    });
    return;
  }
  auto connection = std::make_shared<Connection>(shared_from_this(), std::move(socket));
  connections.emplace(connection.get(), connection);
  connection->start();
  accept_next();
}

void Core::connection_closed(Connection* connection) {
  connections.erase(connection);
  accept_next();
}

void Core::stop() {
  stopped = true;
  error_code ignored;
  acceptor.close(ignored);
  retry_timer.cancel();
  std::vector<std::shared_ptr<Connection>> open;
  for (auto& [raw, weak] : connections) {
    if (auto connection = weak.lock()) open.push_back(std::move(connection));
  }
  for (auto& connection : open) connection->abort();
}

std::pair<HttpResponse, std::string> Core::dispatch(const HttpRequest& request) const {
  auto found = routes.find(request.path);
  if (found == routes.end()) {
    // The longest registered prefix: walk the path's '/' from the right.
    for (size_t slash = request.path.rfind('/'); slash != std::string::npos;
         slash = slash == 0 ? std::string::npos : request.path.rfind('/', slash - 1)) {
      found = routes.find(std::string_view(request.path).substr(0, slash + 1));
      if (found != routes.end()) break;
    }
  }
  if (found == routes.end()) {
    return {error_response(404, "no such endpoint: " + request.path), {}};
  }
  const auto handler = found->second.find(request.method);
  if (handler == found->second.end()) {
    std::string allow;
    for (const auto& [method, unused] : found->second) {
      if (!allow.empty()) allow += ", ";
      allow += method;
    }
    return {error_response(405, "method " + request.method + " is not allowed on " + request.path +
                                    " (allowed: " + allow + ")"),
            allow};
  }
  // A handler's exception must not unwind through Asio into io_context::run().
  try {
    return {handler->second(request), {}};
  } catch (const std::exception& e) {
    return {error_response(500, "internal error handling " + request.method + " " + request.path +
                                    ": " + e.what()),
            {}};
  } catch (...) {
    return {error_response(500, "internal error handling " + request.method + " " + request.path),
            {}};
  }
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view address) {
  const auto bad = [&](std::string_view why) {
    return fail("listen address '", std::string(address), "' ", why,
                " (write HOST:PORT, e.g. 127.0.0.1:9477 or [::1]:9477)");
  };
  std::string_view host;
  std::string_view port_text;
  if (address.starts_with('[')) {
    const size_t close = address.find(']');
    if (close == std::string_view::npos) return bad("has no ']' after the IPv6 address");
    host = address.substr(1, close - 1);
    const std::string_view rest = address.substr(close + 1);
    if (!rest.starts_with(':')) return bad("has no ':PORT' after ']'");
    port_text = rest.substr(1);
  } else {
    const size_t colon = address.rfind(':');
    if (colon == std::string_view::npos) return bad("has no ':PORT'");
    host = address.substr(0, colon);
    port_text = address.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return bad("has an IPv6 address without brackets");
    }
  }
  if (host.empty()) return bad("has no host");
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return bad("has a port that is not a number from 0 to 65535");
  }
  if (host != "localhost") {
    error_code parse_error;
    const auto ip = asio::ip::make_address(std::string(host), parse_error);
    if (parse_error) return bad("has a host that is not an IP address or localhost");
    if (address.starts_with('[') != ip.is_v6()) {
      return bad(ip.is_v6() ? "has an IPv6 address without brackets"
                            : "has an IPv4 address in brackets");
    }
  }
  return ListenAddress{std::string(host), static_cast<uint16_t>(port)};
}

struct HttpServer::Impl {
  std::shared_ptr<Core> core;
};

HttpServer::HttpServer(boost::asio::io_context& io)
    : impl_(std::make_unique<Impl>(Impl{std::make_shared<Core>(io)})) {}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::route(std::string method, std::string path, Handler handler) {
  impl_->core->routes[std::move(path)][std::move(method)] = std::move(handler);
}

Result<void> HttpServer::listen(const std::string& address) {
  Core& core = *impl_->core;
  if (core.acceptor.is_open()) {
    return fail("cannot listen on ", address, ": the server is already listening on port ",
                std::to_string(core.port));
  }
  auto parsed = parse_listen_address(address);
  if (!parsed) return wrap(parsed.error(), "cannot listen on ", address, ": ");
  const auto ip = parsed->host == "localhost" ? asio::ip::address(asio::ip::address_v4::loopback())
                                              : asio::ip::make_address(parsed->host);
  const tcp::endpoint endpoint(ip, parsed->port);

  error_code ec;
  const auto failed = [&]() {
    error_code ignored;
    core.acceptor.close(ignored);
    return fail("cannot listen on ", address, ": ", describe(ec));
  };
  if (core.acceptor.open(endpoint.protocol(), ec)) return failed();
  // Lets a restarted daemon bind while old connections sit in TIME_WAIT; it
  // does not let two listeners share the port on Linux.
  if (core.acceptor.set_option(asio::socket_base::reuse_address(true), ec)) return failed();
  if (core.acceptor.bind(endpoint, ec)) return failed();
  if (core.acceptor.listen(asio::socket_base::max_listen_connections, ec)) return failed();
  const tcp::endpoint bound = core.acceptor.local_endpoint(ec);
  if (ec) return failed();
  core.port = bound.port();
  core.stopped = false;
  core.accept_next();
  return {};
}

uint16_t HttpServer::port() const {
  return impl_->core->port;
}

void HttpServer::stop() {
  impl_->core->stop();
}

void HttpServer::set_timeout(std::chrono::steady_clock::duration timeout) {
  impl_->core->timeout = timeout;
}

void HttpServer::set_max_connections(size_t max_connections) {
  impl_->core->max_connections = std::max<size_t>(1, max_connections);
}

}  // namespace driftwatch::api
