// verify_log over a log directory: a good log passes, and each kind of
// tampering is caught and named by the first bad entry, tile or checkpoint.

#include "evidence/verify.hpp"

#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

#include "evidence/test_log.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;
using namespace driftwatch::testing;
namespace fs = std::filesystem;

namespace {

// A log of 1000 entries in batches, checkpoints at 0, 300 and 1000, a blob.
fs::path make_log(const TempDir& dir) {
  const fs::path root = dir / "evidence";
  Log log = open_test_log(root);
  REQUIRE(log.checkpoint());
  append_test_entries(log, 300, {7, 100});
  REQUIRE(log.checkpoint());
  append_test_entries(log, 1000, {1, 256, 45});
  REQUIRE(log.checkpoint());
  REQUIRE(log.put_blob("an envelope"));
  REQUIRE(log.sync());
  return root;
}

VerifyResult verify_dir(const fs::path& root) {
  DirectoryReader reader(root.string());
  return verify_log(reader, test_signer().verifier(), VerifyOptions{kTestOrigin, true});
}

// Replaces the first occurrence of `from` in the file by `to`.
void edit(const fs::path& path, const std::string& from, const std::string& to) {
  std::string bytes = slurp(path);
  const size_t at = bytes.find(from);
  REQUIRE(at != std::string::npos);
  bytes.replace(at, from.size(), to);
  spit(path, bytes);
}

}  // namespace

TEST_CASE("verify: a log written by Log verifies, over a directory and a callback", "[evidence]") {
  TempDir dir("evidence-verify");
  const fs::path root = make_log(dir);
  const VerifyResult result = verify_dir(root);
  INFO(result.message);
  REQUIRE(result.ok());
  CHECK(result.tree_size == 1000);
  CHECK(result.checkpoints_checked == 4);  // checkpoints/0, /300, /1000 and checkpoint
  CHECK(result.blobs_checked == 1);
  CHECK(result.checkpoints_listed);
  CHECK(result.tiles_checked >= 4 + 1);

  // A reader that cannot list (a static HTTP server) checks the latest only.
  DirectoryReader disk(root.string());
  CallbackReader http([&](const std::string& path, size_t max) { return disk.read(path, max); });
  const VerifyResult over_http = verify_log(http, test_signer().verifier());
  INFO(over_http.message);
  CHECK(over_http.ok());
  CHECK_FALSE(over_http.checkpoints_listed);
  CHECK(over_http.checkpoints_checked == 2);
}

TEST_CASE("verify: not a log, or the wrong key, is bad input", "[evidence]") {
  TempDir dir("evidence-verify");
  const VerifyResult empty = verify_dir(dir.path());
  CHECK(empty.failure == VerifyFailure::kNotALog);
  CHECK_THAT(empty.message, Catch::StartsWith("checkpoint: is missing"));

  const fs::path root = make_log(dir);
  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  auto other_verifier = NoteVerifier::make(kTestOrigin, other->public_key());
  REQUIRE(other_verifier);
  DirectoryReader reader(root.string());
  const VerifyResult wrong_key = verify_log(reader, *other_verifier);
  CHECK(wrong_key.failure == VerifyFailure::kWrongKey);
  CHECK(wrong_key.path == "checkpoint");
}

TEST_CASE("verify: every tampering is caught and named", "[evidence]") {
  TempDir dir("evidence-verify");
  const fs::path root = make_log(dir);

  SECTION("a flipped byte in an entry of a full bundle") {
    edit(root / "tile/entries/001", "\"seq\":300,", "\"seq\":300;");
    const auto result = verify_dir(root);
    CHECK(result.failure == VerifyFailure::kTampered);
    CHECK(result.path == "tile/entries/001");
    CHECK_THAT(result.message,
               Catch::Contains("entry 300 was changed") && Catch::Contains("tile/1/000.p/3"));
  }
  SECTION("a changed value in the last, partial bundle") {
    edit(root / "tile/entries/003.p/232", "\"seq\":999", "\"seq\":998");
    const auto result = verify_dir(root);
    CHECK(result.failure == VerifyFailure::kTampered);
    CHECK(result.path == "tile/entries/003.p/232");
    CHECK_THAT(result.message, Catch::Contains("entry 999"));
  }
  SECTION("a deleted entry") {
    edit(root / "tile/entries/002", encode_bundle_entry(test_entry(600)), "");
    const auto result = verify_dir(root);
    CHECK(result.path == "tile/entries/002");
    CHECK_THAT(result.message, Catch::Contains("255 entries") && Catch::Contains("deleted"));
  }
  SECTION("two entries swapped") {
    edit(root / "tile/entries/000",
         encode_bundle_entry(test_entry(10)) + encode_bundle_entry(test_entry(11)),
         encode_bundle_entry(test_entry(11)) + encode_bundle_entry(test_entry(10)));
    const auto result = verify_dir(root);
    CHECK(result.path == "tile/entries/000");
    CHECK_THAT(result.message, Catch::Contains("entry 10 was changed"));
  }
  SECTION("a rewritten level 0 hash tile") {
    std::string tile = slurp(root / "tile/0/001");
    tile[32 * 7] ^= 0x40;
    spit(root / "tile/0/001", tile);
    const auto result = verify_dir(root);
    CHECK(result.path == "tile/0/001");
    CHECK_THAT(result.message, Catch::Contains("hash 7") && Catch::Contains("tile was changed"));
  }
  SECTION("a rewritten level 1 hash tile") {
    std::string tile = slurp(root / "tile/1/000.p/3");
    tile[32 * 2 + 1] ^= 0x01;
    spit(root / "tile/1/000.p/3", tile);
    const auto result = verify_dir(root);
    CHECK(result.path == "tile/1/000.p/3");
    CHECK_THAT(result.message, Catch::Contains("tile was changed"));
  }
  SECTION("a forged checkpoint signature") {
    edit(root / "checkpoint", "\n1000\n", "\n1001\n");
    const auto result = verify_dir(root);
    CHECK(result.failure == VerifyFailure::kTampered);
    CHECK(result.path == "checkpoint");
    CHECK_THAT(result.message, Catch::Contains("does not verify"));
  }
  SECTION("the log rolled back below a checkpoint") {
    spit(root / "checkpoint", slurp(root / "checkpoints/300"));
    const auto result = verify_dir(root);
    CHECK(result.failure == VerifyFailure::kTampered);
    CHECK(result.path == "checkpoints/1000");
    CHECK_THAT(result.message, Catch::Contains("rolled back"));
  }
  SECTION("an inconsistent checkpoint, signed by the node key") {
    const Checkpoint forked{kTestOrigin, 300, leaf_hash("another history"), {}};
    auto note = test_signer().sign(format_checkpoint(forked));
    REQUIRE(note);
    spit(root / "checkpoints/300", *note);
    const auto result = verify_dir(root);
    CHECK(result.path == "checkpoints/300");
    CHECK_THAT(result.message, Catch::Contains("history was rewritten"));
  }
  SECTION("a checkpoint signed by another key") {
    auto other = Ed25519PrivateKey::generate();
    REQUIRE(other);
    auto signer = NoteSigner::make(kTestOrigin, *other);
    REQUIRE(signer);
    spit(root / "checkpoints/300",
         *signer->sign(slurp(root / "checkpoints/300")
                           .substr(0, slurp(root / "checkpoints/300").find("\n\n") + 1)));
    const auto result = verify_dir(root);
    CHECK(result.path == "checkpoints/300");
    CHECK_THAT(result.message, Catch::Contains("is not signed by"));
  }
  SECTION("a changed blob") {
    const std::string name = sha256_hex("an envelope");
    spit(root / "blob" / name, "another envelope");
    const auto result = verify_dir(root);
    CHECK(result.path == "blob/" + name);
  }
  SECTION("entries and all tiles rewritten consistently") {
    // Rebuild a log with one different entry: its tiles agree with its
    // entries, but not with the checkpoints the node signed.
    TempDir other_dir("evidence-verify-other");
    Log other = open_test_log(other_dir / "evidence");
    append_test_entries(other, 600, {600});
    REQUIRE(other.append({"{\"seq\":600,\"type\":\"forged\"}"}));
    append_test_entries(other, 1000, {399});
    for (const char* path : {"tile/entries/002", "tile/0/002", "tile/1/000.p/3", "tile/0/003.p/232",
                             "tile/entries/003.p/232"})
      spit(root / path, slurp(other_dir / "evidence" / path));
    const auto result = verify_dir(root);
    CHECK(result.failure == VerifyFailure::kTampered);
    CHECK(result.path == "checkpoint");
    CHECK_THAT(result.message, Catch::Contains("rewritten after it was signed"));
  }
}
