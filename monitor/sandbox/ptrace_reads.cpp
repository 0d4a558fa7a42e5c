#include "sandbox/ptrace_reads.hpp"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <iterator>

#include "common/posix.hpp"
#include "sandbox/in_root.hpp"

namespace driftwatch::sandbox {

std::string_view to_string(PathState state) {
  switch (state) {
    case PathState::absent:
      return "absent";
    case PathState::masked:
      return "masked";
    case PathState::read_only:
      return "read_only";
    case PathState::writable:
      return "writable";
    case PathState::unknown:
      break;
  }
  return "unknown";
}

bool is_proc_link_name(std::string_view name) {
  // A thread's: task/<thread id>/<link>.
  if (name.starts_with("task/")) {
    name.remove_prefix(5);
    const size_t slash = name.find('/');
    if (slash == std::string_view::npos || slash == 0 || slash > 10) return false;
    if (!std::all_of(name.begin(), name.begin() + slash,
                     [](char c) { return c >= '0' && c <= '9'; }))
      return false;
    if (name.front() == '0') return false;
    name.remove_prefix(slash + 1);
  }
  if (name == "exe") return true;
  if (!name.starts_with("ns/")) return false;
  name.remove_prefix(3);
  return std::any_of(std::begin(observe::kNamespaceKinds), std::end(observe::kNamespaceKinds),
                     [&](const char* kind) { return name == kind; });
}

// open_in_root keeps a symlink the sandbox planted inside its own root,
// never on the host's, and fails a magic link on the way with ELOOP:
// unknown, never absent.
PathState path_state(int root_fd, const std::string& path) {
  Fd fd = open_in_root(root_fd, path);
  if (!fd) return errno == ENOENT || errno == ENOTDIR ? PathState::absent : PathState::unknown;
  struct statx stx {};
  if (statx(fd.get(), "", AT_EMPTY_PATH, STATX_TYPE | STATX_MODE, &stx) != 0)
    return PathState::unknown;
  struct statfs fs {};
  if (fstatfs(fd.get(), &fs) != 0) return PathState::unknown;
  bool read_only = fs.f_flags & ST_RDONLY;
  if (S_ISCHR(stx.stx_mode) && stx.stx_rdev_major == 1 && stx.stx_rdev_minor == 3)
    return PathState::masked;
  if (S_ISDIR(stx.stx_mode) && fs.f_type == TMPFS_MAGIC && read_only &&
      (stx.stx_attributes & stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT))
    return PathState::masked;
  return read_only ? PathState::read_only : PathState::writable;
}

std::vector<observe::LinkRead> LocalPtraceReads::read_links(
    const std::vector<ProcLink>& links) const {
  std::vector<observe::LinkRead> out;
  out.reserve(links.size());
  for (const auto& link : links) {
    if (is_proc_link_name(link.name))
      out.push_back(proc_.read_link(link.pid, link.name));
    else
      out.push_back(observe::LinkRead{EINVAL, {}});
  }
  return out;
}

RootView LocalPtraceReads::root_view(pid_t pid, const std::vector<std::string>& paths) const {
  RootView view;
  const std::string root = proc_.path_of(pid, "root");
  Fd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return view;
  view.opened = true;
  struct statfs fs {};
  view.read_only = ::fstatfs(root_fd.get(), &fs) == 0 && (fs.f_flags & ST_RDONLY);
  view.states.reserve(paths.size());
  for (const auto& path : paths) view.states.push_back(path_state(root_fd.get(), path));
  return view;
}

}  // namespace driftwatch::sandbox
