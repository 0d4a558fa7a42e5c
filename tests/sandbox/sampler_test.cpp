#include "sandbox/sampler.hpp"

#include <sys/types.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "support/observation_fixtures.hpp"
#include "support/temp_dir.hpp"

// The sampler on fixture trees: a /proc and a cgroupfs (v2) written into a
// temporary directory, so that membership, the per-member reads, the
// vanished-member rule and the path checks are exercised without root. The
// real thing (runc, crun, bwrap on the real /proc) is in tests/integration/.

using namespace driftwatch;
using driftwatch::testing::kHostNamespaces;
using driftwatch::testing::ok;
using driftwatch::testing::TempDir;
namespace fs = std::filesystem;

namespace {

std::map<std::string, uint64_t> sandbox_namespaces() {
  auto ns = kHostNamespaces;
  // runc's default spec: every namespace private but user and time.
  for (const char* kind : {"cgroup", "ipc", "mnt", "net", "pid", "uts"}) ns[kind] += 1000;
  return ns;
}

struct FakeProcess {
  pid_t pid = 0;
  pid_t ppid = 1;
  uint64_t start_time = 1000;
  uint32_t euid = 0;
  uint64_t cap_effective = 0;
  bool no_new_privs = false;
  int seccomp = 0;
  std::map<std::string, uint64_t> namespaces = kHostNamespaces;
  std::string cgroup = "/user.slice";  // v2 path
  std::vector<pid_t> children;         // task/<pid>/children
  std::string comm = "sleep";
  uint32_t flags = 4194560;  // stat field 9: PF_RANDOMIZE | PF_FORKNOEXEC
  char state = 'S';
  int threads = 1;  // status "Threads:"
  pid_t tgid = 0;   // a thread's process (0: its own pid)
};

std::string hex(uint64_t value) {
  char buffer[17];
  std::snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(value));
  return buffer;
}

// A host: /proc with PID 1 and whatever is added, and a unified cgroupfs.
class FixtureHost {
 public:
  FixtureHost() {
    FakeProcess init;
    init.pid = 1;
    init.ppid = 0;
    init.start_time = 1;
    init.cgroup = "/init.scope";
    init.cap_effective = 0x1ffffffffff;
    init.comm = "systemd";
    add(init);
    cgroup("/init.scope", {1});
  }

  void add(const FakeProcess& p) const { add(p, fs::path("proc") / std::to_string(p.pid)); }
  void add(const FakeProcess& p, const fs::path& dir) const {
    dir_.write(dir / "stat", std::to_string(p.pid) + " (" + p.comm + ") " + p.state + " " +
                                 std::to_string(p.ppid) + " 1 1 0 -1 " + std::to_string(p.flags) +
                                 " 100 0 0 0 0 0 0 0 20 0 1 0 " + std::to_string(p.start_time) +
                                 " 2252800 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 "
                                 "0 0 0 0 0 0 0 0 0 0 0 0 0\n");
    const std::string uid = std::to_string(p.euid);
    dir_.write(dir / "status",
               "Name:\t" + p.comm + "\nTgid:\t" + std::to_string(p.tgid ? p.tgid : p.pid) +
                   "\nThreads:\t" + std::to_string(p.threads) + "\nPPid:\t" +
                   std::to_string(p.ppid) + "\nUid:\t" + uid + "\t" + uid + "\t" + uid + "\t" +
                   uid + "\nGid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid +
                   "\nGroups:\t\nNSpid:\t" + std::to_string(p.pid) +
                   "\nCapInh:\t0000000000000000\nCapPrm:\t" + hex(p.cap_effective) + "\nCapEff:\t" +
                   hex(p.cap_effective) + "\nCapBnd:\t" + hex(p.cap_effective) +
                   "\nCapAmb:\t0000000000000000\nNoNewPrivs:\t" + (p.no_new_privs ? "1" : "0") +
                   "\nSeccomp:\t" + std::to_string(p.seccomp) + "\n");
    dir_.write(dir / "limits",
               "Limit                     Soft Limit           Hard Limit           Units     \n"
               "Max open files            1024                 4096                 files     \n"
               "Max processes             unlimited            unlimited            processes \n");
    dir_.write(dir / "cgroup", "0::" + p.cgroup + "\n");
    dir_.write(dir / "cmdline", p.comm + std::string("\0"
                                                     "100000"
                                                     "\0",
                                                     8));
    dir_.symlink(dir / "exe", "/usr/bin/" + p.comm);
    for (const auto& [kind, inode] : p.namespaces)
      dir_.symlink(dir / "ns" / kind, kind + ":[" + std::to_string(inode) + "]");
    std::string children;
    for (pid_t child : p.children) children += std::to_string(child) + " ";
    dir_.write(dir / "task" / std::to_string(p.pid) / "children", children);
    dir_.mkdir(dir / "root");
  }

  // A thread `t` of process `t.tgid`, as the kernel shows it: under
  // /proc/TGID/task/TID/ (and at /proc/TID/, which is not listed: left out).
  void add_thread(const FakeProcess& t) const {
    add(t, fs::path("proc") / std::to_string(t.tgid) / "task" / std::to_string(t.pid));
  }

  void cgroup(const std::string& path, const std::vector<pid_t>& pids,
              const std::string& memory_max = "max", const std::string& pids_max = "max",
              const std::string& cpu_max = "max 100000") const {
    const fs::path dir = fs::path("cgroup") / path.substr(1);
    std::string procs;
    for (pid_t pid : pids) procs += std::to_string(pid) + "\n";
    dir_.write(dir / "cgroup.procs", procs);
    dir_.write(dir / "memory.max", memory_max + "\n");
    dir_.write(dir / "pids.max", pids_max + "\n");
    dir_.write(dir / "cpu.max", cpu_max + "\n");
  }

  // The root a member's path checks go through (/proc/PID/root).
  fs::path root_of(pid_t pid) const { return dir_ / "proc" / std::to_string(pid) / "root"; }
  const TempDir& dir() const { return dir_; }

  // A v1 hierarchy's cgroup (hybrid and legacy hosts): cgroup/<controller>/<path>.
  void v1_cgroup(const std::string& controller, const std::string& path,
                 const std::vector<pid_t>& pids) const {
    std::string procs;
    for (pid_t pid : pids) procs += std::to_string(pid) + "\n";
    dir_.write(fs::path("cgroup") / controller / path.substr(1) / "cgroup.procs", procs);
  }

  sandbox::Sampler sampler(observe::CgroupLayout layout = observe::CgroupLayout::unified) const {
    return sandbox::Sampler(observe::ProcReader(dir_ / "proc"),
                            observe::CgroupReader(dir_ / "cgroup", layout));
  }

 private:
  TempDir dir_{"sampler-test"};
};

sandbox::SandboxRef runc_sandbox(pid_t first, uint64_t start_time, const std::string& cgroup) {
  sandbox::SandboxRef ref;
  ref.sandbox_id = "agent-7";
  ref.runtime = "runc";
  ref.first_process = {first, start_time};
  ref.membership = sandbox::Membership::cgroup;
  ref.cgroups.unified = cgroup;
  return ref;
}

// The runc container of most tests: init 100 and a second process 101 in
// cgroup /sandbox with private namespaces; 300 entered its PID namespace
// from the host (nsenter) without moving cgroup; 200 is an unrelated host
// process.
void add_runc_container(const FixtureHost& host) {
  FakeProcess init{.pid = 100,
                   .start_time = 5000,
                   .euid = 0,
                   .cap_effective = 0x20000420,
                   .no_new_privs = true,
                   .seccomp = 2,
                   .namespaces = sandbox_namespaces(),
                   .cgroup = "/sandbox"};
  FakeProcess second = init;
  second.pid = 101;
  second.ppid = 100;
  second.start_time = 5100;
  second.euid = 1000;
  second.cap_effective = 0;
  FakeProcess entered = init;
  entered.pid = 300;
  entered.ppid = 250;
  entered.start_time = 9000;
  entered.cgroup = "/user.slice";
  entered.cap_effective = 0x200000;  // CAP_SYS_ADMIN
  FakeProcess unrelated{.pid = 200, .start_time = 700, .euid = 0, .cap_effective = 0x1ffffffffff};
  for (const auto& p : {init, second, entered, unrelated}) host.add(p);
  host.cgroup("/sandbox", {100, 101}, "134217728", "64", "50000 100000");
  host.cgroup("/user.slice", {200, 300});
}

}  // namespace

TEST_CASE("sampler: a runc sandbox's members are its cgroup's processes and its PID namespace's",
          "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  const auto sampler = host.sampler();
  const auto members = ok(sampler.members(runc_sandbox(100, 5000, "/sandbox"), nullptr));
  // 300 is in the sandbox's PID namespace but not its cgroup; 200 in neither.
  CHECK(members == std::vector<pid_t>{100, 101, 300});

  SECTION("a shared process table gives the same members") {
    const auto table = sandbox::ProcessTable::scan(sampler.proc());
    CHECK(table.by_pid_namespace.at(sandbox_namespaces().at("pid")) ==
          std::vector<pid_t>{100, 101, 300});
    CHECK(ok(sampler.members(runc_sandbox(100, 5000, "/sandbox"), &table)) == members);
  }
}

TEST_CASE("sampler: a cgroup the sandbox shares with PID 1 does not make host processes members",
          "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  host.cgroup("/init.scope", {1, 200});
  // A runtime that left the sandbox in PID 1's cgroup (the root, or
  // init.scope here) must not make every process there a member.
  const auto sampler = host.sampler();
  CHECK(ok(sampler.members(runc_sandbox(100, 5000, "/init.scope"), nullptr)) ==
        std::vector<pid_t>{100, 101, 300});
  CHECK(ok(sampler.members(runc_sandbox(100, 5000, "/"), nullptr)) ==
        std::vector<pid_t>{100, 101, 300});
}

TEST_CASE(
    "sampler: on a hybrid host, a v1 hierarchy where the sandbox stayed in PID 1's cgroup "
    "adds no members",
    "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  host.dir().write("proc/1/cgroup", "5:memory:/init.scope\n4:pids:/init.scope\n0::/init.scope\n");
  // The runtime moved the container into its own pids and v2 cgroups, but
  // left it in PID 1's memory cgroup, which holds host processes.
  host.v1_cgroup("memory", "/init.scope", {1, 200});
  host.v1_cgroup("pids", "/sandbox", {100, 101});
  host.v1_cgroup("unified", "/sandbox", {100, 101});
  auto ref = runc_sandbox(100, 5000, "/sandbox");
  ref.cgroups.v1 = {{"memory", "/init.scope"}, {"pids", "/sandbox"}};
  CHECK(ok(host.sampler(observe::CgroupLayout::hybrid).members(ref, nullptr)) ==
        std::vector<pid_t>{100, 101, 300});
}

TEST_CASE("sampler: a process sandbox's members are the process and its descendants", "[sandbox]") {
  FixtureHost host;
  // 500 on the host's namespaces, with a child 501 and a grandchild 502; 503
  // is its sibling, not its descendant.
  host.add({.pid = 500, .start_time = 100, .children = {501}});
  host.add({.pid = 501, .ppid = 500, .start_time = 101, .children = {502}});
  host.add({.pid = 502, .ppid = 501, .start_time = 102});
  host.add({.pid = 503, .start_time = 103});
  const auto sampler = host.sampler();
  sandbox::SandboxRef ref;
  ref.sandbox_id = "pid-500";
  ref.runtime = "process";
  ref.first_process = {500, 100};
  ref.membership = sandbox::Membership::descendants;
  // In the host's PID namespace, the namespace adds no one.
  CHECK(ok(sampler.members(ref, nullptr)) == std::vector<pid_t>{500, 501, 502});
}

TEST_CASE("sampler: a sample reads every member, with PID 1's namespaces as the host's",
          "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  const auto obs =
      ok(host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
  CHECK(obs.sandbox_id == "agent-7");
  CHECK(obs.runtime == "runc");
  CHECK(obs.host_namespaces == kHostNamespaces);
  CHECK(obs.vanished.empty());
  REQUIRE(obs.members.size() == 3);
  const auto& init = obs.members[0];
  CHECK(init.pid == 100);
  CHECK(init.start_time_ticks == 5000);
  CHECK(init.status.cap_effective == 0x20000420);
  CHECK(init.status.no_new_privs);
  CHECK(init.status.seccomp == 2);
  CHECK(init.namespaces == sandbox_namespaces());
  CHECK(init.cgroup_limits.memory_max == 134217728);
  CHECK(init.cgroup_limits.pids_max == 64);
  CHECK(init.cgroup_limits.cpu_max == "50000 100000");
  CHECK(init.argv == std::vector<std::string>{"sleep", "100000"});
  CHECK(init.exe == "/usr/bin/sleep");
  CHECK_FALSE(init.lsm_label.has_value());
  CHECK(obs.members[1].pid == 101);
  CHECK(obs.members[1].status.uid[1] == 1000);
  // The process that entered from the host is read with its own cgroup.
  CHECK(obs.members[2].pid == 300);
  CHECK(obs.members[2].status.cap_effective == 0x200000);
  CHECK_FALSE(obs.members[2].cgroup_limits.memory_max.has_value());

  SECTION("and the most privileged member decides the projection") {
    const auto p = ok(projection::observed_projection(obs, projection::default_scope()));
    CHECK(p.capabilities.effective == (0x20000420 | 0x200000));
    CHECK(p.uid == 0);
    CHECK(p.seccomp == "filter");
    CHECK(p.namespaces.at("network") == "private");
    CHECK(p.namespaces.at("user") == "host");
    CHECK_FALSE(p.memory_max.has_value());  // 300's cgroup has no limit
  }
}

TEST_CASE("sampler: a member that exits mid-sample is dropped whole, the others are sampled",
          "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  // 101 is still listed in cgroup.procs, but its /proc directory is gone.
  fs::remove_all(host.dir() / "proc" / "101");
  const auto obs =
      ok(host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
  CHECK(obs.vanished == std::vector<pid_t>{101});
  std::vector<pid_t> sampled;
  for (const auto& m : obs.members) sampled.push_back(m.pid);
  CHECK(sampled == std::vector<pid_t>{100, 300});
}

TEST_CASE("sampler: a member in exit() is sampled and marked exiting, the others are not",
          "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  // 101 as the kernel shows a task in exit(): PF_EXITING set, its cgroup
  // one without limits (on a v1 hierarchy it reads "/").
  fs::remove_all(host.dir() / "proc" / "101");
  host.add({.pid = 101,
            .ppid = 100,
            .start_time = 5100,
            .euid = 1000,
            .namespaces = sandbox_namespaces(),
            .cgroup = "/user.slice",
            .comm = "true",
            .flags = 4194560 | observe::kTaskExiting});
  const auto obs =
      ok(host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
  std::map<pid_t, bool> exiting_by_pid;
  for (const auto& m : obs.members) exiting_by_pid[m.pid] = m.exiting;
  CHECK(exiting_by_pid == std::map<pid_t, bool>{{100, false}, {101, true}, {300, false}});
}

TEST_CASE(
    "sampler: a thread holding other credentials than its leader is a member of its own, one "
    "holding the same is not",
    "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  // 101 (uid 1000, no capabilities) has two more threads: 150 as it is, 151
  // still holding CAP_SYS_ADMIN (its leader dropped it: capset is per thread).
  fs::remove_all(host.dir() / "proc" / "101");
  FakeProcess leader{.pid = 101,
                     .ppid = 100,
                     .start_time = 5100,
                     .euid = 1000,
                     .namespaces = sandbox_namespaces(),
                     .cgroup = "/sandbox",
                     .threads = 3};
  host.add(leader);
  FakeProcess same = leader;
  same.pid = 150;
  same.tgid = 101;
  same.start_time = 5101;
  FakeProcess holding = same;
  holding.pid = 151;
  holding.start_time = 5102;
  holding.cap_effective = 0x200000;
  host.add_thread(same);
  host.add_thread(holding);
  const auto obs =
      ok(host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
  std::map<pid_t, std::pair<int32_t, uint64_t>> members;  // pid: tgid, CapEff
  for (const auto& m : obs.members) members[m.pid] = {m.status.tgid, m.status.cap_effective};
  CHECK(members == std::map<pid_t, std::pair<int32_t, uint64_t>>{{100, {100, 0x20000420}},
                                                                 {101, {101, 0}},
                                                                 {151, {101, 0x200000}},
                                                                 {300, {300, 0x200000}}});
  CHECK(obs.vanished.empty());
}

TEST_CASE(
    "sampler: a process whose leader exited while its other threads run on is sampled through "
    "them; one whose threads all exit is not",
    "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  // 101's leader is a zombie: PF_EXITING, cgroup "/" (v1), no namespace
  // links; its thread 160 runs on in the sandbox's cgroup.
  fs::remove_all(host.dir() / "proc" / "101");
  FakeProcess zombie{.pid = 101,
                     .ppid = 100,
                     .start_time = 5100,
                     .euid = 1000,
                     .namespaces = {},
                     .cgroup = "/",
                     .flags = 4194560 | observe::kTaskExiting,
                     .state = 'Z',
                     .threads = 2};
  host.add(zombie);
  FakeProcess thread{.pid = 160,
                     .ppid = 100,
                     .start_time = 5101,
                     .euid = 1000,
                     .namespaces = sandbox_namespaces(),
                     .cgroup = "/sandbox",
                     .tgid = 101};
  host.add_thread(thread);
  const auto sampler = host.sampler();
  {
    const auto obs =
        ok(sampler.sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
    std::map<pid_t, int32_t> tgid_of;
    for (const auto& m : obs.members) {
      tgid_of[m.pid] = m.status.tgid;
      CHECK_FALSE(m.exiting);
    }
    CHECK(tgid_of == std::map<pid_t, int32_t>{{100, 100}, {160, 101}, {300, 300}});
    CHECK(obs.vanished.empty());
  }
  // The thread in exit() too (exit_group): the leader is not stood for,
  // and is dropped as exited.
  fs::remove_all(host.dir() / "proc" / "101" / "task" / "160");
  thread.flags |= observe::kTaskExiting;
  host.add_thread(thread);
  const auto obs =
      ok(sampler.sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
  std::vector<pid_t> sampled;
  for (const auto& m : obs.members) sampled.push_back(m.pid);
  CHECK(sampled == std::vector<pid_t>{100, 300});
  CHECK(obs.vanished == std::vector<pid_t>{101});
}

TEST_CASE("sampler: a sandbox whose first PID was reused is gone, not sampled", "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  // The container's init started at tick 4000; PID 100 now is another process.
  auto sample =
      host.sampler().sample(runc_sandbox(100, 4000, "/sandbox"), projection::default_scope());
  REQUIRE_FALSE(sample.has_value());
  CHECK(sample.error().vanished);
  CHECK_THAT(sample.error().message, Catch::Contains("agent-7") && Catch::Contains("reused"));

  fs::remove_all(host.dir() / "proc" / "100");
  auto gone =
      host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope());
  REQUIRE_FALSE(gone.has_value());
  CHECK(gone.error().vanished);
}

TEST_CASE("sampler: a member in a user namespace of its own is marked nested", "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  FakeProcess nested{.pid = 102,
                     .ppid = 101,
                     .start_time = 5200,
                     .euid = 0,
                     .cap_effective = 0x1ffffffffff,
                     .namespaces = sandbox_namespaces(),
                     .cgroup = "/sandbox"};
  nested.namespaces["user"] += 5000;  // `unshare -U -r` inside the sandbox
  host.add(nested);
  host.cgroup("/sandbox", {100, 101, 102}, "134217728", "64", "50000 100000");
  const auto obs =
      ok(host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), projection::default_scope()));
  std::map<pid_t, bool> nested_by_pid;
  for (const auto& m : obs.members) nested_by_pid[m.pid] = m.nested_user_namespace;
  CHECK(nested_by_pid ==
        std::map<pid_t, bool>{{100, false}, {101, false}, {102, true}, {300, false}});
  CHECK(projection::nested_namespace_capabilities(obs).effective ==
        (0x1ffffffffffull & ~(0x20000420ull | 0x200000ull)));
}

TEST_CASE(
    "sampler: paths are checked inside the member's root, where a planted link cannot "
    "point the check at the host",
    "[sandbox]") {
  FixtureHost host;
  add_runc_container(host);
  const fs::path root = host.root_of(100);
  // A readable file where a masked path should be, and a link the sandbox
  // planted: /sneaky -> /dev, so that /sneaky/null would be the host's
  // /dev/null (what a masked file looks like) if the link were followed on
  // the host's side. Inside the sandbox's root, /dev/null does not exist.
  host.dir().write(root.lexically_relative(host.dir().path()) / "visible" / "secret", "data");
  host.dir().symlink(root.lexically_relative(host.dir().path()) / "sneaky", "/dev");
  projection::ObservationScope scope;
  scope.masked_candidates = {"/proc/kcore", "/visible/secret", "/sneaky/null"};
  scope.declared_masked = {"/proc/kcore"};
  scope.readonly_candidates = {"/proc/sys", "/visible"};
  scope.declared_readonly = {"/proc/sys"};
  const auto obs = ok(host.sampler().sample(runc_sandbox(100, 5000, "/sandbox"), scope));
  // 100, 101 and 300 share one mount namespace: one view, through 100.
  REQUIRE(obs.mount_views.size() == 1);
  const auto& view = obs.mount_views[0];
  CHECK(view.seen_through == 100);
  CHECK(view.mount_namespace == sandbox_namespaces().at("mnt"));
  // Absent and declared masked counts as masked (runc and crun skip it);
  // a plain readable file is not masked; the planted link resolves inside.
  CHECK(view.masked == std::set<std::string>{"/proc/kcore"});
  CHECK(view.readonly == std::set<std::string>{"/proc/sys"});
  CHECK_FALSE(view.root_readonly);
}
