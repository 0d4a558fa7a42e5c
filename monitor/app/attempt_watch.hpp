#pragma once
// The daemon's side of the escalation-attempt probe (probes/kernel_probes.hpp):
// which sandboxes the kernel watches, kept in step with what the sweep
// samples (each sandbox's members' PID namespaces, a token per sandbox), and
// what the probe counted, turned into metrics every poll and into
// `escalation_attempt` evidence entries, one per sandbox, kind and outcome
// per interval (so a storm is a handful of entries with exact counts).
// Lives on the event loop.

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "correlate/correlator.hpp"
#include "evidence/entries.hpp"
#include "metrics/metrics.hpp"
#include "probes/kernel_probes.hpp"

namespace driftwatch::app {

class AttemptWatch {
 public:
  /// Loads and attaches the probes (as root, before privileges are dropped;
  /// mounts tracefs for the syscall tracepoints if need be, and logs it).
  static Result<AttemptWatch> load(uint32_t events_per_second, bool syscall_probes = true);

  /// The ring buffer's descriptor, readable when details wait.
  int events_fd() const { return probe_.events_fd(); }

  /// Watches the PID namespaces of the sampled sandboxes' members (not the
  /// host's, `host_pid_namespace`) and the unified cgroup of those whose
  /// members are their cgroup's, and stops watching those of sandboxes
  /// `gone` in `statuses` or no longer there.
  void track(const std::vector<correlate::SweepItem>& items, uint64_t host_pid_namespace,
             const std::map<std::string, correlate::SandboxStatus>& statuses);

  /// A lifecycle event in a watched sandbox: resample it now.
  using Trigger =
      std::function<void(const std::string& sandbox_id, const probes::LifecycleEvent& event)>;
  /// Takes the waiting events: the first denied attempt of each sandbox,
  /// kind and capability per interval goes into its summary; each lifecycle
  /// event goes to `trigger`. Returns how many attempt details.
  size_t take_events(const Trigger& trigger = {});
  /// The probes as attached, for driftwatch_probe_attached.
  const probes::AttachReport& attach_report() const { return probe_.attach_report(); }

  /// Reads the counters: every new attempt into `metrics`, and when
  /// `summarize`, the attempts since the last summary as evidence entries
  /// (denied ones only), with the launch each sandbox runs under.
  std::vector<evidence::Pending> poll(
      int64_t now, metrics::Metrics& metrics, bool summarize,
      const std::function<std::optional<std::string>(const std::string& sandbox_id)>& launch_of);

  /// Denied attempts per kind of one sandbox, since it was first watched.
  std::map<std::string, uint64_t> denied_of(const std::string& sandbox_id) const;
  /// For /healthz: watched sandboxes and namespaces, losses.
  nlohmann::json health() const;

 private:
  explicit AttemptWatch(probes::KernelProbes probe) : probe_(std::move(probe)) {}
  void count_namespace_change(const probes::LifecycleEvent& event);

  // (token, syscall, capability, denied)
  using Key = std::tuple<uint32_t, uint32_t, uint32_t, bool>;
  struct Sandbox {
    uint32_t token = 0;
    std::set<uint32_t> pid_namespaces;
    std::set<uint64_t> cgroups;
    bool retiring = false;  // unwatched; its counters go after the next poll
  };

  probes::KernelProbes probe_;
  std::map<std::string, Sandbox> sandboxes_;    // by sandbox id
  std::map<uint32_t, std::string> sandbox_of_;  // token -> sandbox id
  uint32_t next_token_ = 1;
  std::map<Key, uint64_t> seen_;          // the counts as last read
  std::map<Key, uint64_t> unsummarized_;  // counted since the last summary
  std::map<Key, nlohmann::json> detail_;  // one detail per key since the last summary
  int64_t summarized_at_ = 0;
  probes::AttemptLosses losses_seen_;
  uint64_t events_taken_ = 0;
  uint64_t events_reported_ = 0;
  uint64_t lifecycle_taken_ = 0;
  uint64_t lifecycle_reported_ = 0;
  uint64_t lifecycle_lost_seen_ = 0;
  uint64_t namespace_changes_ = 0;
  // The syscall tracepoints' events, by probe (probes::namespace_probe).
  std::map<std::string, uint64_t> syscall_taken_;
  std::map<std::string, uint64_t> syscall_reported_;
};

}  // namespace driftwatch::app
