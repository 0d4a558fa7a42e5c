#pragma once
// Verifies envelopes against the trust store and keeps the accepted launch
// events and grants in memory. The ingestor writes nothing: the daemon makes
// an accepted envelope durable in its evidence log (a `launch_accepted` or
// `grant_accepted` entry citing the envelope as a blob) between begin() and
// finish(), and at startup hands the envelopes read back from the log to
// restore(), which checks each again. Nothing rejected changes any state but
// the counters.

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "common/result.hpp"
#include "ingest/envelope.hpp"
#include "ingest/trust.hpp"

namespace driftwatch::ingest {

enum class EnvelopeKind { launch, grant };

std::string to_string(EnvelopeKind kind);  // "launch" / "grant"

/// What is wrong with a launch or grant payload's shape, as the ingestor
/// judges it before any signature ("has no \"launch_id\"", "has an unknown
/// field \"x\"", a config whose declared projection cannot be computed), or
/// "" when it is well-formed. For `driftwatch sign`, which refuses to sign
/// what every driftwatch would reject as malformed.
std::string payload_problem(EnvelopeKind kind, const nlohmann::json& payload);

struct IngestOutcome {
  IngestResult result = IngestResult::malformed;
  std::string reason;  // one readable sentence
  std::string id;      // launch_id or grant_id when known
  std::optional<EnvelopeKind> kind;
};

/// An envelope that passed every check and now has to be made durable
/// before it is accepted (Ingestor::begin, then Ingestor::finish). While it
/// is pending, its ids and hashes are reserved: the same event arriving
/// again meanwhile is answered `unavailable` (retry), never a second accept.
struct PendingAccept {
  EnvelopeKind kind = EnvelopeKind::launch;
  std::string id;
  std::string reason;  // the accept sentence
  std::string payload_key;
  std::string envelope_sha256;
  LaunchRecord launch;  // when kind == launch
  GrantRecord grant;    // when kind == grant
};

/// An accepted envelope read back from where it was stored, for restore().
struct StoredEnvelope {
  EnvelopeKind kind = EnvelopeKind::launch;
  std::string bytes;
  /// Where it was read, for the report: "evidence entry 1234".
  std::string where;
};

/// What restore() did. Nothing acknowledged disappears silently: the daemon
/// logs each skipped item loudly and records a `recovered` entry.
struct RestoreReport {
  size_t restored = 0;
  /// One sentence per stored envelope that was skipped, naming where it was.
  std::vector<std::string> skipped;
  bool clean() const { return skipped.empty(); }
};

struct IngestOptions {
  int64_t event_max_age_seconds = 86400;
  int64_t max_clock_skew_seconds = 300;  // how far in the future issued_at may be
};

/// Not thread-safe: the daemon calls it from its one event loop.
class Ingestor {
 public:
  Ingestor(TrustStore trust, IngestOptions options);

  /// Replaces whatever was accepted before with `stored` (in the order it
  /// was accepted), checking every envelope again against the current trust
  /// store as begin() would, except for staleness: shape, signatures, role,
  /// config hash, no envelope or id twice, a grant's launch before it. One
  /// that fails (its key left the trust store, say) is skipped and named in
  /// the report. Counters are left alone.
  RestoreReport restore(const std::vector<StoredEnvelope>& stored);
  /// The launch or grant id of the accepted envelope of this hex SHA-256,
  /// while it is held.
  std::optional<std::string> id_of(std::string_view envelope_sha256) const;

  /// First half of ingest: every check, and the counter when it ends here.
  /// Returns either the final outcome (rejected or duplicate) or, for an
  /// envelope to accept, a PendingAccept: the caller makes the envelope
  /// durable before calling finish(). `expected` restricts the payload type
  /// (the POST endpoints); nullopt accepts either (journal lines).
  std::variant<IngestOutcome, PendingAccept> begin(std::string_view envelope_bytes,
                                                   std::optional<EnvelopeKind> expected,
                                                   int64_t now_unix);
  /// Second half: `stored` says whether the envelope is durable. Success
  /// makes the record visible (`accepted`); failure changes nothing but the
  /// counter (`unavailable`, with the reason). Counts exactly one result.
  IngestOutcome finish(PendingAccept pending, const Result<void>& stored);

  /// begin(), then finish() as stored: for tools and tests that keep
  /// nothing on disk. The daemon stores on its writer thread in between.
  /// The checks run in this order, the first failing one deciding: size
  /// (too_large), envelope and payload shape and type, including a config
  /// whose declared projection cannot be computed (malformed), every
  /// signature (bad_signature, unknown_key, wrong_role), replay of an
  /// accepted envelope or payload (duplicate), an event being stored right
  /// now (unavailable), config hash (hash_mismatch), id reuse (conflict), a
  /// grant's launch (orphan_grant), issued_at window (stale, future). Every
  /// call counts exactly one (kind, result); an envelope of unknown kind
  /// counts under `expected`, or launch.
  IngestOutcome ingest(std::string_view envelope_bytes, std::optional<EnvelopeKind> expected,
                       int64_t now_unix);

  /// Counts and answers a `too_large` for an envelope whose bytes were never
  /// read (the HTTP server refuses a body over 1 MiB before reading it all);
  /// `declared_length` is its Content-Length when the sender gave one.
  IngestOutcome reject_too_large(EnvelopeKind kind, std::optional<uint64_t> declared_length);

  /// The latest accepted launch (by issued_at; the later accepted on a tie)
  /// for a sandbox.
  const LaunchRecord* launch_for_sandbox(std::string_view sandbox_id) const;
  const LaunchRecord* launch(std::string_view launch_id) const;
  const GrantRecord* grant(std::string_view grant_id) const;

  /// Bounded memory: drops launches issued before `cutoff` whose sandbox
  /// `is_live` says is not running, with their grants and replay hashes,
  /// from memory (the evidence log keeps them). A replay of one would be `stale` anyway when
  /// `cutoff` is now minus event_max_age_seconds. Returns how many launches.
  /// The envelope hashes of what was dropped are added to
  /// `forgotten_envelopes` when given.
  size_t forget(int64_t cutoff, const std::function<bool(std::string_view sandbox_id)>& is_live,
                std::vector<std::string>* forgotten_envelopes = nullptr);
  /// Accepted launches and grants held in memory.
  size_t launches_held() const { return launches_.size(); }
  size_t grants_held() const { return grants_.size(); }
  /// The latest accepted grant (by issued_at) for a launch.
  const GrantRecord* latest_grant(std::string_view launch_id) const;

  /// Counts per result, per kind (for metrics and tests).
  uint64_t count(EnvelopeKind kind, IngestResult result) const;
  const TrustStore& trust() const { return trust_; }

 private:
  TrustStore trust_;
  IngestOptions options_;
  std::map<std::string, LaunchRecord, std::less<>> launches_;       // by launch_id
  std::map<std::string, GrantRecord, std::less<>> grants_;          // by grant_id
  std::map<std::string, std::string, std::less<>> seen_envelopes_;  // sha256 -> id
  // "launch:"/"grant:" + SHA-256 of the payload's canonical JSON -> id: the
  // same event re-signed or re-serialised is a duplicate, not a conflict.
  std::map<std::string, std::string, std::less<>> seen_payloads_;
  std::map<std::string, std::string, std::less<>> launch_by_sandbox_;  // -> launch_id
  std::map<std::string, std::string, std::less<>> grant_by_launch_;    // -> grant_id
  std::map<std::pair<EnvelopeKind, IngestResult>, uint64_t> counts_;
  std::set<std::string, std::less<>> pending_;  // ids and hashes of PendingAccepts

  std::variant<IngestOutcome, PendingAccept> evaluate(std::string_view envelope_bytes,
                                                      std::optional<EnvelopeKind> expected,
                                                      int64_t now_unix);
  void tally(const IngestOutcome& outcome, std::optional<EnvelopeKind> expected);
  /// Why a grant is an orphan_grant ("" when its launch is accepted and
  /// not issued after it).
  std::string orphan_reason(const GrantRecord& grant) const;
  void remember_launch(LaunchRecord record, std::string payload_key);
  void remember_grant(GrantRecord record, std::string payload_key);
};

}  // namespace driftwatch::ingest
