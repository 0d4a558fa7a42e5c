#include <catch2/catch.hpp>

#include "metrics/metrics.hpp"

using namespace driftwatch;

namespace {

correlate::SandboxStatus status(const std::string& id, const std::string& verdict,
                                std::vector<projection::Finding> findings = {}) {
  correlate::SandboxStatus s;
  s.sandbox_id = id;
  s.runtime = "runc";
  s.engine = "runc";
  s.launch_id = "L-" + id;
  s.verdict = verdict;
  s.declared_sha256 = std::string(64, 'd');
  s.observed_sha256 = std::string(64, 'o');
  s.findings = std::move(findings);
  s.last_observed = 1000;
  return s;
}

projection::Finding escalation(const std::string& field) {
  projection::Finding f;
  f.field = field;
  f.direction = projection::Direction::escalation;
  f.severity = "critical";
  return f;
}

// What the correlator's change stream says of `s`: every finding new.
correlate::VerdictChange change(const correlate::SandboxStatus& s,
                                std::optional<std::string> from = std::nullopt,
                                int64_t previous_observed_at = 0) {
  return {s.sandbox_id, std::move(from), *s.verdict, s, s.findings, previous_observed_at};
}

bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("metrics: every family of the contract is exposed from the start", "[metrics]") {
  metrics::Metrics m("0.1.0", "abc123", std::string(64, 'c'));
  auto text = m.serialize();
  // Families whose series all carry a sandbox, a field or a rule appear with
  // their first series (prometheus-cpp writes no empty families).
  for (const char* family :
       {"driftwatch_sandboxes", "driftwatch_escalation_attempts_total",
        "driftwatch_launch_events_total", "driftwatch_grants_total",
        "driftwatch_sample_duration_seconds", "driftwatch_detection_latency_seconds",
        "driftwatch_probe_attached", "driftwatch_probe_events_total",
        "driftwatch_probe_events_lost_total", "driftwatch_evidence_tree_size",
        "driftwatch_evidence_root_prefix", "driftwatch_last_sweep_timestamp_seconds",
        "driftwatch_build_info", "driftwatch_config_info"}) {
    INFO(family);
    CHECK(text.find("# TYPE " + std::string(family)) != std::string::npos);
  }
  // Every (engine, verdict) pair of the fixed lists, from the start.
  for (const char* engine : {"runc", "crun", "podman", "containerd", "cgroup", "process"})
    for (const char* verdict : correlate::kVerdicts)
      CHECK(has_line(text, "driftwatch_sandboxes{engine=\"" + std::string(engine) +
                               "\",verdict=\"" + verdict + "\"} 0"));
  CHECK(has_line(text, "driftwatch_launch_events_total{result=\"too_large\"} 0"));
  CHECK(has_line(text, "driftwatch_build_info{revision=\"abc123\",version=\"0.1.0\"} 1"));
}

TEST_CASE("metrics: per-sandbox series follow the sandbox and go when it is gone", "[metrics]") {
  metrics::Metrics m("0.1.0", "abc123", "c");
  std::map<std::string, correlate::SandboxStatus> first, second;
  first["a"] = status("a", "attested");
  first["b"] = status("b", "unattested");
  m.apply_changes({change(first["a"]), change(first["b"])}, first, 1000);
  auto text = m.serialize();
  CHECK(has_line(text, "driftwatch_sandbox_drifted{launch_id=\"L-a\",sandbox=\"a\"} 0"));
  CHECK(has_line(text, "driftwatch_sandboxes{engine=\"runc\",verdict=\"attested\"} 1"));
  CHECK(text.find("verdict=\"unattested\",sandbox=\"b\"") == std::string::npos);  // sorted labels
  CHECK(text.find("sandbox=\"b\",verdict=\"unattested\"") != std::string::npos);

  second["a"] = status("a", "drifted", {escalation("capabilities.effective")});
  second["b"] = status("b", "gone");
  m.apply_changes({change(second["a"], "attested", 1000), change(second["b"], "unattested", 1000)},
                  second, 1010);
  text = m.serialize();
  CHECK(has_line(text, "driftwatch_sandbox_drifted{launch_id=\"L-a\",sandbox=\"a\"} 1"));
  CHECK(text.find("sandbox=\"b\"") == std::string::npos);
  CHECK(text.find("verdict=\"attested\",sandbox") == std::string::npos);
  CHECK(has_line(text, "driftwatch_sandboxes{engine=\"runc\",verdict=\"gone\"} 1"));
  CHECK(has_line(text,
                 "driftwatch_drift_findings_total{direction=\"escalation\",field=\"capabilities."
                 "effective\",severity=\"critical\"} 1"));
  CHECK(has_line(text, "driftwatch_detection_latency_seconds_count{trigger=\"sweep\"} 1"));

  // A sweep that changes nothing (the correlator reports no change) counts
  // nothing and keeps the series.
  m.apply_changes({}, second, 1020);
  CHECK(has_line(m.serialize(),
                 "driftwatch_drift_findings_total{direction=\"escalation\",field=\"capabilities."
                 "effective\",severity=\"critical\"} 1"));
}

TEST_CASE("metrics: policy findings count under their rule, ingest results under theirs",
          "[metrics]") {
  metrics::Metrics m("0.1.0", "abc123", "c");
  std::map<std::string, correlate::SandboxStatus> now;
  now["v"] = status("v", "violating", {escalation("policy.no-cap-sys-module")});
  m.apply_changes({change(now["v"])}, now, 1000);
  m.count_ingest(ingest::EnvelopeKind::grant, ingest::IngestResult::wrong_role);
  auto text = m.serialize();
  CHECK(has_line(text, "driftwatch_policy_violations_total{rule=\"no-cap-sys-module\"} 1"));
  CHECK(has_line(text, "driftwatch_grants_total{result=\"wrong_role\"} 1"));
  CHECK(has_line(text, "driftwatch_launch_events_total{result=\"wrong_role\"} 0"));
}

TEST_CASE("metrics: every fixed findings series is exported at 0 before the first finding",
          "[metrics]") {
  metrics::Metrics m("0.1.0", "abc123", "c");
  const auto text = m.serialize();
  CHECK(has_line(text,
                 "driftwatch_drift_findings_total{direction=\"escalation\",field=\"capabilities."
                 "effective\",severity=\"critical\"} 0"));
  CHECK(has_line(text,
                 "driftwatch_drift_findings_total{direction=\"narrowing\",field=\"resources."
                 "memory_max\",severity=\"low\"} 0"));
  CHECK(has_line(text,
                 "driftwatch_drift_findings_total{direction=\"change\",field=\"consumed_config\","
                 "severity=\"high\"} 0"));
  CHECK(has_line(text,
                 "driftwatch_drift_findings_total{direction=\"change\",field=\"declared\","
                 "severity=\"high\"} 0"));
  // Every label set diff() can produce, and nothing counted yet.
  for (const auto& labels : projection::finding_label_sets()) {
    const std::string line = "driftwatch_drift_findings_total{direction=\"" +
                             projection::to_string(labels.direction) + "\",field=\"" +
                             labels.field + "\",severity=\"" + labels.severity + "\"} 0";
    INFO(line);
    CHECK(has_line(text, line));
  }
  CHECK(has_line(text, "driftwatch_sandboxes{engine=\"runc\",verdict=\"pending\"} 0"));
  CHECK(has_line(text, "driftwatch_launch_events_total{result=\"orphan_grant\"} 0"));
  CHECK(has_line(text, "driftwatch_grants_total{result=\"unavailable\"} 0"));

  // The first finding moves its own series from 0 to 1, and only that one.
  std::map<std::string, correlate::SandboxStatus> now;
  now["a"] = status("a", "drifted", {escalation("capabilities.effective")});
  m.apply_changes({change(now["a"])}, now, 1000);
  const auto after = m.serialize();
  CHECK(has_line(after,
                 "driftwatch_drift_findings_total{direction=\"escalation\",field=\"capabilities."
                 "effective\",severity=\"critical\"} 1"));
  CHECK(has_line(after,
                 "driftwatch_drift_findings_total{direction=\"escalation\",field=\"capabilities."
                 "bounding\",severity=\"critical\"} 0"));
}

TEST_CASE("metrics: the rules of the node policy are exported at 0 once set", "[metrics]") {
  metrics::Metrics m("0.1.0", "abc123", "c");
  const std::string rule_line = "driftwatch_policy_violations_total{rule=\"no-cap-sys-module\"} 0";
  CHECK_FALSE(has_line(m.serialize(), rule_line));

  m.set_policy_rules({"no-cap-sys-module", "no-host-pid"});
  auto text = m.serialize();
  CHECK(text.find("# TYPE driftwatch_policy_violations_total counter") != std::string::npos);
  CHECK(has_line(text, rule_line));
  CHECK(has_line(text, "driftwatch_policy_violations_total{rule=\"no-host-pid\"} 0"));

  // A violation counts on the exported series; setting the rules again
  // does not reset it.
  std::map<std::string, correlate::SandboxStatus> now;
  now["v"] = status("v", "violating", {escalation("policy.no-cap-sys-module")});
  m.apply_changes({change(now["v"])}, now, 1000);
  m.set_policy_rules({"no-cap-sys-module", "no-host-pid"});
  text = m.serialize();
  CHECK(has_line(text, "driftwatch_policy_violations_total{rule=\"no-cap-sys-module\"} 1"));
  CHECK(has_line(text, "driftwatch_policy_violations_total{rule=\"no-host-pid\"} 0"));
}
