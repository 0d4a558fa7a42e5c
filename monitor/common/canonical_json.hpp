#pragma once
// RFC 8785 JSON Canonicalization Scheme (JCS). Every hash in driftwatch is
// over these bytes: object keys sorted by UTF-16 code units, no whitespace,
// numbers in ECMAScript shortest form, strings escaped minimally.

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace driftwatch {

/// The JCS bytes of a JSON value. Fails on NaN/Infinity (not JSON) and on
/// strings that are not valid UTF-8.
Result<std::string> canonical_json(const nlohmann::json& value);

/// The largest JSON text parse_json reads unless told otherwise (4 MiB).
inline constexpr std::size_t kMaxJsonTextBytes = std::size_t{4} * 1024 * 1024;

/// Parses JSON text strictly (no comments, no trailing garbage, depth-bounded,
/// at most `max_bytes`); the error names `what` ("config.json", "launch event").
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what,
                                  std::size_t max_bytes = kMaxJsonTextBytes);

/// True if `text` is well-formed UTF-8 (no overlong forms, no surrogates,
/// nothing above U+10FFFF), the rule parse_json and canonical_json apply.
bool is_valid_utf8(std::string_view text);

}  // namespace driftwatch
