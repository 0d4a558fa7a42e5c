#include "evidence/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "common/sha256.hpp"

namespace driftwatch::evidence {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kFileMode = 0644;  // the log is public: it is served as static files
constexpr mode_t kDirMode = 0755;
constexpr const char* kStaging = ".staging";

std::string str(uint64_t value) {
  return std::to_string(value);
}

Tile full_tile(int level, uint64_t index) {
  return Tile{level, index, static_cast<uint32_t>(kTileWidth)};
}

std::string partial_dir(int level, uint64_t index) {
  return tile_path(full_tile(level, index)) + ".p";
}

bool path_exists(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// mkdir -p of `relative` under `root`, new directories 0755.
Result<void> make_dirs(const fs::path& root, const fs::path& relative) {
  fs::path at = root;
  for (const auto& part : relative) {
    at /= part;
    if (::mkdir(at.c_str(), kDirMode) != 0 && errno != EEXIST)
      return fail("cannot create directory ", at.string(), ": ", describe_errno(errno));
  }
  return {};
}

std::vector<Hash> hashes_of(std::string_view data) {
  std::vector<Hash> hashes;
  for (size_t i = 0; i < data.size() / kHashSize; ++i) hashes.push_back(hash_at(data, i));
  return hashes;
}

// The widths of the partial files of a tile, widest first.
Result<std::vector<uint32_t>> partial_widths(const DirectoryReader& reader, int level,
                                             uint64_t index, uint64_t& listings) {
  ++listings;
  DW_TRY(names, reader.list(partial_dir(level, index)));
  std::vector<uint32_t> widths;
  for (const auto& name : names.value_or(std::vector<std::string>{})) {
    if (name.empty() || name.size() > 3 || name[0] == '0' ||
        name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const int width = std::stoi(name);
    if (width >= 1 && width < static_cast<int>(kTileWidth))
      widths.push_back(static_cast<uint32_t>(width));
  }
  std::sort(widths.rbegin(), widths.rend());
  return widths;
}

// The most entries any one bundle file of bundle `index` holds (its full
// file, then its partials, widest first; a torn file counts for the
// complete entries it has, up to its width).
struct BestBundle {
  std::vector<std::string> entries;
  std::string path;  // the file they came from; empty when there is none
};

Result<BestBundle> best_bundle(const DirectoryReader& reader, uint64_t index, uint64_t& listings) {
  BestBundle best;
  std::vector<uint32_t> widths{static_cast<uint32_t>(kTileWidth)};
  DW_TRY(partials, partial_widths(reader, kEntriesLevel, index, listings));
  widths.insert(widths.end(), partials.begin(), partials.end());
  for (const uint32_t width : widths) {
    const std::string path = tile_path(Tile{kEntriesLevel, index, width});
    DW_TRY(bytes, reader.read(path, kMaxBundleBytes));
    if (!bytes) continue;
    const BundleParse parsed = parse_entry_bundle(*bytes);
    const size_t usable = std::min<size_t>(parsed.entries.size(), width);
    if (usable > best.entries.size() || best.path.empty()) {
      best.entries.assign(parsed.entries.begin(), parsed.entries.begin() + usable);
      best.path = path;
    }
    if (!parsed.problem && parsed.entries.size() == width) break;
  }
  return best;
}

// The widest usable file of hash tile (level, index): its hashes, at most
// its width.
struct BestTile {
  std::string data;
  uint32_t width = 0;
  std::string path;
};

Result<BestTile> best_tile(const DirectoryReader& reader, int level, uint64_t index,
                           uint64_t& listings) {
  BestTile best;
  std::vector<uint32_t> widths{static_cast<uint32_t>(kTileWidth)};
  DW_TRY(partials, partial_widths(reader, level, index, listings));
  widths.insert(widths.end(), partials.begin(), partials.end());
  for (const uint32_t width : widths) {
    const std::string path = tile_path(Tile{level, index, width});
    DW_TRY(data, reader.read(path, kTileWidth * kHashSize));
    if (!data) continue;
    const uint32_t usable =
        std::min<uint32_t>(static_cast<uint32_t>(data->size() / kHashSize), width);
    if (usable > best.width) {
      best.data = data->substr(0, usable * kHashSize);
      best.width = usable;
      best.path = path;
    }
    if (data->size() == width * kHashSize) break;
  }
  return best;
}

std::string encode_entries(const std::vector<std::string>& entries) {
  std::string bytes;
  for (const auto& entry : entries) bytes += encode_bundle_entry(entry);
  return bytes;
}

}  // namespace

std::string encode_bundle_entry(std::string_view entry) {
  std::string out;
  out.reserve(entry.size() + 2);
  out.push_back(static_cast<char>((entry.size() >> 8) & 0xFF));
  out.push_back(static_cast<char>(entry.size() & 0xFF));
  out.append(entry);
  return out;
}

BundleParse parse_entry_bundle(std::string_view bytes) {
  BundleParse parsed;
  size_t at = 0;
  while (at < bytes.size()) {
    if (parsed.entries.size() == kTileWidth) {
      parsed.problem = "more than 256 entries (bytes from offset " + str(at) + " on)";
      break;
    }
    if (bytes.size() - at < 2) {
      parsed.problem = "the length of entry " + str(parsed.entries.size()) + " at offset " +
                       str(at) + " is cut short";
      break;
    }
    const size_t length = (size_t{static_cast<unsigned char>(bytes[at])} << 8) |
                          size_t{static_cast<unsigned char>(bytes[at + 1])};
    if (bytes.size() - at - 2 < length) {
      parsed.problem = "entry " + str(parsed.entries.size()) + " at offset " + str(at) + " is " +
                       str(length) + " bytes long but only " + str(bytes.size() - at - 2) +
                       " follow";
      break;
    }
    parsed.entries.push_back(bytes.substr(at + 2, length));
    at += 2 + length;
  }
  return parsed;
}

std::string RecoveryReport::summary() const {
  if (clean()) return "evidence log opened at " + str(size) + " entries, nothing to recover";
  std::string text = "evidence log recovered to " + str(size) + " entries (checkpoint at " +
                     str(checkpoint_size) + ")";
  if (cut_entries > 0)
    text += "; cut " + str(cut_entries) + " entries that were not durable with their tiles";
  const auto list = [&](const char* what, const std::vector<std::string>& paths) {
    if (paths.empty()) return;
    text += std::string("; ") + what + " " + str(paths.size()) + ": ";
    for (size_t i = 0; i < paths.size() && i < 5; ++i) text += (i ? ", " : "") + paths[i];
    if (paths.size() > 5) text += ", …";
  };
  list("removed", removed);
  list("rewrote", rewritten);
  return text;
}

nlohmann::json RecoveryReport::to_json() const {
  return nlohmann::json{{"checkpoint_size", checkpoint_size},
                        {"size", size},
                        {"cut_entries", cut_entries},
                        {"removed", removed},
                        {"rewritten", rewritten}};
}

// Serves the partial tiles of the current right edge from memory (any
// width up to the current one), everything else from the directory: a
// proof for a tree size that no batch ended at still finds its hashes.
class Log::EdgeReader : public ResourceReader {
 public:
  EdgeReader(RightEdge edge, const fs::path& dir) : edge_(std::move(edge)), disk_(dir.string()) {}
  Result<std::optional<std::string>> read(const std::string& path,
                                          size_t max_bytes) const override {
    if (auto tile = parse_tile_path(path); tile && tile->level >= 0 && !tile->is_full()) {
      const auto& hashes = edge_.partial(tile->level);
      const auto edge_tile = tile_in_tree(tile->level, tile->index, edge_.size());
      if (edge_tile && !edge_tile->is_full() && tile->width <= hashes.size())
        return std::optional(tile_bytes(std::span<const Hash>(hashes).first(tile->width)));
    }
    return disk_.read(path, max_bytes);
  }

 private:
  RightEdge edge_;
  DirectoryReader disk_;
};

// Deletes queued paths (files or directories) on its own thread, in order.
// Failures are ignored: a partial left behind is harmless (open() and
// clients do not need it, and do not mind it).
class Log::Janitor {
 public:
  Janitor() : thread_([this] { run(); }) {}
  ~Janitor() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void remove(fs::path path) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(path));
    }
    wake_.notify_all();
  }
  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_.wait(lock, [&] { return queue_.empty() && !busy_; });
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, all done
      const fs::path path = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      std::error_code ignored;
      fs::remove_all(path, ignored);
      lock.lock();
      busy_ = false;
      if (queue_.empty()) idle_.notify_all();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::deque<fs::path> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  std::thread thread_;  // last: starts once the rest is constructed
};

Log::Log(Log&&) noexcept = default;
Log& Log::operator=(Log&&) noexcept = default;
Log::~Log() = default;

TreeHead Log::head() const {
  std::shared_lock lock(*mutex_);
  return TreeHead{edge_.size(), root_};
}

std::optional<std::string> Log::latest_checkpoint() const {
  std::shared_lock lock(*mutex_);
  return latest_checkpoint_;
}

RightEdge Log::edge_snapshot() const {
  std::shared_lock lock(*mutex_);
  return edge_;
}

void Log::wait_for_janitor() const {
  if (janitor_) janitor_->wait_idle();
}

Result<void> Log::write_file(const std::string& path, std::string_view bytes) {
  const fs::path staging =
      dir_ / kStaging / (str(static_cast<uint64_t>(::getpid())) + "-" + str(++staging_counter_));
  const fs::path target = dir_ / path;
  Fd fd(::open(staging.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, kFileMode));
  if (!fd) return fail("cannot create ", staging.string(), ": ", describe_errno(errno));
  const auto undo = [&] { ::unlink(staging.c_str()); };
  if (::fchmod(fd.get(), kFileMode) != 0) {
    const int error = errno;
    undo();
    return fail("cannot set the mode of ", staging.string(), ": ", describe_errno(error));
  }
  if (auto ok = write_all(fd.get(), bytes); !ok) {
    undo();
    return fail("cannot write ", staging.string(), " (for ", path, "): ", ok.error().message);
  }
  if (::close(fd.release()) != 0) {
    const int error = errno;
    undo();
    return fail("cannot write ", staging.string(), " (for ", path, "): ", describe_errno(error));
  }
  if (auto made = make_dirs(dir_, fs::path(path).parent_path()); !made) {
    undo();
    return made;
  }
  if (::rename(staging.c_str(), target.c_str()) != 0) {
    const int error = errno;
    undo();
    return fail("cannot rename ", staging.string(), " to ", target.string(), ": ",
                describe_errno(error));
  }
  return {};
}

// One syncfs(2) rather than an fdatasync of each file written (before its
// rename) and an fsync of each directory that got a name: both make the
// entries, tiles, blobs and their directory entries durable before append()
// returns, but a batch writes 4 log files (the bundle and the partial tiles)
// plus one per blob, in 4-5 directories, and each fdatasync or fsync is a
// journal commit of its own. Measured on ext4 (`evidence_bench flush`,
// bench/evidence.sh; README "Benchmarks"): a batch of 64 observations
// flushes in about half the time with syncfs, one of 64 launches with their
// blobs in about a third. The price: syncfs also writes back other
// processes' dirty data on the same file system, which shows as a longer
// p99 while something else writes a lot (a build).
Result<void> Log::flush() {
  if (::syncfs(dir_fd_.get()) != 0)
    return fail("cannot flush the evidence log ", dir_.string(),
                " to disk (syncfs): ", describe_errno(errno));
  return {};
}

Result<void> Log::sync() {
  return flush();
}

Result<Log> Log::open(const fs::path& dir, NoteSigner signer, std::string origin) {
  Log log;
  log.dir_ = dir;
  log.signer_ = std::move(signer);
  log.origin_ = std::move(origin);
  const auto where = [&](const std::string& path) { return (dir / path).string(); };

  if (::mkdir(dir.c_str(), kDirMode) != 0 && errno != EEXIST)
    return fail("cannot create the evidence log directory ", dir.string(), ": ",
                describe_errno(errno));
  log.dir_fd_ = Fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
  if (!log.dir_fd_)
    return fail("cannot open the evidence log directory ", dir.string(), ": ",
                describe_errno(errno));

  RecoveryReport& report = log.recovery_;
  // Staging files are writes that never got their rename.
  if (::mkdir((dir / kStaging).c_str(), 0700) != 0 && errno != EEXIST)
    return fail("cannot create ", where(kStaging), ": ", describe_errno(errno));
  {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir / kStaging, ec)) {
      std::error_code removed;
      fs::remove_all(entry.path(), removed);
      if (removed)
        return fail("cannot remove the staging file ", entry.path().string(), ": ",
                    removed.message());
      report.removed.push_back(std::string(kStaging) + "/" + entry.path().filename().string());
    }
    if (ec) return fail("cannot list ", where(kStaging), ": ", ec.message());
  }

  DirectoryReader reader(dir.string());
  uint64_t listings = 0;

  // 1. The latest checkpoint anchors everything up to its size.
  const NoteVerifier verifier = log.signer_.verifier();
  DW_TRY(checkpoint_text, reader.read("checkpoint", kMaxNoteBytes));
  uint64_t anchor = 0;
  Hash anchor_root = empty_tree_hash();
  if (checkpoint_text) {
    auto checkpoint = open_checkpoint(*checkpoint_text, verifier, log.origin_);
    if (!checkpoint)
      return fail(where("checkpoint"), " does not verify as a checkpoint of ", log.origin_, " by ",
                  verifier.vkey(), ": ", checkpoint.error().message,
                  "; the log or the node key was changed: run driftwatch verify on it, and "
                  "move it aside to start a new log");
    anchor = checkpoint->size;
    anchor_root = checkpoint->root;
    log.latest_checkpoint_ = *checkpoint_text;
    log.latest_checkpoint_size_ = anchor;
  }
  report.checkpoint_size = anchor;
  const std::string rolled_back =
      "; the log ends before its checkpoint of " + str(anchor) +
      " entries (it was cut or rolled back): restore it from a copy, or run driftwatch verify";

  // 2. The right edge at the checkpoint's size, from its partial tiles
  // (rebuilt from the entries and full tiles below when one is gone), must
  // give the checkpoint's root.
  std::vector<std::string> edge_entries;  // entries of the rightmost bundle
  if (anchor % kTileWidth != 0) {
    DW_TRY(bundle, best_bundle(reader, anchor / kTileWidth, listings));
    if (bundle.entries.size() < anchor % kTileWidth)
      return fail(where(tile_path(Tile{kEntriesLevel, anchor / kTileWidth,
                                       static_cast<uint32_t>(anchor % kTileWidth)})),
                  ": holds ", str(bundle.entries.size()), " entries, the checkpoint needs ",
                  str(anchor % kTileWidth), rolled_back);
    edge_entries.assign(bundle.entries.begin(), bundle.entries.begin() + anchor % kTileWidth);
  }
  std::vector<std::pair<std::string, std::string>> writes;  // derived tiles to (re)write
  std::vector<std::vector<Hash>> partials;
  for (int level = 0; level < 8 && (anchor >> (kTileHeight * level)) > 0; ++level) {
    const uint64_t count = anchor >> (kTileHeight * level);
    const Tile tile{level, count / kTileWidth, static_cast<uint32_t>(count % kTileWidth)};
    partials.emplace_back();
    if (tile.width == 0) continue;
    TileHashSource source(reader, anchor);
    if (auto data = source.read_tile(tile); data) {
      partials.back() = hashes_of(*data);
      continue;
    }
    if (level == 0) {
      for (const auto& entry : edge_entries) partials.back().push_back(leaf_hash(entry));
    } else {
      for (uint64_t i = 0; i < tile.width; ++i) {
        const std::string below = tile_path(full_tile(level - 1, tile.index * kTileWidth + i));
        DW_TRY(data, reader.read(below, kTileWidth * kHashSize));
        if (!data || data->size() != kTileWidth * kHashSize)
          return fail(where(tile_path(tile)), " is missing and ", where(below),
                      " to rebuild it from is missing or short", rolled_back);
        partials.back().push_back(subtree_of(hashes_of(*data)));
      }
    }
    writes.emplace_back(tile_path(tile), tile_bytes(partials.back()));
  }
  DW_TRY(edge, RightEdge::from_partials(anchor, partials));
  if (edge.root() != anchor_root)
    return fail(where("tile"), ": the tiles at the checkpoint's size ", str(anchor), " give root ",
                hash_base64(edge.root()), " but the checkpoint says ", hash_base64(anchor_root),
                "; the log was changed: run driftwatch verify on it, and move it aside to start "
                "a new log");
  for (size_t i = 0; i < edge_entries.size(); ++i)
    if (leaf_hash(edge_entries[i]) != edge.partial(0)[i])
      return fail(where(tile_path(Tile{kEntriesLevel, anchor / kTileWidth,
                                       static_cast<uint32_t>(anchor % kTileWidth)})),
                  ": entry ", str(anchor / kTileWidth * kTileWidth + i),
                  " does not match its hash in the tiles the checkpoint covers; the log was "
                  "changed: run driftwatch verify on it");

  // 3. Entries after the checkpoint are kept as far as their bundles and the
  // level 0 tiles agree; tiles above are derived and rewritten if wrong.
  uint64_t seen_end = anchor;  // the furthest entry any bundle holds
  for (uint64_t index = anchor / kTileWidth;; ++index) {
    DW_TRY(bundle, best_bundle(reader, index, listings));
    DW_TRY(tile, best_tile(reader, 0, index, listings));
    seen_end = std::max<uint64_t>(seen_end, index * kTileWidth + bundle.entries.size());
    const size_t usable = std::min<size_t>(bundle.entries.size(), tile.width);
    size_t at = edge.size() - index * kTileWidth;
    std::vector<RightEdge::FullTile> completed;
    for (; at < usable; ++at) {
      const Hash leaf = leaf_hash(bundle.entries[at]);
      if (leaf != hash_at(tile.data, at)) break;
      edge.append(leaf, &completed);
    }
    for (const auto& full : completed) {
      if (full.tile.level == 0) continue;  // that is `tile`, matched hash by hash
      const std::string path = tile_path(full.tile);
      DW_TRY(on_disk, reader.read(path, kTileWidth * kHashSize));
      if (on_disk != full.data) writes.emplace_back(path, full.data);
    }
    if (at < kTileWidth) {
      edge_entries.assign(bundle.entries.begin(), bundle.entries.begin() + at);
      break;
    }
    edge_entries.clear();
  }
  const uint64_t size = edge.size();

  // 4. Cut what lies beyond `size`, write the partial tiles of `size`.
  std::vector<std::string> removed;
  const auto remove = [&](const std::string& path) -> Result<void> {
    std::error_code ec;
    if (!path_exists(dir / path)) return {};
    fs::remove_all(dir / path, ec);
    if (ec) return fail("cannot remove ", where(path), ": ", ec.message());
    removed.push_back(path);
    return {};
  };
  const auto cut_level = [&](int level, uint64_t count,
                             const std::string& partial_bytes) -> Result<void> {
    const uint64_t index = count / kTileWidth;
    const uint32_t width = static_cast<uint32_t>(count % kTileWidth);
    if (auto ok = remove(tile_path(full_tile(level, index))); !ok) return ok;
    if (width == 0) {
      if (auto ok = remove(partial_dir(level, index)); !ok) return ok;
    } else {
      DW_TRY(widths, partial_widths(reader, level, index, listings));
      for (const uint32_t w : widths)
        if (w > width)
          if (auto ok = remove(tile_path(Tile{level, index, w})); !ok) return ok;
      const std::string path = tile_path(Tile{level, index, width});
      DW_TRY(on_disk, reader.read(path, kMaxBundleBytes));
      if (on_disk != partial_bytes && std::none_of(writes.begin(), writes.end(),
                                                   [&](const auto& w) { return w.first == path; }))
        writes.emplace_back(path, partial_bytes);
    }
    // A torn batch may have left any of its tiles beyond, with gaps; it
    // wrote at most kMaxBatchEntries entries, which bounds how far.
    const uint64_t reach =
        (kMaxBatchEntries >> (kTileHeight * std::max(level, 0))) / kTileWidth + 2;
    for (uint64_t next = index + 1; next <= index + reach; ++next) {
      const bool any = path_exists(dir / tile_path(full_tile(level, next))) ||
                       path_exists(dir / partial_dir(level, next));
      if (!any) continue;
      if (level == kEntriesLevel) {
        DW_TRY(beyond, best_bundle(reader, next, listings));
        seen_end = std::max<uint64_t>(seen_end, next * kTileWidth + beyond.entries.size());
      }
      if (auto ok = remove(tile_path(full_tile(level, next))); !ok) return ok;
      if (auto ok = remove(partial_dir(level, next)); !ok) return ok;
    }
    return {};
  };
  if (auto ok = cut_level(kEntriesLevel, size, encode_entries(edge_entries)); !ok)
    return std::unexpected(ok.error());
  for (int level = 0; level < 8; ++level) {
    const uint64_t count = size >> (kTileHeight * level);
    if (auto ok = cut_level(level, count, tile_bytes(edge.partial(level))); !ok)
      return std::unexpected(ok.error());
  }
  for (const auto& [path, bytes] : writes) {
    if (auto ok = log.write_file(path, bytes); !ok) return std::unexpected(ok.error());
    report.rewritten.push_back(path);
  }
  report.removed.insert(report.removed.end(), removed.begin(), removed.end());
  if (!report.clean())
    if (auto ok = log.flush(); !ok) return std::unexpected(ok.error());

  report.size = size;
  report.cut_entries = seen_end - size;
  report.files_read = reader.reads() + listings;
  log.mutex_ = std::make_unique<std::shared_mutex>();
  log.root_ = edge.root();
  log.edge_ = std::move(edge);
  log.bundle_ = encode_entries(edge_entries);
  log.bundle_count_ = static_cast<uint32_t>(edge_entries.size());
  log.janitor_ = std::make_unique<Janitor>();
  return log;
}

Result<std::vector<uint64_t>> Log::append(const std::vector<std::string>& entries) {
  if (broken_)
    return fail("the evidence log ", dir_.string(),
                " is in an unknown state after a failed write; restart to recover it");
  for (size_t i = 0; i < entries.size(); ++i)
    if (entries[i].size() > kMaxEntryBytes)
      return fail("evidence entry ", str(i), " of the batch is ", str(entries[i].size()),
                  " bytes, more than the ", str(kMaxEntryBytes),
                  " an entry may hold; store the large part as a blob");
  if (entries.empty()) return std::vector<uint64_t>{};
  if (entries.size() > kMaxBatchEntries)
    return fail("a batch of ", str(entries.size()), " evidence entries is more than the ",
                str(kMaxBatchEntries), " one append takes; split it");

  RightEdge edge = edge_;
  std::string bundle = bundle_;
  uint32_t bundle_count = bundle_count_;
  std::vector<std::pair<std::string, std::string>> files;
  std::vector<Tile> completed_tiles;  // whose partials go once this batch is durable
  std::vector<RightEdge::FullTile> completed;
  for (const auto& entry : entries) {
    bundle += encode_bundle_entry(entry);
    ++bundle_count;
    edge.append(leaf_hash(entry), &completed);
    if (bundle_count == kTileWidth) {
      const Tile tile = full_tile(kEntriesLevel, (edge.size() - 1) / kTileWidth);
      files.emplace_back(tile_path(tile), std::move(bundle));
      completed_tiles.push_back(tile);
      bundle.clear();
      bundle_count = 0;
    }
    for (auto& full : completed) {
      completed_tiles.push_back(full.tile);
      files.emplace_back(tile_path(full.tile), std::move(full.data));
    }
    completed.clear();
  }
  if (bundle_count > 0)
    files.emplace_back(tile_path(Tile{kEntriesLevel, edge.size() / kTileWidth, bundle_count}),
                       bundle);
  for (auto& partial : edge.partial_tiles())
    files.emplace_back(tile_path(partial.tile), std::move(partial.data));

  std::vector<std::string> written;
  const auto undo = [&](const Error& error) -> Result<std::vector<uint64_t>> {
    for (const auto& path : written)
      if (::unlink((dir_ / path).c_str()) != 0 && errno != ENOENT) broken_ = true;
    return std::unexpected(error);
  };
  for (const auto& [path, bytes] : files) {
    if (auto ok = write_file(path, bytes); !ok) return undo(ok.error());
    written.push_back(path);
  }
  if (auto ok = flush(); !ok) return undo(ok.error());

  std::vector<uint64_t> indexes;
  indexes.reserve(entries.size());
  for (uint64_t i = edge_.size(); i < edge.size(); ++i) indexes.push_back(i);
  // The level 0 and bundle partials of the size before this batch, unless a
  // checkpoint was issued at it (that would be the latest: sizes only grow).
  const uint64_t old_size = edge_.size();
  if (old_size % kTileWidth != 0 && !(latest_checkpoint_ && latest_checkpoint_size_ == old_size) &&
      old_size / kTileWidth == edge.size() / kTileWidth) {
    const auto width = static_cast<uint32_t>(old_size % kTileWidth);
    for (const int level : {kEntriesLevel, 0})
      janitor_->remove(dir_ / tile_path(Tile{level, old_size / kTileWidth, width}));
  }
  const Hash root = edge.root();
  {
    std::unique_lock lock(*mutex_);
    edge_ = std::move(edge);
    root_ = root;
    bundle_ = std::move(bundle);
    bundle_count_ = bundle_count;
  }
  for (const Tile& tile : completed_tiles)
    janitor_->remove(dir_ / partial_dir(tile.level, tile.index));
  return indexes;
}

Result<std::string> Log::put_blob(std::string_view bytes) {
  if (bytes.size() > kMaxBlobBytes)
    return fail("a blob of ", str(bytes.size()), " bytes is more than the ", str(kMaxBlobBytes),
                " the evidence log stores");
  const std::string hex = sha256_hex(bytes);
  const std::string path = "blob/" + hex;
  DirectoryReader reader(dir_.string());
  if (auto existing = reader.read(path, kMaxBlobBytes);
      existing && *existing && sha256_hex(**existing) == hex)
    return hex;
  if (auto ok = write_file(path, bytes); !ok) return std::unexpected(ok.error());
  return hex;
}

Result<std::string> Log::checkpoint() {
  // The writer thread owns these: no lock to read them.
  if (latest_checkpoint_ && latest_checkpoint_size_ == edge_.size()) return *latest_checkpoint_;
  const Checkpoint checkpoint{origin_, edge_.size(), root_, {}};
  DW_TRY(note, signer_.sign(format_checkpoint(checkpoint)));
  // checkpoints/<size> first: `checkpoint` never names a size whose copy
  // under checkpoints/ is not durable.
  if (auto ok = write_file("checkpoints/" + str(checkpoint.size), note); !ok)
    return std::unexpected(ok.error());
  if (auto ok = flush(); !ok) return std::unexpected(ok.error());
  if (auto ok = write_file("checkpoint", note); !ok) return std::unexpected(ok.error());
  if (auto ok = flush(); !ok) return std::unexpected(ok.error());
  std::unique_lock lock(*mutex_);
  latest_checkpoint_ = note;
  latest_checkpoint_size_ = checkpoint.size;
  return note;
}

Result<std::vector<Hash>> Log::inclusion_proof(uint64_t index, uint64_t tree_size) const {
  RightEdge edge = edge_snapshot();
  if (tree_size > edge.size())
    return fail("no tree of ", str(tree_size), " entries: the log holds ", str(edge.size()));
  EdgeReader reader(std::move(edge), dir_);
  TileHashSource source(reader, tree_size);
  return evidence::inclusion_proof(source, index, tree_size);
}

Result<std::vector<Hash>> Log::consistency_proof(uint64_t old_size, uint64_t new_size) const {
  RightEdge edge = edge_snapshot();
  if (new_size > edge.size())
    return fail("no tree of ", str(new_size), " entries: the log holds ", str(edge.size()));
  EdgeReader reader(std::move(edge), dir_);
  TileHashSource source(reader, new_size);
  return evidence::consistency_proof(source, old_size, new_size);
}

Result<Hash> Log::root_at(uint64_t tree_size) const {
  RightEdge edge = edge_snapshot();
  if (tree_size > edge.size())
    return fail("no tree of ", str(tree_size), " entries: the log holds ", str(edge.size()));
  if (tree_size == edge.size()) return edge.root();
  EdgeReader reader(std::move(edge), dir_);
  TileHashSource source(reader, tree_size);
  return tree_hash(source, tree_size);
}

Result<std::string> Log::read_entry(uint64_t index) const {
  uint64_t size = 0;
  {
    std::shared_lock lock(*mutex_);
    size = edge_.size();
    if (index < size && index / kTileWidth == size / kTileWidth) {
      const BundleParse parsed = parse_entry_bundle(bundle_);
      return std::string(parsed.entries.at(index % kTileWidth));
    }
  }
  if (index >= size) return fail("no evidence entry ", str(index), ": the log holds ", str(size));
  DW_TRY(bytes, read_full_bundle(index / kTileWidth));
  return std::string(parse_entry_bundle(bytes).entries[index % kTileWidth]);
}

Result<std::string> Log::read_full_bundle(uint64_t bundle_index) const {
  const std::string path = tile_path(full_tile(kEntriesLevel, bundle_index));
  DW_TRY(bytes, DirectoryReader(dir_.string()).read(path, kMaxBundleBytes));
  if (!bytes) return fail((dir_ / path).string(), " is missing");
  const BundleParse parsed = parse_entry_bundle(*bytes);
  if (parsed.problem || parsed.entries.size() != kTileWidth)
    return fail((dir_ / path).string(), " is not a full entry bundle: ",
                parsed.problem.value_or("it holds " + str(parsed.entries.size()) + " entries"));
  return std::move(*bytes);
}

Result<void> Log::for_each_entry(
    uint64_t from, uint64_t to,
    const std::function<Result<void>(uint64_t index, std::string_view entry)>& each) const {
  const uint64_t size = this->size();
  if (to > size) return fail("no evidence entries up to ", str(to), ": the log holds ", str(size));
  for (uint64_t index = from; index < to;) {
    const uint64_t bundle_index = index / kTileWidth;
    if (bundle_index == size / kTileWidth) {  // the partial bundle, in memory
      for (; index < to; ++index) {
        DW_TRY(entry, read_entry(index));
        if (auto done = each(index, entry); !done) return done;
      }
      break;
    }
    DW_TRY(bytes, read_full_bundle(bundle_index));
    const BundleParse parsed = parse_entry_bundle(bytes);
    const uint64_t bundle_end = std::min(to, (bundle_index + 1) * kTileWidth);
    for (; index < bundle_end; ++index)
      if (auto done = each(index, parsed.entries[index % kTileWidth]); !done) return done;
  }
  return {};
}

Result<std::optional<std::string>> Log::read_blob(std::string_view sha256_hex_name) const {
  if (sha256_hex_name.size() != 64 ||
      sha256_hex_name.find_first_not_of("0123456789abcdef") != std::string_view::npos)
    return fail("not a blob name: a blob is named by 64 lowercase hex digits");
  DirectoryReader reader(dir_.string());
  const std::string path = "blob/" + std::string(sha256_hex_name);
  DW_TRY(bytes, reader.read(path, kMaxBlobBytes));
  if (bytes && sha256_hex(*bytes) != sha256_hex_name)
    return fail((dir_ / path).string(), " does not hash to its name");
  return bytes;
}

}  // namespace driftwatch::evidence
