#pragma once
// Declared vs observed, field by field, into findings with a direction:
// `escalation` (the sandbox can do more than declared), `narrowing` (less),
// `change` (different, without an order).

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "projection/projection.hpp"

namespace driftwatch::projection {

enum class Direction { escalation, narrowing, change };
std::string to_string(Direction direction);

struct Finding {
  std::string field;  // dotted path into the projection: "capabilities.effective"
  nlohmann::json declared;
  nlohmann::json observed;
  Direction direction = Direction::change;
  std::string severity;               // "critical" | "high" | "medium" | "low"
  std::vector<std::string> controls;  // NIST SP 800-53 control ids
  /// Capabilities that exceed the declaration only inside a user namespace
  /// a member created; they still count.
  bool namespaced = false;
};
nlohmann::json to_json(const Finding& finding);

/// The severity of a finding on `field` in `direction`: escalations of the
/// kernel-facing fields are critical, other escalations high, changes
/// medium, narrowing low.
std::string severity_for(std::string_view field, Direction direction);

/// Every RLIMIT_* name an rlimit field can have (the kernel's 16).
const std::vector<std::string>& rlimit_names();

struct FindingLabels {
  std::string field;
  Direction direction;
  std::string severity;
};
/// Every (field, direction, severity) a finding of diff() can carry: the
/// fixed label sets of driftwatch_drift_findings_total, exported at 0 from
/// the start.
std::vector<FindingLabels> finding_label_sets();

/// Every differing field. `nested_caps` are the capabilities held only by
/// members in nested user namespaces (see observed.hpp); findings that they
/// cause are marked `namespaced`. Equal projections give no findings;
/// different ones always give at least one.
std::vector<Finding> diff(const Projection& declared, const Projection& observed,
                          const CapabilitySets& nested_caps = {});

/// The verdict of a comparison alone (no launch events, no policy):
/// "attested" without findings, "narrowed" with only narrowing ones,
/// "drifted" otherwise.
std::string comparison_verdict(const std::vector<Finding>& findings);

}  // namespace driftwatch::projection
