// The escalation-attempt probe (bpf/attempts.bpf.c, probes/kernel_probes.hpp) on
// the real kernel, watching a real runc sandbox without capabilities: each
// attempt is counted denied under its syscall, the kernel's silent checks and
// the runtime's own setup are not, nothing outside the sandbox is, and a
// storm is counted exactly while its detail is rate-limited.

#include "probes/kernel_probes.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "integration/cli.hpp"
#include "integration/daemon_harness.hpp"
#include "integration/evidence_entries.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using driftwatch::probes::AttemptCount;
using driftwatch::probes::AttemptEvent;
using driftwatch::probes::KernelProbes;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr uint32_t kToken = 7;

// The last NSpid field: the pid inside the process's own PID namespace.
pid_t pid_inside(pid_t host_pid) {
  std::ifstream status("/proc/" + std::to_string(host_pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (!line.starts_with("NSpid:")) continue;
    std::istringstream fields(line.substr(6));
    pid_t pid = -1, last = -1;
    while (fields >> pid) last = pid;
    return last;
  }
  return -1;
}

// Denied counts of the token, by syscall kind.
std::map<std::string, uint64_t> denied_by_kind(const std::vector<AttemptCount>& counts) {
  std::map<std::string, uint64_t> out;
  for (const auto& c : counts)
    if (c.token == kToken && c.denied) out[driftwatch::probes::syscall_kind(c.syscall)] += c.count;
  return out;
}

// A no-capability runc sandbox of uid 1000 with the attempt helper in it.
OciBundle attempt_bundle() {
  OciBundle bundle = OciBundle::without_capabilities();
  bundle.add_program(DRIFTWATCH_ATTEMPT_HELPER, "attempt");
  return bundle;
}

KernelProbes load_probe() {
  auto probe = KernelProbes::load(100);
  INFO((probe ? std::string() : probe.error().message));
  REQUIRE(probe);
  return std::move(*probe);
}

}  // namespace

TEST_CASE(
    "probes: each escalation attempt in a no-capability runc sandbox is counted denied under its "
    "syscall, and the kernel's silent checks, the runtime's setup and the host are not",
    "[root][bpf][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  KernelProbes probe = load_probe();
  OciBundle bundle = attempt_bundle();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("attempts")));
  REQUIRE(probe.watch_pid_namespace(container.pid_namespace_inode(), kToken));

  // A root process in the same sandbox, for a ptrace across users.
  auto target = value_or_throw(container.exec({"sleep", "600"}, {"--user", "0:0"}));
  const pid_t target_inside = pid_inside(target);
  REQUIRE(target_inside > 0);
  const auto attempts =
      container.exec_wait({"/bin/attempt", "setuid", "setgid", "mount", "bpf", "chroot",
                           "unshare-net", "ptrace:" + std::to_string(target_inside)});
  INFO(attempts.out << attempts.err);
  REQUIRE(attempts.exit_code == 0);
  // The kernel refused every one of them.
  for (const char* line : {"setuid EPERM", "setgid EPERM", "mount EPERM", "bpf EPERM",
                           "chroot EPERM", "unshare-net EPERM"})
    CHECK_THAT(attempts.out, Catch::Contains(line));
  CHECK_THAT(attempts.out, Catch::Contains(" EPERM\n", Catch::CaseSensitive::Yes));

  auto counts = probe.counts();
  REQUIRE(counts);
  const auto denied = denied_by_kind(*counts);
  std::string seen;
  for (const auto& [kind, n] : denied) seen += kind + "=" + std::to_string(n) + " ";
  INFO("denied: " << seen);
  for (const char* kind : {"setuid", "setgid", "mount", "bpf", "chroot", "unshare", "ptrace"})
    CHECK(denied.contains(kind));
  // execve, brk and mmap make the overcommit check (CAP_SYS_ADMIN, denied)
  // on every exec and allocation: never an attempt.
  for (const auto& c : *counts) {
    INFO("syscall " << c.syscall << " capability " << c.capability);
    CHECK_FALSE((c.syscall == 59 || c.syscall == 12 || c.syscall == 9));
    CHECK(c.token == kToken);
  }

  // The detail: every event is from inside the sandbox, none from the host
  // (this test process makes capability checks all along, as root).
  const uint32_t sandbox_ns = container.pid_namespace_inode();
  std::set<std::string> kinds;
  auto consumed = probe.consume([&](const AttemptEvent& event) {
    CHECK(event.token == kToken);
    CHECK(event.result != 0);
    CHECK(event.pid != static_cast<uint32_t>(::getpid()));
    struct stat st {};
    if (::stat(("/proc/" + std::to_string(event.pid) + "/ns/pid").c_str(), &st) == 0)
      CHECK(static_cast<uint32_t>(st.st_ino) == sandbox_ns);
    kinds.insert(driftwatch::probes::syscall_kind(event.syscall));
    CHECK(event.comm == "attempt");
  });
  REQUIRE(consumed);
  CHECK(*consumed >= 7);
  CHECK(kinds.contains("setuid"));
  CHECK(kinds.contains("mount"));
  CHECK(probe.losses().counters_full == 0);
}

TEST_CASE(
    "probes: a storm of 100,000 denied setuid(0) calls is counted exactly 100,000, its detail "
    "rate-limited and the drops counted",
    "[root][bpf][integration]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  KernelProbes probe = load_probe();
  OciBundle bundle = attempt_bundle();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("storm")));
  REQUIRE(probe.watch_pid_namespace(container.pid_namespace_inode(), kToken));

  const auto storm = container.exec_wait({"/bin/attempt", "storm:100000"});
  INFO(storm.out << storm.err);
  REQUIRE(storm.exit_code == 0);
  REQUIRE_THAT(storm.out, Catch::Contains("storm:100000 denied 100000"));
  auto counts = probe.counts();
  REQUIRE(counts);
  CHECK(denied_by_kind(*counts)["setuid"] == 100000);
  size_t details = 0;
  REQUIRE(probe.consume([&](const AttemptEvent&) { ++details; }));
  const auto losses = probe.losses();
  INFO(details << " details, " << losses.rate_limited << " rate-limited, " << losses.ring_full
               << " dropped for room");
  // The storm took a second or a few: 100 details a second at most.
  CHECK(details >= 100);
  CHECK(details < 2000);
  CHECK(details + losses.rate_limited + losses.ring_full == 100000);
  CHECK(losses.counters_full == 0);

  // Forgetting the sandbox drops its counters.
  probe.forget_token(kToken);
  counts = probe.counts();
  REQUIRE(counts);
  CHECK(denied_by_kind(*counts).empty());
}

namespace {

// driftwatch_escalation_attempts_total{kind=KIND,outcome="denied"} in the
// daemon's /metrics, 0 when the series is missing.
double denied_metric(const DaemonUnderTest& daemon, const std::string& kind) {
  const auto reply = http_request(daemon.port(), "GET", "/metrics");
  const std::string series =
      "driftwatch_escalation_attempts_total{kind=\"" + kind + "\",outcome=\"denied\"} ";
  const size_t at = reply.body.find(series);
  return at == std::string::npos ? 0 : std::stod(reply.body.substr(at + series.size()));
}

}  // namespace

TEST_CASE(
    "probes: the daemon watches the sandboxes it samples, counts their denied attempts in "
    "/metrics, and records them in the evidence log with the sandbox and its launch",
    "[root][bpf][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  auto health = daemon.get("/healthz");
  INFO(health["probes"].dump() << "\n" << daemon.log());
  REQUIRE(health["probes"]["cap_capable"]["attached"] == true);
  CHECK(health["confinement"]["front"]["bpf_map_ops"] == true);

  OciBundle bundle = attempt_bundle();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("dattempt")));
  // Its own sandbox, not any (other sandboxes on the node are watched too):
  // a sweep that samples it watches it in the same step.
  driftwatch::testing::wait_until("the sandbox to be watched", std::chrono::seconds(15), [&] {
    return http_request(daemon.port(), "GET", "/v1/sandboxes/" + container.id()).status == 200 &&
           daemon.get("/healthz")["probes"]["cap_capable"]["watched_sandboxes"].get<int>() >= 1;
  });
  const auto attempts = container.exec_wait({"/bin/attempt", "setuid", "mount", "storm:1000"});
  INFO(attempts.out << attempts.err);
  REQUIRE(attempts.exit_code == 0);
  driftwatch::testing::wait_until("the attempts in /metrics", std::chrono::seconds(10), [&] {
    return denied_metric(daemon, "setuid") >= 1001 && denied_metric(daemon, "mount") >= 1;
  });
  CHECK(denied_metric(daemon, "setuid") == 1001);
  CHECK(denied_metric(daemon, "chroot") == 0);
  REQUIRE(daemon.stop() == 0);

  // The shutdown summarised what was left: one entry per kind, exact counts.
  uint64_t setuid_total = 0;
  for (const auto& entry : evidence_documents(daemon)) {
    if (entry["type"] != "escalation_attempt" || entry["kind"] != "setuid") continue;
    CHECK(entry["sandbox_id"] == container.id());
    CHECK(entry["outcome"] == "denied");
    CHECK(entry["capability"] == "CAP_SETUID");
    CHECK(entry["detail"]["comm"] == "attempt");
    setuid_total += entry["count"].get<uint64_t>();
  }
  CHECK(setuid_total == 1001);
}

TEST_CASE("probes: with \"probes\": false the daemon samples only, and says so", "[root][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon(json{{"probes", false}});
  daemon.start();
  auto health = daemon.get("/healthz");
  CHECK(health["probes"]["cap_capable"]["attached"] == false);
  CHECK_THAT(health["probes"]["cap_capable"]["why"].get<std::string>(),
             Catch::Contains("switched off"));
  CHECK(health["confinement"]["front"]["bpf_map_ops"] == false);
  const auto metrics = http_request(daemon.port(), "GET", "/metrics");
  CHECK_THAT(metrics.body, Catch::Contains("driftwatch_probe_attached{probe=\"cap_capable\"} 0"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "probes: with a 60 s sweep, runc exec --cap CAP_SYS_ADMIN turns an attested sandbox drifted "
    "in under a second",
    "[root][bpf][runc][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("fast")));
  DaemonUnderTest daemon(json{{"sweep_interval_seconds", 60}});
  daemon.start();
  auto launch = daemon.sign(
      "launch", DaemonUnderTest::launch_payload("L-fast-1", container.id(), bundle.config()),
      "cp-1");
  REQUIRE(daemon.post("/v1/launch-events", launch).status == 202);
  daemon.wait_for_verdict(container.id(), "attested");
  REQUIRE(daemon.get("/healthz")["probes"]["sched_process_exec"]["attached"] == true);

  value_or_throw(container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  const auto exec_done = std::chrono::steady_clock::now();
  std::string verdict;
  while (std::chrono::steady_clock::now() - exec_done < std::chrono::seconds(5)) {
    verdict = daemon.get("/v1/sandboxes/" + container.id())["verdict"];
    if (verdict == "drifted") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - exec_done);
  INFO("drifted after " << took.count() << " s\n" << daemon.log());
  REQUIRE(verdict == "drifted");
  CHECK(took.count() < 1.0);
  const auto metrics = http_request(daemon.port(), "GET", "/metrics");
  CHECK_THAT(metrics.body,
             Catch::Contains("driftwatch_detection_latency_seconds_count{trigger=\"probe\"} 1"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "probes: during a storm of 100,000 denied setuid(0) calls in a watched sandbox the daemon "
    "answers /healthz within 100 ms, and counts the storm exactly in the sandbox's API document",
    "[root][bpf][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  OciBundle bundle = attempt_bundle();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("hstorm")));
  driftwatch::testing::wait_until("the sandbox to be watched", std::chrono::seconds(15), [&] {
    const auto reply = http_request(daemon.port(), "GET", "/v1/sandboxes/" + container.id());
    return reply.status == 200 && json::parse(reply.body)["denied_attempts"].is_object();
  });

  std::atomic<bool> done{false};
  CommandResult storm;
  std::thread attacker([&] {
    storm = container.exec_wait({"/bin/attempt", "storm:100000"});
    done = true;
  });
  double slowest = 0;
  int answers = 0, failures = 0;
  while (!done) {
    const auto asked = std::chrono::steady_clock::now();
    const auto reply = http_request(daemon.port(), "GET", "/healthz");
    const double took =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
    slowest = std::max(slowest, took);
    ++answers;
    if (reply.status != 200) ++failures;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  attacker.join();
  INFO(storm.out << storm.err << "\n"
                 << answers << " /healthz answers, slowest " << slowest << " s");
  REQUIRE_THAT(storm.out, Catch::Contains("storm:100000 denied 100000"));
  CHECK(answers >= 10);
  CHECK(failures == 0);
  CHECK(slowest < 0.1);

  json denied;
  driftwatch::testing::wait_until("the storm counted", std::chrono::seconds(10), [&] {
    denied = daemon.get("/v1/sandboxes/" + container.id())["denied_attempts"];
    return denied.value("setuid", 0) >= 100000;
  });
  CHECK(denied["setuid"] == 100000);
  CHECK(daemon.get("/healthz")["probes"]["cap_capable"]["attempts_not_counted"] == 0);

  // `driftwatch inspect --daemon` shows them next to what it sampled.
  const auto inspected = run_driftwatch({"inspect", "--oci", container.id(), "--daemon",
                                         "http://127.0.0.1:" + std::to_string(daemon.port())});
  INFO(inspected.out << inspected.err);
  REQUIRE(inspected.exit_code == 0);
  const auto document = json::parse(inspected.out);
  CHECK(document["sandbox_id"] == container.id());
  CHECK(document["daemon"]["known"] == true);
  CHECK(document["daemon"]["denied_attempts"]["setuid"] == 100000);
  // A daemon that is not there: a one-line error, exit 2.
  const auto nowhere =
      run_driftwatch({"inspect", "--oci", container.id(), "--daemon", "http://127.0.0.1:1"});
  CHECK(nowhere.exit_code == 2);
  CHECK_THAT(nowhere.err, Catch::StartsWith("driftwatch: --daemon: "));
  CHECK(daemon.stop() == 0);
}

TEST_CASE(
    "probes: the report of a launch lists the attempts denied in its sandbox with their exact "
    "counts, in JSON, HTML and OSCAL, and verifies offline",
    "[root][bpf][integration][daemon][evidence]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  daemon.start();
  OciBundle bundle = attempt_bundle();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("rattempt")));
  REQUIRE(
      daemon
          .post("/v1/launch-events", daemon.sign("launch",
                                                 DaemonUnderTest::launch_payload(
                                                     "L-attempts", container.id(), bundle.config()),
                                                 "cp-1"))
          .status == 202);
  daemon.wait_for_verdict(container.id(), "attested");
  const auto attempts = container.exec_wait({"/bin/attempt", "setuid", "chroot", "storm:41"});
  INFO(attempts.out << attempts.err);
  REQUIRE(attempts.exit_code == 0);
  driftwatch::testing::wait_until("the attempts counted", std::chrono::seconds(10), [&] {
    return daemon.get("/v1/sandboxes/" + container.id())["denied_attempts"].value("setuid", 0) >=
           42;
  });
  REQUIRE(daemon.stop() == 0);  // the last summary and a checkpoint

  const std::string log = (daemon.dir() / "state" / "evidence").string();
  const std::string vkey = (daemon.dir() / "state" / "node.vkey").string();
  const auto report = run_driftwatch(
      {"report", "--log", log, "--key", vkey, "--launch", "L-attempts", "--format", "json"});
  INFO(report.err);
  REQUIRE(report.exit_code == 0);
  const auto launch = json::parse(report.out)["launches"][0];
  std::map<std::string, uint64_t> denied;
  for (const auto& d : launch["denied_attempts"]) {
    CHECK(d["outcome"] == "denied");
    CHECK(d["comm"] == "attempt");
    denied[d["kind"].get<std::string>()] += d["count"].get<uint64_t>();
  }
  CHECK(denied == std::map<std::string, uint64_t>{{"setuid", 42}, {"chroot", 1}});
  CHECK(launch["denied_attempts_note"].is_null());

  const fs::path saved = daemon.dir() / "report.json";
  std::ofstream(saved) << report.out;
  const auto verified = run_driftwatch({"verify", "--report", saved.string(), "--key", vkey});
  INFO(verified.out << verified.err);
  CHECK(verified.exit_code == 0);

  const auto html = run_driftwatch(
      {"report", "--log", log, "--key", vkey, "--launch", "L-attempts", "--format", "html"});
  REQUIRE(html.exit_code == 0);
  CHECK_THAT(html.out, Catch::Contains("CAP_SYS_CHROOT"));
  CHECK_THAT(html.out, Catch::Contains("<td>42</td>"));
  const auto oscal = run_driftwatch(
      {"report", "--log", log, "--key", vkey, "--launch", "L-attempts", "--format", "oscal"});
  REQUIRE(oscal.exit_code == 0);
  CHECK_THAT(oscal.out,
             Catch::Contains(" setuid attempts needing CAP_SETUID denied by the kernel"));
}

TEST_CASE(
    "probes: a plain runc exec never makes an attested sandbox look drifted: the runtime's setup "
    "and the command's exit are sampled again once they are over",
    "[root][bpf][runc][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto bundle = OciBundle::with_default_spec();
  auto container = value_or_throw(Container::start("runc", bundle, unique_container_id("plain")));
  DaemonUnderTest daemon(json{{"sweep_interval_seconds", 60}});
  daemon.start();
  REQUIRE(daemon
              .post("/v1/launch-events",
                    daemon.sign(
                        "launch",
                        DaemonUnderTest::launch_payload("L-plain", container.id(), bundle.config()),
                        "cp-1"))
              .status == 202);
  daemon.wait_for_verdict(container.id(), "attested");
  // 30 rounds: before exits were told apart, about 1 plain exec in 20 was
  // sampled while its `true` was in exit() and looked drifted (its cgroups
  // read "/" on a v1 hierarchy).
  std::set<std::string> seen;
  for (int i = 0; i < 30; ++i) {
    std::atomic<bool> done{false};
    std::thread exec([&] {
      const auto ran = container.exec_wait({"true"});
      CHECK(ran.exit_code == 0);
      done = true;
    });
    while (!done) {
      seen.insert(daemon.get("/v1/sandboxes/" + container.id())["verdict"].get<std::string>());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    exec.join();
    // What the resamples after the exec decided.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    seen.insert(daemon.get("/v1/sandboxes/" + container.id())["verdict"].get<std::string>());
  }
  INFO(daemon.log());
  CHECK(seen == std::set<std::string>{"attested"});
  const auto metrics = http_request(daemon.port(), "GET", "/metrics");
  CHECK_THAT(metrics.body,
             Catch::Contains("driftwatch_detection_latency_seconds_count{trigger=\"sweep\"} 0"));
  CHECK(daemon.stop() == 0);
}
