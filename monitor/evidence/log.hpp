#pragma once
// The evidence log on disk: `state_dir/evidence/` in exactly the C2SP
// tlog-tiles layout, so the directory can be served or copied as it is.
//
//   checkpoint                  the latest signed checkpoint (tlog-checkpoint)
//   checkpoints/<tree size>     every checkpoint issued
//   tile/<L>/<N>[.p/<W>]        hash tiles (merkle.hpp)
//   tile/entries/<N>[.p/<W>]    entry bundles: big-endian uint16 length, entry, ...
//   blob/<hex sha256>           content-addressed blobs, written once
//   .staging/                   temporary files before their rename (not
//                               part of the log; emptied at open; not to be
//                               served)
//
// Memory does not grow with the log: the writer keeps the right edge of the
// tree (merkle.hpp RightEdge) and the entries of the rightmost, partial
// bundle (at most 255 entries); proofs and read_entry() read tiles and
// bundles from disk.
//
// Durability: append() writes a batch's bundles and tiles to staging files,
// renames them into place and then issues one syncfs(2) for the log's file
// system: one flush per batch, however many entries and files (one
// fdatasync per file and directory would be 4-8 a batch). A crash before
// that flush may leave any subset of the batch's files; open() finds and
// cuts that torn tail.
//
// Partial tiles: every batch writes the partial tiles and bundle of its new
// size (`.p/<W>`). At level 0 and for bundles, the partial of the size
// before the batch is deleted once the batch is durable, unless a checkpoint
// was issued at that size (tlog-tiles: partials must be served for every
// checkpointed size); partials above level 0 change once per 256 entries and
// are kept. When a tile becomes full, its whole `.p/` directory is deleted
// (tlog-tiles allows it; clients fall back to the full tile). Deletions run
// on a janitor thread, never in append(): an unlink costs about 4 ms on a
// file system mounted with `discard`, and a tile completed after many small
// batches has up to 510 partials.
//
// Threads: append(), put_blob(), checkpoint() and sync() are called from one
// writer thread. The readers (head(), size(), root(), latest_checkpoint(),
// the proofs, root_at(), read_entry()) may be called from any thread at the
// same time: they copy the right edge under a shared lock and read tiles
// without it (tiles on disk are written before the edge that names them).

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/posix.hpp"
#include "common/result.hpp"
#include "evidence/merkle.hpp"
#include "evidence/note.hpp"

namespace driftwatch::evidence {

/// DESIGN.md: an entry is at most 60 KiB (the uint16 length prefix could
/// hold 65535 bytes).
inline constexpr size_t kMaxEntryBytes = 60 * 1024;
/// A blob (a signed envelope, a whole config) is at most this large.
inline constexpr size_t kMaxBlobBytes = 16 << 20;
/// One append() takes at most this many entries (which bounds how far past
/// the recovered tree open() looks for a torn batch's files).
inline constexpr size_t kMaxBatchEntries = 65536;
/// An entry bundle: at most 256 entries of at most 2 + 65535 bytes.
inline constexpr size_t kMaxBundleBytes = kTileWidth * (2 + 65535);

/// The bundle encoding of one entry: its length as a big-endian uint16, then
/// its bytes. `entry` must be at most 65535 bytes.
std::string encode_bundle_entry(std::string_view entry);

/// An entry bundle split into entries. `entries` holds every complete entry
/// before the first problem; `problem` says what was wrong after them (a
/// length prefix cut short, an entry running past the end, more than 256
/// entries), nullopt for a well-formed bundle.
struct BundleParse {
  std::vector<std::string_view> entries;
  std::optional<std::string> problem;
};
BundleParse parse_entry_bundle(std::string_view bytes);

/// What open() found and did. A clean start has nothing cut, removed or
/// rewritten; otherwise the caller logs a `recovered` entry saying so.
struct RecoveryReport {
  uint64_t checkpoint_size = 0;        // the size of the latest checkpoint, the durable anchor
  uint64_t size = 0;                   // the tree size after open
  uint64_t cut_entries = 0;            // entries in bundles beyond `size`, removed
  std::vector<std::string> removed;    // paths removed (torn tail, staging files)
  std::vector<std::string> rewritten;  // derived tiles that were missing or wrong, rewritten
  uint64_t files_read = 0;             // files read and directories listed by open()

  bool clean() const { return cut_entries == 0 && removed.empty() && rewritten.empty(); }
  /// One line for the daemon's log.
  std::string summary() const;
  /// The fields of a `recovered` entry: checkpoint_size, size, cut_entries,
  /// removed, rewritten (paths relative to the log).
  nlohmann::json to_json() const;
};

/// A tree size and its root, read together.
struct TreeHead {
  uint64_t size = 0;
  Hash root{};
};

class Log {
 public:
  /// Opens (or creates) the log in `dir`, checking its right edge: the
  /// latest checkpoint must verify with `signer`'s key and be for `origin`,
  /// and the tiles and bundles at its size must give its root. Entries and
  /// tiles written after it are kept as far as they agree with each other
  /// and cut beyond (recovery() says what). Reads only the right edge: the
  /// checkpoint, the partial tiles, and the bundles written since the last
  /// checkpoint. Fails, touching nothing, when the checkpoint does not
  /// verify or the log on disk ends before it.
  static Result<Log> open(const std::filesystem::path& dir, NoteSigner signer, std::string origin);

  Log(Log&&) noexcept;
  Log& operator=(Log&&) noexcept;
  ~Log();

  const RecoveryReport& recovery() const { return recovery_; }
  const std::filesystem::path& dir() const { return dir_; }
  const std::string& origin() const { return origin_; }
  NoteVerifier verifier() const { return signer_.verifier(); }

  /// Appends a batch of entries (at most kMaxBatchEntries, each at most
  /// kMaxEntryBytes) and makes
  /// them durable with one flush; returns their indexes. On an error
  /// nothing of the batch is kept.
  Result<std::vector<uint64_t>> append(const std::vector<std::string>& entries);
  /// Stores `bytes` as blob/<hex sha256> (once; an existing blob with the
  /// right content is left alone) and returns the hex. Durable with the
  /// next append() or checkpoint(), which the entry citing it comes with.
  Result<std::string> put_blob(std::string_view bytes);
  /// Signs a checkpoint of the current size and writes it to
  /// checkpoints/<size> and checkpoint, durably; returns the signed note.
  /// For a size already checkpointed, returns that note again.
  Result<std::string> checkpoint();
  /// The latest checkpoint note, if one was issued.
  std::optional<std::string> latest_checkpoint() const;

  TreeHead head() const;
  uint64_t size() const { return head().size; }
  Hash root() const { return head().root; }

  /// The inclusion proof of entry `index` in the tree of `tree_size`
  /// (at most size()), read from the tiles.
  Result<std::vector<Hash>> inclusion_proof(uint64_t index, uint64_t tree_size) const;
  /// The consistency proof from the tree of `old_size` to that of `new_size`.
  Result<std::vector<Hash>> consistency_proof(uint64_t old_size, uint64_t new_size) const;
  /// The root of the tree of `tree_size` (at most size()), from the tiles.
  Result<Hash> root_at(uint64_t tree_size) const;
  /// Entry `index`, from its bundle.
  Result<std::string> read_entry(uint64_t index) const;
  /// Calls `each(index, entry)` for the entries in [from, to) (to at most
  /// size()), in order, reading each bundle once; stops at the first error,
  /// its own or `each`'s.
  Result<void> for_each_entry(
      uint64_t from, uint64_t to,
      const std::function<Result<void>(uint64_t index, std::string_view entry)>& each) const;
  /// blob/<hex>, checked against its name; nullopt when the log has none.
  Result<std::optional<std::string>> read_blob(std::string_view sha256_hex) const;
  /// Makes every write so far durable (put_blob without an append after it).
  Result<void> sync();
  /// Waits until the janitor has deleted every superseded partial queued so
  /// far (tests; shutdown does not need it: leftovers are harmless).
  void wait_for_janitor() const;

 private:
  Log() = default;
  class EdgeReader;
  class Janitor;

  Result<void> write_file(const std::string& path, std::string_view bytes);
  Result<void> flush();
  /// The bytes of full entry bundle `bundle_index`, checked to hold 256.
  Result<std::string> read_full_bundle(uint64_t bundle_index) const;
  RightEdge edge_snapshot() const;

  std::filesystem::path dir_;
  Fd dir_fd_;
  NoteSigner signer_;
  std::string origin_;
  // Written by the writer thread under a unique lock, read by others under
  // a shared one (the writer reads them without).
  std::unique_ptr<std::shared_mutex> mutex_;
  RightEdge edge_;
  Hash root_{};
  std::string bundle_;  // the encoded entries of the rightmost, partial bundle
  uint32_t bundle_count_ = 0;
  std::optional<std::string> latest_checkpoint_;
  uint64_t latest_checkpoint_size_ = 0;
  uint64_t staging_counter_ = 0;
  bool broken_ = false;               // a failed append could not be undone; reopen to recover
  std::unique_ptr<Janitor> janitor_;  // deletes superseded partials off the write path
  RecoveryReport recovery_;
};

}  // namespace driftwatch::evidence
