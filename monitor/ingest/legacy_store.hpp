#pragma once
// The accepted store of versions before the evidence log:
// state_dir/ingest/accepted.jsonl, one JCS line per accepted envelope,
// {"accepted_at", "envelope", "kind": "launch"|"grant"}, and
// {"kind": "recovered", …} lines recording earlier recoveries. The daemon
// reads it once, enters what the evidence log does not hold yet into the
// log, and renames it to accepted.jsonl.migrated: nothing in it is deleted,
// and it is never read again.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "ingest/ingestor.hpp"

namespace driftwatch::ingest {

struct LegacyStore {
  std::filesystem::path path;
  std::vector<StoredEnvelope> envelopes;  // in file order; `where` names the line
  /// One sentence per complete line that is not an envelope line, naming it.
  std::vector<std::string> skipped;
  /// Bytes of a last line without its '\n' (a write that never completed,
  /// so never acknowledged): not read, and kept in the renamed file.
  uint64_t torn_bytes = 0;
};

/// The lines of a store read from `path` (fuzzed).
LegacyStore parse_legacy_store(std::string_view text, const std::filesystem::path& path);

/// Reads state_dir/ingest/accepted.jsonl (at most 1 GiB); nullopt when there
/// is none. Changes nothing. An error only when it cannot be read, or is not
/// a regular file.
Result<std::optional<LegacyStore>> read_legacy_store(const std::filesystem::path& state_dir);

/// Renames the store to accepted.jsonl.migrated (durably), once what it holds
/// is in the evidence log; returns the new path.
Result<std::filesystem::path> retire_legacy_store(const LegacyStore& store);

}  // namespace driftwatch::ingest
