#pragma once
// DSSE v1 envelopes carrying launch events and grants (DESIGN.md "Launch
// events and grants"). Everything from outside enters here; every envelope
// ends in exactly one IngestResult.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/crypto.hpp"
#include "common/result.hpp"

namespace driftwatch::ingest {

inline constexpr const char* kLaunchPayloadType = "application/vnd.driftwatch.launch.v1+json";
inline constexpr const char* kGrantPayloadType = "application/vnd.driftwatch.grant.v1+json";
inline constexpr size_t kMaxEnvelopeBytes = 1 << 20;

enum class IngestResult {
  accepted,
  duplicate,
  malformed,
  bad_signature,
  unknown_key,
  wrong_role,
  hash_mismatch,
  conflict,
  stale,
  future,
  too_large,
  orphan_grant,  // a grant whose launch is not accepted, or issued before it
  unavailable,   // valid, but not made durable (disk full, I/O error): retry
};
/// Every result, in the order above (bounded metric label values).
inline constexpr IngestResult kAllIngestResults[] = {
    IngestResult::accepted,      IngestResult::duplicate,   IngestResult::malformed,
    IngestResult::bad_signature, IngestResult::unknown_key, IngestResult::wrong_role,
    IngestResult::hash_mismatch, IngestResult::conflict,    IngestResult::stale,
    IngestResult::future,        IngestResult::too_large,   IngestResult::orphan_grant,
    IngestResult::unavailable};
std::string to_string(IngestResult result);
/// The HTTP status of a result: 202 accepted, 200 duplicate, 400 malformed,
/// 403 bad_signature/unknown_key/wrong_role, 409 conflict, 413 too_large,
/// 422 hash_mismatch/stale/future/orphan_grant, 503 unavailable.
int http_status(IngestResult result);

/// DSSE pre-authentication encoding:
/// "DSSEv1" SP len(type) SP type SP len(body) SP body.
std::string pae(std::string_view payload_type, std::string_view body);

struct Signature {
  std::string keyid;
  std::string sig;  // raw bytes (decoded)
};

/// A parsed (not yet verified) envelope.
struct Envelope {
  std::string payload_type;
  std::string payload;  // decoded body bytes
  std::vector<Signature> signatures;
};
/// Parses envelope JSON; any shape error is `malformed` with a reason.
Result<Envelope> parse_envelope(std::string_view bytes);
/// Serialises and signs (for `driftwatch sign`, tests and demos).
std::string sign_envelope(std::string_view payload_type, std::string_view payload,
                          const Ed25519PrivateKey& key);

struct LaunchRecord {
  std::string launch_id;
  std::string sandbox_id;
  std::string runtime;
  std::string issued_at;
  int64_t issued_at_unix = 0;
  std::string requested_by;
  nlohmann::json config;
  std::string config_sha256;
  std::string signed_by;  // trust name of the key
  std::string signer_keyid;
  std::string envelope_sha256;  // hex SHA-256 of the envelope bytes as received
};

struct GrantRecord {
  std::string grant_id;
  std::string launch_id;
  std::string issued_at;
  int64_t issued_at_unix = 0;
  std::string requested_by;
  std::string approved_by;
  nlohmann::json config;
  std::string config_sha256;
  std::string reason;
  std::string signed_by;
  std::string signer_keyid;
  std::string envelope_sha256;
};

/// RFC 3339 UTC timestamp ("2026-11-24T22:00:00Z", optional fraction) to
/// Unix seconds.
Result<int64_t> parse_rfc3339(std::string_view text);
std::string format_rfc3339(int64_t unix_seconds);

}  // namespace driftwatch::ingest
