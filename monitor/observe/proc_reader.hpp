#pragma once
// Reads /proc/PID files through the parsers. The root is injectable so the
// same code runs on a fixture directory in unit tests and on /proc for real.
// A file that disappears because its process exited yields an Error with
// `vanished` set, so samplers can drop that member cleanly.

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "observe/proc_parsers.hpp"

namespace driftwatch::observe {

/// The namespace kinds driftwatch compares, in projection order.
inline constexpr const char* kNamespaceKinds[] = {"cgroup", "ipc",  "mnt",  "net",
                                                  "pid",    "time", "user", "uts"};

/// What readlink(2) of a /proc/PID link gave: its target, or why not.
struct LinkRead {
  int error = 0;  // errno of readlink; 0: `target` holds the link's target
  std::string target;
};

class ProcReader {
 public:
  explicit ProcReader(std::filesystem::path root = "/proc");

  const std::filesystem::path& root() const { return root_; }
  /// A reader of process `pid`'s threads: its root is /proc/PID/task, so
  /// each method reads /proc/PID/task/TID/<file> of a thread id.
  ProcReader tasks_of(pid_t pid) const { return ProcReader(root_ / std::to_string(pid) / "task"); }

  /// The whole text of /proc/PID/<file> (bounded to 1 MiB).
  Result<std::string> read(pid_t pid, std::string_view file) const;

  Result<ProcStatus> status(pid_t pid) const;
  Result<ProcStat> stat(pid_t pid) const;
  Result<std::vector<Rlimit>> limits(pid_t pid) const;
  Result<std::vector<MountEntry>> mountinfo(pid_t pid) const;
  Result<CgroupMembership> cgroup(pid_t pid) const;
  Result<std::vector<std::string>> cmdline(pid_t pid) const;
  Result<std::optional<std::string>> lsm_label(pid_t pid) const;
  /// Inode of /proc/PID/ns/<kind> ("net", "user", …; see kNamespaceKinds).
  Result<uint64_t> namespace_inode(pid_t pid, std::string_view kind) const;
  /// Target of /proc/PID/exe.
  Result<std::string> exe_path(pid_t pid) const;

  /// readlink of /proc/PID/<link> (ns/<kind>, exe), as the kernel answered.
  LinkRead read_link(pid_t pid, std::string_view link) const;
  /// The path of /proc/PID/<file> under this root.
  std::string path_of(pid_t pid, std::string_view file) const;
  /// What a readlink of a namespace link at `path` means: its inode; an
  /// error, `vanished` for a process that exited (ENOENT, ESRCH).
  static Result<uint64_t> namespace_inode_of(const std::string& path, const LinkRead& read);
  /// The same for any other link: its target.
  static Result<std::string> link_target_of(const std::string& path, const LinkRead& read);

  /// Every numeric entry of the root: the PIDs of all processes.
  std::vector<pid_t> pids() const;

 private:
  std::filesystem::path root_;
};

}  // namespace driftwatch::observe
