#pragma once
// The observed projection: the sandbox's state as the kernel shows it,
// reduced over its members so that the most privileged member decides each
// field (union of capabilities, NNP false if any member lacks it, weakest
// seccomp, uid 0 if any member has euid 0, …).

#include <sys/types.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_parsers.hpp"
#include "projection/projection.hpp"

namespace driftwatch::projection {

/// One process of a sandbox as sampled.
struct MemberObservation {
  pid_t pid = 0;
  uint64_t start_time_ticks = 0;
  observe::ProcStatus status;
  std::map<std::string, uint64_t> namespaces;  // /proc/PID/ns name -> inode
  std::vector<observe::Rlimit> rlimits;
  observe::CgroupLimits cgroup_limits;
  std::optional<std::string> lsm_label;
  std::vector<std::string> argv;  // written by the sandbox: reported, never trusted
  std::string exe;
  /// In a user namespace other than the sandbox's first process: its
  /// capabilities count, but only inside that namespace.
  bool nested_user_namespace = false;
  /// In exit() when its reads ended (PF_EXITING, which is never cleared):
  /// some of them may describe the exit, not the process (on a v1 cgroup
  /// hierarchy an exiting task's cgroups read "/", so no limits). A sample
  /// with one is taken again (app/runtime_setup.hpp).
  bool exiting = false;
};

/// What a process in one mount namespace of the sandbox can see.
struct MountView {
  uint64_t mount_namespace = 0;
  pid_t seen_through = 0;  // the member whose /proc/PID/root was used
  bool root_readonly = false;
  std::set<std::string> masked;    // masked, or absent and declared masked
  std::set<std::string> readonly;  // read-only (not masked), or absent and declared read-only
};

struct Observation {
  std::string sandbox_id;
  std::string runtime;
  // Sorted by pid. A process, or a thread of one (pid is its thread id,
  // status.tgid the process's) whose credentials differ from its leader's
  // or that stands for a leader which has exited (sandbox/sampler.hpp).
  std::vector<MemberObservation> members;
  std::vector<MountView> mount_views;
  std::map<std::string, uint64_t> host_namespaces;  // PID 1's
  std::vector<pid_t> vanished;                      // members that exited while sampled (dropped)
};

/// Reduces an observation to its projection under `scope` (which rlimits
/// count). An observation without members is an error.
Result<Projection> observed_projection(const Observation& observation,
                                       const ObservationScope& scope);

/// The capabilities held only by members in nested user namespaces, per set:
/// a finding on them says so instead of folding them in silently.
CapabilitySets nested_namespace_capabilities(const Observation& observation);

/// The observation's members and mount views as JSON, for reports (outside
/// the hash).
nlohmann::json members_json(const Observation& observation);

}  // namespace driftwatch::projection
