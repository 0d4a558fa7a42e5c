#include "policy/policy.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "observe/capabilities.hpp"

namespace driftwatch::policy {
namespace {

using nlohmann::json;
using projection::Direction;
using projection::Finding;

const std::set<std::string> kSeverities{"critical", "high", "medium", "low"};
const std::set<std::string> kNamespaceKeys{"cgroup", "ipc",  "mount", "network",
                                           "pid",    "time", "user",  "uts"};

Result<std::vector<std::string>> string_list(const json& value, const std::string& where) {
  if (!value.is_array() || value.empty())
    return fail(where, " must be a non-empty list of strings");
  std::vector<std::string> out;
  for (const auto& v : value) {
    if (!v.is_string()) return fail(where, " must be a non-empty list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<Requirement> parse_requirement(const json& require, const std::string& where) {
  if (!require.is_object() || require.size() != 1)
    return fail(where, ".require must be an object with exactly one requirement");
  const auto& [key, value] = *require.items().begin();
  Requirement r;
  r.as_declared = value;
  std::string at = where + ".require." + key;
  if (key == "capabilities_absent") {
    r.kind = Requirement::Kind::capabilities_absent;
    DW_TRY(names, string_list(value, at));
    auto mask = observe::capability_mask(names);
    if (!mask) return wrap(mask.error(), at, ": ");
    r.capabilities = *mask;
  } else if (key == "namespaces_not_host") {
    r.kind = Requirement::Kind::namespaces_not_host;
    DW_TRY(names, string_list(value, at));
    for (const auto& n : names)
      if (!kNamespaceKeys.contains(n)) return fail(at, ": unknown namespace '", n, "'");
    r.namespaces = names;
  } else if (key == "no_new_privileges" || key == "root_readonly" || key == "pids_max_set") {
    if (value != true) return fail(at, " must be true");
    r.kind = key == "no_new_privileges" ? Requirement::Kind::no_new_privileges
             : key == "root_readonly"   ? Requirement::Kind::root_readonly
                                        : Requirement::Kind::pids_max_set;
  } else if (key == "seccomp_at_least") {
    if (!value.is_string() || (value != "filter" && value != "strict"))
      return fail(at, " must be \"filter\" or \"strict\"");
    r.kind = Requirement::Kind::seccomp_at_least;
    r.seccomp = value.get<std::string>();
  } else if (key == "memory_max_at_most") {
    if (!value.is_number_integer() || value.get<int64_t>() <= 0)
      return fail(at, " must be a positive number of bytes");
    r.kind = Requirement::Kind::memory_max_at_most;
    r.limit = value.get<int64_t>();
  } else if (key == "argv_forbidden") {
    r.kind = Requirement::Kind::argv_forbidden;
    DW_TRY(flags, string_list(value, at));
    for (const auto& flag : flags)
      if (flag.empty() || flag.find('=') != std::string::npos)
        return fail(at, ": '", flag, "' is not a command-line flag (no '=', not empty)");
    r.flags = flags;
  } else {
    return fail(where, ".require: unknown requirement '", key, "'");
  }
  return r;
}

Finding violation(const Rule& rule, json observed) {
  Finding f;
  f.field = "policy." + rule.id;
  f.declared = rule.requirement.as_declared;
  f.observed = std::move(observed);
  f.direction = Direction::escalation;
  f.severity = rule.severity;
  f.controls = rule.controls;
  return f;
}

}  // namespace

Result<Policy> parse_policy(std::string_view text, std::string_view what) {
  DW_TRY(doc, parse_json(text, what));
  std::string name(what);
  if (!doc.is_object()) return fail("policy ", name, ": not a JSON object");
  for (const auto& [key, _] : doc.items())
    if (key != "schema" && key != "name" && key != "description" && key != "rules")
      return fail("policy ", name, ": unknown key '", key, "'");
  if (doc.value("schema", json()) != "driftwatch.policy/v1")
    return fail("policy ", name, ": schema must be \"driftwatch.policy/v1\"");
  Policy policy;
  policy.sha256 = sha256_hex(text);
  policy.name = doc.value("name", std::string(what));
  if (!doc.contains("rules") || !doc["rules"].is_array())
    return fail("policy ", name, ": rules must be a list");
  std::set<std::string> ids;
  for (const auto& entry : doc["rules"]) {
    std::string where = "policy " + name + ": rule " + std::to_string(policy.rules.size());
    if (!entry.is_object()) return fail(where, " is not an object");
    for (const auto& [key, _] : entry.items())
      if (key != "id" && key != "description" && key != "severity" && key != "controls" &&
          key != "require")
        return fail(where, ": unknown key '", key, "'");
    Rule rule;
    if (!entry.contains("id") || !entry["id"].is_string() || entry["id"].get<std::string>().empty())
      return fail(where, ": id must be a non-empty string");
    rule.id = entry["id"];
    where = "policy " + name + ": rule '" + rule.id + "'";
    if (!ids.insert(rule.id).second) return fail(where, " is defined twice");
    if (!std::all_of(rule.id.begin(), rule.id.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
        }))
      return fail(where, ": id may hold only letters, digits, '-' and '_'");
    if (!entry.contains("description") || !entry["description"].is_string())
      return fail(where, ": description must be a string");
    rule.description = entry["description"];
    if (!entry.contains("severity") || !entry["severity"].is_string() ||
        !kSeverities.contains(entry["severity"].get<std::string>()))
      return fail(where, ": severity must be one of critical, high, medium, low");
    rule.severity = entry["severity"];
    if (!entry.contains("controls")) return fail(where, ": controls are required");
    DW_TRY(controls, string_list(entry["controls"], where + ".controls"));
    rule.controls = controls;
    if (!entry.contains("require")) return fail(where, ": require is missing");
    DW_TRY(requirement, parse_requirement(entry["require"], where));
    rule.requirement = std::move(requirement);
    policy.rules.push_back(std::move(rule));
  }
  return policy;
}

Result<Policy> load_policy(const std::optional<std::filesystem::path>& path) {
  if (!path) return parse_policy(embedded_default_policy(), "embedded default.json");
  DW_TRY(text, read_regular_file(*path, 1u << 20, "policy"));
  return parse_policy(text, path->string());
}

std::vector<Finding> evaluate(const Policy& policy, const projection::Projection& observed,
                              const projection::Observation& observation) {
  std::vector<Finding> out;
  for (const auto& rule : policy.rules) {
    const auto& r = rule.requirement;
    switch (r.kind) {
      case Requirement::Kind::capabilities_absent: {
        uint64_t held = 0;
        for (const auto& m : observation.members) {
          if (m.nested_user_namespace) continue;
          held |= m.status.cap_effective | m.status.cap_permitted | m.status.cap_ambient;
        }
        if (held & r.capabilities)
          out.push_back(violation(rule, observe::capability_names(held & r.capabilities)));
        break;
      }
      case Requirement::Kind::namespaces_not_host: {
        json shared = json::object();
        for (const auto& ns : r.namespaces) {
          auto it = observed.namespaces.find(ns);
          std::string state = it == observed.namespaces.end() ? "host" : it->second;
          if (state != "private") shared[ns] = state;
        }
        if (!shared.empty()) out.push_back(violation(rule, shared));
        break;
      }
      case Requirement::Kind::no_new_privileges:
        if (!observed.no_new_privileges) out.push_back(violation(rule, false));
        break;
      case Requirement::Kind::seccomp_at_least:
        if (projection::seccomp_strength(observed.seccomp) <
            projection::seccomp_strength(r.seccomp))
          out.push_back(violation(rule, observed.seccomp));
        break;
      case Requirement::Kind::root_readonly:
        if (!observed.root_readonly) out.push_back(violation(rule, false));
        break;
      case Requirement::Kind::memory_max_at_most:
        if (!observed.memory_max || *observed.memory_max > r.limit)
          out.push_back(violation(rule, observed.memory_max ? json(*observed.memory_max) : json()));
        break;
      case Requirement::Kind::pids_max_set:
        if (!observed.pids_max) out.push_back(violation(rule, nullptr));
        break;
      case Requirement::Kind::argv_forbidden: {
        json matches = json::array();
        for (const auto& m : observation.members) {
          for (const auto& arg : m.argv) {
            bool hit = std::any_of(r.flags.begin(), r.flags.end(), [&](const std::string& flag) {
              return arg == flag || (arg.starts_with(flag) && arg[flag.size()] == '=');
            });
            if (hit) matches.push_back({{"pid", m.pid}, {"arg", arg.substr(0, 256)}});
          }
        }
        if (!matches.empty()) out.push_back(violation(rule, matches));
        break;
      }
    }
  }
  return out;
}

}  // namespace driftwatch::policy
