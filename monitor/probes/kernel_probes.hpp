#pragma once
// The eBPF probes (bpf/probes.bpf.c), loaded through their libbpf skeleton
// and attached each on its own (one that does not attach leaves the others
// working, and says why): which sandboxes are watched (a token per cgroup id
// or PID-namespace inode, assigned by the caller); from cap_capable, the
// exact counts of capability checks per (sandbox, syscall, capability,
// outcome), what could not be detailed or counted, and the denied attempts
// in detail; from sched_process_exec, sched_process_fork and
// cgroup_attach_task, lifecycle events that call for a resample now.
//
// Loading needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN): the daemon loads
// it before it drops privileges. Everything after works on the file
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
  enum class Kind { exec, fork, attach };
  Kind kind = Kind::exec;
  uint64_t time_ns = 0;  // CLOCK_MONOTONIC
  uint32_t token = 0;
  uint32_t pid = 0;
};
std::string to_string(LifecycleEvent::Kind kind);  // "exec", "fork", "attach"

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
  /// attach_report().
  static Result<KernelProbes> load(uint32_t events_per_second);
  const AttachReport& attach_report() const;

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
