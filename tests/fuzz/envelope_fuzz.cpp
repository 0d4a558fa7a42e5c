// libFuzzer target: DSSE envelopes from outside (a journal line, a POST body)
// through parse_envelope, and RFC 3339 timestamps (issued_at) through
// parse_rfc3339. Both run on every input.
//
// Checks, for any input bytes:
//   - parse_envelope gives an envelope or an error that says something;
//   - a parsed envelope has at least one signature and only DSSE's fields,
//     its base64 is canonical (one text per byte string), and written back out
//     (the same fields, base64 encoded) it parses to the same envelope;
//   - re-signing its payload with a key of our own gives an envelope that
//     parses back to the same type and payload and whose signature verifies
//     over PAE(type, payload);
//   - PAE is "DSSEv1 <len> <type> <len> <body>" byte for byte;
//   - all of this for the envelope with one node replaced by a value of each
//     JSON type in turn, too (type flips, fuzz_support.hpp);
//   - a timestamp parse_rfc3339 accepts and format_rfc3339 writes back
//     parses to the same second.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "fuzz_support.hpp"
#include "ingest/envelope.hpp"

namespace ingest = driftwatch::ingest;

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("envelope_fuzz", what, detail);
}

const driftwatch::Ed25519PrivateKey& signing_key() {
  static const driftwatch::Ed25519PrivateKey key = [] {
    auto generated = driftwatch::Ed25519PrivateKey::generate();
    if (!generated) report("cannot generate a key", generated.error().message);
    return *generated;
  }();
  return key;
}

bool same(const ingest::Envelope& a, const ingest::Envelope& b) {
  if (a.payload_type != b.payload_type || a.payload != b.payload) return false;
  if (a.signatures.size() != b.signatures.size()) return false;
  for (size_t i = 0; i < a.signatures.size(); ++i) {
    if (a.signatures[i].keyid != b.signatures[i].keyid ||
        a.signatures[i].sig != b.signatures[i].sig)
      return false;
  }
  return true;
}

void check_pae(const ingest::Envelope& envelope) {
  const std::string expected = "DSSEv1 " + std::to_string(envelope.payload_type.size()) + " " +
                               envelope.payload_type + " " +
                               std::to_string(envelope.payload.size()) + " " + envelope.payload;
  if (ingest::pae(envelope.payload_type, envelope.payload) != expected) report("PAE is not DSSE's");
}

void check_envelope(std::string_view text) {
  auto envelope = ingest::parse_envelope(text);
  if (!envelope) {
    if (envelope.error().message.empty()) report("parse_envelope failed without a message", text);
    return;
  }
  if (envelope->signatures.empty()) report("an envelope without signatures was accepted", text);
  check_pae(*envelope);

  // What the document says, read independently of parse_envelope: only
  // DSSE's fields, and base64 that is canonical (strict decoding admits one
  // text per byte string, so the envelope's hash names its content).
  auto doc = driftwatch::parse_json(text, "envelope");
  if (!doc || !doc->is_object()) report("parse_envelope accepted what is not a JSON object", text);
  for (const auto& [key, value] : doc->items())
    if (key != "payloadType" && key != "payload" && key != "signatures")
      report("an envelope with an unknown field was accepted", key);
  if ((*doc)["payload"] != driftwatch::base64_encode(envelope->payload))
    report("a payload whose base64 is not canonical was accepted", text);
  const auto& signatures = (*doc)["signatures"];
  if (signatures.size() != envelope->signatures.size()) report("signatures were lost", text);
  for (size_t i = 0; i < signatures.size(); ++i) {
    for (const auto& [key, value] : signatures[i].items())
      if (key != "keyid" && key != "sig")
        report("a signature with an unknown field was accepted", key);
    if (signatures[i]["keyid"] != envelope->signatures[i].keyid ||
        signatures[i]["sig"] != driftwatch::base64_encode(envelope->signatures[i].sig))
      report("a signature does not read as written", text);
  }

  // Written back out field by field, it reads the same.
  nlohmann::json again = {{"payloadType", envelope->payload_type},
                          {"payload", driftwatch::base64_encode(envelope->payload)},
                          {"signatures", nlohmann::json::array()}};
  for (const auto& s : envelope->signatures)
    again["signatures"].push_back({{"keyid", s.keyid}, {"sig", driftwatch::base64_encode(s.sig)}});
  auto reparsed = ingest::parse_envelope(again.dump());
  if (!reparsed) report("the envelope written back does not parse", reparsed.error().message);
  if (!same(*envelope, *reparsed)) report("the envelope written back differs", text);

  // Signed again by us, it verifies.
  const auto& key = signing_key();
  const std::string resigned =
      ingest::sign_envelope(envelope->payload_type, envelope->payload, key);
  auto ours = ingest::parse_envelope(resigned);
  if (!ours) report("an envelope from sign_envelope does not parse", ours.error().message);
  if (ours->payload_type != envelope->payload_type || ours->payload != envelope->payload)
    report("sign_envelope changed the type or payload", resigned);
  if (ours->signatures.size() != 1 || ours->signatures[0].keyid != key.public_key().keyid())
    report("sign_envelope's signature names another key", resigned);
  if (!key.public_key().verify(ingest::pae(ours->payload_type, ours->payload),
                               ours->signatures[0].sig))
    report("sign_envelope's signature does not verify", resigned);
}

void check_timestamp(std::string_view text) {
  auto seconds = ingest::parse_rfc3339(text);
  if (!seconds) {
    if (seconds.error().message.empty()) report("parse_rfc3339 failed without a message", text);
    return;
  }
  // format_rfc3339 writes four-digit years only.
  if (*seconds < -62167219200 || *seconds > 253402300799) return;
  const std::string written = ingest::format_rfc3339(*seconds);
  auto again = ingest::parse_rfc3339(written);
  if (!again || *again != *seconds) report("a formatted timestamp does not read back", written);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_envelope(text);
  check_timestamp(text);
  // The same for the envelope with one node replaced by each JSON type.
  driftwatch::fuzz::for_each_type_flip(text,
                                       [](const std::string& flipped) { check_envelope(flipped); });
  return 0;
}
