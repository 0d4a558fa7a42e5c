#include "app/attempt_watch.hpp"

#include <spdlog/spdlog.h>

#include <sys/stat.h>

#include "observe/capabilities.hpp"
#include "observe/cgroupfs.hpp"

namespace driftwatch::app {

using nlohmann::json;

Result<AttemptWatch> AttemptWatch::load(uint32_t events_per_second, bool syscall_probes) {
  DW_TRY(probe, probes::KernelProbes::load(events_per_second, syscall_probes));
  const auto& tracefs = probe.tracefs();
  if (tracefs.mounted_by_driftwatch)
    spdlog::info(
        "tracefs was not mounted: mounted it on {} for the syscall tracepoints (left "
        "mounted)",
        probes::kTracefsPath);
  else if (tracefs.needed && !tracefs.mounted)
    spdlog::warn("tracefs: {}", tracefs.error);
  return AttemptWatch(std::move(probe));
}

void AttemptWatch::track(const std::vector<correlate::SweepItem>& items,
                         uint64_t host_pid_namespace,
                         const std::map<std::string, correlate::SandboxStatus>& statuses) {
  std::set<std::string> sampled;
  for (const auto& item : items) {
    const std::string& id = item.ref.sandbox_id;
    sampled.insert(id);
    auto [it, fresh] = sandboxes_.try_emplace(id);
    Sandbox& sandbox = it->second;
    if (fresh || sandbox.retiring) {
      if (fresh) {
        sandbox.token = next_token_++;
        sandbox_of_[sandbox.token] = id;
      }
      sandbox.retiring = false;
    }
    // The unified cgroup's id is its directory's inode (what the kernel's
    // bpf_get_current_cgroup_id and cgroup_attach_task report).
    if (item.ref.membership == sandbox::Membership::cgroup && item.ref.cgroups.unified &&
        *item.ref.cgroups.unified != "/") {
      static const observe::CgroupReader cgroupfs;
      struct stat st {};
      const auto dir = cgroupfs.unified_dir(*item.ref.cgroups.unified);
      if (::stat(dir.c_str(), &st) == 0 && !sandbox.cgroups.contains(st.st_ino)) {
        if (auto watched = probe_.watch_cgroup(st.st_ino, sandbox.token); watched)
          sandbox.cgroups.insert(st.st_ino);
        else
          spdlog::warn("sandbox {}: {}", id, watched.error().message);
      }
    }
    for (const auto& member : item.observation.members) {
      const auto pid_ns = member.namespaces.find("pid");
      if (pid_ns == member.namespaces.end() || pid_ns->second == host_pid_namespace) continue;
      const auto inode = static_cast<uint32_t>(pid_ns->second);
      if (sandbox.pid_namespaces.contains(inode)) continue;
      if (auto watched = probe_.watch_pid_namespace(inode, sandbox.token); !watched) {
        spdlog::warn("sandbox {}: {}", id, watched.error().message);
        continue;
      }
      sandbox.pid_namespaces.insert(inode);
    }
  }
  for (auto& [id, sandbox] : sandboxes_) {
    const auto status = statuses.find(id);
    const bool gone =
        status == statuses.end() || (status->second.verdict && *status->second.verdict == "gone");
    if (!gone || sandbox.retiring) continue;
    for (uint32_t inode : sandbox.pid_namespaces) probe_.unwatch_pid_namespace(inode);
    for (uint64_t cgroup : sandbox.cgroups) probe_.unwatch_cgroup(cgroup);
    sandbox.pid_namespaces.clear();
    sandbox.cgroups.clear();
    sandbox.retiring = true;
  }
}

void AttemptWatch::count_namespace_change(const probes::LifecycleEvent& event) {
  ++namespace_changes_;
  if (const auto probe = probes::namespace_probe(event); probe.starts_with("syscalls/"))
    ++syscall_taken_[probe];
}

size_t AttemptWatch::take_events(const Trigger& trigger) {
  std::vector<probes::LifecycleEvent> lifecycle;
  auto taken = probe_.consume(
      [this](const probes::AttemptEvent& event) {
        const Key key{event.token, event.syscall, static_cast<uint32_t>(event.capability), true};
        if (detail_.contains(key)) return;
        detail_[key] = json{{"pid", event.pid},   {"tid", event.tid},   {"uid", event.uid},
                            {"euid", event.euid}, {"comm", event.comm}, {"result", event.result}};
      },
      [&lifecycle](const probes::LifecycleEvent& event) { lifecycle.push_back(event); });
  lifecycle_taken_ += lifecycle.size();
  for (const auto& event : lifecycle) {
    if (event.kind == probes::LifecycleEvent::Kind::namespace_change) count_namespace_change(event);
    const auto owner = sandbox_of_.find(event.token);
    if (owner != sandbox_of_.end() && trigger) trigger(owner->second, event);
  }
  if (!taken) {
    spdlog::warn("{}", taken.error().message);
    return 0;
  }
  events_taken_ += *taken;
  return *taken;
}

std::vector<evidence::Pending> AttemptWatch::poll(
    int64_t now, metrics::Metrics& metrics, bool summarize,
    const std::function<std::optional<std::string>(const std::string& sandbox_id)>& launch_of) {
  std::vector<evidence::Pending> entries;
  if (summarized_at_ == 0) summarized_at_ = now;
  auto counts = probe_.counts();
  if (!counts) {
    spdlog::warn("{}", counts.error().message);
    return entries;
  }
  for (const auto& c : *counts) {
    const Key key{c.token, c.syscall, c.capability, c.denied};
    uint64_t& seen = seen_[key];
    if (c.count <= seen) continue;
    const uint64_t delta = c.count - seen;
    seen = c.count;
    metrics.count_escalation_attempts(probes::syscall_kind(c.syscall), c.denied, delta);
    unsummarized_[key] += delta;
  }
  const auto losses = probe_.losses();
  const uint64_t lost = (losses.ring_full + losses.rate_limited) -
                        (losses_seen_.ring_full + losses_seen_.rate_limited);
  if (losses.counters_full > losses_seen_.counters_full)
    spdlog::error("ESCALATION ATTEMPTS NOT COUNTED: the probe's counter map is full ({} so far)",
                  losses.counters_full);
  metrics.count_probe_events("cap_capable", events_taken_ - events_reported_, lost);
  events_reported_ = events_taken_;
  // Lifecycle events are counted under the one program that sends them
  // most (exec), but for those of the syscall tracepoints, counted under
  // theirs; the drops are all in the one ring buffer.
  uint64_t by_syscall = 0;
  for (const auto& [probe, taken] : syscall_taken_) {
    uint64_t& reported = syscall_reported_[probe];
    metrics.count_probe_events(probe, taken - reported, 0);
    by_syscall += taken - reported;
    reported = taken;
  }
  metrics.count_probe_events("sched_process_exec",
                             lifecycle_taken_ - lifecycle_reported_ - by_syscall,
                             losses.lifecycle_full - lifecycle_lost_seen_);
  lifecycle_reported_ = lifecycle_taken_;
  lifecycle_lost_seen_ = losses.lifecycle_full;
  losses_seen_ = losses;

  if (summarize) {
    for (const auto& [key, count] : unsummarized_) {
      const auto& [token, syscall, capability, denied] = key;
      if (!denied || count == 0) continue;
      const auto owner = sandbox_of_.find(token);
      if (owner == sandbox_of_.end()) continue;
      evidence::AttemptSummary summary;
      summary.sandbox_id = owner->second;
      summary.launch_id = launch_of(owner->second);
      summary.kind = probes::syscall_kind(syscall);
      summary.syscall = syscall;
      summary.capability = observe::capability_name(static_cast<int>(capability));
      summary.denied = true;
      summary.count = count;
      summary.total = seen_[key];
      summary.since = summarized_at_;
      if (const auto d = detail_.find(key); d != detail_.end()) summary.detail = d->second;
      entries.push_back(evidence::escalation_attempt(now, summary));
    }
    unsummarized_.clear();
    detail_.clear();
    summarized_at_ = now;
    // A gone sandbox's counters leave the kernel once they are summarized.
    for (auto it = sandboxes_.begin(); it != sandboxes_.end();) {
      if (!it->second.retiring) {
        ++it;
        continue;
      }
      const uint32_t token = it->second.token;
      probe_.forget_token(token);
      std::erase_if(seen_,
                    [token](const auto& entry) { return std::get<0>(entry.first) == token; });
      sandbox_of_.erase(token);
      it = sandboxes_.erase(it);
    }
  }
  return entries;
}

std::map<std::string, uint64_t> AttemptWatch::denied_of(const std::string& sandbox_id) const {
  std::map<std::string, uint64_t> out;
  const auto sandbox = sandboxes_.find(sandbox_id);
  if (sandbox == sandboxes_.end()) return out;
  for (const auto& [key, count] : seen_) {
    const auto& [token, syscall, capability, denied] = key;
    if (token == sandbox->second.token && denied) out[probes::syscall_kind(syscall)] += count;
  }
  return out;
}

json AttemptWatch::health() const {
  size_t namespaces = 0, cgroups = 0;
  for (const auto& [id, sandbox] : sandboxes_) {
    namespaces += sandbox.pid_namespaces.size();
    cgroups += sandbox.cgroups.size();
  }
  json out = json::object();
  for (const auto& [probe, why] : probe_.attach_report())
    out[probe] = why.empty() ? json{{"attached", true}} : json{{"attached", false}, {"why", why}};
  out["lifecycle_events"] = lifecycle_taken_;
  out["namespace_changes"] = namespace_changes_;
  const auto& tracefs = probe_.tracefs();
  out["tracefs"] = {{"path", probes::kTracefsPath},
                    {"needed", tracefs.needed},
                    {"mounted", tracefs.mounted},
                    {"mounted_by_driftwatch", tracefs.mounted_by_driftwatch}};
  if (!tracefs.error.empty()) out["tracefs"]["why"] = tracefs.error;
  out["watched_cgroups"] = cgroups;
  out["cap_capable"].update(json{{"watched_sandboxes", sandboxes_.size()},
                                 {"watched_pid_namespaces", namespaces},
                                 {"details", events_taken_},
                                 {"details_rate_limited", losses_seen_.rate_limited},
                                 {"details_dropped", losses_seen_.ring_full},
                                 {"attempts_not_counted", losses_seen_.counters_full}});
  return out;
}

}  // namespace driftwatch::app
