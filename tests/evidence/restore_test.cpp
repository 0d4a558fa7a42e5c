// Restoring accepted envelopes from the evidence log, with and without a
// restore point (evidence/restore.hpp).

#include "evidence/restore.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/sha256.hpp"
#include "support/temp_dir.hpp"
#include "test_log.hpp"

using namespace driftwatch;
using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A log of `total` entries where every `every`th is a launch_accepted citing
// the blob "envelope-<i>"; the others are observations. Returns the indexes
// of the accepted ones.
std::vector<uint64_t> write_log(evidence::Log& log, uint64_t total, uint64_t every) {
  std::vector<uint64_t> accepted;
  std::vector<std::string> entries;
  for (uint64_t i = 0; i < total; ++i) {
    json entry{{"seq", i}, {"time", "2026-12-01T00:00:00Z"}};
    if (i % every == every - 1) {
      const std::string envelope = "envelope-" + std::to_string(i);
      REQUIRE(log.put_blob(envelope));
      entry["type"] = "launch_accepted";
      entry["id"] = "L-" + std::to_string(i);
      entry["envelope_sha256"] = sha256_hex(envelope);
      accepted.push_back(i);
    } else {
      entry["type"] = "observation";
    }
    entries.push_back(entry.dump());
    if (entries.size() == 100 || i + 1 == total) {
      REQUIRE(log.append(entries));
      entries.clear();
    }
  }
  return accepted;
}

evidence::AcceptedEnvelopes read_ok(const evidence::Log& log, const fs::path& state) {
  auto found = evidence::read_accepted(log, state);
  INFO((found ? std::string() : found.error().message));
  REQUIRE(found);
  return *found;
}

std::vector<std::string> bytes_of(const evidence::AcceptedEnvelopes& found) {
  std::vector<std::string> out;
  for (const auto& e : found.envelopes) out.push_back(e.bytes);
  return out;
}

}  // namespace

TEST_CASE("restore: without a restore point every entry of the log is read, in order",
          "[evidence]") {
  TempDir state;
  auto log = open_test_log(state.path() / "evidence");
  const auto accepted = write_log(log, 1000, 7);
  const auto found = read_ok(log, state.path());
  CHECK(found.entries_read == 1000);
  CHECK(found.point_refused.empty());
  CHECK(found.problems.empty());
  CHECK(found.indexes == accepted);
  REQUIRE(found.envelopes.size() == accepted.size());
  CHECK(found.envelopes[0].bytes == "envelope-6");
  CHECK(found.envelopes[0].kind == ingest::EnvelopeKind::launch);
  CHECK(found.envelopes[0].where == "evidence entry 6 (launch L-6)");
  CHECK_THAT(found.how, Catch::Contains("all 1000 entries") && Catch::Contains("no restore point"));
}

TEST_CASE("restore: with a restore point only the entries it names and those after it are read",
          "[evidence]") {
  TempDir state;
  auto log = open_test_log(state.path() / "evidence");
  const auto accepted = write_log(log, 1000, 7);
  // At 900, three envelopes were still held: 6, 503 and 895.
  evidence::RestorePoint point{900, *log.root_at(900), {6, 503, 895}};
  REQUIRE(evidence::write_restore_point(state.path(), point));
  const auto found = read_ok(log, state.path());
  INFO(found.point_refused);
  CHECK(found.point_refused.empty());
  CHECK(found.entries_read == 3 + 100);
  std::vector<uint64_t> expected{6, 503, 895};
  for (uint64_t i : accepted)
    if (i >= 900) expected.push_back(i);
  CHECK(found.indexes == expected);
  CHECK(bytes_of(found).front() == "envelope-6");
  CHECK_THAT(found.how, Catch::Contains("restore point at tree size 900"));
  // The point round-trips, byte for byte.
  CHECK(evidence::encode_restore_point(*evidence::parse_restore_point(
            evidence::encode_restore_point(point))) == evidence::encode_restore_point(point));
}

TEST_CASE("restore: a restore point that is not this log's is refused, and the whole log read",
          "[evidence]") {
  TempDir state;
  auto log = open_test_log(state.path() / "evidence");
  const auto accepted = write_log(log, 600, 5);
  evidence::RestorePoint point{500, *log.root_at(500), {4}};
  std::string why;
  SECTION("another root") {
    point.root = *log.root_at(499);
    why = "its root at size 500 differs";
  }
  SECTION("beyond the log") {
    point.tree_size = 601;
    why = "beyond the log's 600";
  }
  SECTION("naming an entry that is not an accepted one") {
    point.accepted = {4, 10};
    why = "entry 10, which is not an accepted launch or grant";
  }
  REQUIRE(evidence::write_restore_point(state.path(), point));
  const auto found = read_ok(log, state.path());
  CHECK_THAT(found.point_refused, Catch::Contains(why));
  CHECK(found.entries_read == 600);
  CHECK(found.indexes == accepted);
  CHECK_THAT(found.how,
             Catch::Contains("all 600 entries") && Catch::Contains("restore point not used"));
}

TEST_CASE("restore: an accepted entry whose envelope blob is gone is a problem, not a silence",
          "[evidence]") {
  TempDir state;
  auto log = open_test_log(state.path() / "evidence");
  write_log(log, 20, 10);  // accepted: 9 and 19
  fs::remove(state.path() / "evidence" / "blob" / sha256_hex("envelope-9"));
  spit(state.path() / "evidence" / "blob" / sha256_hex("envelope-19"), "edited");
  const auto found = read_ok(log, state.path());
  CHECK(found.envelopes.empty());
  REQUIRE(found.problems.size() == 2);
  CHECK_THAT(found.problems[0], Catch::Contains("evidence entry 9 (launch L-9)") &&
                                    Catch::Contains("missing from the log"));
  CHECK_THAT(found.problems[1], Catch::Contains("evidence entry 19 (launch L-19)") &&
                                    Catch::Contains("does not hash to its name"));
}

TEST_CASE("restore: a restore point is parsed strictly", "[evidence]") {
  const std::string root(64, 'a');
  const auto parse = [](const std::string& text) {
    return evidence::parse_restore_point(text).has_value();
  };
  const auto doc = [&](const std::string& accepted, const std::string& extra = "") {
    return R"({"format":"driftwatch-restore-point/1","tree_size":10,"root":")" + root +
           R"(","accepted":)" + accepted + extra + "}";
  };
  CHECK(parse(doc("[1,2,9]")));
  CHECK_FALSE(parse(doc("[2,1]")));  // not ascending
  CHECK_FALSE(parse(doc("[1,1]")));  // twice
  CHECK_FALSE(parse(doc("[10]")));   // not below tree_size
  CHECK_FALSE(parse(doc("[-1]")));   // not an index
  CHECK_FALSE(parse(doc("[1.5]")));  // not an index
  CHECK_FALSE(parse(doc("[1]", R"(,"x":1)")));
  CHECK_FALSE(parse(R"({"format":"driftwatch-restore-point/2","tree_size":1,"root":")" + root +
                    R"(","accepted":[]})"));
  CHECK_FALSE(
      parse(R"({"format":"driftwatch-restore-point/1","tree_size":1,"root":"AA","accepted":[]})"));
  CHECK_FALSE(parse("not json"));
  CHECK_FALSE(parse(""));
}
