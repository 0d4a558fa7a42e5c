#include "projection/observed.hpp"

#include <algorithm>

#include "observe/capabilities.hpp"

namespace driftwatch::projection {
namespace {

// Most privileged of two limits: unlimited (nullopt) beats any number.
std::optional<int64_t> looser(const std::optional<int64_t>& a, const std::optional<int64_t>& b) {
  if (!a || !b) return std::nullopt;
  return std::max(*a, *b);
}
std::optional<uint64_t> looser(const std::optional<uint64_t>& a, const std::optional<uint64_t>& b) {
  if (!a || !b) return std::nullopt;
  return std::max(*a, *b);
}

// cpu.max as a share of one CPU, for ordering two limits.
double cpu_share(const std::string& cpu_max) {
  auto space = cpu_max.find(' ');
  if (space == std::string::npos) return 0;
  double quota = std::strtod(cpu_max.c_str(), nullptr);
  double period = std::strtod(cpu_max.c_str() + space + 1, nullptr);
  return period > 0 ? quota / period : 0;
}

std::optional<std::string> looser_cpu(const std::optional<std::string>& a,
                                      const std::optional<std::string>& b) {
  if (!a || !b) return std::nullopt;
  return cpu_share(*a) >= cpu_share(*b) ? a : b;
}

}  // namespace

Result<Projection> observed_projection(const Observation& obs, const ObservationScope& scope) {
  if (obs.members.empty())
    return fail("sandbox '", obs.sandbox_id, "' has no live member to observe");
  Projection p;
  bool any_uid0 = false, any_gid0 = false;
  uint32_t min_uid = UINT32_MAX, min_gid = UINT32_MAX;
  p.no_new_privileges = true;
  int weakest_seccomp = 2;
  bool first = true;
  std::map<std::string, std::set<std::string>> ns_states;
  std::set<std::optional<std::string>> labels;
  for (const auto& m : obs.members) {
    const auto& s = m.status;
    uint32_t euid = s.uid[1], egid = s.gid[1];
    any_uid0 |= euid == 0;
    any_gid0 |= egid == 0;
    min_uid = std::min(min_uid, euid);
    min_gid = std::min(min_gid, egid);
    p.additional_gids.insert(s.groups.begin(), s.groups.end());
    p.capabilities.bounding |= s.cap_bounding;
    p.capabilities.effective |= s.cap_effective;
    p.capabilities.permitted |= s.cap_permitted;
    p.capabilities.inheritable |= s.cap_inheritable;
    p.capabilities.ambient |= s.cap_ambient;
    p.no_new_privileges &= s.no_new_privs;
    weakest_seccomp = std::min(weakest_seccomp, s.seccomp == 1 ? 2 : s.seccomp == 2 ? 1 : 0);
    for (const auto& kind : kNamespaces) {
      auto mine = m.namespaces.find(kind.proc_name);
      auto host = obs.host_namespaces.find(kind.proc_name);
      // A kernel without this namespace kind (no /proc/PID/ns/time) has
      // every process in the one instance: the host's.
      bool shared = mine == m.namespaces.end() || host == obs.host_namespaces.end() ||
                    mine->second == host->second;
      ns_states[kind.projection_key].insert(shared ? "host" : "private");
    }
    if (first) {
      p.memory_max = m.cgroup_limits.memory_max;
      p.pids_max = m.cgroup_limits.pids_max;
      p.cpu_max = m.cgroup_limits.cpu_max;
    } else {
      p.memory_max = looser(p.memory_max, m.cgroup_limits.memory_max);
      p.pids_max = looser(p.pids_max, m.cgroup_limits.pids_max);
      p.cpu_max = looser_cpu(p.cpu_max, m.cgroup_limits.cpu_max);
    }
    for (const auto& r : m.rlimits) {
      if (scope.rlimits && !scope.rlimits->contains(r.name)) continue;
      RlimitPair pair{r.soft, r.hard};
      auto [it, inserted] = p.rlimits.emplace(r.name, pair);
      if (!inserted)
        it->second = {looser(it->second.soft, r.soft), looser(it->second.hard, r.hard)};
    }
    labels.insert(m.lsm_label);
    first = false;
  }
  p.uid = any_uid0 ? 0 : min_uid;
  p.gid = any_gid0 ? 0 : min_gid;
  p.seccomp = weakest_seccomp == 2 ? "strict" : weakest_seccomp == 1 ? "filter" : "disabled";
  for (const auto& [key, states] : ns_states)
    p.namespaces[key] = states.size() == 1 ? *states.begin() : "mixed";
  // Unconfined (no label) is the weakest; otherwise labels agree or the
  // smallest is reported (a disagreement still changes the hash).
  p.lsm_label = labels.contains(std::nullopt) ? std::nullopt : *labels.begin();

  // Paths: masked only if masked in every mount namespace a member is in.
  p.root_readonly = !obs.mount_views.empty();
  bool first_view = true;
  for (const auto& view : obs.mount_views) {
    p.root_readonly &= view.root_readonly;
    if (first_view) {
      p.masked_paths = view.masked;
      p.readonly_paths = view.readonly;
    } else {
      std::erase_if(p.masked_paths, [&](const auto& x) { return !view.masked.contains(x); });
      std::erase_if(p.readonly_paths, [&](const auto& x) { return !view.readonly.contains(x); });
    }
    first_view = false;
  }
  for (const auto& path : p.masked_paths) p.readonly_paths.erase(path);
  return p;
}

CapabilitySets nested_namespace_capabilities(const Observation& obs) {
  CapabilitySets outer, nested;
  for (const auto& m : obs.members) {
    CapabilitySets& target = m.nested_user_namespace ? nested : outer;
    target.bounding |= m.status.cap_bounding;
    target.effective |= m.status.cap_effective;
    target.permitted |= m.status.cap_permitted;
    target.inheritable |= m.status.cap_inheritable;
    target.ambient |= m.status.cap_ambient;
  }
  return {nested.bounding & ~outer.bounding, nested.effective & ~outer.effective,
          nested.permitted & ~outer.permitted, nested.inheritable & ~outer.inheritable,
          nested.ambient & ~outer.ambient};
}

nlohmann::json members_json(const Observation& obs) {
  nlohmann::json members = nlohmann::json::array();
  for (const auto& m : obs.members) {
    nlohmann::json rlimits = nlohmann::json::object();
    for (const auto& r : m.rlimits) {
      rlimits[r.name] = {r.soft ? nlohmann::json(*r.soft) : nlohmann::json(nullptr),
                         r.hard ? nlohmann::json(*r.hard) : nlohmann::json(nullptr)};
    }
    members.push_back({{"pid", m.pid},
                       {"tgid", m.status.tgid},
                       {"start_time_ticks", m.start_time_ticks},
                       {"euid", m.status.uid[1]},
                       {"exe", m.exe},
                       {"argv", m.argv},
                       {"cap_effective", observe::capability_names(m.status.cap_effective)},
                       {"nested_user_namespace", m.nested_user_namespace},
                       {"rlimits", rlimits}});
  }
  return members;
}

}  // namespace driftwatch::projection
