#pragma once
// The eBPF probes (bpf/probes.bpf.c), loaded through their libbpf skeleton
// and attached each on its own (one that does not attach leaves the others
// working, and says why): which sandboxes are watched (a token per cgroup id
// or PID-namespace inode, assigned by the caller); from cap_capable, the
// exact counts of capability checks per (sandbox, syscall, capability,
// outcome), what could not be detailed or counted, and the denied attempts
// in detail; from sched_process_exec, sched_process_fork and
// cgroup_attach_task, and from the unshare and setns syscall tracepoints,
// lifecycle events that call for a resample now.
//
// Loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): the daemon loads
// it before it drops privileges. The syscall tracepoints also need tracefs
// (libbpf reads a tracepoint's id there): load() mounts it on
// /sys/kernel/tracing when it is not, which needs CAP_SYS_ADMIN, and leaves
// it mounted. Everything after works on the file
// descriptors it holds (map updates and lookups, the ring buffer), which
// need no capability.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace driftwatch::probes {

struct AttemptCount {
  uint32_t token = 0;
  uint32_t syscall = 0;
  uint32_t capability = 0;
  bool denied = false;
  uint64_t count = 0;
};

struct AttemptEvent {
  uint64_t time_ns = 0;  // CLOCK_MONOTONIC
  uint64_t cgroup_id = 0;
  uint32_t token = 0;
  uint32_t pid = 0;
  uint32_t tid = 0;
  uint32_t uid = 0;
  uint32_t euid = 0;
  uint32_t syscall = 0;
  int32_t capability = 0;
  int32_t result = 0;
  std::string comm;
};

struct LifecycleEvent {
  // namespace_change: unshare or setns succeeded, or a clone made a child
  // in namespaces of its own.
  enum class Kind { exec, fork, attach, namespace_change };
  Kind kind = Kind::exec;
  uint64_t time_ns = 0;  // CLOCK_MONOTONIC
  uint32_t token = 0;
  uint32_t pid = 0;
  // namespace_change only: the syscall (x86-64 number), its return (the
  // child's pid for a clone) and the CLONE_NEW* flags (setns: its nstype).
  uint32_t syscall = 0;
  int64_t result = 0;
  uint64_t flags = 0;
};
/// "exec", "fork", "attach", "namespace".
std::string to_string(LifecycleEvent::Kind kind);
/// For a resample's reason: the kind, and for a namespace change its
/// syscall, flags and result ("namespace: unshare 0x10000000 = 0").
std::string describe(const LifecycleEvent& event);
/// The probe (its name in driftwatch_probe_attached) that sent a namespace
/// change: "syscalls/sys_exit_unshare", "syscalls/sys_exit_setns", or
/// "sched_process_fork" for a clone.
std::string namespace_probe(const LifecycleEvent& event);

/// Where tracefs is, for the syscall tracepoints, and whether load() had to
/// mount it.
inline constexpr const char* kTracefsPath = "/sys/kernel/tracing";
struct TracefsStatus {
  bool needed = false;   // a syscall tracepoint was to be attached
  bool mounted = false;  // tracefs is mounted at kTracefsPath
  bool mounted_by_driftwatch = false;
  std::string error;  // why it is not mounted
};
/// Mounts tracefs at kTracefsPath unless it is there already (statfs says
/// TRACEFS_MAGIC); needs CAP_SYS_ADMIN for the mount.
TracefsStatus ensure_tracefs();

/// Each probe by its name in driftwatch_probe_attached ("cap_capable",
/// "sched_process_exec", …) and why it is not attached ("" when it is).
using AttachReport = std::vector<std::pair<std::string, std::string>>;

/// What the probe counted but could not detail, and what it could not count.
struct AttemptLosses {
  uint64_t ring_full = 0;       // details dropped: no room in the ring buffer
  uint64_t rate_limited = 0;    // details dropped: over the sandbox's rate
  uint64_t counters_full = 0;   // attempts not counted at all (must stay 0)
  uint64_t lifecycle_full = 0;  // lifecycle events with no room in their ring buffer
};

/// The x86-64 name of a syscall the probe reports ("setuid", "mount"), from
/// a fixed list of the privilege-relevant ones; "other" for the rest, so
/// metric labels stay bounded.
std::string syscall_kind(uint32_t nr);
/// Every name syscall_kind() can return, "other" last.
const std::vector<std::string>& syscall_kinds();

class KernelProbes {
 public:
  /// Opens and loads the programs and attaches each; an error (no BTF, no
  /// CAP_BPF) when none can run. A program that does not attach is named in
  /// attach_report(). Without `syscall_probes` the syscall tracepoints are
  /// not loaded (their cost is every task's: README, "The probes").
  static Result<KernelProbes> load(uint32_t events_per_second, bool syscall_probes = true);
  const AttachReport& attach_report() const;
  /// What load() found or did about tracefs.
  const TracefsStatus& tracefs() const;

  KernelProbes(KernelProbes&&) noexcept;
  KernelProbes& operator=(KernelProbes&&) noexcept;
  ~KernelProbes();

  Result<void> watch_cgroup(uint64_t cgroup_id, uint32_t token);
  Result<void> watch_pid_namespace(uint32_t inode, uint32_t token);
  /// Forgets a cgroup or PID namespace (no error when it was not watched).
  void unwatch_cgroup(uint64_t cgroup_id);
  void unwatch_pid_namespace(uint32_t inode);
  /// Drops the counters of a token (its sandbox is gone).
  void forget_token(uint32_t token);

  /// Every counter, as the kernel holds it now.
  Result<std::vector<AttemptCount>> counts() const;
  AttemptLosses losses() const;

  /// The ring buffers' epoll descriptor: readable when events wait.
  int events_fd() const;
  /// Hands every waiting event to `attempt` or `lifecycle`; returns how many
  /// attempts.
  Result<size_t> consume(const std::function<void(const AttemptEvent&)>& attempt,
                         const std::function<void(const LifecycleEvent&)>& lifecycle = {});

 private:
  struct State;
  explicit KernelProbes(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace driftwatch::probes
