#include "sandbox/sampler.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <filesystem>
#include <set>

#include "sandbox/identity.hpp"

namespace driftwatch::sandbox {
namespace {

using projection::MemberObservation;
using projection::MountView;
using projection::Observation;
using projection::ObservationScope;

// Reads /proc/PID/task/*/children: the direct children of every thread.
void add_children(const observe::ProcReader& proc, pid_t pid, std::vector<pid_t>& out) {
  // increment(ec), not a range-for, whose ++ throws when a thread exits
  // mid-listing.
  std::error_code ec;
  for (std::filesystem::directory_iterator it(proc.root() / std::to_string(pid) / "task", ec), last;
       !ec && it != last; it.increment(ec)) {
    const std::filesystem::directory_entry& task = *it;
    auto text = proc.read(pid, "task/" + task.path().filename().string() + "/children");
    if (!text) continue;
    const char* p = text->data();
    const char* end = p + text->size();
    while (p < end) {
      while (p < end && *p == ' ') ++p;
      pid_t child = 0;
      auto [next, errc] = std::from_chars(p, end, child);
      if (errc != std::errc() || next == p) break;
      out.push_back(child);
      p = next;
    }
  }
}

// The cgroups of `membership` that PID 1 is not also in: a container whose
// runtime left some controller at the host's cgroup must not make every
// host process a member.
observe::CgroupMembership own_cgroups(const observe::CgroupMembership& membership,
                                      const observe::CgroupMembership& host) {
  observe::CgroupMembership own;
  if (membership.unified && membership.unified != host.unified && *membership.unified != "/")
    own.unified = membership.unified;
  for (const auto& [controller, path] : membership.v1) {
    if (path == "/" || host.v1_path(controller) == path) continue;
    own.v1.emplace_back(controller, path);
  }
  return own;
}

}  // namespace

ProcessTable ProcessTable::scan(const observe::ProcReader& proc) {
  return scan(proc, LocalPtraceReads(proc));
}

ProcessTable ProcessTable::scan(const observe::ProcReader& proc, const PtraceReads& reads) {
  ProcessTable table;
  std::vector<ProcLink> links;
  for (pid_t pid : proc.pids()) links.push_back(ProcLink{pid, "ns/pid"});
  const auto answers = reads.read_links(links);
  for (size_t i = 0; i < links.size() && i < answers.size(); ++i) {
    auto ns =
        observe::ProcReader::namespace_inode_of(proc.path_of(links[i].pid, "ns/pid"), answers[i]);
    if (!ns) continue;
    table.by_pid_namespace[*ns].push_back(links[i].pid);
    table.pid_namespace_of.emplace(links[i].pid, *ns);
  }
  return table;
}

Sampler::HostNamespaces Sampler::read_host_namespaces(const observe::ProcReader& proc) {
  // The host's namespaces are PID 1's. Where PID 1 cannot be read (the
  // monitor itself runs in a sandbox that hides it), the monitor's own stand
  // in: it runs on the host, in the namespaces it compares against.
  HostNamespaces host;
  pid_t reference = proc.namespace_inode(1, "mnt") ? 1 : (proc.root() == "/proc" ? getpid() : 1);
  host.source = reference == 1 ? "pid1" : "monitor";
  for (const char* kind : observe::kNamespaceKinds) {
    auto inode = proc.namespace_inode(reference, kind);
    if (inode) host.inodes[kind] = *inode;
  }
  return host;
}

Sampler::Sampler(observe::ProcReader proc, observe::CgroupReader cgroups)
    : Sampler(proc, std::move(cgroups), read_host_namespaces(proc)) {}

Sampler::Sampler(observe::ProcReader proc, observe::CgroupReader cgroups, HostNamespaces host)
    : Sampler(std::move(proc), std::move(cgroups), std::move(host), nullptr) {}

Sampler::Sampler(observe::ProcReader proc, observe::CgroupReader cgroups, HostNamespaces host,
                 std::shared_ptr<const PtraceReads> reads)
    : proc_(std::move(proc)),
      cgroups_(std::move(cgroups)),
      host_(std::move(host)),
      reads_(std::move(reads)) {
  if (!reads_) reads_ = std::make_shared<LocalPtraceReads>(proc_);
  // PID 1's cgroups, read once per sampler (one per sweep in the daemon)
  // rather than once per sandbox.
  if (auto pid1 = proc_.cgroup(1)) host_cgroups_ = std::move(*pid1);
}

Result<std::vector<pid_t>> Sampler::members(const SandboxRef& sandbox,
                                            const ProcessTable* table) const {
  const pid_t first = sandbox.first_process.pid;
  std::set<pid_t> members{first};
  if (sandbox.membership == Membership::cgroup) {
    auto own = own_cgroups(sandbox.cgroups, host_cgroups_);
    if (own.unified || !own.v1.empty()) {
      auto procs = cgroups_.procs(own);
      if (!procs) return wrap(procs.error(), "sandbox '", sandbox.sandbox_id, "': ");
      members.insert(procs->begin(), procs->end());
    }
  } else {
    std::vector<pid_t> queue{first};
    std::set<pid_t> seen{first};
    while (!queue.empty()) {
      pid_t pid = queue.back();
      queue.pop_back();
      std::vector<pid_t> children;
      add_children(proc_, pid, children);
      for (pid_t child : children)
        if (seen.insert(child).second) queue.push_back(child);
    }
    members.insert(seen.begin(), seen.end());
  }
  // Every process in the sandbox's PID namespace is a member, wherever its
  // cgroup is (nsenter from the host lands there without a cgroup move).
  // The first process's namespace comes from the table, which has every
  // live process: it is the first's own (a PID is not reused while the
  // process the sample pinned lives, and it was alive before the table and
  // after it). Only a first the table missed is read alone.
  std::optional<ProcessTable> own_table;
  if (!table) table = &own_table.emplace(scan_processes());
  Result<uint64_t> pid_ns = fail("no pid namespace");
  if (auto known = table->pid_namespace_of.find(first); known != table->pid_namespace_of.end()) {
    pid_ns = known->second;
  } else {
    pid_ns = observe::ProcReader::namespace_inode_of(
        proc_.path_of(first, "ns/pid"), reads_->read_links({ProcLink{first, "ns/pid"}}).at(0));
  }
  if (!pid_ns) {
    if (pid_ns.error().vanished)
      return vanished("sandbox '" + sandbox.sandbox_id + "': its first process " +
                      std::to_string(first) + " has exited");
    return std::unexpected(pid_ns.error());
  }
  auto host_pid_ns = host_.inodes.find("pid");
  if (host_pid_ns == host_.inodes.end() || *pid_ns != host_pid_ns->second) {
    if (auto it = table->by_pid_namespace.find(*pid_ns); it != table->by_pid_namespace.end())
      members.insert(it->second.begin(), it->second.end());
  }
  return std::vector<pid_t>(members.begin(), members.end());
}

std::vector<ProcLink> Sampler::member_links(pid_t pid) {
  std::vector<ProcLink> links;
  for (const char* kind : observe::kNamespaceKinds)
    links.push_back(ProcLink{pid, std::string("ns/") + kind});
  links.push_back(ProcLink{pid, "exe"});
  return links;
}

Result<MemberObservation> Sampler::read_member(const PinnedProcess& pinned,
                                               std::span<const observe::LinkRead> answers) const {
  const pid_t pid = pinned.identity().pid;
  MemberObservation m;
  m.pid = pid;
  m.start_time_ticks = pinned.identity().start_time_ticks;
  DW_TRY(status, proc_.status(pid));
  m.status = std::move(status);
  // Its ptrace-mode reads (member_links), made for the whole batch while it
  // was pinned: its namespaces, then its executable.
  const auto links = member_links(pid);
  if (answers.size() != links.size())
    return fail("pid ", std::to_string(pid), ": ", std::to_string(answers.size()), " answers to ",
                std::to_string(links.size()), " link reads");
  for (size_t i = 0; i < std::size(observe::kNamespaceKinds); ++i) {
    const char* kind = observe::kNamespaceKinds[i];
    auto inode =
        observe::ProcReader::namespace_inode_of(proc_.path_of(pid, links[i].name), answers[i]);
    if (inode) {
      m.namespaces[kind] = *inode;
    } else if (inode.error().vanished && !host_.inodes.contains(kind)) {
      continue;  // this kernel has no such namespace kind
    } else {
      return std::unexpected(inode.error());
    }
  }
  DW_TRY(rlimits, proc_.limits(pid));
  m.rlimits = std::move(rlimits);
  DW_TRY(cgroups, proc_.cgroup(pid));
  DW_TRY(limits, cgroups_.limits(cgroups));
  m.cgroup_limits = std::move(limits);
  DW_TRY(label, proc_.lsm_label(pid));
  m.lsm_label = std::move(label);
  DW_TRY(argv, proc_.cmdline(pid));
  m.argv = std::move(argv);
  // A process whose executable cannot be resolved (it exited into a zombie
  // right now, or the exe is on a lazily unmounted fs) still counts.
  m.exe =
      observe::ProcReader::link_target_of(proc_.path_of(pid, "exe"), answers.back()).value_or("");
  // Last: a member that was not yet exiting now was not while it was read.
  DW_TRY(stat, proc_.stat(pid));
  m.exiting = (stat.flags & observe::kTaskExiting) != 0;
  if (!pinned.still_alive()) return vanished("pid " + std::to_string(pid) + " exited");
  return m;
}

MountView Sampler::read_mount_view(pid_t pid, uint64_t mount_ns,
                                   const ObservationScope& scope) const {
  MountView view;
  view.mount_namespace = mount_ns;
  view.seen_through = pid;
  // Every candidate looked up at once; a masked one is not looked up again
  // as read-only.
  std::vector<std::string> paths(scope.masked_candidates.begin(), scope.masked_candidates.end());
  const size_t masked_count = paths.size();
  paths.insert(paths.end(), scope.readonly_candidates.begin(), scope.readonly_candidates.end());
  const RootView root = reads_->root_view(pid, paths);
  // Not opened: reported as a writable root with nothing masked.
  if (!root.opened || root.states.size() != paths.size()) return view;
  view.root_readonly = root.read_only;
  for (size_t i = 0; i < masked_count; ++i) {
    const PathState state = root.states[i];
    if (state == PathState::masked ||
        (state == PathState::absent && scope.declared_masked.contains(paths[i])))
      view.masked.insert(paths[i]);
  }
  for (size_t i = masked_count; i < paths.size(); ++i) {
    const std::string& path = paths[i];
    if (view.masked.contains(path)) continue;
    const PathState state = root.states[i];
    if (state == PathState::read_only ||
        (state == PathState::absent && scope.declared_readonly.contains(path)))
      view.readonly.insert(path);
    else if (state == PathState::masked)
      view.readonly.insert(path);  // a masked path is also read-only
  }
  return view;
}

Result<Observation> Sampler::sample(const SandboxRef& sandbox, const ObservationScope& scope,
                                    const ProcessTable* table) const {
  // The first process must still be the one the sandbox started with.
  auto first =
      PinnedProcess::pin(proc_, sandbox.first_process.pid, sandbox.first_process.start_time_ticks);
  if (!first) return wrap(first.error(), "sandbox '", sandbox.sandbox_id, "' is gone: ");
  DW_TRY(pids, members(sandbox, table));
  Observation obs;
  obs.sandbox_id = sandbox.sandbox_id;
  obs.runtime = sandbox.runtime;
  obs.host_namespaces = host_.inodes;
  // The members in batches: each pinned first, then the ptrace-mode reads
  // of the whole batch in one exchange with the proc peer (each one costs
  // a round trip between processes), then each read whole; a member is kept
  // only if it is still alive after its reads, so the links are its own.
  for (size_t at = 0; at < pids.size(); at += kMembersPerBatch) {
    std::vector<PinnedProcess> pinned;
    std::vector<ProcLink> links;
    for (size_t i = at; i < pids.size() && i < at + kMembersPerBatch; ++i) {
      auto pin = PinnedProcess::pin(proc_, pids[i]);
      if (!pin) {
        if (!pin.error().vanished) return wrap(pin.error(), "sandbox '", sandbox.sandbox_id, "': ");
        obs.vanished.push_back(pids[i]);
        continue;
      }
      for (auto& link : member_links(pids[i])) links.push_back(std::move(link));
      pinned.push_back(std::move(*pin));
    }
    const auto answers = reads_->read_links(links);
    if (answers.size() != links.size())
      return fail("sandbox '", sandbox.sandbox_id, "': ", std::to_string(answers.size()),
                  " answers to ", std::to_string(links.size()), " link reads");
    const size_t per_member = links.size() / std::max<size_t>(pinned.size(), 1);
    for (size_t k = 0; k < pinned.size(); ++k) {
      const pid_t pid = pinned[k].identity().pid;
      auto member = read_member(pinned[k], std::span(answers).subspan(k * per_member, per_member));
      if (member) {
        obs.members.push_back(std::move(*member));
      } else if (member.error().vanished) {
        obs.vanished.push_back(pid);
      } else {
        return wrap(member.error(), "sandbox '", sandbox.sandbox_id, "': ");
      }
    }
  }
  std::sort(obs.vanished.begin(), obs.vanished.end());
  auto reference = std::find_if(obs.members.begin(), obs.members.end(),
                                [&](const auto& m) { return m.pid == sandbox.first_process.pid; });
  if (reference == obs.members.end())
    return vanished("sandbox '" + sandbox.sandbox_id + "': its first process " +
                    std::to_string(sandbox.first_process.pid) + " exited while it was sampled");
  const uint64_t user_ns = reference->namespaces["user"];
  std::map<uint64_t, pid_t> mount_namespaces;
  for (auto& m : obs.members) {
    m.nested_user_namespace = m.namespaces["user"] != user_ns;
    mount_namespaces.emplace(m.namespaces["mnt"], m.pid);
  }
  for (const auto& [ns, pid] : mount_namespaces)
    obs.mount_views.push_back(read_mount_view(pid, ns, scope));
  if (!first->still_alive())
    return vanished("sandbox '" + sandbox.sandbox_id +
                    "': its first process exited while it was sampled");
  return obs;
}

}  // namespace driftwatch::sandbox
