#pragma once
// RFC 6962 Merkle trees in the C2SP tlog-tiles layout (c2sp.org/tlog-tiles,
// modelled on Go's golang.org/x/mod/sumdb/tlog with the height fixed at 8).
//
// - Leaf hash SHA-256(0x00 || entry), node hash SHA-256(0x01 || left ||
//   right), the empty tree hashes to SHA-256("").
// - A tile at level L, index N holds up to 256 consecutive hashes at tree
//   level 8*L: hash i is MTH(D[(N*256 + i) * 256^L : (N*256 + i + 1) * 256^L]).
//   A full tile is 256 hashes (8192 bytes); the rightmost tile of a level is
//   partial (1..255 hashes) and lives at `tile/<L>/<N>.p/<W>`.
// - Storage is behind a tiny reader interface (ResourceReader: a path of the
//   static API in, its bytes out), so the same proof and verification code
//   runs over a directory and, later, over HTTP.

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/sha256.hpp"

namespace driftwatch::evidence {

using Hash = Sha256Digest;

/// Tiles are 2^8 hashes wide (tlog-tiles fixes the height at 8).
inline constexpr int kTileHeight = 8;
inline constexpr uint64_t kTileWidth = 256;
inline constexpr size_t kHashSize = 32;
/// Highest tile level a path may name (tlog-tiles: 0..63).
inline constexpr int kMaxTileLevel = 63;

/// SHA-256(0x00 || entry).
Hash leaf_hash(std::string_view entry);
/// SHA-256(0x01 || left || right).
Hash node_hash(const Hash& left, const Hash& right);
/// MTH of the empty tree: SHA-256 of nothing.
Hash empty_tree_hash();
/// The subtree hash of a power-of-two count of consecutive hashes at one
/// level (a full tile's 256 hashes give the hash one tile level up).
Hash subtree_of(std::span<const Hash> hashes);

/// One tile of the static API. `level` -1 names an entry bundle
/// (`tile/entries/...`) instead of a hash tile.
struct Tile {
  int level = 0;
  uint64_t index = 0;
  uint32_t width = kTileWidth;  // 1..256; 256 is a full tile

  bool is_full() const { return width == kTileWidth; }
  bool operator==(const Tile&) const = default;
};

inline constexpr int kEntriesLevel = -1;

/// The tile index in zero-padded 3-digit path elements, all but the last
/// prefixed with 'x': 1234067 is "x001/x234/067", 5 is "005".
std::string tile_index_path(uint64_t index);
/// `tile/<L>/<N>[.p/<W>]`, or `tile/entries/<N>[.p/<W>]` for level -1.
std::string tile_path(const Tile& tile);
/// The inverse of tile_path, strict: the one canonical spelling only.
Result<Tile> parse_tile_path(std::string_view path);

/// The hash tile at `level` that a tree of `tree_size` entries ends in, or
/// whose index is `index` in that tree: width min(256, hashes at that level
/// past index*256). nullopt when the tree has no hash there.
std::optional<Tile> tile_in_tree(int level, uint64_t index, uint64_t tree_size);

/// Hex of a hash, and the base64 the checkpoint and proof formats use.
std::string hash_hex(const Hash& hash);
std::string hash_base64(const Hash& hash);
Result<Hash> parse_hash_base64(std::string_view text);

// ---------------------------------------------------------------- storage

/// Reads one resource of a log by its path in the static API ("checkpoint",
/// "tile/0/x001/234.p/5", "checkpoints/1000"): nullopt when it does not
/// exist (a 404), an error when it cannot be read or is larger than
/// `max_bytes`. Implemented over a directory here and over HTTP by the CLI.
class ResourceReader {
 public:
  virtual ~ResourceReader() = default;
  virtual Result<std::optional<std::string>> read(const std::string& path,
                                                  size_t max_bytes) const = 0;
  /// The names in directory `path` ("checkpoints", "blob"), or nullopt when
  /// this reader cannot list (a static HTTP server need not).
  virtual Result<std::optional<std::vector<std::string>>> list(const std::string& path) const {
    (void)path;
    return std::optional<std::vector<std::string>>();
  }
  /// How many read() calls were made (tests bound what open() reads).
  virtual uint64_t reads() const { return 0; }
};

/// Resources under a directory, each opened as outside input (no symbolic
/// links, regular files only).
class DirectoryReader : public ResourceReader {
 public:
  explicit DirectoryReader(std::string root) : root_(std::move(root)) {}
  Result<std::optional<std::string>> read(const std::string& path, size_t max_bytes) const override;
  Result<std::optional<std::vector<std::string>>> list(const std::string& path) const override;
  uint64_t reads() const override { return reads_; }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
  mutable uint64_t reads_ = 0;
};

/// Resources from a callback (`verify --url` plugs an HTTP GET in here):
/// the callback gets the path and returns the body, nullopt for a 404.
class CallbackReader : public ResourceReader {
 public:
  using Fetch =
      std::function<Result<std::optional<std::string>>(const std::string& path, size_t max_bytes)>;
  explicit CallbackReader(Fetch fetch) : fetch_(std::move(fetch)) {}
  Result<std::optional<std::string>> read(const std::string& path,
                                          size_t max_bytes) const override {
    ++reads_;
    return fetch_(path, max_bytes);
  }
  uint64_t reads() const override { return reads_; }

 private:
  Fetch fetch_;
  mutable uint64_t reads_ = 0;
};

/// Subtree hashes of one tree: subtree(h, k) is MTH(D[k*2^h : (k+1)*2^h]),
/// for a subtree that is complete in the tree.
class HashSource {
 public:
  virtual ~HashSource() = default;
  virtual Result<Hash> subtree(int height, uint64_t index) = 0;
};

/// Subtree hashes read from the hash tiles of a tree of `tree_size` entries.
/// A partial tile that is gone is replaced by the full tile (tlog-tiles lets
/// a log delete partials once the full tile exists). Keeps the last tile read.
class TileHashSource : public HashSource {
 public:
  TileHashSource(const ResourceReader& reader, uint64_t tree_size)
      : reader_(reader), tree_size_(tree_size) {}
  Result<Hash> subtree(int height, uint64_t index) override;
  /// The first `tile.width` hashes of `tile`, from its file or a wider one.
  Result<std::string> read_tile(const Tile& tile);

 private:
  const ResourceReader& reader_;
  uint64_t tree_size_;
  std::optional<Tile> cached_tile_;
  std::string cached_data_;
};

/// Subtree hashes of leaf hashes held in memory (tests, small trees).
class MemoryHashSource : public HashSource {
 public:
  explicit MemoryHashSource(std::vector<Hash> leaves) : leaves_(std::move(leaves)) {}
  Result<Hash> subtree(int height, uint64_t index) override;

 private:
  std::vector<Hash> leaves_;
};

// ---------------------------------------------------------------- trees

/// MTH(D[lo:hi]) for a range of the RFC 6962 recursion (lo a multiple of
/// the largest power of two below hi-lo, or hi-lo a power of two).
Result<Hash> range_hash(HashSource& source, uint64_t lo, uint64_t hi);
/// The tree hash of the first `tree_size` entries.
Result<Hash> tree_hash(HashSource& source, uint64_t tree_size);
/// RFC 6962 2.1.1 PATH(index, D[0:tree_size]), leaf's sibling first.
Result<std::vector<Hash>> inclusion_proof(HashSource& source, uint64_t index, uint64_t tree_size);
/// RFC 6962 2.1.2 PROOF(old_size, D[0:new_size]).
Result<std::vector<Hash>> consistency_proof(HashSource& source, uint64_t old_size,
                                            uint64_t new_size);

/// RFC 9162 2.1.3.2: `proof` takes `leaf` at `index` to `root` of a tree of
/// `tree_size`. The error says which check failed.
Result<void> verify_inclusion(uint64_t index, uint64_t tree_size, const Hash& leaf,
                              std::span<const Hash> proof, const Hash& root);
/// RFC 9162 2.1.4.2: the tree of `old_size` with `old_root` is a prefix of
/// the tree of `new_size` with `new_root`.
Result<void> verify_consistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                                const Hash& new_root, std::span<const Hash> proof);

/// The right edge of a tree: for each tile level, the hashes of its
/// rightmost, incomplete tile (at most 255 a level, at most 8 levels), which
/// is all the writer keeps in memory however long the log is. It yields the
/// tree hash (the compact range: the complete subtrees of the binary
/// decomposition of the size are sub-ranges of these tiles) and the tiles
/// that an append completes.
class RightEdge {
 public:
  /// A tile completed by an append, with its 8192 bytes.
  struct FullTile {
    Tile tile;
    std::string data;
  };

  RightEdge() = default;
  /// The edge of a tree of `size` entries from the hashes of its partial
  /// tiles, lowest level first (`partials[L]` has (size >> 8L) % 256
  /// hashes; missing levels are empty).
  static Result<RightEdge> from_partials(uint64_t size, std::vector<std::vector<Hash>> partials);

  uint64_t size() const { return size_; }
  /// Adds one leaf hash; the tiles it completes (level 0 first) are
  /// appended to `completed` when it is given.
  void append(const Hash& leaf, std::vector<FullTile>* completed = nullptr);
  Hash root() const;
  /// The partial tiles of this size with their bytes, lowest level first.
  std::vector<FullTile> partial_tiles() const;
  /// The hashes of the partial tile at `level` (empty when none).
  const std::vector<Hash>& partial(int level) const;

 private:
  uint64_t size_ = 0;
  std::vector<std::vector<Hash>> levels_;
};

/// The bytes of consecutive hashes, as a tile file holds them.
std::string tile_bytes(std::span<const Hash> hashes);
/// Hash `i` of tile data (which must hold more than `i` hashes).
Hash hash_at(std::string_view tile_data, size_t i);

}  // namespace driftwatch::evidence
