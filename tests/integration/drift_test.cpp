// Injected drifts on real containers are found on the right field, as
// escalations: a raised limit, an exec'd process with an added capability, a
// host process moved into the container's cgroups, a member that creates
// its own user namespace.

#include <chrono>
#include <fstream>
#include <thread>

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

namespace {

// Waits until `pid`'s /proc/PID/<file> has a line starting with `prefix`
// (up to 5 s); fails the test otherwise.
void wait_for_proc_line(pid_t pid, const std::string& file, const std::string& prefix) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string seen;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/" + file);
    for (std::string line; std::getline(in, line);) {
      if (line.starts_with(prefix)) return;
      seen += line + "\n";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  INFO("/proc/" << pid << "/" << file << ":\n" << seen);
  FAIL("no line starting with '" << prefix << "'");
}

// A default-spec runc sandbox with the attempt helper in it.
OciBundle bundle_with_helper() {
  auto bundle = OciBundle::with_default_spec();
  bundle.add_program(DRIFTWATCH_ATTEMPT_HELPER, "attempt");
  return bundle;
}

}  // namespace

TEST_CASE(
    "drift: a thread that keeps CAP_SYS_ADMIN while its main thread drops it is an escalation "
    "all the same",
    "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto bundle = bundle_with_helper();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("threadcaps")));
  // The exec'd process gets CAP_SYS_ADMIN and CAP_SETPCAP; a second thread
  // keeps both, the main thread drops them from every set (21, 8), so the
  // process's own /proc/PID/status reads as the declared capabilities.
  const pid_t pid =
      value_or_throw(container.exec({"/bin/attempt", "hold-thread", "drop:21,8", "sleep:3600"},
                                    {"--cap", "CAP_SYS_ADMIN", "--cap", "CAP_SETPCAP"}));
  wait_for_proc_line(pid, "status", "CapBnd:\t00000000200004");  // AUDIT_WRITE, KILL, NET_BIND
  wait_for_proc_line(pid, "status", "Threads:\t2");
  auto diff = diff_of(bundle, container);
  require_escalation(diff, "capabilities.effective");
  auto finding = findings_on(diff, "capabilities.effective")[0];
  CHECK(contains(finding["observed"], "CAP_SYS_ADMIN"));
  CHECK(contains(finding["observed"], "CAP_SETPCAP"));
  require_escalation(diff, "capabilities.bounding");
}

TEST_CASE(
    "drift: a process whose main thread exited is seen through its other threads: an escalation "
    "there is found, and none is made up",
    "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto bundle = bundle_with_helper();
  bundle.config()["linux"]["resources"]["memory"] = {{"limit", 64 << 20}};
  bundle.config()["linux"]["resources"]["pids"] = {{"limit", 32}};
  bundle.write_config();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("leaderexit")));

  // Without added capabilities: its leader a zombie (whose cgroups read "/"
  // on a v1 hierarchy, and whose namespaces cannot be read), its thread
  // still in the sandbox's cgroups: attested.
  const pid_t plain =
      value_or_throw(container.exec({"/bin/attempt", "hold-thread", "leader-exit"}));
  wait_for_proc_line(plain, "status", "State:\tZ");
  auto quiet = driftwatch_json(
      {"diff", "--oci-config", bundle.config_path().string(), "--oci", container.id()}, 0);
  CHECK(quiet["verdict"] == "attested");

  // With CAP_SYS_ADMIN, held by the thread that runs on.
  const pid_t escalated = value_or_throw(
      container.exec({"/bin/attempt", "hold-thread", "leader-exit"}, {"--cap", "CAP_SYS_ADMIN"}));
  wait_for_proc_line(escalated, "status", "State:\tZ");
  auto diff = diff_of(bundle, container);
  require_escalation(diff, "capabilities.effective");
  CHECK(contains(findings_on(diff, "capabilities.effective")[0]["observed"], "CAP_SYS_ADMIN"));
  CHECK(findings_on(diff, "resources.memory_max").empty());
}

TEST_CASE(
    "drift: a sandbox whose init's main thread exited (runc calls it stopped) is still sampled "
    "through the thread that runs on",
    "[root][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto bundle = bundle_with_helper();
  // Launched with CAP_SYS_ADMIN in every set; its main thread exits after a
  // second, a thread holding the capabilities runs on.
  bundle.config()["process"]["args"] = {"/bin/attempt", "hold-thread", "sleep:1", "leader-exit"};
  for (auto& [set, caps] : bundle.config()["process"]["capabilities"].items())
    caps.push_back("CAP_SYS_ADMIN");
  bundle.config()["linux"]["resources"]["memory"] = {{"limit", 64 << 20}};
  bundle.write_config();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("initexit")));
  wait_for_proc_line(container.init_pid(), "status", "State:\tZ");
  wait_for_proc_line(container.init_pid(), "status", "Threads:\t2");

  // Against the config it was launched with: attested, not gone.
  auto same = driftwatch_json(
      {"diff", "--oci-config", bundle.config_path().string(), "--oci", container.id()}, 0);
  CHECK(same["verdict"] == "attested");
  // Against one without CAP_SYS_ADMIN: the thread's capabilities count.
  json declared = bundle.config();
  for (auto& [set, caps] : declared["process"]["capabilities"].items())
    caps.erase(std::remove(caps.begin(), caps.end(), "CAP_SYS_ADMIN"), caps.end());
  const auto declared_path = bundle.config_path().parent_path() / "declared.json";
  std::ofstream(declared_path) << declared.dump();
  auto diff =
      driftwatch_json({"diff", "--oci-config", declared_path.string(), "--oci", container.id()}, 1);
  require_escalation(diff, "capabilities.effective");
  CHECK(contains(findings_on(diff, "capabilities.effective")[0]["observed"], "CAP_SYS_ADMIN"));
}
