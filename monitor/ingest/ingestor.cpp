#include "ingest/ingestor.hpp"
#include "common/file_io.hpp"
#include "common/posix.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <expected>
#include <span>
#include <utility>

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"
#include "projection/declared.hpp"

namespace driftwatch::ingest {
namespace {

using nlohmann::json;

constexpr size_t kMaxIdLength = 256;

// Key ids and hashes are long; a reason shows enough to grep for.
std::string short_hex(std::string_view hex) {
  return hex.size() <= 12 ? std::string(hex) : std::string(hex.substr(0, 12)) + "…";
}

// Text from the envelope quoted in a reason: bounded, on one line, ASCII (a
// cut could split a UTF-8 sequence, and reasons go into JSON answers).
std::string printable(std::string_view text) {
  constexpr size_t kMaxQuoted = 100;
  std::string out;
  for (const char c : text.substr(0, kMaxQuoted)) {
    const auto byte = static_cast<unsigned char>(c);
    out.push_back(byte < 0x20 || byte >= 0x7F ? '?' : c);
  }
  if (text.size() > kMaxQuoted) out += "...";
  return out;
}

std::string payload_type_of(EnvelopeKind kind) {
  return kind == EnvelopeKind::launch ? kLaunchPayloadType : kGrantPayloadType;
}

std::string endpoint_of(EnvelopeKind kind) {
  return kind == EnvelopeKind::launch ? "POST /v1/launch-events" : "POST /v1/grants";
}

// "launch L-1" / "grant G-7": how reasons name an event.
std::string event_name(EnvelopeKind kind, std::string_view id) {
  return (kind == EnvelopeKind::launch ? "launch " : "grant ") + std::string(id);
}

// A reason goes into logs and JSON answers, and quotes text from the
// envelope (field names, capability names from its config): it is kept on
// one line (control characters become '?', so a sender cannot forge log
// lines) and bounded, cut at a UTF-8 character boundary.
std::string one_line(std::string text) {
  constexpr size_t kMaxReason = 1000;
  for (char& c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) c = '?';
  }
  if (text.size() > kMaxReason) {
    size_t cut = kMaxReason;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
    text.resize(cut);
    text += "...";
  }
  return text;
}

IngestOutcome rejection(IngestResult result, std::string reason, std::string id = {},
                        std::optional<EnvelopeKind> kind = std::nullopt) {
  return IngestOutcome{result, one_line(std::move(reason)), std::move(id), kind};
}

IngestOutcome too_large(std::optional<uint64_t> size) {
  const std::string limit = std::to_string(kMaxEnvelopeBytes) + " bytes (1 MiB)";
  return rejection(IngestResult::too_large,
                   size ? "the envelope is " + std::to_string(*size) +
                              " bytes, larger than the limit of " + limit
                        : "the envelope is larger than the limit of " + limit);
}

// Launch and grant ids end up in metric labels, file names of reports and
// URLs, so they are plain tokens.
bool is_id(std::string_view text) {
  if (text.empty() || text.size() > kMaxIdLength) return false;
  for (const char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

// A sandbox id is whatever the runtime or the cgroup configuration calls the
// sandbox ("agent-7", "/agents.slice/box@1"): any printable text, bounded.
bool is_sandbox_id(std::string_view text) {
  if (text.empty() || text.size() > kMaxIdLength) return false;
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7F) return false;
  }
  return true;
}

bool is_lower_hex_sha256(std::string_view text) {
  if (text.size() != 64) return false;
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

enum class FieldRule { id, sandbox_id, text, timestamp, object, sha256 };

struct FieldSpec {
  const char* name;
  FieldRule rule;
};

constexpr FieldSpec kLaunchFields[] = {
    {"launch_id", FieldRule::id},         {"sandbox_id", FieldRule::sandbox_id},
    {"runtime", FieldRule::id},           {"issued_at", FieldRule::timestamp},
    {"requested_by", FieldRule::text},    {"config", FieldRule::object},
    {"config_sha256", FieldRule::sha256},
};
constexpr FieldSpec kGrantFields[] = {
    {"grant_id", FieldRule::id},         {"launch_id", FieldRule::id},
    {"issued_at", FieldRule::timestamp}, {"requested_by", FieldRule::text},
    {"approved_by", FieldRule::text},    {"reason", FieldRule::text},
    {"config", FieldRule::object},       {"config_sha256", FieldRule::sha256},
};

// Checks one field; "" when it is fine, else what is wrong with it.
std::string field_problem(const json& payload, const FieldSpec& spec) {
  const auto it = payload.find(spec.name);
  if (it == payload.end()) return std::string("has no \"") + spec.name + "\"";
  const std::string quoted = std::string("\"") + spec.name + "\"";
  if (spec.rule == FieldRule::object) {
    return it->is_object() ? "" : quoted + " must be a JSON object (the OCI runtime config)";
  }
  if (!it->is_string()) return quoted + " must be a string";
  const std::string& value = it->get_ref<const std::string&>();
  switch (spec.rule) {
    case FieldRule::id:
      return is_id(value) ? "" : quoted + " must be 1 to 256 characters of A-Z a-z 0-9 . _ : -";
    case FieldRule::sandbox_id:
      return is_sandbox_id(value) ? ""
                                  : quoted + " must be 1 to 256 bytes without control characters";
    case FieldRule::text:
      return value.empty() ? quoted + " must not be empty" : "";
    case FieldRule::timestamp: {
      auto parsed = parse_rfc3339(value);
      return parsed ? "" : quoted + " is invalid: " + parsed.error().message;
    }
    case FieldRule::sha256:
      return is_lower_hex_sha256(value) ? "" : quoted + " must be 64 lowercase hex digits";
    case FieldRule::object:
      break;
  }
  return "";
}

}  // namespace

std::string payload_problem(EnvelopeKind kind, const json& payload) {
  if (!payload.is_object())
    return std::string("is a JSON ") + payload.type_name() + ", not an object";
  const auto fields = kind == EnvelopeKind::launch ? std::span<const FieldSpec>(kLaunchFields)
                                                   : std::span<const FieldSpec>(kGrantFields);
  for (const auto& spec : fields) {
    if (auto problem = field_problem(payload, spec); !problem.empty()) return problem;
  }
  // A signed field nobody reads would look enforced to an auditor and is not.
  for (const auto& [key, value] : payload.items()) {
    bool known = false;
    for (const auto& spec : fields) known = known || key == spec.name;
    if (!known) return "has an unknown field \"" + key + "\"";
  }
  // The config is judged against live sandboxes for as long as the launch
  // lives: one whose declared projection cannot be computed is refused here,
  // not discovered later by the sweep.
  if (auto declared = projection::declared_projection(payload.at("config")); !declared) {
    return "has a config whose declared projection cannot be computed: " + declared.error().message;
  }
  return "";
}

namespace {

// An envelope whose shape, signature and signer's role are good: what is
// left to decide needs the ingestor's state.
struct Checked {
  EnvelopeKind kind = EnvelopeKind::launch;
  std::string id;
  LaunchRecord launch;  // when kind == launch
  GrantRecord grant;    // when kind == grant
  std::string payload_key;
  std::string config_sha256;           // as claimed
  std::string computed_config_sha256;  // of the config as received
  std::string signer;                  // "key 3fa2… (cp-1)"
};

template <class Record>
void fill_common(Record& record, const json& payload) {
  record.launch_id = payload.at("launch_id").get<std::string>();
  record.issued_at = payload.at("issued_at").get<std::string>();
  record.issued_at_unix = *parse_rfc3339(record.issued_at);
  record.requested_by = payload.at("requested_by").get<std::string>();
  record.config = payload.at("config");
  record.config_sha256 = payload.at("config_sha256").get<std::string>();
}

// Shape, payload type, signature and role, in the contract's order. Needs
// nothing but the trust store, so restore() re-runs it on every stored envelope.
std::expected<Checked, IngestOutcome> check_envelope(const TrustStore& trust,
                                                     std::string_view bytes,
                                                     std::optional<EnvelopeKind> expected) {
  auto envelope = parse_envelope(bytes);
  if (!envelope)
    return std::unexpected(rejection(IngestResult::malformed, envelope.error().message));

  std::optional<EnvelopeKind> kind;
  if (envelope->payload_type == kLaunchPayloadType) kind = EnvelopeKind::launch;
  if (envelope->payload_type == kGrantPayloadType) kind = EnvelopeKind::grant;
  if (expected && kind != expected) {
    return std::unexpected(
        rejection(IngestResult::malformed, "this endpoint (" + endpoint_of(*expected) + ") takes " +
                                               to_string(*expected) + " envelopes of payloadType " +
                                               payload_type_of(*expected) + ", not \"" +
                                               printable(envelope->payload_type) + "\""));
  }
  if (!kind) {
    return std::unexpected(rejection(IngestResult::malformed,
                                     "payloadType \"" + printable(envelope->payload_type) +
                                         "\" is neither a launch event (" + kLaunchPayloadType +
                                         ") nor a grant (" + kGrantPayloadType + ")"));
  }

  Checked checked;
  checked.kind = *kind;
  const std::string what = "the " + to_string(*kind) + " payload";
  auto payload = parse_json(envelope->payload, what);
  if (!payload) {
    return std::unexpected(
        rejection(IngestResult::malformed, payload.error().message, {}, checked.kind));
  }
  if (!payload->is_object()) {
    return std::unexpected(rejection(
        IngestResult::malformed, what + " is a JSON " + payload->type_name() + ", not an object",
        {}, checked.kind));
  }
  const auto id_field = *kind == EnvelopeKind::launch ? "launch_id" : "grant_id";
  if (const auto id = payload->find(id_field);
      id != payload->end() && id->is_string() && is_id(id->get_ref<const std::string&>())) {
    checked.id = id->get<std::string>();
  }
  const std::string named = checked.id.empty() ? what : event_name(*kind, checked.id);
  const auto malformed = [&](const std::string& problem) {
    return std::unexpected(
        rejection(IngestResult::malformed, named + " " + problem, checked.id, checked.kind));
  };
  if (auto problem = payload_problem(*kind, *payload); !problem.empty()) return malformed(problem);

  // Every signature present must verify, whatever its position: a bad one
  // cannot hide behind a good one or the reverse. A forged signature by a
  // trusted key (bad_signature) outranks one by a key we do not know
  // (unknown_key), so the answer does not depend on the order either.
  const std::string pae_bytes = pae(envelope->payload_type, envelope->payload);
  const TrustedKey* signer = nullptr;
  std::string unknown_keyids;
  std::vector<const TrustedKey*> signers;
  for (size_t i = 0; i < envelope->signatures.size(); ++i) {
    const Signature& candidate = envelope->signatures[i];
    const TrustedKey* key = trust.find(candidate.keyid);
    if (key == nullptr) {
      unknown_keyids +=
          (unknown_keyids.empty() ? "" : ", ") + short_hex(printable(candidate.keyid));
      continue;
    }
    if (!key->key.verify(pae_bytes, candidate.sig)) {
      return std::unexpected(rejection(IngestResult::bad_signature,
                                       "signatures[" + std::to_string(i) + "] on " + named +
                                           " by key " + short_hex(key->keyid) + " (" + key->name +
                                           ") does not verify; every signature on an envelope must",
                                       checked.id, checked.kind));
    }
    signers.push_back(key);
  }
  if (!unknown_keyids.empty()) {
    return std::unexpected(rejection(
        IngestResult::unknown_key,
        signers.empty()
            ? named + " is signed only by keys not in the trust store (" + unknown_keyids + ")"
            : named + " also carries signatures by keys not in the trust store (" + unknown_keyids +
                  "); every signature must be by a trusted key",
        checked.id, checked.kind));
  }
  const TrustRole needed =
      *kind == EnvelopeKind::launch ? TrustRole::control_plane : TrustRole::operator_;
  for (const TrustedKey* key : signers) {
    if (key->role != needed) {
      return std::unexpected(rejection(
          IngestResult::wrong_role,
          "signature on " + named + " by key " + short_hex(key->keyid) + " (" + key->name +
              ") is valid but role " + to_string(key->role) + " may not sign " +
              (*kind == EnvelopeKind::launch ? "launch events" : "grants") + " (only " +
              to_string(needed) + " may)",
          checked.id, checked.kind));
    }
  }
  signer = signers.front();
  checked.signer = "key " + short_hex(signer->keyid) + " (" + signer->name + ")";

  auto canonical_payload = canonical_json(*payload);
  auto canonical_config = canonical_json(payload->at("config"));
  if (!canonical_payload || !canonical_config) {
    const Error& error = canonical_payload ? canonical_config.error() : canonical_payload.error();
    return malformed("cannot be canonicalised: " + error.message);
  }
  checked.payload_key = to_string(*kind) + ":" + sha256_hex(*canonical_payload);
  checked.computed_config_sha256 = sha256_hex(*canonical_config);
  checked.config_sha256 = payload->at("config_sha256").get<std::string>();

  const std::string envelope_sha256 = sha256_hex(bytes);
  if (*kind == EnvelopeKind::launch) {
    LaunchRecord& record = checked.launch;
    fill_common(record, *payload);
    record.sandbox_id = payload->at("sandbox_id").get<std::string>();
    record.runtime = payload->at("runtime").get<std::string>();
    record.signed_by = signer->name;
    record.signer_keyid = signer->keyid;
    record.envelope_sha256 = envelope_sha256;
  } else {
    GrantRecord& record = checked.grant;
    fill_common(record, *payload);
    record.grant_id = checked.id;
    record.approved_by = payload->at("approved_by").get<std::string>();
    record.reason = payload->at("reason").get<std::string>();
    record.signed_by = signer->name;
    record.signer_keyid = signer->keyid;
    record.envelope_sha256 = envelope_sha256;
  }
  return checked;
}

}  // namespace

std::string to_string(EnvelopeKind kind) {
  return kind == EnvelopeKind::launch ? "launch" : "grant";
}

Ingestor::Ingestor(TrustStore trust, IngestOptions options)
    : trust_(std::move(trust)), options_(options) {}

void Ingestor::tally(const IngestOutcome& outcome, std::optional<EnvelopeKind> expected) {
  const EnvelopeKind counted = outcome.kind.value_or(expected.value_or(EnvelopeKind::launch));
  ++counts_[{counted, outcome.result}];
}

std::variant<IngestOutcome, PendingAccept> Ingestor::begin(std::string_view envelope_bytes,
                                                           std::optional<EnvelopeKind> expected,
                                                           int64_t now_unix) {
  auto evaluated = evaluate(envelope_bytes, expected, now_unix);
  if (auto* outcome = std::get_if<IngestOutcome>(&evaluated)) {
    tally(*outcome, expected);
    return evaluated;
  }
  auto& pending = std::get<PendingAccept>(evaluated);
  pending_.insert(pending.envelope_sha256);
  pending_.insert(pending.payload_key);
  pending_.insert(to_string(pending.kind) + " id:" + pending.id);
  return evaluated;
}

IngestOutcome Ingestor::finish(PendingAccept pending, const Result<void>& stored) {
  pending_.erase(pending.envelope_sha256);
  pending_.erase(pending.payload_key);
  pending_.erase(to_string(pending.kind) + " id:" + pending.id);
  IngestOutcome outcome;
  outcome.id = pending.id;
  outcome.kind = pending.kind;
  if (!stored) {
    // Valid, but not durable: nothing changes, and the sender is told to
    // retry (503), not that it sent something wrong.
    outcome.result = IngestResult::unavailable;
    outcome.reason = one_line(event_name(pending.kind, pending.id) +
                              " passed every check but could not be stored (" +
                              stored.error().message + "); nothing changed, retry later");
  } else {
    outcome.result = IngestResult::accepted;
    outcome.reason = std::move(pending.reason);
    if (pending.kind == EnvelopeKind::launch) {
      remember_launch(std::move(pending.launch), std::move(pending.payload_key));
    } else {
      remember_grant(std::move(pending.grant), std::move(pending.payload_key));
    }
  }
  tally(outcome, pending.kind);
  return outcome;
}

IngestOutcome Ingestor::ingest(std::string_view envelope_bytes,
                               std::optional<EnvelopeKind> expected, int64_t now_unix) {
  auto begun = begin(envelope_bytes, expected, now_unix);
  if (auto* outcome = std::get_if<IngestOutcome>(&begun)) return std::move(*outcome);
  return finish(std::move(std::get<PendingAccept>(begun)), Result<void>{});
}

IngestOutcome Ingestor::reject_too_large(EnvelopeKind kind,
                                         std::optional<uint64_t> declared_length) {
  // Counted under the endpoint's kind, like any envelope of unknown kind.
  ++counts_[{kind, IngestResult::too_large}];
  return too_large(declared_length);
}

std::variant<IngestOutcome, PendingAccept> Ingestor::evaluate(std::string_view bytes,
                                                              std::optional<EnvelopeKind> expected,
                                                              int64_t now_unix) {
  if (bytes.size() > kMaxEnvelopeBytes) return too_large(bytes.size());
  auto checked = check_envelope(trust_, bytes, expected);
  if (!checked) return std::move(checked.error());
  const EnvelopeKind kind = checked->kind;
  const std::string& id = checked->id;
  const std::string named = event_name(kind, id);
  const auto outcome = [&](IngestResult result, std::string reason) {
    return rejection(result, std::move(reason), id, kind);
  };

  const std::string envelope_sha256 = sha256_hex(bytes);
  if (seen_envelopes_.contains(envelope_sha256)) {
    return outcome(IngestResult::duplicate, named +
                                                " is already accepted (a byte-identical "
                                                "replay of envelope sha256 " +
                                                short_hex(envelope_sha256) + ")");
  }
  if (seen_payloads_.contains(checked->payload_key)) {
    return outcome(IngestResult::duplicate,
                   named + " is already accepted with an identical payload");
  }
  if (pending_.contains(envelope_sha256) || pending_.contains(checked->payload_key) ||
      pending_.contains(to_string(kind) + " id:" + id)) {
    return outcome(IngestResult::unavailable,
                   named + " (or another event with its id) is being stored right now; retry");
  }
  if (checked->config_sha256 != checked->computed_config_sha256) {
    return outcome(IngestResult::hash_mismatch,
                   named + " claims config_sha256 " + short_hex(checked->config_sha256) +
                       " but the canonical JSON (RFC 8785) of its config hashes to " +
                       short_hex(checked->computed_config_sha256));
  }
  const bool taken = kind == EnvelopeKind::launch ? launches_.contains(id) : grants_.contains(id);
  if (taken) {
    const std::string& first = kind == EnvelopeKind::launch ? launches_.find(id)->second.issued_at
                                                            : grants_.find(id)->second.issued_at;
    return outcome(IngestResult::conflict,
                   named + " is already accepted with different content (issued_at " + first +
                       "); an id names exactly one " + to_string(kind));
  }
  const LaunchRecord& launch = checked->launch;
  const GrantRecord& grant = checked->grant;
  if (kind == EnvelopeKind::grant) {
    if (auto orphan = orphan_reason(grant); !orphan.empty())
      return outcome(IngestResult::orphan_grant, named + " " + orphan);
  }
  const int64_t issued =
      kind == EnvelopeKind::launch ? launch.issued_at_unix : grant.issued_at_unix;
  const std::string& issued_text =
      kind == EnvelopeKind::launch ? launch.issued_at : grant.issued_at;
  if (now_unix - issued > options_.event_max_age_seconds) {
    return outcome(IngestResult::stale,
                   named + " was issued at " + issued_text + ", " +
                       std::to_string(now_unix - issued) + " seconds ago, outside the window of " +
                       std::to_string(options_.event_max_age_seconds) + " seconds");
  }
  if (issued - now_unix > options_.max_clock_skew_seconds) {
    return outcome(IngestResult::future,
                   named + " is issued at " + issued_text + ", " +
                       std::to_string(issued - now_unix) +
                       " seconds in the future, more than the allowed clock skew of " +
                       std::to_string(options_.max_clock_skew_seconds) + " seconds");
  }

  // Durable first, then visible: what was answered `accepted` survives a
  // crash, and a failed write leaves no trace in memory (finish()).
  PendingAccept pending;
  pending.kind = kind;
  pending.id = id;
  pending.payload_key = std::move(checked->payload_key);
  pending.envelope_sha256 = envelope_sha256;
  if (kind == EnvelopeKind::launch) {
    pending.reason =
        named + " of sandbox " + launch.sandbox_id + " accepted, signed by " + checked->signer;
    pending.launch = std::move(checked->launch);
  } else {
    pending.reason =
        named + " for launch " + grant.launch_id + " accepted, signed by " + checked->signer;
    pending.grant = std::move(checked->grant);
  }
  return pending;
}

void Ingestor::remember_launch(LaunchRecord record, std::string payload_key) {
  const std::string id = record.launch_id;
  seen_envelopes_[record.envelope_sha256] = id;
  seen_payloads_[std::move(payload_key)] = id;
  const auto current = launch_by_sandbox_.find(record.sandbox_id);
  if (current == launch_by_sandbox_.end() ||
      launches_.at(current->second).issued_at_unix <= record.issued_at_unix) {
    launch_by_sandbox_[record.sandbox_id] = id;
  }
  launches_.emplace(id, std::move(record));
}

void Ingestor::remember_grant(GrantRecord record, std::string payload_key) {
  const std::string id = record.grant_id;
  seen_envelopes_[record.envelope_sha256] = id;
  seen_payloads_[std::move(payload_key)] = id;
  const auto current = grant_by_launch_.find(record.launch_id);
  if (current == grant_by_launch_.end() ||
      grants_.at(current->second).issued_at_unix <= record.issued_at_unix) {
    grant_by_launch_[record.launch_id] = id;
  }
  grants_.emplace(id, std::move(record));
}

std::optional<std::string> Ingestor::id_of(std::string_view envelope_sha256) const {
  const auto it = seen_envelopes_.find(envelope_sha256);
  if (it == seen_envelopes_.end()) return std::nullopt;
  return it->second;
}

RestoreReport Ingestor::restore(const std::vector<StoredEnvelope>& stored) {
  launches_.clear();
  grants_.clear();
  seen_envelopes_.clear();
  seen_payloads_.clear();
  launch_by_sandbox_.clear();
  grant_by_launch_.clear();
  RestoreReport report;
  for (const StoredEnvelope& item : stored) {
    const auto skip = [&](const std::string& why) {
      report.skipped.push_back(one_line(item.where + " skipped: " + why));
    };
    auto checked = check_envelope(trust_, item.bytes, std::nullopt);
    if (!checked) {
      skip(checked.error().reason);
      continue;
    }
    const EnvelopeKind kind = item.kind;
    if (checked->kind != kind) {
      skip("it says " + to_string(kind) + " but the envelope is a " + to_string(checked->kind));
      continue;
    }
    const std::string named = event_name(kind, checked->id);
    if (seen_envelopes_.contains(sha256_hex(item.bytes)) ||
        seen_payloads_.contains(checked->payload_key)) {
      skip(named + " is stored twice");
      continue;
    }
    if (checked->config_sha256 != checked->computed_config_sha256) {
      skip(named + " does not match its config_sha256");
      continue;
    }
    if (kind == EnvelopeKind::launch ? launches_.contains(checked->id)
                                     : grants_.contains(checked->id)) {
      skip(named + " conflicts with an earlier one of the same id");
      continue;
    }
    if (kind == EnvelopeKind::grant) {
      if (auto orphan = orphan_reason(checked->grant); !orphan.empty()) {
        skip(named + " " + orphan);
        continue;
      }
    }
    if (kind == EnvelopeKind::launch) {
      remember_launch(std::move(checked->launch), std::move(checked->payload_key));
    } else {
      remember_grant(std::move(checked->grant), std::move(checked->payload_key));
    }
    ++report.restored;
  }
  return report;
}

// A grant changes what one accepted launch may run with, so it must name one
// and come after it: a grant issued before its launch would otherwise raise
// privileges of a launch nobody has seen yet.
std::string Ingestor::orphan_reason(const GrantRecord& grant) const {
  const LaunchRecord* target = launch(grant.launch_id);
  if (target == nullptr)
    return "names launch " + grant.launch_id +
           ", which is not an accepted launch on this node; send the launch event first";
  if (grant.issued_at_unix < target->issued_at_unix)
    return "was issued at " + grant.issued_at + ", before its launch " + grant.launch_id +
           " (issued " + target->issued_at + "); a grant can only change a launch that exists";
  return "";
}

const LaunchRecord* Ingestor::launch_for_sandbox(std::string_view sandbox_id) const {
  const auto it = launch_by_sandbox_.find(sandbox_id);
  return it == launch_by_sandbox_.end() ? nullptr : launch(it->second);
}

const LaunchRecord* Ingestor::launch(std::string_view launch_id) const {
  const auto it = launches_.find(launch_id);
  return it == launches_.end() ? nullptr : &it->second;
}

const GrantRecord* Ingestor::grant(std::string_view grant_id) const {
  const auto it = grants_.find(grant_id);
  return it == grants_.end() ? nullptr : &it->second;
}

size_t Ingestor::forget(int64_t cutoff,
                        const std::function<bool(std::string_view sandbox_id)>& is_live,
                        std::vector<std::string>* forgotten_envelopes) {
  std::vector<std::string> old_launches;
  for (const auto& [id, launch] : launches_)
    if (launch.issued_at_unix < cutoff && !is_live(launch.sandbox_id)) old_launches.push_back(id);
  if (old_launches.empty()) return 0;
  const auto erase_hashes = [this, forgotten_envelopes](const std::string& kind,
                                                        const std::string& id,
                                                        const std::string& envelope_sha256) {
    if (forgotten_envelopes) forgotten_envelopes->push_back(envelope_sha256);
    seen_envelopes_.erase(envelope_sha256);
    std::erase_if(seen_payloads_, [&](const auto& entry) {
      return entry.second == id && entry.first.starts_with(kind + ":");
    });
  };
  for (const auto& id : old_launches) {
    const auto launch = launches_.find(id);
    const std::string sandbox = launch->second.sandbox_id;
    erase_hashes("launch", id, launch->second.envelope_sha256);
    for (auto grant = grants_.begin(); grant != grants_.end();) {
      if (grant->second.launch_id != id) {
        ++grant;
        continue;
      }
      erase_hashes("grant", grant->first, grant->second.envelope_sha256);
      grant = grants_.erase(grant);
    }
    grant_by_launch_.erase(id);
    launches_.erase(launch);
    if (const auto current = launch_by_sandbox_.find(sandbox);
        current != launch_by_sandbox_.end() && current->second == id) {
      // Another (newer) launch of the same sandbox may still be held.
      launch_by_sandbox_.erase(current);
      const LaunchRecord* newest = nullptr;
      for (const auto& [other_id, other] : launches_)
        if (other.sandbox_id == sandbox &&
            (!newest || newest->issued_at_unix <= other.issued_at_unix))
          newest = &other;
      if (newest) launch_by_sandbox_[sandbox] = newest->launch_id;
    }
  }
  return old_launches.size();
}

const GrantRecord* Ingestor::latest_grant(std::string_view launch_id) const {
  const auto it = grant_by_launch_.find(launch_id);
  if (it == grant_by_launch_.end()) return nullptr;
  const auto grant = grants_.find(it->second);
  return grant == grants_.end() ? nullptr : &grant->second;
}

uint64_t Ingestor::count(EnvelopeKind kind, IngestResult result) const {
  const auto it = counts_.find({kind, result});
  return it == counts_.end() ? 0 : it->second;
}

}  // namespace driftwatch::ingest
