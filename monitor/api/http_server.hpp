#pragma once
// The HTTP server (Boost.Beast) on the daemon's one io_context. Routes map a
// method and a path (exact, or a prefix ending in '/') to a handler that runs
// on the loop; an asynchronous handler may answer later (once a write is
// durable, say). Request bodies over the limit (1 MiB) are refused with 413
// before they are read whole.
//
// Slow clients cannot lock the API: a request's header and its body each have
// one deadline for the whole of it (not per read), and at the connection cap
// the server keeps accepting, closing the connection that has waited longest
// for an incomplete request to make room. A connection whose handler has the
// request, or whose answer is being written, is never closed for room.
// Memory is bounded by the cap: per connection at most a 16 KiB header, a
// 1 MiB body and a 256 KiB read buffer.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
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
  /// Further header fields, written as given ("Cache-Control", "…"). Names
  /// and values come from the code, never from a request.
  std::vector<std::pair<std::string, std::string>> headers{};
};

/// Answers on the loop, before returning.
using Handler = std::function<HttpResponse(const HttpRequest&)>;
/// Delivers the answer to a request. Call it exactly once, on the loop's
/// thread (post it there from a worker), now or later; a second call is
/// ignored. When the connection was closed meanwhile (client gone, server
/// stopped) the call does nothing. Dropping every copy unanswered answers 500.
using Respond = std::function<void(HttpResponse)>;
/// Answers through `respond`, now or later. `request` is valid only during
/// the call: copy what a later answer needs.
using AsyncHandler = std::function<void(const HttpRequest& request, Respond respond)>;

/// A request target split and decoded: "/v1/report?launch=L%2D1&x" →
/// path "/v1/report", query {launch: "L-1", x: ""}.
struct RequestTarget {
  std::string path;  // percent-decoded; starts with '/'
  /// Percent-decoded, '+' as a space; a repeated key keeps its last value.
  std::map<std::string, std::string> query;
};

/// Parses an origin-form request target (RFC 9112 §3.2.1: a path starting
/// with '/', then '?' and a query). A pure function of its input; never
/// throws. The error says what is wrong (no leading '/', bad percent-encoding).
Result<RequestTarget> parse_request_target(std::string_view target);

/// A listen address split into its parts: "127.0.0.1:9477", "[::1]:9477",
/// "localhost:0". HOST must be an IP literal or "localhost" (no name
/// resolution at startup); PORT is 0..65535.
struct ListenAddress {
  std::string host;  // without brackets
  uint16_t port = 0;
};

/// Parses "HOST:PORT" or "[IPV6]:PORT"; the error says what is wrong.
Result<ListenAddress> parse_listen_address(std::string_view address);

/// How long each stage of a connection may take before it is closed. Each
/// is one deadline for the whole stage, however the client splits its bytes.
struct HttpTimeouts {
  /// From accept (or, on a kept-alive connection, the first byte of the
  /// next request) until the request's header is complete.
  std::chrono::steady_clock::duration header = std::chrono::seconds(10);
  /// From the end of the header until the whole body has arrived.
  std::chrono::steady_clock::duration body = std::chrono::seconds(20);
  /// How long a kept-alive connection may wait for its next request.
  std::chrono::steady_clock::duration idle = std::chrono::seconds(30);
  /// Writing one answer.
  std::chrono::steady_clock::duration write = std::chrono::seconds(30);
};

/// Counters since the server was made (read on the loop's thread).
struct HttpServerStats {
  size_t open_connections = 0;
  /// Closed at the connection cap to make room for a new client.
  uint64_t evicted = 0;
  /// Closed because a request's header or body did not arrive in time.
  uint64_t timed_out = 0;
};

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
  /// Registers a handler that may answer later (see AsyncHandler). While it
  /// has not answered, its connection has no read deadline and is not
  /// closed for room at the cap; stop() still closes it.
  void route_async(std::string method, std::string path, AsyncHandler handler);
  /// Binds "HOST:PORT" (port 0: any free port) and starts accepting.
  Result<void> listen(const std::string& address);
  /// The bound port (after listen).
  uint16_t port() const;
  /// Stops accepting and closes open connections, so that io_context::run()
  /// returns once their handlers have unwound. Call it on the loop's thread
  /// (post it there from elsewhere) or while the loop is not running.
  void stop();

  /// Sets every stage's deadline (header, body, idle, write) to `timeout`.
  void set_timeout(std::chrono::steady_clock::duration timeout);
  void set_timeouts(const HttpTimeouts& timeouts);
  /// Open connections at most (at least 1). At the cap a new client is still
  /// accepted: the connection that has waited longest for an incomplete
  /// request (or idled longest between requests) is closed to make room. Only
  /// when every connection is being answered do new clients wait in the
  /// listen backlog.
  void set_max_connections(size_t max_connections);

  /// Call on the loop's thread.
  HttpServerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace driftwatch::api
