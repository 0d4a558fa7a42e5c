#include "ingest/ingestor.hpp"
#include "common/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <expected>
#include <span>
#include <utility>

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"

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

IngestOutcome rejection(IngestResult result, std::string reason, std::string id = {},
                        std::optional<EnvelopeKind> kind = std::nullopt) {
  return IngestOutcome{result, std::move(reason), std::move(id), kind, false};
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
// nothing but the trust store, so restore() re-runs it on every stored line.
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
  const auto fields = *kind == EnvelopeKind::launch ? std::span<const FieldSpec>(kLaunchFields)
                                                    : std::span<const FieldSpec>(kGrantFields);
  for (const auto& spec : fields) {
    if (auto problem = field_problem(*payload, spec); !problem.empty()) return malformed(problem);
  }
  // A signed field nobody reads would look enforced to an auditor and is not.
  for (const auto& [key, value] : payload->items()) {
    bool known = false;
    for (const auto& spec : fields) known = known || key == spec.name;
    if (!known) return malformed("has an unknown field \"" + key + "\"");
  }

  // The first signature by a key we know decides; others are not tried, so
  // a bad signature cannot hide behind a good one or the reverse.
  const Signature* signature = nullptr;
  const TrustedKey* signer = nullptr;
  for (const auto& candidate : envelope->signatures) {
    if ((signer = trust.find(candidate.keyid)) != nullptr) {
      signature = &candidate;
      break;
    }
  }
  if (signer == nullptr) {
    std::string keyids;
    for (const auto& candidate : envelope->signatures) {
      keyids += (keyids.empty() ? "" : ", ") + printable(short_hex(candidate.keyid));
    }
    return std::unexpected(
        rejection(IngestResult::unknown_key,
                  named + " is signed only by keys not in the trust store (" + keyids + ")",
                  checked.id, checked.kind));
  }
  checked.signer = "key " + short_hex(signer->keyid) + " (" + signer->name + ")";
  if (!signer->key.verify(pae(envelope->payload_type, envelope->payload), signature->sig)) {
    return std::unexpected(
        rejection(IngestResult::bad_signature,
                  "the signature on " + named + " by " + checked.signer + " does not verify",
                  checked.id, checked.kind));
  }
  const TrustRole needed =
      *kind == EnvelopeKind::launch ? TrustRole::control_plane : TrustRole::operator_;
  if (signer->role != needed) {
    return std::unexpected(
        rejection(IngestResult::wrong_role,
                  "signature on " + named + " by " + checked.signer + " is valid but role " +
                      to_string(signer->role) + " may not sign " +
                      (*kind == EnvelopeKind::launch ? "launch events" : "grants") + " (only " +
                      to_string(needed) + " may)",
                  checked.id, checked.kind));
  }

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

Result<void> fsync_dir(const std::filesystem::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return fail("cannot open directory ", dir.string(), ": ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return fail("cannot fsync directory ", dir.string(), ": ", std::strerror(err));
  return {};
}

Result<void> write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(std::strerror(errno));
    if (n == 0) return fail("write wrote nothing");
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

}  // namespace

std::string to_string(EnvelopeKind kind) {
  return kind == EnvelopeKind::launch ? "launch" : "grant";
}

Ingestor::Ingestor(TrustStore trust, IngestOptions options, std::filesystem::path state_dir)
    : trust_(std::move(trust)),
      options_(options),
      accepted_path_(std::move(state_dir) / "ingest" / "accepted.jsonl") {}

IngestOutcome Ingestor::ingest(std::string_view envelope_bytes,
                               std::optional<EnvelopeKind> expected, int64_t now_unix) {
  IngestOutcome outcome = evaluate(envelope_bytes, expected, now_unix);
  const EnvelopeKind counted = outcome.kind.value_or(expected.value_or(EnvelopeKind::launch));
  ++counts_[{counted, outcome.result}];
  return outcome;
}

IngestOutcome Ingestor::reject_too_large(EnvelopeKind kind,
                                         std::optional<uint64_t> declared_length) {
  // Counted under the endpoint's kind, like any envelope of unknown kind.
  ++counts_[{kind, IngestResult::too_large}];
  return too_large(declared_length);
}

IngestOutcome Ingestor::evaluate(std::string_view bytes, std::optional<EnvelopeKind> expected,
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
  // crash, and a failed write leaves no trace in memory.
  if (auto stored = append_accepted(kind, bytes, now_unix); !stored) {
    IngestOutcome failed =
        outcome(IngestResult::malformed, named + " passed every check but was not stored: " +
                                             stored.error().message + "; nothing changed");
    failed.not_durable = true;
    return failed;
  }
  std::string reason;
  if (kind == EnvelopeKind::launch) {
    reason = named + " of sandbox " + launch.sandbox_id + " accepted, signed by " + checked->signer;
    remember_launch(std::move(checked->launch), std::move(checked->payload_key));
  } else {
    reason = named + " for launch " + grant.launch_id + " accepted, signed by " + checked->signer;
    remember_grant(std::move(checked->grant), std::move(checked->payload_key));
  }
  return outcome(IngestResult::accepted, std::move(reason));
}

Result<void> Ingestor::append_accepted(EnvelopeKind kind, std::string_view envelope_bytes,
                                       int64_t now_unix) {
  const json entry = {
      {"kind", to_string(kind)}, {"envelope", envelope_bytes}, {"accepted_at", now_unix}};
  DW_TRY(line, canonical_json(entry));
  line.push_back('\n');

  const std::filesystem::path dir = accepted_path_.parent_path();
  if (auto made = make_private_dirs(dir); !made) return std::unexpected(made.error());
  const std::string path = accepted_path_.string();
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot open ", path, ": ", std::strerror(errno));
  struct stat before {};
  if (::fstat(fd, &before) != 0) {
    const int err = errno;
    ::close(fd);
    return fail("cannot stat ", path, ": ", std::strerror(err));
  }
  auto written = write_all(fd, line);
  if (written && ::fsync(fd) != 0) written = fail(std::strerror(errno));
  if (!written) {
    // Cut a partial line off again, so the next append starts a clean line.
    (void)::ftruncate(fd, before.st_size);
    ::close(fd);
    return fail("cannot append to ", path, ": ", written.error().message);
  }
  ::close(fd);
  // The first line also needs the new directory entry to be durable.
  if (before.st_size == 0) {
    if (auto synced = fsync_dir(dir); !synced) return std::unexpected(synced.error());
  }
  return {};
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

Result<size_t> Ingestor::restore() {
  launches_.clear();
  grants_.clear();
  seen_envelopes_.clear();
  seen_payloads_.clear();
  launch_by_sandbox_.clear();
  grant_by_launch_.clear();
  restore_skipped_.clear();
  restore_truncated_bytes_ = 0;

  const std::string path = accepted_path_.string();
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return size_t{0};
  if (fd < 0) return fail("cannot open ", path, ": ", std::strerror(errno));
  std::string text;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return fail("cannot read ", path, ": ", std::strerror(err));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }

  // A crash mid-append leaves a last line without its newline, or (if the
  // file system kept a length but not the data) one that does not parse.
  // Either was never answered `accepted`: cut it off.
  size_t keep = text.size();
  if (!text.empty() && text.back() != '\n') {
    const size_t newline = text.rfind('\n');
    keep = newline == std::string::npos ? 0 : newline + 1;
  }
  if (keep > 0) {
    const size_t newline = keep - 1;
    const size_t previous = newline == 0 ? std::string::npos : text.rfind('\n', newline - 1);
    const size_t start = previous == std::string::npos ? 0 : previous + 1;
    const std::string_view last = std::string_view(text).substr(start, newline - start);
    if (auto parsed = parse_json(last, "the last line"); !parsed || !parsed->is_object()) {
      keep = start;
    }
  }
  if (keep < text.size()) {
    if (::ftruncate(fd, static_cast<off_t>(keep)) != 0 || ::fsync(fd) != 0) {
      const int err = errno;
      ::close(fd);
      return fail("cannot truncate the torn tail of ", path, ": ", std::strerror(err));
    }
    restore_truncated_bytes_ = text.size() - keep;
    text.resize(keep);
  }
  ::close(fd);

  size_t restored = 0;
  size_t line_number = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string_view line = std::string_view(text).substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    const std::string where = path + " line " + std::to_string(line_number);
    const auto skip = [&](const std::string& why) {
      restore_skipped_.push_back(where + " skipped: " + why);
    };

    auto entry = parse_json(line, where);
    if (!entry) {
      skip(entry.error().message);
      continue;
    }
    const auto envelope = entry->is_object() ? entry->find("envelope") : entry->end();
    const auto kind_field = entry->is_object() ? entry->find("kind") : entry->end();
    if (envelope == entry->end() || !envelope->is_string() || kind_field == entry->end() ||
        !kind_field->is_string() || (*kind_field != "launch" && *kind_field != "grant")) {
      skip("not an {\"kind\", \"envelope\", \"accepted_at\"} entry");
      continue;
    }
    const EnvelopeKind kind = *kind_field == "launch" ? EnvelopeKind::launch : EnvelopeKind::grant;
    const std::string& bytes = envelope->get_ref<const std::string&>();
    auto checked = check_envelope(trust_, bytes, std::nullopt);
    if (!checked) {
      skip(checked.error().reason);
      continue;
    }
    if (checked->kind != kind) {
      skip("the entry says " + to_string(kind) + " but the envelope is a " +
           to_string(checked->kind));
      continue;
    }
    const std::string named = event_name(kind, checked->id);
    if (seen_envelopes_.contains(sha256_hex(bytes)) ||
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
      skip(named + " conflicts with an earlier line of the same id");
      continue;
    }
    if (kind == EnvelopeKind::launch) {
      remember_launch(std::move(checked->launch), std::move(checked->payload_key));
    } else {
      remember_grant(std::move(checked->grant), std::move(checked->payload_key));
    }
    ++restored;
  }
  return restored;
}

const LaunchRecord* Ingestor::launch_for_sandbox(std::string_view sandbox_id) const {
  const auto it = launch_by_sandbox_.find(sandbox_id);
  return it == launch_by_sandbox_.end() ? nullptr : launch(it->second);
}

const LaunchRecord* Ingestor::launch(std::string_view launch_id) const {
  const auto it = launches_.find(launch_id);
  return it == launches_.end() ? nullptr : &it->second;
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
