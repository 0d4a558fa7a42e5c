#include "observe/cgroupfs.hpp"

#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "observe/proc_reader.hpp"
#include "support/skip.hpp"

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

const fs::path kHybrid = fs::path(DRIFTWATCH_FIXTURES) / "cgroup-hybrid";
const fs::path kUnified = fs::path(DRIFTWATCH_FIXTURES) / "cgroup-unified";

CgroupMembership membership(const std::string& proc_cgroup_text) {
  auto parsed = parse_proc_cgroup(proc_cgroup_text);
  REQUIRE(parsed.has_value());
  return *parsed;
}

// /proc/PID/cgroup of a process in a "/sandbox" cgroup of every hierarchy of
// this machine's hybrid layout.
const char* const kHybridSandbox =
    "9:name=systemd:/sandbox\n8:pids:/sandbox\n7:blkio:/\n4:memory:/sandbox\n"
    "2:cpuacct:/sandbox\n1:cpu:/sandbox\n0::/sandbox\n";

// Writes a file, creating its directory; the directory is removed with the guard.
class ScratchCgroup {
 public:
  explicit ScratchCgroup(fs::path dir) : dir_(std::move(dir)) { fs::create_directories(dir_); }
  ~ScratchCgroup() {
    std::error_code ignored;
    fs::remove(dir_, ignored);
  }
  ScratchCgroup(const ScratchCgroup&) = delete;
  ScratchCgroup& operator=(const ScratchCgroup&) = delete;
  bool write(const std::string& file, const std::string& value) const {
    std::ofstream out(dir_ / file);
    out << value;
    out.flush();
    return out.good();
  }

 private:
  fs::path dir_;
};

}  // namespace

TEST_CASE("cgroup reader: detects unified, hybrid and legacy layouts from the root", "[observe]") {
  CHECK(CgroupReader{kUnified}.layout() == CgroupLayout::unified);
  CHECK(CgroupReader{kHybrid}.layout() == CgroupLayout::hybrid);
  CHECK(CgroupReader{kHybrid / "memory"}.layout() == CgroupLayout::legacy);
  CHECK(CgroupReader(kUnified, CgroupLayout::legacy).layout() == CgroupLayout::legacy);
}

TEST_CASE("cgroup reader: places v2 and v1 paths under the right hierarchy", "[observe]") {
  const CgroupReader hybrid{kHybrid};
  CHECK(hybrid.unified_dir("/a/b") == kHybrid / "unified/a/b");
  CHECK(hybrid.unified_dir("/") == kHybrid / "unified");
  CHECK(hybrid.v1_dir("memory", "/a") == kHybrid / "memory/a");
  CHECK(hybrid.v1_dir("name=systemd", "/a") == kHybrid / "systemd/a");
  const CgroupReader unified{kUnified};
  CHECK(unified.unified_dir("/a/b") == kUnified / "a/b");
  CHECK(unified.unified_dir("/") == kUnified);
}

TEST_CASE("cgroup reader: finds a co-mounted v1 hierarchy that has no per-controller symlink",
          "[observe]") {
  const fs::path root =
      fs::temp_directory_path() / ("driftwatch-cgroup-" + std::to_string(::getpid()));
  fs::create_directories(root / "cpu,cpuacct/job");
  struct Cleanup {
    fs::path root;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(root, ignored);
    }
  } cleanup{root};
  std::ofstream(root / "cpu,cpuacct/job/cpu.cfs_quota_us") << "25000\n";
  std::ofstream(root / "cpu,cpuacct/job/cpu.cfs_period_us") << "100000\n";
  std::ofstream(root / "cpu,cpuacct/job/cgroup.procs") << "77\n";
  const CgroupReader reader{root};
  REQUIRE(reader.layout() == CgroupLayout::legacy);
  CHECK(reader.v1_dir("cpuacct", "/job") == root / "cpu,cpuacct/job");
  auto m = membership("3:cpu,cpuacct:/job\n");
  auto limits = reader.limits(m);
  REQUIRE(limits.has_value());
  CHECK(limits->cpu_max == "25000 100000");
  auto procs = reader.procs(m);
  REQUIRE(procs.has_value());
  CHECK(*procs == std::vector<pid_t>{77});
}

TEST_CASE("cgroup reader: reads v1 memory, pids and cpu limits of a sandbox on a hybrid host",
          "[observe]") {
  auto limits = CgroupReader{kHybrid}.limits(membership(kHybridSandbox));
  REQUIRE(limits.has_value());
  CHECK(limits->memory_max == 134217728);
  CHECK(limits->pids_max == 64);
  CHECK(limits->cpu_max == "50000 100000");
}

TEST_CASE("cgroup reader: reads v1 root cgroups as unlimited", "[observe]") {
  // memory.limit_in_bytes 9223372036854771712, no pids.max at all in the root,
  // cpu.cfs_quota_us -1: all three are the kernel's "no limit".
  auto limits = CgroupReader{kHybrid}.limits(
      membership("9:name=systemd:/\n8:pids:/\n4:memory:/\n2:cpuacct:/\n1:cpu:/\n0::/\n"));
  REQUIRE(limits.has_value());
  CHECK(limits->memory_max == std::nullopt);
  CHECK(limits->pids_max == std::nullopt);
  CHECK(limits->cpu_max == std::nullopt);
}

TEST_CASE(
    "cgroup reader: reads controllers not bound to v1 from the v2 hierarchy of a hybrid "
    "host",
    "[observe]") {
  // Only the v2 line: memory, pids and cpu come from unified/sandbox, which
  // has no limit files because no controller is enabled there.
  auto limits = CgroupReader{kHybrid}.limits(membership("0::/sandbox\n"));
  REQUIRE(limits.has_value());
  CHECK(limits->memory_max == std::nullopt);
  CHECK(limits->pids_max == std::nullopt);
  CHECK(limits->cpu_max == std::nullopt);
}

TEST_CASE("cgroup reader: reads v2 limits of sandboxes on a unified host", "[observe]") {
  const CgroupReader reader{kUnified};
  SECTION("with limits") {
    auto limits = reader.limits(membership("0::/sandbox\n"));
    REQUIRE(limits.has_value());
    CHECK(limits->memory_max == 134217728);
    CHECK(limits->pids_max == 64);
    CHECK(limits->cpu_max == "50000 100000");
  }
  SECTION("with max everywhere") {
    auto limits = reader.limits(membership("0::/unlimited\n"));
    REQUIRE(limits.has_value());
    CHECK(limits->memory_max == std::nullopt);
    CHECK(limits->pids_max == std::nullopt);
    CHECK(limits->cpu_max == std::nullopt);
  }
  SECTION("with no controller enabled") {
    auto limits = reader.limits(membership("0::/nocontrollers\n"));
    REQUIRE(limits.has_value());
    CHECK(limits->memory_max == std::nullopt);
    CHECK(limits->pids_max == std::nullopt);
    CHECK(limits->cpu_max == std::nullopt);
  }
  SECTION("ignoring v1 lines, since no v1 hierarchy is mounted under a unified root") {
    auto limits = reader.limits(membership("4:memory:/elsewhere\n0::/sandbox\n"));
    REQUIRE(limits.has_value());
    CHECK(limits->memory_max == 134217728);
  }
}

TEST_CASE("cgroup reader: rejects a malformed limit file, naming it and its content", "[observe]") {
  auto limits = CgroupReader{kUnified}.limits(membership("0::/broken\n"));
  REQUIRE_FALSE(limits.has_value());
  CHECK_FALSE(limits.error().vanished);
  CHECK(limits.error().message == (kUnified / "broken/memory.max").string() +
                                      ": cgroup limit: expected 'max' or a decimal, got '12x'");
}

TEST_CASE("cgroup reader: reports a cgroup that no longer exists as vanished", "[observe]") {
  SECTION("v2") {
    auto limits = CgroupReader{kUnified}.limits(membership("0::/gone\n"));
    REQUIRE_FALSE(limits.has_value());
    CHECK(limits.error().vanished);
    auto procs = CgroupReader{kUnified}.procs(membership("0::/gone\n"));
    REQUIRE_FALSE(procs.has_value());
    CHECK(procs.error().vanished);
  }
  SECTION("v1") {
    auto limits = CgroupReader{kHybrid}.limits(membership("4:memory:/gone\n0::/sandbox\n"));
    REQUIRE_FALSE(limits.has_value());
    CHECK(limits.error().vanished);
    CHECK_THAT(limits.error().message, Catch::Contains("memory/gone"));
    auto procs = CgroupReader{kHybrid}.procs(membership("8:pids:/gone\n"));
    REQUIRE_FALSE(procs.has_value());
    CHECK(procs.error().vanished);
  }
}

TEST_CASE("cgroup reader: refuses a cgroup path that climbs out of its hierarchy", "[observe]") {
  const CgroupReader reader{kHybrid};
  auto limits = reader.limits(membership("4:memory:/../../etc\n"));
  REQUIRE_FALSE(limits.has_value());
  CHECK_FALSE(limits.error().vanished);
  CHECK_THAT(limits.error().message, Catch::Contains("leaves its hierarchy"));
  CHECK_FALSE(reader.procs(membership("0::/a/../../x\n")).has_value());
  // The lexical joins stay under root.
  CHECK(reader.unified_dir("/../x") == kHybrid / "unified");
}

TEST_CASE("cgroup reader: refuses to read a limit of a v1 hierarchy that is not mounted",
          "[observe]") {
  // Legacy root without a memory directory: the limit cannot be known, and
  // "unlimited" would be a guess.
  const CgroupReader reader{kHybrid / "pids", CgroupLayout::legacy};
  auto limits = reader.limits(membership("4:memory:/sandbox\n"));
  REQUIRE_FALSE(limits.has_value());
  CHECK_FALSE(limits.error().vanished);
  CHECK_THAT(limits.error().message, Catch::Contains("memory hierarchy is not mounted"));
}

TEST_CASE("cgroup reader: lists the union of v2 and v1 cgroup.procs, sorted and unique",
          "[observe]") {
  auto hybrid = CgroupReader{kHybrid}.procs(membership(kHybridSandbox));
  REQUIRE(hybrid.has_value());
  CHECK(*hybrid == std::vector<pid_t>{4321, 4400});  // 4400 is only in memory:/sandbox

  auto unified = CgroupReader{kUnified}.procs(membership("0::/sandbox\n"));
  REQUIRE(unified.has_value());
  CHECK(*unified == std::vector<pid_t>{4321, 4322});

  // blkio is not in the fixture tree: a hierarchy not mounted under root is
  // skipped, the others still find every member.
  auto v1_only = CgroupReader{kHybrid}.procs(membership("7:blkio:/sandbox\n2:cpuacct:/sandbox\n"));
  REQUIRE(v1_only.has_value());
  CHECK(*v1_only == std::vector<pid_t>{4321});
}

TEST_CASE("cgroup reader: ignores the v2 path on a legacy host and v1 paths on a unified one",
          "[observe]") {
  auto legacy =
      CgroupReader(kHybrid, CgroupLayout::legacy).procs(membership("4:memory:/sandbox\n0::/\n"));
  REQUIRE(legacy.has_value());
  CHECK(*legacy == std::vector<pid_t>{4321, 4400});  // not the v2 root's 1 1181 1182

  auto unified = CgroupReader{kUnified}.procs(membership("4:memory:/sandbox\n0::/nocontrollers\n"));
  REQUIRE(unified.has_value());
  CHECK(*unified == std::vector<pid_t>{4500});
}

TEST_CASE("limit value parser: reads 'max' as unlimited and a decimal as a limit", "[observe]") {
  CHECK(ok(parse_limit_value("max\n")) == std::optional<int64_t>{});
  CHECK(ok(parse_limit_value("134217728\n")) == std::optional<int64_t>{134217728});
  CHECK(ok(parse_limit_value("0")) == std::optional<int64_t>{0});
  for (const std::string bad :
       {"", "\n", "-1", "12x", "max max", "+5", "0x10", "99999999999999999999", "1 2"}) {
    INFO("'" << bad << "'");
    auto value = parse_limit_value(bad);
    REQUIRE_FALSE(value.has_value());
    CHECK_THAT(value.error().message,
               Catch::StartsWith("cgroup limit: expected 'max' or a decimal"));
  }
}

TEST_CASE("cpu.max parser: reads 'max PERIOD' as unlimited and 'QUOTA PERIOD' as a limit",
          "[observe]") {
  CHECK(ok(parse_cpu_max("max 100000\n")) == std::optional<std::string>{});
  CHECK(ok(parse_cpu_max("50000 100000\n")) == std::optional<std::string>{"50000 100000"});
  for (const std::string bad : {"", "max", "50000", "0 100000", "50000 0", "a 100000", "50000 b",
                                "50000 100000 1", "50000  100000", "-1 100000"}) {
    INFO("'" << bad << "'");
    auto value = parse_cpu_max(bad);
    REQUIRE_FALSE(value.has_value());
    CHECK_THAT(value.error().message, Catch::StartsWith("cpu.max:"));
  }
}

TEST_CASE(
    "cgroup reader: reads this process's limits and finds it in its cgroups on the real "
    "cgroupfs",
    "[observe]") {
  if (!fs::exists("/sys/fs/cgroup")) {
    DW_SKIP("/sys/fs/cgroup is not mounted");
  }
  const CgroupReader reader;
  auto self = ProcReader{"/proc"}.cgroup(::getpid());
  REQUIRE(self.has_value());
  auto limits = reader.limits(*self);
  INFO((limits ? std::string() : limits.error().message));
  REQUIRE(limits.has_value());
  auto procs = reader.procs(*self);
  INFO((procs ? std::string() : procs.error().message));
  REQUIRE(procs.has_value());
  CHECK(std::binary_search(procs->begin(), procs->end(), ::getpid()));
}

TEST_CASE("cgroup reader: reads the limits of real v1 cgroups it creates", "[observe][root]") {
  const CgroupReader reader;
  if (::geteuid() != 0) {
    DW_SKIP("needs root to create cgroups");
  }
  if (reader.layout() == CgroupLayout::unified || !fs::is_directory("/sys/fs/cgroup/memory") ||
      !fs::is_directory("/sys/fs/cgroup/pids") || !fs::is_directory("/sys/fs/cgroup/cpu")) {
    DW_SKIP("needs v1 memory, pids and cpu hierarchies under /sys/fs/cgroup");
  }
  const std::string name = "driftwatch-test-" + std::to_string(::getpid());
  ScratchCgroup memory{"/sys/fs/cgroup/memory/" + name};
  ScratchCgroup pids{"/sys/fs/cgroup/pids/" + name};
  ScratchCgroup cpu{"/sys/fs/cgroup/cpu/" + name};
  REQUIRE(memory.write("memory.limit_in_bytes", "100000000"));
  REQUIRE(pids.write("pids.max", "17"));
  REQUIRE(cpu.write("cpu.cfs_quota_us", "20000"));

  const auto m = membership("8:pids:/" + name + "\n4:memory:/" + name + "\n1:cpu:/" + name + "\n");
  auto limits = reader.limits(m);
  INFO((limits ? std::string() : limits.error().message));
  REQUIRE(limits.has_value());
  const int64_t page = ::sysconf(_SC_PAGESIZE);
  CHECK(limits->memory_max == 100000000 / page * page);  // the kernel rounds down to whole pages
  CHECK(limits->pids_max == 17);
  CHECK(limits->cpu_max == "20000 100000");
  auto procs = reader.procs(m);
  REQUIRE(procs.has_value());
  CHECK(procs->empty());
}
