#pragma once
// Samples a sandbox: finds its members (cgroup or process tree, plus its PID
// namespace), reads each member's /proc state pinned by a pidfd, checks
// masked and read-only paths through each mount namespace, and returns an
// Observation. Members that exit mid-sample are dropped whole, never
// reported half-read. A thread holding other credentials than its process's
// leader is a member of its own (pid = its thread id), and a process whose
// leader has exited while its other threads run on is seen through them:
// credentials are per thread in Linux, and a process's own /proc/PID files
// describe its leader alone.

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "projection/observed.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/identity.hpp"
#include "sandbox/ptrace_reads.hpp"

namespace driftwatch::sandbox {

/// One pass over /proc: the PID namespace of every process. A sweep of many
/// sandboxes builds it once and shares it; a single sample builds its own.
struct ProcessTable {
  std::map<uint64_t, std::vector<pid_t>> by_pid_namespace;
  std::map<pid_t, uint64_t> pid_namespace_of;  // the same, by process
  static ProcessTable scan(const observe::ProcReader& proc);
  /// The same with the ns/pid links read through `reads`.
  static ProcessTable scan(const observe::ProcReader& proc, const PtraceReads& reads);
};

class Sampler {
 public:
  /// The host's namespaces, which every member's are compared with:
  /// PID 1's, or the monitor's own where PID 1's cannot be read.
  struct HostNamespaces {
    std::string source;  // "pid1" or "monitor"
    std::map<std::string, uint64_t> inodes;
  };
  static HostNamespaces read_host_namespaces(const observe::ProcReader& proc);

  /// Reads the host namespaces now (read_host_namespaces); does the
  /// ptrace-mode reads itself (LocalPtraceReads).
  Sampler(observe::ProcReader proc, observe::CgroupReader cgroups);
  /// Compares with `host`, read earlier: the daemon reads them once before
  /// it confines itself into a mount namespace of its own.
  Sampler(observe::ProcReader proc, observe::CgroupReader cgroups, HostNamespaces host);
  /// Has `reads` do the ptrace-mode reads (the daemon's sampler: its proc
  /// peer, app/proc_peer.hpp); null: this process does them.
  Sampler(observe::ProcReader proc, observe::CgroupReader cgroups, HostNamespaces host,
          std::shared_ptr<const PtraceReads> reads);

  /// Samples `sandbox` now. `table` (optional) is a recent process table;
  /// without one, /proc is scanned. Fails if the sandbox's first process is
  /// gone or no member could be read whole.
  Result<projection::Observation> sample(const SandboxRef& sandbox,
                                         const projection::ObservationScope& scope,
                                         const ProcessTable* table = nullptr) const;

  /// The members of a sandbox right now (sorted PIDs).
  Result<std::vector<pid_t>> members(const SandboxRef& sandbox, const ProcessTable* table) const;

  const observe::ProcReader& proc() const { return proc_; }
  /// ProcessTable::scan with this sampler's ptrace-mode reads.
  ProcessTable scan_processes() const { return ProcessTable::scan(proc_, *reads_); }
  /// Whose namespaces count as the host's: "pid1", or "monitor" where PID
  /// 1's cannot be read (the monitor runs in a sandbox that hides them).
  const std::string& host_namespaces_source() const { return host_.source; }

 private:
  /// Members pinned and read per batch (sample()): their link reads go to
  /// the proc peer in one exchange per batch.
  static constexpr size_t kMembersPerBatch = 64;
  /// The ptrace-mode reads of one member: its namespaces, then its exe; of
  /// process `pid`, or of its thread `thread` (under /proc/PID/task/TID/).
  static std::vector<ProcLink> member_links(pid_t pid, pid_t thread = 0);
  /// `answers`: those of member_links, read while it was pinned (a
  /// process) or known by its start time (a thread of `process`, read
  /// under /proc/PROCESS/task/). Vanished when the task's start time is not
  /// `task`'s after the reads.
  Result<projection::MemberObservation> read_member(const ProcessIdentity& task,
                                                    std::span<const observe::LinkRead> answers,
                                                    pid_t process = 0) const;
  /// The other threads of process `pid` to sample as members of their own:
  /// one per set of credentials other than `leader`'s (every set when
  /// `leader` is null: the leader is in exit() or could not be read while
  /// its threads run on). Threads in exit() are left out.
  std::vector<ProcessIdentity> threads_to_sample(pid_t pid,
                                                 const observe::ProcStatus* leader) const;
  projection::MountView read_mount_view(pid_t pid, uint64_t mount_ns,
                                        const projection::ObservationScope& scope) const;

  observe::ProcReader proc_;
  observe::CgroupReader cgroups_;
  HostNamespaces host_;
  std::shared_ptr<const PtraceReads> reads_;
  observe::CgroupMembership host_cgroups_;  // PID 1's: never a sandbox's own
};

}  // namespace driftwatch::sandbox
