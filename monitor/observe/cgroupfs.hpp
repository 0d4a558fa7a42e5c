#pragma once
// Reads cgroup limits and membership from cgroupfs, v1 and v2 alike. The
// root (normally /sys/fs/cgroup) is injectable for fixture tests.
//
// Layouts: "unified" (pure v2: root is cgroup2), "hybrid" (v1 controllers
// under root/<ctrl>, v2 at root/unified), "legacy" (v1 only). A controller
// bound to v1 is read from v1; otherwise from the v2 hierarchy.

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "observe/proc_parsers.hpp"

namespace driftwatch::observe {

enum class CgroupLayout { unified, hybrid, legacy };

/// The limits of one cgroup. nullopt = unlimited ("max", or v1's huge value).
struct CgroupLimits {
  std::optional<int64_t> memory_max;  // bytes
  std::optional<int64_t> pids_max;
  std::optional<std::string> cpu_max;  // "QUOTA PERIOD" as cgroup v2 writes it
};

/// Parses cgroup v2 "memory.max"/"pids.max" ("max" or a decimal).
Result<std::optional<int64_t>> parse_limit_value(std::string_view text);
/// Parses cgroup v2 "cpu.max" ("max 100000" -> nullopt, "50000 100000").
Result<std::optional<std::string>> parse_cpu_max(std::string_view text);

class CgroupReader {
 public:
  /// Detects the layout from what exists under root.
  explicit CgroupReader(std::filesystem::path root = "/sys/fs/cgroup");
  CgroupReader(std::filesystem::path root, CgroupLayout layout);

  CgroupLayout layout() const { return layout_; }
  const std::filesystem::path& root() const { return root_; }

  /// Directory of a v2 path ("/a/b" -> root/a/b or root/unified/a/b).
  std::filesystem::path unified_dir(std::string_view path) const;
  /// Directory of a v1 controller path (root/<controller>/<path>).
  std::filesystem::path v1_dir(std::string_view controller, std::string_view path) const;

  /// Memory, pids and cpu limits of the cgroups a process belongs to.
  Result<CgroupLimits> limits(const CgroupMembership& membership) const;

  /// PIDs in a cgroup: v2 cgroup.procs of `unified_path`, and when given, the
  /// v1 cgroup.procs of each (controller, path) pair; de-duplicated, sorted.
  Result<std::vector<pid_t>> procs(const CgroupMembership& membership) const;

 private:
  std::filesystem::path root_;
  CgroupLayout layout_;
};

}  // namespace driftwatch::observe
