#include "correlate/correlator.hpp"

#include <algorithm>
#include <set>

#include "projection/declared.hpp"

namespace driftwatch::correlate {
namespace {

using nlohmann::json;
using projection::Direction;
using projection::Finding;

json optional_json(const std::optional<std::string>& v) {
  return v ? json(*v) : json(nullptr);
}

std::string format_time(int64_t unix_seconds) {
  return unix_seconds > 0 ? ingest::format_rfc3339(unix_seconds) : std::string();
}

}  // namespace

json to_json(const SandboxStatus& s) {
  json findings = json::array();
  for (const auto& f : s.findings) findings.push_back(projection::to_json(f));
  return json{{"sandbox_id", s.sandbox_id},
              {"runtime", s.runtime},
              {"engine", s.engine},
              {"names", s.names},
              {"launch_id", optional_json(s.launch_id)},
              {"grant_id", optional_json(s.grant_id)},
              {"verdict", optional_json(s.verdict)},
              {"declared_sha256", optional_json(s.declared_sha256)},
              {"observed_sha256", optional_json(s.observed_sha256)},
              {"consumed_config_sha256", optional_json(s.consumed_config_sha256)},
              {"findings", findings},
              {"members", s.members},
              {"first_seen", format_time(s.first_seen)},
              {"last_observed", format_time(s.last_observed)}};
}

const ingest::LaunchRecord* launch_for(const ingest::Ingestor& ingestor,
                                       std::string_view sandbox_id,
                                       const std::vector<std::string>& names) {
  if (const auto* launch = ingestor.launch_for_sandbox(sandbox_id)) return launch;
  for (const auto& name : names)
    if (const auto* launch = ingestor.launch_for_sandbox(name)) return launch;
  return nullptr;
}

std::optional<projection::Projection> declared_for(const ingest::Ingestor& ingestor,
                                                   std::string_view sandbox_id,
                                                   const std::vector<std::string>& names) {
  const auto* launch = launch_for(ingestor, sandbox_id, names);
  if (!launch) return std::nullopt;
  const auto* grant = ingestor.latest_grant(launch->launch_id);
  auto declared = projection::declared_projection(grant ? grant->config : launch->config);
  if (!declared) return std::nullopt;
  return *declared;
}

SandboxStatus evaluate(const SweepItem& item, const ingest::Ingestor& ingestor,
                       const policy::Policy& policy, int64_t now, int64_t grace_seconds) {
  SandboxStatus s;
  s.sandbox_id = item.ref.sandbox_id;
  s.runtime = item.ref.runtime;
  s.engine = item.ref.engine;
  s.names = item.ref.names;
  s.observed_sha256 = projection::projection_sha256(item.observed);
  s.consumed_config_sha256 = item.consumed_config_sha256;
  for (const auto& m : item.observation.members) s.members.push_back(m.pid);
  s.first_seen = item.started_at;
  s.last_observed = item.sampled_at;

  std::vector<Finding> drift;
  const auto* launch = launch_for(ingestor, item.ref.sandbox_id, item.ref.names);
  if (launch) {
    s.launch_id = launch->launch_id;
    const auto* grant = ingestor.latest_grant(launch->launch_id);
    if (grant) s.grant_id = grant->grant_id;
    const auto& config = grant ? grant->config : launch->config;
    auto declared = projection::declared_projection(config);
    if (declared) {
      s.declared_sha256 = projection::projection_sha256(*declared);
      drift = projection::diff(*declared, item.observed,
                               projection::nested_namespace_capabilities(item.observation));
    } else {
      // An accepted launch whose config does not project (the control plane
      // logged something that is not a usable OCI config) cannot attest.
      Finding f;
      f.field = "declared";
      f.declared = declared.error().message;
      f.observed = nullptr;
      f.direction = Direction::change;
      f.severity = "high";
      f.controls = {"CM-2", "CM-6"};
      drift.push_back(std::move(f));
    }
    // The runtime must have consumed exactly the config the control plane
    // logged: a different config.json in the bundle is drift in itself.
    // runc update and grants change limits, never the bundle's config.json,
    // so it is always held to the launch's hash.
    const std::string& logged = launch->config_sha256;
    if (item.consumed_config_sha256 && *item.consumed_config_sha256 != logged) {
      Finding f;
      f.field = "consumed_config";
      f.declared = logged;
      f.observed = *item.consumed_config_sha256;
      f.direction = Direction::change;
      f.severity = "high";
      f.controls = {"CM-2", "CM-3", "CM-6", "SI-7"};
      drift.push_back(std::move(f));
    }
  }
  auto violations = policy::evaluate(policy, item.observed, item.observation);

  bool drifted = std::any_of(drift.begin(), drift.end(),
                             [](const Finding& f) { return f.direction != Direction::narrowing; });
  if (drifted) {
    s.verdict = "drifted";
  } else if (!violations.empty()) {
    s.verdict = "violating";
  } else if (!launch) {
    s.verdict = now - item.started_at >= grace_seconds ? "unattested" : "pending";
  } else if (!drift.empty()) {
    s.verdict = "narrowed";
  } else {
    s.verdict = "attested";
  }
  s.findings = std::move(drift);
  s.findings.insert(s.findings.end(), violations.begin(), violations.end());
  return s;
}

namespace {

std::string finding_key(const Finding& f) {
  return f.field + "\n" + projection::to_string(f.direction);
}

void note_change(std::vector<VerdictChange>& changes, const SandboxStatus* before,
                 const SandboxStatus& after) {
  std::vector<Finding> fresh;
  std::set<std::string> known;
  if (before)
    for (const auto& f : before->findings) known.insert(finding_key(f));
  for (const auto& f : after.findings)
    if (!known.contains(finding_key(f))) fresh.push_back(f);
  const bool same = before && before->verdict == after.verdict &&
                    before->observed_sha256 == after.observed_sha256 &&
                    before->declared_sha256 == after.declared_sha256 &&
                    before->launch_id == after.launch_id &&
                    before->findings.size() == after.findings.size() && fresh.empty();
  if (same) return;
  changes.push_back(VerdictChange{after.sandbox_id, before ? before->verdict : std::nullopt,
                                  after.verdict.value_or("pending"), after, std::move(fresh),
                                  before ? before->last_observed : 0});
}

}  // namespace

std::vector<VerdictChange> Correlator::apply_sweep(const std::vector<SweepItem>& items,
                                                   const ingest::Ingestor& ingestor,
                                                   const policy::Policy& policy, int64_t now,
                                                   int64_t grace_seconds) {
  std::vector<VerdictChange> changes;
  std::map<std::string, SweepItem> live;
  for (const auto& item : items) live.emplace(item.ref.sandbox_id, item);
  for (auto& [id, status] : statuses_) {
    if (!live.contains(id) && status.verdict != "gone") {
      const SandboxStatus before = status;
      status.verdict = "gone";
      status.members.clear();
      note_change(changes, &before, status);
    }
  }
  last_items_ = std::move(live);
  auto evaluated = reevaluate(ingestor, policy, now, grace_seconds);
  changes.insert(changes.end(), evaluated.begin(), evaluated.end());
  return changes;
}

std::vector<VerdictChange> Correlator::apply_sample(const SweepItem& item,
                                                    const ingest::Ingestor& ingestor,
                                                    const policy::Policy& policy, int64_t now,
                                                    int64_t grace_seconds) {
  std::vector<VerdictChange> changes;
  last_items_.insert_or_assign(item.ref.sandbox_id, item);
  SandboxStatus after = evaluate(item, ingestor, policy, now, grace_seconds);
  auto it = statuses_.find(item.ref.sandbox_id);
  note_change(changes, it == statuses_.end() ? nullptr : &it->second, after);
  statuses_.insert_or_assign(item.ref.sandbox_id, std::move(after));
  return changes;
}

std::vector<VerdictChange> Correlator::reevaluate(const ingest::Ingestor& ingestor,
                                                  const policy::Policy& policy, int64_t now,
                                                  int64_t grace_seconds) {
  std::vector<VerdictChange> changes;
  for (const auto& [id, item] : last_items_) {
    SandboxStatus after = evaluate(item, ingestor, policy, now, grace_seconds);
    auto it = statuses_.find(id);
    note_change(changes, it == statuses_.end() ? nullptr : &it->second, after);
    statuses_.insert_or_assign(id, std::move(after));
  }
  // Gone sandboxes stay listed for an hour (for reports), then are dropped
  // from memory (never from the durable record).
  std::erase_if(statuses_, [&](const auto& entry) {
    return entry.second.verdict == "gone" && entry.second.last_observed < now - 3600;
  });
  return changes;
}

const SandboxStatus* Correlator::find(std::string_view sandbox_id) const {
  auto it = statuses_.find(std::string(sandbox_id));
  if (it != statuses_.end()) return &it->second;
  const SandboxStatus* best = nullptr;
  for (const auto& [id, status] : statuses_) {
    if (std::find(status.names.begin(), status.names.end(), sandbox_id) == status.names.end())
      continue;
    const bool live = status.verdict != "gone";
    const bool best_live = best && best->verdict != "gone";
    if (!best || (live && !best_live) ||
        (live == best_live && status.last_observed > best->last_observed))
      best = &status;
  }
  return best;
}

}  // namespace driftwatch::correlate
