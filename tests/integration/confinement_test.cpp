// The real `driftwatch run` after startup: whom it runs as, what it holds,
// what it can write, and that it still attests a real runc container. The
// attempts themselves (writes, ptrace, mount, connect, …) are made with the
// same confine() in tests/app/confine_test.cpp.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <catch2/catch.hpp>

#include "app/confine.hpp"
#include "common/file_io.hpp"
#include "integration/daemon_harness.hpp"
#include "observe/proc_parsers.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"
#include "support/wait.hpp"

using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

template <size_t N>
uint64_t mask_of(const int (&caps)[N]) {
  uint64_t mask = 0;
  for (int cap : caps) mask |= uint64_t{1} << cap;
  return mask;
}

driftwatch::observe::ProcStatus status_of(pid_t pid) {
  auto text = driftwatch::read_file("/proc/" + std::to_string(pid) + "/status", 1 << 16);
  REQUIRE(text);
  auto status = driftwatch::observe::parse_status(*text);
  REQUIRE(status);
  return *status;
}

void check_credentials(const driftwatch::observe::ProcStatus& status,
                       const driftwatch::app::DaemonUser& user, uint64_t capabilities) {
  for (int i = 0; i < 4; ++i) {
    CHECK(status.uid[i] == user.uid);
    CHECK(status.gid[i] == user.gid);
  }
  CHECK(status.uid[0] != 0);
  CHECK(status.groups.empty());
  CHECK(status.cap_effective == capabilities);
  CHECK(status.cap_permitted == capabilities);
  CHECK(status.cap_bounding == capabilities);
  CHECK(status.cap_inheritable == 0);
  CHECK(status.cap_ambient == 0);
  CHECK(status.no_new_privs);
  CHECK(status.seccomp == 2);
}

// The daemon's pid: the process whose command line names its config file.
pid_t daemon_pid(const DaemonUnderTest& daemon) {
  const std::string config = daemon.config_path().string();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    auto cmdline = driftwatch::read_file(entry.path() / "cmdline", 1 << 16);
    if (!cmdline) continue;
    if (cmdline->find(std::string("run") + '\0' + "--config" + '\0' + config + '\0') !=
        std::string::npos)
      return std::stoi(name);
  }
  return -1;
}

std::string link_target(const fs::path& link) {
  std::error_code ec;
  return fs::read_symlink(link, ec).string();
}

// Every entry below `dir` (not following links) that is not owned by `uid`.
std::vector<std::string> not_owned_by(const fs::path& dir, uid_t uid) {
  std::vector<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) == 0 && st.st_uid != uid)
      out.push_back(it->path().string());
  }
  return out;
}

}  // namespace

TEST_CASE(
    "confinement: the running daemon is three processes of its own user: a Landlocked front with "
    "CAP_DAC_READ_SEARCH alone and read-only mounts, a sampler with CAP_DAC_READ_SEARCH alone "
    "that writes nothing, and its proc peer with CAP_SYS_PTRACE alone that opens nothing but "
    "O_PATH, owning its state dir and still attesting a container",
    "[root][runc][integration][daemon]") {
  if (auto why = missing_requirement({"root", "runc", "busybox"})) DW_SKIP(*why);
  auto user = driftwatch::app::resolve_daemon_user();
  REQUIRE(user);
  auto bundle = OciBundle::with_default_spec();
  auto container =
      value_or_throw(Container::start("runc", bundle, unique_container_id("confined")));
  DaemonUnderTest daemon;
  daemon.start();
  const pid_t pid = daemon_pid(daemon);
  REQUIRE(pid > 0);
  INFO("daemon pid " << pid << "\n" << daemon.log());

  // /proc/PID/status, as the kernel sees the daemon's two processes.
  auto health = daemon.get("/healthz");
  INFO(health.dump());
  CHECK(health["processes"]["front"]["pid"] == pid);
  REQUIRE(health["processes"]["sampler"]["pid"].is_number_integer());
  const pid_t sampler = health["processes"]["sampler"]["pid"].get<pid_t>();
  CHECK(sampler != pid);
  {
    INFO("front");
    check_credentials(status_of(pid), *user, mask_of(driftwatch::app::kFrontCapabilities));
  }
  {
    INFO("sampler");
    const auto status = status_of(sampler);
    CHECK(status.ppid == pid);
    check_credentials(status, *user, mask_of(driftwatch::app::kSamplerCapabilities));
  }
  REQUIRE(health["processes"]["proc_peer"]["pid"].is_number_integer());
  const pid_t peer = health["processes"]["proc_peer"]["pid"].get<pid_t>();
  CHECK(peer != pid);
  CHECK(peer != sampler);
  {
    INFO("proc peer");
    const auto status = status_of(peer);
    CHECK(status.ppid == sampler);
    check_credentials(status, *user, mask_of(driftwatch::app::kProcPeerCapabilities));
  }
  // No process holds both: the one that reads content cannot reach other
  // users' roots and memory, the one that can reads no content.
  CHECK((mask_of(driftwatch::app::kSamplerCapabilities) &
         mask_of(driftwatch::app::kProcPeerCapabilities)) == 0);
  CHECK_THAT(daemon.log(), Catch::Contains("confined: running as " + user->name));
  CHECK(health["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(health["confinement"]["proc_peer"]["role"] == "proc_peer");
  CHECK(health["confinement"]["proc_peer"]["capabilities"] == json({"CAP_SYS_PTRACE"}));
  CHECK(health["confinement"]["proc_peer"]["opens"] == "O_PATH only: no file content can be read");
  CHECK(health["confinement"]["proc_peer"]["read_only_mounts"] == true);
  CHECK(health["confinement"]["sampler"]["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(health["confinement"]["front"]["role"] == "front");
  CHECK(health["confinement"]["front"]["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(health["confinement"]["front"]["landlocked"] == true);
  CHECK(health["confinement"]["sampler"]["role"] == "sampler");
  CHECK(health["confinement"]["sampler"]["landlocked"] == false);
  CHECK(health["confinement"]["sampler"]["denied_syscalls"].size() >
        health["confinement"]["front"]["denied_syscalls"].size());

  // The state dir is the daemon's, 0700, with all it holds.
  const fs::path state = daemon.dir() / "state";
  struct stat st {};
  REQUIRE(::lstat(state.c_str(), &st) == 0);
  CHECK(st.st_uid == user->uid);
  CHECK((st.st_mode & 07777) == 0700);

  // Monitoring works confined: a signed launch for a real container is
  // accepted (written to the state dir), and the container sampled and
  // attested (namespaces, sandbox root and bundle read).
  auto reply = daemon.post(
      "/v1/launch-events",
      daemon.sign("launch",
                  DaemonUnderTest::launch_payload("L-confined-1", container.id(), bundle.config()),
                  "cp-1"));
  CHECK(reply.status == 202);
  auto attested = daemon.wait_for_verdict(container.id(), "attested");
  INFO(attested.dump());
  CHECK(attested["verdict"] == "attested");
  CHECK(attested["consumed_config_sha256"].is_string());
  CHECK(not_owned_by(state, user->uid).empty());

  // Each in a mount namespace of its own, read-only (the front's state dir
  // excepted); the sampler compares with the host's, read before, so the
  // sandbox above is attested, not "private" in every namespace.
  const std::string own_mnt = link_target("/proc/" + std::to_string(pid) + "/ns/mnt");
  const std::string host_mnt = link_target("/proc/self/ns/mnt");
  REQUIRE_FALSE(host_mnt.empty());
  CHECK(own_mnt != host_mnt);
  const std::string sampler_mnt = link_target("/proc/" + std::to_string(sampler) + "/ns/mnt");
  CHECK(sampler_mnt != host_mnt);
  CHECK(sampler_mnt != own_mnt);
  const std::string peer_mnt = link_target("/proc/" + std::to_string(peer) + "/ns/mnt");
  CHECK(peer_mnt != host_mnt);
  CHECK(peer_mnt != sampler_mnt);
  auto mountinfo = driftwatch::read_file("/proc/" + std::to_string(pid) + "/mountinfo", 1 << 20);
  REQUIRE(mountinfo);
  auto mounts = driftwatch::observe::parse_mountinfo(*mountinfo);
  REQUIRE(mounts);
  bool root_ro = false, state_rw = false;
  for (const auto& m : *mounts) {
    if (m.mount_point == "/") root_ro = m.read_only();
    if (m.mount_point == fs::canonical(state).string()) state_rw = !m.read_only();
  }
  CHECK(root_ro);
  CHECK(state_rw);
  // The node key, as each process's mount namespace shows it (/proc/PID/root
  // resolves there): the front's, and nowhere else; an empty mount covers
  // the state dir for the sampler and its peer, who run as the same user.
  const std::string state_path = fs::canonical(state).string();
  auto key_seen_by = [&](pid_t who) {
    return fs::exists("/proc/" + std::to_string(who) + "/root" + state_path + "/node.key");
  };
  CHECK(fs::exists(state / "node.key"));
  CHECK(key_seen_by(pid));
  CHECK_FALSE(key_seen_by(sampler));
  CHECK_FALSE(key_seen_by(peer));
  CHECK(health["confinement"]["sampler"]["hidden_paths"].dump().find(state_path) !=
        std::string::npos);
  CHECK_THAT(daemon.log(), !Catch::Contains("CONFINEMENT WEAKER"));
  health = daemon.get("/healthz");
  CHECK(health["user"]["uid"] == user->uid);
  CHECK(health["confinement"]["front"]["read_only_mounts"] == true);
  CHECK(health["confinement"]["sampler"]["read_only_mounts"] == true);
  CHECK(daemon.stop() == 0);
  // The sampler ends with the front.
  driftwatch::testing::wait_until("the sampler process to end", std::chrono::seconds(5),
                                  [&] { return !fs::exists("/proc/" + std::to_string(sampler)); });
  driftwatch::testing::wait_until("the proc peer to end", std::chrono::seconds(5),
                                  [&] { return !fs::exists("/proc/" + std::to_string(peer)); });
}

TEST_CASE("confinement: a state_dir writable by others is refused at startup, its mode untouched",
          "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  DaemonUnderTest daemon;
  const fs::path shared = daemon.dir() / "shared-tmp";
  fs::create_directory(shared);
  fs::permissions(shared, fs::perms(01777), fs::perm_options::replace);
  auto config = json::parse(std::ifstream(daemon.config_path()));
  config["state_dir"] = shared.string();
  const fs::path config_path = daemon.dir() / "shared-tmp.json";
  std::ofstream(config_path) << config.dump();

  auto result = run_command({DRIFTWATCH_BINARY, "run", "--config", config_path.string()}, {},
                            std::chrono::seconds(30));
  INFO(result.out << result.err);
  CHECK(result.exit_code == 2);
  CHECK_THAT(result.err, Catch::Contains("state_dir " + shared.string() +
                                         " is writable by others (mode 1777): use a directory of "
                                         "its own, e.g. /var/lib/driftwatch"));
  struct stat st {};
  REQUIRE(::lstat(shared.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 01777);
  CHECK(st.st_uid == 0);
  CHECK(fs::is_empty(shared));
}

TEST_CASE(
    "confinement: a state dir left by a run as root is handed over to the daemon user, and what "
    "it held survives",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  auto user = driftwatch::app::resolve_daemon_user();
  REQUIRE(user);
  DaemonUnderTest daemon;
  daemon.start();
  json config = json::parse(R"({"ociVersion": "1.0.2", "process": {"args": ["sleep", "1"]},
                                "root": {"path": "rootfs"}})");
  auto reply = daemon.post(
      "/v1/launch-events",
      daemon.sign("launch", DaemonUnderTest::launch_payload("L-handover-1", "sb-handover", config),
                  "cp-1"));
  INFO(reply.body << "\n" << daemon.log());
  REQUIRE(reply.status == 202);
  CHECK(daemon.stop() == 0);

  // What an earlier version, running as root, would have left: all root's,
  // with the journals/ it always made.
  const fs::path state = daemon.dir() / "state";
  fs::create_directories(state / "journals");
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(state, ec); !ec && it != fs::end(it);
       it.increment(ec))
    REQUIRE(::lchown(it->path().c_str(), 0, 0) == 0);
  REQUIRE(::lchown(state.c_str(), 0, 0) == 0);
  REQUIRE_FALSE(not_owned_by(state, 0).size());

  daemon.start();
  CHECK_THAT(daemon.log(), Catch::Contains("handed"));
  CHECK_THAT(daemon.log(), Catch::Contains("restored 1 accepted"));
  // The accepted store was read, and can be written as the daemon user.
  auto again = daemon.post(
      "/v1/launch-events",
      daemon.sign("launch", DaemonUnderTest::launch_payload("L-handover-2", "sb-handover2", config),
                  "cp-1"));
  CHECK(again.status == 202);
  struct stat st {};
  REQUIRE(::lstat(state.c_str(), &st) == 0);
  CHECK(st.st_uid == user->uid);
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(not_owned_by(state, user->uid).empty());
  CHECK(daemon.stop() == 0);
}

namespace {

// Kills the daemon's `process` ("sampler", "proc_peer" of /healthz) and
// sees the daemon say why (`how` in its log) and exit 1.
void check_stops_when_killed(const char* process, const std::string& how) {
  DaemonUnderTest daemon;
  daemon.start();
  auto health = daemon.get("/healthz");
  INFO(health.dump());
  REQUIRE(health["processes"][process]["pid"].is_number_integer());
  const pid_t pid = health["processes"][process]["pid"].get<pid_t>();
  REQUIRE(::kill(pid, SIGKILL) == 0);
  driftwatch::testing::wait_until("the daemon to notice", std::chrono::seconds(30), [&] {
    return daemon.log().find("nothing can be sampled any more") != std::string::npos;
  });
  INFO(daemon.log());
  CHECK_THAT(daemon.log(), Catch::Contains(how));
  CHECK(daemon.stop() == 1);
}

}  // namespace

TEST_CASE(
    "confinement: when the sampler process dies, the daemon says why and exits 1 for its service "
    "manager to restart it, instead of serving stale verdicts",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  check_stops_when_killed("sampler", "was killed by SIGKILL");
}

TEST_CASE(
    "confinement: when the sampler's proc peer dies, the sampler exits and the daemon stops "
    "with exit 1, instead of sampling without namespaces",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  // The sampler's exit code for a failed proc peer (run_sampler_process).
  check_stops_when_killed("proc_peer", "exited with status 5");
}
