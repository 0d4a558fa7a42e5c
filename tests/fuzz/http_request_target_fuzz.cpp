// libFuzzer target: HTTP request targets ("/v1/sandboxes/agent-7",
// "/v1/report?launch=L%2D1&format=html"), which any local client sends,
// through parse_request_target.
//
// Checks, for any input bytes:
//   - a target or an error that says something, never an exception;
//   - a parsed path starts with '/' and is no longer than the raw path
//     (decoding only shortens);
//   - written back with every byte but the unreserved ones percent-encoded
//     (and '/' kept in the path), the target parses to the same path and
//     query: decoding is exact, and a key or value can hold any byte.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/http_server.hpp"
#include "fuzz_support.hpp"

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("http_request_target_fuzz", what, detail);
}

// RFC 3986 unreserved characters stay; every other byte becomes %XX.
std::string encode(std::string_view bytes, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : bytes) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0x0f];
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  auto parsed = driftwatch::api::parse_request_target(target);
  if (!parsed) {
    if (parsed.error().message.empty()) report("an error without a message", target);
    return 0;
  }
  if (parsed->path.empty() || parsed->path.front() != '/')
    report("a parsed path does not start with '/'", target);
  if (parsed->path.size() > target.substr(0, target.find('?')).size())
    report("decoding made the path longer", target);

  std::string written = encode(parsed->path, /*keep_slash=*/true);
  if (!parsed->query.empty()) {
    written += '?';
    bool first = true;
    for (const auto& [key, value] : parsed->query) {
      if (!first) written += '&';
      first = false;
      written += encode(key, false) + "=" + encode(value, false);
    }
  }
  auto again = driftwatch::api::parse_request_target(written);
  if (!again) report("an encoded target does not parse", written);
  if (again->path != parsed->path) report("the path does not survive encoding", written);
  if (again->query != parsed->query) report("the query does not survive encoding", written);
  return 0;
}
