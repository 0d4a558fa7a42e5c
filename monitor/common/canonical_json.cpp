#include "common/canonical_json.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace driftwatch {
namespace {

using nlohmann::json;

// Deeper documents are rejected by both parse_json and canonical_json, so that
// everything we write we can read back, and so neither recurses without bound.
constexpr std::size_t kMaxDepth = 64;
// Integers up to 2^53 are exact in a double, so ECMAScript prints them as
// written; beyond that JCS prints the nearest double.
constexpr std::uint64_t kMaxExactInteger = std::uint64_t{1} << 53;

// ---------------------------------------------------------------- UTF-8

bool is_continuation(unsigned char byte) {
  return (byte & 0xC0) == 0x80;
}

// Decodes the code point starting at `offset` and advances past it; nullopt
// for anything that is not well-formed UTF-8 (overlong forms, surrogates,
// code points above U+10FFFF, truncated sequences).
std::optional<char32_t> decode_code_point(std::string_view text, std::size_t& offset) {
  const auto byte_at = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte_at(offset);
  if (lead < 0x80) {
    ++offset;
    return lead;
  }
  std::size_t length = 0;
  char32_t code_point = 0;
  char32_t minimum = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code_point = lead & 0x1F;
    minimum = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code_point = lead & 0x0F;
    minimum = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code_point = lead & 0x07;
    minimum = 0x10000;
  } else {
    return std::nullopt;  // stray continuation byte, C0/C1 overlong lead, or F5..FF
  }
  if (text.size() - offset < length) return std::nullopt;
  for (std::size_t i = 1; i < length; ++i) {
    const unsigned char next = byte_at(offset + i);
    if (!is_continuation(next)) return std::nullopt;
    code_point = (code_point << 6) | (next & 0x3F);
  }
  if (code_point < minimum || code_point > 0x10FFFF) return std::nullopt;
  if (code_point >= 0xD800 && code_point <= 0xDFFF) return std::nullopt;
  offset += length;
  return code_point;
}

// The byte offset of the first ill-formed UTF-8 sequence, or nullopt.
std::optional<std::size_t> find_invalid_utf8(std::string_view text) {
  std::size_t offset = 0;
  while (offset < text.size()) {
    const std::size_t start = offset;
    if (!decode_code_point(text, offset)) return start;
  }
  return std::nullopt;
}

// JCS sorts object keys as ECMAScript strings, i.e. by UTF-16 code units.
// Requires valid UTF-8.
std::u16string to_utf16(std::string_view text) {
  std::u16string units;
  units.reserve(text.size());
  std::size_t offset = 0;
  while (offset < text.size()) {
    const char32_t code_point = *decode_code_point(text, offset);
    if (code_point < 0x10000) {
      units.push_back(static_cast<char16_t>(code_point));
    } else {
      const char32_t above = code_point - 0x10000;
      units.push_back(static_cast<char16_t>(0xD800 + (above >> 10)));
      units.push_back(static_cast<char16_t>(0xDC00 + (above & 0x3FF)));
    }
  }
  return units;
}

// ---------------------------------------------------------------- strings

// RFC 8785 3.2.2.2: the two-character escapes where JSON has one, \u00xx for
// the remaining controls, and every other character literally. Requires
// valid UTF-8.
void append_string(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default: {
        const auto byte = static_cast<unsigned char>(c);
        if (byte < 0x20) {
          out += "\\u00";
          out.push_back(kHex[byte >> 4]);
          out.push_back(kHex[byte & 0x0F]);
        } else {
          out.push_back(c);
        }
      }
    }
  }
  out.push_back('"');
}

// ---------------------------------------------------------------- numbers

// ECMAScript Number::toString (ES2019 7.1.12.1) for a finite double. The
// digits come from std::to_chars, which like ECMAScript picks the shortest
// digit string that reads back as the same double, the closest one on a tie.
void append_double(std::string& out, double value) {
  if (value == 0) {  // both +0 and -0
    out.push_back('0');
    return;
  }
  char buffer[64];
  const auto [end, error] =
      std::to_chars(buffer, buffer + sizeof buffer, value, std::chars_format::scientific);
  if (error != std::errc{}) std::abort();  // 64 bytes always hold a double
  // buffer is "[-]d[.ddd]e(+|-)dd".
  std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
  if (text.front() == '-') {
    out.push_back('-');
    text.remove_prefix(1);
  }
  const std::size_t e_at = text.find('e');
  std::string digits;
  for (const char c : text.substr(0, e_at)) {
    if (c != '.') digits.push_back(c);
  }
  std::string_view exponent_text = text.substr(e_at + 1);
  const bool exponent_negative = exponent_text.front() == '-';
  exponent_text.remove_prefix(1);  // to_chars always writes the sign
  int exponent = 0;
  std::from_chars(exponent_text.data(), exponent_text.data() + exponent_text.size(), exponent);
  if (exponent_negative) exponent = -exponent;

  // In the spec's terms the value is digits × 10^(n−k).
  const int k = static_cast<int>(digits.size());
  const int n = exponent + 1;
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<std::size_t>(n));
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out.append(digits, 1);
    }
    out.push_back('e');
    out.push_back(n - 1 < 0 ? '-' : '+');
    out += std::to_string(std::abs(n - 1));
  }
}

template <class Integer>
void append_integer(std::string& out, Integer value) {
  char buffer[24];
  const auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  if (error != std::errc{}) std::abort();  // 24 bytes always hold a 64-bit integer
  out.append(buffer, end);
}

// ---------------------------------------------------------------- values

void append_pointer_token(std::string& pointer, std::string_view key) {
  pointer.push_back('/');
  for (const char c : key) {
    if (c == '~') {
      pointer += "~0";
    } else if (c == '/') {
      pointer += "~1";
    } else {
      pointer.push_back(c);
    }
  }
}

class Canonicalizer {
 public:
  Result<void> write(const json& value, std::size_t depth) {
    switch (value.type()) {
      case json::value_t::null:
        out_ += "null";
        return {};
      case json::value_t::boolean:
        out_ += value.get<bool>() ? "true" : "false";
        return {};
      case json::value_t::number_integer:
        write_integer(value.get<std::int64_t>());
        return {};
      case json::value_t::number_unsigned:
        write_unsigned(value.get<std::uint64_t>());
        return {};
      case json::value_t::number_float: {
        const double number = value.get<double>();
        if (!std::isfinite(number)) {
          return fail("number at ", where(), " is ", std::isnan(number) ? "NaN" : "infinite",
                      ", which JSON cannot represent");
        }
        append_double(out_, number);
        return {};
      }
      case json::value_t::string:
        return write_string(value.get_ref<const json::string_t&>(), "string");
      case json::value_t::array:
        return write_array(value.get_ref<const json::array_t&>(), depth + 1);
      case json::value_t::object:
        return write_object(value.get_ref<const json::object_t&>(), depth + 1);
      case json::value_t::binary:
        return fail("binary value at ", where(), " has no JSON form");
      case json::value_t::discarded:
        break;
    }
    return fail("discarded value at ", where(), " has no JSON form");
  }

  std::string take() { return std::move(out_); }

 private:
  std::string where() const { return pointer_.empty() ? "the top level" : pointer_; }

  void write_integer(std::int64_t number) {
    const auto limit = static_cast<std::int64_t>(kMaxExactInteger);
    if (number >= -limit && number <= limit) {
      append_integer(out_, number);
    } else {
      append_double(out_, static_cast<double>(number));
    }
  }

  void write_unsigned(std::uint64_t number) {
    if (number <= kMaxExactInteger) {
      append_integer(out_, number);
    } else {
      append_double(out_, static_cast<double>(number));
    }
  }

  Result<void> write_string(std::string_view text, std::string_view kind) {
    if (const auto bad = find_invalid_utf8(text)) {
      return fail(kind, " at ", where(), " is not valid UTF-8 (byte ", std::to_string(*bad), " of ",
                  std::to_string(text.size()), ")");
    }
    append_string(out_, text);
    return {};
  }

  Result<void> check_depth(std::size_t depth) const {
    if (depth > kMaxDepth) {
      return fail("value at ", where(), " is nested deeper than ", std::to_string(kMaxDepth),
                  " levels");
    }
    return {};
  }

  Result<void> write_array(const json::array_t& array, std::size_t depth) {
    if (auto deep = check_depth(depth); !deep) return deep;
    out_.push_back('[');
    const std::size_t pointer_size = pointer_.size();
    for (std::size_t i = 0; i < array.size(); ++i) {
      if (i > 0) out_.push_back(',');
      pointer_ += '/';
      pointer_ += std::to_string(i);
      if (auto written = write(array[i], depth); !written) return written;
      pointer_.resize(pointer_size);
    }
    out_.push_back(']');
    return {};
  }

  Result<void> write_object(const json::object_t& object, std::size_t depth) {
    if (auto deep = check_depth(depth); !deep) return deep;
    // nlohmann keeps keys in UTF-8 byte order, which is code point order; it
    // differs from UTF-16 order where U+10000.. (surrogates D800..DFFF) meets
    // U+E000..U+FFFF, so sort again.
    std::vector<std::pair<std::u16string, const json::object_t::value_type*>> members;
    members.reserve(object.size());
    for (const auto& member : object) {
      if (const auto bad = find_invalid_utf8(member.first)) {
        return fail("object key at ", where(), " is not valid UTF-8 (byte ", std::to_string(*bad),
                    " of ", std::to_string(member.first.size()), ")");
      }
      members.emplace_back(to_utf16(member.first), &member);
    }
    std::sort(members.begin(), members.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });

    out_.push_back('{');
    const std::size_t pointer_size = pointer_.size();
    bool first = true;
    for (const auto& [sort_key, member] : members) {
      if (!first) out_.push_back(',');
      first = false;
      append_string(out_, member->first);
      out_.push_back(':');
      append_pointer_token(pointer_, member->first);
      if (auto written = write(member->second, depth); !written) return written;
      pointer_.resize(pointer_size);
    }
    out_.push_back('}');
    return {};
  }

  std::string out_;
  std::string pointer_;  // JSON Pointer of the value being written, for errors
};

// ---------------------------------------------------------------- parsing

// The 1-based byte position of the bracket that opens level kMaxDepth + 1, or
// nullopt. Runs before nlohmann so that a hostile document never reaches its
// parser; brackets inside strings do not count.
std::optional<std::size_t> find_excess_nesting(std::string_view text) {
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > kMaxDepth) return i + 1;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;  // unbalanced text is nlohmann's to report
        break;
      default:
        break;
    }
  }
  return std::nullopt;
}

// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string_view without_exception_tag(std::string_view message) {
  if (message.starts_with("[json.exception.")) {
    if (const std::size_t close = message.find("] "); close != std::string_view::npos) {
      message.remove_prefix(close + 2);
    }
  }
  return message;
}

}  // namespace

Result<std::string> canonical_json(const nlohmann::json& value) {
  Canonicalizer canonicalizer;
  if (auto written = canonicalizer.write(value, 0); !written) {
    return wrap(written.error(), "cannot canonicalize JSON: ");
  }
  return canonicalizer.take();
}

bool is_valid_utf8(std::string_view text) {
  return !find_invalid_utf8(text).has_value();
}

Result<nlohmann::json> parse_json(std::string_view text, std::string_view what,
                                  std::size_t max_bytes) {
  if (text.size() > max_bytes) {
    constexpr std::size_t kMiB = std::size_t{1} << 20;
    return fail("cannot parse ", what, ": it is ", std::to_string(text.size()),
                " bytes, larger than the limit of ", std::to_string(max_bytes), " bytes",
                max_bytes % kMiB == 0 ? " (" + std::to_string(max_bytes / kMiB) + " MiB)" : "");
  }
  // nlohmann's lexer takes a NUL byte for the end of input and would accept
  // "1\0anything" as 1. Valid JSON has none: in strings it must be escaped.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos) {
    return fail("cannot parse ", what, ": NUL byte at byte ", std::to_string(nul + 1),
                " (JSON text cannot contain one; write \\u0000 inside a string)");
  }
  // RFC 8259 §8.1: no byte order mark. nlohmann skips one silently, but
  // Python's and JavaScript's parsers refuse it, and two readers of one
  // signed document must agree on whether it parses.
  if (text.starts_with("\xEF\xBB\xBF")) {
    return fail("cannot parse ", what,
                ": it begins with a UTF-8 byte order mark (EF BB BF), which JSON text must not");
  }
  // Checked here, before nlohmann, whose error message would quote the
  // offending bytes: a reason that is not UTF-8 cannot be answered in JSON.
  if (const auto bad = find_invalid_utf8(text)) {
    return fail("cannot parse ", what, ": not valid UTF-8 at byte ", std::to_string(*bad + 1));
  }
  if (const auto position = find_excess_nesting(text)) {
    return fail("cannot parse ", what, ": nesting deeper than ", std::to_string(kMaxDepth),
                " levels at byte ", std::to_string(*position));
  }

  // I-JSON (RFC 7493), which JCS builds on, forbids duplicate keys; nlohmann
  // would silently keep the last one, so two readers of the same document
  // could disagree on what was hashed. (Numbers beyond a double, like 1e400,
  // nlohmann rejects itself.)
  std::vector<std::unordered_set<std::string>> open_objects;
  std::string duplicate;
  const json::parser_callback_t check = [&](int /*depth*/, json::parse_event_t event,
                                            json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (duplicate.empty() && !open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second) {
          duplicate = parsed.dump();
        }
        break;
      default:
        break;
    }
    return true;
  };

  json value;
  try {
    value = json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/true,
                        /*ignore_comments=*/false);
  } catch (const json::parse_error& error) {
    return fail("cannot parse ", what, ": ", without_exception_tag(error.what()), " (byte ",
                std::to_string(error.byte), ")");
  } catch (const json::exception& error) {
    return fail("cannot parse ", what, ": ", without_exception_tag(error.what()));
  }
  if (!duplicate.empty()) return fail("cannot parse ", what, ": duplicate object key ", duplicate);
  return value;
}

}  // namespace driftwatch
