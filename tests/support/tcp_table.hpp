#pragma once
// The kernel's view of TCP sockets on a local port (/proc/net/tcp), for
// tests that count what a server holds open. Header-only, so unit_tests can
// use it without test_support.

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace driftwatch::testing {

struct TcpEntry {
  std::string state;  // hex: "0A" is LISTEN, "01" ESTABLISHED
  std::string inode;  // "0" for sockets no file holds (accept queue, closing)
};

/// The IPv4 entries whose local port is `port`. The table is not read
/// atomically: while sockets come and go an entry can be listed twice.
inline std::vector<TcpEntry> tcp_entries(uint16_t port) {
  std::vector<TcpEntry> out;
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
    if (colon == std::string::npos) continue;
    if (std::stoul(local.substr(colon + 1), nullptr, 16) != port) continue;
    out.push_back({state, inode});
  }
  return out;
}

}  // namespace driftwatch::testing
