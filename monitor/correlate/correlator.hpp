#pragma once
// Joins what the control plane says it launched with what is running:
// sandboxes to accepted launch events by sandbox_id, the declared projection
// from the launch config or its latest accepted grant, the observed one from
// a sweep, node policy on top, and a verdict per sandbox.

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ingest/ingestor.hpp"
#include "policy/policy.hpp"
#include "projection/diff.hpp"
#include "projection/observed.hpp"
#include "sandbox/discovery.hpp"

namespace driftwatch::correlate {

/// Verdicts, worst first (DESIGN.md).
inline constexpr const char* kVerdicts[] = {"drifted",  "violating", "unattested", "pending",
                                            "narrowed", "attested",  "gone"};

/// One sandbox as a sweep saw it.
struct SweepItem {
  sandbox::SandboxRef ref;
  projection::Observation observation;
  projection::Projection observed;
  std::optional<std::string> consumed_config_sha256;  // bundle config.json, JCS hashed
  int64_t started_at = 0;     // Unix time the sandbox's first process started
  int64_t sampled_at = 0;     // Unix time of the sample
  double sample_seconds = 0;  // wall time the sample took
};

struct SandboxStatus {
  std::string sandbox_id;
  std::string runtime;
  std::string engine;              // one of sandbox::kEngines
  std::vector<std::string> names;  // the names a launch event may use besides the id
  std::optional<std::string> launch_id;
  std::optional<std::string> grant_id;  // the grant the declared side comes from
  /// One of kVerdicts (`pending` while an unlaunched sandbox is within its
  /// grace period). Optional only for statuses built by hand.
  std::optional<std::string> verdict;
  std::optional<std::string> declared_sha256;
  std::optional<std::string> observed_sha256;
  std::optional<std::string> consumed_config_sha256;
  std::vector<projection::Finding> findings;
  std::vector<pid_t> members;
  int64_t first_seen = 0;
  int64_t last_observed = 0;
};
nlohmann::json to_json(const SandboxStatus& status);

/// The status of one swept sandbox. Pure: a function of its inputs.
SandboxStatus evaluate(const SweepItem& item, const ingest::Ingestor& ingestor,
                       const policy::Policy& policy, int64_t now, int64_t grace_seconds);

/// The accepted launch of the sandbox whose id is `sandbox_id` and whose
/// other names are `names`: the one for its id, else the one for the first
/// of its names that has one. A launch event names a sandbox by its id or by
/// any of its names (sandbox::SandboxRef::names).
const ingest::LaunchRecord* launch_for(const ingest::Ingestor& ingestor,
                                       std::string_view sandbox_id,
                                       const std::vector<std::string>& names = {});

/// The declared projection a sandbox is held to (latest grant, else the
/// launch), if it has an accepted launch whose config projects.
std::optional<projection::Projection> declared_for(const ingest::Ingestor& ingestor,
                                                   std::string_view sandbox_id,
                                                   const std::vector<std::string>& names = {});

/// One sandbox whose status changed (verdict, hashes, launch, findings): the
/// stream that logs and metrics consume (and, next, the evidence log), so
/// none of them has to diff status maps.
struct VerdictChange {
  std::string sandbox_id;
  std::optional<std::string> from;  // the verdict before; nullopt: first seen
  std::string to;
  SandboxStatus status;  // as it is now
  /// Findings the sandbox did not have before (by field and direction).
  std::vector<projection::Finding> new_findings;
  /// When the sandbox was observed before this change (0: never): drift
  /// found now happened at most this long ago.
  int64_t previous_observed_at = 0;
};

/// The verdicts of every sandbox seen, live and gone.
class Correlator {
 public:
  /// Applies a whole sweep: statuses of the swept sandboxes are replaced;
  /// known sandboxes missing from it become `gone`. Returns what changed.
  std::vector<VerdictChange> apply_sweep(const std::vector<SweepItem>& items,
                                         const ingest::Ingestor& ingestor,
                                         const policy::Policy& policy, int64_t now,
                                         int64_t grace_seconds);
  /// Applies one sandbox's fresh sample (a resample), leaving the others.
  std::vector<VerdictChange> apply_sample(const SweepItem& item, const ingest::Ingestor& ingestor,
                                          const policy::Policy& policy, int64_t now,
                                          int64_t grace_seconds);
  /// Re-evaluates the swept sandboxes against the current launches and grants
  /// (after an envelope is accepted), without sampling again.
  std::vector<VerdictChange> reevaluate(const ingest::Ingestor& ingestor,
                                        const policy::Policy& policy, int64_t now,
                                        int64_t grace_seconds);

  const std::map<std::string, SandboxStatus>& statuses() const { return statuses_; }
  /// The sandbox whose id is `sandbox_id`, else one that has it as a name
  /// (a live one before a gone one, then the latest observed).
  const SandboxStatus* find(std::string_view sandbox_id) const;

 private:
  std::map<std::string, SandboxStatus> statuses_;
  std::map<std::string, SweepItem> last_items_;  // live sandboxes' latest samples
};

}  // namespace driftwatch::correlate
