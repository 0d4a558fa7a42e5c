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

// The other threads of process `pid`: its /proc/PID/task entries but its
// own (none when it is gone or has one thread).
std::vector<pid_t> other_threads(const observe::ProcReader& proc, pid_t pid) {
  std::vector<pid_t> out;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(proc.root() / std::to_string(pid) / "task", ec), last;
       !ec && it != last; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    pid_t tid = 0;
    auto [end, errc] = std::from_chars(name.data(), name.data() + name.size(), tid);
    if (errc == std::errc() && end == name.data() + name.size() && tid > 0 && tid != pid)
      out.push_back(tid);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Whether two tasks hold the same credentials, in all the projection reads
// of them: ids, groups, capability sets, no_new_privs, seccomp mode. Each
// of these is the thread's own in Linux (capset and the raw set*id calls
// change one thread), so a process's threads can differ.
bool same_credentials(const observe::ProcStatus& a, const observe::ProcStatus& b) {
  return std::equal(std::begin(a.uid), std::end(a.uid), std::begin(b.uid)) &&
         std::equal(std::begin(a.gid), std::end(a.gid), std::begin(b.gid)) &&
         a.groups == b.groups && a.cap_inheritable == b.cap_inheritable &&
         a.cap_permitted == b.cap_permitted && a.cap_effective == b.cap_effective &&
         a.cap_bounding == b.cap_bounding && a.cap_ambient == b.cap_ambient &&
         a.no_new_privs == b.no_new_privs && a.seccomp == b.seccomp;
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
  // A process whose leader has exited while its other threads run on (a
  // zombie leader) has no namespace links of its own: one of its threads'.
  std::vector<ProcLink> through_threads;
  std::vector<pid_t> owners;
  auto add = [&](pid_t pid, uint64_t ns) {
    table.by_pid_namespace[ns].push_back(pid);
    table.pid_namespace_of.emplace(pid, ns);
  };
  for (size_t i = 0; i < links.size() && i < answers.size(); ++i) {
    auto ns =
        observe::ProcReader::namespace_inode_of(proc.path_of(links[i].pid, "ns/pid"), answers[i]);
    if (ns) {
      add(links[i].pid, *ns);
    } else if (ns.error().vanished) {
      const auto threads = other_threads(proc, links[i].pid);
      if (threads.empty()) continue;
      through_threads.push_back(
          ProcLink{links[i].pid, "task/" + std::to_string(threads.front()) + "/ns/pid"});
      owners.push_back(links[i].pid);
    }
  }
  if (through_threads.empty()) return table;
  const auto more = reads.read_links(through_threads);
  for (size_t i = 0; i < through_threads.size() && i < more.size(); ++i) {
    auto ns = observe::ProcReader::namespace_inode_of(
        proc.path_of(through_threads[i].pid, through_threads[i].name), more[i]);
    if (ns) add(owners[i], *ns);
  }
  for (auto& [ns, pids] : table.by_pid_namespace) std::sort(pids.begin(), pids.end());
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
    auto pid_ns_of = [&](const std::string& link) {
      return observe::ProcReader::namespace_inode_of(
          proc_.path_of(first, link), reads_->read_links({ProcLink{first, link}}).at(0));
    };
    pid_ns = pid_ns_of("ns/pid");
    // A first process whose leader exited, its other threads running on.
    if (!pid_ns && pid_ns.error().vanished) {
      for (pid_t tid : other_threads(proc_, first)) {
        if (auto through_thread = pid_ns_of("task/" + std::to_string(tid) + "/ns/pid")) {
          pid_ns = through_thread;
          break;
        }
      }
    }
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

std::vector<ProcLink> Sampler::member_links(pid_t pid, pid_t thread) {
  const std::string base = thread ? "task/" + std::to_string(thread) + "/" : std::string();
  std::vector<ProcLink> links;
  for (const char* kind : observe::kNamespaceKinds)
    links.push_back(ProcLink{pid, base + "ns/" + kind});
  links.push_back(ProcLink{pid, base + "exe"});
  return links;
}

Result<MemberObservation> Sampler::read_member(const ProcessIdentity& task,
                                               std::span<const observe::LinkRead> answers,
                                               pid_t process) const {
  const pid_t pid = task.pid;
  // A thread is read under its process's task/ directory, so what is read
  // is a thread of that process.
  const observe::ProcReader proc = process ? proc_.tasks_of(process) : proc_;
  MemberObservation m;
  m.pid = pid;
  m.start_time_ticks = task.start_time_ticks;
  DW_TRY(status, proc.status(pid));
  m.status = std::move(status);
  // Its ptrace-mode reads (member_links), made for the whole batch while it
  // was pinned: its namespaces, then its executable.
  const size_t expected = std::size(observe::kNamespaceKinds) + 1;
  if (answers.size() != expected)
    return fail("pid ", std::to_string(pid), ": ", std::to_string(answers.size()), " answers to ",
                std::to_string(expected), " link reads");
  for (size_t i = 0; i < std::size(observe::kNamespaceKinds); ++i) {
    const char* kind = observe::kNamespaceKinds[i];
    auto inode = observe::ProcReader::namespace_inode_of(
        proc.path_of(pid, std::string("ns/") + kind), answers[i]);
    if (inode) {
      m.namespaces[kind] = *inode;
    } else if (inode.error().vanished && !host_.inodes.contains(kind)) {
      continue;  // this kernel has no such namespace kind
    } else {
      return std::unexpected(inode.error());
    }
  }
  DW_TRY(rlimits, proc.limits(pid));
  m.rlimits = std::move(rlimits);
  DW_TRY(cgroups, proc.cgroup(pid));
  DW_TRY(limits, cgroups_.limits(cgroups));
  m.cgroup_limits = std::move(limits);
  DW_TRY(label, proc.lsm_label(pid));
  m.lsm_label = std::move(label);
  DW_TRY(argv, proc.cmdline(pid));
  m.argv = std::move(argv);
  // A process whose executable cannot be resolved (it exited into a zombie
  // right now, or the exe is on a lazily unmounted fs) still counts.
  m.exe =
      observe::ProcReader::link_target_of(proc.path_of(pid, "exe"), answers.back()).value_or("");
  // Last: a member that was not yet exiting now was not while it was read;
  // and it is the task it was (a thread's id may be reused once it exits,
  // and a thread is not pinned: its start time tells).
  DW_TRY(stat, proc.stat(pid));
  if (stat.start_time_ticks != task.start_time_ticks)
    return vanished("pid " + std::to_string(pid) + " exited");
  m.exiting = (stat.flags & observe::kTaskExiting) != 0;
  return m;
}

std::vector<ProcessIdentity> Sampler::threads_to_sample(pid_t pid,
                                                        const observe::ProcStatus* leader) const {
  std::vector<ProcessIdentity> chosen;    // thread ids, with their start times
  std::vector<observe::ProcStatus> held;  // the credentials of those chosen
  for (pid_t tid : other_threads(proc_, pid)) {
    // Read under /proc/PID/task/, so the thread is this process's.
    const std::string dir = "task/" + std::to_string(tid) + "/";
    auto stat_text = proc_.read(pid, dir + "stat");
    auto status_text = proc_.read(pid, dir + "status");
    if (!stat_text || !status_text) continue;
    auto stat = observe::parse_stat(*stat_text);
    auto status = observe::parse_status(*status_text);
    if (!stat || !status || (stat->flags & observe::kTaskExiting)) continue;
    if (leader && same_credentials(*leader, *status)) continue;
    if (std::ranges::any_of(held, [&](const auto& h) { return same_credentials(h, *status); }))
      continue;
    chosen.push_back(ProcessIdentity{tid, stat->start_time_ticks});
    held.push_back(std::move(*status));
  }
  return chosen;
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
  // Threads sampled as members of their own: (process, thread).
  std::vector<std::pair<pid_t, ProcessIdentity>> threads;
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
      auto member =
          read_member(pinned[k].identity(), std::span(answers).subspan(k * per_member, per_member));
      if (member && !pinned[k].still_alive())
        member = vanished("pid " + std::to_string(pid) + " exited");
      if (member) {
        // Threads that hold other credentials than the process's leader
        // are members of their own; a leader in exit() whose other threads
        // run on is stood for by them.
        if (member->status.threads > 1 || member->exiting) {
          auto extra = threads_to_sample(pid, member->exiting ? nullptr : &member->status);
          const bool stood_for = member->exiting && !extra.empty();
          for (const auto& t : extra) threads.emplace_back(pid, t);
          if (stood_for) continue;
        }
        obs.members.push_back(std::move(*member));
      } else if (member.error().vanished) {
        // A zombie leader (its namespaces and executable unreadable) of a
        // process that lives on in its other threads: they stand for it.
        if (pinned[k].still_alive()) {
          auto extra = threads_to_sample(pid, nullptr);
          for (const auto& t : extra) threads.emplace_back(pid, t);
          if (!extra.empty()) continue;
        }
        obs.vanished.push_back(pid);
      } else {
        return wrap(member.error(), "sandbox '", sandbox.sandbox_id, "': ");
      }
    }
  }
  // The threads chosen above, their ptrace-mode reads in one exchange per
  // batch again (none when every process is single-threaded or its threads
  // all hold their leader's credentials: the usual case).
  for (size_t at = 0; at < threads.size(); at += kMembersPerBatch) {
    const size_t count = std::min(kMembersPerBatch, threads.size() - at);
    std::vector<ProcLink> links;
    for (size_t i = at; i < at + count; ++i)
      for (auto& link : member_links(threads[i].first, threads[i].second.pid))
        links.push_back(std::move(link));
    const auto answers = reads_->read_links(links);
    if (answers.size() != links.size())
      return fail("sandbox '", sandbox.sandbox_id, "': ", std::to_string(answers.size()),
                  " answers to ", std::to_string(links.size()), " link reads");
    const size_t per_member = links.size() / count;
    for (size_t k = 0; k < count; ++k) {
      const auto& [process, task] = threads[at + k];
      auto member =
          read_member(task, std::span(answers).subspan(k * per_member, per_member), process);
      if (member) {
        obs.members.push_back(std::move(*member));
      } else if (member.error().vanished) {
        obs.vanished.push_back(task.pid);
      } else {
        return wrap(member.error(), "sandbox '", sandbox.sandbox_id, "': ");
      }
    }
  }
  std::sort(obs.members.begin(), obs.members.end(),
            [](const auto& a, const auto& b) { return a.pid < b.pid; });
  std::sort(obs.vanished.begin(), obs.vanished.end());
  // The first process, or a thread of it that stands for it.
  const pid_t first_pid = sandbox.first_process.pid;
  auto reference = std::find_if(obs.members.begin(), obs.members.end(),
                                [&](const auto& m) { return m.pid == first_pid; });
  if (reference == obs.members.end())
    reference = std::find_if(obs.members.begin(), obs.members.end(),
                             [&](const auto& m) { return m.status.tgid == first_pid; });
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
