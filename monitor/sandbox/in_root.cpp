#include "sandbox/in_root.hpp"

#include <fcntl.h>
#include <linux/limits.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <expected>
#include <string>
#include <utility>
#include <vector>

namespace driftwatch::sandbox {
namespace {

// Every open names one component and never lets the kernel follow a symlink
// (a magic one included): what a link points to is read with readlinkat and
// resolved here, inside the root.
constexpr int kPathFlags = O_PATH | O_NOFOLLOW | O_CLOEXEC;

using Lookup = std::expected<Fd, int>;  // or the errno

// The directories walked from the root, the current one on top. ".." pops
// back to the directory the walk came from, never opens "..": a directory
// renamed meanwhile (moved out from under the root, say) cannot take the
// walk above the root, which is the bottom of the stack and is never popped.
class DirectoryStack {
 public:
  explicit DirectoryStack(int root_fd) : root_fd_(root_fd) {}

  int current() const { return below_root_.empty() ? root_fd_ : below_root_.back().get(); }
  bool full() const { return below_root_.size() >= kMaxDirectoryDepth; }
  void enter(Fd dir) { below_root_.push_back(std::move(dir)); }
  void leave() {
    if (!below_root_.empty()) below_root_.pop_back();
  }
  void restart_at_root() { below_root_.clear(); }

  // The current directory as a descriptor of its own: the walk is over.
  Lookup take_current() {
    if (below_root_.empty()) return reopen(root_fd_);  // root_fd stays the caller's
    Fd top = std::move(below_root_.back());
    below_root_.pop_back();
    return top;
  }

  static Lookup reopen(int dir) {
    Fd fd(::openat(dir, ".", kPathFlags));
    if (!fd) return std::unexpected(errno);
    return fd;
  }

 private:
  int root_fd_;
  std::vector<Fd> below_root_;
};

// procfs's magic links (/proc/PID/{root,cwd,exe}, fd/N, map_files/…, ns/…)
// are the only symlinks whose text is not where the kernel takes a process
// that follows them: the text of /proc/PID/root is that root's path as the
// monitor sees it, the text of ns/mnt is "mnt:[4026531840]". Resolving that
// text inside the root would stay inside it (it is only text), but it would
// check some other path than the sandbox's processes see, and an ENOENT there
// would count as "absent", hence masked when declared masked: a wrong
// all-clear. So a magic link to be followed fails with ELOOP, as with
// RESOLVE_NO_MAGICLINKS, and path_state reports the path unknown (neither
// masked nor read-only), which is reported as drift.
//
// A magic link's text is a d_path (it starts with "/") or a d_dname
// ("socket:[…]", "anon_inode:[…]", "mnt:[…]", with a ':'). procfs's plain
// symlinks ("self" -> "1234", "thread-self", "mounts" -> "self/mounts",
// "net") have neither and are followed as text, as the kernel follows them.
// Only a target of the first kind costs an fstatfs, on the link itself.
std::expected<bool, int> is_magic_link(int link_fd, std::string_view target) {
  if (!target.starts_with('/') && target.find(':') == std::string_view::npos) return false;
  struct statfs fs {};
  if (::fstatfs(link_fd, &fs) != 0) return std::unexpected(errno);
  return fs.f_type == PROC_SUPER_MAGIC;
}

// The text of the symlink `link_fd` (an O_PATH descriptor of the link
// itself, so the text read is that of the link just opened, not of whatever
// has replaced it since).
std::expected<std::string, int> read_link(int link_fd) {
  std::string target(PATH_MAX, '\0');
  const ssize_t n = ::readlinkat(link_fd, "", target.data(), target.size());
  if (n < 0) return std::unexpected(errno);
  if (static_cast<size_t>(n) >= target.size()) return std::unexpected(ENAMETOOLONG);
  target.resize(static_cast<size_t>(n));
  return target;
}

// The kernel checks search permission on the directory a component is looked
// up in, "." and ".." included; openat(dir, ".") makes the same check.
bool searchable(int dir) {
  return static_cast<bool>(DirectoryStack::reopen(dir));
}

Lookup resolve(int root_fd, std::string_view path) {
  // As openat2 was called: relative to the root, "" being the root itself.
  while (path.starts_with('/')) path.remove_prefix(1);
  if (path.size() >= PATH_MAX) return std::unexpected(ENAMETOOLONG);
  if (path.find('\0') != std::string_view::npos) return std::unexpected(EINVAL);

  DirectoryStack dirs(root_fd);
  // What is left to walk. Following a symlink puts its text in front of the
  // rest, so a link's relative text resolves from the directory that holds
  // it (the current one) and its ".." pop from there.
  std::string pending(path);
  size_t pos = 0;
  int symlinks = 0;
  std::string component;
  for (;;) {
    while (pos < pending.size() && pending[pos] == '/') ++pos;
    // The path ended in "/" (or was all slashes, or empty): the result is
    // the directory reached, every component having been walked as one.
    if (pos == pending.size()) return dirs.take_current();
    const size_t end = std::min(pending.find('/', pos), pending.size());
    component.assign(pending, pos, end - pos);
    pos = end;
    // The last component is looked at, not followed. A component with a
    // "/" after it, even a trailing one, must be a directory, and a symlink
    // there is followed.
    const bool last = pos == pending.size();

    if (component == "." || component == "..") {
      if (!searchable(dirs.current())) return std::unexpected(errno);
      if (component == "..") dirs.leave();  // at the root: stays there
      if (last) return dirs.take_current();
      continue;
    }
    if (last) {
      Fd fd(::openat(dirs.current(), component.c_str(), kPathFlags));
      if (!fd) return std::unexpected(errno);
      return fd;
    }

    Fd dir(::openat(dirs.current(), component.c_str(), kPathFlags | O_DIRECTORY));
    if (dir) {
      // A sandbox that plants thousands of nested directories must not make
      // one lookup take every descriptor the process may have.
      if (dirs.full()) return std::unexpected(ENAMETOOLONG);
      dirs.enter(std::move(dir));
      continue;
    }
    if (errno != ENOTDIR) return std::unexpected(errno);
    // Not a directory: a symlink to follow, or ENOTDIR.
    Fd link(::openat(dirs.current(), component.c_str(), kPathFlags));
    if (!link) return std::unexpected(errno);
    struct stat st {};
    if (::fstatat(link.get(), "", &st, AT_EMPTY_PATH) != 0) return std::unexpected(errno);
    if (!S_ISLNK(st.st_mode)) return std::unexpected(ENOTDIR);
    // Counted before the link is read, as the kernel counts.
    if (++symlinks > kMaxSymlinks) return std::unexpected(ELOOP);
    auto target = read_link(link.get());
    if (!target) return std::unexpected(target.error());
    auto magic = is_magic_link(link.get(), *target);
    if (!magic) return std::unexpected(magic.error());
    if (*magic) return std::unexpected(ELOOP);
    if (target->starts_with('/')) dirs.restart_at_root();
    // The "/" between keeps the link's last component a directory one: the
    // link stood before a "/" itself.
    target->push_back('/');
    target->append(pending, pos);
    pending = std::move(*target);
    pos = 0;
  }
}

}  // namespace

Fd open_in_root(int root_fd, std::string_view path) {
  Lookup found = resolve(root_fd, path);
  // Set here, after resolve's descriptors are closed, so no close can touch it.
  if (!found) {
    errno = found.error();
    return Fd();
  }
  return std::move(*found);
}

}  // namespace driftwatch::sandbox
