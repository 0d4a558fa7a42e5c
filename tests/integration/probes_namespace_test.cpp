// Namespace changes in a watched sandbox (bpf/probes.bpf.c, the unshare and
// setns syscall tracepoints and the fork probe) on the real kernel, in real
// runc sandboxes: each one that succeeds sends a namespace event, nothing
// outside the sandbox does; the probe loader mounts tracefs when it is not
// mounted; and the daemon, with a 60 s sweep, resamples the sandbox at once
// when a process in it makes a user namespace of its own, which no
// capability check sees.

#include "probes/kernel_probes.hpp"

#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using driftwatch::probes::KernelProbes;
using driftwatch::probes::LifecycleEvent;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kToken = 11;
constexpr uint64_t kCloneNewUser = 0x10000000;
constexpr uint64_t kCloneNewUts = 0x04000000;

bool tracefs_mounted() {
  struct statfs st {};
  return ::statfs(driftwatch::probes::kTracefsPath, &st) == 0 && st.f_type == TRACEFS_MAGIC;
}

// A no-capability runc sandbox of uid 1000 with the attempt helper in it:
// what it does with namespaces it does unprivileged.
OciBundle unprivileged_bundle() {
  OciBundle bundle = OciBundle::without_capabilities();
  bundle.add_program(DRIFTWATCH_ATTEMPT_HELPER, "attempt");
  return bundle;
}

KernelProbes load_probes() {
  auto probes = KernelProbes::load(100);
  INFO((probes ? std::string() : probes.error().message));
  REQUIRE(probes);
  for (const auto& [probe, why] : probes->attach_report()) {
    INFO(probe << ": " << why);
    CHECK(why.empty());
  }
  return std::move(*probes);
}

// The namespace events waiting now (the others dropped).
std::vector<LifecycleEvent> namespace_events(KernelProbes& probes) {
  std::vector<LifecycleEvent> out;
  REQUIRE(probes.consume([](const auto&) {},
                         [&](const LifecycleEvent& event) {
                           if (event.kind == LifecycleEvent::Kind::namespace_change)
                             out.push_back(event);
                         }));
  return out;
}

std::string describe_all(const std::vector<LifecycleEvent>& events) {
  std::string out;
  for (const auto& e : events)
    out += driftwatch::probes::describe(e) + " (token " + std::to_string(e.token) + ")\n";
  return out;
}

// Runs the helper in `container`, with `steps`, and its answers.
std::string attempt_in(const Container& container, const std::vector<std::string>& steps) {
  std::vector<std::string> args{"/bin/attempt"};
  args.insert(args.end(), steps.begin(), steps.end());
  const auto done = container.exec_wait(args);
  INFO(done.out << done.err);
  REQUIRE(done.exit_code == 0);
  return done.out;
}

}  // namespace

TEST_CASE(
    "probes: unshare(CLONE_NEWUSER), a setns and a clone or clone3 into a new user namespace in "
    "a no-capability runc sandbox each send a namespace event, and the same on the host none",
    "[root][bpf][runc][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox", "btf"})) DW_SKIP(*why);
  KernelProbes probes = load_probes();
  CHECK(probes.tracefs().needed);
  CHECK(probes.tracefs().mounted);
  OciBundle bundle = unprivileged_bundle();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("nsprobe")));
  REQUIRE(probes.watch_pid_namespace(container.pid_namespace_inode(), kToken));
  (void)namespace_events(probes);

  SECTION("unshare(CLONE_NEWUSER), with no capability check") {
    CHECK_THAT(attempt_in(container, {"unshare-user"}), Catch::Contains("unshare-user ok"));
    const auto events = namespace_events(probes);
    INFO(describe_all(events));
    REQUIRE(events.size() == 1);
    CHECK(events[0].token == kToken);
    CHECK(events[0].syscall == 272);
    CHECK(events[0].result == 0);
    CHECK(events[0].flags == kCloneNewUser);
    CHECK(driftwatch::probes::namespace_probe(events[0]) == "syscalls/sys_exit_unshare");
  }
  SECTION("setns, after an unshare of a user and a UTS namespace (two events, 30 ms apart)") {
    const auto out = attempt_in(container, {"unshare-user-uts", "msleep:30", "setns-uts"});
    CHECK_THAT(out, Catch::Contains("unshare-user-uts ok"));
    CHECK_THAT(out, Catch::Contains("setns-uts ok"));
    const auto events = namespace_events(probes);
    INFO(describe_all(events));
    REQUIRE(events.size() == 2);
    CHECK(events[0].syscall == 272);
    CHECK(events[0].flags == (kCloneNewUser | kCloneNewUts));
    CHECK(events[1].syscall == 308);
    CHECK(events[1].flags == kCloneNewUts);  // setns's nstype
    CHECK(driftwatch::probes::namespace_probe(events[1]) == "syscalls/sys_exit_setns");
  }
  SECTION("clone and clone3 into a new user namespace, seen by the fork probe") {
    const auto out = attempt_in(container, {"clone-user", "msleep:30", "clone3-user"});
    CHECK_THAT(out, Catch::Contains("clone-user ok"));
    CHECK_THAT(out, Catch::Contains("clone3-user ok"));
    const auto events = namespace_events(probes);
    INFO(describe_all(events));
    REQUIRE(events.size() == 2);
    CHECK(events[0].syscall == 56);
    CHECK(events[1].syscall == 435);
    for (const auto& e : events) {
      CHECK(e.token == kToken);
      CHECK(e.flags == kCloneNewUser);  // clone3's read from user memory
      CHECK(e.result > 0);              // the child
      CHECK(e.result == e.pid);
      CHECK(driftwatch::probes::namespace_probe(e) == "sched_process_fork");
    }
  }
  SECTION("what changes no namespace, or fails, sends none") {
    const auto out = attempt_in(container, {"unshare-files", "msleep:30", "unshare-net",
                                            "msleep:30", "setns-uts", "msleep:30", "setuid"});
    CHECK_THAT(out, Catch::Contains("unshare-files ok"));
    CHECK_THAT(out, Catch::Contains("unshare-net EPERM"));
    CHECK_THAT(out, Catch::Contains("setns-uts EPERM"));
    const auto events = namespace_events(probes);
    INFO(describe_all(events));
    CHECK(events.empty());
  }
  SECTION("the same on the host: outside any watched sandbox, nothing") {
    // One process each: past unshare-user, a process's uid is unmapped and
    // it can make no other user namespace.
    const std::vector<std::vector<std::string>> runs = {
        {"unshare-user"}, {"unshare-user-uts", "setns-uts"}, {"clone-user", "clone3-user"}};
    for (const auto& steps : runs) {
      std::vector<std::string> argv{DRIFTWATCH_ATTEMPT_HELPER};
      argv.insert(argv.end(), steps.begin(), steps.end());
      const auto done = run_command(argv);
      INFO(done.out << done.err);
      REQUIRE(done.exit_code == 0);
      for (const auto& step : steps) CHECK_THAT(done.out, Catch::Contains(step + " ok"));
    }
    const auto events = namespace_events(probes);
    INFO(describe_all(events));
    CHECK(events.empty());
  }
}

TEST_CASE(
    "probes: the loader mounts tracefs where it is not mounted, and the syscall tracepoints "
    "attach",
    "[root][bpf][integration]") {
  if (auto why = missing_requirement({"root", "btf"})) DW_SKIP(*why);
  // Unmounting tracefs on the host could pull it from under another test or
  // tool: this runs in a thread with a mount namespace of its own (unshare
  // CLONE_NEWNS affects the calling thread only), where it is unmounted and
  // then loaded, as on a fresh machine.
  std::string failure;
  bool was_mounted = true, mounted_by_us = false, mounted_after = false;
  driftwatch::probes::AttachReport report;
  std::thread fresh([&] {
    if (::unshare(CLONE_NEWNS) != 0) return void(failure = "unshare(CLONE_NEWNS) failed");
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      return void(failure = "cannot make / private");
    while (tracefs_mounted())
      if (::umount2(driftwatch::probes::kTracefsPath, MNT_DETACH) != 0)
        return void(failure = "cannot unmount tracefs");
    was_mounted = tracefs_mounted();
    auto probes = KernelProbes::load(100);
    if (!probes) return void(failure = probes.error().message);
    mounted_by_us = probes->tracefs().mounted_by_driftwatch;
    mounted_after = tracefs_mounted();
    report = probes->attach_report();
  });
  fresh.join();
  REQUIRE(failure.empty());
  CHECK_FALSE(was_mounted);
  CHECK(mounted_by_us);
  CHECK(mounted_after);
  for (const char* probe : {"syscalls/sys_exit_unshare", "syscalls/sys_exit_setns"}) {
    INFO(probe);
    bool attached = false;
    for (const auto& [name, why] : report)
      if (name == probe) attached = why.empty();
    CHECK(attached);
  }
}

namespace {

double metric(const DaemonUnderTest& daemon, const std::string& series) {
  const auto reply = http_request(daemon.port(), "GET", "/metrics");
  const size_t at = reply.body.find(series + " ");
  return at == std::string::npos ? -1 : std::stod(reply.body.substr(at + series.size() + 1));
}

}  // namespace

TEST_CASE(
    "probes: with a 60 s sweep, unshare(CLONE_NEWUSER) in an attested runc sandbox turns it "
    "drifted in under a second, and the same on the host is not counted",
    "[root][bpf][runc][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox", "btf"})) DW_SKIP(*why);
  auto bundle = OciBundle::with_default_spec();
  bundle.add_program(DRIFTWATCH_ATTEMPT_HELPER, "attempt");
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("nsfast")));
  DaemonUnderTest daemon(json{{"sweep_interval_seconds", 60}, {"syscall_probes", true}});
  daemon.start();
  const auto health = daemon.get("/healthz")["probes"];
  INFO(health.dump() << "\n" << daemon.log());
  REQUIRE(health["syscalls/sys_exit_unshare"]["attached"] == true);
  REQUIRE(health["syscalls/sys_exit_setns"]["attached"] == true);
  CHECK(health["tracefs"]["mounted"] == true);
  if (health["tracefs"]["mounted_by_driftwatch"] == true)
    CHECK_THAT(daemon.log(), Catch::Contains("tracefs was not mounted: mounted it on"));
  CHECK(tracefs_mounted());  // and left mounted
  auto launch = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-nsfast-1", container.id(), bundle.config()),
      "cp-1");
  REQUIRE(daemon.post("/v1/launch-events", launch).status == 202);
  daemon.wait_for_verdict(container.id(), "attested");

  const std::string unshare_events =
      "driftwatch_probe_events_total{probe=\"syscalls/sys_exit_unshare\"}";
  REQUIRE(metric(daemon, unshare_events) == 0);
  // The host's own user namespaces are nobody's business here.
  const auto host = run_command({DRIFTWATCH_ATTEMPT_HELPER, "unshare-user", "clone-user"});
  REQUIRE(host.exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // the daemon polls every second
  CHECK(metric(daemon, unshare_events) == 0);
  CHECK(daemon.get("/v1/sandboxes/" + container.id())["verdict"] == "attested");

  // One second after the exec (whose own resample finds nothing), the
  // helper makes a user namespace of its own: full capabilities in it, and
  // a user namespace the sandbox did not declare.
  const double latency_count_before =
      metric(daemon, "driftwatch_detection_latency_seconds_count{trigger=\"probe\"}");
  value_or_throw(container.exec({"/bin/attempt", "sleep:1", "unshare-user", "sleep:600"}));
  const auto exec_done = std::chrono::steady_clock::now();
  std::string verdict;
  while (std::chrono::steady_clock::now() - exec_done < std::chrono::seconds(5)) {
    verdict = daemon.get("/v1/sandboxes/" + container.id())["verdict"];
    if (verdict == "drifted") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - exec_done);
  INFO("drifted " << took.count() << " s after the exec\n" << daemon.log());
  REQUIRE(verdict == "drifted");
  CHECK(took.count() < 2.0);  // the helper's 1 s, and well under a second more
  // The probe's own latency, from the kernel's event to the drifted
  // verdict: under a second (the histogram is the node's: other sandboxes
  // there may have drifted meanwhile, within a second too).
  const auto probe_latency = [&](const std::string& series) {
    return metric(daemon, "driftwatch_detection_latency_seconds" + series);
  };
  CHECK(probe_latency("_count{trigger=\"probe\"}") >= latency_count_before + 1);
  CHECK(probe_latency("_bucket{trigger=\"probe\",le=\"1\"}") ==
        probe_latency("_count{trigger=\"probe\"}"));
  wait_until("the unshare in /metrics", std::chrono::seconds(5),
             [&] { return metric(daemon, unshare_events) >= 1; });
  CHECK(metric(daemon, unshare_events) == 1);
  // runc exec's own setns calls may be seen too, when the sandbox is watched
  // by its cgroup and runc joins the cgroup first: one resample more.
  CHECK(daemon.get("/healthz")["probes"]["namespace_changes"].get<int>() >= 1);
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "probes: by default (\"syscall_probes\": false) the syscall tracepoints are off and say so, "
    "the tp_btf probes stay",
    "[root][bpf][integration][daemon]") {
  if (auto why = missing_requirement({"root", "btf"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  const auto health = daemon.get("/healthz")["probes"];
  INFO(health.dump());
  for (const char* probe : {"syscalls/sys_exit_unshare", "syscalls/sys_exit_setns"}) {
    CHECK(health[probe]["attached"] == false);
    CHECK_THAT(health[probe]["why"].get<std::string>(), Catch::Contains("syscall_probes"));
    CHECK(metric(daemon, "driftwatch_probe_attached{probe=\"" + std::string(probe) + "\"}") == 0);
  }
  CHECK(health["tracefs"]["needed"] == false);
  for (const char* probe : {"cap_capable", "sched_process_exec", "sched_process_fork"}) {
    CHECK(health[probe]["attached"] == true);
    CHECK(metric(daemon, "driftwatch_probe_attached{probe=\"" + std::string(probe) + "\"}") == 1);
  }
  CHECK(daemon.stop() == 0);
}
