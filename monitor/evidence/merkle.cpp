#include "evidence/merkle.hpp"

#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "common/crypto.hpp"
#include "common/file_io.hpp"

namespace driftwatch::evidence {
namespace {

std::string_view bytes_of(const Hash& hash) {
  return std::string_view(reinterpret_cast<const char*>(hash.data()), hash.size());
}

// Hashes at tree level 8*level in a tree of `tree_size` entries.
uint64_t hashes_at_level(int level, uint64_t tree_size) {
  const int shift = kTileHeight * level;
  return shift >= 64 ? 0 : tree_size >> shift;
}

// Largest power of two strictly below n (n >= 2).
uint64_t split_point(uint64_t n) {
  return std::bit_floor(n - 1);
}

bool is_power_of_two(uint64_t n) {
  return n != 0 && (n & (n - 1)) == 0;
}

// A decimal with no leading zeros, for path elements and widths.
std::optional<uint64_t> parse_decimal(std::string_view text, uint64_t max) {
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0')) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (max - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::string describe_path(const std::string& path) {
  return path.empty() ? "(empty path)" : path;
}

}  // namespace

Hash leaf_hash(std::string_view entry) {
  std::string input;
  input.reserve(entry.size() + 1);
  input.push_back('\0');
  input.append(entry);
  return sha256(input);
}

Hash node_hash(const Hash& left, const Hash& right) {
  char input[1 + 2 * kHashSize];
  input[0] = 0x01;
  std::memcpy(input + 1, left.data(), kHashSize);
  std::memcpy(input + 1 + kHashSize, right.data(), kHashSize);
  return sha256(std::string_view(input, sizeof input));
}

Hash empty_tree_hash() {
  static const Hash empty = sha256("");
  return empty;
}

Hash subtree_of(std::span<const Hash> hashes) {
  if (hashes.size() == 1) return hashes[0];
  const size_t half = hashes.size() / 2;
  return node_hash(subtree_of(hashes.first(half)), subtree_of(hashes.subspan(half)));
}

std::string tile_index_path(uint64_t index) {
  char element[8];
  std::snprintf(element, sizeof element, "%03u", static_cast<unsigned>(index % 1000));
  std::string path = element;
  while (index >= 1000) {
    index /= 1000;
    std::snprintf(element, sizeof element, "x%03u/", static_cast<unsigned>(index % 1000));
    path.insert(0, element);
  }
  return path;
}

std::string tile_path(const Tile& tile) {
  std::string path = "tile/";
  path += tile.level == kEntriesLevel ? std::string("entries") : std::to_string(tile.level);
  path += '/';
  path += tile_index_path(tile.index);
  if (!tile.is_full()) path += ".p/" + std::to_string(tile.width);
  return path;
}

Result<Tile> parse_tile_path(std::string_view path) {
  const auto bad = [&](std::string_view why) {
    return fail("\"", std::string(path.substr(0, 200)), "\" is not a tile path: ", why);
  };
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    const size_t slash = path.find('/', start);
    parts.push_back(path.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
    if (parts.size() > 16) return bad("too many elements");
  }
  if (parts.size() < 3 || parts[0] != "tile") return bad("it does not start with tile/<L>/");
  Tile tile;
  if (parts[1] == "entries") {
    tile.level = kEntriesLevel;
  } else {
    const auto level = parse_decimal(parts[1], kMaxTileLevel);
    if (!level) return bad("the level is not a decimal 0..63 without leading zeros");
    tile.level = static_cast<int>(*level);
  }
  size_t last = parts.size() - 1;
  if (parts.size() >= 4 && parts[last - 1].ends_with(".p")) {
    const auto width = parse_decimal(parts[last], kTileWidth - 1);
    if (!width || *width == 0) return bad("the width after .p/ is not a decimal 1..255");
    tile.width = static_cast<uint32_t>(*width);
    parts[last - 1].remove_suffix(2);
    parts.pop_back();
    last = parts.size() - 1;
  }
  if (last - 2 + 1 > 7) return bad("the index has more than 7 elements");
  uint64_t index = 0;
  for (size_t i = 2; i <= last; ++i) {
    std::string_view element = parts[i];
    if (i < last) {
      if (!element.starts_with('x')) return bad("an index element but the last lacks its 'x'");
      element.remove_prefix(1);
    }
    if (element.size() != 3) return bad("an index element is not 3 digits");
    uint64_t digits = 0;
    for (const char c : element) {
      if (c < '0' || c > '9') return bad("an index element is not 3 digits");
      digits = digits * 10 + static_cast<uint64_t>(c - '0');
    }
    if (index > (UINT64_MAX - digits) / 1000) return bad("the index does not fit 64 bits");
    index = index * 1000 + digits;
  }
  tile.index = index;
  if (tile_path(tile) != path) return bad("it is not the canonical spelling");
  return tile;
}

std::optional<Tile> tile_in_tree(int level, uint64_t index, uint64_t tree_size) {
  const uint64_t count = hashes_at_level(level, tree_size);
  if (index >= count / kTileWidth + (count % kTileWidth != 0 ? 1 : 0)) return std::nullopt;
  const uint64_t rest = count - index * kTileWidth;
  return Tile{level, index, static_cast<uint32_t>(rest < kTileWidth ? rest : kTileWidth)};
}

std::string hash_hex(const Hash& hash) {
  return to_hex(hash);
}

std::string hash_base64(const Hash& hash) {
  return base64_encode(bytes_of(hash));
}

Result<Hash> parse_hash_base64(std::string_view text) {
  auto bytes = base64_decode(text);
  if (!bytes) return std::unexpected(bytes.error());
  if (bytes->size() != kHashSize)
    return fail("a hash is 32 bytes, this base64 holds ", std::to_string(bytes->size()));
  Hash hash;
  std::memcpy(hash.data(), bytes->data(), kHashSize);
  return hash;
}

std::string tile_bytes(std::span<const Hash> hashes) {
  std::string out;
  out.reserve(hashes.size() * kHashSize);
  for (const Hash& hash : hashes) out.append(bytes_of(hash));
  return out;
}

Hash hash_at(std::string_view tile_data, size_t i) {
  Hash hash;
  std::memcpy(hash.data(), tile_data.data() + i * kHashSize, kHashSize);
  return hash;
}

// ---------------------------------------------------------------- readers

Result<std::optional<std::string>> DirectoryReader::read(const std::string& path,
                                                         size_t max_bytes) const {
  ++reads_;
  // The path comes from our own code or a proof request: no way out of root.
  if (path.empty() || path.front() == '/' || path.find("..") != std::string::npos ||
      path.find("//") != std::string::npos)
    return fail("refusing evidence path \"", describe_path(path), "\"");
  return read_regular_file_if_exists(std::filesystem::path(root_) / path, max_bytes,
                                     "evidence file");
}

Result<std::optional<std::vector<std::string>>> DirectoryReader::list(
    const std::string& path) const {
  std::vector<std::string> names;
  std::error_code ec;
  std::filesystem::directory_iterator it(std::filesystem::path(root_) / path, ec);
  if (ec == std::errc::no_such_file_or_directory) return std::optional(std::move(names));
  if (ec) return fail("cannot list ", root_, "/", path, ": ", ec.message());
  for (const auto& entry : it) names.push_back(entry.path().filename().string());
  return std::optional(std::move(names));
}

Result<std::string> TileHashSource::read_tile(const Tile& tile) {
  if (cached_tile_ && cached_tile_->level == tile.level && cached_tile_->index == tile.index &&
      cached_tile_->width >= tile.width)
    return cached_data_.substr(0, tile.width * kHashSize);
  const std::string path = tile_path(tile);
  DW_TRY(data, reader_.read(path, kTileWidth * kHashSize));
  std::string used_path = path;
  if (!data && !tile.is_full()) {
    used_path = tile_path(Tile{tile.level, tile.index, kTileWidth});
    DW_TRY(full, reader_.read(used_path, kTileWidth * kHashSize));
    data = std::move(full);
  }
  if (!data) return fail(path, " is missing");
  const size_t expected = (used_path == path ? tile.width : kTileWidth) * kHashSize;
  if (data->size() != expected)
    return fail(used_path, " holds ", std::to_string(data->size()), " bytes, not ",
                std::to_string(expected));
  cached_tile_ = Tile{tile.level, tile.index, static_cast<uint32_t>(data->size() / kHashSize)};
  cached_data_ = *data;
  data->resize(tile.width * kHashSize);
  return *data;
}

Result<Hash> TileHashSource::subtree(int height, uint64_t index) {
  const int level = height / kTileHeight;
  const int within = height % kTileHeight;
  const uint64_t first = index << within;
  const uint64_t count = uint64_t{1} << within;
  const auto tile = tile_in_tree(level, first / kTileWidth, tree_size_);
  if (!tile || (first % kTileWidth) + count > tile->width)
    return fail("subtree ", std::to_string(height), "/", std::to_string(index),
                " is not complete in a tree of ", std::to_string(tree_size_));
  DW_TRY(data, read_tile(*tile));
  std::vector<Hash> hashes;
  hashes.reserve(count);
  for (uint64_t i = 0; i < count; ++i) hashes.push_back(hash_at(data, first % kTileWidth + i));
  return subtree_of(hashes);
}

Result<Hash> MemoryHashSource::subtree(int height, uint64_t index) {
  const uint64_t count = uint64_t{1} << height;
  if (height >= 63 || index > (leaves_.size() >> height) || (index + 1) * count > leaves_.size())
    return fail("subtree ", std::to_string(height), "/", std::to_string(index),
                " is not complete in a tree of ", std::to_string(leaves_.size()));
  return subtree_of(std::span<const Hash>(leaves_).subspan(index * count, count));
}

// ---------------------------------------------------------------- trees

Result<Hash> range_hash(HashSource& source, uint64_t lo, uint64_t hi) {
  const uint64_t n = hi - lo;
  if (n == 0) return empty_tree_hash();
  if (is_power_of_two(n) && lo % n == 0) return source.subtree(std::countr_zero(n), lo / n);
  const uint64_t k = split_point(n);
  DW_TRY(left, range_hash(source, lo, lo + k));
  DW_TRY(right, range_hash(source, lo + k, hi));
  return node_hash(left, right);
}

Result<Hash> tree_hash(HashSource& source, uint64_t tree_size) {
  return range_hash(source, 0, tree_size);
}

namespace {

Result<void> path_into(HashSource& source, uint64_t m, uint64_t lo, uint64_t hi,
                       std::vector<Hash>& out) {
  if (hi - lo <= 1) return {};
  const uint64_t k = split_point(hi - lo);
  if (m < lo + k) {
    if (auto ok = path_into(source, m, lo, lo + k, out); !ok) return ok;
    DW_TRY(right, range_hash(source, lo + k, hi));
    out.push_back(right);
  } else {
    if (auto ok = path_into(source, m, lo + k, hi, out); !ok) return ok;
    DW_TRY(left, range_hash(source, lo, lo + k));
    out.push_back(left);
  }
  return {};
}

// SUBPROOF(m, D[lo:hi], b), m counted from lo.
Result<void> subproof_into(HashSource& source, uint64_t m, uint64_t lo, uint64_t hi,
                           bool whole_old_tree, std::vector<Hash>& out) {
  const uint64_t n = hi - lo;
  if (m == n) {
    if (!whole_old_tree) {
      DW_TRY(hash, range_hash(source, lo, hi));
      out.push_back(hash);
    }
    return {};
  }
  const uint64_t k = split_point(n);
  if (m <= k) {
    if (auto ok = subproof_into(source, m, lo, lo + k, whole_old_tree, out); !ok) return ok;
    DW_TRY(right, range_hash(source, lo + k, hi));
    out.push_back(right);
  } else {
    if (auto ok = subproof_into(source, m - k, lo + k, hi, false, out); !ok) return ok;
    DW_TRY(left, range_hash(source, lo, lo + k));
    out.push_back(left);
  }
  return {};
}

}  // namespace

Result<std::vector<Hash>> inclusion_proof(HashSource& source, uint64_t index, uint64_t tree_size) {
  if (index >= tree_size)
    return fail("no inclusion proof for index ", std::to_string(index), " in a tree of ",
                std::to_string(tree_size));
  std::vector<Hash> proof;
  if (auto ok = path_into(source, index, 0, tree_size, proof); !ok)
    return std::unexpected(ok.error());
  return proof;
}

Result<std::vector<Hash>> consistency_proof(HashSource& source, uint64_t old_size,
                                            uint64_t new_size) {
  if (old_size > new_size)
    return fail("no consistency proof from a tree of ", std::to_string(old_size),
                " to a smaller one of ", std::to_string(new_size));
  std::vector<Hash> proof;
  if (old_size == 0 || old_size == new_size) return proof;
  if (auto ok = subproof_into(source, old_size, 0, new_size, true, proof); !ok)
    return std::unexpected(ok.error());
  return proof;
}

Result<void> verify_inclusion(uint64_t index, uint64_t tree_size, const Hash& leaf,
                              std::span<const Hash> proof, const Hash& root) {
  if (index >= tree_size)
    return fail("index ", std::to_string(index), " is not in a tree of ",
                std::to_string(tree_size));
  uint64_t fn = index;
  uint64_t sn = tree_size - 1;
  Hash r = leaf;
  for (const Hash& p : proof) {
    if (sn == 0) return fail("the inclusion proof is longer than the tree is deep");
    if ((fn & 1) != 0 || fn == sn) {
      r = node_hash(p, r);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = node_hash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return fail("the inclusion proof is shorter than the tree is deep");
  if (r != root)
    return fail("the inclusion proof for index ", std::to_string(index), " leads to root ",
                hash_base64(r), ", not ", hash_base64(root));
  return {};
}

Result<void> verify_consistency(uint64_t old_size, uint64_t new_size, const Hash& old_root,
                                const Hash& new_root, std::span<const Hash> proof) {
  if (old_size > new_size)
    return fail("a tree of ", std::to_string(old_size), " cannot be a prefix of one of ",
                std::to_string(new_size));
  if (old_size == new_size) {
    if (!proof.empty()) return fail("a consistency proof between equal sizes must be empty");
    if (old_root != new_root)
      return fail("two different roots for the same tree size ", std::to_string(old_size));
    return {};
  }
  if (old_size == 0) {
    if (!proof.empty()) return fail("a consistency proof from the empty tree must be empty");
    return {};
  }
  if (proof.empty()) return fail("the consistency proof is empty");
  std::vector<Hash> path(proof.begin(), proof.end());
  if (is_power_of_two(old_size)) path.insert(path.begin(), old_root);
  uint64_t fn = old_size - 1;
  uint64_t sn = new_size - 1;
  while ((fn & 1) != 0) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = path[0];
  Hash sr = path[0];
  for (size_t i = 1; i < path.size(); ++i) {
    const Hash& c = path[i];
    if (sn == 0) return fail("the consistency proof is too long");
    if ((fn & 1) != 0 || fn == sn) {
      fr = node_hash(c, fr);
      sr = node_hash(c, sr);
      if ((fn & 1) == 0) {
        while ((fn & 1) == 0 && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      sr = node_hash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return fail("the consistency proof is too short");
  if (fr != old_root)
    return fail("the consistency proof does not lead to the old root ", hash_base64(old_root));
  if (sr != new_root)
    return fail("the consistency proof does not lead to the new root ", hash_base64(new_root));
  return {};
}

// ---------------------------------------------------------------- right edge

Result<RightEdge> RightEdge::from_partials(uint64_t size, std::vector<std::vector<Hash>> partials) {
  for (int level = 0; level < 8 || level < static_cast<int>(partials.size()); ++level) {
    const uint64_t expected = hashes_at_level(level, size) % kTileWidth;
    const uint64_t have =
        level < static_cast<int>(partials.size()) ? partials[static_cast<size_t>(level)].size() : 0;
    if (have != expected)
      return fail("a tree of ", std::to_string(size), " has ", std::to_string(expected),
                  " hashes in its partial tile at level ", std::to_string(level), ", not ",
                  std::to_string(have));
  }
  RightEdge edge;
  edge.size_ = size;
  edge.levels_ = std::move(partials);
  while (!edge.levels_.empty() && edge.levels_.back().empty()) edge.levels_.pop_back();
  return edge;
}

void RightEdge::append(const Hash& leaf, std::vector<FullTile>* completed) {
  if (levels_.empty()) levels_.emplace_back();
  levels_[0].push_back(leaf);
  ++size_;
  for (size_t level = 0; levels_[level].size() == kTileWidth; ++level) {
    if (completed != nullptr) {
      const uint64_t count = hashes_at_level(static_cast<int>(level), size_);
      completed->push_back(FullTile{Tile{static_cast<int>(level), count / kTileWidth - 1},
                                    tile_bytes(levels_[level])});
    }
    const Hash up = subtree_of(levels_[level]);
    levels_[level].clear();
    if (levels_.size() == level + 1) levels_.emplace_back();
    levels_[level + 1].push_back(up);
  }
}

Hash RightEdge::root() const {
  std::vector<Hash> subtrees;  // complete subtrees, left to right
  for (size_t level = levels_.size(); level-- > 0;) {
    const std::vector<Hash>& hashes = levels_[level];
    size_t at = 0;
    for (int bit = kTileHeight - 1; bit >= 0; --bit) {
      const size_t count = size_t{1} << bit;
      if ((hashes.size() & count) == 0) continue;
      subtrees.push_back(subtree_of(std::span<const Hash>(hashes).subspan(at, count)));
      at += count;
    }
  }
  if (subtrees.empty()) return empty_tree_hash();
  Hash root = subtrees.back();
  for (size_t i = subtrees.size() - 1; i-- > 0;) root = node_hash(subtrees[i], root);
  return root;
}

std::vector<RightEdge::FullTile> RightEdge::partial_tiles() const {
  std::vector<FullTile> tiles;
  for (size_t level = 0; level < levels_.size(); ++level) {
    if (levels_[level].empty()) continue;
    const uint64_t count = hashes_at_level(static_cast<int>(level), size_);
    tiles.push_back(FullTile{Tile{static_cast<int>(level), count / kTileWidth,
                                  static_cast<uint32_t>(levels_[level].size())},
                             tile_bytes(levels_[level])});
  }
  return tiles;
}

const std::vector<Hash>& RightEdge::partial(int level) const {
  static const std::vector<Hash> none;
  if (level < 0 || static_cast<size_t>(level) >= levels_.size()) return none;
  return levels_[static_cast<size_t>(level)];
}

}  // namespace driftwatch::evidence
