#include "projection/observed.hpp"

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "observe/capabilities.hpp"
#include "support/observation_fixtures.hpp"

// The observed projection reduces a sandbox's members to one document, and
// the most privileged member decides each field (DESIGN.md "The projection"):
// union of capability sets, no_new_privileges false if any member lacks it,
// the weakest seccomp mode, uid 0 if any member has euid 0, namespaces
// host/private/mixed against the host's, the loosest limit.

using namespace driftwatch;
using driftwatch::testing::kHostNamespaces;
using driftwatch::testing::ok;
using projection::MemberObservation;
using projection::MountView;
using projection::Observation;

namespace {

uint64_t caps(std::initializer_list<const char*> names) {
  uint64_t mask = 0;
  for (const char* name : names) {
    auto number = observe::capability_bit(name);
    REQUIRE(number.has_value());
    mask |= uint64_t{1} << *number;
  }
  return mask;
}

// A confined member: uid 1000, no capabilities, NNP, seccomp filter, every
// namespace but user and time private, limited.
MemberObservation confined(pid_t pid) {
  MemberObservation m;
  m.pid = pid;
  m.start_time_ticks = 1000 + static_cast<uint64_t>(pid);
  for (int i = 0; i < 4; ++i) m.status.uid[i] = m.status.gid[i] = 1000;
  m.status.no_new_privs = true;
  m.status.seccomp = 2;  // filter
  m.namespaces = kHostNamespaces;
  for (const char* kind : {"cgroup", "ipc", "mnt", "net", "pid", "uts"}) m.namespaces[kind] += 1000;
  m.cgroup_limits = {134217728, 64, "50000 100000"};
  m.rlimits = {{"RLIMIT_NOFILE", 1024, 1024}, {"RLIMIT_NPROC", 64, 64}};
  m.lsm_label = "driftwatch-agent (enforce)";
  return m;
}

Observation observation(std::vector<MemberObservation> members) {
  Observation obs;
  obs.sandbox_id = "agent-7";
  obs.runtime = "runc";
  obs.members = std::move(members);
  obs.host_namespaces = kHostNamespaces;
  MountView view;
  view.mount_namespace = kHostNamespaces.at("mnt") + 1000;
  view.seen_through = obs.members.empty() ? 0 : obs.members.front().pid;
  view.root_readonly = true;
  view.masked = {"/proc/kcore"};
  view.readonly = {"/proc/sys"};
  obs.mount_views.push_back(view);
  return obs;
}

projection::Projection project(const Observation& obs,
                               const projection::ObservationScope& scope = {}) {
  return ok(projection::observed_projection(obs, scope));
}

}  // namespace

TEST_CASE("observed projection: one confined member is projected as it is", "[projection]") {
  const auto p = project(observation({confined(10)}));
  CHECK(p.uid == 1000);
  CHECK(p.gid == 1000);
  CHECK(p.capabilities == projection::CapabilitySets{});
  CHECK(p.no_new_privileges);
  CHECK(p.seccomp == "filter");
  CHECK(p.namespaces.at("network") == "private");
  CHECK(p.namespaces.at("user") == "host");
  CHECK(p.memory_max == 134217728);
  CHECK(p.pids_max == 64);
  CHECK(p.cpu_max == "50000 100000");
  CHECK(p.rlimits.at("RLIMIT_NOFILE") == projection::RlimitPair{1024, 1024});
  CHECK(p.lsm_label == "driftwatch-agent (enforce)");
  CHECK(p.root_readonly);
  CHECK(p.masked_paths == std::set<std::string>{"/proc/kcore"});
  CHECK(p.readonly_paths == std::set<std::string>{"/proc/sys"});
}

TEST_CASE("observed projection: an observation without members is an error", "[projection]") {
  auto p = projection::observed_projection(observation({}), {});
  REQUIRE_FALSE(p.has_value());
  CHECK_THAT(p.error().message, Catch::Contains("agent-7"));
}

TEST_CASE("observed projection: each capability set is the union over members", "[projection]") {
  auto a = confined(10), b = confined(11);
  a.status.cap_effective = caps({"CAP_KILL"});
  b.status.cap_effective = caps({"CAP_SYS_ADMIN"});
  a.status.cap_permitted = caps({"CAP_KILL", "CAP_CHOWN"});
  b.status.cap_permitted = caps({"CAP_SYS_ADMIN"});
  a.status.cap_bounding = caps({"CAP_KILL", "CAP_CHOWN"});
  b.status.cap_bounding = caps({"CAP_SYS_ADMIN", "CAP_NET_RAW"});
  a.status.cap_inheritable = caps({"CAP_CHOWN"});
  b.status.cap_inheritable = caps({"CAP_NET_RAW"});
  a.status.cap_ambient = 0;
  b.status.cap_ambient = caps({"CAP_NET_BIND_SERVICE"});
  const auto p = project(observation({a, b}));
  CHECK(p.capabilities.effective == caps({"CAP_KILL", "CAP_SYS_ADMIN"}));
  CHECK(p.capabilities.permitted == caps({"CAP_KILL", "CAP_CHOWN", "CAP_SYS_ADMIN"}));
  CHECK(p.capabilities.bounding == caps({"CAP_KILL", "CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_RAW"}));
  CHECK(p.capabilities.inheritable == caps({"CAP_CHOWN", "CAP_NET_RAW"}));
  CHECK(p.capabilities.ambient == caps({"CAP_NET_BIND_SERVICE"}));
  // The order of members does not matter.
  CHECK(project(observation({b, a})).capabilities == p.capabilities);
}

TEST_CASE("observed projection: no_new_privileges is false if any member lacks it",
          "[projection]") {
  auto a = confined(10), b = confined(11), c = confined(12);
  CHECK(project(observation({a, b, c})).no_new_privileges);
  b.status.no_new_privs = false;
  CHECK_FALSE(project(observation({a, b, c})).no_new_privileges);
  CHECK_FALSE(project(observation({b, a, c})).no_new_privileges);
  CHECK_FALSE(project(observation({a, c, b})).no_new_privileges);
}

TEST_CASE("observed projection: the weakest seccomp mode of any member counts", "[projection]") {
  // /proc/PID/status numbers them 0 disabled, 1 strict, 2 filter; strength
  // is disabled < filter < strict.
  const auto with_modes = [](std::vector<int> modes) {
    std::vector<MemberObservation> members;
    for (size_t i = 0; i < modes.size(); ++i) {
      members.push_back(confined(static_cast<pid_t>(10 + i)));
      members.back().status.seccomp = modes[i];
    }
    return project(observation(members)).seccomp;
  };
  CHECK(with_modes({1}) == "strict");
  CHECK(with_modes({2}) == "filter");
  CHECK(with_modes({0}) == "disabled");
  CHECK(with_modes({1, 2}) == "filter");
  CHECK(with_modes({2, 1}) == "filter");
  CHECK(with_modes({1, 1, 2}) == "filter");
  CHECK(with_modes({2, 0}) == "disabled");
  CHECK(with_modes({0, 2}) == "disabled");
  CHECK(with_modes({1, 0, 1}) == "disabled");
}

TEST_CASE("observed projection: uid 0 if any member has euid 0, else the lowest euid",
          "[projection]") {
  auto a = confined(10), b = confined(11);
  b.status.uid[1] = 2000;
  b.status.gid[1] = 2000;
  CHECK(project(observation({a, b})).uid == 1000);
  CHECK(project(observation({b, a})).uid == 1000);

  SECTION("an effective uid of 0 in any member decides") {
    b.status.uid[1] = 0;
    b.status.gid[1] = 0;
    CHECK(project(observation({a, b})).uid == 0);
    CHECK(project(observation({a, b})).gid == 0);
    CHECK(project(observation({b, a})).uid == 0);
  }
  SECTION("the effective uid counts, not the real or saved one") {
    // A setuid-style member: real and saved uid 0, effective 1000.
    b.status.uid[0] = 0;
    b.status.uid[1] = 1000;
    b.status.uid[2] = 0;
    CHECK(project(observation({a, b})).uid == 1000);
  }
}

TEST_CASE("observed projection: a namespace is private, host, or mixed when members disagree",
          "[projection]") {
  auto a = confined(10), b = confined(11);
  SECTION("all private, all host") {
    const auto p = project(observation({a, b}));
    CHECK(p.namespaces == std::map<std::string, std::string>{{"cgroup", "private"},
                                                             {"ipc", "private"},
                                                             {"mount", "private"},
                                                             {"network", "private"},
                                                             {"pid", "private"},
                                                             {"time", "host"},
                                                             {"user", "host"},
                                                             {"uts", "private"}});
  }
  SECTION("one member on the host's network namespace makes it mixed") {
    b.namespaces["net"] = kHostNamespaces.at("net");
    CHECK(project(observation({a, b})).namespaces.at("network") == "mixed");
    CHECK(project(observation({b, a})).namespaces.at("network") == "mixed");
    CHECK(project(observation({b})).namespaces.at("network") == "host");
  }
  SECTION("two different private namespaces are still private") {
    b.namespaces["net"] += 7;
    CHECK(project(observation({a, b})).namespaces.at("network") == "private");
  }
  SECTION("a kernel without a namespace kind has every process in the host's") {
    a.namespaces.erase("time");
    b.namespaces.erase("time");
    CHECK(project(observation({a, b})).namespaces.at("time") == "host");
  }
}

TEST_CASE("observed projection: the loosest resource limit of any member counts", "[projection]") {
  auto a = confined(10), b = confined(11);
  b.cgroup_limits = {268435456, 32, "100000 100000"};
  auto p = project(observation({a, b}));
  CHECK(p.memory_max == 268435456);
  CHECK(p.pids_max == 64);
  CHECK(p.cpu_max == "100000 100000");
  // Unlimited (null) in one member is unlimited for the sandbox.
  b.cgroup_limits = {std::nullopt, std::nullopt, std::nullopt};
  p = project(observation({a, b}));
  CHECK_FALSE(p.memory_max.has_value());
  CHECK_FALSE(p.pids_max.has_value());
  CHECK_FALSE(p.cpu_max.has_value());
}

TEST_CASE("observed projection: rlimits are the loosest, and only those in scope", "[projection]") {
  auto a = confined(10), b = confined(11);
  b.rlimits = {{"RLIMIT_NOFILE", 4096, std::nullopt}, {"RLIMIT_NPROC", 32, 32}};
  projection::ObservationScope scope;
  scope.rlimits = std::set<std::string>{"RLIMIT_NOFILE"};
  const auto p = project(observation({a, b}), scope);
  CHECK(p.rlimits ==
        std::map<std::string, projection::RlimitPair>{{"RLIMIT_NOFILE", {4096, std::nullopt}}});
  // No scope: every rlimit.
  CHECK(project(observation({a, b})).rlimits.size() == 2);
}

TEST_CASE("observed projection: an unconfined member decides the LSM label", "[projection]") {
  auto a = confined(10), b = confined(11);
  b.lsm_label = std::nullopt;
  CHECK_FALSE(project(observation({a, b})).lsm_label.has_value());
  CHECK_FALSE(project(observation({b, a})).lsm_label.has_value());
}

TEST_CASE("observed projection: a path is masked or read-only only if it is in every mount view",
          "[projection]") {
  auto obs = observation({confined(10), confined(11)});
  MountView second = obs.mount_views.front();
  second.mount_namespace += 1;
  second.seen_through = 11;
  // /proc/keys is masked in both views, /proc/timer_list in one only.
  second.masked = {"/proc/kcore", "/proc/keys", "/proc/timer_list"};
  second.readonly = {};
  second.root_readonly = false;
  obs.mount_views.front().masked.insert("/proc/keys");
  obs.mount_views.push_back(second);
  const auto p = project(obs);
  CHECK(p.masked_paths == std::set<std::string>{"/proc/kcore", "/proc/keys"});
  CHECK(p.readonly_paths.empty());
  CHECK_FALSE(p.root_readonly);

  SECTION("a masked path is never also listed read-only") {
    for (auto& view : obs.mount_views) view.readonly = {"/proc/kcore", "/proc/sys"};
    const auto q = project(obs);
    CHECK(q.masked_paths.contains("/proc/kcore"));
    CHECK(q.readonly_paths == std::set<std::string>{"/proc/sys"});
  }

  SECTION("no mount view at all: the root is not known to be read-only") {
    obs.mount_views.clear();
    CHECK_FALSE(project(obs).root_readonly);
  }
}

TEST_CASE(
    "observed projection: capabilities held only inside a member's own user namespace are "
    "told apart",
    "[projection]") {
  auto outer = confined(10), nested = confined(11);
  outer.status.cap_effective = caps({"CAP_KILL"});
  nested.status.cap_effective = caps({"CAP_KILL", "CAP_SYS_ADMIN"});
  nested.nested_user_namespace = true;
  const auto obs = observation({outer, nested});
  // They count in the projection (they are real inside the namespace) …
  CHECK(project(obs).capabilities.effective == caps({"CAP_KILL", "CAP_SYS_ADMIN"}));
  // … and are the ones a finding marks "namespaced".
  CHECK(projection::nested_namespace_capabilities(obs).effective == caps({"CAP_SYS_ADMIN"}));
}
