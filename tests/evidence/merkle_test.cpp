// RFC 6962 / RFC 9162 trees, proofs and tlog-tiles paths. The known answers
// are the RFC 6962 test vectors of the Certificate Transparency code (eight
// leaves), as Go's golang.org/x/mod/sumdb/tlog also computes them.

#include "evidence/merkle.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/sha256.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;

namespace {

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

Hash hash_of_hex(std::string_view hex) {
  const std::string bytes = unhex(hex);
  Hash hash{};
  std::copy(bytes.begin(), bytes.end(), hash.begin());
  return hash;
}

const std::vector<std::string>& kat_leaves() {
  static const std::vector<std::string> leaves = {unhex(""),
                                                  unhex("00"),
                                                  unhex("10"),
                                                  unhex("2021"),
                                                  unhex("3031"),
                                                  unhex("40414243"),
                                                  unhex("5051525354555657"),
                                                  unhex("606162636465666768696a6b6c6d6e6f")};
  return leaves;
}

const char* const kKatRoots[] = {
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"};

std::vector<Hash> kat_leaf_hashes(size_t n) {
  std::vector<Hash> hashes;
  for (size_t i = 0; i < n; ++i) hashes.push_back(leaf_hash(kat_leaves()[i]));
  return hashes;
}

std::vector<Hash> hashes_of(std::initializer_list<const char*> hexes) {
  std::vector<Hash> out;
  for (const char* hex : hexes) out.push_back(hash_of_hex(hex));
  return out;
}

// A reference MTH straight from RFC 6962 2.1, over leaf hashes.
Hash reference_mth(std::span<const Hash> leaves) {
  if (leaves.empty()) return empty_tree_hash();
  if (leaves.size() == 1) return leaves[0];
  size_t k = 1;
  while (k * 2 < leaves.size()) k *= 2;
  return node_hash(reference_mth(leaves.first(k)), reference_mth(leaves.subspan(k)));
}

}  // namespace

TEST_CASE("merkle: tree hashes match the RFC 6962 test vectors", "[evidence]") {
  CHECK(hash_hex(empty_tree_hash()) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  RightEdge edge;
  CHECK(edge.root() == empty_tree_hash());
  for (size_t n = 1; n <= 8; ++n) {
    INFO("tree size " << n);
    MemoryHashSource source(kat_leaf_hashes(n));
    auto root = tree_hash(source, n);
    REQUIRE(root);
    CHECK(hash_hex(*root) == kKatRoots[n - 1]);
    edge.append(leaf_hash(kat_leaves()[n - 1]));
    CHECK(hash_hex(edge.root()) == kKatRoots[n - 1]);
  }
}

TEST_CASE("merkle: inclusion and consistency proofs match the RFC 6962 test vectors",
          "[evidence]") {
  MemoryHashSource source(kat_leaf_hashes(8));
  struct Case {
    uint64_t index, size;
    std::vector<Hash> proof;
  };
  const std::vector<Case> inclusion = {
      {0, 8,
       hashes_of({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                  "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                  "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {5, 8,
       hashes_of({"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                  "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 3, hashes_of({"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"})},
      {1, 5,
       hashes_of({"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                  "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                  "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
  };
  for (const auto& c : inclusion) {
    INFO("inclusion of " << c.index << " in " << c.size);
    auto proof = inclusion_proof(source, c.index, c.size);
    REQUIRE(proof);
    CHECK(*proof == c.proof);
    const Hash root = hash_of_hex(kKatRoots[c.size - 1]);
    CHECK(verify_inclusion(c.index, c.size, leaf_hash(kat_leaves()[c.index]), c.proof, root));
    CHECK_FALSE(verify_inclusion(c.index, c.size, leaf_hash("x"), c.proof, root));
    if (c.size > 1)
      CHECK_FALSE(verify_inclusion(c.index + 1 < c.size ? c.index + 1 : 0, c.size,
                                   leaf_hash(kat_leaves()[c.index]), c.proof, root));
  }
  const std::vector<Case> consistency = {
      {1, 8,
       hashes_of({"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                  "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                  "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"})},
      {6, 8,
       hashes_of({"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                  "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"})},
      {2, 5,
       hashes_of({"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                  "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"})},
      {4, 7, hashes_of({"837dbb152e9b079010717e84e865da4ebc0fa198a806d59d31bf15accef22d0e"})},
  };
  for (const auto& c : consistency) {
    INFO("consistency of " << c.index << " with " << c.size);
    auto proof = consistency_proof(source, c.index, c.size);
    REQUIRE(proof);
    CHECK(*proof == c.proof);
    const Hash old_root = hash_of_hex(kKatRoots[c.index - 1]);
    const Hash new_root = hash_of_hex(kKatRoots[c.size - 1]);
    CHECK(verify_consistency(c.index, c.size, old_root, new_root, c.proof));
    CHECK_FALSE(verify_consistency(c.index, c.size, new_root, new_root, c.proof));
    CHECK_FALSE(verify_consistency(c.index, c.size, old_root, old_root, c.proof));
    auto shorter = c.proof;
    shorter.pop_back();
    CHECK_FALSE(verify_consistency(c.index, c.size, old_root, new_root, shorter));
  }
  CHECK(verify_consistency(3, 3, hash_of_hex(kKatRoots[2]), hash_of_hex(kKatRoots[2]), {}));
  CHECK_FALSE(verify_consistency(3, 3, hash_of_hex(kKatRoots[2]), hash_of_hex(kKatRoots[3]), {}));
}

TEST_CASE("merkle: every proof of trees up to 70 leaves verifies and matches the reference",
          "[evidence]") {
  std::vector<Hash> leaves;
  for (int i = 0; i < 70; ++i) leaves.push_back(leaf_hash("leaf " + std::to_string(i)));
  MemoryHashSource source(leaves);
  for (uint64_t n = 1; n <= leaves.size(); ++n) {
    const Hash root = reference_mth(std::span<const Hash>(leaves).first(n));
    auto computed = tree_hash(source, n);
    REQUIRE(computed);
    REQUIRE(*computed == root);
    for (uint64_t i = 0; i < n; ++i) {
      auto proof = inclusion_proof(source, i, n);
      REQUIRE(proof);
      REQUIRE(verify_inclusion(i, n, leaves[i], *proof, root));
    }
    for (uint64_t m = 0; m <= n; ++m) {
      auto proof = consistency_proof(source, m, n);
      REQUIRE(proof);
      const Hash old_root = reference_mth(std::span<const Hash>(leaves).first(m));
      INFO(m << " -> " << n);
      REQUIRE(verify_consistency(m, n, old_root, root, *proof));
    }
  }
}

TEST_CASE("merkle: tile paths are tlog-tiles paths", "[evidence]") {
  CHECK(tile_index_path(1234067) == "x001/x234/067");
  CHECK(tile_index_path(5) == "005");
  CHECK(tile_index_path(1000) == "x001/000");
  CHECK(tile_index_path(0) == "000");
  CHECK(tile_index_path(999) == "999");
  CHECK(tile_index_path(18446744073709551615ull) == "x018/x446/x744/x073/x709/x551/615");
  CHECK(tile_path(Tile{2, 1234067, 5}) == "tile/2/x001/x234/067.p/5");
  CHECK(tile_path(Tile{0, 0, 256}) == "tile/0/000");
  CHECK(tile_path(Tile{kEntriesLevel, 1234067, 256}) == "tile/entries/x001/x234/067");
  for (const char* path : {"tile/2/x001/x234/067.p/5", "tile/0/000", "tile/entries/x001/000",
                           "tile/63/x018/x446/x744/x073/x709/x551/615"}) {
    auto tile = parse_tile_path(path);
    REQUIRE(tile);
    CHECK(tile_path(*tile) == path);
  }
  auto parsed = parse_tile_path("tile/entries/x001/x234/067.p/255");
  REQUIRE(parsed);
  CHECK(*parsed == Tile{kEntriesLevel, 1234067, 255});
  for (const char* bad :
       {"tile/0/x000/001", "tile/0/1", "tile/01/000", "tile/64/000", "tile/0/000.p/0",
        "tile/0/000.p/256", "tile/0/000.p/07", "tile/0/001/002", "tile/0", "tiles/0/000",
        "tile/0/x018/x446/x744/x073/x709/x551/616", "tile/0/000.p", "tile/-1/000"}) {
    INFO(bad);
    CHECK_FALSE(parse_tile_path(bad));
  }
}

TEST_CASE("merkle: the tiles of a tree of 70000 are those tlog-tiles lists", "[evidence]") {
  // 273 full level 0 tiles and a partial of 112, one full level 1 tile and
  // a partial of 17, a partial level 2 tile of 1.
  CHECK(tile_in_tree(0, 273, 70000) == Tile{0, 273, 112});
  CHECK(tile_in_tree(0, 272, 70000) == Tile{0, 272, 256});
  CHECK(tile_in_tree(0, 274, 70000) == std::nullopt);
  CHECK(tile_in_tree(1, 1, 70000) == Tile{1, 1, 17});
  CHECK(tile_in_tree(2, 0, 70000) == Tile{2, 0, 1});
  CHECK(tile_in_tree(3, 0, 70000) == std::nullopt);
  // A tree of 256: a full level 0 tile and a partial level 1 tile of width 1.
  CHECK(tile_in_tree(0, 1, 256) == std::nullopt);
  CHECK(tile_in_tree(1, 0, 256) == Tile{1, 0, 1});

  RightEdge edge;
  std::vector<RightEdge::FullTile> completed;
  for (int i = 0; i < 70000; ++i) edge.append(leaf_hash(std::to_string(i)), &completed);
  CHECK(completed.size() == 273 + 1);
  CHECK(completed.back().tile == Tile{0, 272, 256});
  CHECK(std::count_if(completed.begin(), completed.end(), [](const auto& full) {
          return full.tile == Tile{1, 0, 256};
        }) == 1);
  const auto partials = edge.partial_tiles();
  REQUIRE(partials.size() == 3);
  CHECK(partials[0].tile == Tile{0, 273, 112});
  CHECK(partials[1].tile == Tile{1, 1, 17});
  CHECK(partials[2].tile == Tile{2, 0, 1});
  std::vector<std::vector<Hash>> hashes;
  for (int level = 0; level < 3; ++level) hashes.push_back(edge.partial(level));
  auto rebuilt = RightEdge::from_partials(70000, hashes);
  REQUIRE(rebuilt);
  CHECK(rebuilt->root() == edge.root());
  CHECK_FALSE(RightEdge::from_partials(70001, hashes));
}
