// The real daemon under a slowloris flood: 300 connections that each send a
// request header one byte every 2 s and never finish it, against the
// default cap of 256 connections. The API must keep answering /healthz and
// POSTs within a second, hold no more connections than its cap, and log the
// evictions as sums rather than a line each.

#include <dirent.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "api/http_server.hpp"
#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"

using namespace driftwatch::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Slowloris: clients that each send a request header one byte at a time and
// never finish it. One that the server closes reconnects after
// `reconnect_after`, so the flood keeps its size. They run on their own
// thread until destroyed.
class SlowClients {
 public:
  SlowClients(uint16_t port, int count, std::chrono::milliseconds byte_interval,
              std::chrono::milliseconds reconnect_after)
      : endpoint_(asio::ip::address_v4::loopback(), port),
        interval_(byte_interval),
        reconnect_after_(reconnect_after) {
    for (int i = 0; i < count; ++i) clients_.push_back(std::make_unique<Slow>(io_));
    for (auto& client : clients_) connect(*client);
    thread_ = std::thread([this] { io_.run(); });
  }
  SlowClients(const SlowClients&) = delete;
  SlowClients& operator=(const SlowClients&) = delete;
  ~SlowClients() {
    io_.stop();
    thread_.join();
  }

  int connects() const { return connects_; }
  int closed_by_server() const { return closed_; }

 private:
  struct Slow {
    explicit Slow(asio::io_context& io) : socket(io), send_timer(io), reconnect_timer(io) {}
    tcp::socket socket;
    asio::steady_timer send_timer;
    asio::steady_timer reconnect_timer;
    std::array<char, 512> scratch{};
    size_t sent = 0;
    int generation = 0;  // one per connection, so stale completions do nothing
  };

  void connect(Slow& client) {
    error_code ignored;
    client.socket.close(ignored);
    client.sent = 0;
    const int generation = ++client.generation;
    client.socket.async_connect(endpoint_, [this, &client, generation](const error_code& ec) {
      if (generation != client.generation) return;
      if (ec) return reconnect_later(client);
      ++connects_;
      read(client, generation);
      send_next(client, generation);
    });
  }

  void read(Slow& client, int generation) {
    client.socket.async_read_some(asio::buffer(client.scratch),
                                  [this, &client, generation](const error_code& ec, size_t) {
                                    if (generation != client.generation) return;
                                    if (!ec) return read(client, generation);
                                    ++closed_;
                                    reconnect_later(client);
                                  });
  }

  void send_next(Slow& client, int generation) {
    static constexpr std::string_view kStart =
        "POST /v1/launch-events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    const char* byte = client.sent < kStart.size() ? &kStart[client.sent] : "a";
    ++client.sent;
    asio::async_write(
        client.socket, asio::buffer(byte, 1),
        [this, &client, generation](const error_code& ec, size_t) {
          if (ec || generation != client.generation) return;
          client.send_timer.expires_after(interval_);
          client.send_timer.async_wait([this, &client, generation](const error_code& error) {
            if (error || generation != client.generation) return;
            send_next(client, generation);
          });
        });
  }

  void reconnect_later(Slow& client) {
    client.reconnect_timer.expires_after(reconnect_after_);
    client.reconnect_timer.async_wait([this, &client](const error_code& ec) {
      if (!ec) connect(client);
    });
  }

  asio::io_context io_;
  tcp::endpoint endpoint_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds reconnect_after_;
  std::vector<std::unique_ptr<Slow>> clients_;
  std::atomic<int> connects_{0};
  std::atomic<int> closed_{0};
  std::thread thread_;
};

// The inode of the socket listening on 127.0.0.1:port, or "" if none.
std::string listener_inode(uint16_t port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the column names
  while (std::getline(table, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retransmits, uid, timeout, inode;
    if (!(fields >> slot >> local >> remote >> state >> queues >> timer >> retransmits >> uid >>
          timeout >> inode)) {
      continue;
    }
    const size_t colon = local.find(':');
    if (colon == std::string::npos || state != "0A") continue;
    if (std::stoul(local.substr(colon + 1), nullptr, 16) == port) return inode;
  }
  return {};
}

// The socket file descriptors `pid` holds (from /proc/PID/fd).
int socket_fds(pid_t pid) {
  int count = 0;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    const auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string().starts_with("socket:")) ++count;
  }
  return count;
}

// Our child process that holds the listening socket of `port` (the daemon),
// or -1.
pid_t process_listening_on(uint16_t port) {
  const std::string wanted = "socket:[" + listener_inode(port) + "]";
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = proc.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(proc.path() / "stat");
    std::string stat_line;
    std::getline(stat, stat_line);
    // "PID (COMM) STATE PPID ...": COMM may hold spaces; parse after ')'.
    const size_t close = stat_line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat_line.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    if (!(rest >> state >> parent) || parent != getpid()) continue;
    std::error_code fd_error;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fd", fd_error)) {
      std::error_code link_error;
      if (std::filesystem::read_symlink(fd.path(), link_error).string() == wanted) {
        return static_cast<pid_t>(std::stol(name));
      }
    }
  }
  return -1;
}

std::chrono::milliseconds since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

}  // namespace

TEST_CASE("slow clients: 300 slowloris connections lock neither /healthz nor a POST out",
          "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) {
    WARN("skipped: " << *why);
    return;
  }
  DaemonUnderTest daemon;
  daemon.start();
  const uint16_t port = daemon.port();
  const pid_t daemon_pid = process_listening_on(port);
  REQUIRE(daemon_pid > 0);
  const int sockets_at_rest = socket_fds(daemon_pid);
  constexpr int kCap = static_cast<int>(driftwatch::api::HttpServer::kDefaultMaxConnections);

  int probes = 0;
  int slow_probes = 0;
  int most_sockets = 0;
  std::chrono::milliseconds slowest{0};
  {
    SlowClients flood(port, 300, 2000ms, 100ms);
    const auto connecting = std::chrono::steady_clock::now();
    while (flood.connects() < 300 && since(connecting) < 10s) std::this_thread::sleep_for(10ms);
    REQUIRE(flood.connects() >= 300);

    const auto flooding = std::chrono::steady_clock::now();
    while (since(flooding) < 15s) {
      most_sockets = std::max(most_sockets, socket_fds(daemon_pid) - sockets_at_rest);
      const auto started = std::chrono::steady_clock::now();
      HttpReply health;
      REQUIRE_NOTHROW(health = http_request(port, "GET", "/healthz"));
      const auto health_time = since(started);
      INFO("GET /healthz -> " << health.status << " " << health.body.substr(0, 200));
      REQUIRE(health.status == 200);
      CHECK(json::parse(health.body, nullptr, false).value("status", "") == "ok");

      const auto posted = std::chrono::steady_clock::now();
      HttpReply junk;
      REQUIRE_NOTHROW(junk = http_request(port, "POST", "/v1/launch-events", "not an envelope"));
      const auto post_time = since(posted);
      INFO("POST /v1/launch-events -> " << junk.status << " " << junk.body);
      CHECK(junk.status == 400);
      CHECK(json::parse(junk.body, nullptr, false).value("result", "") == "malformed");

      ++probes;
      slowest = std::max({slowest, health_time, post_time});
      if (health_time >= 1s || post_time >= 1s) ++slow_probes;
      std::this_thread::sleep_for(200ms);
    }
    INFO("flood: " << flood.connects() << " connects, " << flood.closed_by_server()
                   << " closed by the daemon");
    CHECK(flood.closed_by_server() > 0);
  }
  INFO(probes << " probes, slowest " << slowest.count() << " ms; at most " << most_sockets
              << " client sockets held by the daemon");
  CHECK(probes >= 20);
  CHECK(slow_probes == 0);
  CHECK(slowest < 1000ms);
  CHECK(most_sockets <= kCap);

  // The flood went past the cap, and it was logged as sums: one line at
  // once, then at most one per 10 s, and the rest at shutdown.
  const int exit_code = daemon.stop();
  const std::string log = daemon.log();
  int eviction_lines = 0;
  for (size_t at = log.find("closed at the cap of"); at != std::string::npos;
       at = log.find("closed at the cap of", at + 1)) {
    ++eviction_lines;
  }
  INFO(log.substr(log.size() > 4000 ? log.size() - 4000 : 0));
  CHECK(exit_code == 0);  // a clean SIGTERM exit: nothing crashed
  CHECK(eviction_lines >= 1);
  CHECK(eviction_lines <= 5);
}
