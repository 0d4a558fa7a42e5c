#pragma once
// The Prometheus families of the contract (DESIGN.md "Metrics"), built with
// prometheus-cpp's registry and served as text by our own HTTP server.
// Label values come only from bounded lists: verdicts, ingest results,
// projection fields, policy rule ids, probe names; only `sandbox` and
// `launch_id` grow with live sandboxes, and their series are removed when
// the sandbox is gone.

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "correlate/correlator.hpp"
#include "ingest/ingestor.hpp"

namespace driftwatch::metrics {

/// The probes of DESIGN.md's eBPF section, as `probe` label values.
inline constexpr const char* kProbes[] = {"cap_capable",
                                          "sched_process_exec",
                                          "sched_process_fork",
                                          "sched_process_exit",
                                          "cgroup_attach_task",
                                          "syscalls/sys_exit_unshare",
                                          "syscalls/sys_exit_setns",
                                          "inotify"};

class Metrics {
 public:
  Metrics(const std::string& version, const std::string& revision,
          const std::string& config_sha256);

  /// Exports driftwatch_policy_violations_total{rule} at 0 for every rule
  /// of the node policy (call once the policy is loaded).
  void set_policy_rules(const std::vector<std::string>& rule_ids);

  /// One ingested envelope's result.
  void count_ingest(ingest::EnvelopeKind kind, ingest::IngestResult result);

  /// After a sweep or a resample, from the correlator's change stream:
  /// verdict counts (from `statuses`), and for each changed sandbox its
  /// series (added, relabelled, removed when gone), counters for its new
  /// findings and policy violations, and, for a sweep's (`by_sweep`), the
  /// detection latency of new drift (a resample's is the probe's, observed
  /// by observe_probe_latency).
  void apply_changes(const std::vector<correlate::VerdictChange>& changes,
                     const std::map<std::string, correlate::SandboxStatus>& statuses, int64_t now,
                     bool by_sweep = true);
  void observe_sample_duration(double seconds);
  /// Drift found by a probe-triggered resample, `seconds` after the
  /// kernel's event.
  void observe_probe_latency(double seconds);
  void set_last_sweep(int64_t unix_seconds);
  void set_probe_attached(const std::string& probe, bool attached);
  /// `n` more attempts of syscall `kind` (probes::syscall_kind), denied or
  /// allowed.
  void count_escalation_attempts(const std::string& kind, bool denied, uint64_t n);
  /// `n` more events detailed by `probe`, and `lost` more it counted but
  /// could not detail.
  void count_probe_events(const std::string& probe, uint64_t n, uint64_t lost);
  void set_evidence(uint64_t tree_size, uint64_t root_prefix);

  /// The text exposition format (version 0.0.4) of every family.
  std::string serialize() const;

 private:
  struct SandboxSeries {
    prometheus::Gauge* drifted = nullptr;
    prometheus::Gauge* info = nullptr;
    std::map<std::string, std::string> info_labels;
    std::string launch_id;
  };

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Gauge>& sandboxes_;
  prometheus::Family<prometheus::Gauge>& sandbox_drifted_;
  prometheus::Family<prometheus::Gauge>& sandbox_info_;
  prometheus::Family<prometheus::Counter>& findings_;
  prometheus::Family<prometheus::Counter>& policy_violations_;
  prometheus::Family<prometheus::Counter>& escalation_attempts_;
  prometheus::Family<prometheus::Counter>& launch_events_;
  prometheus::Family<prometheus::Counter>& grants_;
  prometheus::Family<prometheus::Histogram>& sample_duration_;
  prometheus::Family<prometheus::Histogram>& detection_latency_;
  prometheus::Family<prometheus::Gauge>& probe_attached_;
  prometheus::Histogram* probe_latency_ = nullptr;
  prometheus::Family<prometheus::Counter>& probe_events_;
  prometheus::Family<prometheus::Counter>& probe_events_lost_;
  prometheus::Family<prometheus::Gauge>& evidence_tree_size_;
  prometheus::Family<prometheus::Gauge>& evidence_root_prefix_;
  prometheus::Family<prometheus::Gauge>& last_sweep_;
  prometheus::Family<prometheus::Gauge>& build_info_;
  prometheus::Family<prometheus::Gauge>& config_info_;
  std::map<std::string, SandboxSeries> series_;  // by sandbox id
  prometheus::Histogram* sample_histogram_ = nullptr;
  prometheus::Histogram* sweep_latency_ = nullptr;
};

}  // namespace driftwatch::metrics
