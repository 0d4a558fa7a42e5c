#pragma once
// A minimal blocking HTTP/1.1 client for tests against the daemon on
// loopback: one request per connection (Connection: close).

#include <cstdint>
#include <map>
#include <string>

namespace driftwatch::testing {

struct HttpReply {
  int status = 0;
  std::string body;
  /// The header fields, names in lowercase ("content-type").
  std::map<std::string, std::string> headers;

  /// The value of the field `lowercase_name`, "" when absent.
  std::string header(const std::string& lowercase_name) const {
    const auto found = headers.find(lowercase_name);
    return found == headers.end() ? std::string() : found->second;
  }
};

/// Sends METHOD path to 127.0.0.1:port. Throws std::runtime_error when the
/// connection fails or the answer is not HTTP.
HttpReply http_request(uint16_t port, const std::string& method, const std::string& path,
                       const std::string& body = "");

}  // namespace driftwatch::testing
