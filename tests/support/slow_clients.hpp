#pragma once
// A slowloris flood for tests of the HTTP server and the daemon: many
// clients that each send a request header one byte at a time and never
// finish it. Header-only, so unit_tests can use it without test_support.

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

namespace driftwatch::testing {

// Slowloris: clients that each send a request header one byte at a time and
// never finish it. One that the server closes reconnects after
// `reconnect_after`, so the flood keeps its size. They run on their own
// thread until destroyed.
class SlowClients {
  using tcp = boost::asio::ip::tcp;
  using error_code = boost::system::error_code;

 public:
  /// `request_start` is sent a byte at a time, then "a" forever.
  SlowClients(uint16_t port, int count, std::chrono::milliseconds byte_interval,
              std::chrono::milliseconds reconnect_after, std::string request_start)
      : endpoint_(boost::asio::ip::address_v4::loopback(), port),
        interval_(byte_interval),
        reconnect_after_(reconnect_after),
        request_start_(std::move(request_start)) {
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
    explicit Slow(boost::asio::io_context& io) : socket(io), send_timer(io), reconnect_timer(io) {}
    tcp::socket socket;
    boost::asio::steady_timer send_timer;
    boost::asio::steady_timer reconnect_timer;
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
    client.socket.async_read_some(boost::asio::buffer(client.scratch),
                                  [this, &client, generation](const error_code& ec, size_t) {
                                    if (generation != client.generation) return;
                                    if (!ec) return read(client, generation);
                                    ++closed_;
                                    reconnect_later(client);
                                  });
  }

  void send_next(Slow& client, int generation) {
    const char* byte = client.sent < request_start_.size() ? &request_start_[client.sent] : "a";
    ++client.sent;
    boost::asio::async_write(
        client.socket, boost::asio::buffer(byte, 1),
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

  boost::asio::io_context io_;
  tcp::endpoint endpoint_;
  std::chrono::milliseconds interval_;
  std::chrono::milliseconds reconnect_after_;
  std::string request_start_;
  std::vector<std::unique_ptr<Slow>> clients_;
  std::atomic<int> connects_{0};
  std::atomic<int> closed_{0};
  std::thread thread_;
};

}  // namespace driftwatch::testing
