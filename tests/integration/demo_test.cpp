// `driftwatch demo` from start to end on the real thing: a real daemon, a
// real runc container, a real drift; nothing left behind.
#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <regex>
#include <string>

#include "integration/cli.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using driftwatch::testing::missing_requirement;
using driftwatch::testing::run_command;
using driftwatch::testing::run_driftwatch;
namespace fs = std::filesystem;

namespace {

// The work directory the demo named on its first line.
fs::path work_dir_of(const std::string& out) {
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("work directory (/\\S+)")));
  return m[1].str();
}

std::string container_of(const std::string& out) {
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex("(driftwatch-demo-[0-9]+)")));
  return m[1].str();
}

}  // namespace

TEST_CASE(
    "demo: shows a runc container attested, then drifted with its findings, and removes "
    "everything it made",
    "[root][runc][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto demo = run_driftwatch({"demo"});
  INFO(demo.out << "\n" << demo.err);
  REQUIRE(demo.exit_code == 0);
  CHECK(demo.out.find("verdict attested: declared ") != std::string::npos);
  CHECK(demo.out.find("verdict drifted") != std::string::npos);
  CHECK(demo.out.find("capabilities.effective: escalation, severity critical") !=
        std::string::npos);
  CHECK(demo.out.find("CAP_SYS_ADMIN") != std::string::npos);
  // The declared and the observed hash were the same while attested.
  std::smatch m;
  REQUIRE(std::regex_search(demo.out, m,
                            std::regex("declared ([0-9a-f]{64})\\s+observed ([0-9a-f]{64})")));
  CHECK(m[1].str() == m[2].str());
  // Nothing left: no container, no work directory.
  CHECK_FALSE(fs::exists(work_dir_of(demo.out)));
  CHECK(run_command({"runc", "state", container_of(demo.out)}).exit_code != 0);
}

TEST_CASE("demo: --keep leaves an evidence log that verifies offline",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto demo = run_driftwatch({"demo", "--keep"});
  INFO(demo.out << "\n" << demo.err);
  REQUIRE(demo.exit_code == 0);
  const fs::path dir = work_dir_of(demo.out);
  struct Remove {
    fs::path dir;
    ~Remove() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } remove{dir};
  REQUIRE(fs::exists(dir / "state" / "evidence"));
  CHECK(run_command({"runc", "state", container_of(demo.out)}).exit_code != 0);
  auto verify = run_driftwatch({"verify", "--log", (dir / "state" / "evidence").string(), "--key",
                                (dir / "state" / "node.vkey").string()});
  INFO(verify.out << verify.err);
  CHECK(verify.exit_code == 0);
  // The report of the demo's launch names the drift.
  auto report = run_driftwatch({"report", "--log", (dir / "state" / "evidence").string(), "--key",
                                (dir / "state" / "node.vkey").string()});
  INFO(report.err);
  REQUIRE(report.exit_code == 0);
  CHECK(report.out.find("capabilities.effective") != std::string::npos);
}

TEST_CASE("demo: without root it says so and changes nothing", "[integration]") {
  if (::geteuid() == 0) {
    // As root: run it as nobody through setpriv (util-linux), when present.
    if (run_command({"sh", "-c", "command -v setpriv"}).exit_code != 0)
      DW_SKIP("no setpriv to run the demo unprivileged");
    auto demo = run_command(
        {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", DRIFTWATCH_BINARY, "demo"});
    CHECK(demo.exit_code == 2);
    CHECK(demo.err.find("needs root") != std::string::npos);
    CHECK(demo.out.empty());
  } else {
    auto demo = run_driftwatch({"demo"});
    CHECK(demo.exit_code == 2);
    CHECK(demo.err.find("needs root") != std::string::npos);
  }
}
