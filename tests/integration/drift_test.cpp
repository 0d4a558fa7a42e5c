// Injected drifts on real containers are found on the right field, as
// escalations: a raised limit, an exec'd process with an added capability, a
// host process moved into the container's cgroups, a member that creates
// its own user namespace.

#include <fstream>

#include <catch2/catch.hpp>

#include "integration/cli.hpp"
#include "observe/proc_reader.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using nlohmann::json;

namespace {

json diff_of(const OciBundle& bundle, const Container& container) {
  return driftwatch_json(
      {"diff", "--oci-config", bundle.config_path().string(), "--oci", container.id()}, 1);
}

void require_escalation(const json& diff, const std::string& field) {
  INFO("diff: " << diff.dump());
  auto found = findings_on(diff, field);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["direction"] == "escalation");
  CHECK(diff["verdict"] == "drifted");
  CHECK(diff["declared_sha256"] != diff["observed_sha256"]);
}

bool contains(const json& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

}  // namespace

TEST_CASE("drift: runc update raising memory and pids limits is an escalation of both",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  bundle.config()["linux"]["resources"] = {{"memory", {{"limit", 64 << 20}}},
                                           {"pids", {{"limit", 32}}}};
  bundle.write_config();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("update")));
  driftwatch_json({"diff", "--oci-config", bundle.config_path().string(), "--oci", container.id()},
                  0);

  value_or_throw(container.update({"--memory", "134217728", "--pids-limit", "100"}));
  auto diff = diff_of(bundle, container);
  require_escalation(diff, "resources.memory_max");
  require_escalation(diff, "resources.pids_max");
  CHECK(findings_on(diff, "resources.memory_max")[0]["observed"] == 134217728);
  CHECK(findings_on(diff, "resources.pids_max")[0]["observed"] == 100);
}

TEST_CASE("drift: runc exec --cap CAP_SYS_ADMIN is a capabilities escalation",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("cap")));
  value_or_throw(container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  auto diff = diff_of(bundle, container);
  require_escalation(diff, "capabilities.effective");
  auto finding = findings_on(diff, "capabilities.effective")[0];
  CHECK(contains(finding["observed"], "CAP_SYS_ADMIN"));
  CHECK_FALSE(contains(finding["declared"], "CAP_SYS_ADMIN"));
  CHECK_FALSE(finding.contains("namespaced"));
  CHECK(finding["severity"] == "critical");
  CHECK(contains(finding["controls"], "AC-6"));
}

TEST_CASE("drift: a host process moved into the container's cgroups is a member and escalates",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("cgmove")));
  auto intruder = ChildProcess::start({"sleep", "3600"});

  // Move the host process into every cgroup hierarchy the container's init
  // is in, the way an attacker with cgroupfs access would.
  driftwatch::observe::ProcReader proc("/proc");
  auto membership = proc.cgroup(container.init_pid());
  REQUIRE(membership);
  int moved = 0;
  auto move_into = [&](const std::string& dir) {
    std::ofstream procs(dir + "/cgroup.procs");
    procs << intruder.pid() << "\n";
    procs.flush();
    if (procs.good()) ++moved;
  };
  std::string unified = std::filesystem::exists("/sys/fs/cgroup/unified/cgroup.controllers")
                            ? "/sys/fs/cgroup/unified"
                            : "/sys/fs/cgroup";
  if (membership->unified) move_into(unified + *membership->unified);
  for (const auto& [controller, path] : membership->v1) {
    std::string name = controller.starts_with("name=") ? controller.substr(5) : controller;
    auto comma = name.find(',');
    if (comma != std::string::npos) name = name.substr(0, comma);
    move_into("/sys/fs/cgroup/" + name + path);
  }
  REQUIRE(moved > 0);

  auto diff = diff_of(bundle, container);
  require_escalation(diff, "capabilities.effective");
  auto effective = findings_on(diff, "capabilities.effective")[0];
  CHECK(contains(effective["observed"], "CAP_SYS_ADMIN"));
  // The intruder shares the host's network namespace, the container does not.
  auto network = findings_on(diff, "namespaces.network");
  REQUIRE(network.size() == 1);
  CHECK(network[0]["observed"] == "mixed");
  CHECK(network[0]["direction"] == "escalation");
}

TEST_CASE("drift: a member that unshares a user namespace escalates, marked namespaced",
          "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("userns")));
  // A new user namespace comes with a full bounding set (and, for its
  // creator, full capabilities inside it until it execs as a non-root uid).
  value_or_throw(container.exec({"unshare", "-U", "sleep", "3600"}));
  auto diff = diff_of(bundle, container);
  require_escalation(diff, "capabilities.bounding");
  auto finding = findings_on(diff, "capabilities.bounding")[0];
  CHECK(finding["namespaced"] == true);
  CHECK(contains(finding["observed"], "CAP_SYS_ADMIN"));
  auto user = findings_on(diff, "namespaces.user");
  REQUIRE(user.size() == 1);
  CHECK(user[0]["observed"] == "mixed");
  CHECK(user[0]["direction"] == "change");
}
