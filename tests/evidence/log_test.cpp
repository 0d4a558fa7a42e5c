// The evidence log on disk: the tlog-tiles layout, proofs from the tiles,
// and recovery at open from what a crash can leave.

#include "evidence/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/crypto.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;
using driftwatch::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kOrigin = "driftwatch/test-node";

NoteSigner test_signer() {
  // A fixed seed: the same key across reopenings in one test.
  auto key = Ed25519PrivateKey::from_raw(std::string(32, '\x07'));
  REQUIRE(key);
  auto signer = NoteSigner::make(kOrigin, *key);
  REQUIRE(signer);
  return *signer;
}

Log open_log(const fs::path& dir) {
  auto log = Log::open(dir, test_signer(), kOrigin);
  INFO((log ? std::string() : log.error().message));
  REQUIRE(log);
  return std::move(*log);
}

std::string entry_text(uint64_t i) {
  return "{\"seq\":" + std::to_string(i) + ",\"type\":\"test\"}";
}

std::vector<std::string> batch(uint64_t first, uint64_t count) {
  std::vector<std::string> entries;
  for (uint64_t i = first; i < first + count; ++i) entries.push_back(entry_text(i));
  return entries;
}

void append_batches(Log& log, uint64_t total, std::initializer_list<uint64_t> sizes) {
  std::vector<uint64_t> cycle(sizes);
  for (size_t k = 0; log.size() < total; ++k) {
    const uint64_t n = std::min(cycle[k % cycle.size()], total - log.size());
    auto indexes = log.append(batch(log.size(), n));
    REQUIRE(indexes);
  }
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void truncate_to(const fs::path& path, size_t size) {
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(size)) == 0);
}

// The root of entries 0..n-1 from an in-memory tree (leaf hashes kept
// across calls: the tests ask for many sizes of one long log).
Hash reference_root(uint64_t n) {
  static std::vector<Hash> leaves;
  while (leaves.size() < n) leaves.push_back(leaf_hash(entry_text(leaves.size())));
  MemoryHashSource source(std::vector<Hash>(leaves.begin(), leaves.begin() + n));
  return *tree_hash(source, n);
}

}  // namespace

TEST_CASE("log: entry bundles are uint16 length-prefixed and parsed strictly", "[evidence]") {
  const std::string bundle = encode_bundle_entry("ab") + encode_bundle_entry("") +
                             encode_bundle_entry(std::string(300, 'x'));
  CHECK(bundle.substr(0, 4) == std::string("\x00\x02"
                                           "ab",
                                           4));
  CHECK(bundle.substr(6, 2) == std::string("\x01\x2c", 2));
  auto parsed = parse_entry_bundle(bundle);
  CHECK_FALSE(parsed.problem);
  REQUIRE(parsed.entries.size() == 3);
  CHECK(parsed.entries[2] == std::string(300, 'x'));
  auto torn = parse_entry_bundle(bundle.substr(0, bundle.size() - 1));
  CHECK(torn.entries.size() == 2);
  REQUIRE(torn.problem);
  CHECK_THAT(*torn.problem, Catch::Contains("entry 2"));
  CHECK(parse_entry_bundle(bundle.substr(0, 5)).problem);
  std::string too_many;
  for (int i = 0; i < 257; ++i) too_many += encode_bundle_entry("e");
  auto over = parse_entry_bundle(too_many);
  CHECK(over.entries.size() == 256);
  CHECK(over.problem);
}

TEST_CASE("log: appends write the tlog-tiles layout and prove inclusion from the tiles",
          "[evidence]") {
  TempDir dir("evidence-log");
  const fs::path root = dir / "evidence";
  Log log = open_log(root);
  CHECK(log.recovery().clean());
  CHECK(log.size() == 0);
  CHECK(log.root() == empty_tree_hash());

  auto first = log.append(batch(0, 5));
  REQUIRE(first);
  CHECK(*first == std::vector<uint64_t>{0, 1, 2, 3, 4});
  CHECK(fs::file_size(root / "tile/entries/000.p/5") == 5 * 2 + entry_text(0).size() * 5);
  CHECK(fs::file_size(root / "tile/0/000.p/5") == 5 * 32);
  append_batches(log, 70000, {1, 300, 4000, 17, 256, 9999});
  CHECK(log.size() == 70000);
  CHECK(log.root() == reference_root(70000));

  // 273 full level 0 tiles and a partial of 112, one full level 1 tile and a
  // partial of 17, a partial level 2 tile of 1; a full tile's partials are
  // gone, and so are level 0 partials no checkpoint needs.
  log.wait_for_janitor();
  const auto count_files = [](const fs::path& path) {
    return std::distance(fs::directory_iterator(path), fs::directory_iterator());
  };
  CHECK(count_files(root / "tile/0/273.p") == 1);
  CHECK(count_files(root / "tile/entries/273.p") == 1);
  CHECK(fs::file_size(root / "tile/0/272") == 8192);
  CHECK(fs::exists(root / "tile/0/273.p/112"));
  CHECK(fs::file_size(root / "tile/1/000") == 8192);
  CHECK(fs::exists(root / "tile/1/001.p/17"));
  CHECK(fs::exists(root / "tile/2/000.p/1"));
  CHECK(fs::exists(root / "tile/entries/272"));
  CHECK(fs::exists(root / "tile/entries/273.p/112"));
  CHECK_FALSE(fs::exists(root / "tile/0/000.p"));
  CHECK_FALSE(fs::exists(root / "tile/entries/000.p"));
  CHECK((fs::status(root / "tile/0/272").permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
         fs::perms::others_read));

  for (uint64_t index : {0ull, 1ull, 255ull, 256ull, 65535ull, 65536ull, 69999ull}) {
    for (uint64_t tree_size : std::vector<uint64_t>{
             index + 1, index >= 65536 ? uint64_t{69999} : uint64_t{65536}, 70000}) {
      if (tree_size <= index || tree_size > 70000) continue;
      INFO("index " << index << " in " << tree_size);
      auto proof = log.inclusion_proof(index, tree_size);
      REQUIRE(proof);
      auto root_at = log.root_at(tree_size);
      REQUIRE(root_at);
      CHECK(*root_at == reference_root(tree_size));
      CHECK(verify_inclusion(index, tree_size, leaf_hash(entry_text(index)), *proof, *root_at));
    }
    auto entry = log.read_entry(index);
    REQUIRE(entry);
    CHECK(*entry == entry_text(index));
  }
  auto consistency = log.consistency_proof(1000, 70000);
  REQUIRE(consistency);
  CHECK(verify_consistency(1000, 70000, reference_root(1000), log.root(), *consistency));
  CHECK_FALSE(log.read_entry(70000));
  CHECK_FALSE(log.append({std::string(kMaxEntryBytes + 1, 'x')}));
  CHECK_FALSE(log.append(std::vector<std::string>(kMaxBatchEntries + 1, "e")));
  CHECK(log.size() == 70000);
}

TEST_CASE("log: checkpoints are signed notes in checkpoint and checkpoints/<size>", "[evidence]") {
  TempDir dir("evidence-log");
  const fs::path root = dir / "evidence";
  Log log = open_log(root);
  auto empty = log.checkpoint();
  REQUIRE(empty);
  REQUIRE(log.append(batch(0, 300)));
  auto note = log.checkpoint();
  REQUIRE(note);
  CHECK(slurp(root / "checkpoint") == *note);
  CHECK(slurp(root / "checkpoints/300") == *note);
  CHECK(slurp(root / "checkpoints/0") == *empty);
  auto again = log.checkpoint();
  REQUIRE(again);
  CHECK(*again == *note);
  auto opened = open_checkpoint(*note, log.verifier(), kOrigin);
  REQUIRE(opened);
  CHECK(opened->size == 300);
  CHECK(opened->root == log.root());

  auto blob = log.put_blob("a signed envelope");
  REQUIRE(blob);
  CHECK(*blob == sha256_hex("a signed envelope"));
  CHECK(slurp(root / "blob" / *blob) == "a signed envelope");
  CHECK(log.put_blob("a signed envelope"));

  // Reopened: the same tree; another origin or key is refused.
  Log reopened = open_log(root);
  CHECK(reopened.recovery().clean());
  CHECK(reopened.size() == 300);
  CHECK(reopened.root() == log.root());
  auto other_key = Ed25519PrivateKey::generate();
  REQUIRE(other_key);
  auto other_signer = NoteSigner::make(kOrigin, *other_key);
  REQUIRE(other_signer);
  auto wrong_key = Log::open(root, *other_signer, kOrigin);
  REQUIRE_FALSE(wrong_key);
  CHECK_THAT(wrong_key.error().message, Catch::Contains("checkpoint does not verify"));
  CHECK_FALSE(Log::open(root, test_signer(), "driftwatch/other-node"));
}

TEST_CASE("log: open cuts a torn tail back to the last consistent batch", "[evidence]") {
  TempDir dir("evidence-log");
  const fs::path root = dir / "evidence";
  {
    Log log = open_log(root);
    REQUIRE(log.append(batch(0, 100)));
    REQUIRE(log.checkpoint());
    REQUIRE(log.append(batch(100, 20)));  // durable, not checkpointed: kept
    // The batch a crash tears. Its partials replace those of 120 only once
    // it is durable, so at the crash those are still there: put them back.
    const std::string bundle_120 = slurp(root / "tile/entries/000.p/120");
    const std::string tile_120 = slurp(root / "tile/0/000.p/120");
    REQUIRE(log.append(batch(120, 10)));
    log.wait_for_janitor();
    CHECK_FALSE(fs::exists(root / "tile/0/000.p/120"));
    CHECK(fs::exists(root / "tile/0/000.p/100"));  // checkpointed: kept
    std::ofstream(root / "tile/entries/000.p/120", std::ios::binary) << bundle_120;
    std::ofstream(root / "tile/0/000.p/120", std::ios::binary) << tile_120;
  }

  SECTION("an entry bundle truncated mid-entry") {
    truncate_to(root / "tile/entries/000.p/130",
                fs::file_size(root / "tile/entries/000.p/130") - 3);
    Log log = open_log(root);
    CHECK(log.size() == 129);  // the complete entries that the tile covers
    CHECK(log.recovery().cut_entries == 0);
    CHECK_FALSE(log.recovery().clean());
    CHECK(log.root() == reference_root(129));
    CHECK(fs::exists(root / "tile/entries/000.p/129"));
    CHECK(fs::exists(root / "tile/0/000.p/129"));
    CHECK_FALSE(fs::exists(root / "tile/0/000.p/130"));
    CHECK_FALSE(fs::exists(root / "tile/entries/000.p/130"));
    INFO(log.recovery().summary());
    CHECK_THAT(log.recovery().summary(), Catch::Contains("recovered to 129 entries"));
    const auto fields = log.recovery().to_json();
    CHECK(fields["size"] == 129);
    CHECK(fields["checkpoint_size"] == 100);
    CHECK(fields["removed"] ==
          nlohmann::json::array({"tile/entries/000.p/130", "tile/0/000.p/130"}));
  }
  SECTION("the last hash tile deleted") {
    fs::remove(root / "tile/0/000.p/130");
    Log log = open_log(root);
    CHECK(log.size() == 120);
    CHECK(log.recovery().cut_entries == 10);
    CHECK(log.root() == reference_root(120));
    CHECK_FALSE(fs::exists(root / "tile/entries/000.p/130"));
    CHECK(std::count(log.recovery().removed.begin(), log.recovery().removed.end(),
                     "tile/entries/000.p/130") == 1);
  }
  SECTION("a partial tile written without its entries") {
    fs::remove(root / "tile/entries/000.p/130");
    Log log = open_log(root);
    CHECK(log.size() == 120);
    CHECK(log.recovery().cut_entries == 0);
    CHECK_FALSE(fs::exists(root / "tile/0/000.p/130"));
  }
  SECTION("a staging file left behind") {
    std::ofstream(root / ".staging" / "123-4") << "half a tile";
    Log log = open_log(root);
    CHECK(log.size() == 130);
    CHECK(log.recovery().removed == std::vector<std::string>{".staging/123-4"});
    CHECK(log.recovery().cut_entries == 0);
  }
  SECTION("entries and tiles of a torn batch across tiles") {
    {
      Log log = open_log(root);
      REQUIRE(log.append(batch(130, 1000)));
    }
    // The crash kept the bundles and level 0 tiles but not the level 1 tile.
    fs::remove(root / "tile/1/000.p/4");
    fs::remove(root / "tile/0/004.p/106");
    Log log = open_log(root);
    CHECK(log.size() == 1024);
    CHECK(log.root() == reference_root(1024));
    CHECK(log.recovery().cut_entries == 106);
    CHECK(fs::exists(root / "tile/1/000.p/4"));
    CHECK(std::count(log.recovery().rewritten.begin(), log.recovery().rewritten.end(),
                     "tile/1/000.p/4") == 1);
    REQUIRE(log.append(batch(1024, 3)));
    CHECK(log.root() == reference_root(1027));
  }
  // Whatever was cut, appending goes on from the recovered tree.
  Log log = open_log(root);
  CHECK(log.recovery().clean());
  const uint64_t size = log.size();
  REQUIRE(log.append(batch(size, 300)));
  CHECK(log.root() == reference_root(size + 300));
  Log reopened = open_log(root);
  CHECK(reopened.recovery().clean());
  CHECK(reopened.root() == reference_root(size + 300));
}

TEST_CASE("log: open never loses entries a checkpoint covers", "[evidence]") {
  TempDir dir("evidence-log");
  const fs::path root = dir / "evidence";
  {
    Log log = open_log(root);
    append_batches(log, 70000, {65536});
    REQUIRE(log.checkpoint());
  }
  SECTION("its partial tiles deleted: rebuilt from the entries and full tiles") {
    fs::remove(root / "tile/0/273.p/112");
    fs::remove(root / "tile/1/001.p/17");
    Log log = open_log(root);
    CHECK(log.size() == 70000);
    CHECK(log.root() == reference_root(70000));
    CHECK(log.recovery().rewritten.size() == 2);
    CHECK(log.recovery().cut_entries == 0);
    CHECK(fs::exists(root / "tile/0/273.p/112"));
  }
  SECTION("an entry it covers cut off: open refuses") {
    truncate_to(root / "tile/entries/273.p/112", 10);
    auto log = Log::open(root, test_signer(), kOrigin);
    REQUIRE_FALSE(log);
    CHECK_THAT(log.error().message,
               Catch::Contains("tile/entries/273.p/112") && Catch::Contains("rolled back"));
  }
  SECTION("a tile it covers rewritten: open refuses") {
    std::string tile = slurp(root / "tile/1/001.p/17");
    tile[5] ^= 1;
    std::ofstream(root / "tile/1/001.p/17", std::ios::binary | std::ios::trunc) << tile;
    auto log = Log::open(root, test_signer(), kOrigin);
    REQUIRE_FALSE(log);
    CHECK_THAT(log.error().message, Catch::Contains("the log was changed"));
  }
}

TEST_CASE("log: open reads a bounded number of files however long the log", "[evidence]") {
  TempDir dir("evidence-log");
  uint64_t small_reads = 0;
  {
    const fs::path root = dir / "small";
    Log log = open_log(root);
    append_batches(log, 1000, {37, 100});
    REQUIRE(log.checkpoint());
    small_reads = open_log(root).recovery().files_read;
  }
  const fs::path root = dir / "large";
  {
    Log log = open_log(root);
    append_batches(log, 100000, {1000, 999, 3001, 1, 4096});
    REQUIRE(log.checkpoint());
  }
  Log log = open_log(root);
  CHECK(log.size() == 100000);
  CHECK(log.recovery().clean());
  INFO("files read at open: " << small_reads << " for 1000 entries, " << log.recovery().files_read
                              << " for 100000");
  CHECK(log.recovery().files_read <= 32);
  CHECK(small_reads <= 32);
  // Entries after the last checkpoint are read too, and only those.
  REQUIRE(log.append(batch(100000, 600)));
  Log after = open_log(root);
  CHECK(after.size() == 100600);
  CHECK(after.recovery().files_read <= 32 + 3 * 4);
}

namespace {

// Every file under `root` (but the staging directory) and its bytes.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    const std::string relative = fs::relative(entry.path(), root).string();
    if (entry.is_regular_file() && !relative.starts_with(".staging"))
      files[relative] = slurp(entry.path());
  }
  return files;
}

void restore(const fs::path& root, const std::map<std::string, std::string>& files) {
  fs::remove_all(root);
  for (const auto& [relative, bytes] : files) {
    fs::create_directories((root / relative).parent_path());
    std::ofstream(root / relative, std::ios::binary) << bytes;
  }
}

}  // namespace

TEST_CASE("log: a crash anywhere in a batch recovers to a consistent prefix", "[evidence]") {
  // A crash before a batch's flush leaves the durable log as it was before
  // the batch plus any subset of the batch's new files, each possibly
  // without (all of) its data. Every such state must open to a tree
  // between the two sizes whose root is the reference root, reopen clean,
  // and take more appends.
  TempDir dir("evidence-log");
  const fs::path root = dir / "evidence";
  std::map<std::string, std::string> before;
  std::vector<std::pair<std::string, std::string>> added;
  uint64_t before_size = 0;
  uint64_t after_size = 0;
  {
    Log log = open_log(root);
    append_batches(log, 300, {50, 77});
    REQUIRE(log.checkpoint());
    append_batches(log, 420, {120});
    log.wait_for_janitor();
    before_size = log.size();
    before = snapshot(root);
    // Crosses tiles at levels 0 and 1 (512): full bundles and tiles, new
    // partials at both levels.
    REQUIRE(log.append(batch(before_size, 700)));
    after_size = log.size();
    log.wait_for_janitor();  // it deletes only files from before the batch
    for (const auto& [path, bytes] : snapshot(root))
      if (!before.contains(path) || before.at(path) != bytes) added.emplace_back(path, bytes);
  }
  REQUIRE(added.size() >= 6);
  std::mt19937 random(8);
  for (int round = 0; round < 60; ++round) {
    auto state = before;
    std::string what;
    for (const auto& [path, bytes] : added) {
      switch (random() % 4) {
        case 0:
          break;  // not written
        case 1:
          state[path] = bytes.substr(0, random() % (bytes.size() + 1));
          what += " " + path + "(torn)";
          break;
        default:
          state[path] = bytes;
          what += " " + path;
      }
    }
    restore(root, state);
    if (round % 5 == 0) std::ofstream(root / ".staging" / "1-1") << "left behind";
    INFO("round " << round << ", written:" << what);
    Log log = open_log(root);
    CHECK(log.size() >= before_size);
    CHECK(log.size() <= after_size);
    CHECK(log.root() == reference_root(log.size()));
    const uint64_t size = log.size();
    REQUIRE(log.append(batch(size, 3)));
    CHECK(log.root() == reference_root(size + 3));
    Log reopened = open_log(root);
    INFO("first open: " << log.recovery().summary());
    INFO("second open: " << reopened.recovery().summary());
    CHECK(reopened.recovery().clean());
    CHECK(reopened.size() == size + 3);
  }
}

TEST_CASE("log: proofs and entries are read while the writer appends", "[evidence]") {
  TempDir dir("evidence-log");
  Log log = open_log(dir / "evidence");
  REQUIRE(log.append(batch(0, 10)));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (uint64_t size = log.size(); size < 20000;) {
      const uint64_t n = std::min<uint64_t>(1 + size % 397, 20000 - size);
      if (!log.append(batch(size, n))) break;
      size += n;
    }
    done = true;
  });
  uint64_t checked = 0;
  std::mt19937_64 random(3);
  bool all_good = true;
  while (!done || checked < 50) {
    const TreeHead head = log.head();
    const uint64_t index = random() % head.size;
    auto proof = log.inclusion_proof(index, head.size);
    auto entry = log.read_entry(index);
    all_good = all_good && proof && entry && *entry == entry_text(index) &&
               verify_inclusion(index, head.size, leaf_hash(*entry), *proof, head.root);
    ++checked;
    if (!all_good) break;
  }
  writer.join();
  INFO(checked << " proofs checked while appending");
  CHECK(all_good);
  CHECK(log.size() == 20000);
  CHECK(log.root() == reference_root(20000));
}
