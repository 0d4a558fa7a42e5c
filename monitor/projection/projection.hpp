#pragma once
// The projection (schema driftwatch.projection/v1): the canonical document of
// a sandbox's security-relevant state. The declared side is computed from an
// OCI config, the observed side from the kernel; when the runtime honoured
// the config the two are equal byte for byte, and so are their hashes.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace driftwatch::projection {

inline constexpr const char* kSchema = "driftwatch.projection/v1";

/// The namespace keys of the projection, with their /proc/PID/ns/ names.
struct NamespaceKind {
  const char* projection_key;  // "network"
  const char* proc_name;       // "net"
};
inline constexpr NamespaceKind kNamespaces[] = {
    {"cgroup", "cgroup"}, {"ipc", "ipc"},   {"mount", "mnt"}, {"network", "net"},
    {"pid", "pid"},       {"time", "time"}, {"user", "user"}, {"uts", "uts"}};

/// The five capability sets as bit masks (bit n = capability number n).
struct CapabilitySets {
  uint64_t bounding = 0;
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
  uint64_t ambient = 0;
  bool operator==(const CapabilitySets&) const = default;
};

/// One resource limit; nullopt = unlimited (RLIM_INFINITY).
struct RlimitPair {
  std::optional<uint64_t> soft;
  std::optional<uint64_t> hard;
  bool operator==(const RlimitPair&) const = default;
};

struct Projection {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::set<uint32_t> additional_gids;
  CapabilitySets capabilities;
  bool no_new_privileges = false;
  std::string seccomp = "disabled";  // "disabled" | "strict" | "filter"
  // projection key ("network") -> "private" | "host" | "mixed"
  std::map<std::string, std::string> namespaces;
  bool root_readonly = false;
  std::set<std::string> masked_paths;
  std::set<std::string> readonly_paths;  // never lists a path that is masked
  std::optional<int64_t> memory_max;
  std::optional<int64_t> pids_max;
  std::optional<std::string> cpu_max;         // "QUOTA PERIOD"
  std::map<std::string, RlimitPair> rlimits;  // only those the config lists
  std::optional<std::string> lsm_label;
  bool operator==(const Projection&) const = default;
};

/// The projection as the JSON document of the contract.
nlohmann::json to_json(const Projection& projection);
/// Its RFC 8785 canonical bytes.
std::string canonical_bytes(const Projection& projection);
/// Lowercase hex SHA-256 of the canonical bytes.
std::string projection_sha256(const Projection& projection);

/// Seccomp modes from weakest to strongest, as /proc/PID/status numbers them.
std::string seccomp_mode_name(int mode);
/// Rank for "weakest wins": disabled 0 < filter 1 < strict 2.
int seccomp_strength(std::string_view mode);

/// What the observed side looks at beyond the kernel's own lists: which
/// paths to check for masking and read-only state, and which rlimits enter
/// the projection. It comes from the declared side (plus runtime defaults)
/// so that both sides speak of the same things; see observed.hpp.
struct ObservationScope {
  std::set<std::string> masked_candidates;
  std::set<std::string> declared_masked;
  std::set<std::string> readonly_candidates;
  std::set<std::string> declared_readonly;
  std::optional<std::set<std::string>> rlimits;  // nullopt: every rlimit
};

/// The scope of `inspect` without a config: the runtimes' default sensitive
/// paths and every rlimit.
ObservationScope default_scope();
/// The scope that makes an observation comparable with `declared`.
ObservationScope scope_for(const Projection& declared);

}  // namespace driftwatch::projection
