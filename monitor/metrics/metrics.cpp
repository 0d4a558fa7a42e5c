#include "metrics/metrics.hpp"

#include "probes/kernel_probes.hpp"
#include "sandbox/engines.hpp"

#include <set>
#include <sstream>

#include <prometheus/text_serializer.h>

namespace driftwatch::metrics {
namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

// Sampling one sandbox takes ~100 µs to a few ms; a sweep-detected drift is
// seen within a sweep interval (seconds); a probe-triggered one in ms.
const prometheus::Histogram::BucketBoundaries kSampleBuckets{
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1};
const prometheus::Histogram::BucketBoundaries kLatencyBuckets{0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                              1,     2.5,   5,    10,   30,  60};

}  // namespace

Metrics::Metrics(const std::string& version, const std::string& revision,
                 const std::string& config_sha256)
    : registry_(std::make_shared<prometheus::Registry>()),
      sandboxes_(
          BuildGauge()
              .Name("driftwatch_sandboxes")
              .Help("Sandboxes on this node by verdict and by the engine that launched them.")
              .Register(*registry_)),
      sandbox_drifted_(BuildGauge()
                           .Name("driftwatch_sandbox_drifted")
                           .Help("1 while a live sandbox is drifted, else 0.")
                           .Register(*registry_)),
      sandbox_info_(BuildGauge()
                        .Name("driftwatch_sandbox_info")
                        .Help("One series per live sandbox: its launch, verdict and hashes.")
                        .Register(*registry_)),
      findings_(BuildCounter()
                    .Name("driftwatch_drift_findings_total")
                    .Help("Drift findings that appeared, by projection field and direction.")
                    .Register(*registry_)),
      policy_violations_(BuildCounter()
                             .Name("driftwatch_policy_violations_total")
                             .Help("Node policy violations that appeared, by rule.")
                             .Register(*registry_)),
      escalation_attempts_(BuildCounter()
                               .Name("driftwatch_escalation_attempts_total")
                               .Help("Privileged operations attempted inside watched sandboxes.")
                               .Register(*registry_)),
      launch_events_(BuildCounter()
                         .Name("driftwatch_launch_events_total")
                         .Help("Launch events ingested, by result.")
                         .Register(*registry_)),
      grants_(BuildCounter()
                  .Name("driftwatch_grants_total")
                  .Help("Grants ingested, by result.")
                  .Register(*registry_)),
      sample_duration_(BuildHistogram()
                           .Name("driftwatch_sample_duration_seconds")
                           .Help("Wall time to sample one sandbox.")
                           .Register(*registry_)),
      detection_latency_(BuildHistogram()
                             .Name("driftwatch_detection_latency_seconds")
                             .Help("Time from a change to its detection, by trigger (for sweeps: "
                                   "an upper bound, the time since the previous sample).")
                             .Register(*registry_)),
      probe_attached_(BuildGauge()
                          .Name("driftwatch_probe_attached")
                          .Help("1 if the eBPF probe is attached, else 0 (sampling only).")
                          .Register(*registry_)),
      probe_events_(BuildCounter()
                        .Name("driftwatch_probe_events_total")
                        .Help("Events received from each eBPF probe.")
                        .Register(*registry_)),
      probe_events_lost_(BuildCounter()
                             .Name("driftwatch_probe_events_lost_total")
                             .Help("Events each eBPF probe could not deliver.")
                             .Register(*registry_)),
      evidence_tree_size_(BuildGauge()
                              .Name("driftwatch_evidence_tree_size")
                              .Help("Entries in the evidence log's Merkle tree.")
                              .Register(*registry_)),
      evidence_root_prefix_(BuildGauge()
                                .Name("driftwatch_evidence_root_prefix")
                                .Help("First 6 bytes of the latest checkpoint root, as an integer.")
                                .Register(*registry_)),
      last_sweep_(BuildGauge()
                      .Name("driftwatch_last_sweep_timestamp_seconds")
                      .Help("Unix time the last sweep of all sandboxes finished.")
                      .Register(*registry_)),
      build_info_(BuildGauge()
                      .Name("driftwatch_build_info")
                      .Help("The monitor's version and source revision.")
                      .Register(*registry_)),
      config_info_(BuildGauge()
                       .Name("driftwatch_config_info")
                       .Help("SHA-256 of the monitor's own effective configuration (JCS).")
                       .Register(*registry_)) {
  for (const char* verdict : correlate::kVerdicts)
    for (const char* engine : sandbox::kEngines)
      sandboxes_.Add({{"verdict", verdict}, {"engine", engine}}).Set(0);
  for (auto result : ingest::kAllIngestResults) {
    launch_events_.Add({{"result", ingest::to_string(result)}});
    grants_.Add({{"result", ingest::to_string(result)}});
  }
  sample_histogram_ = &sample_duration_.Add({}, kSampleBuckets);
  sweep_latency_ = &detection_latency_.Add({{"trigger", "sweep"}}, kLatencyBuckets);
  probe_latency_ = &detection_latency_.Add({{"trigger", "probe"}}, kLatencyBuckets);
  for (const char* probe : kProbes) {
    probe_attached_.Add({{"probe", probe}}).Set(0);
    probe_events_.Add({{"probe", probe}});
    probe_events_lost_.Add({{"probe", probe}});
  }
  // Counters start at 0 for every syscall kind the probe names (a fixed
  // list, "other" for the rest), so rate() and alerts see a series before
  // the first attempt.
  for (const auto& kind : probes::syscall_kinds())
    for (const char* outcome : {"denied", "allowed"})
      escalation_attempts_.Add({{"kind", kind}, {"outcome", outcome}});
  // Every fixed label set of the findings counter exists from the start, so
  // that rate() and absent() work before the first drift (and the
  // dashboard's findings panel is not empty until something happens).
  for (const auto& labels : projection::finding_label_sets()) {
    findings_.Add({{"field", labels.field},
                   {"direction", projection::to_string(labels.direction)},
                   {"severity", labels.severity}});
  }
  // The two findings the correlator makes itself (correlator.cpp).
  for (const char* field : {"consumed_config", "declared"})
    findings_.Add({{"field", field}, {"direction", "change"}, {"severity", "high"}});
  evidence_tree_size_.Add({}).Set(0);
  evidence_root_prefix_.Add({}).Set(0);
  last_sweep_.Add({}).Set(0);
  build_info_.Add({{"version", version}, {"revision", revision}}).Set(1);
  config_info_.Add({{"sha256", config_sha256}}).Set(1);
}

void Metrics::set_policy_rules(const std::vector<std::string>& rule_ids) {
  for (const auto& id : rule_ids) policy_violations_.Add({{"rule", id}});
}

void Metrics::count_ingest(ingest::EnvelopeKind kind, ingest::IngestResult result) {
  auto& family = kind == ingest::EnvelopeKind::launch ? launch_events_ : grants_;
  family.Add({{"result", ingest::to_string(result)}}).Increment();
}

void Metrics::apply_changes(const std::vector<correlate::VerdictChange>& changes,
                            const std::map<std::string, correlate::SandboxStatus>& statuses,
                            int64_t now, bool by_sweep) {
  // (verdict, engine) -> sandboxes; every pair of the fixed lists, 0 when none.
  std::map<std::pair<std::string, std::string>, double> counts;
  for (const char* verdict : correlate::kVerdicts)
    for (const char* engine : sandbox::kEngines) counts[{verdict, engine}] = 0;
  for (const auto& [id, status] : statuses) {
    // Only the fixed lists are labels: an unknown value (a bug) is not
    // counted rather than made a new series.
    const auto it = counts.find({status.verdict.value_or(""), status.engine});
    if (it != counts.end()) it->second += 1;
  }
  for (const auto& [labels, count] : counts)
    sandboxes_.Add({{"verdict", labels.first}, {"engine", labels.second}}).Set(count);

  for (const auto& change : changes) {
    const auto& id = change.sandbox_id;
    const auto& status = change.status;
    // Per-sandbox series: only live sandboxes.
    if (change.to == "gone") {
      if (auto it = series_.find(id); it != series_.end()) {
        sandbox_drifted_.Remove(it->second.drifted);
        sandbox_info_.Remove(it->second.info);
        series_.erase(it);
      }
      continue;
    }
    std::string launch_id = status.launch_id.value_or("");
    std::map<std::string, std::string> info_labels{
        {"sandbox", id},
        {"launch_id", launch_id},
        {"runtime", status.runtime},
        {"engine", status.engine},
        {"verdict", change.to},
        {"declared_sha256", status.declared_sha256.value_or("")},
        {"observed_sha256", status.observed_sha256.value_or("")}};
    auto& series = series_[id];
    if (series.drifted && series.launch_id != launch_id) {
      sandbox_drifted_.Remove(series.drifted);
      series.drifted = nullptr;
    }
    if (!series.drifted)
      series.drifted = &sandbox_drifted_.Add({{"sandbox", id}, {"launch_id", launch_id}});
    series.launch_id = launch_id;
    series.drifted->Set(change.to == "drifted" ? 1 : 0);
    if (series.info && series.info_labels != info_labels) {
      sandbox_info_.Remove(series.info);
      series.info = nullptr;
    }
    if (!series.info) {
      series.info = &sandbox_info_.Add(info_labels);
      series.info->Set(1);
      series.info_labels = info_labels;
    }

    // Counters move only for findings that are new on this sandbox.
    bool new_drift = false;
    for (const auto& f : change.new_findings) {
      if (f.field.starts_with("policy.")) {
        policy_violations_.Add({{"rule", f.field.substr(7)}}).Increment();
      } else {
        findings_
            .Add({{"field", f.field},
                  {"direction", projection::to_string(f.direction)},
                  {"severity", f.severity}})
            .Increment();
        new_drift |= f.direction != projection::Direction::narrowing;
      }
    }
    // Drift found by a sweep happened at most one sample ago.
    if (by_sweep && new_drift && change.from && change.previous_observed_at > 0)
      sweep_latency_->Observe(static_cast<double>(now - change.previous_observed_at));
  }
}

void Metrics::observe_sample_duration(double seconds) {
  sample_histogram_->Observe(seconds);
}

void Metrics::set_last_sweep(int64_t unix_seconds) {
  last_sweep_.Add({}).Set(static_cast<double>(unix_seconds));
}

void Metrics::set_probe_attached(const std::string& probe, bool attached) {
  probe_attached_.Add({{"probe", probe}}).Set(attached ? 1 : 0);
}

void Metrics::observe_probe_latency(double seconds) {
  probe_latency_->Observe(seconds);
}

void Metrics::count_escalation_attempts(const std::string& kind, bool denied, uint64_t n) {
  escalation_attempts_.Add({{"kind", kind}, {"outcome", denied ? "denied" : "allowed"}})
      .Increment(static_cast<double>(n));
}

void Metrics::count_probe_events(const std::string& probe, uint64_t n, uint64_t lost) {
  probe_events_.Add({{"probe", probe}}).Increment(static_cast<double>(n));
  probe_events_lost_.Add({{"probe", probe}}).Increment(static_cast<double>(lost));
}

void Metrics::set_evidence(uint64_t tree_size, uint64_t root_prefix) {
  evidence_tree_size_.Add({}).Set(static_cast<double>(tree_size));
  evidence_root_prefix_.Add({}).Set(static_cast<double>(root_prefix));
}

std::string Metrics::serialize() const {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, registry_->Collect());
  return out.str();
}

}  // namespace driftwatch::metrics
