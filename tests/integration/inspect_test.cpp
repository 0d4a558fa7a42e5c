// `driftwatch inspect` on real sandboxes: an OCI container by id and by
// cgroup, every container on the node, and a bubblewrap sandbox by PID.

#include <thread>

#include <catch2/catch.hpp>

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"
#include "integration/cli.hpp"
#include "observe/proc_reader.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;

TEST_CASE("inspect: the printed hash is the SHA-256 of the projection's canonical JSON",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("inspect")));
  auto doc = driftwatch_json({"inspect", "--oci", container.id()}, 0);
  auto canonical = driftwatch::canonical_json(doc["projection"]);
  REQUIRE(canonical);
  CHECK(doc["observed_sha256"] == driftwatch::sha256_hex(*canonical));
  CHECK(doc["projection"]["schema"] == "driftwatch.projection/v1");
  CHECK(doc["sandbox_id"] == container.id());
  CHECK(doc["runtime"] == "runc");
  CHECK(doc["engine"] == "runc");
  CHECK(doc["names"] == json::array());
  REQUIRE(doc["members"].size() == 1);
  CHECK(doc["members"][0]["pid"] == container.init_pid());
  CHECK(doc["members"][0]["argv"] == json({"sleep", "3600"}));
}

TEST_CASE("inspect: a container sampled by its cgroup has the same projection as by its id",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("bycg")));
  driftwatch::observe::ProcReader proc("/proc");
  auto membership = proc.cgroup(container.init_pid());
  REQUIRE(membership);
  auto memory = membership->v1_path("memory");
  std::string cgroup_dir = memory ? "/sys/fs/cgroup/memory" + *memory
                                  : "/sys/fs/cgroup" + membership->unified.value_or("/");
  auto by_id = driftwatch_json({"inspect", "--oci", container.id()}, 0);
  auto by_cgroup = driftwatch_json({"inspect", "--cgroup", cgroup_dir}, 0);
  CHECK(by_cgroup["runtime"] == "cgroup");
  CHECK(by_cgroup["engine"] == "cgroup");
  CHECK(by_cgroup["projection"] == by_id["projection"]);
  CHECK(by_cgroup["observed_sha256"] == by_id["observed_sha256"]);
}

TEST_CASE("inspect: without a selector every running container is listed, one line each",
          "[root][runc][crun][integration]") {
  if (auto why = missing_requirement({"root", "runc", "crun", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto a = value_or_throw(Container::start("runc", bundle, unique_container_id("all-runc")));
  auto b = value_or_throw(Container::start("crun", bundle, unique_container_id("all-crun")));
  auto result = run_driftwatch({"inspect"});
  REQUIRE(result.exit_code == 0);
  std::map<std::string, std::string> runtimes;
  std::istringstream lines(result.out);
  for (std::string line; std::getline(lines, line);) {
    auto doc = json::parse(line, nullptr, false);
    REQUIRE_FALSE(doc.is_discarded());
    runtimes[doc["sandbox_id"]] = doc["runtime"];
  }
  CHECK(runtimes[a.id()] == "runc");
  CHECK(runtimes[b.id()] == "crun");
}

TEST_CASE("inspect: a bubblewrap sandbox is inspected by PID with its whole tree",
          "[root][bwrap][integration]") {
  if (auto why = missing_requirement({"root", "bwrap"})) {
    DW_SKIP(*why);
  }
  auto bwrap = ChildProcess::start({"bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/",
                                    "/", "--proc", "/proc", "--dev", "/dev", "--cap-drop", "ALL",
                                    "sleep", "3600"});
  // Wait until bwrap has set up the sandbox and exec'd sleep inside it.
  json doc;
  for (int i = 0; i < 100; ++i) {
    auto result = run_driftwatch({"inspect", "--pid", std::to_string(bwrap.pid())});
    REQUIRE(result.exit_code == 0);
    doc = json::parse(result.out);
    bool has_sleep = false;
    for (const auto& m : doc["members"])
      if (!m["argv"].empty() && m["argv"][0] == "sleep") has_sleep = true;
    if (has_sleep) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO(doc.dump());
  REQUIRE(doc["members"].size() >= 2);
  CHECK(doc["runtime"] == "process");
  CHECK(doc["engine"] == "process");
  // The outer bwrap stays in the host's namespaces, the sandboxed tree does not.
  CHECK(doc["projection"]["namespaces"]["network"] == "mixed");
  CHECK(doc["projection"]["namespaces"]["pid"] == "mixed");
  bool sleep_found = false;
  for (const auto& m : doc["members"]) {
    if (m["argv"].empty() || m["argv"][0] != "sleep") continue;
    sleep_found = true;
    CHECK(m["cap_effective"] == json::array());  // --cap-drop ALL
  }
  CHECK(sleep_found);
}
