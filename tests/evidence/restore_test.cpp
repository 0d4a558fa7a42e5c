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
  // Positions: like the accepted list, and never an accepted entry's index.
  CHECK(parse(doc("[1,2]", R"(,"positions":[3,9])")));
  CHECK(parse(doc("[]", R"(,"positions":[])")));
  CHECK_FALSE(parse(doc("[1,2]", R"(,"positions":[2])")));
  CHECK_FALSE(parse(doc("[1]", R"(,"positions":[4,3])")));
  CHECK_FALSE(parse(doc("[1]", R"(,"positions":[10])")));
  CHECK_FALSE(parse(doc("[1]", R"(,"positions":{})")));
  CHECK_FALSE(parse(doc("[1]", R"(,"positions":[3],"x":1)")));
}

TEST_CASE("restore: each journal's last position comes from the log, through a restore point too",
          "[evidence]") {
  TempDir state;
  auto log = open_test_log(state.path() / "evidence");
  write_log(log, 50, 10);
  const auto position = [](const std::string& journal, uint64_t offset, uint64_t seq) {
    evidence::JournalPosition p{journal, 77, offset, std::string("line\n")};
    auto entry = evidence::journal_position(0, p, "journal poll").entry;
    entry["seq"] = seq;
    return entry.dump();
  };
  {
    const std::string text = position("/j/a", 10, 50);
    INFO(text);
    const auto parsed = evidence::parse_journal_position(text);
    REQUIRE(parsed);
    CHECK(parsed->journal == "/j/a");
  }
  // Entries 50..53: a, b, a again, and one position with its bytes unknown.
  REQUIRE(
      log.append({position("/j/a", 10, 50), position("/j/b", 20, 51), position("/j/a", 30, 52)}));
  {
    evidence::JournalPosition unknown{"/j/c", 5, 0, std::nullopt};
    auto entry = evidence::journal_position(0, unknown, "migrated").entry;
    entry["seq"] = 53;
    REQUIRE(log.append({entry.dump()}));
  }
  auto found = read_ok(log, state.path());
  REQUIRE(found.journals.size() == 3);
  CHECK(found.journals["/j/a"].first == 52);
  CHECK(found.journals["/j/a"].second.offset == 30);
  CHECK(found.journals["/j/a"].second.preceding == std::optional<std::string>("line\n"));
  CHECK(found.journals["/j/b"].second.offset == 20);
  CHECK(found.journals["/j/c"].second.preceding == std::nullopt);

  // A restore point at 54 names them (and the accepted ones): read alone.
  evidence::RestorePoint point{54, *log.root_at(54), {9, 19, 29, 39, 49}, {51, 52, 53}};
  REQUIRE(evidence::write_restore_point(state.path(), point));
  found = read_ok(log, state.path());
  INFO(found.point_refused);
  CHECK(found.point_refused.empty());
  CHECK(found.entries_read == 8);
  CHECK(found.journals["/j/a"].second.offset == 30);
  CHECK(found.journals["/j/b"].second.offset == 20);

  // One that names an observation as a position is not this log's.
  point.positions = {50, 51, 52, 53};
  point.positions[0] = 48;
  REQUIRE(evidence::write_restore_point(state.path(), point));
  found = read_ok(log, state.path());
  CHECK_THAT(found.point_refused, Catch::Contains("not a journal position"));
  CHECK(found.journals["/j/a"].second.offset == 30);  // the whole log was read
  CHECK(found.entries_read == 54);
}

TEST_CASE("restore: a journal_position entry is parsed strictly", "[evidence]") {
  const auto parse = [](const json& entry) {
    return evidence::parse_journal_position(entry.dump()).has_value();
  };
  json good{{"seq", 1},   {"time", "t"}, {"type", "journal_position"}, {"journal", "/j"},
            {"inode", 1}, {"offset", 2}, {"preceding_hex", "0a"},      {"source", "x"}};
  CHECK(parse(good));
  for (const char* field : {"journal", "inode", "offset", "preceding_hex"}) {
    json missing = good;
    missing.erase(field);
    CHECK_FALSE(parse(missing));
  }
  json bad = good;
  bad["offset"] = -1;
  CHECK_FALSE(parse(bad));
  bad = good;
  bad["preceding_hex"] = "zz";
  CHECK_FALSE(parse(bad));
  bad = good;
  bad["preceding_hex"] = std::string(130, 'a');  // more than 64 bytes
  CHECK_FALSE(parse(bad));
  bad = good;
  bad["type"] = "observation";
  CHECK_FALSE(parse(bad));
  CHECK_FALSE(evidence::parse_journal_position("journal_position"));
}
