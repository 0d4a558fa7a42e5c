#pragma once
// `driftwatch verify` over a log's static files: every entry bundle hashed,
// every hash tile recomputed and compared, the root compared with the
// signed checkpoint, every checkpoints/<size> checked for its signature and
// for being the root of that prefix of the latest tree (consistency), and
// every blob against its name. Streams one bundle and one tile at a time:
// memory does not grow with the log.
//
// The first problem found is returned with the path of the resource to
// blame and why, e.g.
//   tile/entries/x001/234: entry 316213 was changed: its leaf hash is not hash 5 of
//   tile/0/x001/234, which tile/1/004.p/211 above it confirms

#include <cstdint>
#include <string>

#include "evidence/merkle.hpp"
#include "evidence/note.hpp"

namespace driftwatch::evidence {

enum class VerifyFailure {
  kNone,
  kNotALog,   // no checkpoint, or nothing like a log: bad input (exit 2)
  kWrongKey,  // the checkpoint is not signed by the key given: bad input (exit 2)
  kTampered,  // an entry, tile, checkpoint or blob does not check out (exit 1)
};
std::string to_string(VerifyFailure failure);

struct VerifyOptions {
  /// The checkpoint's origin must be this, when not empty.
  std::string origin;
  /// Hash every blob/<sha256> (needs a reader that can list).
  bool check_blobs = true;
};

struct VerifyResult {
  VerifyFailure failure = VerifyFailure::kNone;
  std::string path;     // the first bad resource, relative to the log
  std::string message;  // "<path>: why", one line
  uint64_t tree_size = 0;
  Hash root{};
  uint64_t tiles_checked = 0;
  uint64_t checkpoints_checked = 0;
  uint64_t blobs_checked = 0;
  bool checkpoints_listed = false;  // false: the reader cannot list, only the latest was checked

  bool ok() const { return failure == VerifyFailure::kNone; }
};

VerifyResult verify_log(const ResourceReader& reader, const NoteVerifier& verifier,
                        const VerifyOptions& options = {});

}  // namespace driftwatch::evidence
