// The node's evidence key in the state directory (app/keys.hpp).

#include "app/keys.hpp"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include <catch2/catch.hpp>

#include "support/temp_dir.hpp"

using namespace driftwatch;
using driftwatch::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

mode_t mode_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("keys: the node key is created on first start and read afterwards", "[app]") {
  TempDir dir("node-key");
  auto first = app::load_or_create_node_key(dir.path(), "driftwatch/node-1");
  REQUIRE(first);
  CHECK(mode_of(dir / "node.key") == 0600);
  CHECK(mode_of(dir / "node.pub") == 0644);
  CHECK(slurp(dir / "node.vkey") == first->vkey() + "\n");
  CHECK_THAT(first->vkey(), Catch::StartsWith("driftwatch/node-1+"));
  auto verifier = evidence::NoteVerifier::parse(slurp(dir / "node.vkey"));
  REQUIRE(verifier);

  auto again = app::load_or_create_node_key(dir.path(), "driftwatch/node-1");
  REQUIRE(again);
  CHECK(again->vkey() == first->vkey());

  // A missing derived file is written again; one naming another key or
  // name is refused.
  fs::remove(dir / "node.pub");
  REQUIRE(app::load_or_create_node_key(dir.path(), "driftwatch/node-1"));
  CHECK(fs::exists(dir / "node.pub"));
  auto renamed = app::load_or_create_node_key(dir.path(), "driftwatch/node-2");
  REQUIRE_FALSE(renamed);
  CHECK_THAT(renamed.error().message, Catch::Contains("node.vkey") && Catch::Contains("node name"));
  std::ofstream(dir / "node.key", std::ios::trunc) << "not a key";
  auto broken = app::load_or_create_node_key(dir.path(), "driftwatch/node-1");
  REQUIRE_FALSE(broken);
  CHECK_THAT(broken.error().message, Catch::Contains("node.key"));
  // A name that cannot be a key name is refused before anything is written.
  TempDir fresh("node-key");
  CHECK_FALSE(app::load_or_create_node_key(fresh.path(), "driftwatch/node 1"));
  CHECK_FALSE(fs::exists(fresh / "node.key"));
}
