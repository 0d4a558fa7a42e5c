// Interop with an independent implementation: a log, its checkpoints and a
// tlog-proof written by driftwatch, checked by Go's golang.org/x/mod/sumdb
// note and tlog packages (tests/interop/evidence/main.go, built offline from
// Debian's golang-golang-x-mod-dev). Skips where go or the package is missing.

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

#include "evidence/proof.hpp"
#include "evidence/test_log.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;
using namespace driftwatch::testing;
namespace fs = std::filesystem;

namespace {

constexpr const char* kGoPath = "/usr/share/gocode";

fs::path interop_program() {
  return fs::path(__FILE__).parent_path().parent_path() / "interop" / "evidence" / "main.go";
}

// `go` on PATH, or empty.
std::string find_go() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir) / "go";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

struct Output {
  int exit_code = -1;
  std::string text;
};

// Runs a shell command line (only test-made temp paths in it), stdout and
// stderr together.
Output run_shell(const std::string& command) {
  Output out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.text.append(buffer, n);
  const int status = ::pclose(pipe);
  out.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

}  // namespace

TEST_CASE("evidence interop: Go's sumdb/note and sumdb/tlog verify a log driftwatch wrote",
          "[evidence][interop]") {
  const std::string go = find_go();
  if (go.empty()) DW_SKIP("go is not installed (Debian: golang-go)");
  if (!fs::exists(fs::path(kGoPath) / "src/golang.org/x/mod/sumdb/tlog/tlog.go"))
    DW_SKIP("golang.org/x/mod/sumdb is not in " << kGoPath << " (Debian: golang-golang-x-mod-dev)");
  REQUIRE(fs::exists(interop_program()));

  TempDir dir("evidence-interop");
  const fs::path root = dir / "evidence";
  Log log = open_test_log(root);
  append_test_entries(log, 100, {1, 2, 3, 50});
  REQUIRE(log.checkpoint());
  append_test_entries(log, 513, {256, 7});
  REQUIRE(log.checkpoint());
  append_test_entries(log, 1000, {1, 99, 256, 31, 3});
  REQUIRE(log.checkpoint());
  auto proof = make_tlog_proof(log, 777);
  REQUIRE(proof);
  spit(dir / "777.tlog-proof", *proof);
  spit(dir / "777.entry", test_entry(777));
  spit(dir / "node.vkey", log.verifier().vkey());

  const std::string cache = std::string(DRIFTWATCH_GO_CACHE);
  const std::string command =
      "cd '" + dir.path().string() + "' && GO111MODULE=off GOPATH=" + kGoPath +
      " GOFLAGS= GOCACHE='" + cache + "' '" + go + "' run '" + interop_program().string() + "' '" +
      root.string() + "' '" + log.verifier().vkey() + "' 777.tlog-proof 777.entry";
  const Output out = run_shell(command);
  INFO(command << "\n" << out.text);
  CHECK(out.exit_code == 0);
  CHECK_THAT(out.text, Catch::Contains("checkpoint: note.Open verified driftwatch/test-node, "
                                       "size 1000, root " +
                                       hash_base64(log.root())));
  CHECK_THAT(out.text, Catch::Contains("entries: tree hash of 1000 entries"));
  CHECK_THAT(out.text, Catch::Contains("tiles: TileHashReader authenticated them"));
  CHECK_THAT(out.text, Catch::Contains("inclusion: ProveRecord + CheckRecord for all 1000"));
  CHECK_THAT(out.text, Catch::Contains("consistency: checkpoints [100 513 1000]"));
  CHECK_THAT(out.text, Catch::Contains("tlog-proof: index 777 in the tree of 1000"));
  CHECK_THAT(out.text, Catch::EndsWith("interop: OK\n"));

  // And Go refuses what is not right: one entry changed.
  std::string bundle = slurp(root / "tile/entries/001");
  bundle[bundle.size() - 3] ^= 1;
  spit(root / "tile/entries/001", bundle);
  const Output tampered = run_shell(command);
  INFO(tampered.text);
  CHECK(tampered.exit_code == 1);
  CHECK_THAT(tampered.text, Catch::Contains("interop: FAILED"));
}
