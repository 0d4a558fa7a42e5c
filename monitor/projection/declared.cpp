#include "projection/declared.hpp"

#include <unistd.h>

#include <algorithm>

#include "observe/capabilities.hpp"
#include "projection/diff.hpp"

namespace driftwatch::projection {
namespace {

using nlohmann::json;

// Typed accessors that name the field on error. `path` is the dotted path of
// the field in the OCI config, for messages.
Result<const json*> member(const json& object, const char* key, json::value_t type,
                           std::string_view path) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  bool ok = it->type() == type ||
            (type == json::value_t::number_integer && it->is_number_unsigned()) ||
            (type == json::value_t::number_unsigned && it->is_number_integer() &&
             it->get<int64_t>() >= 0);
  if (!ok) return fail("OCI config field ", path, " has the wrong type (", it->type_name(), ")");
  return &*it;
}

Result<uint64_t> capability_set(const json& caps, const char* key) {
  auto field = member(caps, key, json::value_t::array, std::string("process.capabilities.") + key);
  if (!field) return std::unexpected(field.error());
  if (!*field) return 0;
  std::vector<std::string> names;
  for (const auto& entry : **field) {
    if (!entry.is_string())
      return fail("OCI config field process.capabilities.", key, " holds a non-string entry");
    names.push_back(entry.get<std::string>());
  }
  auto mask = observe::capability_mask(names);
  if (!mask) return wrap(mask.error(), "OCI config field process.capabilities.", key, ": ");
  return *mask;
}

Result<uint32_t> unsigned32(const json& value, std::string_view path) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 || value.get<int64_t>() > 0xffffffffLL)
    return fail("OCI config field ", path, " is not an unsigned 32-bit integer");
  return static_cast<uint32_t>(value.get<int64_t>());
}

// Maps a container id through linux.uidMappings / gidMappings to the host id
// /proc/PID/status shows. An id outside every mapping cannot be set by the
// runtime at all; runc and crun refuse such a config, so do we.
Result<uint32_t> map_id(const json* mappings, uint32_t id, std::string_view what) {
  if (!mappings) return id;
  for (const auto& m : *mappings) {
    // Entries are outside input: a number or a string here must be an error,
    // not an exception (m.value() throws on a non-object).
    if (!m.is_object())
      return fail("OCI config field linux.", what, "Mappings holds an entry that is a JSON ",
                  m.type_name(), ", not an object {containerID, hostID, size}");
    static const json kAbsent;
    const auto field = [&](const char* key) -> const json& {
      const auto it = m.find(key);
      return it == m.end() ? kAbsent : *it;
    };
    const json& container = field("containerID");
    const json& host = field("hostID");
    const json& size = field("size");
    auto c = unsigned32(container, std::string(what) + "Mappings[].containerID");
    auto h = unsigned32(host, std::string(what) + "Mappings[].hostID");
    auto s = unsigned32(size, std::string(what) + "Mappings[].size");
    if (!c) return std::unexpected(c.error());
    if (!h) return std::unexpected(h.error());
    if (!s) return std::unexpected(s.error());
    if (id >= *c && uint64_t(id) < uint64_t(*c) + *s) {
      const uint64_t mapped = uint64_t(*h) + (id - *c);
      if (mapped > 0xffffffffULL)
        return fail("OCI config linux.", what, "Mappings maps ", what, " ", std::to_string(id),
                    " beyond the 32-bit id range");
      return static_cast<uint32_t>(mapped);
    }
  }
  return fail("OCI config ", what, " ", std::to_string(id), " is not in linux.", what,
              "Mappings of the user namespace");
}

Result<std::set<std::string>> path_list(const json* list, std::string_view path) {
  std::set<std::string> out;
  if (!list) return out;
  for (const auto& entry : *list) {
    if (!entry.is_string() || entry.get<std::string>().empty() ||
        entry.get<std::string>().front() != '/')
      return fail("OCI config field ", path, " holds an entry that is not an absolute path");
    out.insert(entry.get<std::string>());
  }
  return out;
}

// RLIM_INFINITY in the OCI config is the all-ones uint64.
std::optional<uint64_t> rlimit_value(uint64_t v) {
  if (v == ~uint64_t{0}) return std::nullopt;
  return v;
}

Result<Projection> declared_projection_checked(const json& config);

}  // namespace

Result<Projection> declared_projection(const json& config) {
  // Every access below checks its type first; this catch is the last line
  // for a check that was missed, so that one signed config can never take
  // the daemon down (it becomes a `malformed` rejection instead).
  try {
    return declared_projection_checked(config);
  } catch (const json::exception& error) {
    return fail("OCI config cannot be projected: ", error.what());
  }
}

namespace {

Result<Projection> declared_projection_checked(const json& config) {
  if (!config.is_object()) return fail("OCI config is not a JSON object");
  if (!config.contains("ociVersion") || !config["ociVersion"].is_string())
    return fail("not an OCI runtime config: no string field ociVersion");

  Projection p;
  static const json kEmpty = json::object();

  DW_TRY(process_ptr, member(config, "process", json::value_t::object, "process"));
  const json& process = process_ptr ? *process_ptr : kEmpty;
  DW_TRY(linux_ptr, member(config, "linux", json::value_t::object, "linux"));
  const json& linux_cfg = linux_ptr ? *linux_ptr : kEmpty;

  // --- namespaces. A listed namespace without a path is new (private). One
  // with a path joins an existing namespace: private unless the path names
  // PID 1's (the host's). Unlisted: the runtime stays in its own, the host's.
  DW_TRY(ns_list, member(linux_cfg, "namespaces", json::value_t::array, "linux.namespaces"));
  bool user_namespace = false;
  for (const auto& kind : kNamespaces) p.namespaces[kind.projection_key] = "host";
  if (ns_list) {
    for (const auto& ns : *ns_list) {
      if (!ns.is_object() || !ns.contains("type") || !ns["type"].is_string())
        return fail("OCI config field linux.namespaces holds an entry without a string type");
      std::string type = ns["type"];
      const NamespaceKind* kind = nullptr;
      for (const auto& k : kNamespaces)
        if (type == k.projection_key) kind = &k;
      if (!kind) return fail("OCI config field linux.namespaces has unknown type '", type, "'");
      std::string state = "private";
      if (ns.contains("path") && ns["path"].is_string()) {
        std::string path = ns["path"];
        if (path == std::string("/proc/1/ns/") + kind->proc_name) state = "host";
      }
      p.namespaces[type] = state;
      if (type == "user" && state == "private") user_namespace = true;
    }
  }

  // --- user. Defaults uid 0 / gid 0 (the spec requires them; runc and crun
  // treat absence as 0). Ids are reported as the host sees them, so they go
  // through the user namespace mappings when there is one.
  DW_TRY(user_ptr, member(process, "user", json::value_t::object, "process.user"));
  const json& user = user_ptr ? *user_ptr : kEmpty;
  uint32_t container_uid = 0, container_gid = 0;
  if (user.contains("uid")) {
    DW_TRY(uid, unsigned32(user["uid"], "process.user.uid"));
    container_uid = uid;
  }
  if (user.contains("gid")) {
    DW_TRY(gid, unsigned32(user["gid"], "process.user.gid"));
    container_gid = gid;
  }
  const json* uid_mappings = nullptr;
  const json* gid_mappings = nullptr;
  if (user_namespace) {
    DW_TRY(um, member(linux_cfg, "uidMappings", json::value_t::array, "linux.uidMappings"));
    DW_TRY(gm, member(linux_cfg, "gidMappings", json::value_t::array, "linux.gidMappings"));
    uid_mappings = um;
    gid_mappings = gm;
  }
  DW_TRY(host_uid, map_id(uid_mappings, container_uid, "uid"));
  DW_TRY(host_gid, map_id(gid_mappings, container_gid, "gid"));
  p.uid = host_uid;
  p.gid = host_gid;
  // runc and crun call setgroups() with exactly additionalGids (an empty
  // list when absent), so the process has no supplementary groups otherwise.
  DW_TRY(groups,
         member(user, "additionalGids", json::value_t::array, "process.user.additionalGids"));
  if (groups) {
    for (const auto& g : *groups) {
      DW_TRY(gid, unsigned32(g, "process.user.additionalGids[]"));
      DW_TRY(mapped, map_id(gid_mappings, gid, "gid"));
      p.additional_gids.insert(mapped);
    }
  }

  // --- capabilities. The runtime sets the five sets, then execve()s the
  // container process, and execve transforms them (capabilities(7)):
  //  * ambient survives only as a subset of permitted & inheritable (the
  //    kernel refuses PR_CAP_AMBIENT_RAISE otherwise; both runtimes ignore
  //    that failure, so `runc spec`'s ambient list without inheritable ends
  //    up empty);
  //  * uid 0 (in its user namespace, without SECBIT_NOROOT, which neither
  //    runtime sets): permitted' = bounding | inheritable | ambient and
  //    effective' = permitted';
  //  * any other uid, executing a file without file capabilities (the
  //    rootfs is the sandbox's own; we cannot vouch for file caps, so this
  //    is the promise): permitted' = effective' = ambient.
  DW_TRY(caps_ptr, member(process, "capabilities", json::value_t::object, "process.capabilities"));
  const json& caps = caps_ptr ? *caps_ptr : kEmpty;
  DW_TRY(bounding, capability_set(caps, "bounding"));
  DW_TRY(effective, capability_set(caps, "effective"));
  DW_TRY(permitted, capability_set(caps, "permitted"));
  DW_TRY(inheritable, capability_set(caps, "inheritable"));
  DW_TRY(ambient_requested, capability_set(caps, "ambient"));
  (void)effective;
  uint64_t ambient = ambient_requested & permitted & inheritable;
  p.capabilities.bounding = bounding;
  p.capabilities.inheritable = inheritable;
  p.capabilities.ambient = ambient;
  if (container_uid == 0) {
    p.capabilities.permitted = bounding | inheritable | ambient;
  } else {
    p.capabilities.permitted = ambient;
  }
  p.capabilities.effective = p.capabilities.permitted;

  // --- no_new_privileges: absent means false (the spec's default).
  DW_TRY(nnp,
         member(process, "noNewPrivileges", json::value_t::boolean, "process.noNewPrivileges"));
  p.no_new_privileges = nnp && nnp->get<bool>();

  // --- seccomp: any linux.seccomp object makes both runtimes load a filter.
  DW_TRY(seccomp, member(linux_cfg, "seccomp", json::value_t::object, "linux.seccomp"));
  p.seccomp = seccomp ? "filter" : "disabled";

  // --- root: absent readonly means a writable root.
  DW_TRY(root, member(config, "root", json::value_t::object, "root"));
  if (root) {
    DW_TRY(ro, member(*root, "readonly", json::value_t::boolean, "root.readonly"));
    p.root_readonly = ro && ro->get<bool>();
  }

  // --- masked and read-only paths, literally; a path that is masked is not
  // also listed read-only (masking is the stronger promise).
  DW_TRY(masked_list, member(linux_cfg, "maskedPaths", json::value_t::array, "linux.maskedPaths"));
  DW_TRY(masked, path_list(masked_list, "linux.maskedPaths"));
  DW_TRY(ro_list, member(linux_cfg, "readonlyPaths", json::value_t::array, "linux.readonlyPaths"));
  DW_TRY(readonly, path_list(ro_list, "linux.readonlyPaths"));
  p.masked_paths = masked;
  for (const auto& path : readonly)
    if (!masked.contains(path)) p.readonly_paths.insert(path);

  // --- resources. A new cgroup without a limit is unlimited (null).
  DW_TRY(resources_ptr, member(linux_cfg, "resources", json::value_t::object, "linux.resources"));
  const json& resources = resources_ptr ? *resources_ptr : kEmpty;
  DW_TRY(memory, member(resources, "memory", json::value_t::object, "linux.resources.memory"));
  if (memory) {
    DW_TRY(limit,
           member(*memory, "limit", json::value_t::number_integer, "linux.resources.memory.limit"));
    // The kernel stores the limit in pages and reads back a multiple of the
    // page size, rounded down; -1 (and 0, which runc treats as "unset")
    // leave it unlimited.
    if (limit && limit->get<int64_t>() > 0) {
      int64_t page = sysconf(_SC_PAGESIZE);
      p.memory_max = limit->get<int64_t>() / page * page;
    }
  }
  DW_TRY(pids, member(resources, "pids", json::value_t::object, "linux.resources.pids"));
  if (pids) {
    DW_TRY(limit,
           member(*pids, "limit", json::value_t::number_integer, "linux.resources.pids.limit"));
    // runc and crun write pids.max only for a positive limit ("max" for -1).
    if (limit && limit->get<int64_t>() > 0) p.pids_max = limit->get<int64_t>();
  }
  DW_TRY(cpu, member(resources, "cpu", json::value_t::object, "linux.resources.cpu"));
  if (cpu) {
    DW_TRY(quota,
           member(*cpu, "quota", json::value_t::number_integer, "linux.resources.cpu.quota"));
    DW_TRY(period,
           member(*cpu, "period", json::value_t::number_unsigned, "linux.resources.cpu.period"));
    // A positive quota is a limit; the kernel's default period (100000 µs)
    // applies when the config gives none.
    if (quota && quota->get<int64_t>() > 0) {
      uint64_t period_us = period && period->get<uint64_t>() > 0 ? period->get<uint64_t>() : 100000;
      p.cpu_max = std::to_string(quota->get<int64_t>()) + " " + std::to_string(period_us);
    }
  }

  // --- rlimits: only those the config lists (the rest are inherited from
  // whoever started the runtime and are left out of both projections).
  DW_TRY(rlimits, member(process, "rlimits", json::value_t::array, "process.rlimits"));
  if (rlimits) {
    for (const auto& r : *rlimits) {
      if (!r.is_object() || !r.contains("type") || !r["type"].is_string() || !r.contains("soft") ||
          !r["soft"].is_number_unsigned() || !r.contains("hard") || !r["hard"].is_number_unsigned())
        return fail("OCI config field process.rlimits holds an entry without type, soft and hard");
      const auto& names = rlimit_names();
      if (std::find(names.begin(), names.end(), r["type"].get<std::string>()) == names.end())
        return fail(
            "OCI config field process.rlimits has an unknown type (not one of the "
            "kernel's RLIMIT_* names)");
      p.rlimits[r["type"].get<std::string>()] = {rlimit_value(r["soft"].get<uint64_t>()),
                                                 rlimit_value(r["hard"].get<uint64_t>())};
    }
  }

  // --- LSM label: AppArmor profile, else SELinux label, else none.
  DW_TRY(apparmor,
         member(process, "apparmorProfile", json::value_t::string, "process.apparmorProfile"));
  DW_TRY(selinux, member(process, "selinuxLabel", json::value_t::string, "process.selinuxLabel"));
  if (apparmor && !apparmor->get<std::string>().empty())
    p.lsm_label = apparmor->get<std::string>();
  else if (selinux && !selinux->get<std::string>().empty())
    p.lsm_label = selinux->get<std::string>();
  return p;
}

}  // namespace

}  // namespace driftwatch::projection
