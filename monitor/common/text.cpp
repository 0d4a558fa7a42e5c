#include "common/text.hpp"

namespace driftwatch {

std::string quote(std::string_view token) {
  constexpr size_t kMaxQuoted = 64;
  std::string out = "'";
  for (size_t i = 0; i < token.size() && i < kMaxQuoted; ++i) {
    const auto c = static_cast<unsigned char>(token[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (token.size() > kMaxQuoted) out += "...";
  out += "'";
  return out;
}

}  // namespace driftwatch
