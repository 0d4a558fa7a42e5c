// The accepted store of versions before the evidence log, read once for
// migration (ingest/legacy_store.hpp).

#include "ingest/legacy_store.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <catch2/catch.hpp>

#include "support/temp_dir.hpp"

using namespace driftwatch::ingest;
using driftwatch::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("legacy store: none is nullopt", "[ingest]") {
  TempDir state;
  auto store = read_legacy_store(state.path());
  REQUIRE(store);
  CHECK_FALSE(*store);
}

TEST_CASE(
    "legacy store: envelope lines are read in order, other lines named and skipped, a torn tail "
    "left, and retiring it renames it with every byte kept",
    "[ingest]") {
  TempDir state;
  fs::create_directories(state.path() / "ingest");
  const fs::path path = state.path() / "ingest" / "accepted.jsonl";
  const std::string text = R"({"accepted_at":1,"envelope":"E1","kind":"launch"})"
                           "\n"
                           "this is not json\n"
                           R"({"kind":"recovered","at":2,"truncated_bytes":3})"
                           "\n"
                           R"({"accepted_at":1,"envelope":"E2","kind":"grant"})"
                           "\n"
                           R"({"accepted_at":1,"envelope":7,"kind":"launch"})"
                           "\n"
                           R"({"accepted_at":1,"env)";
  std::ofstream(path, std::ios::binary) << text;

  auto store = read_legacy_store(state.path());
  INFO((store ? std::string() : store.error().message));
  REQUIRE(store);
  REQUIRE(*store);
  REQUIRE((*store)->envelopes.size() == 2);
  CHECK((*store)->envelopes[0].bytes == "E1");
  CHECK((*store)->envelopes[0].kind == EnvelopeKind::launch);
  CHECK((*store)->envelopes[0].where == path.string() + " line 1");
  CHECK((*store)->envelopes[1].bytes == "E2");
  CHECK((*store)->envelopes[1].kind == EnvelopeKind::grant);
  REQUIRE((*store)->skipped.size() == 2);
  CHECK_THAT((*store)->skipped[0], Catch::StartsWith(path.string() + " line 2 skipped"));
  CHECK_THAT((*store)->skipped[1], Catch::StartsWith(path.string() + " line 5 skipped"));
  CHECK((*store)->torn_bytes == std::string(R"({"accepted_at":1,"env)").size());
  CHECK(read_all(path) == text);  // reading changes nothing

  auto retired = retire_legacy_store(**store);
  REQUIRE(retired);
  CHECK(*retired == fs::path(path.string() + ".migrated"));
  CHECK_FALSE(fs::exists(path));
  CHECK(read_all(*retired) == text);
  auto again = read_legacy_store(state.path());
  REQUIRE(again);
  CHECK_FALSE(*again);
}

TEST_CASE("legacy store: one that is not a regular file is an error naming it", "[ingest]") {
  TempDir state;
  fs::create_directories(state.path() / "ingest");
  fs::create_symlink("/etc/passwd", state.path() / "ingest" / "accepted.jsonl");
  auto store = read_legacy_store(state.path());
  REQUIRE_FALSE(store);
  CHECK_THAT(store.error().message,
             Catch::Contains("accepted.jsonl") && Catch::Contains("symbolic link"));
}
