#pragma once
// The HTTP server (Boost.Beast) on the daemon's one io_context. Routes map a
// method and a path (exact, or a prefix ending in '/') to a handler that runs
// on the loop. Request bodies over the limit (1 MiB) are refused with 413
// before they are read whole.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "common/result.hpp"

namespace driftwatch::api {

struct HttpRequest {
  std::string method;  // "GET", "POST"
  std::string path;    // without the query
  std::map<std::string, std::string> query;
  std::string body;
  /// Set when the body exceeded the limit and was not read: the handler is
  /// still called (so it can count the rejection) with an empty body, and
  /// whatever it answers, the client gets a 413.
  bool body_too_large = false;
  std::optional<uint64_t> declared_length;  // Content-Length, when the client sent one
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

using Handler = std::function<HttpResponse(const HttpRequest&)>;

/// A listen address split into its parts: "127.0.0.1:9477", "[::1]:9477",
/// "localhost:0". HOST must be an IP literal or "localhost" (no name
/// resolution at startup); PORT is 0..65535.
struct ListenAddress {
  std::string host;  // without brackets
  uint16_t port = 0;
};

/// Parses "HOST:PORT" or "[IPV6]:PORT"; the error says what is wrong.
Result<ListenAddress> parse_listen_address(std::string_view address);

class HttpServer {
 public:
  static constexpr size_t kMaxBodyBytes = 1 << 20;
  static constexpr size_t kMaxHeaderBytes = 16 * 1024;
  static constexpr std::chrono::seconds kDefaultTimeout{30};
  static constexpr size_t kDefaultMaxConnections = 256;

  explicit HttpServer(boost::asio::io_context& io);
  ~HttpServer();

  /// Registers a handler. A path ending in '/' matches every path below it.
  void route(std::string method, std::string path, Handler handler);
  /// Binds "HOST:PORT" (port 0: any free port) and starts accepting.
  Result<void> listen(const std::string& address);
  /// The bound port (after listen).
  uint16_t port() const;
  /// Stops accepting and closes open connections, so that io_context::run()
  /// returns once their handlers have unwound. Call it on the loop's thread
  /// (post it there from elsewhere) or while the loop is not running.
  void stop();

  /// How long one read (a request's header and body, or an idle keep-alive
  /// wait) or one write may take before the connection is closed.
  void set_timeout(std::chrono::steady_clock::duration timeout);
  /// Open connections at most; at the cap the server stops accepting (new
  /// clients wait in the listen backlog) until one closes.
  void set_max_connections(size_t max_connections);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace driftwatch::api
