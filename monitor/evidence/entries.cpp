#include "evidence/entries.hpp"

#include <exception>

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"
#include "evidence/log.hpp"
#include "projection/diff.hpp"

namespace driftwatch::evidence {
namespace {

using nlohmann::json;

json optional_json(const std::optional<std::string>& value) {
  return value ? json(*value) : json();
}

json base(int64_t now, std::string_view type) {
  return json{{"time", ingest::format_rfc3339(now)}, {"type", type}};
}

// What every entry about a sandbox's state says of it.
void describe(json& entry, const correlate::SandboxStatus& status) {
  entry["sandbox_id"] = status.sandbox_id;
  entry["runtime"] = status.runtime;
  entry["engine"] = status.engine;
  // The names a launch event may use for it: the report joins by them too.
  entry["names"] = status.names;
  entry["verdict"] = status.verdict.value_or("pending");
  entry["launch_id"] = optional_json(status.launch_id);
  entry["grant_id"] = optional_json(status.grant_id);
  entry["declared_sha256"] = optional_json(status.declared_sha256);
  entry["observed_sha256"] = optional_json(status.observed_sha256);
  entry["consumed_config_sha256"] = optional_json(status.consumed_config_sha256);
  entry["members"] = status.members.size();
  entry["last_observed"] =
      status.last_observed ? json(ingest::format_rfc3339(status.last_observed)) : json();
}

}  // namespace

Pending monitor_started(int64_t now, std::string_view node, std::string_view version,
                        std::string_view revision, std::string_view binary_sha256,
                        std::string_view config_sha256, const policy::Policy& policy) {
  json entry = base(now, "monitor_started");
  entry["node"] = node;
  entry["version"] = version;
  entry["revision"] = revision;
  entry["binary_sha256"] = binary_sha256;
  entry["config_sha256"] = config_sha256;
  json rules = json::array();
  for (const auto& rule : policy.rules) rules.push_back(rule.id);
  entry["policy"] = {{"name", policy.name}, {"sha256", policy.sha256}, {"rules", rules}};
  entry["probes"] = json::array();
  return Pending{std::move(entry), {}};
}

Pending monitor_stopped(int64_t now, std::string_view reason) {
  json entry = base(now, "monitor_stopped");
  entry["reason"] = reason;
  return Pending{std::move(entry), {}};
}

Pending recovered(int64_t now, std::string_view store, std::string_view summary, json details) {
  json entry = base(now, "recovered");
  entry["store"] = store;
  entry["summary"] = summary;
  entry["details"] = std::move(details);
  return Pending{std::move(entry), {}};
}

Pending accepted(int64_t now, const ingest::PendingAccept& accept, std::string_view envelope,
                 std::string_view source) {
  const bool launch = accept.kind == ingest::EnvelopeKind::launch;
  json entry = base(now, launch ? "launch_accepted" : "grant_accepted");
  entry["id"] = accept.id;
  entry["envelope_sha256"] = sha256_hex(envelope);
  entry["source"] = source;
  if (launch) {
    const auto& l = accept.launch;
    entry["sandbox_id"] = l.sandbox_id;
    entry["runtime"] = l.runtime;
    entry["issued_at"] = l.issued_at;
    entry["requested_by"] = l.requested_by;
    entry["config_sha256"] = l.config_sha256;
    entry["signed_by"] = l.signed_by;
    entry["signer_keyid"] = l.signer_keyid;
  } else {
    const auto& g = accept.grant;
    entry["launch_id"] = g.launch_id;
    entry["issued_at"] = g.issued_at;
    entry["requested_by"] = g.requested_by;
    entry["approved_by"] = g.approved_by;
    entry["config_sha256"] = g.config_sha256;
    entry["reason"] = g.reason;
    entry["signed_by"] = g.signed_by;
    entry["signer_keyid"] = g.signer_keyid;
  }
  return Pending{std::move(entry), {std::string(envelope)}};
}

Pending journal_position(int64_t now, const JournalPosition& position, std::string_view source) {
  json entry = base(now, std::string(kJournalPositionType));
  entry["journal"] = position.journal;
  entry["inode"] = position.inode;
  entry["offset"] = position.offset;
  entry["preceding_hex"] = position.preceding ? json(to_hex(*position.preceding)) : json();
  entry["source"] = source;
  return Pending{std::move(entry), {}};
}

bool is_accepted_entry(const json& entry) {
  const auto type = entry.find("type");
  return type != entry.end() && (*type == "launch_accepted" || *type == "grant_accepted");
}

Pending rejected(int64_t now, ingest::EnvelopeKind kind, const ingest::IngestOutcome& outcome,
                 std::string_view envelope, uint64_t envelope_bytes, std::string_view source) {
  json entry =
      base(now, kind == ingest::EnvelopeKind::launch ? "launch_rejected" : "grant_rejected");
  entry["result"] = ingest::to_string(outcome.result);
  entry["reason"] = outcome.reason;
  entry["id"] = outcome.id.empty() ? json() : json(outcome.id);
  entry["source"] = source;
  entry["envelope_bytes"] = envelope_bytes;
  Pending pending;
  const bool whole = !envelope.empty() && envelope.size() == envelope_bytes;
  if (whole)
    entry["envelope_sha256"] = sha256_hex(envelope);
  else
    entry["envelope_sha256"] = json();
  entry["envelope_kept"] = whole && envelope.size() <= kMaxRejectedBlobBytes;
  if (whole && envelope.size() <= kMaxRejectedBlobBytes) pending.blobs.emplace_back(envelope);
  pending.entry = std::move(entry);
  return pending;
}

std::vector<Pending> changed(int64_t now, const correlate::VerdictChange& change) {
  std::vector<Pending> out;
  const char* type = !change.from          ? "sandbox_discovered"
                     : change.to == "gone" ? "sandbox_gone"
                                           : "observation";
  json entry = base(now, type);
  describe(entry, change.status);
  entry["trigger"] = "change";
  entry["from"] = optional_json(change.from);
  out.push_back(Pending{std::move(entry), {}});
  for (const auto& finding : change.new_findings) {
    json f = base(now, "finding");
    f["sandbox_id"] = change.sandbox_id;
    f["launch_id"] = optional_json(change.status.launch_id);
    f["verdict"] = change.to;
    const json described = projection::to_json(finding);
    for (const auto& [key, value] : described.items()) f[key] = value;
    out.push_back(Pending{std::move(f), {}});
  }
  return out;
}

Pending heartbeat(int64_t now, const correlate::SandboxStatus& status) {
  json entry = base(now, "observation");
  describe(entry, status);
  entry["trigger"] = "heartbeat";
  entry["from"] = json();
  return Pending{std::move(entry), {}};
}

Pending escalation_attempt(int64_t now, const AttemptSummary& summary) {
  json entry = base(now, "escalation_attempt");
  entry["sandbox_id"] = summary.sandbox_id;
  entry["launch_id"] = summary.launch_id ? json(*summary.launch_id) : json();
  entry["kind"] = summary.kind;
  entry["syscall"] = summary.syscall;
  entry["capability"] = summary.capability;
  entry["outcome"] = summary.denied ? "denied" : "allowed";
  entry["count"] = summary.count;
  entry["total"] = summary.total;
  entry["since"] = ingest::format_rfc3339(summary.since);
  entry["detail"] = summary.detail ? *summary.detail : json();
  return Pending{std::move(entry), {}};
}

Result<std::string> seal(json entry, uint64_t seq) {
  try {
    entry["seq"] = seq;
    DW_TRY(bytes, canonical_json(entry));
    if (bytes.size() > kMaxEntryBytes)
      return fail("evidence entry ", std::to_string(seq), " (",
                  entry.value("type", std::string("?")), ") is ", std::to_string(bytes.size()),
                  " bytes, over the limit of ", std::to_string(kMaxEntryBytes));
    return bytes;
  } catch (const std::exception& e) {
    return fail("evidence entry ", std::to_string(seq), ": ", e.what());
  }
}

}  // namespace driftwatch::evidence
