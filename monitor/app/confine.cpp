#include "app/confine.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <pwd.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <optional>
#include <string_view>
#include <system_error>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "common/file_io.hpp"
#include "common/posix.hpp"
#include "observe/capabilities.hpp"
#include "observe/proc_parsers.hpp"

// Debian 12's kernel headers (6.1) are older than the kernels driftwatch
// runs on; what they lack is defined here, with the kernel's values.
#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef LANDLOCK_CREATE_RULESET_VERSION
#define LANDLOCK_CREATE_RULESET_VERSION (1U << 0)
#endif

namespace driftwatch::app {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uid_t kNobody = 65534;
constexpr const char* kUserName = "driftwatch";
constexpr const char* kCreateUser =
    "useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "
    "driftwatch (scripts/install-deps.sh does it)";

template <size_t N>
uint64_t mask_of(const int (&caps)[N]) {
  uint64_t mask = 0;
  for (int cap : caps) mask |= uint64_t{1} << cap;
  return mask;
}

uint64_t kept_mask(ConfineRole role) {
  switch (role) {
    case ConfineRole::sampler:
      return mask_of(kSamplerCapabilities);
    case ConfineRole::proc_peer:
      return mask_of(kProcPeerCapabilities);
    case ConfineRole::front:
      break;
  }
  return mask_of(kFrontCapabilities);
}

std::string errno_text() {
  return describe_errno(errno);
}

std::string octal_mode(mode_t mode) {
  return fmt::format("{:04o}", mode & 07777);
}

std::string user_name(uid_t uid) {
  std::array<char, 4096> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found)
    return fmt::format("{} (uid {})", found->pw_name, uid);
  return fmt::format("uid {}", uid);
}

// ---- the state dir

// Whether `dirfd` lists nothing but "." and "..".
Result<bool> directory_is_empty(int dirfd, const fs::path& dir) {
  Fd copy(::dup(dirfd));
  if (!copy) return fail("cannot read state_dir ", dir.string(), ": ", errno_text());
  DIR* listing = ::fdopendir(copy.get());
  if (listing == nullptr) return fail("cannot read state_dir ", dir.string(), ": ", errno_text());
  copy.release();
  ::rewinddir(listing);  // the descriptor's offset is shared with `dirfd`
  bool empty = true;
  while (const dirent* entry = ::readdir(listing)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") {
      empty = false;
      break;
    }
  }
  ::closedir(listing);
  return empty;
}

// The rules for a state dir that exists, on what fstat said of the directory
// `dirfd` (opened O_NOFOLLOW: never a link).
Result<void> check_existing_state_dir(const fs::path& dir, int dirfd, const struct stat& st,
                                      const DaemonUser& user) {
  const std::string name = "state_dir " + dir.string();
  const std::string mode = octal_mode(st.st_mode);
  if (!S_ISDIR(st.st_mode)) return fail(name, " is not a directory");
  if (st.st_mode & S_IWOTH)
    return fail(name, " is writable by others (mode ", mode,
                "): use a directory of its own, e.g. /var/lib/driftwatch");
  if (st.st_mode & S_IWGRP)
    return fail(name, " is writable by its group (mode ", mode,
                "): use a directory of its own, e.g. /var/lib/driftwatch, or chmod g-w it");
  if (st.st_uid == user.uid) return {};
  if (st.st_uid != 0 || geteuid() != 0)
    return fail(name, " belongs to ", user_name(st.st_uid), ", not to ", user_name(user.uid),
                (geteuid() == 0 ? " or root" : ""),
                ": refusing to take it over (if it is driftwatch's own, from a run as another "
                "user: chown -R ",
                user.name, ": ", dir.string(), ")");
  // Root's. Empty: made for the daemon by an operator. A state dir of an
  // earlier version that ran as root is 0700 and holds journals/ or ingest/
  // (it made them). Anything else belongs to something else (/root is 0700
  // too), and handing it over would give it away.
  DW_TRY(empty, directory_is_empty(dirfd, dir));
  if (empty) return {};
  struct stat sub {};
  const bool made_by_driftwatch =
      (st.st_mode & 07777) == 0700 &&
      ((::fstatat(dirfd, "journals", &sub, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sub.st_mode)) ||
       (::fstatat(dirfd, "ingest", &sub, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sub.st_mode)));
  if (made_by_driftwatch) return {};
  return fail(name, " belongs to root (mode ", mode,
              ") and is not a state dir driftwatch made (0700, with journals/ or ingest/): use "
              "a directory of its own, e.g. /var/lib/driftwatch, or chown -R ",
              user.name, ": ", dir.string(), " yourself");
}

Result<Fd> open_state_dir(const fs::path& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    const int error = errno;
    struct stat st {};
    if (::lstat(dir.c_str(), &st) == 0 && S_ISLNK(st.st_mode)) {
      std::error_code ec;
      auto target = fs::read_symlink(dir, ec);
      return fail("state_dir ", dir.string(), " is a symbolic link (to ", target.string(),
                  "): name the directory itself");
    }
    if (::lstat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
      return fail("state_dir ", dir.string(), " is not a directory");
    return fail("cannot open state_dir ", dir.string(), ": ", describe_errno(error));
  }
  return fd;
}

Result<void> validate_state_dir_path(const fs::path& dir) {
  if (dir.empty() || !dir.is_absolute())
    return fail("state_dir '", dir.string(), "' is not an absolute path");
  if (dir.lexically_normal() == dir.root_path())
    return fail(
        "state_dir / is the root directory: use a directory of its own, e.g. "
        "/var/lib/driftwatch");
  return {};
}

// Gives every entry below `dirfd` (not following links, not crossing into
// other mounts) to uid:gid. A regular file with more than one name is
// skipped: it may be a hard link to a file outside the state dir.
Result<void> chown_tree(int dirfd, const fs::path& path, dev_t device, uid_t uid, gid_t gid,
                        int depth, size_t& changed, size_t& skipped) {
  if (depth > 64) return fail("cannot hand over ", path.string(), ": nested too deep");
  Fd copy(::dup(dirfd));
  if (!copy) return fail("cannot read ", path.string(), ": ", errno_text());
  DIR* listing = ::fdopendir(copy.get());
  if (listing == nullptr) return fail("cannot read ", path.string(), ": ", errno_text());
  copy.release();
  ::rewinddir(listing);  // the descriptor's offset is shared with `dirfd`
  std::vector<std::string> names;
  while (const dirent* entry = ::readdir(listing)) {
    std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  ::closedir(listing);
  for (const auto& name : names) {
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;
      return fail("cannot stat ", (path / name).string(), ": ", errno_text());
    }
    if (st.st_dev != device || (S_ISREG(st.st_mode) && st.st_nlink > 1)) {
      ++skipped;
      spdlog::warn("state_dir: not handing over {}: {}", (path / name).string(),
                   st.st_dev != device ? "another file system is mounted there"
                                       : "it has other names (a hard link)");
      continue;
    }
    if (st.st_uid != uid || st.st_gid != gid) {
      if (::fchownat(dirfd, name.c_str(), uid, gid, AT_SYMLINK_NOFOLLOW) != 0)
        return fail("cannot hand ", (path / name).string(), " over to ", user_name(uid), ": ",
                    errno_text());
      ++changed;
    }
    if (S_ISDIR(st.st_mode)) {
      Fd child(::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!child) return fail("cannot open ", (path / name).string(), ": ", errno_text());
      auto walked =
          chown_tree(child.get(), path / name, device, uid, gid, depth + 1, changed, skipped);
      if (!walked) return walked;
    }
  }
  return {};
}

// Step 1: the state dir and everything in it belong to the daemon user.
Result<size_t> hand_over_state_dir(const fs::path& dir, const DaemonUser& user) {
  if (auto valid = validate_state_dir_path(dir); !valid) return std::unexpected(valid.error());
  DW_TRY(fd, open_state_dir(dir));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return fail("cannot stat state_dir ", dir.string(), ": ", errno_text());
  if (auto checked = check_existing_state_dir(dir, fd.get(), st, user); !checked)
    return std::unexpected(checked.error());
  size_t changed = 0, skipped = 0;
  if (st.st_uid != user.uid || st.st_gid != user.gid) {
    if (::fchown(fd.get(), user.uid, user.gid) != 0)
      return fail("cannot hand state_dir ", dir.string(), " over to ", user_name(user.uid), ": ",
                  errno_text());
    ++changed;
  }
  if (auto walked = chown_tree(fd.get(), dir, st.st_dev, user.uid, user.gid, 0, changed, skipped);
      !walked)
    return std::unexpected(walked.error());
  if (changed > 0)
    spdlog::info(
        "state_dir {}: handed {} entries over to {} (written as root, by an earlier version or "
        "by the startup steps before drop_privileges){}",
        dir.string(), changed, user_name(user.uid),
        skipped ? fmt::format("; {} skipped, see above", skipped) : std::string());
  return changed;
}

// ---- the read-only mount namespace

constexpr uint64_t kMountAttrRdonly = 0x1;
constexpr uint64_t kMountAttrNosuid = 0x2;

// struct mount_attr of <linux/mount.h>, which cannot be included together
// with glibc 2.36's <sys/mount.h>.
struct MountAttr {
  uint64_t attr_set = 0;
  uint64_t attr_clr = 0;
  uint64_t propagation = 0;
  uint64_t userns_fd = 0;
};

int mount_setattr_recursive(const char* path, uint64_t set, uint64_t clear) {
  MountAttr attr;
  attr.attr_set = set;
  attr.attr_clr = clear;
  return static_cast<int>(
      syscall(__NR_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &attr, sizeof attr));
}

// Secrets no monitoring reads: covered by an empty, unreadable mount, so
// that a path bug (a request that names a file) cannot reach them by name.
constexpr const char* kSecretFiles[] = {"/etc/shadow", "/etc/shadow-", "/etc/gshadow",
                                        "/etc/gshadow-", "/etc/security/opasswd"};
constexpr const char* kSecretDirs[] = {"/etc/ssh", "/root", "/home", "/boot"};

bool is_within(const fs::path& inner, const fs::path& outer) {
  auto [o, i] = std::mismatch(outer.begin(), outer.end(), inner.begin(), inner.end());
  return o == outer.end();
}

struct MountsOutcome {
  bool applied = false;
  std::string note;
  std::vector<std::string> hidden;
  uint64_t original_namespace = 0;
};

// The inode of a /proc/PID/ns link ("mnt:[4026531841]"), 0 when unreadable.
uint64_t namespace_inode(const char* link) {
  std::error_code ec;
  auto target = fs::read_symlink(link, ec).string();
  auto open = target.find('[');
  if (ec || open == std::string::npos) return 0;
  try {
    return std::stoull(target.substr(open + 1));
  } catch (...) {
    return 0;
  }
}

// Step 2. The sampler compares sandboxes with the host namespaces it read
// before this step, so both processes may have a mount namespace of their
// own; the sampler's has no writable state dir (it writes nowhere).
Result<MountsOutcome> confine_mounts(const ConfineOptions& options) {
  MountsOutcome outcome;
  outcome.original_namespace = namespace_inode("/proc/self/ns/mnt");
  std::error_code ec;
  const bool has_state_dir = !options.state_dir.empty();
  const fs::path state_dir = has_state_dir ? fs::canonical(options.state_dir, ec) : fs::path();
  if (ec) return fail("cannot resolve state_dir ", options.state_dir.string(), ": ", ec.message());
  std::vector<fs::path> kept;
  if (has_state_dir) kept.push_back(state_dir);
  for (const auto& path : options.read_paths) {
    auto resolved = fs::weakly_canonical(fs::absolute(path, ec), ec);
    kept.push_back(ec ? path.lexically_normal() : resolved);
  }
  auto covers_kept = [&](const fs::path& mask) {
    for (const auto& path : kept)
      if (is_within(path, mask)) return true;
    return false;
  };
  std::vector<std::pair<std::string, bool>> masks;  // path, is a directory
  for (const char* file : kSecretFiles) {
    struct stat st {};
    if (::lstat(file, &st) == 0 && S_ISREG(st.st_mode) && !covers_kept(file))
      masks.emplace_back(file, false);
  }
  for (const char* dir : kSecretDirs) {
    struct stat st {};
    if (::lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) continue;
    if (covers_kept(dir)) {
      spdlog::info("confine: {} stays visible: it holds the state dir or a path read", dir);
      continue;
    }
    masks.emplace_back(dir, true);
  }
  for (const auto& dir : options.covered_dirs) {
    // Resolved now, as root, before the covering mount hides the way.
    auto resolved = fs::canonical(dir, ec);
    if (ec) {
      if (ec == std::errc::no_such_file_or_directory) continue;  // nothing there to see
      return fail("cannot resolve ", dir.string(), " to cover it: ", ec.message());
    }
    if (!fs::is_directory(resolved, ec))
      return fail("cannot cover ", dir.string(), ": not a directory");
    if (covers_kept(resolved)) {
      spdlog::warn("CONFINEMENT WEAKER: {} stays visible to the {}: a path it reads is inside it",
                   resolved.string(), to_string(options.role));
      continue;
    }
    masks.emplace_back(resolved.string(), true);
  }

  if (::unshare(CLONE_NEWNS) != 0) {
    outcome.note = "not applied: unshare(CLONE_NEWNS): " + errno_text();
    return outcome;
  }
  // From here on this process has its own copy of the mount table; nothing
  // done to it reaches the host. As a slave it still sees what the host
  // mounts and unmounts later, where the host's mounts are shared (systemd
  // makes them so): bundles on new mounts stay readable.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    return fail("cannot make the monitor's mounts private: ", errno_text());
  if (has_state_dir &&
      ::mount(state_dir.c_str(), state_dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
    return fail("cannot bind-mount state_dir ", state_dir.string(), ": ", errno_text());
  for (const auto& [path, is_dir] : masks) {
    if (is_dir) {
      if (::mount("tmpfs", path.c_str(), "tmpfs", MS_RDONLY | MS_NODEV | MS_NOEXEC | MS_NOSUID,
                  "size=4k,nr_inodes=2,mode=000") != 0)
        return fail("cannot cover ", path, ": ", errno_text());
    } else {
      // /dev/null on a nodev mount: open(2) fails with EACCES, whatever
      // CAP_DAC_READ_SEARCH would allow.
      if (::mount("/dev/null", path.c_str(), nullptr, MS_BIND, nullptr) != 0 ||
          ::mount(nullptr, path.c_str(), nullptr,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NODEV | MS_NOEXEC | MS_NOSUID,
                  nullptr) != 0)
        return fail("cannot cover ", path, ": ", errno_text());
    }
    outcome.hidden.push_back(path);
  }
  if (mount_setattr_recursive("/", kMountAttrRdonly | kMountAttrNosuid, 0) != 0)
    return fail("cannot make the monitor's mounts read-only: ", errno_text());
  if (has_state_dir && mount_setattr_recursive(state_dir.c_str(), 0, kMountAttrRdonly) != 0)
    return fail("cannot make state_dir ", state_dir.string(), " writable: ", errno_text());

  struct statvfs root {};
  struct statvfs state {};
  if (::statvfs("/", &root) != 0 || !(root.f_flag & ST_RDONLY))
    return fail("the monitor's root mount did not become read-only");
  if (has_state_dir && (::statvfs(state_dir.c_str(), &state) != 0 || (state.f_flag & ST_RDONLY)))
    return fail("state_dir ", state_dir.string(), " did not stay writable");
  outcome.applied = true;
  outcome.note = has_state_dir ? "every mount read-only but state_dir " + state_dir.string()
                               : "every mount read-only";
  if (!outcome.hidden.empty()) {
    outcome.note += "; covered:";
    for (const auto& path : outcome.hidden) outcome.note += " " + path;
    outcome.note += " (a bundle there cannot be hashed)";
  }
  return outcome;
}

// ---- capabilities and user

struct CapSets {
  uint64_t effective = 0, permitted = 0, inheritable = 0;
};

Result<CapSets> capget_self() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &header, data) != 0)
    return fail("cannot read the capability sets: ", errno_text());
  auto join = [&](uint32_t __user_cap_data_struct::*field) {
    return uint64_t{data[0].*field} | (uint64_t{data[1].*field} << 32);
  };
  return CapSets{join(&__user_cap_data_struct::effective), join(&__user_cap_data_struct::permitted),
                 join(&__user_cap_data_struct::inheritable)};
}

Result<void> capset_self(uint64_t effective, uint64_t permitted) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  data[0].effective = static_cast<uint32_t>(effective);
  data[1].effective = static_cast<uint32_t>(effective >> 32);
  data[0].permitted = static_cast<uint32_t>(permitted);
  data[1].permitted = static_cast<uint32_t>(permitted >> 32);
  if (syscall(SYS_capset, &header, data) != 0)
    return fail("cannot set the capability sets: ", errno_text());
  return {};
}

int last_capability() {
  auto text = read_file("/proc/sys/kernel/cap_last_cap", 64);
  if (text) {
    try {
      return std::stoi(*text);
    } catch (...) {
    }
  }
  return observe::kLastCapability;
}

Result<void> drop_bounding_set(uint64_t keep) {
  const int last = std::min(last_capability(), 63);
  for (int cap = 0; cap <= last; ++cap) {
    if (keep & (uint64_t{1} << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      return fail("cannot drop ", observe::capability_name(cap),
                  " from the bounding set: ", errno_text());
  }
  return {};
}

// Steps 3 to 5, started as root.
Result<void> become_user(const DaemonUser& user, uint64_t keep) {
  if (auto dropped = drop_bounding_set(keep); !dropped) return dropped;
  // KEEP_CAPS: the permitted set survives the uid change below. NOROOT:
  // uid 0 means nothing special on exec. NO_CAP_AMBIENT_RAISE: nothing is
  // ever passed on through ambient capabilities. Locked where they stay.
  constexpr unsigned long kSecurebits = SECBIT_KEEP_CAPS | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED |
                                        SECBIT_NO_CAP_AMBIENT_RAISE |
                                        SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
  if (prctl(PR_SET_SECUREBITS, kSecurebits, 0, 0, 0) != 0)
    return fail("cannot set securebits: ", errno_text());
  if (::setgroups(0, nullptr) != 0) return fail("cannot drop supplementary groups: ", errno_text());
  if (::setresgid(user.gid, user.gid, user.gid) != 0)
    return fail("cannot change group to ", std::to_string(user.gid), ": ", errno_text());
  if (::setresuid(user.uid, user.uid, user.uid) != 0)
    return fail("cannot change user to ", user_name(user.uid), ": ", errno_text());
  uid_t ruid, euid, suid;
  gid_t rgid, egid, sgid;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 ||
      ruid != user.uid || euid != user.uid || suid != user.uid || rgid != user.gid ||
      egid != user.gid || sgid != user.gid)
    return fail("the user change to ", user_name(user.uid), " did not take");
  if (auto set = capset_self(keep, keep); !set) return set;
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
    return fail("cannot clear the ambient capabilities: ", errno_text());
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0)
    return fail("cannot clear keep-capabilities: ", errno_text());
  return {};
}

// Started as someone else (file capabilities, say): keep what of the role's
// capabilities the process holds.
Result<uint64_t> reduce_capabilities(uint64_t keep) {
  DW_TRY(now, capget_self());
  keep &= now.permitted;
  if (now.effective & (uint64_t{1} << CAP_SETPCAP))
    if (auto dropped = drop_bounding_set(keep); !dropped) return std::unexpected(dropped.error());
  if (auto set = capset_self(keep, keep); !set) return std::unexpected(set.error());
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL)
    return fail("cannot clear the ambient capabilities: ", errno_text());
  return keep;
}

// ---- seccomp

struct DeniedSyscall {
  int nr;
  const char* name;
};

// What the monitor never calls after startup, and what would turn its two
// capabilities, or the kernel's attack surface, against the host.
constexpr DeniedSyscall kDenied[] = {
    // Other processes' memory and descriptors (CAP_SYS_PTRACE would allow).
    {__NR_ptrace, "ptrace"},
    {__NR_process_vm_readv, "process_vm_readv"},
    {__NR_process_vm_writev, "process_vm_writev"},
    {__NR_pidfd_getfd, "pidfd_getfd"},
    {__NR_kcmp, "kcmp"},
    {__NR_process_madvise, "process_madvise"},
    // File handles: CAP_DAC_READ_SEARCH's way out of any mount namespace.
    {__NR_open_by_handle_at, "open_by_handle_at"},
    {__NR_name_to_handle_at, "name_to_handle_at"},
    // Mounts and namespaces.
    {__NR_mount, "mount"},
    {__NR_umount2, "umount2"},
    {__NR_move_mount, "move_mount"},
    {__NR_open_tree, "open_tree"},
    {__NR_open_tree_attr, "open_tree_attr"},
    {__NR_fsopen, "fsopen"},
    {__NR_fsconfig, "fsconfig"},
    {__NR_fsmount, "fsmount"},
    {__NR_fspick, "fspick"},
    {__NR_mount_setattr, "mount_setattr"},
    {__NR_pivot_root, "pivot_root"},
    {__NR_chroot, "chroot"},
    {__NR_setns, "setns"},
    {__NR_unshare, "unshare"},
    // The kernel itself.
    {__NR_kexec_load, "kexec_load"},
    {__NR_kexec_file_load, "kexec_file_load"},
    {__NR_init_module, "init_module"},
    {__NR_finit_module, "finit_module"},
    {__NR_delete_module, "delete_module"},
    {__NR_reboot, "reboot"},
    {__NR_swapon, "swapon"},
    {__NR_swapoff, "swapoff"},
    {__NR_perf_event_open, "perf_event_open"},
    {__NR_userfaultfd, "userfaultfd"},
    {__NR_syslog, "syslog"},
    {__NR_iopl, "iopl"},
    {__NR_ioperm, "ioperm"},
    {__NR_personality, "personality"},
    {__NR_acct, "acct"},
    {__NR_quotactl, "quotactl"},
    {__NR_quotactl_fd, "quotactl_fd"},
    {__NR_vhangup, "vhangup"},
    {__NR_keyctl, "keyctl"},
    {__NR_add_key, "add_key"},
    {__NR_request_key, "request_key"},
    // io_uring runs operations (openat, connect) no filter sees.
    {__NR_io_uring_setup, "io_uring_setup"},
    {__NR_io_uring_enter, "io_uring_enter"},
    {__NR_io_uring_register, "io_uring_register"},
    // Time.
    {__NR_settimeofday, "settimeofday"},
    {__NR_clock_settime, "clock_settime"},
    {__NR_adjtimex, "adjtimex"},
    {__NR_clock_adjtime, "clock_adjtime"},
    // Credentials: settled by confine(), never changed again.
    {__NR_setuid, "setuid"},
    {__NR_setgid, "setgid"},
    {__NR_setreuid, "setreuid"},
    {__NR_setregid, "setregid"},
    {__NR_setresuid, "setresuid"},
    {__NR_setresgid, "setresgid"},
    {__NR_setgroups, "setgroups"},
    {__NR_setfsuid, "setfsuid"},
    {__NR_setfsgid, "setfsgid"},
    {__NR_capset, "capset"},
    // No other program: the daemon never executes one.
    {__NR_execve, "execve"},
    {__NR_execveat, "execveat"},
    // No new sockets, no outgoing connection: the port was bound before
    // this step, connections come in through accept(2).
    {__NR_socket, "socket"},
    {__NR_connect, "connect"},
};

constexpr DeniedSyscall kBpf{__NR_bpf, "bpf"};

// The sampler's, on top of kDenied: it reads, and writes nothing. Every call
// that makes, removes, renames, links or changes a file, whatever the
// descriptor or path (through /proc/PID/root too), and every signal.
constexpr DeniedSyscall kSamplerDenied[] = {
    {__NR_creat, "creat"},
    {__NR_mkdir, "mkdir"},
    {__NR_mkdirat, "mkdirat"},
    {__NR_mknod, "mknod"},
    {__NR_mknodat, "mknodat"},
    {__NR_rmdir, "rmdir"},
    {__NR_unlink, "unlink"},
    {__NR_unlinkat, "unlinkat"},
    {__NR_rename, "rename"},
    {__NR_renameat, "renameat"},
    {__NR_renameat2, "renameat2"},
    {__NR_link, "link"},
    {__NR_linkat, "linkat"},
    {__NR_symlink, "symlink"},
    {__NR_symlinkat, "symlinkat"},
    {__NR_truncate, "truncate"},
    {__NR_ftruncate, "ftruncate"},
    {__NR_fallocate, "fallocate"},
    {__NR_chmod, "chmod"},
    {__NR_fchmod, "fchmod"},
    {__NR_fchmodat, "fchmodat"},
    {452, "fchmodat2"},
    {__NR_chown, "chown"},
    {__NR_fchown, "fchown"},
    {__NR_lchown, "lchown"},
    {__NR_fchownat, "fchownat"},
    {__NR_setxattr, "setxattr"},
    {__NR_lsetxattr, "lsetxattr"},
    {__NR_fsetxattr, "fsetxattr"},
    {463, "setxattrat"},
    {__NR_removexattr, "removexattr"},
    {__NR_lremovexattr, "lremovexattr"},
    {__NR_fremovexattr, "fremovexattr"},
    {466, "removexattrat"},
    {__NR_utime, "utime"},
    {__NR_utimes, "utimes"},
    {__NR_futimesat, "futimesat"},
    {__NR_utimensat, "utimensat"},
    {__NR_mq_open, "mq_open"},
    {__NR_shmget, "shmget"},
    {__NR_msgget, "msgget"},
    {__NR_semget, "semget"},
    {__NR_kill, "kill"},
    {__NR_tkill, "tkill"},
    {__NR_tgkill, "tgkill"},
    {__NR_rt_sigqueueinfo, "rt_sigqueueinfo"},
    {__NR_rt_tgsigqueueinfo, "rt_tgsigqueueinfo"},
    {__NR_pidfd_send_signal, "pidfd_send_signal"},
};

// The proc peer's, on top of kSamplerDenied: it needs no extended attribute
// (security.* ones are readable by anyone who can look the file up, through
// /proc/PID/root too), and it answers with write(2): no sendmsg, so no
// descriptor (an O_PATH one of another root's file) is ever passed on.
constexpr DeniedSyscall kProcPeerDenied[] = {
    {__NR_getxattr, "getxattr"},     {__NR_lgetxattr, "lgetxattr"},
    {__NR_fgetxattr, "fgetxattr"},   {464, "getxattrat"},
    {__NR_listxattr, "listxattr"},   {__NR_llistxattr, "llistxattr"},
    {__NR_flistxattr, "flistxattr"}, {465, "listxattrat"},
    {__NR_sendmsg, "sendmsg"},       {__NR_sendmmsg, "sendmmsg"},
};

// open(2) flags that write or create: refused to the sampler.
constexpr uint32_t kWriteOpenFlags = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;

// The bpf(2) commands on descriptors the process already holds.
constexpr uint32_t kBpfMapCommands[] = {
    BPF_MAP_LOOKUP_ELEM,    BPF_MAP_UPDATE_ELEM,
    BPF_MAP_DELETE_ELEM,    BPF_MAP_GET_NEXT_KEY,
    BPF_OBJ_GET_INFO_BY_FD, BPF_MAP_LOOKUP_AND_DELETE_ELEM,
    BPF_MAP_LOOKUP_BATCH,   BPF_MAP_LOOKUP_AND_DELETE_BATCH,
    BPF_MAP_UPDATE_BATCH,   BPF_MAP_DELETE_BATCH,
};

constexpr uint32_t kNewNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
                                        CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
constexpr uint32_t kX32SyscallBit = 0x40000000;

constexpr uint32_t kNr = offsetof(seccomp_data, nr);
constexpr uint32_t kArch = offsetof(seccomp_data, arch);
// The low 32 bits of an argument (x86_64 is little-endian).
constexpr uint32_t arg_low(int i) {
  return static_cast<uint32_t>(offsetof(seccomp_data, args) + 8 * i);
}

sock_filter stmt(uint16_t code, uint32_t k) {
  return BPF_STMT(code, k);
}
sock_filter jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  return BPF_JUMP(code, k, jt, jf);
}

// open(path, flags) and openat(dirfd, path, flags), decided on their flags
// alone: EPERM when any of `flags` is set (deny_when_set) or when none is;
// the call is allowed otherwise, and the filter ends there for it. The
// accumulator holds the syscall number before and after.
void check_open_flags(std::vector<sock_filter>& f, uint32_t flags, bool deny_when_set) {
  const uint32_t deny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  for (auto [nr, flags_arg] : {std::pair{__NR_open, 1}, std::pair{__NR_openat, 2}}) {
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 4));
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(flags_arg)));
    f.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, flags, 0, 1));
    f.push_back(stmt(BPF_RET | BPF_K, deny_when_set ? deny : SECCOMP_RET_ALLOW));
    f.push_back(stmt(BPF_RET | BPF_K, deny_when_set ? SECCOMP_RET_ALLOW : deny));
  }
}

std::vector<sock_filter> build_filter(bool allow_bpf_map_ops, ConfineRole role) {
  const uint32_t deny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  const uint32_t no_such = SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA);
  std::vector<sock_filter> f;
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArch));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kNr));
  f.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, kX32SyscallBit, 0, 1));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  auto deny_nr = [&](int nr, uint32_t action) {
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1));
    f.push_back(stmt(BPF_RET | BPF_K, action));
  };
  for (const auto& d : kDenied) deny_nr(d.nr, deny);
  deny_nr(__NR_clone3, no_such);
  if (role == ConfineRole::proc_peer)
    for (const auto& d : kProcPeerDenied) deny_nr(d.nr, deny);
  if (role == ConfineRole::sampler || role == ConfineRole::proc_peer) {
    for (const auto& d : kSamplerDenied) deny_nr(d.nr, deny);
    deny_nr(__NR_openat2, no_such);
    // open(path, flags) and openat(dirfd, path, flags): read-only opens only.
    check_open_flags(f, kWriteOpenFlags, /*deny_when_set=*/true);
  }
  // clone(flags, …): a thread or a fork, never a new namespace.
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));
  f.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, kNewNamespaceFlags, 0, 1));
  f.push_back(stmt(BPF_RET | BPF_K, deny));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  // ioctl(fd, cmd): no typing into a terminal the daemon inherited.
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 5));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(1)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.push_back(stmt(BPF_RET | BPF_K, deny));
  if (!allow_bpf_map_ops) {
    deny_nr(kBpf.nr, deny);
  } else {
    // bpf(cmd, …): only the map commands.
    constexpr uint8_t m = std::size(kBpfMapCommands);
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kBpf.nr, 0, m + 3));
    f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, arg_low(0)));
    for (uint8_t i = 0; i < m; ++i)
      f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kBpfMapCommands[i], m - i, 0));
    f.push_back(stmt(BPF_RET | BPF_K, deny));
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  }
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return f;
}

// The proc peer's last filter: open(path, flags) and openat(dirfd, path,
// flags) only with O_PATH, whose descriptor cannot be read, mapped or
// re-opened for reading (/proc/self/fd/N is a non-O_PATH open again). A
// filter of its own, installed after confine() read /proc/self/status.
std::vector<sock_filter> build_content_free_filter() {
  std::vector<sock_filter> f;
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArch));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kNr));
  check_open_flags(f, O_PATH, /*deny_when_set=*/false);
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  return f;
}

Result<void> install_filter(std::vector<sock_filter> filter) {
  sock_fprog program{static_cast<unsigned short>(filter.size()), filter.data()};
  if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &program) != 0)
    return fail("cannot install the seccomp filter: ", errno_text());
  return {};
}

// ---- checks

Result<size_t> thread_count() {
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return fail("cannot list /proc/self/task: ", errno_text());
  size_t count = 0;
  while (const dirent* entry = ::readdir(tasks))
    if (entry->d_name[0] != '.') ++count;
  ::closedir(tasks);
  return count;
}

int landlock_abi() {
  long abi = syscall(__NR_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

constexpr uint64_t kLandlockFsV1 = (1ULL << 13) - 1;  // EXECUTE … MAKE_SYM
constexpr uint64_t kLandlockExecute = 1ULL << 0;
constexpr uint64_t kLandlockReadFile = 1ULL << 2;
constexpr uint64_t kLandlockReadDir = 1ULL << 3;
constexpr uint64_t kLandlockMakeChar = 1ULL << 6;
constexpr uint64_t kLandlockMakeBlock = 1ULL << 11;
constexpr uint64_t kLandlockRefer = 1ULL << 13;             // ABI 2
constexpr uint64_t kLandlockTruncate = 1ULL << 14;          // ABI 3
constexpr uint64_t kLandlockIoctlDev = 1ULL << 15;          // ABI 5
constexpr uint64_t kLandlockNetBindTcp = 1ULL << 0;         // ABI 4
constexpr uint64_t kLandlockNetConnectTcp = 1ULL << 1;      // ABI 4
constexpr uint64_t kLandlockScopeAbstractUnix = 1ULL << 0;  // ABI 6
constexpr uint64_t kLandlockScopeSignal = 1ULL << 1;        // ABI 6

// struct landlock_ruleset_attr as of ABI 6; Debian 12's header has only
// the first field. The size passed says which fields the kernel reads.
struct LandlockRuleset {
  uint64_t handled_access_fs = 0;
  uint64_t handled_access_net = 0;
  uint64_t scoped = 0;
};

// The nearest existing ancestor of `path` (itself if it exists).
fs::path existing_ancestor(const fs::path& path) {
  fs::path at = path.lexically_normal();
  std::error_code ec;
  while (!at.empty() && at != at.root_path() && !fs::exists(fs::symlink_status(at, ec)))
    at = at.parent_path();
  return at;
}

// Step 9, the front's: writes only beneath the state dir, reads only there
// and beneath the journals' directories; no TCP bind or connect, no
// abstract Unix socket or signal out of the domain. Returns what it allows.
Result<std::string> apply_landlock(const ConfineOptions& options, int abi) {
  LandlockRuleset ruleset;
  ruleset.handled_access_fs = kLandlockFsV1;
  if (abi >= 2) ruleset.handled_access_fs |= kLandlockRefer;
  if (abi >= 3) ruleset.handled_access_fs |= kLandlockTruncate;
  if (abi >= 5) ruleset.handled_access_fs |= kLandlockIoctlDev;
  if (abi >= 4) ruleset.handled_access_net = kLandlockNetBindTcp | kLandlockNetConnectTcp;
  if (abi >= 6) ruleset.scoped = kLandlockScopeAbstractUnix | kLandlockScopeSignal;
  const size_t size = abi >= 6 ? 24 : abi >= 4 ? 16 : 8;
  Fd ruleset_fd(static_cast<int>(syscall(__NR_landlock_create_ruleset, &ruleset, size, 0)));
  if (!ruleset_fd) return fail("cannot create a Landlock ruleset: ", errno_text());
  auto allow = [&](const fs::path& path, uint64_t access) -> Result<void> {
    Fd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
    if (!fd) return fail("cannot open ", path.string(), " for a Landlock rule: ", errno_text());
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return fail("cannot stat ", path.string(), ": ", errno_text());
    // Directory rights on a file are refused by the kernel: a file gets the
    // file rights only.
    if (!S_ISDIR(st.st_mode)) access &= kLandlockReadFile | (1ULL << 1) | kLandlockTruncate;
    landlock_path_beneath_attr rule{};
    rule.allowed_access = access & ruleset.handled_access_fs;
    rule.parent_fd = fd.get();
    if (syscall(__NR_landlock_add_rule, ruleset_fd.get(), LANDLOCK_RULE_PATH_BENEATH, &rule, 0) !=
        0)
      return fail("cannot add a Landlock rule for ", path.string(), ": ", errno_text());
    return {};
  };
  const uint64_t state_access =
      ruleset.handled_access_fs & ~(kLandlockExecute | kLandlockMakeChar | kLandlockMakeBlock);
  if (auto added = allow(options.state_dir, state_access); !added)
    return std::unexpected(added.error());
  std::string note = "writes and reads beneath " + options.state_dir.string();
  std::vector<std::string> reads;
  for (const auto& path : options.read_paths) {
    const fs::path at = existing_ancestor(path);
    if (at.empty()) continue;
    if (auto added = allow(at, kLandlockReadFile | kLandlockReadDir); !added)
      return std::unexpected(added.error());
    reads.push_back(at == path.lexically_normal()
                        ? at.string()
                        : at.string() + " (for " + path.string() + ", which does not exist)");
  }
  if (!reads.empty()) {
    note += "; reads beneath";
    for (const auto& r : reads) note += " " + r;
  }
  // Listing only: the names of containers and namespaces in the runtime
  // roots, which the change notifications arm watches on (without it a
  // container made before its namespace's watch was armed went unseen).
  std::vector<std::string> lists;
  for (const auto& path : options.list_paths) {
    const fs::path at = existing_ancestor(path);
    std::error_code ec;
    if (at.empty() || !fs::is_directory(at, ec)) continue;
    if (std::ranges::find(lists, at.string()) != lists.end()) continue;
    if (auto added = allow(at, kLandlockReadDir); !added) return std::unexpected(added.error());
    lists.push_back(at.string());
  }
  if (!lists.empty()) {
    note += "; lists beneath";
    for (const auto& l : lists) note += " " + l;
  }
  note += "; nothing else";
  if (ruleset.handled_access_net) note += ", no TCP bind or connect";
  if (ruleset.scoped) note += ", no signal or abstract socket out of the domain";
  if (syscall(__NR_landlock_restrict_self, ruleset_fd.get(), 0) != 0)
    return fail("cannot enter the Landlock domain: ", errno_text());
  return note + " (ABI " + std::to_string(abi) + ")";
}

// What /proc/self/status says, against what was asked.
Result<void> verify(const ConfineReport& report, uint64_t keep) {
  DW_TRY(text, read_file("/proc/self/status", 1 << 16));
  DW_TRY(status, observe::parse_status(text));
  std::vector<std::string> wrong;
  for (int i = 0; i < 4; ++i) {
    if (status.uid[i] != report.user.uid) wrong.push_back("Uid " + std::to_string(status.uid[i]));
    if (status.gid[i] != report.user.gid) wrong.push_back("Gid " + std::to_string(status.gid[i]));
  }
  if (report.started_as_root && !status.groups.empty()) wrong.push_back("Groups not empty");
  if (status.cap_effective != keep)
    wrong.push_back(fmt::format("CapEff {:x}", status.cap_effective));
  if (status.cap_permitted != keep)
    wrong.push_back(fmt::format("CapPrm {:x}", status.cap_permitted));
  if (status.cap_inheritable != 0)
    wrong.push_back(fmt::format("CapInh {:x}", status.cap_inheritable));
  if (status.cap_ambient != 0) wrong.push_back(fmt::format("CapAmb {:x}", status.cap_ambient));
  if (report.started_as_root && status.cap_bounding != keep)
    wrong.push_back(fmt::format("CapBnd {:x}", status.cap_bounding));
  if (!status.no_new_privs) wrong.push_back("NoNewPrivs 0");
  if (status.seccomp != 2) wrong.push_back("Seccomp " + std::to_string(status.seccomp));
  if (!wrong.empty()) {
    std::string list;
    for (const auto& w : wrong) list += (list.empty() ? "" : ", ") + w;
    return fail("confinement did not take: /proc/self/status says ", list);
  }
  return {};
}

}  // namespace

Result<DaemonUser> resolve_daemon_user() {
  std::array<char, 4096> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  int error = getpwnam_r(kUserName, &entry, buffer.data(), buffer.size(), &found);
  if (error != 0 && error != ENOENT && error != ESRCH)
    return fail("cannot look up user ", kUserName, ": ", describe_errno(error));
  if (found) {
    if (found->pw_uid == 0 || found->pw_gid == 0)
      return fail(
          "user ", kUserName, " is uid ", std::to_string(found->pw_uid), " gid ",
          std::to_string(found->pw_gid),
          ": the daemon must not run as root; make it a system user of its own: ", kCreateUser);
    return DaemonUser{kUserName, found->pw_uid, found->pw_gid, true};
  }
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn(
        "NO USER '{}': the daemon will run as uid/gid {} (nobody), which other services share: "
        "they could signal it and read or change its state dir. Create the user: {}",
        kUserName, kNobody, kCreateUser);
  return DaemonUser{"nobody", kNobody, kNobody, false};
}

Result<DaemonUser> user_to_run_as() {
  if (geteuid() == 0) return resolve_daemon_user();
  std::array<char, 4096> buffer{};
  passwd entry{};
  passwd* found = nullptr;
  getpwuid_r(geteuid(), &entry, buffer.data(), buffer.size(), &found);
  return DaemonUser{found ? found->pw_name : "uid " + std::to_string(geteuid()), geteuid(),
                    getegid(), true};
}

Result<void> ensure_state_dir(const fs::path& dir, const DaemonUser& user) {
  if (auto valid = validate_state_dir_path(dir); !valid) return valid;
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) return fail("cannot stat state_dir ", dir.string(), ": ", errno_text());
    fs::path partial;
    for (const auto& part : dir.parent_path()) {
      partial /= part;
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
        return fail("cannot create ", partial.string(), " (for state_dir ", dir.string(),
                    "): ", errno_text());
    }
    if (::mkdir(dir.c_str(), 0700) == 0) {
      DW_TRY(fd, open_state_dir(dir));
      // Exactly 0700 whatever the umask; a new directory only.
      if (::fchmod(fd.get(), 0700) != 0 ||
          (geteuid() == 0 && ::fchown(fd.get(), user.uid, user.gid) != 0))
        return fail("cannot set up new state_dir ", dir.string(), ": ", errno_text());
      spdlog::info("state_dir {}: created, mode 0700, owned by {}", dir.string(),
                   user_name(user.uid));
      return {};
    }
    if (errno != EEXIST) return fail("cannot create state_dir ", dir.string(), ": ", errno_text());
  }
  DW_TRY(fd, open_state_dir(dir));
  if (::fstat(fd.get(), &st) != 0)
    return fail("cannot stat state_dir ", dir.string(), ": ", errno_text());
  if (auto checked = check_existing_state_dir(dir, fd.get(), st, user); !checked) return checked;
  if (st.st_mode & (S_IRGRP | S_IXGRP | S_IROTH | S_IXOTH))
    spdlog::warn(
        "state_dir {} (mode {}) can be listed by others; its keys and logs are 0600, but "
        "driftwatch would make it 0700 (it does not change an existing directory's mode)",
        dir.string(), octal_mode(st.st_mode));
  return {};
}

const char* to_string(ConfineRole role) {
  switch (role) {
    case ConfineRole::sampler:
      return "sampler";
    case ConfineRole::proc_peer:
      return "proc_peer";
    case ConfineRole::front:
      break;
  }
  return "front";
}

Result<ConfineOptions> confine_options_for(const NodeConfig& config) {
  DW_TRY(user, user_to_run_as());
  ConfineOptions options;
  options.role = ConfineRole::front;
  options.user = std::move(user);
  options.state_dir = config.state_dir;
  for (const auto& journal : config.launch_journals)
    options.read_paths.push_back(fs::absolute(journal).lexically_normal().parent_path());
  for (const auto* roots : {&config.runc_roots, &config.crun_roots, &config.containerd_roots})
    for (const auto& root : *roots)
      options.list_paths.push_back(fs::absolute(root).lexically_normal());
  return options;
}

ConfineOptions sampler_confine_options(const DaemonUser& user, std::vector<fs::path> read_paths,
                                       std::vector<fs::path> covered_dirs) {
  ConfineOptions options;
  options.role = ConfineRole::sampler;
  options.user = user;
  options.read_paths = std::move(read_paths);
  options.covered_dirs = std::move(covered_dirs);
  return options;
}

ConfineOptions proc_peer_confine_options(const DaemonUser& user,
                                         std::vector<fs::path> covered_dirs) {
  ConfineOptions options;
  options.role = ConfineRole::proc_peer;
  options.user = user;
  options.covered_dirs = std::move(covered_dirs);
  return options;
}

std::vector<std::string> seccomp_denied_syscalls(bool allow_bpf_map_ops, ConfineRole role) {
  std::vector<std::string> names;
  for (const auto& d : kDenied) names.emplace_back(d.name);
  if (!allow_bpf_map_ops) names.emplace_back(kBpf.name);
  if (role == ConfineRole::sampler || role == ConfineRole::proc_peer)
    for (const auto& d : kSamplerDenied) names.emplace_back(d.name);
  if (role == ConfineRole::proc_peer)
    for (const auto& d : kProcPeerDenied) names.emplace_back(d.name);
  return names;
}

Result<void> install_seccomp_filter(bool allow_bpf_map_ops, ConfineRole role) {
  if (auto installed = install_filter(build_filter(allow_bpf_map_ops, role)); !installed)
    return installed;
  if (role == ConfineRole::proc_peer) return install_filter(build_content_free_filter());
  return {};
}

Result<ConfineReport> confine(const ConfineOptions& options) {
  DW_TRY(threads, thread_count());
  if (threads != 1)
    return fail("cannot confine: ", std::to_string(threads),
                " threads are running, and credentials, capabilities and no_new_privs are per "
                "thread; drop_privileges must come before any step that starts a thread");
  const bool front = options.role == ConfineRole::front;
  ConfineReport report;
  report.role = options.role;
  report.started_as_root = geteuid() == 0;
  report.landlock_abi = landlock_abi();
  const bool peer = options.role == ConfineRole::proc_peer;
  report.landlock =
      front  ? "not available on this kernel"
      : peer ? "not used: a Landlock domain denies ptrace-mode reads of every process outside it "
               "(/proc/PID/ns, /proc/PID/root), which the proc peer is for; the seccomp filters "
               "deny every write and every open without O_PATH instead"
             : "not used: the bundles whose config.json it hashes may be anywhere on the host "
               "(the runtime's caller chooses), so no set of directories can be allowed in "
               "advance; the seccomp filter denies every write instead, and without "
               "CAP_SYS_PTRACE it reaches no other user's root or memory";
  uint64_t keep = kept_mask(options.role);
  report.original_mount_namespace = namespace_inode("/proc/self/ns/mnt");
  if (report.started_as_root) {
    if (front) {
      DW_TRY(handed, hand_over_state_dir(options.state_dir, options.user));
      report.handed_over = handed;
    }
    DW_TRY(mounts, confine_mounts(options));
    report.read_only_mounts = mounts.applied;
    report.mounts_note = mounts.note;
    report.hidden_paths = mounts.hidden;
    if (!mounts.applied) spdlog::warn("CONFINEMENT WEAKER: read-only mounts {}", mounts.note);
    if (auto became = become_user(options.user, keep); !became)
      return std::unexpected(became.error());
    report.user = options.user;
  } else {
    DW_TRY(reduced, reduce_capabilities(keep));
    keep = reduced;
    DW_TRY(self, user_to_run_as());
    report.user = std::move(self);
    report.mounts_note = "not applied: not started as root";
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return fail("cannot set no_new_privs: ", errno_text());
  // Not dumpable: no core file with the node key in it, and no process of
  // the same user may ptrace this one.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return fail("cannot clear the dumpable flag: ", errno_text());
  // The proc peer's O_PATH-only filter comes after verify(), which reads
  // /proc/self/status.
  if (auto installed = install_filter(build_filter(options.allow_bpf_map_ops, options.role));
      !installed)
    return std::unexpected(installed.error());
  report.kept_capabilities = observe::capability_names(keep);
  report.no_new_privs = true;
  report.seccomp = true;
  report.bpf_map_ops = options.allow_bpf_map_ops;
  report.denied_syscalls = seccomp_denied_syscalls(options.allow_bpf_map_ops, options.role);
  report.opens = front  ? "read and write (Landlock says where)"
                 : peer ? "O_PATH only: no file content can be read"
                        : "read-only";
  if (auto verified = verify(report, keep); !verified) return std::unexpected(verified.error());
  if (peer) {
    if (auto installed = install_filter(build_content_free_filter()); !installed)
      return std::unexpected(installed.error());
  }
  if (front && report.landlock_abi > 0) {
    DW_TRY(note, apply_landlock(options, report.landlock_abi));
    report.landlocked = true;
    report.landlock = std::move(note);
  } else if (front) {
    spdlog::warn(
        "CONFINEMENT WEAKER: this kernel has no Landlock; the front can read what its user can "
        "and write wherever the read-only mounts leave writable");
  }
  return report;
}

json to_json(const ConfineReport& report) {
  return json{
      {"role", to_string(report.role)},
      {"user", {{"name", report.user.name}, {"uid", report.user.uid}, {"gid", report.user.gid}}},
      {"dedicated_user", report.user.dedicated},
      {"started_as_root", report.started_as_root},
      {"capabilities", report.kept_capabilities},
      {"no_new_privs", report.no_new_privs},
      {"seccomp", report.seccomp ? "filter" : "disabled"},
      {"denied_syscalls", report.denied_syscalls},
      {"opens", report.opens},
      {"bpf_map_ops", report.bpf_map_ops},
      {"read_only_mounts", report.read_only_mounts},
      {"mounts", report.mounts_note},
      {"hidden_paths", report.hidden_paths},
      {"original_mount_namespace", report.original_mount_namespace},
      {"landlock_abi", report.landlock_abi},
      {"landlocked", report.landlocked},
      {"landlock", report.landlock},
  };
}

}  // namespace driftwatch::app
