#include "projection/projection.hpp"

#include <cstdio>
#include <cstdlib>

#include "common/canonical_json.hpp"
#include "common/sha256.hpp"
#include "observe/capabilities.hpp"

namespace driftwatch::projection {
namespace {

// The masked and read-only paths runc 1.1 and crun 1.8 put into `runc spec`
// and their built-in defaults. The observed side checks these even when the
// config does not list them, so that unmasking a well-known sensitive path
// shows up as a difference.
const char* const kDefaultMaskedPaths[] = {"/proc/acpi",          "/proc/asound",
                                           "/proc/kcore",         "/proc/keys",
                                           "/proc/latency_stats", "/proc/scsi",
                                           "/proc/sched_debug",   "/proc/timer_list",
                                           "/proc/timer_stats",   "/sys/devices/virtual/powercap",
                                           "/sys/firmware"};
const char* const kDefaultReadonlyPaths[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                             "/proc/sysrq-trigger"};

nlohmann::json optional_json(const auto& value) {
  if (!value) return nullptr;
  return *value;
}

}  // namespace

nlohmann::json to_json(const Projection& p) {
  using nlohmann::json;
  json namespaces = json::object();
  for (const auto& kind : kNamespaces) {
    auto it = p.namespaces.find(kind.projection_key);
    namespaces[kind.projection_key] = it == p.namespaces.end() ? "host" : it->second;
  }
  json rlimits = json::object();
  for (const auto& [name, pair] : p.rlimits) {
    rlimits[name] = json::array({optional_json(pair.soft), optional_json(pair.hard)});
  }
  auto caps = [](uint64_t mask) { return json(observe::capability_names(mask)); };
  return json{
      {"schema", kSchema},
      {"user",
       {{"uid", p.uid},
        {"gid", p.gid},
        {"additional_gids",
         json(std::vector<uint32_t>(p.additional_gids.begin(), p.additional_gids.end()))}}},
      {"capabilities",
       {{"bounding", caps(p.capabilities.bounding)},
        {"effective", caps(p.capabilities.effective)},
        {"permitted", caps(p.capabilities.permitted)},
        {"inheritable", caps(p.capabilities.inheritable)},
        {"ambient", caps(p.capabilities.ambient)}}},
      {"no_new_privileges", p.no_new_privileges},
      {"seccomp", p.seccomp},
      {"namespaces", namespaces},
      {"root_readonly", p.root_readonly},
      {"masked_paths",
       json(std::vector<std::string>(p.masked_paths.begin(), p.masked_paths.end()))},
      {"readonly_paths",
       json(std::vector<std::string>(p.readonly_paths.begin(), p.readonly_paths.end()))},
      {"resources",
       {{"memory_max", optional_json(p.memory_max)},
        {"pids_max", optional_json(p.pids_max)},
        {"cpu_max", optional_json(p.cpu_max)}}},
      {"rlimits", rlimits},
      {"lsm_label", optional_json(p.lsm_label)},
  };
}

std::string canonical_bytes(const Projection& projection) {
  // A projection holds only integers below 2^53, ASCII-safe strings we built
  // or validated, and no floats, so canonicalisation cannot fail; if it ever
  // does, that is a broken invariant.
  auto bytes = canonical_json(to_json(projection));
  if (!bytes) {
    std::fprintf(stderr, "driftwatch: broken invariant: projection not canonicalisable: %s\n",
                 bytes.error().message.c_str());
    std::abort();
  }
  return *bytes;
}

std::string projection_sha256(const Projection& projection) {
  return sha256_hex(canonical_bytes(projection));
}

std::string seccomp_mode_name(int mode) {
  switch (mode) {
    case 0:
      return "disabled";
    case 1:
      return "strict";
    case 2:
      return "filter";
  }
  return "unknown";
}

int seccomp_strength(std::string_view mode) {
  if (mode == "strict") return 2;
  if (mode == "filter") return 1;
  return 0;
}

ObservationScope default_scope() {
  ObservationScope scope;
  scope.masked_candidates.insert(std::begin(kDefaultMaskedPaths), std::end(kDefaultMaskedPaths));
  scope.readonly_candidates.insert(std::begin(kDefaultReadonlyPaths),
                                   std::end(kDefaultReadonlyPaths));
  return scope;
}

ObservationScope scope_for(const Projection& declared) {
  ObservationScope scope = default_scope();
  scope.masked_candidates.insert(declared.masked_paths.begin(), declared.masked_paths.end());
  scope.declared_masked = declared.masked_paths;
  scope.readonly_candidates.insert(declared.readonly_paths.begin(), declared.readonly_paths.end());
  scope.declared_readonly = declared.readonly_paths;
  std::set<std::string> rlimits;
  for (const auto& [name, pair] : declared.rlimits) rlimits.insert(name);
  scope.rlimits = std::move(rlimits);
  return scope;
}

}  // namespace driftwatch::projection
