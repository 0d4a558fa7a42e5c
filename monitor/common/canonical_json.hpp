#pragma once
// RFC 8785 JSON Canonicalization Scheme (JCS). Every hash in driftwatch is
// over these bytes: object keys sorted by UTF-16 code units, no whitespace,
// numbers in ECMAScript shortest form, strings escaped minimally.

#include <string>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace driftwatch {

/// The JCS bytes of a JSON value. Fails on NaN/Infinity (not JSON) and on
/// strings that are not valid UTF-8.
Result<std::string> canonical_json(const nlohmann::json& value);

/// Parses JSON text strictly (no comments, no trailing garbage, depth-bounded);
/// the error names `what` ("config.json", "launch event").
Result<nlohmann::json> parse_json(std::string_view text, std::string_view what);

}  // namespace driftwatch
