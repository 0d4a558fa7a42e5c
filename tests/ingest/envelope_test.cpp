#include "ingest/envelope.hpp"

#include <set>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace driftwatch::ingest;
using driftwatch::base64_encode;
using driftwatch::Ed25519PrivateKey;
using nlohmann::json;

namespace {

Ed25519PrivateKey test_key() {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  return *key;
}

// An envelope document with one signature whose bytes need not verify.
json envelope_doc() {
  return json{{"payloadType", kLaunchPayloadType},
              {"payload", base64_encode("{}")},
              {"signatures", json::array({json{{"keyid", "abc"}, {"sig", base64_encode("sig")}}})}};
}

void require_malformed(const std::string& bytes, const std::string& named) {
  INFO("envelope: " << bytes);
  auto parsed = parse_envelope(bytes);
  REQUIRE_FALSE(parsed);
  CHECK_THAT(parsed.error().message, Catch::Contains(named));
}

}  // namespace

TEST_CASE("envelope: every result has its contract name and HTTP status", "[ingest]") {
  const std::pair<IngestResult, std::pair<const char*, int>> expected[] = {
      {IngestResult::accepted, {"accepted", 202}},
      {IngestResult::duplicate, {"duplicate", 200}},
      {IngestResult::malformed, {"malformed", 400}},
      {IngestResult::bad_signature, {"bad_signature", 403}},
      {IngestResult::unknown_key, {"unknown_key", 403}},
      {IngestResult::wrong_role, {"wrong_role", 403}},
      {IngestResult::hash_mismatch, {"hash_mismatch", 422}},
      {IngestResult::conflict, {"conflict", 409}},
      {IngestResult::stale, {"stale", 422}},
      {IngestResult::future, {"future", 422}},
      {IngestResult::too_large, {"too_large", 413}},
      {IngestResult::orphan_grant, {"orphan_grant", 422}},
      {IngestResult::unavailable, {"unavailable", 503}},
  };
  std::set<std::string> names;
  for (const auto& [result, name_and_status] : expected) {
    CHECK(to_string(result) == name_and_status.first);
    CHECK(http_status(result) == name_and_status.second);
    names.insert(to_string(result));
  }
  CHECK(names.size() == std::size(expected));
  CHECK(names.size() == std::size(kAllIngestResults));
  for (const IngestResult result : kAllIngestResults) CHECK(names.contains(to_string(result)));
}

TEST_CASE("envelope: PAE is the DSSE v1 pre-authentication encoding", "[ingest]") {
  // The example of the DSSE protocol specification.
  CHECK(pae("http://example.com/HelloWorld", "hello world") ==
        "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
  CHECK(pae("", "") == "DSSEv1 0  0 ");
  // Lengths are of bytes, not characters.
  CHECK(pae("t", "\xc3\xa9") == "DSSEv1 1 t 2 \xc3\xa9");
}

TEST_CASE("envelope: a signed envelope is one line that parses back and verifies", "[ingest]") {
  const auto key = test_key();
  const std::string body = R"({"launch_id":"L-1"})";
  const std::string text = sign_envelope(kLaunchPayloadType, body, key);
  CHECK(text.find('\n') == std::string::npos);

  auto envelope = parse_envelope(text);
  REQUIRE(envelope);
  CHECK(envelope->payload_type == kLaunchPayloadType);
  CHECK(envelope->payload == body);
  REQUIRE(envelope->signatures.size() == 1);
  CHECK(envelope->signatures[0].keyid == key.public_key().keyid());
  CHECK(envelope->signatures[0].sig.size() == 64);
  CHECK(key.public_key().verify(pae(envelope->payload_type, envelope->payload),
                                envelope->signatures[0].sig));
  // The signature covers the type: the same body under the grant type fails.
  CHECK_FALSE(key.public_key().verify(pae(kGrantPayloadType, envelope->payload),
                                      envelope->signatures[0].sig));
}

TEST_CASE("envelope: several signatures are kept in order", "[ingest]") {
  json doc = envelope_doc();
  doc["signatures"].push_back(json{{"keyid", "def"}, {"sig", base64_encode("two")}});
  auto envelope = parse_envelope(doc.dump());
  REQUIRE(envelope);
  REQUIRE(envelope->signatures.size() == 2);
  CHECK(envelope->signatures[0].keyid == "abc");
  CHECK(envelope->signatures[1].keyid == "def");
  CHECK(envelope->signatures[1].sig == "two");
}

TEST_CASE("envelope: shape errors are refused naming what is wrong", "[ingest]") {
  require_malformed("", "envelope");
  require_malformed("{\"payloadType\":", "envelope");
  require_malformed("[]", "not an object");
  require_malformed(envelope_doc().dump() + " x", "envelope");

  json doc = envelope_doc();
  doc.erase("payloadType");
  require_malformed(doc.dump(), "payloadType");
  doc = envelope_doc();
  doc["payloadType"] = 7;
  require_malformed(doc.dump(), "payloadType");
  doc = envelope_doc();
  doc.erase("payload");
  require_malformed(doc.dump(), "payload");
  doc = envelope_doc();
  doc["payload"] = "e30";  // "{}" without its padding
  require_malformed(doc.dump(), "\"payload\" is not base64");
  doc = envelope_doc();
  doc["payload"] = "e3\n0=";
  require_malformed(doc.dump(), "\"payload\" is not base64");
  doc = envelope_doc();
  doc["signatures"] = json::array();
  require_malformed(doc.dump(), "signatures");
  doc = envelope_doc();
  doc["signatures"] = json::object();
  require_malformed(doc.dump(), "signatures");
  doc = envelope_doc();
  doc["signatures"][0].erase("keyid");
  require_malformed(doc.dump(), "signatures[0] has no \"keyid\"");
  doc = envelope_doc();
  doc["signatures"][0]["sig"] = "not base64!";
  require_malformed(doc.dump(), "signatures[0].sig is not base64");
  doc = envelope_doc();
  doc["signatures"][0] = "abc";
  require_malformed(doc.dump(), "signatures[0] is not an object");
}

TEST_CASE("envelope: a byte order mark or invalid UTF-8 is refused, and the reason is UTF-8",
          "[ingest]") {
  const std::string text = envelope_doc().dump();
  require_malformed("\xEF\xBB\xBF" + text, "byte order mark");
  // A BOM after leading whitespace is no BOM but a stray character.
  CHECK_FALSE(parse_envelope(" \xEF\xBB\xBF" + text));
  for (const std::string& bad :
       {std::string("{\"payloadType\":\"\xff\"}"), text.substr(0, text.size() - 1) + ",\"\xc3\":1}",
        text + "\xe2\x82"}) {
    auto parsed = parse_envelope(bad);
    REQUIRE_FALSE(parsed);
    CHECK_THAT(parsed.error().message, Catch::Contains("UTF-8"));
    CHECK_NOTHROW(json(parsed.error().message).dump());
  }
  // The payload's own bytes are the payload parser's to judge: the envelope
  // carries any base64.
  json doc = envelope_doc();
  doc["payload"] = base64_encode("\xEF\xBB\xBF{}");
  auto envelope = parse_envelope(doc.dump());
  REQUIRE(envelope);
  CHECK(envelope->payload == "\xEF\xBB\xBF{}");
}

TEST_CASE("envelope: fields DSSE does not define are refused, not ignored", "[ingest]") {
  json doc = envelope_doc();
  doc["payloadtype"] = "x";
  require_malformed(doc.dump(), "unknown field \"payloadtype\"");
  doc = envelope_doc();
  doc["signatures"][0]["cert"] = "x";
  require_malformed(doc.dump(), "unknown field \"cert\"");
  // Two payloads, of which a lax reader would take the last.
  require_malformed(R"({"payloadType":"t","payload":"e30=","payload":"W10=","signatures":[]})",
                    "duplicate");
}

TEST_CASE("rfc3339: parses UTC, fractions and offsets to Unix seconds", "[ingest]") {
  CHECK(parse_rfc3339("2026-11-24T22:00:00Z") == 1795557600);
  CHECK(parse_rfc3339("1970-01-01T00:00:00Z") == 0);
  CHECK(parse_rfc3339("2024-02-29T23:59:59Z") == 1709251199);
  CHECK(parse_rfc3339("2026-11-24T22:00:00.999999Z") == 1795557600);
  CHECK(parse_rfc3339("2026-11-24T23:00:00+01:00") == 1795557600);
  CHECK(parse_rfc3339("2026-11-24T16:30:00-05:30") == 1795557600);
  CHECK(parse_rfc3339("2026-11-24t22:00:00z") == 1795557600);
  // A leap second is carried into the next minute.
  CHECK(parse_rfc3339("2016-12-31T23:59:60Z") == *parse_rfc3339("2017-01-01T00:00:00Z"));
}

TEST_CASE("rfc3339: anything but a valid RFC 3339 date-time is refused", "[ingest]") {
  for (const char* bad : {"",
                          "2026-11-24",
                          "2026-11-24T22:00:00",
                          "2026-11-24 22:00:00Z",
                          "2026-11-24T22:00Z",
                          "2026-13-01T00:00:00Z",
                          "2026-00-01T00:00:00Z",
                          "2026-02-29T00:00:00Z",
                          "2026-04-31T00:00:00Z",
                          "2026-11-24T24:00:00Z",
                          "2026-11-24T22:60:00Z",
                          "2026-11-24T22:00:61Z",
                          "2026-11-24T22:00:00.Z",
                          "2026-11-24T22:00:00ZZ",
                          "2026-11-24T22:00:00+0100",
                          "2026-11-24T22:00:00+24:00",
                          "2026-11-24T22:00:00 Z",
                          "+2026-11-24T22:00:00Z",
                          "2026-1-24T22:00:00Z",
                          "１９７０-01-01T00:00:00Z",
                          "1795557600"}) {
    INFO("timestamp: " << bad);
    auto parsed = parse_rfc3339(bad);
    REQUIRE_FALSE(parsed);
    CHECK_THAT(parsed.error().message, Catch::Contains("RFC 3339"));
  }
}

TEST_CASE("rfc3339: formatting gives back what parsing read", "[ingest]") {
  CHECK(format_rfc3339(0) == "1970-01-01T00:00:00Z");
  CHECK(format_rfc3339(1795557600) == "2026-11-24T22:00:00Z");
  for (const int64_t t : {int64_t{1}, int64_t{951868800}, int64_t{1709251199}, int64_t{4102444800}})
    CHECK(parse_rfc3339(format_rfc3339(t)) == t);
}
