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
#include <regex>
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
#include "support/skip.hpp"
#include "support/slow_clients.hpp"
#include "support/tcp_table.hpp"

using namespace driftwatch::testing;
using namespace std::chrono_literals;
using nlohmann::json;

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// The inode of the socket listening on 127.0.0.1:port, or "" if none.
std::string listener_inode(uint16_t port) {
  for (const auto& entry : tcp_entries(port))
    if (entry.state == "0A") return entry.inode;  // LISTEN
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
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
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
    SlowClients flood(port, 300, 2000ms, 100ms,
                      "POST /v1/launch-events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
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
  const std::regex eviction_line(R"((\d+) connection\(s\) closed at the cap of (\d+) )");
  int eviction_lines = 0;
  long evicted = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), eviction_line);
       it != std::sregex_iterator(); ++it) {
    ++eviction_lines;
    evicted += std::stol((*it)[1]);
    CHECK(std::stoi((*it)[2]) == kCap);
  }
  WARN(probes << " probes under the flood, slowest " << slowest.count() << " ms; " << evicted
              << " connections evicted, logged in " << eviction_lines << " lines; at most "
              << most_sockets << " client sockets held by the daemon (cap " << kCap << ")");
  INFO(log.substr(log.size() > 4000 ? log.size() - 4000 : 0));
  CHECK(exit_code == 0);  // a clean SIGTERM exit: nothing crashed
  CHECK(evicted > 0);
  CHECK(eviction_lines <= 5);
}
