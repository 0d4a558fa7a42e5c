#include "evidence/verify.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include "common/sha256.hpp"
#include "evidence/log.hpp"

namespace driftwatch::evidence {
namespace {

std::string str(uint64_t value) {
  return std::to_string(value);
}

std::optional<uint64_t> parse_size(std::string_view name) {
  if (name.empty() || name.size() > 20 || (name.size() > 1 && name[0] == '0') ||
      name.find_first_not_of("0123456789") != std::string_view::npos)
    return std::nullopt;
  uint64_t value = 0;
  for (const char c : name) {
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

class Verifier {
 public:
  Verifier(const ResourceReader& reader, const NoteVerifier& key, const VerifyOptions& options)
      : reader_(reader), key_(key), options_(options) {}

  VerifyResult run();

 private:
  // Records the first problem; returns false so callers can `return bad(...)`.
  bool bad(VerifyFailure failure, const std::string& path, const std::string& why) {
    if (result_.failure == VerifyFailure::kNone) {
      result_.failure = failure;
      result_.path = path;
      result_.message = path + ": " + why;
    }
    return false;
  }
  bool tampered(const std::string& path, const std::string& why) {
    return bad(VerifyFailure::kTampered, path, why);
  }

  // The bytes of `tile` (its own file, or the full tile's prefix for a
  // partial that was deleted); nullopt after recording a problem.
  std::optional<std::string> read_tile(const Tile& tile, size_t max_bytes, size_t unit);
  bool check_latest_checkpoint();
  bool list_checkpoints();
  bool check_checkpoint(uint64_t size);
  bool check_bundle(uint64_t index);
  bool check_full_tile(const RightEdge::FullTile& full);
  bool check_blobs();
  bool blame_level0(uint64_t bundle_index, const std::string& bundle_path,
                    const std::string& tile_path, const std::string& tile_data, size_t position);

  const ResourceReader& reader_;
  const NoteVerifier& key_;
  const VerifyOptions& options_;
  VerifyResult result_;
  Checkpoint latest_;
  std::string latest_note_;
  std::vector<uint64_t> checkpoint_sizes_;  // ascending, at most latest_.size
  size_t next_checkpoint_ = 0;
  RightEdge edge_;
};

std::optional<std::string> Verifier::read_tile(const Tile& tile, size_t max_bytes, size_t unit) {
  const std::string path = tile_path(tile);
  auto data = reader_.read(path, max_bytes);
  if (!data) {
    bad(VerifyFailure::kNotALog, path, data.error().message);
    return std::nullopt;
  }
  if (*data || tile.is_full()) {
    if (!*data) {
      tampered(path, "is missing");
      return std::nullopt;
    }
    return std::move(**data);
  }
  // A partial may be gone once its full tile exists.
  const std::string full_path = tile_path(Tile{tile.level, tile.index, kTileWidth});
  auto full = reader_.read(full_path, max_bytes);
  if (!full) {
    bad(VerifyFailure::kNotALog, full_path, full.error().message);
    return std::nullopt;
  }
  if (!*full) {
    tampered(path, "is missing (and so is " + full_path + ")");
    return std::nullopt;
  }
  if (unit != 0) {
    if ((*full)->size() != kTileWidth * unit) {
      tampered(full_path,
               "holds " + str((*full)->size()) + " bytes, not " + str(kTileWidth * unit));
      return std::nullopt;
    }
    (*full)->resize(tile.width * unit);
  }
  return std::move(**full);
}

bool Verifier::check_latest_checkpoint() {
  auto text = reader_.read("checkpoint", kMaxNoteBytes);
  if (!text) return bad(VerifyFailure::kNotALog, "checkpoint", text.error().message);
  if (!*text)
    return bad(VerifyFailure::kNotALog, "checkpoint",
               "is missing: this is not an evidence log, or it has not issued a checkpoint yet");
  auto checkpoint = open_checkpoint(**text, key_, options_.origin);
  if (!checkpoint) {
    const auto& error = checkpoint.error();
    switch (error.failure) {
      case NoteFailure::kUnknownKey:
        return bad(VerifyFailure::kWrongKey, "checkpoint", error.message);
      case NoteFailure::kBadSignature:
        return tampered("checkpoint", error.message);
      case NoteFailure::kMalformed:
        return tampered("checkpoint", "is not a signed checkpoint: " + error.message);
    }
  }
  latest_ = *checkpoint;
  latest_note_ = **text;
  result_.tree_size = latest_.size;
  result_.root = latest_.root;
  return true;
}

bool Verifier::list_checkpoints() {
  auto names = reader_.list("checkpoints");
  if (!names) return bad(VerifyFailure::kNotALog, "checkpoints", names.error().message);
  if (!*names) {
    // Cannot list (plain HTTP): the copy of the latest, if there is one.
    auto latest = reader_.read("checkpoints/" + str(latest_.size), kMaxNoteBytes);
    if (latest && *latest) checkpoint_sizes_.push_back(latest_.size);
    return true;
  }
  result_.checkpoints_listed = true;
  for (const auto& name : **names) {
    const auto size = parse_size(name);
    if (!size) return tampered("checkpoints/" + name, "is not named by a tree size");
    if (*size > latest_.size)
      return tampered("checkpoints/" + name,
                      "is a checkpoint of more entries than the latest checkpoint (" +
                          str(latest_.size) + "): the log was rolled back");
    checkpoint_sizes_.push_back(*size);
  }
  std::sort(checkpoint_sizes_.begin(), checkpoint_sizes_.end());
  return true;
}

// Called when the tree being rebuilt has exactly `size` entries.
bool Verifier::check_checkpoint(uint64_t size) {
  const std::string path = "checkpoints/" + str(size);
  auto text = reader_.read(path, kMaxNoteBytes);
  if (!text) return bad(VerifyFailure::kNotALog, path, text.error().message);
  if (!*text) return tampered(path, "is missing");
  auto checkpoint = open_checkpoint(**text, key_, latest_.origin);
  if (!checkpoint)
    return tampered(path,
                    checkpoint.error().failure == NoteFailure::kUnknownKey
                        ? "is not signed by " + key_.vkey() + ": " + checkpoint.error().message
                        : checkpoint.error().message);
  if (checkpoint->size != size)
    return tampered(path, "holds a checkpoint of " + str(checkpoint->size) + " entries");
  if (checkpoint->root != edge_.root())
    return tampered(path, "its root " + hash_base64(checkpoint->root) +
                              " is not the root of the first " + str(size) +
                              " entries of the latest tree (" + hash_base64(edge_.root()) +
                              "): the log's history was rewritten after it was checkpointed");
  ++result_.checkpoints_checked;
  return true;
}

bool Verifier::blame_level0(uint64_t bundle_index, const std::string& bundle_path,
                            const std::string& tile_path_text, const std::string& tile_data,
                            size_t position) {
  const uint64_t entry = bundle_index * kTileWidth + position;
  // A full tile has a hash in the tile above: if that agrees with the tile
  // on disk, the tile is right and the entry was changed; if not, the tile.
  if (tile_data.size() == kTileWidth * kHashSize) {
    if (const auto above = tile_in_tree(1, bundle_index / kTileWidth, latest_.size)) {
      auto data = reader_.read(tile_path(*above), kTileWidth * kHashSize);
      if (data && *data && (*data)->size() == above->width * kHashSize) {
        std::vector<Hash> hashes;
        for (size_t i = 0; i < kTileWidth; ++i) hashes.push_back(hash_at(tile_data, i));
        if (hash_at(**data, bundle_index % kTileWidth) == subtree_of(hashes))
          return tampered(bundle_path, "entry " + str(entry) +
                                           " was changed: its leaf hash is not hash " +
                                           str(position) + " of " + tile_path_text + ", which " +
                                           tile_path(*above) + " above it confirms");
        return tampered(tile_path_text,
                        "hash " + str(position) + " is not the leaf hash of entry " + str(entry) +
                            " in " + bundle_path + ", and the tile does not match " +
                            tile_path(*above) + " above it: the tile was changed");
      }
    }
  }
  return tampered(bundle_path, "entry " + str(entry) + " does not hash to hash " + str(position) +
                                   " of " + tile_path_text + ": the entry or the tile was changed");
}

bool Verifier::check_full_tile(const RightEdge::FullTile& full) {
  if (full.tile.level == 0) return true;  // compared with the entries hash by hash
  const std::string path = tile_path(full.tile);
  auto data = read_tile(full.tile, kTileWidth * kHashSize, 0);
  if (!data) return false;
  ++result_.tiles_checked;
  if (*data == full.data) return true;
  if (data->size() != full.data.size())
    return tampered(path, "holds " + str(data->size()) + " bytes, not " + str(full.data.size()));
  for (size_t i = 0; i < kTileWidth; ++i)
    if (hash_at(*data, i) != hash_at(full.data, i))
      return tampered(path, "hash " + str(i) + " is not the hash of the tile below it, " +
                                tile_path(Tile{full.tile.level - 1,
                                               full.tile.index * kTileWidth + i, kTileWidth}) +
                                ": the tile was changed");
  return tampered(path, "does not match the tiles below it");
}

bool Verifier::check_bundle(uint64_t index) {
  const uint32_t width =
      static_cast<uint32_t>(std::min<uint64_t>(kTileWidth, latest_.size - index * kTileWidth));
  const Tile bundle_tile{kEntriesLevel, index, width};
  const std::string bundle_path = tile_path(bundle_tile);
  auto exact = reader_.read(bundle_path, kMaxBundleBytes);
  if (!exact) return bad(VerifyFailure::kNotALog, bundle_path, exact.error().message);
  std::optional<std::string> bytes = std::move(*exact);
  bool from_full = false;  // a full bundle standing in for a deleted partial
  if (!bytes && !bundle_tile.is_full()) {
    const std::string full_path = tile_path(Tile{kEntriesLevel, index, kTileWidth});
    auto full = reader_.read(full_path, kMaxBundleBytes);
    if (!full) return bad(VerifyFailure::kNotALog, full_path, full.error().message);
    bytes = std::move(*full);
    from_full = bytes.has_value();
  }
  if (!bytes) return tampered(bundle_path, "is missing");
  const BundleParse parsed = parse_entry_bundle(*bytes);
  if (parsed.problem) return tampered(bundle_path, "is not an entry bundle: " + *parsed.problem);
  const size_t expected = from_full ? kTileWidth : width;
  if (parsed.entries.size() < expected)
    return tampered(bundle_path, "holds " + str(parsed.entries.size()) + " entries, not " +
                                     str(expected) + ": entries were deleted");
  if (parsed.entries.size() > expected)
    return tampered(bundle_path, "holds " + str(parsed.entries.size()) + " entries, not " +
                                     str(expected) + ": entries were added");

  const Tile hash_tile{0, index, width};
  const std::string hash_tile_path = tile_path(hash_tile);
  auto tile_data = read_tile(hash_tile, kTileWidth * kHashSize, kHashSize);
  if (!tile_data) return false;
  if (tile_data->size() != width * kHashSize)
    return tampered(hash_tile_path,
                    "holds " + str(tile_data->size()) + " bytes, not " + str(width * kHashSize));
  ++result_.tiles_checked;

  std::vector<RightEdge::FullTile> completed;
  for (size_t i = 0; i < width; ++i) {
    const Hash leaf = leaf_hash(parsed.entries[i]);
    if (leaf != hash_at(*tile_data, i))
      return blame_level0(index, bundle_path, hash_tile_path, *tile_data, i);
    edge_.append(leaf, &completed);
    for (const auto& full : completed)
      if (!check_full_tile(full)) return false;
    completed.clear();
    // Checkpoints of the latest size come after the latest root's check.
    while (next_checkpoint_ < checkpoint_sizes_.size() && edge_.size() < latest_.size &&
           checkpoint_sizes_[next_checkpoint_] == edge_.size()) {
      if (!check_checkpoint(edge_.size())) return false;
      ++next_checkpoint_;
    }
  }
  return true;
}

bool Verifier::check_blobs() {
  auto names = reader_.list("blob");
  if (!names) return bad(VerifyFailure::kNotALog, "blob", names.error().message);
  if (!*names) return true;
  for (const auto& name : **names) {
    const std::string path = "blob/" + name;
    if (name.size() != 64 || name.find_first_not_of("0123456789abcdef") != std::string::npos)
      return tampered(path, "is not named by a lowercase hex SHA-256");
    auto bytes = reader_.read(path, kMaxBlobBytes);
    if (!bytes) return bad(VerifyFailure::kNotALog, path, bytes.error().message);
    if (!*bytes) return tampered(path, "is missing");
    if (sha256_hex(**bytes) != name)
      return tampered(path, "does not hash to its name: the blob was changed");
    ++result_.blobs_checked;
  }
  return true;
}

VerifyResult Verifier::run() {
  if (!check_latest_checkpoint() || !list_checkpoints()) return result_;
  while (next_checkpoint_ < checkpoint_sizes_.size() && checkpoint_sizes_[next_checkpoint_] == 0 &&
         latest_.size > 0) {
    if (!check_checkpoint(0)) return result_;
    ++next_checkpoint_;
  }
  const uint64_t bundles = latest_.size / kTileWidth + (latest_.size % kTileWidth != 0 ? 1 : 0);
  for (uint64_t index = 0; index < bundles; ++index)
    if (!check_bundle(index)) return result_;
  // The partial tiles above level 0 at the checkpoint's size.
  for (const auto& partial : edge_.partial_tiles()) {
    if (partial.tile.level == 0) continue;
    auto data = read_tile(partial.tile, kTileWidth * kHashSize, kHashSize);
    if (!data) return result_;
    ++result_.tiles_checked;
    if (*data != partial.data) {
      tampered(tile_path(partial.tile), "does not match the tiles below it: the tile was changed");
      return result_;
    }
  }
  if (edge_.root() != latest_.root) {
    tampered("checkpoint", "the signed root " + hash_base64(latest_.root) +
                               " is not the root of the log's " + str(latest_.size) + " entries (" +
                               hash_base64(edge_.root()) +
                               "): the entries and tiles were rewritten after it was signed");
    return result_;
  }
  ++result_.checkpoints_checked;
  while (next_checkpoint_ < checkpoint_sizes_.size() &&
         checkpoint_sizes_[next_checkpoint_] == latest_.size) {
    if (!check_checkpoint(latest_.size)) return result_;
    ++next_checkpoint_;
  }
  if (next_checkpoint_ != checkpoint_sizes_.size()) {
    tampered("checkpoints/" + str(checkpoint_sizes_[next_checkpoint_]), "was not reached");
    return result_;
  }
  if (options_.check_blobs && !check_blobs()) return result_;
  return result_;
}

}  // namespace

std::string to_string(VerifyFailure failure) {
  switch (failure) {
    case VerifyFailure::kNone:
      return "ok";
    case VerifyFailure::kNotALog:
      return "not_a_log";
    case VerifyFailure::kWrongKey:
      return "wrong_key";
    case VerifyFailure::kTampered:
      return "tampered";
  }
  return "unknown";
}

VerifyResult verify_log(const ResourceReader& reader, const NoteVerifier& verifier,
                        const VerifyOptions& options) {
  return Verifier(reader, verifier, options).run();
}

}  // namespace driftwatch::evidence
