#pragma once
// Finding sandboxes: OCI containers from the runc and crun state
// directories, and any process tree by PID or cgroup path (a bubblewrap
// sandbox, a systemd scope). A SandboxRef says where a sandbox is and how
// its membership is computed; the sampler turns it into an Observation.

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "sandbox/identity.hpp"

namespace driftwatch::sandbox {

/// How a sandbox's members are found (besides every process in its PID
/// namespace, when that namespace is not the host's).
enum class Membership {
  cgroup,       // every process in the cgroups of the first process
  descendants,  // the first process and its descendants
};

struct SandboxRef {
  /// The canonical id: the runtime's container id, or the cgroup's name.
  std::string sandbox_id;
  std::string runtime;  // "runc", "crun", "process" (by PID) or "cgroup"
  ProcessIdentity first_process;
  Membership membership = Membership::cgroup;
  /// For `cgroup` membership: the cgroups whose processes are members.
  observe::CgroupMembership cgroups;
  std::optional<std::filesystem::path> bundle;  // OCI bundle directory
  /// Who launched it, one of kEngines (sandbox/engines.hpp): the runtime
  /// itself, "podman", "containerd", "cgroup" or "process".
  std::string engine;
  /// Other names a launch event may give it (Podman's names,
  /// "<namespace>/<pod>/<container>" of a Kubernetes container), sorted,
  /// each once, never the id itself.
  std::vector<std::string> names;
};

struct DiscoveryRoots {
  std::vector<std::filesystem::path> runc_roots{"/run/runc"};
  std::vector<std::filesystem::path> crun_roots{"/run/crun"};
  /// containerd's runc roots: each subdirectory is one containerd
  /// namespace's root (runc's state.json, or crun's status when containerd
  /// runs crun), its containers' engine "containerd".
  std::vector<std::filesystem::path> containerd_roots{"/run/containerd/runc"};
  /// Podman's storage roots (graphroot), where its containers' names are.
  std::vector<std::filesystem::path> podman_storage{"/var/lib/containers/storage"};
};

/// Parses runc's <root>/<id>/state.json: init pid, start time, bundle.
Result<SandboxRef> parse_runc_state(std::string_view text, std::string_view id);
/// Parses crun's <root>/<id>/status.
Result<SandboxRef> parse_crun_status(std::string_view text, std::string_view id);

/// The container `id` under any of the roots (runc roots first, then crun
/// roots, then containerd's namespaces in name order: the first found wins).
/// An unknown id is an error naming the id and the roots searched. The ref's
/// engine is the runtime, or "containerd"; names are not filled in
/// (identify_engine does both from the bundle).
Result<SandboxRef> find_container(const DiscoveryRoots& roots, std::string_view id,
                                  const observe::ProcReader& proc);
/// Every container under the roots whose state could be read. Containers
/// that are created but not running, or whose state is unreadable, are
/// skipped (their errors returned through `problems` when given).
std::vector<SandboxRef> list_containers(const DiscoveryRoots& roots,
                                        const observe::ProcReader& proc,
                                        std::vector<Error>* problems = nullptr);

/// A sandbox rooted at a process: it and its descendants, plus its PID
/// namespace when that is private.
Result<SandboxRef> sandbox_for_pid(const observe::ProcReader& proc, pid_t pid);

/// A sandbox that is a cgroup: `path` is a cgroupfs directory
/// (/sys/fs/cgroup/unified/x, /sys/fs/cgroup/memory/x) or a cgroup path as
/// /proc/PID/cgroup writes it ("/x", taken as the v2 path on unified and
/// hybrid hosts).
Result<SandboxRef> sandbox_for_cgroup(const observe::ProcReader& proc,
                                      const observe::CgroupReader& cgroups,
                                      const std::filesystem::path& path);

}  // namespace driftwatch::sandbox
