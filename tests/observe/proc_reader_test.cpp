#include "observe/proc_reader.hpp"

#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

using namespace driftwatch::observe;
namespace fs = std::filesystem;

namespace {

// The value of a Result that must hold one; fails the test with its message.
template <class T>
T ok(driftwatch::Result<T> result) {
  INFO((result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return std::move(*result);
}

const fs::path kFixtureProc = fs::path(DRIFTWATCH_FIXTURES) / "proc";

// A scratch /proc stand-in, removed when the test ends however it ends.
class TempProc {
 public:
  TempProc() {
    std::string pattern = (fs::temp_directory_path() / "driftwatch-proc-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    root_ = pattern;
  }
  ~TempProc() {
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }
  TempProc(const TempProc&) = delete;
  TempProc& operator=(const TempProc&) = delete;

  const fs::path& root() const { return root_; }
  void write(pid_t pid, const std::string& file, const std::string& text) const {
    fs::create_directories(root_ / std::to_string(pid));
    std::ofstream(root_ / std::to_string(pid) / file, std::ios::binary) << text;
  }

 private:
  fs::path root_;
};

// A child that has exited but is not reaped yet (a zombie); reaped when the
// guard goes, even when the test fails.
class ZombieChild {
 public:
  ZombieChild() {
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) ::_exit(0);
    siginfo_t info{};
    // WNOWAIT: wait until it has exited, but leave it a zombie.
    REQUIRE(::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOWAIT) == 0);
  }
  ~ZombieChild() { reap(); }
  ZombieChild(const ZombieChild&) = delete;
  ZombieChild& operator=(const ZombieChild&) = delete;

  pid_t pid() const { return pid_; }
  void reap() {
    if (pid_ > 0) ::waitpid(pid_, nullptr, 0);
    reaped_ = pid_;
    pid_ = -1;
  }
  pid_t reaped_pid() const { return reaped_; }

 private:
  pid_t pid_ = -1;
  pid_t reaped_ = -1;
};

}  // namespace

TEST_CASE("proc reader: reads a fixture process through every accessor", "[observe]") {
  const ProcReader reader{kFixtureProc};
  auto status = reader.status(4321);
  REQUIRE(status.has_value());
  CHECK(status->nspid == std::vector<int32_t>{4321, 2});
  CHECK(status->seccomp == 2);

  auto stat = reader.stat(4321);
  REQUIRE(stat.has_value());
  CHECK(stat->pid == 4321);
  CHECK(stat->start_time_ticks == 65097);

  auto limits = reader.limits(4321);
  REQUIRE(limits.has_value());
  CHECK(limits->size() == 16);

  auto mounts = reader.mountinfo(4321);
  REQUIRE(mounts.has_value());
  CHECK(mounts->size() == 38);

  auto cgroup = reader.cgroup(4321);
  REQUIRE(cgroup.has_value());
  CHECK(cgroup->unified == "/");

  auto cmdline = reader.cmdline(4321);
  REQUIRE(cmdline.has_value());
  CHECK(*cmdline == std::vector<std::string>{"/usr/bin/sleep", "100000"});

  auto exe = reader.exe_path(4321);
  REQUIRE(exe.has_value());
  CHECK(*exe == "/usr/bin/sleep");

  auto net = reader.namespace_inode(4321, "net");
  REQUIRE(net.has_value());
  CHECK(*net == 4026532183u);
  auto host_net = reader.namespace_inode(1234, "net");
  REQUIRE(host_net.has_value());
  CHECK(*host_net == 4026531833u);
  // bwrap --unshare-all leaves the time namespace shared.
  CHECK(ok(reader.namespace_inode(4321, "time")) == ok(reader.namespace_inode(1234, "time")));
  for (const char* kind : kNamespaceKinds) {
    INFO(kind);
    CHECK(reader.namespace_inode(4321, kind).has_value());
  }
}

TEST_CASE("proc reader: reads the LSM label from attr/current, and no attr/ as no label",
          "[observe]") {
  const ProcReader reader{kFixtureProc};
  auto labelled = reader.lsm_label(4321);
  REQUIRE(labelled.has_value());
  CHECK(*labelled == "docker-default (enforce)");
  auto unlabelled = reader.lsm_label(1234);
  REQUIRE(unlabelled.has_value());
  CHECK(*unlabelled == std::nullopt);
}

TEST_CASE("proc reader: lists only the numeric entries of its root as pids", "[observe]") {
  const ProcReader reader{kFixtureProc};
  CHECK(reader.pids() == std::vector<pid_t>{777, 1234, 4321});  // README.md is skipped
  CHECK(ProcReader{"/nonexistent/driftwatch"}.pids().empty());
}

TEST_CASE("proc reader: reports a process that does not exist as vanished", "[observe]") {
  const ProcReader reader{kFixtureProc};
  auto status = reader.status(99999);
  REQUIRE_FALSE(status.has_value());
  CHECK(status.error().vanished);
  CHECK_THAT(status.error().message, Catch::Contains("/99999/status"));
  CHECK(reader.namespace_inode(99999, "net").error().vanished);
  CHECK(reader.exe_path(99999).error().vanished);
  CHECK(reader.mountinfo(99999).error().vanished);
  CHECK(reader.lsm_label(99999).error().vanished);
}

TEST_CASE("proc reader: reports an empty status or stat as a process that exited", "[observe]") {
  const ProcReader reader{kFixtureProc};
  auto status = reader.status(777);
  REQUIRE_FALSE(status.has_value());
  CHECK(status.error().vanished);
  auto stat = reader.stat(777);
  REQUIRE_FALSE(stat.has_value());
  CHECK(stat.error().vanished);
}

TEST_CASE("proc reader: prefixes a parse error with the file it read, and it is not vanished",
          "[observe]") {
  TempProc proc;
  proc.write(42, "status", "Name:\tx\nCapEff:\tzz\n");
  proc.write(42, "stat", "42 (x) R\n");
  const ProcReader reader{proc.root()};
  auto status = reader.status(42);
  REQUIRE_FALSE(status.has_value());
  CHECK_FALSE(status.error().vanished);
  CHECK(status.error().message ==
        (proc.root() / "42/status").string() + ": status: bad CapEff value 'zz'");
  auto stat = reader.stat(42);
  REQUIRE_FALSE(stat.has_value());
  CHECK_THAT(stat.error().message,
             Catch::StartsWith((proc.root() / "42/stat").string() + ": stat:"));
}

TEST_CASE("proc reader: refuses a file larger than 1 MiB instead of cutting it short",
          "[observe]") {
  TempProc proc;
  std::string line = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
  std::string big;
  while (big.size() <= (1u << 20)) big += line;
  proc.write(42, "mountinfo", big);
  proc.write(43, "mountinfo", big.substr(0, (1u << 20) - ((1u << 20) % line.size())));
  const ProcReader reader{proc.root()};
  auto too_big = reader.mountinfo(42);
  REQUIRE_FALSE(too_big.has_value());
  CHECK_FALSE(too_big.error().vanished);
  CHECK_THAT(too_big.error().message, Catch::Contains("larger than 1048576 bytes"));
  auto just_fits = reader.mountinfo(43);
  REQUIRE(just_fits.has_value());
  CHECK(just_fits->size() == (1u << 20) / line.size());
}

TEST_CASE("proc reader: refuses a namespace kind that is not a plain name", "[observe]") {
  const ProcReader reader{kFixtureProc};
  CHECK_FALSE(reader.namespace_inode(1234, "../exe").has_value());
  CHECK_FALSE(reader.namespace_inode(1234, "").has_value());
}

TEST_CASE("proc reader: reads /proc/self and agrees with getpid, geteuid and getrlimit",
          "[observe]") {
  const ProcReader reader{"/proc"};
  const pid_t self = ::getpid();

  auto status = reader.status(self);
  REQUIRE(status.has_value());
  CHECK(status->tgid == self);
  CHECK(status->ppid == ::getppid());
  CHECK(status->uid[0] == ::getuid());
  CHECK(status->uid[1] == ::geteuid());
  CHECK(status->gid[1] == ::getegid());
  REQUIRE_FALSE(status->nspid.empty());
  CHECK(status->nspid.front() == self);
  // The permitted set always contains the effective one.
  CHECK((status->cap_effective & ~status->cap_permitted) == 0);

  auto stat = reader.stat(self);
  REQUIRE(stat.has_value());
  CHECK(stat->pid == self);
  CHECK(stat->ppid == ::getppid());
  CHECK(stat->state == 'R');
  CHECK(stat->start_time_ticks > 0);

  auto limits = reader.limits(self);
  REQUIRE(limits.has_value());
  CHECK(limits->size() == 16);
  rlimit nofile{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &nofile) == 0);
  auto row = std::find_if(limits->begin(), limits->end(),
                          [](const Rlimit& r) { return r.name == "RLIMIT_NOFILE"; });
  REQUIRE(row != limits->end());
  CHECK(row->soft == static_cast<uint64_t>(nofile.rlim_cur));
  CHECK(row->hard == static_cast<uint64_t>(nofile.rlim_max));

  auto mounts = reader.mountinfo(self);
  REQUIRE(mounts.has_value());
  CHECK(std::any_of(mounts->begin(), mounts->end(),
                    [](const MountEntry& m) { return m.mount_point == "/"; }));

  auto cgroup = reader.cgroup(self);
  REQUIRE(cgroup.has_value());

  auto cmdline = reader.cmdline(self);
  REQUIRE(cmdline.has_value());
  CHECK_FALSE(cmdline->empty());

  auto exe = reader.exe_path(self);
  REQUIRE(exe.has_value());
  CHECK(*exe == fs::read_symlink("/proc/self/exe").string());

  for (const char* kind : kNamespaceKinds) {
    INFO(kind);
    struct stat st {};
    REQUIRE(::stat((std::string("/proc/self/ns/") + kind).c_str(), &st) == 0);
    auto inode = reader.namespace_inode(self, kind);
    REQUIRE(inode.has_value());
    CHECK(*inode == st.st_ino);
  }

  // No LSM on some machines (EINVAL), a label on others; never an error.
  CHECK(reader.lsm_label(self).has_value());

  auto pids = reader.pids();
  CHECK(std::binary_search(pids.begin(), pids.end(), self));
  CHECK(std::binary_search(pids.begin(), pids.end(), 1));
}

TEST_CASE(
    "proc reader: reads a zombie's status but reports its mount table and namespaces "
    "as vanished",
    "[observe]") {
  const ProcReader reader{"/proc"};
  ZombieChild child;

  auto stat = reader.stat(child.pid());
  REQUIRE(stat.has_value());
  CHECK(stat->state == 'Z');
  auto status = reader.status(child.pid());
  REQUIRE(status.has_value());
  CHECK(status->tgid == child.pid());
  auto cmdline = reader.cmdline(child.pid());
  REQUIRE(cmdline.has_value());
  CHECK(cmdline->empty());

  // The kernel answers EINVAL for a zombie's mountinfo and ENOENT for its
  // namespace links and exe: all the same race, an exited process.
  auto mounts = reader.mountinfo(child.pid());
  REQUIRE_FALSE(mounts.has_value());
  CHECK(mounts.error().vanished);
  auto net = reader.namespace_inode(child.pid(), "net");
  REQUIRE_FALSE(net.has_value());
  CHECK(net.error().vanished);
  auto exe = reader.exe_path(child.pid());
  REQUIRE_FALSE(exe.has_value());
  CHECK(exe.error().vanished);

  child.reap();
  auto gone = reader.status(child.reaped_pid());
  REQUIRE_FALSE(gone.has_value());
  CHECK(gone.error().vanished);
}
