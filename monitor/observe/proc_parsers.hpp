#pragma once
// Pure parsers for the text of /proc/PID files. Each takes the file's bytes
// and returns a value or an Error naming what was malformed; none touches the
// file system, so each is unit-tested on fixtures and fuzzed directly.
// Every token is bounds-checked: a malformed file is an error, never a guess.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace driftwatch::observe {

/// The security-relevant lines of /proc/PID/status.
struct ProcStatus {
  std::string name;
  int32_t tgid = 0;
  int32_t ppid = 0;
  // Uid:/Gid: lines: real, effective, saved, filesystem (as seen from the
  // reader's user namespace).
  uint32_t uid[4] = {0, 0, 0, 0};
  uint32_t gid[4] = {0, 0, 0, 0};
  std::vector<uint32_t> groups;
  // NSpid: the pid in each nested pid namespace, outermost first.
  std::vector<int32_t> nspid;
  uint64_t cap_inheritable = 0;
  uint64_t cap_permitted = 0;
  uint64_t cap_effective = 0;
  uint64_t cap_bounding = 0;
  uint64_t cap_ambient = 0;
  bool no_new_privs = false;
  int seccomp = 0;  // 0 disabled, 1 strict, 2 filter
  // Threads: the process's thread count (0: the line was missing). Read by
  // the sampler to decide whether to look at each thread; not carried in
  // the sweep wire protocol.
  int32_t threads = 0;
};
Result<ProcStatus> parse_status(std::string_view text);

/// The fields of /proc/PID/stat driftwatch needs. comm may hold spaces and
/// parentheses, so parsing splits at the last ')'.
struct ProcStat {
  int32_t pid = 0;
  std::string comm;
  char state = '?';
  int32_t ppid = 0;
  uint32_t flags = 0;             // field 9: the task's PF_* flags
  uint64_t start_time_ticks = 0;  // field 22: identity against PID reuse
};
/// PF_EXITING in ProcStat::flags: the task is in exit() and never runs
/// user code again; on a v1 hierarchy its /proc/PID/cgroup then reads "/".
inline constexpr uint32_t kTaskExiting = 0x4;
Result<ProcStat> parse_stat(std::string_view text);

/// One row of /proc/PID/limits. nullopt means "unlimited".
struct Rlimit {
  std::string name;  // "RLIMIT_NOFILE", mapped from the kernel's row title
  std::optional<uint64_t> soft;
  std::optional<uint64_t> hard;
};
Result<std::vector<Rlimit>> parse_limits(std::string_view text);

/// One line of /proc/PID/mountinfo, octal escapes (\040 …) decoded.
struct MountEntry {
  uint32_t mount_id = 0;
  uint32_t parent_id = 0;
  uint32_t major = 0;
  uint32_t minor = 0;
  std::string root;                        // root of the mount within its file system
  std::string mount_point;                 // relative to the process's root
  std::vector<std::string> mount_options;  // per-mount: "ro"/"rw", "nosuid", …
  std::string fs_type;
  std::string source;
  std::vector<std::string> super_options;
  bool read_only() const;  // "ro" in mount_options
};
Result<std::vector<MountEntry>> parse_mountinfo(std::string_view text);

/// /proc/PID/cgroup: the v2 path ("0::/path") and v1 paths by controller
/// ("4:memory:/path"; "1:name=systemd:/path" keeps the "name=systemd" key).
/// A line listing several controllers ("3:cpu,cpuacct:/p") maps each.
struct CgroupMembership {
  std::optional<std::string> unified;                   // v2 path, if the line is present
  std::vector<std::pair<std::string, std::string>> v1;  // controller -> path
  /// The v1 path of a controller, if it is bound to v1.
  std::optional<std::string> v1_path(std::string_view controller) const;
};
Result<CgroupMembership> parse_proc_cgroup(std::string_view text);

/// /proc/PID/cmdline: NUL-separated argv (a trailing NUL is not an extra
/// empty argument). Empty for kernel threads and zombies.
std::vector<std::string> parse_cmdline(std::string_view bytes);

/// /proc/PID/attr/current: the LSM label, trailing newline and NULs removed;
/// nullopt for "unconfined" or an empty file.
std::optional<std::string> parse_lsm_label(std::string_view text);

/// The target of a /proc/PID/ns/* link, "net:[4026531840]" -> 4026531840.
Result<uint64_t> parse_ns_link(std::string_view target);

}  // namespace driftwatch::observe
