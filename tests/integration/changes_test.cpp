// Change notifications (probes/change_notify.hpp) on the real kernel: inotify
// on real cgroupfs directories and runtime roots, then the daemon with a
// 60 s sweep seeing `runc update` of the memory and pids limits, a host
// process moved into a sandbox's cgroup, and a new sandbox, each in under a
// second.

#include "probes/change_notify.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/temp_dir.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using driftwatch::probes::Change;
using driftwatch::probes::ChangeNotify;
using nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// The unified hierarchy on this node (pure v2 or hybrid).
fs::path unified_root() {
  return fs::exists("/sys/fs/cgroup/unified/cgroup.procs") ? fs::path("/sys/fs/cgroup/unified")
                                                           : fs::path("/sys/fs/cgroup");
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  INFO("writing " << text << " to " << path);
  REQUIRE(out.good());
}

// Takes changes until one matches `wanted` or 2 s pass.
std::vector<Change> take_until(ChangeNotify& notify,
                               const std::function<bool(const Change&)>& wanted) {
  std::vector<Change> all;
  const auto deadline = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < deadline) {
    auto taken = notify.take();
    REQUIRE(taken);
    for (auto& c : *taken) {
      const bool done = wanted(c);
      all.push_back(std::move(c));
      if (done) return all;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return all;
}

std::string describe(const std::vector<Change>& changes) {
  std::ostringstream out;
  for (const auto& c : changes)
    out << static_cast<int>(c.kind) << " " << c.sandbox_id << " " << c.what << "\n";
  return out.str();
}

// The path of `pid`'s cgroup in the hierarchy with `controller` ("" for v2).
std::string cgroup_of(pid_t pid, const std::string& controller) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto first = line.find(':'), second = line.find(':', first + 1);
    const std::string controllers = line.substr(first + 1, second - first - 1);
    std::stringstream names(controllers);
    std::string name;
    if (controller.empty() && controllers.empty()) return line.substr(second + 1);
    while (std::getline(names, name, ','))
      if (name == controller) return line.substr(second + 1);
  }
  return "";
}

// The value of one sample line of a Prometheus text page (-1: absent).
double sample_value(const std::string& page, const std::string& series) {
  std::istringstream lines(page);
  std::string line;
  while (std::getline(lines, line))
    if (line.starts_with(series + " ")) return std::stod(line.substr(series.size() + 1));
  return -1;
}

// A drift the daemon must see within a second with a 60 s sweep: the
// sandbox is attested, `change` is made, and the verdict is polled.
double seconds_to_drift(const DaemonUnderTest& daemon, const std::string& id,
                        const std::function<void()>& change) {
  const auto before = Clock::now();
  change();
  std::string verdict;
  while (Clock::now() - before < std::chrono::seconds(5)) {
    verdict = daemon.get("/v1/sandboxes/" + id)["verdict"];
    if (verdict == "drifted") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double took = std::chrono::duration<double>(Clock::now() - before).count();
  INFO("verdict " << verdict << " after " << took << " s\n" << daemon.log());
  REQUIRE(verdict == "drifted");
  return took;
}

// An attested runc sandbox with memory and pids limits, under a daemon
// that sweeps every 60 s.
struct LimitedSandbox {
  OciBundle bundle = OciBundle::with_default_spec();
  std::optional<Container> container;
  DaemonUnderTest daemon{json{{"sweep_interval_seconds", 60}}};

  explicit LimitedSandbox(const std::string& label) {
    bundle.config()["linux"]["resources"]["memory"] = {{"limit", 64 * 1024 * 1024}};
    bundle.config()["linux"]["resources"]["pids"] = {{"limit", 64}};
    bundle.write_config();
    container.emplace(value_or_throw(Container::start("runc", bundle, unique_container_id(label))));
    daemon.start();
    auto launch = daemon.sign(
        "launch", DaemonUnderTest::launch_payload("L-" + label, container->id(), bundle.config()),
        "cp-1");
    REQUIRE(daemon.post("/v1/launch-events", launch).status == 202);
    daemon.wait_for_verdict(container->id(), "attested");
    // The cgroup watch is set up by the sample that attested it.
    wait_until("the sandbox's cgroup watched", std::chrono::seconds(5), [&] {
      return daemon.get("/healthz")["probes"]["inotify"]["sandboxes"].get<int>() >= 1;
    });
  }
};

}  // namespace

TEST_CASE("change notify: a write to a watched cgroup's file names its sandbox once",
          "[root][inotify][cgroup]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  const fs::path dir = unified_root() / ("dw-notify-" + std::to_string(::getpid()));
  REQUIRE(fs::create_directory(dir));
  struct Remove {
    fs::path dir;
    ~Remove() { ::rmdir(dir.c_str()); }
  } remove{dir};
  auto notify = ChangeNotify::open();
  REQUIRE(notify);
  REQUIRE(notify->watch_sandbox("S1", {dir}).empty());
  REQUIRE(notify->sandboxes() == std::set<std::string>{"S1"});

  write_file(dir / "cgroup.max.descendants", "100");
  write_file(dir / "cgroup.max.descendants", "200");
  auto seen = take_until(*notify, [](const Change& c) { return c.sandbox_id == "S1"; });
  INFO(describe(seen));
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].kind == Change::Kind::sandbox);
  CHECK(seen[0].what == "cgroup.max.descendants");
  CHECK(notify->take()->empty());

  // Unwatched: a write names nothing.
  notify->unwatch_sandbox("S1");
  CHECK(notify->sandboxes().empty());
  write_file(dir / "cgroup.max.descendants", "300");
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK(notify->take()->empty());
}

TEST_CASE("change notify: a container's state file in a runtime root, even one created later",
          "[inotify]") {
  TempDir tmp;
  const fs::path root = tmp.path() / "run" / "runc";
  auto notify = ChangeNotify::open();
  REQUIRE(notify);
  REQUIRE(notify->watch_discovery({root}, {}).empty());
  CHECK(notify->health()["waiting_in"].size() == 1);

  // The root appears: it is watched from then on.
  fs::create_directories(root);
  auto seen = take_until(*notify, [](const Change&) { return true; });
  INFO(describe(seen));
  REQUIRE(notify->health()["discovery_dirs"] == json::array({root.string()}));

  // A container: its directory, then its state file renamed into place.
  fs::create_directory(root / "c-1");
  std::ofstream(root / "c-1" / "state.json.tmp") << "{}";
  fs::rename(root / "c-1" / "state.json.tmp", root / "c-1" / "state.json");
  seen = take_until(*notify, [](const Change& c) { return c.sandbox_id == "c-1"; });
  INFO(describe(seen));
  REQUIRE(!seen.empty());
  CHECK(seen.back().kind == Change::Kind::discovery);
  CHECK(seen.back().sandbox_id == "c-1");

  // Anything else written there is not a container.
  std::ofstream(root / "c-1" / "notes") << "x";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto rest = notify->take();
  REQUIRE(rest);
  CHECK(rest->empty());
}

TEST_CASE("change notify: a containerd namespace created later is a runtime root of its own",
          "[inotify]") {
  TempDir tmp;
  const fs::path parent = tmp.path() / "containerd" / "runc";
  fs::create_directories(parent / "default");
  auto notify = ChangeNotify::open();
  REQUIRE(notify);
  REQUIRE(notify->watch_discovery({}, {}, {parent}).empty());
  CHECK(notify->health()["discovery_dirs"].size() == 2);

  // A namespace appears (containerd makes it at its first container there),
  // then a container in it.
  fs::create_directory(parent / "k8s.io");
  auto seen = take_until(*notify, [](const Change&) { return true; });
  INFO(describe(seen));
  REQUIRE(!seen.empty());
  CHECK(seen.back().sandbox_id.empty());
  fs::create_directory(parent / "k8s.io" / "c-1");
  std::ofstream(parent / "k8s.io" / "c-1" / "state.json") << "{}";
  seen = take_until(*notify, [](const Change& c) { return c.sandbox_id == "c-1"; });
  INFO(describe(seen));
  REQUIRE(!seen.empty());
  CHECK(seen.back().sandbox_id == "c-1");
  CHECK(seen.back().kind == Change::Kind::discovery);
  // And in the namespace that was there from the start.
  fs::create_directory(parent / "default" / "c-2");
  std::ofstream(parent / "default" / "c-2" / "state.json") << "{}";
  seen = take_until(*notify, [](const Change& c) { return c.sandbox_id == "c-2"; });
  INFO(describe(seen));
  REQUIRE(!seen.empty());
  CHECK(seen.back().sandbox_id == "c-2");
}

TEST_CASE(
    "change notify: a container whose namespace, directory and state file all came before the "
    "namespace's watch is found by its id",
    "[inotify]") {
  TempDir tmp;
  const fs::path parent = tmp.path() / "containerd" / "runc";
  fs::create_directories(parent);
  auto notify = ChangeNotify::open();
  REQUIRE(notify);
  REQUIRE(notify->watch_discovery({}, {}, {parent}).empty());
  // containerd makes the namespace and runc the container's directory in
  // the same millisecond, and its state file soon after: all of it before
  // the loop reads the namespace's event and arms a watch on it.
  fs::create_directories(parent / "k8s.io" / "c-early");
  std::ofstream(parent / "k8s.io" / "c-early" / "state.json") << "{}";
  auto seen = take_until(*notify, [](const Change& c) { return c.sandbox_id == "c-early"; });
  INFO(describe(seen));
  REQUIRE(!seen.empty());
  CHECK(seen.back().sandbox_id == "c-early");
  CHECK(seen.back().kind == Change::Kind::discovery);
  CHECK(notify->health()["container_dirs"] == 1);
}

TEST_CASE(
    "change notify: a cgroup glob's parent sees new matches, and deeper wildcards are refused",
    "[inotify]") {
  CHECK(driftwatch::probes::glob_parent("/sys/fs/cgroup/agents/*") ==
        fs::path("/sys/fs/cgroup/agents"));
  CHECK(!driftwatch::probes::glob_parent("/sys/fs/cgroup/*/agent"));
  CHECK(!driftwatch::probes::glob_parent("relative/*"));
  CHECK(driftwatch::probes::is_kernel_notification("memory.events"));
  CHECK(driftwatch::probes::is_kernel_notification("cgroup.events"));
  CHECK(!driftwatch::probes::is_kernel_notification("memory.max"));

  TempDir tmp;
  auto notify = ChangeNotify::open();
  REQUIRE(notify);
  const auto problems = notify->watch_discovery({}, {(tmp.path() / "agent-*").string(), "/x/*/y"});
  REQUIRE(problems.size() == 1);
  CHECK_THAT(problems[0], Catch::Contains("/x/*/y"));
  fs::create_directory(tmp.path() / "agent-1");
  auto seen =
      take_until(*notify, [](const Change& c) { return c.kind == Change::Kind::discovery; });
  INFO(describe(seen));
  REQUIRE(!seen.empty());
  CHECK(seen.back().sandbox_id.empty());
}

TEST_CASE("changes: with a 60 s sweep, runc update --memory higher drifts in under a second",
          "[root][runc][inotify][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  LimitedSandbox s("upd-mem");
  const double took = seconds_to_drift(s.daemon, s.container->id(), [&] {
    value_or_throw(s.container->update({"--memory", std::to_string(256 * 1024 * 1024)}));
  });
  CHECK(took < 1.0);
  const auto metrics = http_request(s.daemon.port(), "GET", "/metrics");
  CHECK_THAT(metrics.body, Catch::Contains("driftwatch_probe_attached{probe=\"inotify\"} 1"));
  CHECK_THAT(metrics.body,
             Catch::Contains("driftwatch_detection_latency_seconds_count{trigger=\"probe\"} 1"));
  CHECK(sample_value(metrics.body, "driftwatch_probe_events_total{probe=\"inotify\"}") >= 1);
  CHECK(s.daemon.stop() == 0);
}

TEST_CASE("changes: with a 60 s sweep, runc update --pids-limit higher drifts in under a second",
          "[root][runc][inotify][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  LimitedSandbox s("upd-pids");
  const double took = seconds_to_drift(s.daemon, s.container->id(), [&] {
    value_or_throw(s.container->update({"--pids-limit", "4096"}));
  });
  CHECK(took < 1.0);
  const auto sandbox = s.daemon.get("/v1/sandboxes/" + s.container->id());
  CHECK_THAT(sandbox.dump(), Catch::Contains("pids"));
  CHECK(s.daemon.stop() == 0);
}

TEST_CASE(
    "changes: with a 60 s sweep, a host process moved into the sandbox's cgroup drifts it "
    "in under a second",
    "[root][runc][inotify][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  LimitedSandbox s("moved-in");
  // A host process (root, every capability, the host's namespaces).
  const pid_t host = ::fork();
  REQUIRE(host >= 0);
  if (host == 0) {
    ::execl("/bin/sleep", "sleep", "600", nullptr);
    ::_exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reap{host};
  // Into the sandbox's cgroup: the memory hierarchy's on a hybrid node,
  // the unified one on a pure v2 node.
  const pid_t init = s.container->init_pid();
  fs::path procs;
  if (const auto v1 = cgroup_of(init, "memory"); !v1.empty())
    procs = fs::path("/sys/fs/cgroup/memory") / fs::path(v1).relative_path() / "cgroup.procs";
  else
    procs = unified_root() / fs::path(cgroup_of(init, "")).relative_path() / "cgroup.procs";
  const double took = seconds_to_drift(s.daemon, s.container->id(),
                                       [&] { write_file(procs, std::to_string(host)); });
  CHECK(took < 1.0);
  CHECK(s.daemon.stop() == 0);
}

TEST_CASE("changes: with a 60 s sweep, a sandbox started after the daemon is seen within a second",
          "[root][runc][inotify][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  DaemonUnderTest daemon(json{{"sweep_interval_seconds", 60}});
  daemon.start();
  wait_until("the first sweep", std::chrono::seconds(10),
             [&] { return !daemon.get("/healthz")["last_sweep"].is_null(); });
  auto bundle = OciBundle::with_default_spec();
  const std::string id = unique_container_id("late");
  const auto before = Clock::now();
  auto container = value_or_throw(Container::start("runc", bundle, id));
  const auto started = Clock::now();
  bool seen = false;
  while (Clock::now() - started < std::chrono::seconds(5)) {
    if (http_request(daemon.port(), "GET", "/v1/sandboxes/" + id).status == 200) {
      seen = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const double took = std::chrono::duration<double>(Clock::now() - started).count();
  INFO("runc run took " << std::chrono::duration<double>(started - before).count()
                        << " s; seen after " << took << " s\n"
                        << daemon.log());
  REQUIRE(seen);
  CHECK(took < 1.0);
  CHECK_THAT(daemon.log(), Catch::Contains(id + ": discovered"));
  CHECK(daemon.stop() == 0);
}

TEST_CASE("changes: with \"probes\": false nothing is watched, and the metrics say so",
          "[root][inotify][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon(json{{"probes", false}});
  daemon.start();
  const auto health = daemon.get("/healthz");
  CHECK(health["probes"]["inotify"]["attached"] == false);
  CHECK_THAT(health["probes"]["inotify"]["why"].get<std::string>(), Catch::Contains("probes"));
  const auto metrics = http_request(daemon.port(), "GET", "/metrics");
  CHECK_THAT(metrics.body, Catch::Contains("driftwatch_probe_attached{probe=\"inotify\"} 0"));
  CHECK(daemon.stop() == 0);
}
