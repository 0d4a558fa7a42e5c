#include "api/http_server.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
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

TEST_CASE("http server: at the connection cap a new client waits until one closes", "[api]") {
  TestServer server;
  server.server.set_max_connections(2);
  server.start();
  const uint16_t port = server.server.port();
  auto first = std::make_unique<Client>(port);
  Client second(port);
  CHECK(first->request(http::verb::get, "/healthz").result_int() == 200);
  CHECK(second.request(http::verb::get, "/healthz").result_int() == 200);

  Client third(port);  // connects: the kernel's backlog holds it
  third.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  third.start_read();
  CHECK_FALSE(third.wait(300ms).has_value());  // not accepted yet

  first.reset();  // frees a slot
  const auto answered = third.wait(5000ms);
  REQUIRE(answered.has_value());
  CHECK_FALSE(*answered);
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
    WARN("skipped: no IPv6 loopback here: " << listening.error().message);
    return;
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
