// tlog-proof@v1: produced from the log's tiles, verified offline with the
// verifier key alone.

#include "evidence/proof.hpp"

#include <string>

#include <catch2/catch.hpp>

#include "evidence/test_log.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;
using namespace driftwatch::testing;

TEST_CASE("proof: tlog-proofs of a log verify offline with the verifier key", "[evidence]") {
  TempDir dir("evidence-proof");
  Log log = open_test_log(dir / "evidence");
  CHECK_FALSE(make_tlog_proof(log, 0));  // no checkpoint yet
  append_test_entries(log, 1000, {7, 300, 1});
  auto early = log.checkpoint();
  REQUIRE(early);
  append_test_entries(log, 1500, {100});
  REQUIRE(log.checkpoint());
  const NoteVerifier verifier = NoteVerifier::parse(log.verifier().vkey()).value();

  for (uint64_t index : {0, 1, 255, 256, 999, 1000, 1499}) {
    INFO("index " << index);
    auto proof = make_tlog_proof(log, index);
    REQUIRE(proof);
    CHECK(proof->starts_with("c2sp.org/tlog-proof@v1\nindex " + std::to_string(index) + "\n"));
    CHECK(proof->ends_with(*log.latest_checkpoint()));
    auto verified = verify_tlog_proof(*proof, test_entry(index), verifier, kTestOrigin);
    INFO((verified ? std::string() : verified.error().message));
    REQUIRE(verified);
    CHECK(verified->index == index);
    CHECK(verified->checkpoint.size == 1500);
    CHECK_FALSE(verify_tlog_proof(*proof, test_entry(index + 1), verifier));
    CHECK_FALSE(verify_tlog_proof(*proof, test_entry(index), verifier, "driftwatch/other"));
  }
  // Against the earlier checkpoint, with extra data.
  auto old_proof = make_tlog_proof(log, 17, *early, std::string("launch-42"));
  REQUIRE(old_proof);
  CHECK_THAT(*old_proof,
             Catch::StartsWith("c2sp.org/tlog-proof@v1\nextra bGF1bmNoLTQy\nindex 17\n"));
  auto verified = verify_tlog_proof(*old_proof, test_entry(17), verifier);
  REQUIRE(verified);
  CHECK(verified->checkpoint.size == 1000);
  auto parsed = parse_tlog_proof(*old_proof);
  REQUIRE(parsed);
  CHECK(parsed->extra == "launch-42");
  CHECK(format_tlog_proof(*parsed) == *old_proof);
  CHECK_FALSE(make_tlog_proof(log, 1000, *early));  // not in that tree

  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  auto other_verifier = NoteVerifier::make(kTestOrigin, other->public_key());
  REQUIRE(other_verifier);
  auto proof = make_tlog_proof(log, 5);
  REQUIRE(proof);
  auto wrong_key = verify_tlog_proof(*proof, test_entry(5), *other_verifier);
  REQUIRE_FALSE(wrong_key);
  CHECK_THAT(wrong_key.error().message, Catch::Contains("does not verify"));
  // One proof hash changed.
  std::string changed = *proof;
  const size_t at = changed.find('\n', changed.find("index ")) + 1;
  changed[at] = changed[at] == 'A' ? 'B' : 'A';
  CHECK_FALSE(verify_tlog_proof(changed, test_entry(5), verifier));
}

TEST_CASE("proof: tlog-proof text is parsed strictly", "[evidence]") {
  const std::string hash = "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=";
  const std::string checkpoint = "o\n1\n" + hash + "\n\n\xe2\x80\x94 o AAAAAAA=\n";
  auto good = parse_tlog_proof("c2sp.org/tlog-proof@v1\nindex 0\n" + hash + "\n\n" + checkpoint);
  REQUIRE(good);
  CHECK(good->index == 0);
  CHECK(good->path.size() == 1);
  CHECK(good->checkpoint == checkpoint);
  CHECK(parse_tlog_proof("c2sp.org/tlog-proof@v1\nindex 3\n\n" + checkpoint));
  for (const std::string& bad : std::vector<std::string>{
           "c2sp.org/tlog-proof@v2\nindex 0\n\n" + checkpoint,
           "c2sp.org/tlog-proof@v1\nindex 01\n\n" + checkpoint,
           "c2sp.org/tlog-proof@v1\nindex -1\n\n" + checkpoint,
           "c2sp.org/tlog-proof@v1\nindex 18446744073709551616\n\n" + checkpoint,
           "c2sp.org/tlog-proof@v1\nindex 0\n" + hash + "\n",
           "c2sp.org/tlog-proof@v1\nindex 0\n" + hash + "\n\n",
           "c2sp.org/tlog-proof@v1\nindex 0\n" + hash.substr(1) + "\n\n" + checkpoint,
           "c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\n" + checkpoint,
           "c2sp.org/tlog-proof@v1\nextra YQ==\n\n" + checkpoint, "c2sp.org/tlog-proof@v1", ""}) {
    INFO(bad);
    CHECK_FALSE(parse_tlog_proof(bad));
  }
}

TEST_CASE(
    "proof: a tlog-proof computed offline from a copy's tiles is the one the live log makes, at "
    "every checkpoint and across partial tiles",
    "[evidence]") {
  TempDir dir("evidence-proof-tiles");
  Log log = open_test_log(dir / "evidence");
  std::vector<std::string> checkpoints;
  for (const uint64_t size : {1, 255, 256, 257, 700, 65536 + 300}) {
    append_test_entries(log, size, {size > 1000 ? uint64_t{4096} : uint64_t{13}});
    auto note = log.checkpoint();
    REQUIRE(note);
    checkpoints.push_back(*note);
  }
  log.wait_for_janitor();
  const NoteVerifier verifier = NoteVerifier::parse(log.verifier().vkey()).value();
  const DirectoryReader reader((dir / "evidence").string());
  for (const auto& note : checkpoints) {
    const auto checkpoint = open_checkpoint(note, verifier);
    REQUIRE(checkpoint);
    for (uint64_t index : {uint64_t{0}, uint64_t{1}, uint64_t{254}, uint64_t{255}, uint64_t{256},
                           uint64_t{699}, uint64_t{65535}, uint64_t{65536}, uint64_t{65835}}) {
      if (index >= checkpoint->size) continue;
      INFO("index " << index << " in a tree of " << checkpoint->size);
      auto offline = make_tlog_proof_from_tiles(reader, index, note, verifier, kTestOrigin);
      INFO((offline ? std::string() : offline.error().message));
      REQUIRE(offline);
      auto live = make_tlog_proof(log, index, note);
      REQUIRE(live);
      CHECK(*offline == *live);
      CHECK(verify_tlog_proof(*offline, test_entry(index), verifier, kTestOrigin));
    }
  }
  // Not in the tree, another origin: no proof.
  CHECK_FALSE(make_tlog_proof_from_tiles(reader, 1, checkpoints[0], verifier));
  CHECK_FALSE(
      make_tlog_proof_from_tiles(reader, 0, checkpoints[0], verifier, "driftwatch/other-node"));
}
