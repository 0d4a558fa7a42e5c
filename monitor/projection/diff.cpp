#include "projection/diff.hpp"

#include <algorithm>

#include "observe/capabilities.hpp"

namespace driftwatch::projection {
namespace {

using nlohmann::json;

// Controls each finding evidences: every drift is a configuration setting
// that is not as baselined (CM-2, CM-6) and an uncontrolled change (CM-3);
// escalations also break least privilege (AC-6).
std::vector<std::string> controls_for(Direction direction) {
  if (direction == Direction::escalation) return {"AC-6", "CM-2", "CM-3", "CM-6"};
  return {"CM-2", "CM-3", "CM-6"};
}

}  // namespace

// Escalations of the fields that decide what code can do to the kernel are
// critical; other escalations high; unordered changes medium; narrowing low.
std::string severity_for(std::string_view field, Direction direction) {
  if (direction == Direction::narrowing) return "low";
  if (direction == Direction::change) return "medium";
  bool kernel_facing = field.starts_with("capabilities.") || field.starts_with("user.uid") ||
                       field == "no_new_privileges" || field == "seccomp" ||
                       field.starts_with("namespaces.");
  return kernel_facing ? "critical" : "high";
}

const std::vector<std::string>& rlimit_names() {
  static const std::vector<std::string> names = {
      "RLIMIT_AS",     "RLIMIT_CORE",   "RLIMIT_CPU",        "RLIMIT_DATA",
      "RLIMIT_FSIZE",  "RLIMIT_LOCKS",  "RLIMIT_MEMLOCK",    "RLIMIT_MSGQUEUE",
      "RLIMIT_NICE",   "RLIMIT_NOFILE", "RLIMIT_NPROC",      "RLIMIT_RSS",
      "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK"};
  return names;
}

std::vector<FindingLabels> finding_label_sets() {
  std::vector<std::string> fields = {
      "user.uid",           "user.gid",          "user.additional_gids",
      "no_new_privileges",  "seccomp",           "root_readonly",
      "masked_paths",       "readonly_paths",    "resources.memory_max",
      "resources.pids_max", "resources.cpu_max", "lsm_label"};
  for (const char* set : {"ambient", "bounding", "effective", "inheritable", "permitted"})
    fields.push_back(std::string("capabilities.") + set);
  for (const auto& kind : kNamespaces)
    fields.push_back(std::string("namespaces.") + kind.projection_key);
  for (const auto& name : rlimit_names()) fields.push_back("rlimits." + name);
  std::vector<FindingLabels> out;
  for (const auto& field : fields)
    for (Direction direction : {Direction::escalation, Direction::narrowing, Direction::change})
      out.push_back({field, direction, severity_for(field, direction)});
  return out;
}

namespace {

Finding make(std::string field, json declared, json observed, Direction direction) {
  Finding f;
  f.severity = severity_for(field, direction);
  f.controls = controls_for(direction);
  f.field = std::move(field);
  f.declared = std::move(declared);
  f.observed = std::move(observed);
  f.direction = direction;
  return f;
}

// A set that gains members grants more; one that only loses grants less.
template <class Set>
Direction set_direction(const Set& declared, const Set& observed) {
  bool gained = std::any_of(observed.begin(), observed.end(),
                            [&](const auto& x) { return !declared.contains(x); });
  return gained ? Direction::escalation : Direction::narrowing;
}

// For limits, nullopt is unlimited: the most permissive.
template <class T>
Direction limit_direction(const std::optional<T>& declared, const std::optional<T>& observed) {
  if (!observed) return Direction::escalation;
  if (!declared) return Direction::narrowing;
  return *observed > *declared ? Direction::escalation : Direction::narrowing;
}

json optional_json(const auto& v) {
  return v ? json(*v) : json(nullptr);
}

int namespace_rank(const std::string& state) {
  return state == "private" ? 0 : state == "mixed" ? 1 : 2;  // host shares most
}

}  // namespace

std::string to_string(Direction direction) {
  switch (direction) {
    case Direction::escalation:
      return "escalation";
    case Direction::narrowing:
      return "narrowing";
    case Direction::change:
      return "change";
  }
  return "change";
}

json to_json(const Finding& f) {
  json j{{"field", f.field},       {"declared", f.declared},
         {"observed", f.observed}, {"direction", to_string(f.direction)},
         {"severity", f.severity}, {"controls", f.controls}};
  if (f.namespaced) j["namespaced"] = true;
  return j;
}

std::vector<Finding> diff(const Projection& d, const Projection& o,
                          const CapabilitySets& nested_caps) {
  std::vector<Finding> out;

  if (d.uid != o.uid) {
    Direction dir = o.uid == 0   ? Direction::escalation
                    : d.uid == 0 ? Direction::narrowing
                                 : Direction::change;
    out.push_back(make("user.uid", d.uid, o.uid, dir));
  }
  if (d.gid != o.gid) {
    Direction dir = o.gid == 0   ? Direction::escalation
                    : d.gid == 0 ? Direction::narrowing
                                 : Direction::change;
    out.push_back(make("user.gid", d.gid, o.gid, dir));
  }
  if (d.additional_gids != o.additional_gids) {
    out.push_back(make("user.additional_gids", json(d.additional_gids), json(o.additional_gids),
                       set_direction(d.additional_gids, o.additional_gids)));
  }

  struct CapField {
    const char* name;
    uint64_t CapabilitySets::*set;
  };
  static constexpr CapField kCapFields[] = {{"ambient", &CapabilitySets::ambient},
                                            {"bounding", &CapabilitySets::bounding},
                                            {"effective", &CapabilitySets::effective},
                                            {"inheritable", &CapabilitySets::inheritable},
                                            {"permitted", &CapabilitySets::permitted}};
  for (const auto& field : kCapFields) {
    uint64_t declared = d.capabilities.*field.set, observed = o.capabilities.*field.set;
    if (declared == observed) continue;
    uint64_t extra = observed & ~declared;
    Finding f = make(std::string("capabilities.") + field.name, observe::capability_names(declared),
                     observe::capability_names(observed),
                     extra ? Direction::escalation : Direction::narrowing);
    f.namespaced = (extra & nested_caps.*field.set) != 0;
    out.push_back(std::move(f));
  }

  if (d.no_new_privileges != o.no_new_privileges) {
    out.push_back(make("no_new_privileges", d.no_new_privileges, o.no_new_privileges,
                       o.no_new_privileges ? Direction::narrowing : Direction::escalation));
  }
  if (d.seccomp != o.seccomp) {
    out.push_back(make("seccomp", d.seccomp, o.seccomp,
                       seccomp_strength(o.seccomp) < seccomp_strength(d.seccomp)
                           ? Direction::escalation
                           : Direction::narrowing));
  }
  for (const auto& kind : kNamespaces) {
    auto get = [&](const Projection& p) {
      auto it = p.namespaces.find(kind.projection_key);
      return it == p.namespaces.end() ? std::string("host") : it->second;
    };
    std::string declared = get(d), observed = get(o);
    if (declared == observed) continue;
    int dr = namespace_rank(declared), orank = namespace_rank(observed);
    Direction dir = orank > dr ? Direction::escalation : Direction::narrowing;
    // Leaving the host's user namespace isolates the member from the host but
    // hands it a full capability set inside (the capability findings carry
    // that as `namespaced`): it has no order, it is a change.
    if (std::string_view(kind.projection_key) == "user" && dir == Direction::narrowing)
      dir = Direction::change;
    out.push_back(make(std::string("namespaces.") + kind.projection_key, declared, observed, dir));
  }
  if (d.root_readonly != o.root_readonly) {
    out.push_back(make("root_readonly", d.root_readonly, o.root_readonly,
                       o.root_readonly ? Direction::narrowing : Direction::escalation));
  }
  // A declared path missing from the observed list is visible (or writable):
  // escalation. Only extra paths: narrowing.
  auto path_finding = [&](const char* field, const std::set<std::string>& declared,
                          const std::set<std::string>& observed) {
    if (declared == observed) return;
    bool lost = std::any_of(declared.begin(), declared.end(),
                            [&](const auto& x) { return !observed.contains(x); });
    out.push_back(make(field, json(declared), json(observed),
                       lost ? Direction::escalation : Direction::narrowing));
  };
  path_finding("masked_paths", d.masked_paths, o.masked_paths);
  path_finding("readonly_paths", d.readonly_paths, o.readonly_paths);

  if (d.memory_max != o.memory_max)
    out.push_back(make("resources.memory_max", optional_json(d.memory_max),
                       optional_json(o.memory_max), limit_direction(d.memory_max, o.memory_max)));
  if (d.pids_max != o.pids_max)
    out.push_back(make("resources.pids_max", optional_json(d.pids_max), optional_json(o.pids_max),
                       limit_direction(d.pids_max, o.pids_max)));
  if (d.cpu_max != o.cpu_max) {
    auto share = [](const std::optional<std::string>& v) -> std::optional<double> {
      if (!v) return std::nullopt;
      auto space = v->find(' ');
      double period = space == std::string::npos ? 0 : std::strtod(v->c_str() + space + 1, nullptr);
      return period > 0 ? std::strtod(v->c_str(), nullptr) / period : 0.0;
    };
    out.push_back(make("resources.cpu_max", optional_json(d.cpu_max), optional_json(o.cpu_max),
                       limit_direction(share(d.cpu_max), share(o.cpu_max))));
  }

  std::set<std::string> rlimit_names;
  for (const auto& [name, _] : d.rlimits) rlimit_names.insert(name);
  for (const auto& [name, _] : o.rlimits) rlimit_names.insert(name);
  for (const auto& name : rlimit_names) {
    auto di = d.rlimits.find(name), oi = o.rlimits.find(name);
    if (di == d.rlimits.end() || oi == o.rlimits.end()) {
      // Only one side speaks of it: no order between "unknown" and a value.
      json declared =
          di == d.rlimits.end()
              ? json(nullptr)
              : json::array({optional_json(di->second.soft), optional_json(di->second.hard)});
      json observed =
          oi == o.rlimits.end()
              ? json(nullptr)
              : json::array({optional_json(oi->second.soft), optional_json(oi->second.hard)});
      out.push_back(make("rlimits." + name, declared, observed, Direction::change));
      continue;
    }
    if (di->second == oi->second) continue;
    Direction soft = limit_direction(di->second.soft, oi->second.soft);
    Direction hard = limit_direction(di->second.hard, oi->second.hard);
    bool raised = (di->second.soft != oi->second.soft && soft == Direction::escalation) ||
                  (di->second.hard != oi->second.hard && hard == Direction::escalation);
    out.push_back(
        make("rlimits." + name,
             json::array({optional_json(di->second.soft), optional_json(di->second.hard)}),
             json::array({optional_json(oi->second.soft), optional_json(oi->second.hard)}),
             raised ? Direction::escalation : Direction::narrowing));
  }
  if (d.lsm_label != o.lsm_label) {
    out.push_back(make("lsm_label", optional_json(d.lsm_label), optional_json(o.lsm_label),
                       !o.lsm_label   ? Direction::escalation
                       : !d.lsm_label ? Direction::narrowing
                                      : Direction::change));
  }
  return out;
}

std::string comparison_verdict(const std::vector<Finding>& findings) {
  if (findings.empty()) return "attested";
  bool only_narrowing = std::all_of(findings.begin(), findings.end(), [](const Finding& f) {
    return f.direction == Direction::narrowing;
  });
  return only_narrowing ? "narrowed" : "drifted";
}

}  // namespace driftwatch::projection
