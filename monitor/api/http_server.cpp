#include "api/http_server.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <exception>
#include <limits>
#include <list>
#include <optional>
#include <system_error>
#include <unordered_map>
#include <utility>

#include <spdlog/spdlog.h>
#include <boost/asio/executor_work_guard.hpp>
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
using Clock = std::chrono::steady_clock;

// After an error answer (413, 400) the client may still be sending the body
// we refused. Closing with unread input makes the kernel send a reset, which
// can destroy our answer before the client reads it; so we half-close and
// discard what still arrives, for a bounded time, into a small fixed buffer
// (nginx's "lingering close"). Nothing of it is kept.
constexpr std::chrono::seconds kLingerTime{5};
constexpr size_t kDrainChunk = 16 * 1024;
// Unparsed input held between reads: a read chunk plus a pipelined request.
constexpr size_t kMaxReadBuffer = 256 * 1024;
// What an idle kept-alive connection reads at once when its next request
// begins (the rest is read by the parser).
constexpr size_t kIdleReadChunk = 4096;
// After a failed accept (EMFILE, ENFILE, ENOBUFS) retry after a pause
// instead of spinning on the error.
constexpr std::chrono::milliseconds kAcceptRetry{100};
// A flood of slow clients closes connections by the thousand: one log line
// per interval sums them up instead of one line each.
constexpr std::chrono::seconds kCloseLogInterval{10};

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

std::string_view view(beast::string_view text) {
  return std::string_view(text.data(), text.size());
}

class Connection;
class PendingAnswer;

// What connections and pending handlers share. It outlives the HttpServer
// object while handlers are still queued on the io_context, so a handler
// that runs after ~HttpServer touches live memory (and sees `stopped`).
struct Core : std::enable_shared_from_this<Core> {
  explicit Core(asio::io_context& context)
      : io(context), acceptor(context), retry_timer(context), log_timer(context) {}

  asio::io_context& io;
  tcp::acceptor acceptor;
  asio::steady_timer retry_timer;
  asio::steady_timer log_timer;
  // path → method → handler (synchronous handlers are wrapped)
  std::map<std::string, std::map<std::string, AsyncHandler>, std::less<>> routes;
  // Every connection whose socket is open: what the cap counts, what stop() closes.
  std::unordered_map<Connection*, std::weak_ptr<Connection>> open;
  // The connections that may be closed to make room, the one to go first in
  // front: each joins at the back when it starts waiting for a request (so
  // the front has waited longest), or at the front when it only lingers
  // after an answer.
  std::list<Connection*> evictable;
  HttpTimeouts timeouts;
  size_t max_connections = HttpServer::kDefaultMaxConnections;
  uint16_t port = 0;
  bool accept_pending = false;  // an accept, or a wait for a client to accept
  bool stopped = false;
  HttpServerStats totals;
  // Closes not logged yet; see kCloseLogInterval.
  uint64_t unlogged_evictions = 0;
  uint64_t unlogged_timeouts = 0;
  Clock::time_point last_log{};
  bool log_pending = false;

  void accept_next();
  void on_accept(const error_code& ec, tcp::socket socket);
  void retry_accept_later();
  bool evict_oldest();
  void connection_closed(Connection* connection);
  void note_closed(bool evicted);
  void flush_close_log();
  void stop();
  void dispatch(const HttpRequest& request, const std::shared_ptr<PendingAnswer>& pending) const;
};

// The one answer a request is owed. Every copy of the handler's Respond
// shares it: the first answer goes out, later ones are ignored, and if the
// last copy goes without answering the client gets a 500, not silence.
class PendingAnswer {
 public:
  // `too_large`: the body was refused (with its Content-Length, if any); the
  // answer is the handler's own 413 or ours.
  PendingAnswer(std::weak_ptr<Connection> connection, std::string what, unsigned version,
                bool keep_alive, std::optional<std::optional<uint64_t>> too_large)
      : connection_(std::move(connection)),
        what_(std::move(what)),
        version_(version),
        keep_alive_(keep_alive),
        too_large_(too_large) {}
  PendingAnswer(const PendingAnswer&) = delete;
  PendingAnswer& operator=(const PendingAnswer&) = delete;
  ~PendingAnswer() {
    if (!answered_) {
      answer(error_response(500, "internal error: the handler of " + what_ +
                                     " dropped the request without answering"),
             {});
    }
  }

  void answer(HttpResponse response, std::string allow);
  bool answered() const { return answered_; }

 private:
  // Weak: an answer may come after the connection and the io_context are
  // gone, and must not keep either alive (the connection keeps itself alive
  // while its handler has the request).
  std::weak_ptr<Connection> connection_;
  std::string what_;  // "POST /v1/launch-events", for messages
  unsigned version_;
  bool keep_alive_;
  std::optional<std::optional<uint64_t>> too_large_;
  bool answered_ = false;
};

// One client connection, through its stages:
//   reading   a request's header, then its body; one deadline per stage
//   handling  the handler has the request; no deadline, never evicted
//   writing   the answer; a write deadline, never evicted
//   idle      kept alive, waiting for the next request's first byte
//   lingering after an error answer, discarding what still arrives
// Reading, idle and lingering connections may be closed to make room at the
// cap (Core::evictable).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Core> core, tcp::socket socket)
      : core_(std::move(core)),
        socket_(std::move(socket)),
        deadline_(socket_.get_executor()),
        buffer_(kMaxReadBuffer) {}
  ~Connection() { close(); }

  // The first request's header is due `timeouts.header` after accept: a
  // client that never sends one holds its slot no longer than that.
  void start() {
    become_evictable(false);
    begin_request(Clock::now() + core_->timeouts.header);
  }

  // From the answer to a handled request.
  void deliver(HttpResponse response, std::string allow, unsigned version, bool keep_alive,
               bool linger) {
    if (phase_ != Phase::handling) return;  // closed meanwhile
    const auto self = std::move(held_by_handler_);
    owed_answer_.reset();
    if (core_->stopped) return close();
    write(std::move(response), std::move(allow), version, keep_alive, linger);
  }

  // Idempotent; every pending operation completes with an error.
  void close() {
    if (phase_ == Phase::closed) return;
    const auto self = std::move(held_by_handler_);  // may be the last reference
    owed_answer_.reset();
    phase_ = Phase::closed;
    leave_evictable();
    disarm();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    socket_.close(ignored);
    core_->connection_closed(this);
  }

 private:
  enum class Phase { reading, handling, writing, idle, lingering, closed };

  // ---- deadlines: one timer, re-armed per stage. A wait that was already
  // queued when the timer was re-armed sees a newer generation and does
  // nothing.
  void arm(Clock::time_point when) {
    ++deadline_generation_;
    deadline_.expires_at(when);
    deadline_.async_wait(
        [weak = weak_from_this(), generation = deadline_generation_](const error_code& ec) {
          const auto self = weak.lock();
          if (ec || !self || generation != self->deadline_generation_) return;
          self->on_deadline();
        });
  }

  void disarm() {
    ++deadline_generation_;
    deadline_.cancel();
  }

  void on_deadline() {
    if (phase_ == Phase::reading) core_->note_closed(false);
    close();
  }

  // ---- eviction order
  void become_evictable(bool first) {
    leave_evictable();
    auto& list = core_->evictable;
    evictable_at_ = list.insert(first ? list.begin() : list.end(), this);
    // At the cap with nothing to evict, accepting paused: it can go on now.
    core_->accept_next();
  }

  void leave_evictable() {
    if (!evictable_at_) return;
    core_->evictable.erase(*evictable_at_);
    evictable_at_.reset();
  }

  // ---- reading
  void begin_request(Clock::time_point header_due) {
    if (core_->stopped) return close();
    phase_ = Phase::reading;
    parser_.emplace();
    parser_->header_limit(HttpServer::kMaxHeaderBytes);
    // The real body limit is set once the header is in: with it set now, a
    // large Content-Length fails inside the parser and we could not say how
    // large. (Not boost::none: Beast 1.74 compares `len > none` as true.)
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    arm(header_due);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, size_t) { self->on_header(ec); });
  }

  // A kept-alive connection: the next request's header deadline starts with
  // its first byte; until then the idle deadline applies.
  void await_next_request() {
    become_evictable(false);
    if (buffer_.size() > 0) return begin_request(Clock::now() + core_->timeouts.header);
    phase_ = Phase::idle;
    arm(Clock::now() + core_->timeouts.idle);
    // A read, not a wait: the reactor watches sockets edge-triggered and
    // completes a wait only on an edge after it was registered, so a
    // request that arrived before would lie unread until the idle
    // deadline; a read is tried at once.
    socket_.async_read_some(buffer_.prepare(kIdleReadChunk),
                            [self = shared_from_this()](const error_code& ec, size_t n) {
                              if (ec || self->phase_ != Phase::idle) return self->close();
                              self->buffer_.commit(n);
                              self->begin_request(Clock::now() + self->core_->timeouts.header);
                            });
  }

  void on_header(const error_code& ec) {
    if (phase_ == Phase::closed) return;
    if (ec) {
      if (ec == http::error::header_limit) {
        return answer_and_close(error_response(
            431,
            "request header exceeds " + std::to_string(HttpServer::kMaxHeaderBytes) + " bytes"));
      }
      if (is_parse_error(ec)) {
        return answer_and_close(error_response(400, "bad request: " + ec.message()));
      }
      return close();  // end of stream, reset
    }
    if (core_->stopped) return close();
    const auto length = parser_->content_length();
    if (length && *length > HttpServer::kMaxBodyBytes) {
      return refuse_too_large(std::optional<uint64_t>(*length));  // the body is never read
    }
    parser_->body_limit(HttpServer::kMaxBodyBytes);
    if (parser_->is_done()) return handle();
    arm(Clock::now() + core_->timeouts.body);  // covers the 100 Continue too
    const auto expect = parser_->get()[http::field::expect];
    if (iequals(view(expect), "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(socket_, asio::buffer(kContinue.data(), kContinue.size()),
                        [self = shared_from_this()](const error_code& error, size_t) {
                          if (error || self->phase_ == Phase::closed) return self->close();
                          self->read_body();
                        });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, size_t) { self->on_body(ec); });
  }

  void on_body(const error_code& ec) {
    if (phase_ == Phase::closed) return;
    if (ec == http::error::body_limit) {
      return refuse_too_large(std::nullopt);  // a chunked body grew too far
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

  // ---- handling
  // The route still hears of a refused body (an ingest endpoint counts it);
  // the answer is a 413 whatever the handler says.
  void refuse_too_large(std::optional<uint64_t> length) {
    const auto& header = parser_->get();
    const std::string_view target = view(header.target());
    auto parsed = parse_request_target(target.substr(0, target.find('?')));
    if (!parsed) return answer_and_close(too_large_response(length));
    HttpRequest request;
    request.method = std::string(header.method_string());
    request.path = std::move(parsed->path);
    request.body_too_large = true;
    request.declared_length = length;
    run_handler(request, header.version(), false,
                std::optional<std::optional<uint64_t>>(std::in_place, length));
  }

  void handle() {
    if (core_->stopped) return close();
    http::request<http::string_body> message = parser_->release();
    parser_.reset();
    const unsigned version = message.version();
    const bool keep_alive = message.keep_alive();
    auto target = parse_request_target(view(message.target()));
    if (!target) return write(error_response(400, target.error().message), {}, version, false);
    HttpRequest request;
    request.method = std::string(message.method_string());
    request.path = std::move(target->path);
    request.query = std::move(target->query);
    request.body = std::move(message.body());
    run_handler(request, version, keep_alive, std::nullopt);
  }

  void run_handler(const HttpRequest& request, unsigned version, bool keep_alive,
                   std::optional<std::optional<uint64_t>> too_large) {
    phase_ = Phase::handling;
    leave_evictable();
    disarm();
    // No operation is pending while the handler has the request: the
    // connection keeps itself alive until it is answered or closed.
    held_by_handler_ = shared_from_this();
    // Nor does anything keep io_context::run() from returning (at the cap,
    // not even an accept): an answer still owed is work.
    owed_answer_.emplace(core_->io.get_executor());
    auto pending = std::make_shared<PendingAnswer>(
        weak_from_this(), request.method + " " + request.path, version, keep_alive, too_large);
    core_->dispatch(request, pending);
  }

  // ---- writing
  void write(HttpResponse response, std::string allow, unsigned version, bool keep_alive,
             bool linger = false) {
    phase_ = Phase::writing;
    leave_evictable();
    response_.emplace();
    response_->version(version);
    const int status = response.status >= 100 && response.status <= 599 ? response.status : 500;
    response_->result(static_cast<unsigned>(status));
    response_->set(http::field::server, "driftwatch");
    response_->set(http::field::content_type, response.content_type);
    if (!allow.empty()) response_->set(http::field::allow, allow);
    for (const auto& [name, value] : response.headers) response_->set(name, value);
    response_->keep_alive(keep_alive);
    response_->body() = std::move(response.body);
    response_->prepare_payload();
    arm(Clock::now() + core_->timeouts.write);
    http::async_write(
        socket_, *response_,
        [self = shared_from_this(), keep_alive, linger](const error_code& ec, size_t) {
          self->response_.reset();
          if (ec || self->phase_ == Phase::closed) return self->close();
          if (linger) return self->linger();
          if (!keep_alive || self->core_->stopped) return self->close();
          self->await_next_request();
        });
  }

  // An answer to a request whose rest is not read (too large, unparsable):
  // the connection cannot carry another request after it.
  void answer_and_close(HttpResponse response) {
    const unsigned version = parser_ ? parser_->get().version() : 11;
    write(std::move(response), {}, version == 10 ? 10 : 11, false, true);
  }

  void linger() {
    phase_ = Phase::lingering;
    become_evictable(true);  // its answer is out; the first to go for room
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    arm(Clock::now() + kLingerTime);
    drain();
  }

  void drain() {
    if (!drain_buffer_) drain_buffer_ = std::make_unique<std::array<char, kDrainChunk>>();
    socket_.async_read_some(asio::buffer(*drain_buffer_),
                            [self = shared_from_this()](const error_code& ec, size_t) {
                              if (ec || self->phase_ == Phase::closed || self->core_->stopped) {
                                return self->close();
                              }
                              self->drain();
                            });
  }

  std::shared_ptr<Core> core_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  uint64_t deadline_generation_ = 0;
  Phase phase_ = Phase::reading;
  std::optional<std::list<Connection*>::iterator> evictable_at_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<http::response<http::string_body>> response_;  // alive while being written
  std::unique_ptr<std::array<char, kDrainChunk>> drain_buffer_;
  // While handling.
  std::shared_ptr<Connection> held_by_handler_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> owed_answer_;
};

void PendingAnswer::answer(HttpResponse response, std::string allow) {
  if (answered_) return;  // exactly once
  answered_ = true;
  const auto connection = connection_.lock();
  if (!connection) return;  // closed meanwhile
  if (too_large_) {
    if (response.status != 413) response = too_large_response(*too_large_);
    connection->deliver(std::move(response), {}, version_ == 10 ? 10 : 11, false, true);
    return;
  }
  connection->deliver(std::move(response), std::move(allow), version_, keep_alive_, false);
}

void Core::accept_next() {
  if (stopped || accept_pending || !acceptor.is_open()) return;
  if (open.size() < max_connections) {
    accept_pending = true;
    acceptor.async_accept(io,
                          [self = shared_from_this()](const error_code& ec, tcp::socket socket) {
                            self->on_accept(ec, std::move(socket));
                          });
    return;
  }
  // At the cap. Nothing to evict: every connection is being answered, and
  // new clients wait in the backlog until one can go (become_evictable or
  // connection_closed calls here again).
  if (evictable.empty()) return;
  // Room is made only once a client is there to take it, and before it is
  // accepted, so the open connections never exceed the cap.
  accept_pending = true;
  acceptor.async_wait(tcp::acceptor::wait_read, [self = shared_from_this()](const error_code& ec) {
    self->accept_pending = false;
    if (self->stopped || ec == asio::error::operation_aborted) return;
    if (ec) return self->retry_accept_later();
    while (self->open.size() >= self->max_connections && self->evict_oldest()) {
    }
    self->accept_next();
  });
}

void Core::on_accept(const error_code& ec, tcp::socket socket) {
  accept_pending = false;
  if (stopped || ec == asio::error::operation_aborted) return;
  if (ec) return retry_accept_later();
  auto connection = std::make_shared<Connection>(shared_from_this(), std::move(socket));
  open.emplace(connection.get(), connection);
  connection->start();
  accept_next();
}

void Core::retry_accept_later() {
  retry_timer.expires_after(kAcceptRetry);
  retry_timer.async_wait([self = shared_from_this()](const error_code& error) {
    if (!error) self->accept_next();
  });
}

bool Core::evict_oldest() {
  if (evictable.empty()) return false;
  const auto oldest = open.find(evictable.front());
  const auto connection = oldest == open.end() ? nullptr : oldest->second.lock();
  if (!connection) {  // cannot happen: a connection leaves the list before it dies
    evictable.pop_front();
    return true;
  }
  note_closed(true);
  connection->close();
  return true;
}

void Core::connection_closed(Connection* connection) {
  open.erase(connection);
  accept_next();
}

void Core::note_closed(bool evicted) {
  if (evicted) {
    ++totals.evicted;
    ++unlogged_evictions;
  } else {
    ++totals.timed_out;
    ++unlogged_timeouts;
  }
  if (log_pending) return;
  if (Clock::now() - last_log >= kCloseLogInterval) return flush_close_log();
  log_pending = true;
  log_timer.expires_at(last_log + kCloseLogInterval);
  log_timer.async_wait([self = shared_from_this()](const error_code& ec) {
    self->log_pending = false;
    if (!ec) self->flush_close_log();
  });
}

void Core::flush_close_log() {
  const auto now = Clock::now();
  if (unlogged_evictions > 0 || unlogged_timeouts > 0) {
    const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
    std::string what;
    if (unlogged_evictions > 0) {
      what = fmt::format("{} connection(s) closed at the cap of {} to admit new clients",
                         unlogged_evictions, max_connections);
    }
    if (unlogged_timeouts > 0) {
      if (!what.empty()) what += "; ";
      what +=
          fmt::format("{} closed for a request not complete in time (header {:g} s, body {:g} s)",
                      unlogged_timeouts, seconds(timeouts.header), seconds(timeouts.body));
    }
    spdlog::warn("http: slow or idle clients: {} (summed up at most every {} s)", what,
                 kCloseLogInterval.count());
  }
  unlogged_evictions = 0;
  unlogged_timeouts = 0;
  last_log = now;
}

void Core::stop() {
  stopped = true;
  error_code ignored;
  acceptor.close(ignored);
  retry_timer.cancel();
  log_timer.cancel();
  flush_close_log();
  std::vector<std::shared_ptr<Connection>> connections;
  for (auto& [raw, weak] : open) {
    if (auto connection = weak.lock()) connections.push_back(std::move(connection));
  }
  for (auto& connection : connections) connection->close();
}

void Core::dispatch(const HttpRequest& request,
                    const std::shared_ptr<PendingAnswer>& pending) const {
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
    return pending->answer(error_response(404, "no such endpoint: " + request.path), {});
  }
  const auto handler = found->second.find(request.method);
  if (handler == found->second.end()) {
    std::string allow;
    for (const auto& [method, unused] : found->second) {
      if (!allow.empty()) allow += ", ";
      allow += method;
    }
    return pending->answer(error_response(405, "method " + request.method + " is not allowed on " +
                                                   request.path + " (allowed: " + allow + ")"),
                           allow);
  }
  // A handler's exception must not unwind through Asio into io_context::run().
  try {
    handler->second(request,
                    [pending](HttpResponse response) { pending->answer(std::move(response), {}); });
  } catch (const std::exception& e) {
    pending->answer(error_response(500, "internal error handling " + request.method + " " +
                                            request.path + ": " + e.what()),
                    {});
  } catch (...) {
    pending->answer(
        error_response(500, "internal error handling " + request.method + " " + request.path), {});
  }
}

}  // namespace

Result<RequestTarget> parse_request_target(std::string_view target) {
  const size_t question = target.find('?');
  const std::string_view raw_path = target.substr(0, question);
  if (raw_path.empty() || raw_path.front() != '/') {
    return fail("request target must be a path starting with '/'");
  }
  auto path = percent_decode(raw_path, false);
  auto query = question == std::string_view::npos
                   ? std::optional<std::map<std::string, std::string>>(std::in_place)
                   : parse_query(target.substr(question + 1));
  if (!path || !query) return fail("bad percent-encoding in the request target");
  return RequestTarget{std::move(*path), std::move(*query)};
}

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
  route_async(std::move(method), std::move(path),
              [handler = std::move(handler)](const HttpRequest& request, Respond respond) {
                respond(handler(request));
              });
}

void HttpServer::route_async(std::string method, std::string path, AsyncHandler handler) {
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
  impl_->core->timeouts = HttpTimeouts{timeout, timeout, timeout, timeout};
}

void HttpServer::set_timeouts(const HttpTimeouts& timeouts) {
  impl_->core->timeouts = timeouts;
}

void HttpServer::set_max_connections(size_t max_connections) {
  impl_->core->max_connections = std::max<size_t>(1, max_connections);
}

HttpServerStats HttpServer::stats() const {
  const Core& core = *impl_->core;
  HttpServerStats stats = core.totals;
  stats.open_connections = core.open.size();
  return stats;
}

}  // namespace driftwatch::api
