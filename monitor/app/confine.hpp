#pragma once
// What the daemon can still do once it runs: the `drop_privileges` step turns
// the root process that bound the port into one that runs as its own
// unprivileged user, keeps two capabilities, cannot gain any other, writes
// only its state dir and cannot make the syscalls a monitor never makes.
// The daemon calls exactly confine(confine_options_for(config)), so a test
// that calls it tests the daemon's own credentials and filters.
//
// What confine() does, in order (each step needs what the ones before it
// have not yet given up):
//
//  1. hands the state dir over to the daemon user (chown, no link followed;
//     steps that ran as root before this one may have created files there);
//  2. a private mount namespace in which every mount is read-only except the
//     state dir, and secrets (/etc/shadow, /etc/ssh, /root, …) are covered
//     (needs CAP_SYS_ADMIN, so before the capabilities go);
//  3. bounding set and securebits (needs CAP_SETPCAP): only the kept
//     capabilities can ever be held again, root is no longer special;
//  4. setgroups/setresgid/setresuid to the daemon user, keeping the
//     permitted set across the change (SECBIT_KEEP_CAPS);
//  5. capset: effective = permitted = kKeptCapabilities, inheritable and
//     ambient empty;
//  6. no_new_privs, not dumpable;
//  7. the seccomp filter, last: it denies capset, setuid and mount, which
//     the steps above still make.
//
// Why no Landlock, although this kernel has it: a Landlock domain denies its
// members every ptrace-mode access to a process outside the domain, whatever
// capabilities they hold (security/landlock/task.c, hook_ptrace_access_check),
// and a scope-only domain does the same. readlink(/proc/PID/ns/*) and
// /proc/PID/{root,exe} are ptrace-mode reads: under Landlock the sampler
// reads no namespace and no sandbox root (measured here, ABI 7: EACCES).
// Confinement that blinds the monitor is not an option; the read-only mount
// namespace and the seccomp filter take its place. What remains possible
// for code running as the daemon is listed in README.md ("The daemon").

#include <linux/capability.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/node_config.hpp"
#include "common/result.hpp"

namespace driftwatch::app {

/// The capabilities the daemon keeps: reading other users'
/// /proc/PID/{ns,root,exe} is a ptrace-mode read and needs CAP_SYS_PTRACE;
/// looking up masked paths inside a sandbox's root and reading the runtimes'
/// root-only state (/run/runc is 0700, state.json 0600), bundles and journals
/// of other owners needs CAP_DAC_READ_SEARCH. Nothing else: no write
/// override (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN), no CAP_KILL, no
/// CAP_SYS_ADMIN. The seccomp filter takes from these two what the monitor
/// never uses them for: ptrace(2), process_vm_readv/writev, pidfd_getfd,
/// open_by_handle_at.
inline constexpr int kKeptCapabilities[] = {CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH};

/// The user the daemon runs as.
struct DaemonUser {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  /// False for the fallback uid/gid 65534, which other services share.
  bool dedicated = false;
};

/// The `driftwatch` system user if it exists, else uid/gid 65534 ("nobody")
/// with one loud warning per process naming how to create the user. Fails
/// when the `driftwatch` user or its group is root.
Result<DaemonUser> resolve_daemon_user();

/// Whom this process will run as after confine(): resolve_daemon_user() when
/// it runs as root, else the user it already is.
Result<DaemonUser> user_to_run_as();

/// Makes sure `dir` is a state dir the daemon can own alone, never changing
/// the mode of an existing one. Missing: created 0700 (missing parents 0755)
/// and owned by `user`. Refused, with a message naming the path, its owner
/// and mode: a symbolic link, anything but a directory, a directory writable
/// by its group or by others ("state_dir /tmp is writable by others (mode
/// 1777): use a directory of its own, e.g. /var/lib/driftwatch"), one owned
/// by someone other than `user` or root, "/", and a root-owned directory that
/// is neither 0700 (what driftwatch made when it ran as root) nor empty. A
/// root-owned one is handed over to `user` by confine().
Result<void> ensure_state_dir(const std::filesystem::path& dir, const DaemonUser& user);

/// What confine() is asked to do.
struct ConfineOptions {
  /// Whom to become (ignored when not started as root).
  DaemonUser user;
  /// The only place the daemon writes.
  std::filesystem::path state_dir;
  /// What the daemon reads after confinement outside /proc and /sys (launch
  /// journals' directories, runc and crun roots): never covered by a mask.
  std::vector<std::filesystem::path> read_paths;
  /// bpf(2) for commands on map descriptors already open (lookup, update,
  /// delete, next key, batch forms, object info): for a daemon whose probes
  /// were loaded before this step and whose watched-sandbox map it keeps up
  /// to date. Every other bpf command (map create, program load, attach,
  /// pin, get-fd-by-id) stays denied. False: bpf(2) is denied outright.
  bool allow_bpf_map_ops = false;
  /// Whether the caller, where PID 1's namespaces cannot be read, compares
  /// sandboxes' mount namespaces with ConfineReport::original_mount_namespace
  /// instead of the process's own. If not, confine() leaves the mount
  /// namespace alone on such a host (the sampler would take the private one
  /// for the host's, and every sandbox's mount namespace would look private)
  /// and says so loudly. Where PID 1's can be read, the read-only mounts are
  /// applied either way.
  bool compares_with_original_mount_namespace = false;
};

/// The daemon's options: its state dir, the directories of its launch
/// journals and its runc/crun roots, and user_to_run_as().
Result<ConfineOptions> confine_options_for(const NodeConfig& config);

/// What confine() did; /healthz shows it (to_json below).
struct ConfineReport {
  bool started_as_root = false;
  DaemonUser user;  // whom the process runs as now
  std::vector<std::string> kept_capabilities;
  bool no_new_privs = false;
  bool seccomp = false;
  std::vector<std::string> denied_syscalls;  // EPERM unless said otherwise below
  bool bpf_map_ops = false;
  /// The read-only mount namespace: applied, or why not (then said loudly).
  bool read_only_mounts = false;
  std::string mounts_note;
  std::vector<std::string> hidden_paths;
  /// The inode of the mount namespace the process was in before confine().
  uint64_t original_mount_namespace = 0;
  /// The Landlock ABI this kernel offers (0: none) and why it is not used.
  int landlock_abi = 0;
  std::string landlock;
  /// State dir entries whose owner was changed to `user` (an earlier run as
  /// root, or startup steps before this one).
  size_t handed_over = 0;
};

nlohmann::json to_json(const ConfineReport& report);

/// Confines the calling process for good (see the top of this file). Must
/// run before any thread is started: credentials, capabilities and
/// no_new_privs are per thread, so it refuses a process with more than one.
/// Started as root: every step. Started as another user: the capabilities
/// are reduced to those of kKeptCapabilities it holds, then no_new_privs and
/// seccomp; no mount namespace (it needs CAP_SYS_ADMIN). Checks the result
/// in /proc/self/status before it returns, and fails if anything is not as
/// asked.
Result<ConfineReport> confine(const ConfineOptions& options);

/// The seccomp filter of confine() alone: the denied syscalls get EPERM,
/// clone with a CLONE_NEW* flag EPERM, clone3 ENOSYS (glibc then falls back
/// to clone, whose flags a filter can read), ioctl TIOCSTI/TIOCLINUX EPERM,
/// another architecture or an x32 syscall number kills the process. Needs
/// no_new_privs or CAP_SYS_ADMIN. Exposed for the test that shows each
/// denial comes from the filter and not from a missing capability.
Result<void> install_seccomp_filter(bool allow_bpf_map_ops);

/// The names of the syscalls install_seccomp_filter() answers with EPERM
/// (clone3's ENOSYS, clone's flag check and ioctl's command check not
/// included).
std::vector<std::string> seccomp_denied_syscalls(bool allow_bpf_map_ops);

}  // namespace driftwatch::app
