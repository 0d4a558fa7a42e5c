// Smoke tests of the integration-test harness itself (tests/support): real
// runc and crun containers from a busybox bundle, exec, update, and the RAII
// guards cleaning up. The later integration tests build on exactly these
// operations, so a broken harness shows up here first, with a clear message.

#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "support/oci_bundle.hpp"
#include "support/process_guard.hpp"
#include "support/skip.hpp"

namespace dt = driftwatch::testing;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// CAP_AUDIT_WRITE | CAP_KILL | CAP_NET_BIND_SERVICE: the sets `runc spec` lists.
constexpr uint64_t kDefaultSpecCaps = (1ull << 29) | (1ull << 5) | (1ull << 10);
constexpr uint64_t kCapSysAdmin = 1ull << 21;

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// "Key:\tvalue" lines of /proc/PID/status. Deliberately independent of the
// monitor's own parser: this file tests the harness, not the monitor.
std::map<std::string, std::string> status_of(pid_t pid) {
  std::map<std::string, std::string> fields;
  std::istringstream lines(slurp("/proc/" + std::to_string(pid) + "/status"));
  for (std::string line; std::getline(lines, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    fields[line.substr(0, colon)] = value;
  }
  return fields;
}

uint64_t cap_mask(const std::map<std::string, std::string>& status, const std::string& key) {
  auto it = status.find(key);
  REQUIRE(it != status.end());
  return std::stoull(it->second, nullptr, 16);
}

// The cgroup directory holding `controller` for a process: its v1 hierarchy
// when the controller is bound to v1, else the v2 hierarchy.
fs::path cgroup_dir(pid_t pid, const std::string& controller) {
  std::istringstream lines(slurp("/proc/" + std::to_string(pid) + "/cgroup"));
  std::string unified_path;
  for (std::string line; std::getline(lines, line);) {
    auto first = line.find(':');
    auto second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    std::string path = line.substr(second + 1);
    if (controllers.empty()) unified_path = path;
    std::istringstream names(controllers);
    for (std::string name; std::getline(names, name, ',');) {
      if (name == controller) return fs::path("/sys/fs/cgroup") / controller / path.substr(1);
    }
  }
  struct statfs st {};
  bool pure_v2 = ::statfs("/sys/fs/cgroup", &st) == 0 && st.f_type == 0x63677270;
  fs::path root = pure_v2 ? fs::path("/sys/fs/cgroup") : fs::path("/sys/fs/cgroup/unified");
  return root / unified_path.substr(1);
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

bool runtime_lists(const std::string& runtime, const std::string& id) {
  auto list = dt::run_command({runtime, "list", "-q"});
  REQUIRE(list.exit_code == 0);
  std::istringstream ids(list.out);
  for (std::string line; std::getline(ids, line);) {
    if (trimmed(line) == id) return true;
  }
  return false;
}

void check_default_spec_container(const std::string& runtime) {
  auto bundle = dt::OciBundle::with_default_spec();
  auto container =
      dt::value_or_throw(dt::Container::start(runtime, bundle, dt::unique_container_id(runtime)));
  REQUIRE(container.init_pid() > 0);
  INFO(runtime << " container " << container.id() << ", init pid " << container.init_pid());

  auto state = dt::value_or_throw(container.state());
  CHECK(state.value("status", "") == "running");
  CHECK(state.value("pid", -1) == container.init_pid());

  auto status = status_of(container.init_pid());
  CHECK(status["Name"] == "sleep");
  CHECK(status["Uid"] == "0\t0\t0\t0");
  CHECK(cap_mask(status, "CapEff") == kDefaultSpecCaps);
  CHECK(cap_mask(status, "CapPrm") == kDefaultSpecCaps);
  CHECK(cap_mask(status, "CapBnd") == kDefaultSpecCaps);
  // The spec lists ambient caps but no inheritable ones; the kernel only
  // keeps ambient caps that are also inheritable, so none survive.
  CHECK(cap_mask(status, "CapAmb") == 0);
  CHECK(status["NoNewPrivs"] == "1");
  // pid 1 in the container's own pid namespace.
  CHECK(status["NSpid"].ends_with("\t1"));
}

}  // namespace

TEST_CASE("harness: a runc container from the default spec runs sleep with the spec's caps",
          "[harness][root][runc]") {
  if (auto why = dt::missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  check_default_spec_container("runc");
}

TEST_CASE("harness: a crun container from the default spec runs sleep with the spec's caps",
          "[harness][root][crun]") {
  if (auto why = dt::missing_requirement({"root", "crun", "busybox"})) {
    DW_SKIP(*why);
  }
  check_default_spec_container("crun");
}

TEST_CASE("harness: runc exec --cap adds CAP_SYS_ADMIN to the exec'd process only",
          "[harness][root][runc]") {
  if (auto why = dt::missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = dt::OciBundle::with_default_spec();
  auto container =
      dt::value_or_throw(dt::Container::start("runc", bundle, dt::unique_container_id("exec")));

  pid_t exec_pid =
      dt::value_or_throw(container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  REQUIRE(exec_pid > 0);
  REQUIRE(exec_pid != container.init_pid());

  auto exec_status = status_of(exec_pid);
  CHECK(exec_status["Name"] == "sleep");
  CHECK(cap_mask(exec_status, "CapEff") == (kDefaultSpecCaps | kCapSysAdmin));
  CHECK(cap_mask(exec_status, "CapBnd") == (kDefaultSpecCaps | kCapSysAdmin));
  CHECK(cap_mask(status_of(container.init_pid()), "CapEff") == kDefaultSpecCaps);
  // The exec'd process joined the container's pid namespace.
  auto ns = [](pid_t pid) { return fs::read_symlink("/proc/" + std::to_string(pid) + "/ns/pid"); };
  CHECK(ns(exec_pid) == ns(container.init_pid()));

  // Where the test runner's own bounding set lacks CAP_SYS_RESOURCE (as in
  // some sandboxed CI hosts), runc cannot grant it and the harness reports
  // runc's message.
  constexpr uint64_t kCapSysResource = 1ull << 24;
  if ((cap_mask(status_of(::getpid()), "CapBnd") & kCapSysResource) == 0) {
    auto refused = container.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_RESOURCE"});
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Catch::Contains("unable to apply caps"));
  }
}

TEST_CASE("harness: runc update changes the memory and pids limits the kernel reports",
          "[harness][root][runc]") {
  if (auto why = dt::missing_requirement({"root", "runc", "busybox"})) {
    DW_SKIP(*why);
  }
  auto bundle = dt::OciBundle::with_default_spec();
  bundle.config()["linux"]["resources"]["memory"] = {{"limit", 67108864}};
  bundle.config()["linux"]["resources"]["pids"] = {{"limit", 32}};
  bundle.write_config();
  auto container =
      dt::value_or_throw(dt::Container::start("runc", bundle, dt::unique_container_id("update")));
  pid_t pid = container.init_pid();

  fs::path memory = cgroup_dir(pid, "memory");
  fs::path pids = cgroup_dir(pid, "pids");
  bool v1_memory = fs::exists(memory / "memory.limit_in_bytes");
  fs::path memory_file = memory / (v1_memory ? "memory.limit_in_bytes" : "memory.max");
  INFO("memory limit file " << memory_file << ", pids file " << pids / "pids.max");
  CHECK(trimmed(slurp(memory_file)) == "67108864");
  CHECK(trimmed(slurp(pids / "pids.max")) == "32");

  dt::value_or_throw(container.update({"--memory", "128M", "--pids-limit", "100"}));
  CHECK(trimmed(slurp(memory_file)) == "134217728");
  CHECK(trimmed(slurp(pids / "pids.max")) == "100");
}

TEST_CASE("harness: a user-namespaced container runs as the mapped uid and leaves /dev/null alone",
          "[harness][root][runc][crun]") {
  for (std::string runtime : {"runc", "crun"}) {
    DYNAMIC_SECTION(runtime) {
      if (auto why = dt::missing_requirement({"root", "busybox", runtime})) {
        WARN("skipped: " << *why);
        continue;
      }
      struct stat before {};
      REQUIRE(::stat("/dev/null", &before) == 0);
      auto bundle = dt::OciBundle::with_default_spec();
      bundle.enable_user_namespace(100000, 65536);
      auto container = dt::value_or_throw(
          dt::Container::start(runtime, bundle, dt::unique_container_id("userns")));
      auto status = status_of(container.init_pid());
      CHECK(status["Uid"] == "100000\t100000\t100000\t100000");
      CHECK(cap_mask(status, "CapEff") == kDefaultSpecCaps);  // relative to its own user ns
      auto inside = container.exec_wait({"id", "-u"});
      CHECK(inside.exit_code == 0);
      CHECK(trimmed(inside.out) == "0");

      // crun chowns the stdio it inherits to the container's root; the harness
      // must never hand it the host's /dev/null.
      struct stat after {};
      REQUIRE(::stat("/dev/null", &after) == 0);
      CHECK(after.st_uid == before.st_uid);
      CHECK(after.st_gid == before.st_gid);
    }
  }
}

TEST_CASE("harness: container and bundle guards leave no container, cgroup or directory behind",
          "[harness][root][runc][crun]") {
  for (std::string runtime : {"runc", "crun"}) {
    if (auto why = dt::missing_requirement({"root", "busybox", runtime})) {
      WARN("skipped " << runtime << ": " << *why);
      continue;
    }
    std::string id;
    fs::path dir, pids_cgroup;
    pid_t init_pid = -1;
    {
      auto bundle = dt::OciBundle::with_default_spec();
      dir = bundle.dir();
      auto container = dt::value_or_throw(
          dt::Container::start(runtime, bundle, dt::unique_container_id("gone")));
      id = container.id();
      init_pid = container.init_pid();
      pids_cgroup = cgroup_dir(init_pid, "pids");
      REQUIRE(runtime_lists(runtime, id));
      REQUIRE(fs::exists(pids_cgroup));
    }
    INFO(runtime << " container " << id);
    CHECK_FALSE(runtime_lists(runtime, id));
    CHECK_FALSE(fs::exists(dir));
    CHECK_FALSE(fs::exists(pids_cgroup));
    // The init is dead: gone, or a zombie until the host's init reaps it.
    std::string stat = slurp("/proc/" + std::to_string(init_pid) + "/stat");
    CHECK((stat.empty() || stat.find(") Z ") != std::string::npos));
  }
}

TEST_CASE("harness: a bundle deletes a container still running from it, even one it did not start",
          "[harness][root][runc]") {
  if (auto why = dt::missing_requirement({"root", "busybox", "runc"})) {
    DW_SKIP(*why);
  }
  std::string id = dt::unique_container_id("orphan");
  fs::path dir;
  {
    auto bundle = dt::OciBundle::with_default_spec();
    dir = bundle.dir();
    fs::path stdin_path = dir / "orphan.stdin";
    std::ofstream(stdin_path).flush();
    auto runc =
        dt::ChildProcess::start({"runc", "run", "-d", "--bundle", dir.string(), id},
                                {.stdin_path = stdin_path, .output_path = dir / "orphan.log"});
    REQUIRE(runc.wait_for(60s) == 0);
    REQUIRE(runtime_lists("runc", id));
  }
  CHECK_FALSE(runtime_lists("runc", id));
  CHECK_FALSE(fs::exists(dir));
}

TEST_CASE("harness: a child process guard kills its whole process group and reaps the child",
          "[harness]") {
  pid_t shell = -1, grandchild = -1;
  {
    // The shell prints the pid of a background sleep, then waits on it.
    fs::path out = fs::path("/var/tmp") / ("dwtest-guard-" + std::to_string(::getpid()));
    auto guard =
        dt::ChildProcess::start({"sh", "-c", "sleep 3600 & echo $!; wait"}, {.output_path = out});
    shell = guard.pid();
    for (int i = 0; i < 200 && grandchild < 0; ++i) {
      std::string text = trimmed(slurp(out));
      if (!text.empty()) grandchild = std::stoi(text);
      std::this_thread::sleep_for(10ms);
    }
    fs::remove(out);
    REQUIRE(grandchild > 0);
    REQUIRE_FALSE(guard.poll().has_value());
  }
  CHECK_FALSE(fs::exists("/proc/" + std::to_string(shell)));
  // The grandchild got SIGKILL with the group; it may linger as a zombie
  // until init reaps it.
  std::string stat;
  for (int i = 0; i < 100; ++i) {
    stat = slurp("/proc/" + std::to_string(grandchild) + "/stat");
    if (stat.empty() || stat.find(") Z ") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  CHECK((stat.empty() || stat.find(") Z ") != std::string::npos));
}

TEST_CASE("harness: run_command captures stdout, stderr, exit code and feeds stdin", "[harness]") {
  auto result = dt::run_command({"sh", "-c", "cat; echo oops >&2; exit 3"}, "hello\n");
  CHECK(result.exit_code == 3);
  CHECK(result.out == "hello\n");
  CHECK(result.err == "oops\n");

  auto killed = dt::run_command({"sh", "-c", "kill -9 $$"});
  CHECK(killed.exit_code == 128 + 9);

  CHECK_THROWS_WITH(dt::run_command({"sleep", "5"}, {}, 200ms), Catch::Contains("did not finish"));
  CHECK_THROWS_WITH(dt::run_command({"no-such-program-dwtest"}),
                    Catch::Contains("not an executable in PATH"));
}

TEST_CASE("harness: missing_requirement names what is missing and rejects unknown needs",
          "[harness]") {
  CHECK_FALSE(dt::missing_requirement({}).has_value());
  CHECK_THROWS_AS(dt::missing_requirement({"docker"}), std::invalid_argument);
  if (::geteuid() != 0) {
    auto why = dt::missing_requirement({"root"});
    REQUIRE(why.has_value());
    CHECK_THAT(*why, Catch::Contains("root"));
  }
}
