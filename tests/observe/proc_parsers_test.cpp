#include "observe/proc_parsers.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

using namespace driftwatch::observe;

namespace {

// The value of a Result that must hold one; fails the test with its message.
template <class T>
T ok(driftwatch::Result<T> result) {
  INFO((result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return std::move(*result);
}

std::string fixture(const std::string& relative) {
  std::ifstream in(std::string(DRIFTWATCH_FIXTURES) + "/" + relative, std::ios::binary);
  REQUIRE(in.good());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The fixture text with the whole line starting with `key:` replaced (or
// removed when `replacement` is empty).
std::string replace_line(const std::string& text, const std::string& key,
                         const std::string& replacement) {
  std::istringstream in(text);
  std::string out, line;
  bool found = false;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      found = true;
      if (!replacement.empty()) out += replacement + "\n";
    } else {
      out += line + "\n";
    }
  }
  REQUIRE(found);
  return out;
}

// A stat line of the fixture shape with a chosen comm.
std::string stat_with_comm(const std::string& comm) {
  return "42 (" + comm +
         ") R 7 42 42 0 -1 4194304 139 0 0 0 0 0 0 0 20 0 1 0 66315 2990080 393 "
         "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n";
}

}  // namespace

// ---- status ---------------------------------------------------------------

TEST_CASE("status parser: reads identity, capabilities and NNP of a host root process",
          "[observe]") {
  auto status = parse_status(fixture("proc/1234/status"));
  REQUIRE(status.has_value());
  CHECK(status->name == "sleep");
  CHECK(status->tgid == 1234);
  CHECK(status->ppid == 1);
  for (int i = 0; i < 4; ++i) {
    CHECK(status->uid[i] == 0);
    CHECK(status->gid[i] == 0);
  }
  CHECK(status->groups.empty());  // "Groups:\t \n" on this machine
  CHECK(status->nspid == std::vector<int32_t>{1234});
  CHECK(status->threads == 1);
  CHECK(status->cap_inheritable == 0);
  CHECK(status->cap_permitted == 0x000001fffeffffffULL);
  CHECK(status->cap_effective == 0x000001fffeffffffULL);
  CHECK(status->cap_bounding == 0x000001fffeffffffULL);
  CHECK(status->cap_ambient == 0);
  CHECK_FALSE(status->no_new_privs);
  CHECK(status->seccomp == 0);
}

TEST_CASE("status parser: reads a bwrap sandbox with no capabilities, NNP and a seccomp filter",
          "[observe]") {
  auto status = parse_status(fixture("proc/4321/status"));
  REQUIRE(status.has_value());
  CHECK(status->tgid == 4321);
  CHECK(status->ppid == 4320);
  CHECK(status->nspid == std::vector<int32_t>{4321, 2});
  CHECK(status->cap_permitted == 0);
  CHECK(status->cap_effective == 0);
  CHECK(status->cap_bounding == 0);
  CHECK(status->no_new_privs);
  CHECK(status->seccomp == 2);
}

TEST_CASE("status parser: reads supplementary groups and keeps spaces in a name", "[observe]") {
  std::string text = fixture("proc/1234/status");
  text = replace_line(text, "Groups", "Groups:\t4 24 27 ");
  text = replace_line(text, "Name", "Name:\tmy agent ");
  auto status = parse_status(text);
  REQUIRE(status.has_value());
  CHECK(status->groups == std::vector<uint32_t>{4, 24, 27});
  CHECK(status->name == "my agent ");
}

TEST_CASE("status parser: rejects a CapEff value that is not hex, naming it", "[observe]") {
  auto status = parse_status(replace_line(fixture("proc/1234/status"), "CapEff", "CapEff:\tzz"));
  REQUIRE_FALSE(status.has_value());
  CHECK(status.error().message == "status: bad CapEff value 'zz'");
  CHECK_FALSE(status.error().vanished);
}

TEST_CASE("status parser: rejects a capability mask that is not exactly 16 hex digits",
          "[observe]") {
  for (const std::string bad :
       {"1fffeffffff", "00000001fffeffffff", "000001fffefffffg", "-00001fffeffffff", ""}) {
    INFO("CapBnd value '" << bad << "'");
    auto status =
        parse_status(replace_line(fixture("proc/1234/status"), "CapBnd", "CapBnd:\t" + bad));
    REQUIRE_FALSE(status.has_value());
    CHECK_THAT(status.error().message, Catch::StartsWith("status: bad CapBnd value"));
  }
}

TEST_CASE("status parser: rejects a status without each required line", "[observe]") {
  for (const std::string key :
       {"Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"}) {
    INFO("without " << key);
    auto status = parse_status(replace_line(fixture("proc/1234/status"), key, ""));
    REQUIRE_FALSE(status.has_value());
    CHECK_THAT(status.error().message, Catch::Contains("missing " + key + " line"));
  }
}

TEST_CASE(
    "status parser: reads a status without CapAmb, as older kernels write it, as no "
    "ambient capabilities",
    "[observe]") {
  auto status = parse_status(replace_line(fixture("proc/1234/status"), "CapAmb", ""));
  REQUIRE(status.has_value());
  CHECK(status->cap_ambient == 0);
}

TEST_CASE("status parser: reads a status without NSpid as no nested PIDs", "[observe]") {
  auto status = parse_status(replace_line(fixture("proc/1234/status"), "NSpid", ""));
  REQUIRE(status.has_value());
  CHECK(status->nspid.empty());
}

TEST_CASE("status parser: rejects a status truncated in the middle", "[observe]") {
  const std::string text = fixture("proc/1234/status");
  SECTION("before the capability lines") {
    auto status = parse_status(text.substr(0, text.find("CapInh:")));
    REQUIRE_FALSE(status.has_value());
    CHECK_THAT(status.error().message, Catch::Contains("missing CapInh line"));
  }
  SECTION("inside the CapEff mask") {
    auto status = parse_status(text.substr(0, text.find("CapEff:") + 14));
    REQUIRE_FALSE(status.has_value());
    CHECK(status.error().message == "status: bad CapEff value '000001'");
  }
  SECTION("inside a key") {
    auto status = parse_status(text.substr(0, text.find("CapEff:") + 4));
    REQUIRE_FALSE(status.has_value());
    CHECK(status.error().message.find("has no ':'") != std::string::npos);
  }
  SECTION("to nothing") {
    auto status = parse_status("");
    REQUIRE_FALSE(status.has_value());
    CHECK(status.error().message == "status: empty file");
  }
}

TEST_CASE("status parser: rejects malformed id, mode and flag lines", "[observe]") {
  const std::string text = fixture("proc/1234/status");
  struct Case {
    std::string key, line, message;
  };
  for (const auto& c : {
           Case{"Uid", "Uid:\t0\t0\t0", "status: bad Uid value '0\t0\t0'"},
           Case{"Uid", "Uid:\t0\t0\t0\t0\t0", "status: bad Uid value '0\t0\t0\t0\t0'"},
           Case{"Gid", "Gid:\t0\t0\t-1\t0", "status: bad Gid value '0\t0\t-1\t0'"},
           Case{"Gid", "Gid:\t0\t0\t4294967296\t0", "status: bad Gid value '0\t0\t4294967296\t0'"},
           Case{"Groups", "Groups:\t4 x 27", "status: bad Groups value '4 x 27'"},
           Case{"NSpid", "NSpid:\t1234\tfoo", "status: bad NSpid value '1234\tfoo'"},
           Case{"Tgid", "Tgid:\t-5", "status: bad Tgid value '-5'"},
           Case{"Seccomp", "Seccomp:\t3", "status: bad Seccomp value '3'"},
           Case{"NoNewPrivs", "NoNewPrivs:\t2", "status: bad NoNewPrivs value '2'"},
           Case{"Threads", "Threads:\t0", "status: bad Threads value '0'"},
           Case{"Threads", "Threads:\tmany", "status: bad Threads value 'many'"},
       }) {
    INFO(c.line);
    auto status = parse_status(replace_line(text, c.key, c.line));
    REQUIRE_FALSE(status.has_value());
    // Tabs are quoted as \x09 so the message stays on one line.
    std::string expected = c.message;
    for (size_t pos; (pos = expected.find('\t')) != std::string::npos;) {
      expected.replace(pos, 1, "\\x09");
    }
    CHECK(status.error().message == expected);
  }
}

TEST_CASE("status parser: rejects a status with a line twice", "[observe]") {
  std::string text = fixture("proc/1234/status") + "CapEff:\t0000000000000000\n";
  auto status = parse_status(text);
  REQUIRE_FALSE(status.has_value());
  CHECK(status.error().message == "status: duplicate CapEff line");
}

// ---- stat -----------------------------------------------------------------

TEST_CASE("stat parser: reads pid, comm, state, ppid and start time", "[observe]") {
  auto stat = parse_stat(fixture("proc/1234/stat"));
  REQUIRE(stat.has_value());
  CHECK(stat->pid == 1234);
  CHECK(stat->comm == "sleep");
  CHECK(stat->state == 'S');
  CHECK(stat->ppid == 1);
  CHECK(stat->flags == 4194304);
  CHECK((stat->flags & driftwatch::observe::kTaskExiting) == 0);
  CHECK(stat->start_time_ticks == 66315);
}

TEST_CASE("stat parser: splits at the last ')' when comm contains ') ' and fake fields",
          "[observe]") {
  auto stat = parse_stat(stat_with_comm("x) S 1 2 3 (y"));
  REQUIRE(stat.has_value());
  CHECK(stat->pid == 42);
  CHECK(stat->comm == "x) S 1 2 3 (y");
  CHECK(stat->state == 'R');
  CHECK(stat->ppid == 7);
  CHECK(stat->start_time_ticks == 66315);
}

TEST_CASE("stat parser: reads an empty comm and one of only parentheses", "[observe]") {
  auto empty = parse_stat(stat_with_comm(""));
  REQUIRE(empty.has_value());
  CHECK(empty->comm.empty());
  auto parens = parse_stat(stat_with_comm(")()"));
  REQUIRE(parens.has_value());
  CHECK(parens->comm == ")()");
}

TEST_CASE("stat parser: rejects a stat cut before the start time", "[observe]") {
  const std::string text = fixture("proc/1234/stat");
  auto stat = parse_stat(text.substr(0, text.find(" 66315")));
  REQUIRE_FALSE(stat.has_value());
  CHECK(stat.error().message == "stat: only 21 fields, need at least 22 (truncated file?)");
}

TEST_CASE("stat parser: rejects a stat with missing or malformed fields", "[observe]") {
  struct Case {
    std::string text, message;
  };
  for (const auto& c : {
           Case{"", "stat: empty file"},
           Case{"42 sleep S 7", "stat: no '(comm)' in '42 sleep S 7'"},
           Case{"42 (sleep", "stat: no '(comm)' in '42 (sleep'"},
           Case{"42 )sleep( S", "stat: no '(comm)' in '42 )sleep( S'"},
           Case{"(sleep) S 7", "stat: bad pid field '(sleep) S 7'"},
           Case{"x42 (sleep) S 7", "stat: bad pid field 'x42'"},
           Case{"42 (sleep)", "stat: fields after comm missing in '42 (sleep)'"},
           Case{"42 (sleep)S 7", "stat: fields after comm missing in '42 (sleep)S 7'"},
           Case{stat_with_comm("a").replace(7, 1, "RR"), "stat: bad state field 'RR'"},
           Case{stat_with_comm("a").replace(9, 1, "-7"), "stat: bad ppid field '-7'"},
           Case{stat_with_comm("a").replace(stat_with_comm("a").find("4194304"), 7, "-4"),
                "stat: bad flags field '-4'"},
           Case{stat_with_comm("a").replace(stat_with_comm("a").find("66315"), 5, "6x"),
                "stat: bad starttime field '6x'"},
       }) {
    INFO(c.text);
    auto stat = parse_stat(c.text);
    REQUIRE_FALSE(stat.has_value());
    CHECK(stat.error().message == c.message);
  }
}

// ---- limits ---------------------------------------------------------------

TEST_CASE("limits parser: maps every row title to its RLIMIT name", "[observe]") {
  auto limits = parse_limits(fixture("proc/1234/limits"));
  REQUIRE(limits.has_value());
  std::vector<std::string> names;
  for (const auto& row : *limits) names.push_back(row.name);
  CHECK(names == std::vector<std::string>{
                     "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_CORE",
                     "RLIMIT_RSS", "RLIMIT_NPROC", "RLIMIT_NOFILE", "RLIMIT_MEMLOCK", "RLIMIT_AS",
                     "RLIMIT_LOCKS", "RLIMIT_SIGPENDING", "RLIMIT_MSGQUEUE", "RLIMIT_NICE",
                     "RLIMIT_RTPRIO", "RLIMIT_RTTIME"});
  auto row = [&](const std::string& name) {
    for (const auto& r : *limits) {
      if (r.name == name) return r;
    }
    FAIL("no row " << name);
    return Rlimit{};
  };
  CHECK(row("RLIMIT_NOFILE").soft == 20000u);
  CHECK(row("RLIMIT_NOFILE").hard == 20000u);
  CHECK(row("RLIMIT_CPU").soft == std::nullopt);
  CHECK(row("RLIMIT_CPU").hard == std::nullopt);
  CHECK(row("RLIMIT_STACK").soft == 8388608u);
  CHECK(row("RLIMIT_STACK").hard == std::nullopt);
  CHECK(row("RLIMIT_NICE").soft == 0u);  // a row with no unit column
  CHECK(row("RLIMIT_NICE").hard == 0u);
}

TEST_CASE("limits parser: rejects an unknown row title, naming the line", "[observe]") {
  std::string text = fixture("proc/1234/limits");
  text += "Max widgets               1                    1                    widgets   \n";
  auto limits = parse_limits(text);
  REQUIRE_FALSE(limits.has_value());
  CHECK_THAT(limits.error().message, Catch::StartsWith("limits line 18: unknown row 'Max widgets"));
}

TEST_CASE("limits parser: does not take a title for a longer one that starts with it",
          "[observe]") {
  auto limits = parse_limits(
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max file sizes            1                    1                    bytes     \n");
  REQUIRE_FALSE(limits.has_value());
  CHECK_THAT(limits.error().message, Catch::StartsWith("limits line 2: unknown row"));
}

TEST_CASE("limits parser: rejects malformed limits files", "[observe]") {
  const std::string header =
      "Limit                     Soft Limit           Hard Limit           Units     \n";
  struct Case {
    std::string text, message;
  };
  for (const auto& c : {
           Case{"", "limits: empty file"},
           Case{"Max open files            1024                 1048576              files\n",
                "limits line 1: expected the 'Limit' header, got 'Max open files            1024 "
                "                1048576          ...'"},
           Case{header +
                    "Max open files            lots                 1048576              files\n",
                "limits line 2: bad soft limit 'lots'"},
           Case{header +
                    "Max open files            1024                 -1                   files\n",
                "limits line 2: bad hard limit '-1'"},
           Case{header + "Max open files            1024\n",
                "limits line 2: expected soft, hard and unit in 'Max open files            "
                "1024'"},
           Case{header + "Max open files            1 2 files extra\n",
                "limits line 2: expected soft, hard and unit in 'Max open files            1 2 "
                "files extra'"},
           Case{header +
                    "Max open files            1 2 files\nMax open files            1 2 files\n",
                "limits line 3: duplicate row 'Max open files'"},
       }) {
    INFO(c.text);
    auto limits = parse_limits(c.text);
    REQUIRE_FALSE(limits.has_value());
    CHECK(limits.error().message == c.message);
  }
}

// ---- mountinfo ------------------------------------------------------------

TEST_CASE("mountinfo parser: reads the host mount table", "[observe]") {
  auto mounts = parse_mountinfo(fixture("proc/1234/mountinfo"));
  REQUIRE(mounts.has_value());
  REQUIRE(mounts->size() == 21);
  const auto& proc = mounts->front();
  CHECK(proc.mount_id == 22);
  CHECK(proc.parent_id == 27);
  CHECK(proc.major == 0);
  CHECK(proc.minor == 21);
  CHECK(proc.root == "/");
  CHECK(proc.mount_point == "/proc");
  CHECK(proc.mount_options == std::vector<std::string>{"rw", "relatime"});
  CHECK(proc.fs_type == "proc");
  CHECK(proc.source == "proc");
  CHECK(proc.super_options == std::vector<std::string>{"rw"});
  auto root = std::find_if(mounts->begin(), mounts->end(),
                           [](const MountEntry& m) { return m.mount_point == "/"; });
  REQUIRE(root != mounts->end());
  CHECK(root->major == 254);
  CHECK(root->fs_type == "ext4");
  CHECK(root->source == "/dev/vda");
  CHECK_FALSE(root->read_only());
}

TEST_CASE("mountinfo parser: decodes the octal escapes of a bwrap sandbox's bind mounts",
          "[observe]") {
  auto mounts = parse_mountinfo(fixture("proc/4321/mountinfo"));
  REQUIRE(mounts.has_value());
  auto find = [&](const std::string& mount_point) -> const MountEntry* {
    for (const auto& m : *mounts) {
      if (m.mount_point == mount_point) return &m;
    }
    return nullptr;
  };
  const MountEntry* space = find("/mnt/dw space");
  REQUIRE(space != nullptr);
  CHECK(space->root == "/tmp/dw space");
  CHECK_FALSE(space->read_only());
  const MountEntry* backslash = find("/media/dw\\back");
  REQUIRE(backslash != nullptr);
  CHECK(backslash->root == "/tmp/dw\\back");
  CHECK(backslash->read_only());
  const MountEntry* root = find("/");
  REQUIRE(root != nullptr);
  CHECK(root->read_only());
  CHECK(root->mount_options == std::vector<std::string>{"ro", "nosuid", "nodev", "relatime"});
}

TEST_CASE("mountinfo parser: decodes tab, newline and space escapes in the source too",
          "[observe]") {
  auto mounts = parse_mountinfo(
      "40 1 0:50 /a\\011b /mnt/x\\012y rw - fuse.sshfs me@host:/my\\040files rw,user_id=0\n");
  REQUIRE(mounts.has_value());
  REQUIRE(mounts->size() == 1);
  CHECK((*mounts)[0].root == "/a\tb");
  CHECK((*mounts)[0].mount_point == "/mnt/x\ny");
  CHECK((*mounts)[0].fs_type == "fuse.sshfs");
  CHECK((*mounts)[0].source == "me@host:/my files");
}

TEST_CASE("mountinfo parser: skips optional fields up to the ' - ' separator", "[observe]") {
  auto mounts = parse_mountinfo(
      "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 propagate_from:2 - ext3 /dev/root "
      "rw,errors=continue\n"
      "37 35 98:0 / /x ro - ext3 /dev/root rw\n");
  REQUIRE(mounts.has_value());
  REQUIRE(mounts->size() == 2);
  CHECK((*mounts)[0].major == 98);
  CHECK((*mounts)[0].fs_type == "ext3");
  CHECK((*mounts)[0].source == "/dev/root");
  CHECK((*mounts)[0].super_options == std::vector<std::string>{"rw", "errors=continue"});
  CHECK((*mounts)[1].read_only());
}

TEST_CASE("mountinfo parser: accepts an empty mount source, which mount(2) allows", "[observe]") {
  auto mounts = parse_mountinfo("50 27 0:60 / /scratch rw,relatime - tmpfs  rw,size=4k\n");
  REQUIRE(mounts.has_value());
  REQUIRE(mounts->size() == 1);
  CHECK((*mounts)[0].source.empty());
  CHECK((*mounts)[0].fs_type == "tmpfs");
}

TEST_CASE("mountinfo parser: rejects malformed lines, naming the line", "[observe]") {
  const std::string good = "22 27 0:21 / /proc rw,relatime - proc proc rw\n";
  struct Case {
    std::string text, message;
  };
  for (const auto& c : {
           Case{good + "23 27 0:22 / /sys rw,relatime sysfs sysfs rw x\n",
                "mountinfo line 2: no ' - ' separator in '23 27 0:22 / /sys rw,relatime sysfs "
                "sysfs rw x'"},
           Case{"22 27 0:21 / /proc rw - proc\n",
                "mountinfo line 1: too few fields in '22 27 0:21 / /proc rw - proc'"},
           Case{"22 27 0:21 / /proc rw - proc proc rw extra\n",
                "mountinfo line 1: expected fs type, source and super options after ' - ' in "
                "'22 27 0:21 / /proc rw - proc proc rw extra'"},
           Case{"x 27 0:21 / /proc rw - proc proc rw\n", "mountinfo line 1: bad mount id 'x'"},
           Case{"22 -1 0:21 / /proc rw - proc proc rw\n", "mountinfo line 1: bad parent id '-1'"},
           Case{"22 27 021 / /proc rw - proc proc rw\n", "mountinfo line 1: bad major:minor '021'"},
           Case{"22 27 0: / /proc rw - proc proc rw\n", "mountinfo line 1: bad major:minor '0:'"},
           Case{"22 27 0:21 / /pr\\04 rw - proc proc rw\n",
                "mountinfo line 1: bad mount point '/pr\\x5c04'"},
           Case{"22 27 0:21 / /pr\\477 rw - proc proc rw\n",
                "mountinfo line 1: bad mount point '/pr\\x5c477'"},
           Case{"22 27 0:21 /\\9xx /proc rw - proc proc rw\n",
                "mountinfo line 1: bad root '/\\x5c9xx'"},
           Case{"22 27 0:21 / /proc rw - proc pr\\oc rw\n",
                "mountinfo line 1: bad source 'pr\\x5coc'"},
           Case{"22 27 0:21  /proc rw - proc proc rw x\n", "mountinfo line 1: bad root ''"},
           Case{"22 27 0:21 / /proc rw -  proc rw\n", "mountinfo line 1: bad fs type ''"},
       }) {
    INFO(c.text);
    auto mounts = parse_mountinfo(c.text);
    REQUIRE_FALSE(mounts.has_value());
    CHECK(mounts.error().message == c.message);
  }
}

// ---- cgroup ---------------------------------------------------------------

TEST_CASE("cgroup parser: reads the v2 path and each v1 hierarchy of a hybrid host process",
          "[observe]") {
  auto membership = parse_proc_cgroup(fixture("proc/1234/cgroup"));
  REQUIRE(membership.has_value());
  CHECK(membership->unified == "/");
  CHECK(membership->v1.size() == 10);
  CHECK(membership->v1_path("memory") == "/process_api/7d13ba07bdc85bdf819b1e81c3b17db5");
  CHECK(membership->v1_path("name=systemd") == "/");
  CHECK(membership->v1_path("pids") == "/");
  CHECK(membership->v1_path("systemd") == std::nullopt);
  CHECK(membership->v1_path("rdma") == std::nullopt);
}

TEST_CASE("cgroup parser: maps each controller of a co-mounted line and keeps ':' in paths",
          "[observe]") {
  auto membership = parse_proc_cgroup(
      "3:cpu,cpuacct:/kubepods/pod1\n2:net_cls,net_prio:/a:b\n0::/system.slice/x.scope\n");
  REQUIRE(membership.has_value());
  CHECK(membership->v1_path("cpu") == "/kubepods/pod1");
  CHECK(membership->v1_path("cpuacct") == "/kubepods/pod1");
  CHECK(membership->v1_path("net_prio") == "/a:b");
  CHECK(membership->unified == "/system.slice/x.scope");
}

TEST_CASE("cgroup parser: reads a pure v2 process and an empty file", "[observe]") {
  auto v2 = parse_proc_cgroup("0::/user.slice\n");
  REQUIRE(v2.has_value());
  CHECK(v2->unified == "/user.slice");
  CHECK(v2->v1.empty());
  auto empty = parse_proc_cgroup("");
  REQUIRE(empty.has_value());
  CHECK_FALSE(empty->unified.has_value());
}

TEST_CASE("cgroup parser: rejects malformed lines, naming the line", "[observe]") {
  struct Case {
    std::string text, message;
  };
  for (const auto& c : {
           Case{"0::/\n4:memory\n",
                "cgroup line 2: expected 'id:controllers:path', got '4:memory'"},
           Case{"x:memory:/\n", "cgroup line 1: bad hierarchy id 'x'"},
           Case{"4:memory:\n", "cgroup line 1: bad cgroup path ''"},
           Case{"4:memory:relative\n", "cgroup line 1: bad cgroup path 'relative'"},
           Case{"4::/\n", "cgroup line 1: no controllers on v1 hierarchy '4'"},
           Case{"0::/\n0::/x\n", "cgroup line 2: second v2 line"},
           Case{"3:cpu,,cpuacct:/\n", "cgroup line 1: bad controller list 'cpu,,cpuacct'"},
           Case{"3:name=:/\n", "cgroup line 1: bad controller list 'name='"},
           Case{"3:cpu:/\n4:cpu:/x\n", "cgroup line 2: controller 'cpu' listed twice"},
       }) {
    INFO(c.text);
    auto membership = parse_proc_cgroup(c.text);
    REQUIRE_FALSE(membership.has_value());
    CHECK(membership.error().message == c.message);
  }
}

// ---- cmdline, LSM label, namespace links -----------------------------------

TEST_CASE("cmdline parser: splits argv at NULs without a trailing empty argument", "[observe]") {
  CHECK(parse_cmdline(fixture("proc/1234/cmdline")) == std::vector<std::string>{"sleep", "100000"});
  CHECK(parse_cmdline(std::string_view("a\0\0b\0", 5)) == std::vector<std::string>{"a", "", "b"});
  // A process that rewrote its argv area (setproctitle) may leave no NUL.
  CHECK(parse_cmdline("nginx: worker process") ==
        std::vector<std::string>{"nginx: worker process"});
  CHECK(parse_cmdline(std::string_view("\0", 1)) == std::vector<std::string>{""});
  CHECK(parse_cmdline("").empty());
}

TEST_CASE("lsm label parser: strips newline and NULs and reads unconfined as no label",
          "[observe]") {
  CHECK(parse_lsm_label("docker-default (enforce)\n") == "docker-default (enforce)");
  CHECK(parse_lsm_label(std::string_view("system_u:system_r:container_t:s0\0", 33)) ==
        "system_u:system_r:container_t:s0");
  CHECK(parse_lsm_label("unconfined\n") == std::nullopt);
  CHECK(parse_lsm_label("") == std::nullopt);
  CHECK(parse_lsm_label("\n") == std::nullopt);
}

TEST_CASE("namespace link parser: reads the inode of 'net:[4026531833]'", "[observe]") {
  auto inode = parse_ns_link("net:[4026531833]");
  REQUIRE(inode.has_value());
  CHECK(*inode == 4026531833u);
  CHECK(ok(parse_ns_link("pid_for_children:[4026532181]")) == 4026532181u);
}

TEST_CASE("namespace link parser: rejects malformed link targets", "[observe]") {
  for (const std::string bad :
       {"", "net", "net:", "net:[]", "net:[12", "net:12]", ":[12]", "net:[12]x", "net:[-12]",
        "net:[ 12]", "net:[99999999999999999999]", "/proc/1/ns/net"}) {
    INFO(bad);
    auto inode = parse_ns_link(bad);
    REQUIRE_FALSE(inode.has_value());
    CHECK_THAT(inode.error().message, Catch::StartsWith("namespace link:"));
  }
}
