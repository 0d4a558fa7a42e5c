#pragma once
// The entries the daemon writes to its evidence log (DESIGN.md "Evidence
// log"): one JCS JSON document each, `{"seq", "time", "type", …}`, at most
// kMaxEntryBytes. Whatever is larger (a signed envelope) goes in a blob, and
// the entry carries its hash.
//
// The daemon builds an entry on its loop (a Pending: the document without
// `seq`, and the blobs it cites); the writer thread numbers it (seal) when
// it appends it, so that `seq` is always the entry's index in the log.
//
//   monitor_started   version, revision, binary_sha256, config_sha256, node,
//                     policy (name, sha256 of its document, rule ids),
//                     probes (attached probes; none yet)
//   monitor_stopped   reason
//   recovered         store ("evidence" or "accepted"), summary, details
//   launch_accepted   id, sandbox_id, envelope_sha256 (blob), config_sha256,
//   grant_accepted      signed_by, signer_keyid, requested_by [, approved_by,
//                       launch_id for grants], source
//   launch_rejected   result, reason, envelope_sha256 (blob, when kept),
//   grant_rejected      envelope_bytes, source
//   sandbox_discovered sandbox_id, runtime, engine, names, verdict,
//                     observed_sha256, …
//   observation       sandbox_id, engine, names, trigger ("change" or
//                     "heartbeat"), from,
//                     verdict, launch_id, grant_id, declared_sha256,
//                     observed_sha256, consumed_config_sha256, members
//   finding           sandbox_id, launch_id, field, declared, observed,
//                     direction, severity, controls, namespaced
//   sandbox_gone      sandbox_id, launch_id
//   escalation_attempt sandbox_id, launch_id, kind (the syscall), syscall
//                     (its number), capability, outcome, count (in this
//                     interval), total (since the sandbox was first watched),
//                     since, detail (one denied attempt: pid, tid, uid, euid,
//                     comm; null for allowed ones)
//   journal_position  journal, inode, offset, preceding_hex, source: where a
//                     launch journal is read on after a restart

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "correlate/correlator.hpp"
#include "ingest/envelope.hpp"
#include "ingest/ingestor.hpp"
#include "policy/policy.hpp"

namespace driftwatch::evidence {

/// A rejected envelope is kept as a blob up to this size; a larger one is
/// cited by its hash and size only (a flood of junk must not fill the disk
/// at the rate it arrives).
inline constexpr size_t kMaxRejectedBlobBytes = 64 * 1024;

/// An entry not yet in the log.
struct Pending {
  nlohmann::json entry;            // {"time", "type", …}; no "seq"
  std::vector<std::string> blobs;  // stored first; the entry cites them by sha256
};

Pending monitor_started(int64_t now, std::string_view node, std::string_view version,
                        std::string_view revision, std::string_view binary_sha256,
                        std::string_view config_sha256, const policy::Policy& policy);
Pending monitor_stopped(int64_t now, std::string_view reason);
Pending recovered(int64_t now, std::string_view store, std::string_view summary,
                  nlohmann::json details);

/// An accepted launch or grant, with the envelope as a blob.
Pending accepted(int64_t now, const ingest::PendingAccept& accept, std::string_view envelope,
                 std::string_view source);
/// A rejected envelope (any result but accepted and duplicate), with the
/// envelope as a blob when it is at most kMaxRejectedBlobBytes.
/// `envelope_bytes` is the size received (or declared, for a body never
/// read); `envelope` what was read (empty for a body never read).
Pending rejected(int64_t now, ingest::EnvelopeKind kind, const ingest::IngestOutcome& outcome,
                 std::string_view envelope, uint64_t envelope_bytes, std::string_view source);

/// The entries of one verdict change: sandbox_discovered (first seen) or
/// sandbox_gone, or else an observation; then one finding per new finding.
std::vector<Pending> changed(int64_t now, const correlate::VerdictChange& change);
/// A periodic observation of a live sandbox, nothing having changed.
Pending heartbeat(int64_t now, const correlate::SandboxStatus& status);

/// The attempts of one kind and outcome in one sandbox over one interval.
struct AttemptSummary {
  std::string sandbox_id;
  std::optional<std::string> launch_id;
  std::string kind;  // probes::syscall_kind
  uint32_t syscall = 0;
  std::string capability;  // "CAP_SETUID"
  bool denied = true;
  uint64_t count = 0;
  uint64_t total = 0;
  int64_t since = 0;  // the interval's start, Unix seconds
  std::optional<nlohmann::json> detail;
};
Pending escalation_attempt(int64_t now, const AttemptSummary& summary);

/// How far a launch journal has been read, every line before it ingested
/// and its outcome durable: where reading goes on after a restart. One per
/// poll that consumed lines. `preceding` is the up to 64 bytes before the
/// offset (hex in the entry; null when not known yet).
struct JournalPosition {
  std::string journal;  // its absolute path, as configured
  uint64_t inode = 0;
  uint64_t offset = 0;
  std::optional<std::string> preceding;
  bool operator==(const JournalPosition&) const = default;
};
Pending journal_position(int64_t now, const JournalPosition& position, std::string_view source);
/// (Its parser, parse_journal_position, is in evidence/restore.hpp.)
inline constexpr std::string_view kJournalPositionType = "journal_position";

/// Whether a Pending's entry is a launch_accepted or grant_accepted.
bool is_accepted_entry(const nlohmann::json& entry);

/// The entry's bytes in the log: `pending` numbered `seq`, in JCS. An error
/// when it is larger than kMaxEntryBytes or cannot be canonicalized.
Result<std::string> seal(nlohmann::json entry, uint64_t seq);

}  // namespace driftwatch::evidence
