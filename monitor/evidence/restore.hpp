#pragma once
// State after a restart, rebuilt from the evidence log, the one durable store
// of accepted envelopes and of how far each launch journal was read: every
// `launch_accepted` and `grant_accepted` entry cites its envelope as
// blob/<sha256>, and the envelopes go back to the ingestor, which checks each
// again (ingest::Ingestor::restore); the last `journal_position` entry of
// each journal says where reading goes on.
//
// Start-up must not grow with the log, so the daemon writes a restore point
// (state_dir/restore-point.json) with every checkpoint and at shutdown: a
// tree size, the root at that size, the indexes of the accepted entries
// whose envelopes were still held in memory then, and of each journal's
// last position entry. A restart reads those entries and the ones after
// the restore point's size, nothing else. The
// restore point is an index into the log, never a second store: each entry
// it names is read from the log and must be an accepted entry, and its root
// must be the log's root at its size; if not (a copy of another log, a log
// cut by recovery below it, a damaged file), or when there is none (a log
// written before restore points), every entry of the log is read instead.
//
//   {"format": "driftwatch-restore-point/1", "tree_size": N,
//    "root": "<hex>", "accepted": [index, …], "positions": [index, …]}
//   (indexes ascending; "positions" is absent from points written before
//   journal positions were kept in the log)

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "evidence/entries.hpp"
#include "evidence/log.hpp"
#include "ingest/ingestor.hpp"

namespace driftwatch::evidence {

/// The position a journal_position entry records; nullopt for any other
/// entry or a malformed one (strict; fuzzed with the restore point).
std::optional<JournalPosition> parse_journal_position(std::string_view entry);

inline constexpr std::string_view kRestorePointFormat = "driftwatch-restore-point/1";
/// A restore point names at most this many entries (far more launches and
/// grants than one node holds at once).
inline constexpr size_t kMaxRestorePointEntries = 1 << 20;

struct RestorePoint {
  uint64_t tree_size = 0;
  Hash root{};
  std::vector<uint64_t> accepted;   // ascending, each below tree_size
  std::vector<uint64_t> positions;  // journal_position entries, likewise
};

std::string encode_restore_point(const RestorePoint& point);
/// Strict: the format above, nothing else (fuzzed).
Result<RestorePoint> parse_restore_point(std::string_view text);
/// state_dir/restore-point.json
std::filesystem::path restore_point_path(const std::filesystem::path& state_dir);
/// Writes it durably (replace_file_durably).
Result<void> write_restore_point(const std::filesystem::path& state_dir, const RestorePoint& point);

/// The accepted envelopes the log holds, read as said above.
struct AcceptedEnvelopes {
  std::vector<ingest::StoredEnvelope> envelopes;  // in log order
  std::vector<uint64_t> indexes;                  // the entry of each envelope
  /// The last journal_position entry of each journal: its index and what
  /// it says, by journal path.
  std::map<std::string, std::pair<uint64_t, JournalPosition>> journals;
  uint64_t entries_read = 0;
  /// How they were found, one sentence for the log.
  std::string how;
  /// Why the restore point was not used ("" when it was, or there is none).
  std::string point_refused;
  /// Accepted entries whose envelope cannot be read back: one sentence each.
  /// The daemon logs them loudly and records them in a `recovered` entry.
  std::vector<std::string> problems;
};

/// Reads the accepted envelopes of `log`, using the restore point in
/// `state_dir` when it matches the log. An error only when the log cannot be
/// read.
Result<AcceptedEnvelopes> read_accepted(const Log& log, const std::filesystem::path& state_dir);

}  // namespace driftwatch::evidence
