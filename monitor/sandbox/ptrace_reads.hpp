#pragma once
// What sampling reads of another user's process only with ptrace-mode access
// (the kernel's ptrace_may_access(PTRACE_MODE_READ_FSCREDS), so
// CAP_SYS_PTRACE for a process of root): the links /proc/PID/ns/<kind> and
// /proc/PID/exe, and the view of its root through /proc/PID/root. None of
// them is file content: targets of links, and what a lookup inside the root
// finds (a type, a device number, a mount's flags).
//
// Behind an interface so that the daemon can do them in a process of their
// own (app/proc_peer.hpp: CAP_SYS_PTRACE alone, no file opened but O_PATH)
// while the sampler, which reads content (status, cgroupfs, the runtimes'
// state, bundles), holds no CAP_SYS_PTRACE. LocalPtraceReads does them in
// the calling process: `inspect`, the benchmarks, the tests, and the proc
// peer itself.

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "observe/proc_reader.hpp"

namespace driftwatch::sandbox {

/// What a path inside a sandbox's root is. How runc and crun mask: a file
/// gets /dev/null (char 1:3) bind-mounted over it; a directory gets a
/// read-only tmpfs mounted on it.
enum class PathState { absent, masked, read_only, writable, unknown };
/// "absent", "masked", "read_only", "writable", "unknown".
std::string_view to_string(PathState state);
inline constexpr PathState kAllPathStates[] = {PathState::absent, PathState::masked,
                                               PathState::read_only, PathState::writable,
                                               PathState::unknown};

/// One link of one process: `name` is "exe" or "ns/<kind>" with a kind of
/// observe::kNamespaceKinds, or either of them under "task/<thread id>/"
/// for one of the process's threads (is_proc_link_name).
struct ProcLink {
  pid_t pid = 0;
  std::string name;
};
bool is_proc_link_name(std::string_view name);

/// A process's root as sampling sees it: whether /proc/PID/root could be
/// opened, whether its mount is read-only, and the state of each path asked.
struct RootView {
  bool opened = false;
  bool read_only = false;
  std::vector<PathState> states;  // one per path asked, in order; empty unless opened
};

class PtraceReads {
 public:
  virtual ~PtraceReads() = default;
  /// readlink of each /proc/PID/<name>, in order: the answers as the kernel
  /// gave them (observe::ProcReader::namespace_inode_of says what they mean).
  virtual std::vector<observe::LinkRead> read_links(const std::vector<ProcLink>& links) const = 0;
  /// The root of `pid` (/proc/PID/root, opened O_PATH) and the state of
  /// each of `paths` looked up inside it (open_in_root, never leaving it).
  virtual RootView root_view(pid_t pid, const std::vector<std::string>& paths) const = 0;
};

/// The reads done here, by this process, under `proc`'s root.
class LocalPtraceReads final : public PtraceReads {
 public:
  explicit LocalPtraceReads(observe::ProcReader proc) : proc_(std::move(proc)) {}
  std::vector<observe::LinkRead> read_links(const std::vector<ProcLink>& links) const override;
  RootView root_view(pid_t pid, const std::vector<std::string>& paths) const override;

 private:
  observe::ProcReader proc_;
};

/// The state of `path` inside the directory `root_fd` (sandbox/in_root.hpp).
PathState path_state(int root_fd, const std::string& path);

}  // namespace driftwatch::sandbox
