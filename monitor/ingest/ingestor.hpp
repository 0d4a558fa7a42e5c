#pragma once
// Verifies envelopes against the trust store and keeps the accepted launch
// events and grants. Accepted envelopes are appended (fsync'd) to
// state_dir/ingest/accepted.jsonl before `accepted` is returned, and replayed
// from there at startup, so nothing accepted is forgotten by a restart.
// Nothing rejected changes any state but the counters.

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "ingest/envelope.hpp"
#include "ingest/trust.hpp"

namespace driftwatch::ingest {

enum class EnvelopeKind { launch, grant };

std::string to_string(EnvelopeKind kind);  // "launch" / "grant"

struct IngestOutcome {
  IngestResult result = IngestResult::malformed;
  std::string reason;  // one readable sentence
  std::string id;      // launch_id or grant_id when known
  std::optional<EnvelopeKind> kind;
  /// The envelope passed every check but could not be appended to
  /// accepted.jsonl (disk full, I/O error). The contract has no result for
  /// this, so `result` is `malformed` (and counted so) and nothing changed;
  /// the HTTP layer should answer 503 instead of 400 so the sender retries,
  /// and a journal tail should not commit past the line.
  bool not_durable = false;
};

struct IngestOptions {
  int64_t event_max_age_seconds = 86400;
  int64_t max_clock_skew_seconds = 300;  // how far in the future issued_at may be
};

/// Not thread-safe: the daemon calls it from its one event loop.
class Ingestor {
 public:
  /// `state_dir` holds ingest/accepted.jsonl (created when missing).
  Ingestor(TrustStore trust, IngestOptions options, std::filesystem::path state_dir);

  /// Replays accepted.jsonl: re-verifies every entry's signature against
  /// the current trust store (staleness is not re-checked). A torn last
  /// line is truncated away. Returns how many were restored. Replaces
  /// whatever was accepted before; counters are left alone. An entry that
  /// no longer verifies (its key left the trust store) is skipped, and why
  /// is in restore_skipped(). An error only when the file cannot be read or
  /// truncated.
  Result<size_t> restore();
  /// Why entries were skipped by the last restore(), one sentence each
  /// naming the line.
  const std::vector<std::string>& restore_skipped() const { return restore_skipped_; }
  /// How many bytes of a torn tail the last restore() cut off (0: none).
  uint64_t restore_truncated_bytes() const { return restore_truncated_bytes_; }
  const std::filesystem::path& accepted_path() const { return accepted_path_; }

  /// Ingests one envelope. `expected` restricts the payload type (the POST
  /// endpoints); nullopt accepts either (journal lines). `now_unix` is the
  /// clock for the stale/future window. The checks run in this order, the
  /// first failing one deciding: size (too_large), envelope and payload
  /// shape and type (malformed), the first signature whose key is trusted
  /// (unknown_key, bad_signature, wrong_role), replay of an accepted
  /// envelope or payload (duplicate), config hash (hash_mismatch), id reuse
  /// (conflict), issued_at window (stale, future). Every call counts exactly
  /// one (kind, result); an envelope of unknown kind counts under `expected`,
  /// or launch.
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
  /// The latest accepted grant (by issued_at) for a launch.
  const GrantRecord* latest_grant(std::string_view launch_id) const;

  /// Counts per result, per kind (for metrics and tests).
  uint64_t count(EnvelopeKind kind, IngestResult result) const;
  const TrustStore& trust() const { return trust_; }

 private:
  TrustStore trust_;
  IngestOptions options_;
  std::filesystem::path accepted_path_;
  std::map<std::string, LaunchRecord, std::less<>> launches_;       // by launch_id
  std::map<std::string, GrantRecord, std::less<>> grants_;          // by grant_id
  std::map<std::string, std::string, std::less<>> seen_envelopes_;  // sha256 -> id
  // "launch:"/"grant:" + SHA-256 of the payload's canonical JSON -> id: the
  // same event re-signed or re-serialised is a duplicate, not a conflict.
  std::map<std::string, std::string, std::less<>> seen_payloads_;
  std::map<std::string, std::string, std::less<>> launch_by_sandbox_;  // -> launch_id
  std::map<std::string, std::string, std::less<>> grant_by_launch_;    // -> grant_id
  std::map<std::pair<EnvelopeKind, IngestResult>, uint64_t> counts_;
  std::vector<std::string> restore_skipped_;
  uint64_t restore_truncated_bytes_ = 0;

  IngestOutcome evaluate(std::string_view envelope_bytes, std::optional<EnvelopeKind> expected,
                         int64_t now_unix);
  Result<void> append_accepted(EnvelopeKind kind, std::string_view envelope_bytes,
                               int64_t now_unix);
  void remember_launch(LaunchRecord record, std::string payload_key);
  void remember_grant(GrantRecord record, std::string payload_key);
};

}  // namespace driftwatch::ingest
