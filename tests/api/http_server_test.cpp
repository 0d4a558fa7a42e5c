#include "api/http_server.hpp"
#include "support/skip.hpp"
#include "support/slow_clients.hpp"
#include "support/tcp_table.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using Catch::Matchers::Contains;
using driftwatch::api::HttpRequest;
using driftwatch::api::HttpResponse;
using driftwatch::api::HttpServer;
using driftwatch::api::parse_listen_address;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

using driftwatch::testing::SlowClients;

// What each slow client starts to send.
constexpr const char* kSlowHealthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// A real server on 127.0.0.1:0 whose io_context runs on a background thread.
// Routes are registered before start(); the destructor stops the server on
// its loop and joins, and if the loop does not return it is forced to, so a
// failing test never hangs the run.
class TestServer {
 public:
  TestServer() {
    server.route("GET", "/healthz", [this](const HttpRequest&) {
      ++calls;
      return HttpResponse{200, "text/plain", "ok\n"};
    });
    server.route("POST", "/echo", [this](const HttpRequest& request) {
      ++calls;
      if (request.body_too_large && request.body.empty()) ++refused_calls;
      return HttpResponse{
          200, "application/json",
          json{{"size", request.body.size()}, {"body_prefix", request.body.substr(0, 32)}}.dump()};
    });
  }
  ~TestServer() { stop_and_join(); }

  void start(std::string address = "127.0.0.1:0") {
    const auto listening = server.listen(address);
    INFO((listening ? std::string() : listening.error().message));
    REQUIRE(listening.has_value());
    REQUIRE(server.port() != 0);
    start_loop_only();
  }

  // Runs the loop of a server that is already listening.
  void start_loop_only() {
    loop_ = std::thread([this] {
      io.run();
      finished_.set_value();
    });
  }

  // True when io_context::run() returned by itself within `limit`.
  bool stop_and_join(std::chrono::milliseconds limit = 5000ms) {
    if (!loop_.joinable()) return true;
    asio::post(io, [this] { server.stop(); });
    const bool returned = finished_future_.wait_for(limit) == std::future_status::ready;
    if (!returned) io.stop();
    loop_.join();
    return returned;
  }

  asio::io_context io;
  HttpServer server{io};
  std::atomic<int> calls{0};
  // Calls that told the handler of a refused body (it still answers 413).
  std::atomic<int> refused_calls{0};

 private:
  std::thread loop_;
  std::promise<void> finished_;
  std::future<void> finished_future_ = finished_.get_future();
};

// A client on its own io_context; every read has a deadline, so a server
// that never answers fails the test instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port, asio::ip::address address = asio::ip::address_v4::loopback()) {
    stream_.expires_after(5s);
    stream_.connect(tcp::endpoint(address, port));
  }

  void send(std::string_view raw) { asio::write(stream_.socket(), asio::buffer(raw)); }

  // Starts reading one response; finish with wait_response().
  void start_read() {
    response_.emplace();
    done_.reset();
    stream_.expires_after(10s);
    http::async_read(stream_, buffer_, *response_,
                     [this](const error_code& ec, size_t) { done_ = ec; });
  }
  // Runs the client loop for at most `limit`; nullopt if no answer by then.
  std::optional<error_code> wait(std::chrono::milliseconds limit) {
    io_.restart();
    io_.run_for(limit);
    return done_;
  }

  http::response<http::string_body> read_response(std::chrono::milliseconds limit = 5000ms) {
    start_read();
    const auto result = wait(limit);
    REQUIRE(result.has_value());
    INFO(result->message());
    REQUIRE_FALSE(*result);
    return std::move(*response_);
  }

  http::response<http::string_body> request(http::verb method, std::string target,
                                            std::string body = {}, bool keep_alive = true) {
    http::request<http::string_body> request{method, target, 11};
    request.set(http::field::host, "127.0.0.1");
    request.keep_alive(keep_alive);
    if (method == http::verb::post) {
      request.set(http::field::content_type, "application/json");
      request.body() = std::move(body);
    }
    request.prepare_payload();
    http::write(stream_.socket(), request);
    return read_response();
  }

  // What the next read says: EOF when the server closed its side.
  error_code read_until_closed(std::chrono::milliseconds limit = 5000ms) {
    std::optional<error_code> result;
    std::array<char, 4096> scratch;
    std::function<void()> next = [&] {
      stream_.async_read_some(asio::buffer(scratch), [&](const error_code& ec, size_t) {
        if (ec) {
          result = ec;
        } else {
          next();  // the server may still send what it had buffered
        }
      });
    };
    stream_.expires_after(limit);
    next();
    io_.restart();
    io_.run_for(limit + 1s);
    REQUIRE(result.has_value());
    return *result;
  }

  beast::tcp_stream& stream() { return stream_; }
  // The response read by start_read() + wait().
  const http::response<http::string_body>& response() const { return *response_; }

 private:
  asio::io_context io_;
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
  std::optional<http::response<http::string_body>> response_;
  std::optional<error_code> done_;
};

json body_of(const http::response<http::string_body>& response) {
  return json::parse(response.body());
}

// Runs `f` on the server's loop and waits for it (Catch's REQUIRE must not
// run on the loop thread, so `f` only collects).
template <class F>
auto on_loop(TestServer& server, F f) {
  std::promise<decltype(f())> done;
  auto result = done.get_future();
  asio::post(server.io, [&] { done.set_value(f()); });
  REQUIRE(result.wait_for(5s) == std::future_status::ready);
  return result.get();
}

driftwatch::api::HttpServerStats stats_of(TestServer& server) {
  return on_loop(server, [&] { return server.server.stats(); });
}

// Polls the server's stats until `ready` holds (false after `limit`).
template <class Predicate>
bool wait_for_stats(TestServer& server, Predicate ready, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!ready(stats_of(server))) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Connections the server holds open on `port`, as the kernel sees them:
// /proc/net/tcp entries with that local port, other than the listener, that
// belong to a socket file (inode not 0). Connections still in the accept
// queue and closed ones (FIN_WAIT, TIME_WAIT) have no inode. Counted by
// inode: the table is not read atomically, and while other sockets come and
// go an entry can be listed twice.
int server_side_connections(uint16_t port) {
  std::set<std::string> inodes;
  for (const auto& entry : driftwatch::testing::tcp_entries(port))
    if (entry.state != "0A" && entry.inode != "0") inodes.insert(entry.inode);  // 0A: LISTEN
  return static_cast<int>(inodes.size());
}

// Samples server_side_connections() every few milliseconds and keeps the
// highest count seen. It samples on the server's loop, where the server
// opens and closes its sockets, so each sample sees them all at one instant
// (/proc/net/tcp is not read atomically: a socket closed and another
// accepted during one read would both be counted).
class ConnectionSampler {
 public:
  explicit ConnectionSampler(TestServer& server) : server_(server), timer_(server.io) {
    asio::post(server.io, [this] { sample(); });
  }
  ~ConnectionSampler() {
    on_loop(server_, [this] {
      stopped_ = true;
      timer_.cancel();
      return 0;
    });
  }
  int highest() const { return highest_; }
  int samples() const { return samples_; }

 private:
  void sample() {
    if (stopped_) return;
    highest_ = std::max(highest_.load(), server_side_connections(server_.server.port()));
    ++samples_;
    timer_.expires_after(3ms);
    timer_.async_wait([this](const error_code& ec) {
      if (!ec) sample();
    });
  }

  TestServer& server_;
  asio::steady_timer timer_;
  bool stopped_ = false;  // on the loop
  std::atomic<int> highest_{0};
  std::atomic<int> samples_{0};
};

// Whether the server has closed the client's connection: a peek that sees
// end of stream (or a reset), without waiting.
bool closed_by_server(Client& client) {
  char byte = 0;
  const ssize_t n =
      ::recv(client.stream().socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

// Handlers that keep their Respond for the test to answer later (on the loop).
struct HeldRequests {
  std::mutex mutex;
  std::vector<std::pair<std::string, driftwatch::api::Respond>> held;  // body, respond
  std::atomic<int> count{0};

  driftwatch::api::AsyncHandler handler() {
    return [this](const HttpRequest& request, driftwatch::api::Respond respond) {
      std::lock_guard lock(mutex);
      held.emplace_back(request.body, std::move(respond));
      ++count;
    };
  }
  bool wait_for(int n, std::chrono::milliseconds limit = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (count < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }
  // Answers request `i` on the server's loop.
  void answer(TestServer& server, size_t i, HttpResponse response) {
    on_loop(server, [&] {
      std::lock_guard lock(mutex);
      held.at(i).second(response);
      return 0;
    });
  }
};

// Time from connect to the last byte of the answer.
template <class F>
std::chrono::milliseconds time_of(F f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

// Sends spdlog's default logger into a string for the guard's lifetime.
class CapturedLog {
 public:
  CapturedLog()
      : previous_(spdlog::default_logger()),
        logger_(std::make_shared<spdlog::logger>(
            "captured", std::make_shared<spdlog::sinks::ostream_sink_mt>(text_))) {
    spdlog::set_default_logger(logger_);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  std::string text() {
    logger_->flush();
    return text_.str();
  }

 private:
  std::ostringstream text_;
  std::shared_ptr<spdlog::logger> previous_;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace

TEST_CASE("http server: routes GET and POST to their handlers", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());

  const auto health = client.request(http::verb::get, "/healthz");
  CHECK(health.result_int() == 200);
  CHECK(health[http::field::content_type] == "text/plain");
  CHECK(health.body() == "ok\n");

  const auto echo = client.request(http::verb::post, "/echo", R"({"hello":"world"})");
  CHECK(echo.result_int() == 200);
  CHECK(echo[http::field::content_type] == "application/json");
  CHECK(body_of(echo) == json{{"size", 17}, {"body_prefix", R"({"hello":"world"})"}});
  CHECK(server.calls == 2);
}

TEST_CASE("http server: an unknown path is 404 naming it, a wrong method 405 with Allow", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());

  const auto missing = client.request(http::verb::get, "/nope");
  CHECK(missing.result_int() == 404);
  CHECK(body_of(missing) == json{{"error", "no such endpoint: /nope"}});

  const auto wrong = client.request(http::verb::post, "/healthz", "{}");
  CHECK(wrong.result_int() == 405);
  CHECK(wrong[http::field::allow] == "GET");
  CHECK_THAT(body_of(wrong)["error"].get<std::string>(), Contains("POST") && Contains("/healthz"));
  CHECK(server.calls == 0);
}

TEST_CASE("http server: an exact path wins, else the longest prefix ending in '/'", "[api]") {
  TestServer server;
  const auto named = [](std::string name) {
    return [name](const HttpRequest& request) {
      return HttpResponse{200, "application/json",
                          json{{"route", name}, {"path", request.path}}.dump()};
    };
  };
  server.server.route("GET", "/v1/sandboxes", named("list"));
  server.server.route("GET", "/v1/sandboxes/", named("one"));
  server.server.route("GET", "/v1/", named("v1"));
  server.start();
  Client client(server.server.port());

  CHECK(body_of(client.request(http::verb::get, "/v1/sandboxes")) ==
        json{{"route", "list"}, {"path", "/v1/sandboxes"}});
  CHECK(body_of(client.request(http::verb::get, "/v1/sandboxes/agent-7")) ==
        json{{"route", "one"}, {"path", "/v1/sandboxes/agent-7"}});
  CHECK(body_of(client.request(http::verb::get, "/v1/sandboxes/a/b")) ==
        json{{"route", "one"}, {"path", "/v1/sandboxes/a/b"}});
  CHECK(body_of(client.request(http::verb::get, "/v1/evidence/checkpoint")) ==
        json{{"route", "v1"}, {"path", "/v1/evidence/checkpoint"}});
  // A route without a trailing '/' is not a prefix.
  CHECK(client.request(http::verb::get, "/v1x").result_int() == 404);
  CHECK(client.request(http::verb::get, "/healthz/more").result_int() == 404);
}

TEST_CASE("http server: parses and percent-decodes the query string", "[api]") {
  TestServer server;
  server.server.route("GET", "/v1/report", [](const HttpRequest& request) {
    json query = json::object();
    for (const auto& [key, value] : request.query) query[key] = value;
    return HttpResponse{200, "application/json",
                        json{{"path", request.path}, {"query", query}}.dump()};
  });
  server.start();
  Client client(server.server.port());

  const auto report =
      client.request(http::verb::get,
                     "/v1/report?launch=L%2D2026%2D0001&since=2026-11-24T22%3A00%3A00Z&"
                     "name=a+b%20c&flag&&x=1&x=2");
  REQUIRE(report.result_int() == 200);
  CHECK(body_of(report) == json{{"path", "/v1/report"},
                                {"query",
                                 {{"launch", "L-2026-0001"},
                                  {"since", "2026-11-24T22:00:00Z"},
                                  {"name", "a b c"},
                                  {"flag", ""},
                                  {"x", "2"}}}});

  const auto bad = client.request(http::verb::get, "/v1/report?launch=%zz");
  CHECK(bad.result_int() == 400);
  CHECK_THAT(body_of(bad)["error"].get<std::string>(), Contains("percent-encoding"));
}

TEST_CASE("http server: a 2 MiB body is refused with 413 before any of it is sent", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());

  // Only the header goes out; the server must answer without waiting for
  // (or buffering) the 2 MiB it announces.
  client.send(
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Length: 2097152\r\n\r\n");
  const auto refused = client.read_response(5000ms);
  CHECK(refused.result_int() == 413);
  CHECK(body_of(refused) ==
        json{{"result", "too_large"},
             {"reason", "request body of 2097152 bytes exceeds the 1 MiB limit"}});
  CHECK_FALSE(refused.keep_alive());
  // The route hears of it (an ingest endpoint counts it), with no body, and
  // its 200 does not turn the 413 into a success.
  CHECK(server.calls == 1);
  CHECK(server.refused_calls == 1);
  // The server half-closes after the answer; the connection carries no more.
  CHECK(client.read_until_closed() == asio::error::eof);
}

TEST_CASE("http server: a chunked body that grows past 1 MiB is refused with 413", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());

  client.send(
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n");
  client.start_read();
  const std::string chunk = "10000\r\n" + std::string(0x10000, 'x') + "\r\n";
  std::optional<error_code> answered;
  for (int i = 0; i < 32 && !answered; ++i) {  // up to 2 MiB, until the server answers
    error_code ignored;                        // the server may stop reading once it has answered
    asio::write(client.stream().socket(), asio::buffer(chunk), ignored);
    answered = client.wait(20ms);
  }
  if (!answered) answered = client.wait(5000ms);
  REQUIRE(answered.has_value());
  REQUIRE_FALSE(*answered);
  CHECK(client.response().result_int() == 413);
  CHECK(body_of(client.response()) ==
        json{{"result", "too_large"},
             {"reason", "request body of more than 1048576 bytes exceeds the 1 MiB limit"}});
  CHECK(server.calls == 1);
  CHECK(server.refused_calls == 1);
}

TEST_CASE("http server: a body of exactly 1 MiB is accepted", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());
  const auto echo =
      client.request(http::verb::post, "/echo", std::string(HttpServer::kMaxBodyBytes, ' '));
  CHECK(echo.result_int() == 200);
  CHECK(body_of(echo)["size"] == HttpServer::kMaxBodyBytes);
}

TEST_CASE("http server: answers 100 Continue before reading an expected body", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());
  client.send(
      "POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
      "Content-Length: 2\r\n\r\n");
  const auto interim = client.read_response();
  CHECK(interim.result_int() == 100);
  client.send("{}");
  const auto final_response = client.read_response();
  CHECK(final_response.result_int() == 200);
  CHECK(body_of(final_response)["size"] == 2);
}

TEST_CASE("http server: keeps a connection alive across requests", "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());
  const auto first = client.request(http::verb::get, "/healthz");
  CHECK(first.keep_alive());
  const auto second = client.request(http::verb::post, "/echo", "[1]");
  CHECK(second.result_int() == 200);
  const auto third = client.request(http::verb::get, "/healthz", {}, false);
  CHECK(third.result_int() == 200);
  CHECK_FALSE(third.keep_alive());
  CHECK(client.read_until_closed() == asio::error::eof);
  CHECK(server.calls == 3);
}

TEST_CASE("http server: a throwing handler is answered with 500 and serving goes on", "[api]") {
  TestServer server;
  server.server.route("GET", "/boom", [](const HttpRequest&) -> HttpResponse {
    throw std::runtime_error("kaboom");
  });
  server.start();
  Client client(server.server.port());
  const auto boom = client.request(http::verb::get, "/boom");
  CHECK(boom.result_int() == 500);
  CHECK_THAT(body_of(boom)["error"].get<std::string>(), Contains("kaboom"));
  CHECK(client.request(http::verb::get, "/healthz").result_int() == 200);
}

TEST_CASE("http server: a malformed request is answered with 400 and the connection closed",
          "[api]") {
  TestServer server;
  server.start();
  Client client(server.server.port());
  client.send("GET /healthz HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n");
  const auto bad = client.read_response();
  CHECK(bad.result_int() == 400);
  CHECK(client.read_until_closed() == asio::error::eof);
  CHECK(server.calls == 0);
}

TEST_CASE("http server: stop() closes open connections and run() returns", "[api]") {
  TestServer server;
  server.start();
  Client idle(server.server.port());
  Client used(server.server.port());
  CHECK(used.request(http::verb::get, "/healthz").result_int() == 200);

  CHECK(server.stop_and_join());
  CHECK(idle.read_until_closed());
  CHECK(used.read_until_closed());
  error_code refused;
  tcp::socket late(server.io);
  late.connect(tcp::endpoint(asio::ip::address_v4::loopback(), server.server.port()), refused);
  CHECK(refused == asio::error::connection_refused);
}

TEST_CASE("http server: an idle connection is closed after the timeout", "[api]") {
  TestServer server;
  server.server.set_timeout(200ms);
  server.start();
  Client client(server.server.port());
  const auto started = std::chrono::steady_clock::now();
  CHECK(client.read_until_closed(5000ms) == asio::error::eof);
  CHECK(std::chrono::steady_clock::now() - started < 3s);
}

TEST_CASE("http server: at the cap a new client gets in by closing the longest-waiting connection",
          "[api]") {
  TestServer server;
  server.server.set_max_connections(3);
  server.start();
  const uint16_t port = server.server.port();
  // Three clients each begin a request and stall, oldest first.
  std::vector<std::unique_ptr<Client>> stalled;
  for (size_t i = 0; i < 3; ++i) {
    stalled.push_back(std::make_unique<Client>(port));
    stalled.back()->send("GET /healthz HTTP/1.1\r\n");
    REQUIRE(wait_for_stats(server, [&](const auto& s) { return s.open_connections == i + 1; }));
  }

  Client late(port);
  CHECK(late.request(http::verb::get, "/healthz").result_int() == 200);
  // The oldest was closed for it; the other two finish their requests.
  CHECK(stalled[0]->read_until_closed(2000ms));
  for (size_t i = 1; i < 3; ++i) {
    INFO("stalled client " << i);
    stalled[i]->send("Host: 127.0.0.1\r\n\r\n");
    CHECK(stalled[i]->read_response().result_int() == 200);
  }
  const auto stats = stats_of(server);
  CHECK(stats.evicted == 1);
  CHECK(stats.open_connections <= 3);
}

TEST_CASE("http server: 64 slow clients against a cap of 16 lock out neither a GET nor a POST",
          "[api]") {
  TestServer server;
  HeldRequests later;
  server.server.route_async("POST", "/later", later.handler());
  server.server.set_max_connections(16);
  server.start();
  const uint16_t port = server.server.port();

  ConnectionSampler sampler(server);
  SlowClients flood(port, 64, 300ms, 100ms, kSlowHealthz);
  REQUIRE(wait_for_stats(server, [](const auto& s) { return s.open_connections == 16; }));
  std::this_thread::sleep_for(300ms);  // the other 48 queue up and start evicting

  for (int round = 0; round < 5; ++round) {
    INFO("round " << round);
    const auto get = time_of([&] {
      Client client(port);
      CHECK(client.request(http::verb::get, "/healthz").result_int() == 200);
    });
    CHECK(get < 1000ms);
    const auto post = time_of([&] {
      Client client(port);
      const auto echo = client.request(http::verb::post, "/echo", R"({"round":1})");
      CHECK(echo.result_int() == 200);
      CHECK(body_of(echo)["size"] == 11);
    });
    CHECK(post < 1000ms);
    // An asynchronous POST, answered from the loop once the test sees it.
    const auto async_post = time_of([&] {
      Client client(port);
      client.send("POST /later HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}");
      REQUIRE(later.wait_for(round + 1, 1000ms));
      later.answer(server, round,
                   HttpResponse{202, "application/json", R"({"result":"accepted"})"});
      CHECK(client.read_response(1000ms).result_int() == 202);
    });
    CHECK(async_post < 1000ms);
    std::this_thread::sleep_for(100ms);
  }
  const auto stats = stats_of(server);
  INFO("evicted " << stats.evicted << ", flood connects " << flood.connects() << ", "
                  << sampler.samples() << " samples");
  CHECK(stats.evicted > 48);  // the flood did press against the cap
  CHECK(sampler.highest() >= 16);
  CHECK(sampler.highest() <= 16);
  CHECK(stats.open_connections <= 16);
}

TEST_CASE("http server: at the cap with every connection being answered, a new client waits",
          "[api]") {
  TestServer server;
  HeldRequests held;
  server.server.route_async("POST", "/hold", held.handler());
  server.server.set_max_connections(2);
  server.start();
  const uint16_t port = server.server.port();
  Client first(port);
  Client second(port);
  first.send("POST /hold HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n1");
  second.send("POST /hold HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\n2");
  REQUIRE(held.wait_for(2));

  Client third(port);  // connects: the kernel's backlog holds it
  third.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  third.start_read();
  CHECK_FALSE(third.wait(300ms).has_value());  // neither held request was evicted for it

  held.answer(server, 0, HttpResponse{202, "text/plain", "held " + held.held[0].first});
  const auto answer = first.read_response();
  CHECK(answer.result_int() == 202);
  CHECK(answer.body() == "held " + held.held[0].first);
  // Answered, the first connection waits for another request: it makes room.
  const auto answered = third.wait(5000ms);
  REQUIRE(answered.has_value());
  CHECK_FALSE(*answered);
  CHECK(third.response().result_int() == 200);
  held.answer(server, 1, HttpResponse{202, "text/plain", "second"});
  CHECK(second.read_response().body() == "second");
}

TEST_CASE(
    "http server: an async handler answers later, its connection neither timed out nor evicted",
    "[api]") {
  TestServer server;
  HeldRequests later;
  server.server.route_async("POST", "/later", later.handler());
  server.server.set_timeouts({.header = 200ms, .body = 200ms, .idle = 2s, .write = 2s});
  server.server.set_max_connections(3);
  server.start();
  const uint16_t port = server.server.port();

  Client client(port);
  client.send("POST /later HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello");
  REQUIRE(later.wait_for(1));
  CHECK(later.held[0].first == "hello");
  {
    // Well past the header and body deadlines, which do apply to another
    // client meanwhile.
    Client stalled(port);
    stalled.send("GET /healthz HTTP/1.1\r\n");
    CHECK(stalled.read_until_closed(2000ms));
    std::this_thread::sleep_for(300ms);
  }
  CHECK(stats_of(server).timed_out == 1);
  {
    // Slow clients pressing on the cap of 3 evict each other, not it.
    SlowClients flood(port, 6, 50ms, 20ms, kSlowHealthz);
    std::this_thread::sleep_for(500ms);
  }
  CHECK(stats_of(server).evicted > 0);

  later.answer(server, 0, HttpResponse{202, "application/json", R"({"result":"accepted"})"});
  const auto answer = client.read_response();
  CHECK(answer.result_int() == 202);
  CHECK(body_of(answer) == json{{"result", "accepted"}});
  CHECK(answer.keep_alive());
  // The connection carries the next request as usual.
  CHECK(client.request(http::verb::get, "/healthz").result_int() == 200);
}

TEST_CASE("http server: answering after the client left, twice, or after stop() is harmless",
          "[api]") {
  auto server = std::make_unique<TestServer>();
  HeldRequests later;
  server->server.route_async("POST", "/later", later.handler());
  server->start();
  const uint16_t port = server->server.port();
  {
    Client gone(port);
    gone.send("POST /later HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\nx");
    REQUIRE(later.wait_for(1));
  }  // the client closes its socket before the answer
  later.answer(*server, 0, HttpResponse{202, "text/plain", "too late"});
  later.answer(*server, 0, HttpResponse{500, "text/plain", "a second answer is ignored"});
  // The server noticed and closed its side: nothing is left open.
  CHECK(wait_for_stats(*server, [](const auto& s) { return s.open_connections == 0; }));
  CHECK(server_side_connections(port) == 0);
  Client next(port);
  CHECK(next.request(http::verb::get, "/healthz").result_int() == 200);

  Client waiting(port);
  waiting.send("POST /later HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\n\r\ny");
  REQUIRE(later.wait_for(2));
  CHECK(server->stop_and_join());  // closes the held connection; run() returns
  CHECK(waiting.read_until_closed());
  // The loop is not running now; the Respond outlives the server too.
  auto respond = later.held[1].second;
  server.reset();
  respond(HttpResponse{202, "text/plain", "after stop"});
  later.held.clear();
}

TEST_CASE("http server: a request whose Respond is dropped unanswered gets a 500", "[api]") {
  TestServer server;
  server.server.route_async("GET", "/forgetful",
                            [](const HttpRequest&, driftwatch::api::Respond) {});
  server.server.route_async("GET", "/throws", [](const HttpRequest&, driftwatch::api::Respond) {
    throw std::runtime_error("kaboom");
  });
  server.start();
  Client client(server.server.port());
  const auto dropped = client.request(http::verb::get, "/forgetful");
  CHECK(dropped.result_int() == 500);
  CHECK_THAT(body_of(dropped)["error"].get<std::string>(),
             Contains("GET /forgetful") && Contains("without answering"));
  const auto thrown = client.request(http::verb::get, "/throws");
  CHECK(thrown.result_int() == 500);
  CHECK_THAT(body_of(thrown)["error"].get<std::string>(), Contains("kaboom"));
}

TEST_CASE("http server: a header still incomplete at its deadline is closed, however it trickles",
          "[api]") {
  TestServer server;
  server.server.set_timeouts({.header = 500ms, .body = 5s, .idle = 5s, .write = 5s});
  server.start();
  const auto started = std::chrono::steady_clock::now();
  Client client(server.server.port());
  // A byte every 50 ms: no single read ever waits long.
  const std::string header = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
  error_code write_error;
  std::optional<std::chrono::milliseconds> closed_after;
  for (size_t i = 0; i < 200 && !closed_after; ++i) {
    const char byte = i < header.size() ? header[i] : 'a';
    asio::write(client.stream().socket(), asio::buffer(&byte, 1), write_error);
    if (write_error || closed_by_server(client)) {
      closed_after = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
    }
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(closed_after.has_value());
  CHECK(*closed_after >= 450ms);
  CHECK(*closed_after < 1500ms);
  CHECK(stats_of(server).timed_out == 1);
}

TEST_CASE("http server: a body still incomplete at its deadline is closed", "[api]") {
  TestServer server;
  server.server.set_timeouts({.header = 5s, .body = 500ms, .idle = 5s, .write = 5s});
  server.start();
  Client client(server.server.port());
  client.send("POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n");
  const auto started = std::chrono::steady_clock::now();
  error_code write_error;
  std::optional<std::chrono::milliseconds> closed_after;
  for (int i = 0; i < 100 && !closed_after; ++i) {
    asio::write(client.stream().socket(), asio::buffer("x", 1), write_error);
    if (write_error || closed_by_server(client)) {
      closed_after = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - started);
    }
    std::this_thread::sleep_for(50ms);
  }
  REQUIRE(closed_after.has_value());
  CHECK(*closed_after >= 450ms);
  CHECK(*closed_after < 1500ms);
  CHECK(server.calls == 0);
  CHECK(stats_of(server).timed_out == 1);
}

TEST_CASE("http server: a flood of evictions is logged as a sum, not a line each", "[api]") {
  CapturedLog log;
  auto server = std::make_unique<TestServer>();
  server->server.set_max_connections(1);
  server->start();
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_unique<Client>(server->server.port()));
    clients.back()->send("GET /healthz HTTP/1.1\r\n");
  }
  REQUIRE(wait_for_stats(*server, [](const auto& s) { return s.evicted == 19; }));
  CHECK(server->stop_and_join());  // the last sum is logged at stop
  server.reset();

  const std::string text = log.text();
  INFO(text);
  const std::regex line(R"((\d+) connection\(s\) closed at the cap of 1 )");
  int lines = 0;
  int evicted = 0;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator();
       ++it) {
    ++lines;
    evicted += std::stoi((*it)[1]);
  }
  CHECK(lines >= 1);
  CHECK(lines <= 2);  // the first at once, the rest summed up
  CHECK(evicted == 19);
}

TEST_CASE("http server: request targets split into a decoded path and query", "[api]") {
  using driftwatch::api::parse_request_target;
  const auto report = parse_request_target("/v1/report?launch=L%2D1&name=a+b%20c&flag&&x=1&x=2");
  REQUIRE(report.has_value());
  CHECK(report->path == "/v1/report");
  CHECK(report->query == std::map<std::string, std::string>{
                             {"launch", "L-1"}, {"name", "a b c"}, {"flag", ""}, {"x", "2"}});

  const auto path_only = parse_request_target("/v1/sandboxes/a%20b+c%2Fd");
  REQUIRE(path_only.has_value());
  CHECK(path_only->path == "/v1/sandboxes/a b+c/d");  // '+' is a space only in a query
  CHECK(path_only->query.empty());
  const auto empty_query = parse_request_target("/healthz?");
  REQUIRE(empty_query.has_value());
  CHECK(empty_query->path == "/healthz");
  CHECK(empty_query->query.empty());

  for (const char* bad : {"", "*", "healthz", "http://127.0.0.1/healthz", "?a=1"}) {
    INFO(bad);
    const auto parsed = parse_request_target(bad);
    REQUIRE_FALSE(parsed.has_value());
    CHECK_THAT(parsed.error().message, Contains("starting with '/'"));
  }
  for (const char* bad : {"/a%", "/a%4", "/a%zz", "/a?b=%", "/a?%G1=1", "/a?b=1%2"}) {
    INFO(bad);
    const auto parsed = parse_request_target(bad);
    REQUIRE_FALSE(parsed.has_value());
    CHECK_THAT(parsed.error().message, Contains("percent-encoding"));
  }
  // Every byte value decodes, NUL included; the result is the bytes.
  const auto bytes = parse_request_target("/%00%ff?k=%00");
  REQUIRE(bytes.has_value());
  CHECK(bytes->path == std::string("/\0\xff", 3));
  CHECK(bytes->query.at("k") == std::string(1, '\0'));
}

TEST_CASE("http server: listen names the address it cannot use", "[api]") {
  TestServer first;
  first.start();
  asio::io_context io;
  HttpServer second(io);
  const std::string taken = "127.0.0.1:" + std::to_string(first.server.port());
  const auto in_use = second.listen(taken);
  REQUIRE_FALSE(in_use.has_value());
  CHECK(in_use.error().message == "cannot listen on " + taken + ": address already in use");

  const auto garbage = second.listen("localhost");
  REQUIRE_FALSE(garbage.has_value());
  CHECK_THAT(garbage.error().message, Contains("cannot listen on localhost") && Contains("PORT"));
}

TEST_CASE("http server: listens on an IPv6 loopback address", "[api]") {
  TestServer server;
  const auto listening = server.server.listen("[::1]:0");
  if (!listening) {
    DW_SKIP("no IPv6 loopback here: " << listening.error().message);
  }
  server.start_loop_only();
  Client client(server.server.port(), asio::ip::address_v6::loopback());
  CHECK(client.request(http::verb::get, "/healthz").result_int() == 200);
}

TEST_CASE("http server: listen addresses are HOST:PORT with an IP or localhost", "[api]") {
  const auto v4 = parse_listen_address("127.0.0.1:9477");
  REQUIRE(v4.has_value());
  CHECK(v4->host == "127.0.0.1");
  CHECK(v4->port == 9477);
  const auto v6 = parse_listen_address("[::1]:0");
  REQUIRE(v6.has_value());
  CHECK(v6->host == "::1");
  CHECK(v6->port == 0);
  CHECK(parse_listen_address("localhost:80").has_value());
  CHECK(parse_listen_address("0.0.0.0:9477").has_value());

  for (const char* bad :
       {"", "9477", ":9477", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:94x7",
        "::1:9477", "[::1]9477", "[127.0.0.1]:80", "example.org:80", "[::1:80"}) {
    INFO(bad);
    const auto parsed = parse_listen_address(bad);
    REQUIRE_FALSE(parsed.has_value());
    CHECK_THAT(parsed.error().message, Contains(std::string("'") + bad + "'"));
  }
}
