#include "evidence/http_fetch.hpp"
#include "evidence/reader.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "support/process_guard.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

using Catch::Matchers::Contains;
using driftwatch::evidence::FetchTimeouts;
using driftwatch::evidence::HttpFetcher;
using driftwatch::testing::ChildProcess;
using driftwatch::testing::TempDir;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// Python's http.server (SimpleHTTPRequestHandler) on 127.0.0.1:0 serving
// `dir`, speaking HTTP/1.1 with keep-alive, and printing one line per
// connection it accepts, so a test can count them.
constexpr const char* kKeepAliveServer = R"(
import http.server, sys
directory = sys.argv[1]
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=directory, **kwargs)
    def setup(self):
        super().setup()
        print("connection", flush=True)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("port", server.server_address[1], flush=True)
server.serve_forever()
)";

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// A python3 file server, killed (its process group) when the test ends.
class PythonServer {
 public:
  // `keep_alive`: the script above; otherwise `python3 -m http.server` as
  // it comes (HTTP/1.0: one connection per request).
  PythonServer(const fs::path& dir, const fs::path& log, bool keep_alive) : log_(log) {
    driftwatch::testing::SpawnOptions options;
    options.output_path = log;
    if (keep_alive) {
      child_.emplace(
          ChildProcess::start({"python3", "-u", "-c", kKeepAliveServer, dir.string()}, options));
    } else {
      child_.emplace(ChildProcess::start(
          {"python3", "-u", "-m", "http.server", "--bind", "127.0.0.1", "-d", dir.string(), "0"},
          options));
    }
    const std::regex port_line(keep_alive ? R"(port (\d+))" : R"(Serving HTTP on \S+ port (\d+))");
    driftwatch::testing::wait_until(
        "python3's http.server to listen", 10s,
        [&] {
          std::smatch m;
          const std::string text = read_text(log_);
          if (!std::regex_search(text, m, port_line)) return false;
          port_ = static_cast<uint16_t>(std::stoi(m[1]));
          return true;
        },
        [&] { return read_text(log_); });
  }

  uint16_t port() const { return port_; }
  std::string url(const std::string& path = "/") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  size_t connections() const {
    const std::string text = read_text(log_);
    size_t count = 0;
    for (size_t at = text.find("connection\n"); at != std::string::npos;
         at = text.find("connection\n", at + 1))
      ++count;
    return count;
  }

 private:
  fs::path log_;
  std::optional<ChildProcess> child_;
  uint16_t port_ = 0;
};

// A TCP server on 127.0.0.1:0 that is not HTTP: `silent` never accepts
// (the kernel completes the handshake, nobody reads), otherwise each
// connection gets `canned` once the request's header is in, then closed.
class RawServer {
 public:
  explicit RawServer(std::optional<std::string> canned) : canned_(std::move(canned)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 16) == 0);
    socklen_t size = sizeof addr;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &size) == 0);
    port_ = ntohs(addr.sin_port);
    if (canned_) thread_ = std::thread([this] { serve(); });
  }
  ~RawServer() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/log/"; }

 private:
  void serve() {
    for (;;) {
      const int client = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;
      std::string request;
      char buffer[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(client, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        request.append(buffer, static_cast<size_t>(n));
      }
      (void)!::send(client, canned_->data(), canned_->size(), MSG_NOSIGNAL);
      ::close(client);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::optional<std::string> canned_;
  std::thread thread_;
};

// The bytes of a tile: every byte value.
std::string tile_bytes(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i * 13 % 256);
  return out;
}

#define NEEDS_PYTHON3()                                  \
  if (driftwatch::testing::have_tool("python3").empty()) \
  DW_SKIP("needs python3 for its http.server (apt-get install python3)")

HttpFetcher fetcher_for(const std::string& url, FetchTimeouts timeouts = {}) {
  auto fetcher = HttpFetcher::for_url(url, timeouts);
  INFO((fetcher ? std::string() : fetcher.error().message));
  REQUIRE(fetcher.has_value());
  return std::move(*fetcher);
}

}  // namespace

TEST_CASE("http fetch: base URLs are checked, and https is refused saying what to do instead",
          "[evidence]") {
  const auto base = [](std::string_view url) {
    auto fetcher = HttpFetcher::for_url(url);
    return fetcher ? fetcher->base_url() : "error: " + fetcher.error().message;
  };
  CHECK(base("http://127.0.0.1:9477/evidence/") == "http://127.0.0.1:9477/evidence/");
  CHECK(base("http://127.0.0.1:9477/evidence") == "http://127.0.0.1:9477/evidence/");
  CHECK(base("http://localhost") == "http://localhost/");
  CHECK(base("HTTP://[::1]:8080/a/b") == "http://[::1]:8080/a/b/");

  auto https = HttpFetcher::for_url("https://logs.example.org/node-1/");
  REQUIRE_FALSE(https.has_value());
  CHECK(https.error().message ==
        "evidence log URL 'https://logs.example.org/node-1/': https is not supported yet; fetch "
        "the directory with curl or serve it over http");
  for (const char* bad :
       {"ftp://example.org/", "example.org/log/", "http://", "http://:80/", "http://host:0/",
        "http://host:65536/", "http://host:x/", "http://host:/", "http://user@host/",
        "http://host/log?x=1", "http://host/log#top", "http://[::1/", "http://host/a b/"}) {
    INFO(bad);
    auto fetcher = HttpFetcher::for_url(bad);
    REQUIRE_FALSE(fetcher.has_value());
    CHECK_THAT(fetcher.error().message, Contains(std::string("'") + bad + "'"));
  }
  const FetchTimeouts defaults;
  CHECK(defaults.connect == 10s);
  CHECK(defaults.read == 10s);
}

TEST_CASE("http fetch: files come back byte for byte, a missing one is nullopt", "[evidence]") {
  NEEDS_PYTHON3();
  TempDir dir("http-fetch");
  dir.write("log/checkpoint", "driftwatch/test-node\n3\nAAAA\n\n— test-node xyz\n");
  dir.write("log/tile/0/000.p/3", tile_bytes(96));
  dir.write("log/tile/0/x001/234", tile_bytes(8192));
  PythonServer server(dir.path(), dir / "server.log", true);
  auto fetcher = fetcher_for(server.url("/log"));

  auto checkpoint = fetcher.get("checkpoint", 16 * 1024);
  INFO((checkpoint ? std::string() : checkpoint.error().message));
  REQUIRE(checkpoint.has_value());
  REQUIRE(checkpoint->has_value());
  CHECK(**checkpoint == "driftwatch/test-node\n3\nAAAA\n\n— test-node xyz\n");
  auto partial = fetcher.get("tile/0/000.p/3", 96);
  REQUIRE(partial.has_value());
  REQUIRE(partial->has_value());
  CHECK(**partial == tile_bytes(96));
  auto full = fetcher.get("tile/0/x001/234", 8192);
  REQUIRE(full.has_value());
  REQUIRE(full->has_value());
  CHECK(**full == tile_bytes(8192));

  auto missing = fetcher.get("tile/0/x001/235", 8192);
  INFO((missing ? std::string() : missing.error().message));
  REQUIRE(missing.has_value());
  CHECK_FALSE(missing->has_value());
  CHECK(fetcher.connections_opened() == 1);
  // http.server closes the connection after an error ("Connection: close"):
  // the next fetch opens another.
  auto again = fetcher.get("checkpoint", 16 * 1024);
  REQUIRE(again.has_value());
  CHECK(again->has_value());
  CHECK(fetcher.connections_opened() == 2);

  for (const char* bad : {"", "/checkpoint", "../server.log", "tile//0", "tile/./0", "a b",
                          "tile%2f0", "checkpoint?x"}) {
    INFO(bad);
    auto refused = fetcher.get(bad, 1024);
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Contains("not a relative path of plain names"));
  }
}

TEST_CASE("http fetch: a body over the cap is an error, not read past it", "[evidence]") {
  NEEDS_PYTHON3();
  TempDir dir("http-fetch-cap");
  dir.write("blob/big", std::string(10 * 1024 * 1024, 'b'));
  dir.write("checkpoint", "c\n");
  PythonServer server(dir.path(), dir / "server.log", true);
  auto fetcher = fetcher_for(server.url());
  auto big = fetcher.get("blob/big", 4096);
  REQUIRE_FALSE(big.has_value());
  CHECK(big.error().message == "GET " + server.url("/blob/big") + ": the answer of " +
                                   std::to_string(10 * 1024 * 1024) +
                                   " bytes is larger than the 4096 allowed");
  // The next fetch opens a new connection and works.
  auto small = fetcher.get("checkpoint", 4096);
  REQUIRE(small.has_value());
  REQUIRE(small->has_value());
  CHECK(**small == "c\n");
  CHECK(fetcher.connections_opened() == 2);
}

TEST_CASE("http fetch: 200 fetches share one kept-alive connection", "[evidence]") {
  NEEDS_PYTHON3();
  TempDir dir("http-fetch-keepalive");
  for (int i = 0; i < 200; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "tile/0/%03d", i);
    dir.write(name, tile_bytes(8192).substr(static_cast<size_t>(i)));
  }
  PythonServer server(dir.path(), dir / "server.log", true);
  auto fetcher = fetcher_for(server.url());
  for (int i = 0; i < 200; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "tile/0/%03d", i);
    auto tile = fetcher.get(name, 8192);
    INFO(name << ": " << (tile ? std::string() : tile.error().message));
    REQUIRE(tile.has_value());
    REQUIRE(tile->has_value());
    REQUIRE(**tile == tile_bytes(8192).substr(static_cast<size_t>(i)));
  }
  CHECK(fetcher.connections_opened() == 1);
  CHECK(server.connections() == 1);
}

TEST_CASE("http fetch: a server that closes after every answer is reconnected to each time",
          "[evidence]") {
  NEEDS_PYTHON3();
  TempDir dir("http-fetch-http10");
  dir.write("log/checkpoint", "c\n");
  dir.write("log/tile/0/000", tile_bytes(8192));
  PythonServer server(dir.path(), dir / "server.log", false);  // python3 -m http.server, HTTP/1.0
  auto fetcher = fetcher_for(server.url("/log/"));
  for (int i = 0; i < 5; ++i) {
    auto tile = fetcher.get("tile/0/000", 8192);
    INFO((tile ? std::string() : tile.error().message));
    REQUIRE(tile.has_value());
    REQUIRE(tile->has_value());
    CHECK(**tile == tile_bytes(8192));
  }
  CHECK(fetcher.connections_opened() == 5);
}

TEST_CASE("http fetch: a redirect is not followed, and the error names where it pointed",
          "[evidence]") {
  NEEDS_PYTHON3();
  TempDir dir("http-fetch-redirect");
  dir.mkdir("tile/0");
  PythonServer server(dir.path(), dir / "server.log", true);
  auto fetcher = fetcher_for(server.url());
  auto redirected = fetcher.get("tile", 1024);  // a directory: 301 to tile/
  REQUIRE_FALSE(redirected.has_value());
  CHECK_THAT(redirected.error().message,
             Contains("GET " + server.url("/tile") + ": redirected (HTTP 301) to /tile/"));
  CHECK_THAT(redirected.error().message, Contains("redirects are not followed"));
}

TEST_CASE("http fetch: another status, or an encoded body, is an error naming URL and status",
          "[evidence]") {
  {
    RawServer server(std::string(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy"));
    auto fetcher = fetcher_for(server.url());
    auto answer = fetcher.get("checkpoint", 1024);
    REQUIRE_FALSE(answer.has_value());
    CHECK(answer.error().message ==
          "GET " + server.url() + "checkpoint: HTTP 503 Service Unavailable");
  }
  {
    RawServer server(
        std::string("HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Encoding: "
                    "gzip\r\nConnection: close\r\n\r\n\x1f\x8b\x08\x00"));
    auto fetcher = fetcher_for(server.url());
    auto answer = fetcher.get("tile/entries/000", 1024);
    REQUIRE_FALSE(answer.has_value());
    CHECK_THAT(answer.error().message, Contains("encoded as 'gzip'"));
  }
  {
    // No Content-Length: the body runs to the close, and the cap still holds.
    RawServer server("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + std::string(5000, 'x'));
    auto fetcher = fetcher_for(server.url());
    auto answer = fetcher.get("blob/x", 1000);
    REQUIRE_FALSE(answer.has_value());
    CHECK_THAT(answer.error().message, Contains("larger than the 1000 bytes allowed"));
  }
}

TEST_CASE("http fetch: a server that never answers times out, quickly and saying so",
          "[evidence]") {
  RawServer silent(std::nullopt);
  FetchTimeouts timeouts;
  timeouts.read = 2s;
  auto fetcher = fetcher_for(silent.url(), timeouts);
  const auto start = std::chrono::steady_clock::now();
  auto answer = fetcher.get("checkpoint", 1024);
  const auto took = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(answer.has_value());
  CHECK(answer.error().message == "GET " + silent.url() +
                                      "checkpoint: the server sent nothing for 2 s while waiting "
                                      "for the answer");
  CHECK(took >= 1900ms);
  CHECK(took < 10s);

  // And the whole-request deadline, for a server that trickles: here silent
  // again, with the request's deadline the shorter one.
  timeouts.read = 10s;
  timeouts.request = 1s;
  auto hurried = fetcher_for(silent.url(), timeouts);
  auto late = hurried.get("checkpoint", 1024);
  REQUIRE_FALSE(late.has_value());
  CHECK_THAT(late.error().message, Contains("no complete answer within 1 s"));
}

TEST_CASE("http fetch: a refused connection is an error naming the host", "[evidence]") {
  uint16_t port = 0;
  {
    RawServer closed(std::nullopt);
    port = static_cast<uint16_t>(std::stoi(closed.url().substr(17)));
  }
  auto fetcher = fetcher_for("http://127.0.0.1:" + std::to_string(port) + "/");
  auto answer = fetcher.get("checkpoint", 1024);
  REQUIRE_FALSE(answer.has_value());
  CHECK_THAT(
      answer.error().message,
      Contains("cannot connect to 127.0.0.1:" + std::to_string(port) + ": connection refused"));
}

TEST_CASE("evidence reader: a directory and a URL are read the same way", "[evidence]") {
  NEEDS_PYTHON3();
  TempDir dir("evidence-reader");
  dir.write("log/checkpoint", "driftwatch/n\n1\nAAAA\n\n— n x\n");
  dir.write("log/tile/0/000.p/1", tile_bytes(32));
  PythonServer server(dir.path(), dir / "server.log", true);

  auto fetcher = fetcher_for(server.url("/log/"));
  const std::vector<std::pair<std::string, driftwatch::evidence::Reader>> readers = {
      {"directory", driftwatch::evidence::directory_reader(dir / "log")},
      {"url", driftwatch::evidence::url_reader(std::move(fetcher))},
  };
  for (const auto& [name, read] : readers) {
    INFO(name);
    auto checkpoint = read("checkpoint", 16 * 1024);
    REQUIRE(checkpoint.has_value());
    REQUIRE(checkpoint->has_value());
    CHECK(**checkpoint == "driftwatch/n\n1\nAAAA\n\n— n x\n");
    auto tile = read("tile/0/000.p/1", 32);
    REQUIRE(tile.has_value());
    REQUIRE(tile->has_value());
    CHECK(**tile == tile_bytes(32));
    auto missing = read("tile/0/001", 8192);
    REQUIRE(missing.has_value());
    CHECK_FALSE(missing->has_value());
    auto too_large = read("tile/0/000.p/1", 31);
    REQUIRE_FALSE(too_large.has_value());
    CHECK_THAT(too_large.error().message, Contains("larger than"));
    CHECK_FALSE(read("../server.log", 1024).has_value());
  }
}

TEST_CASE("evidence reader: a directory reader follows no link and refuses a missing log",
          "[evidence]") {
  TempDir dir("evidence-reader-links");
  dir.write("secret", "s");
  dir.symlink("log/checkpoint", dir / "secret");
  dir.write("elsewhere/0/000", "t");
  dir.symlink("log/tile", dir / "elsewhere");
  const auto read = driftwatch::evidence::directory_reader(dir / "log");
  auto link = read("checkpoint", 1024);
  REQUIRE_FALSE(link.has_value());
  CHECK_THAT(link.error().message, Contains("is a symbolic link"));
  auto through = read("tile/0/000", 1024);
  REQUIRE_FALSE(through.has_value());
  CHECK_THAT(through.error().message, Contains("tile on the way is a symbolic link"));

  const auto absent = driftwatch::evidence::directory_reader(dir / "no-such-log");
  auto none = absent("checkpoint", 1024);
  REQUIRE_FALSE(none.has_value());
  CHECK(none.error().message ==
        "evidence log directory " + (dir / "no-such-log").string() + " does not exist");
}
