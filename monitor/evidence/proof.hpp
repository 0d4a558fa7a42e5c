#pragma once
// C2SP tlog-proof@v1 (c2sp.org/tlog-proof): an entry's index, its inclusion
// proof and the checkpoint it is proved against, verifiable offline with the
// log's verifier key alone.
//
//   c2sp.org/tlog-proof@v1
//   extra <base64>             (optional, not authenticated)
//   index 73894
//   gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=   (leaf's sibling first)
//   ...
//                              (blank line)
//   <the checkpoint note, verbatim>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "evidence/log.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"

namespace driftwatch::evidence {

inline constexpr std::string_view kTlogProofHeader = "c2sp.org/tlog-proof@v1";
/// A proof in a tree of at most 2^64 entries has at most 64 hashes.
inline constexpr size_t kMaxProofHashes = 64;

struct TlogProof {
  std::optional<std::string> extra;  // decoded bytes of the extra line
  uint64_t index = 0;
  std::vector<Hash> path;
  std::string checkpoint;  // the signed checkpoint note, verbatim
};

std::string format_tlog_proof(const TlogProof& proof);
/// Strict: the header line, an optional `extra` line, `index N` without
/// leading zeros, base64 hashes of 32 bytes, a blank line, the checkpoint
/// (which is not opened here).
Result<TlogProof> parse_tlog_proof(std::string_view text);

/// The proof of entry `index` of `log` against `checkpoint_note` (a
/// checkpoint the log issued, by default its latest), as tlog-proof@v1 text.
Result<std::string> make_tlog_proof(const Log& log, uint64_t index,
                                    std::optional<std::string> checkpoint_note = std::nullopt,
                                    std::optional<std::string> extra = std::nullopt);

/// The same proof computed offline from a copy of the log: the hash tiles
/// of the tree of `checkpoint_note`'s size are read through `reader` (a
/// partial tile that is gone is read from its full tile, as tlog-tiles
/// allows), never from a live Log. The checkpoint must verify with
/// `verifier` (and be for `origin`, when given), and the tiles must give its
/// root: a copy whose tiles were changed proves nothing.
Result<std::string> make_tlog_proof_from_tiles(const ResourceReader& reader, uint64_t index,
                                               std::string_view checkpoint_note,
                                               const NoteVerifier& verifier,
                                               std::string_view origin = {});

/// What a verified proof says: the entry is at `index` in the tree of
/// `checkpoint`.
struct VerifiedProof {
  uint64_t index = 0;
  Checkpoint checkpoint;
};

/// Verifies `proof_text` offline for the entry bytes `entry`: the
/// checkpoint is signed by `verifier` (and is for `origin`, when given), and
/// the inclusion proof takes the entry's leaf hash to its root.
Result<VerifiedProof> verify_tlog_proof(std::string_view proof_text, std::string_view entry,
                                        const NoteVerifier& verifier, std::string_view origin = {});

}  // namespace driftwatch::evidence
