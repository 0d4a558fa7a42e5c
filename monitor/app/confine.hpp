#pragma once
// What the daemon can still do once it runs. It is three processes after its
// drop_privileges step, each confined for its own job (README.md, "The
// daemon"):
//
//  - the *front* (HTTP, ingest, journals, correlation, metrics, the durable
//    store) runs as the daemon's own unprivileged user with CAP_DAC_READ_SEARCH
//    alone (root-only journals), and Landlock lets it write its state dir and
//    read its launch journals' directories, nothing else: it is the process
//    that parses what control planes and clients send;
//  - the *sampler* (app/sampler_process.hpp) runs as the same user with
//    CAP_DAC_READ_SEARCH alone, reads /proc, cgroupfs and the runtimes'
//    state, and can write no file at all: its seccomp filter refuses every
//    open for writing and every call that changes a file. Without
//    CAP_SYS_PTRACE it can neither follow another user's /proc/PID/root nor
//    open its /proc/PID/mem;
//  - the sampler's *proc peer* (app/proc_peer.hpp), its child, runs as the
//    same user with CAP_SYS_PTRACE alone and does the ptrace-mode reads
//    (sandbox/ptrace_reads.hpp: namespace and exe links, the view of a
//    sandbox's root). It writes nothing either, and its last filter refuses
//    every open without O_PATH: it can read no file's content at all.
//
// Landlock cannot confine the sampler or its peer: a Landlock domain denies
// its members every ptrace-mode access to a process outside the domain,
// whatever capabilities they hold (security/landlock/task.c,
// hook_ptrace_access_check), and readlink(/proc/PID/ns/*),
// /proc/PID/{root,exe} are ptrace-mode reads (measured here, ABI 7: EACCES).
// So the processes that must read other processes are kept from writing by
// seccomp, and the process that must write is kept from everything else by
// Landlock.
//
// The daemon calls exactly confine(confine_options_for(config)) for the
// front, confine(sampler_confine_options(user)) in the sampler and
// confine(proc_peer_confine_options(user)) in the proc peer, so a test that
// calls them tests the daemon's own credentials and filters.
//
// What confine() does, in order (each step needs what the ones before it
// have not yet given up):
//
//  1. front: hands the state dir over to the daemon user (chown, no link
//     followed; steps that ran as root before this one may have created
//     files there);
//  2. a private mount namespace in which every mount is read-only (the
//     front's state dir excepted), and secrets (/etc/shadow, /etc/ssh,
//     /root, …) are covered (needs CAP_SYS_ADMIN, so before the capabilities
//     go); the sampler read the host's namespaces before, and compares
//     sandboxes with those;
//  3. bounding set and securebits (needs CAP_SETPCAP): only the kept
//     capabilities can ever be held again, root is no longer special;
//  4. setgroups/setresgid/setresuid to the daemon user, keeping the
//     permitted set across the change (SECBIT_KEEP_CAPS);
//  5. capset: effective = permitted = the role's capabilities
//     (kFrontCapabilities, kSamplerCapabilities, kProcPeerCapabilities),
//     inheritable and ambient empty;
//  6. no_new_privs, not dumpable;
//  7. the seccomp filter: it denies capset, setuid and mount, which the
//     steps above still make; the sampler's and the proc peer's also deny
//     every write;
//  8. checks /proc/self/status against all of the above;
//  9. front: Landlock, last (after it, /proc/self is out of reach); proc
//     peer: a second filter that refuses every open without O_PATH, last
//     (after it, /proc/self/status cannot be read either).

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

/// The capabilities the sampler keeps: CAP_DAC_READ_SEARCH alone, to read
/// the runtimes' root-only state (/run/runc is 0700, state.json 0600) and
/// bundles of other owners, and to look up paths beneath directories it may
/// not search. No CAP_SYS_PTRACE: its proc peer does the ptrace-mode reads,
/// so the process that reads file content cannot follow another user's
/// /proc/PID/root nor open its /proc/PID/mem. Nothing else: no write
/// override (CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_CHOWN), no CAP_KILL, no
/// CAP_SYS_ADMIN. The seccomp filter takes from it what the monitor never
/// uses it for: open_by_handle_at.
inline constexpr int kSamplerCapabilities[] = {CAP_DAC_READ_SEARCH};
/// The proc peer's: CAP_SYS_PTRACE alone, since reading another user's
/// /proc/PID/{ns,exe,root} is a ptrace-mode read. Its filters take from it
/// what the monitor never uses it for (ptrace(2), process_vm_readv/writev,
/// pidfd_getfd, kcmp) and every open without O_PATH, so no file's content
/// (/proc/PID/mem, /proc/PID/root/etc/shadow) can be read with it.
inline constexpr int kProcPeerCapabilities[] = {CAP_SYS_PTRACE};
/// The front's: CAP_DAC_READ_SEARCH alone, to read launch journals a control
/// plane writes root-only (0600 in a 0700 directory); Landlock limits it to
/// the journals' directories and the state dir.
inline constexpr int kFrontCapabilities[] = {CAP_DAC_READ_SEARCH};

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

/// Which of the daemon's three processes is confined.
enum class ConfineRole { front, sampler, proc_peer };
const char* to_string(ConfineRole role);

/// What confine() is asked to do.
struct ConfineOptions {
  ConfineRole role = ConfineRole::front;
  /// Whom to become (ignored when not started as root).
  DaemonUser user;
  /// Front: the only place it writes. Sampler, proc peer: unused (they
  /// write nowhere).
  std::filesystem::path state_dir;
  /// Front: what it reads after confinement (its launch journals'
  /// directories); Landlock allows reading there and nowhere else but the
  /// state dir. A path that does not exist yet is allowed through its
  /// nearest existing ancestor (said in ConfineReport::landlock).
  std::vector<std::filesystem::path> read_paths;
  /// Front: directories whose entries it lists after confinement (the
  /// runtime roots, where it arms a change notification on each container
  /// and containerd namespace): Landlock allows listing beneath them, never
  /// reading a file. A path that does not exist yet is allowed through its
  /// nearest existing directory.
  std::vector<std::filesystem::path> list_paths;
  /// Sampler, proc peer: directories they must not see, each covered by an
  /// empty tmpfs of mode 000 in their own mount namespace: the front's state
  /// dir, which holds the node's signing key (they run as the front's user,
  /// so its modes alone do not keep them out). One that holds a read path
  /// stays visible, said in the log.
  std::vector<std::filesystem::path> covered_dirs;
  /// bpf(2) for commands on map descriptors already open (lookup, update,
  /// delete, next key, batch forms, object info): for a daemon whose probes
  /// were loaded before this step and whose watched-sandbox map it keeps up
  /// to date. Every other bpf command (map create, program load, attach,
  /// pin, get-fd-by-id) stays denied. False: bpf(2) is denied outright.
  bool allow_bpf_map_ops = false;
};

/// The front's options: its state dir, the directories of its launch
/// journals, and user_to_run_as().
Result<ConfineOptions> confine_options_for(const NodeConfig& config);

/// The sampler's options: `user` (the front's), kSamplerCapabilities, no state
/// dir (its mounts are all read-only), the no-write seccomp filter.
/// `read_paths`: its runc and crun roots, never covered. `covered_dirs`: the
/// front's state dir.
ConfineOptions sampler_confine_options(const DaemonUser& user,
                                       std::vector<std::filesystem::path> read_paths = {},
                                       std::vector<std::filesystem::path> covered_dirs = {});

/// The proc peer's options: `user` (the sampler's), kProcPeerCapabilities,
/// no state dir, the no-write filter and, last, the O_PATH-only one.
/// `covered_dirs`: the front's state dir.
ConfineOptions proc_peer_confine_options(const DaemonUser& user,
                                         std::vector<std::filesystem::path> covered_dirs = {});

/// What confine() did; /healthz shows it (to_json below).
struct ConfineReport {
  ConfineRole role = ConfineRole::front;
  bool started_as_root = false;
  DaemonUser user;  // whom the process runs as now
  std::vector<std::string> kept_capabilities;
  bool no_new_privs = false;
  bool seccomp = false;
  std::vector<std::string> denied_syscalls;  // EPERM unless said otherwise below
  /// What open(2) and openat(2) may still do: "read-only" (sampler), "O_PATH
  /// only: …" (proc peer), "read and write …" (front).
  std::string opens;
  bool bpf_map_ops = false;
  /// The read-only mount namespace: applied, or why not (then said loudly).
  bool read_only_mounts = false;
  std::string mounts_note;
  std::vector<std::string> hidden_paths;
  /// The inode of the mount namespace the process was in before confine().
  uint64_t original_mount_namespace = 0;
  /// The Landlock ABI this kernel offers (0: none), whether the process is
  /// in a Landlock domain, and what it allows (or why there is none).
  int landlock_abi = 0;
  bool landlocked = false;
  std::string landlock;
  /// State dir entries whose owner was changed to `user` (an earlier run as
  /// root, or startup steps before this one).
  size_t handed_over = 0;
};

nlohmann::json to_json(const ConfineReport& report);

/// Confines the calling process for good (see the top of this file). Must
/// run before any thread is started: credentials, capabilities,
/// no_new_privs and Landlock are per thread, so it refuses a process with
/// more than one. Started as root: every step. Started as another user: the
/// capabilities are reduced to those of the role it holds, then
/// no_new_privs, seccomp and (front) Landlock; no mount namespace (it needs
/// CAP_SYS_ADMIN). Checks the result in /proc/self/status, and fails if
/// anything is not as asked.
Result<ConfineReport> confine(const ConfineOptions& options);

/// The seccomp filter of confine() alone: the denied syscalls get EPERM,
/// clone with a CLONE_NEW* flag EPERM, clone3 ENOSYS (glibc then falls back
/// to clone, whose flags a filter can read), ioctl TIOCSTI/TIOCLINUX EPERM,
/// another architecture or an x32 syscall number kills the process. Needs
/// no_new_privs or CAP_SYS_ADMIN. Exposed for the test that shows each
/// denial comes from the filter and not from a missing capability.
/// The sampler's filter adds: open/openat with O_WRONLY, O_RDWR, O_CREAT or
/// O_TRUNC EPERM, openat2 ENOSYS (its flags are out of a filter's reach;
/// sandbox/in_root.hpp resolves paths without it), every call that makes,
/// removes, renames, links, truncates or changes the owner, mode, times or
/// attributes of a file EPERM, and every way of sending a signal EPERM.
/// The proc peer's adds to the sampler's: reading extended attributes and
/// sendmsg/sendmmsg (no descriptor passed on) EPERM, then a second filter:
/// open and openat without O_PATH EPERM.
Result<void> install_seccomp_filter(bool allow_bpf_map_ops, ConfineRole role = ConfineRole::front);

/// The names of the syscalls install_seccomp_filter() answers with EPERM
/// (clone3's and openat2's ENOSYS, clone's flag check, ioctl's command
/// check and open's flag check not included).
std::vector<std::string> seccomp_denied_syscalls(bool allow_bpf_map_ops,
                                                 ConfineRole role = ConfineRole::front);

}  // namespace driftwatch::app
