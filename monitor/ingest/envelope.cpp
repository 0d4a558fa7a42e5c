#include "ingest/envelope.hpp"

#include <cstdio>
#include <ctime>
#include <optional>

#include "common/canonical_json.hpp"

namespace driftwatch::ingest {
namespace {

using nlohmann::json;

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// The decimal value of text[pos, pos + width) when all of it is digits.
std::optional<int> digits(std::string_view text, size_t pos, size_t width) {
  if (pos + width > text.size()) return std::nullopt;
  int value = 0;
  for (size_t i = pos; i < pos + width; ++i) {
    if (!is_digit(text[i])) return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

bool is_leap_year(int year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap_year(year) ? 29 : kDays[month - 1];
}

}  // namespace

std::string to_string(IngestResult result) {
  switch (result) {
    case IngestResult::accepted:
      return "accepted";
    case IngestResult::duplicate:
      return "duplicate";
    case IngestResult::malformed:
      return "malformed";
    case IngestResult::bad_signature:
      return "bad_signature";
    case IngestResult::unknown_key:
      return "unknown_key";
    case IngestResult::wrong_role:
      return "wrong_role";
    case IngestResult::hash_mismatch:
      return "hash_mismatch";
    case IngestResult::conflict:
      return "conflict";
    case IngestResult::stale:
      return "stale";
    case IngestResult::future:
      return "future";
    case IngestResult::too_large:
      return "too_large";
    case IngestResult::orphan_grant:
      return "orphan_grant";
    case IngestResult::unavailable:
      return "unavailable";
  }
  return "malformed";
}

int http_status(IngestResult result) {
  switch (result) {
    case IngestResult::accepted:
      return 202;
    case IngestResult::duplicate:
      return 200;
    case IngestResult::malformed:
      return 400;
    case IngestResult::bad_signature:
    case IngestResult::unknown_key:
    case IngestResult::wrong_role:
      return 403;
    case IngestResult::conflict:
      return 409;
    case IngestResult::too_large:
      return 413;
    case IngestResult::hash_mismatch:
    case IngestResult::stale:
    case IngestResult::future:
    case IngestResult::orphan_grant:
      return 422;
    case IngestResult::unavailable:
      return 503;
  }
  return 400;
}

std::string pae(std::string_view payload_type, std::string_view body) {
  std::string out = "DSSEv1 ";
  out += std::to_string(payload_type.size());
  out += ' ';
  out += payload_type;
  out += ' ';
  out += std::to_string(body.size());
  out += ' ';
  out += body;
  return out;
}

// DSSE defines exactly these fields; anything else is refused rather than
// ignored, so that nothing signed-looking is silently dropped.
Result<Envelope> parse_envelope(std::string_view bytes) {
  DW_TRY(doc, parse_json(bytes, "the envelope"));
  if (!doc.is_object()) {
    return fail("the envelope is a JSON ", doc.type_name(),
                ", not an object {\"payloadType\", \"payload\", \"signatures\"}");
  }
  for (const auto& [key, value] : doc.items()) {
    if (key != "payloadType" && key != "payload" && key != "signatures") {
      return fail("the envelope has an unknown field \"", key,
                  "\" (DSSE allows only payloadType, payload and signatures)");
    }
  }
  Envelope envelope;

  const auto type = doc.find("payloadType");
  if (type == doc.end() || !type->is_string()) {
    return fail("the envelope's \"payloadType\" is missing or not a string");
  }
  envelope.payload_type = type->get<std::string>();

  const auto payload = doc.find("payload");
  if (payload == doc.end() || !payload->is_string()) {
    return fail("the envelope's \"payload\" is missing or not a string");
  }
  auto body = base64_decode(payload->get_ref<const std::string&>());
  if (!body) return wrap(body.error(), "the envelope's \"payload\" is not base64: ");
  envelope.payload = std::move(*body);

  const auto signatures = doc.find("signatures");
  if (signatures == doc.end() || !signatures->is_array() || signatures->empty()) {
    return fail("the envelope's \"signatures\" is missing, not an array, or empty");
  }
  for (size_t i = 0; i < signatures->size(); ++i) {
    const json& entry = (*signatures)[i];
    const std::string where = "the envelope's signatures[" + std::to_string(i) + "]";
    if (!entry.is_object()) return fail(where, " is not an object {\"keyid\", \"sig\"}");
    for (const auto& [key, value] : entry.items()) {
      if (key != "keyid" && key != "sig") {
        return fail(where, " has an unknown field \"", key, "\" (allowed: keyid, sig)");
      }
    }
    const auto keyid = entry.find("keyid");
    if (keyid == entry.end() || !keyid->is_string()) {
      return fail(where, " has no \"keyid\" string");
    }
    const auto sig = entry.find("sig");
    if (sig == entry.end() || !sig->is_string()) return fail(where, " has no \"sig\" string");
    auto raw = base64_decode(sig->get_ref<const std::string&>());
    if (!raw) return wrap(raw.error(), where, ".sig is not base64: ");
    envelope.signatures.push_back(Signature{keyid->get<std::string>(), std::move(*raw)});
  }
  return envelope;
}

std::string sign_envelope(std::string_view payload_type, std::string_view payload,
                          const Ed25519PrivateKey& key) {
  const Ed25519PublicKey public_key = key.public_key();
  json envelope = json::object();
  envelope["payloadType"] = std::string(payload_type);
  envelope["payload"] = base64_encode(payload);
  envelope["signatures"] =
      json::array({json{{"keyid", public_key.keyid()},
                        {"sig", base64_encode(key.sign(pae(payload_type, payload)))}}});
  // One line, no whitespace: an envelope can be appended to a journal as is.
  // Invalid UTF-8 in a payload type is replaced, not thrown: parse_envelope
  // will refuse such an envelope with a reason.
  return envelope.dump(-1, ' ', false, json::error_handler_t::replace);
}

// RFC 3339 section 5.6 date-time: full-date "T" full-time, with "t"/"z"
// accepted in lower case as the RFC allows. Seconds may be 60 (a leap
// second, which timegm carries into the next minute); a fraction is
// truncated to whole seconds.
Result<int64_t> parse_rfc3339(std::string_view text) {
  const auto bad = [&](std::string_view why) {
    return fail("\"", text, "\" is not an RFC 3339 timestamp like 2026-11-24T22:00:00Z: ", why);
  };
  if (text.size() > 64) return bad("too long");
  const auto year = digits(text, 0, 4);
  const auto month = digits(text, 5, 2);
  const auto day = digits(text, 8, 2);
  const auto hour = digits(text, 11, 2);
  const auto minute = digits(text, 14, 2);
  const auto second = digits(text, 17, 2);
  if (!year || !month || !day || !hour || !minute || !second || text[4] != '-' || text[7] != '-' ||
      (text[10] != 'T' && text[10] != 't') || text[13] != ':' || text[16] != ':') {
    return bad("expected YYYY-MM-DDTHH:MM:SS");
  }
  if (*month < 1 || *month > 12) return bad("month out of range");
  if (*day < 1 || *day > days_in_month(*year, *month)) return bad("day out of range");
  if (*hour > 23) return bad("hour out of range");
  if (*minute > 59) return bad("minute out of range");
  if (*second > 60) return bad("second out of range");

  size_t pos = 19;
  if (pos < text.size() && text[pos] == '.') {
    const size_t start = ++pos;
    while (pos < text.size() && is_digit(text[pos])) ++pos;
    if (pos == start) return bad("a '.' must be followed by digits");
  }
  int offset_seconds = 0;
  if (pos < text.size() && (text[pos] == 'Z' || text[pos] == 'z')) {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '+' ? 1 : -1;
    const auto offset_hour = digits(text, pos + 1, 2);
    const auto offset_minute = digits(text, pos + 4, 2);
    if (!offset_hour || !offset_minute || text[pos + 3] != ':') {
      return bad("a time offset is +HH:MM or -HH:MM");
    }
    if (*offset_hour > 23 || *offset_minute > 59) return bad("time offset out of range");
    offset_seconds = sign * (*offset_hour * 3600 + *offset_minute * 60);
    pos += 6;
  } else {
    return bad("missing time zone (Z or +HH:MM)");
  }
  if (pos != text.size()) return bad("trailing characters");

  std::tm tm{};
  tm.tm_year = *year - 1900;
  tm.tm_mon = *month - 1;
  tm.tm_mday = *day;
  tm.tm_hour = *hour;
  tm.tm_min = *minute;
  tm.tm_sec = *second;
  const time_t utc = timegm(&tm);
  return static_cast<int64_t>(utc) - offset_seconds;
}

std::string format_rfc3339(int64_t unix_seconds) {
  const time_t t = static_cast<time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "1970-01-01T00:00:00Z";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buffer;
}

}  // namespace driftwatch::ingest
