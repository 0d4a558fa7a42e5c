#include "app/daemon.hpp"

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <glob.h>
#include <linux/capability.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>

#include "api/http_server.hpp"
#include "api/routes.hpp"
#include "app/attempt_watch.hpp"
#include "app/confine.hpp"
#include "app/keys.hpp"
#include "app/node_config.hpp"
#include "app/runtime_setup.hpp"
#include "app/sampler_process.hpp"
#include "common/build_info.hpp"
#include "common/canonical_json.hpp"
#include "common/durable_writer.hpp"
#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "correlate/correlator.hpp"
#include "correlate/sweep.hpp"
#include "evidence/entries.hpp"
#include "evidence/log.hpp"
#include "evidence/proof.hpp"
#include "evidence/restore.hpp"
#include "ingest/ingestor.hpp"
#include "ingest/journal.hpp"
#include "ingest/legacy_store.hpp"
#include "metrics/metrics.hpp"
#include "observe/capabilities.hpp"
#include "policy/policy.hpp"
#include "probes/change_notify.hpp"
#include "sandbox/sampler.hpp"

namespace driftwatch::app {
namespace {

namespace asio = boost::asio;
namespace fs = std::filesystem;
using nlohmann::json;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Boot time (btime in /proc/stat), to turn a process's start ticks into a
// wall-clock time that is the same on every restart of the monitor.
int64_t boot_time() {
  std::ifstream stat("/proc/stat");
  std::string key;
  int64_t value = 0;
  while (stat >> key) {
    if (key == "btime" && stat >> value) return value;
    stat.ignore(1 << 16, '\n');
  }
  return 0;
}

// The capabilities the daemon's three processes keep after startup, and why:
// kFrontCapabilities, kSamplerCapabilities and kProcPeerCapabilities in
// app/confine.hpp, next to the code that keeps exactly those.

// A launch journal and whether a batch of its lines is still being ingested
// (the next poll waits for it, so lines are committed in order).
struct Journal {
  std::unique_ptr<ingest::JournalTail> tail;
  // Its absolute path: its name in journal_position entries.
  std::string name;
  // The position last handed to the writer in a journal_position entry.
  std::optional<ingest::JournalTail::Position> recorded;
  bool busy = false;
  // The error of the last poll: a refused journal is logged once when it
  // starts failing (and when it recovers), not every half second.
  std::string last_error;
};

// What the writer thread makes durable in one batch with others: evidence
// entries (and their blobs), and a job that runs on the writer thread after
// the batch is durable (a checkpoint, a proof: the evidence log belongs to
// that thread).
struct DurableRecord {
  std::vector<evidence::Pending> entries;
  std::function<void(evidence::Log&)> job;
};
using Writer = BatchWriter<DurableRecord>;

// Heartbeat observations of every live sandbox, this often (seconds), so the
// log shows a sandbox kept its state, not only when it changed.
constexpr int64_t kHeartbeatSeconds = 300;
// A `recovered` entry lists at most this many envelopes it could not restore.
constexpr size_t kMaxListedRecoveries = 50;
// Denied attempts become evidence entries this often (seconds), one per
// sandbox, kind and capability with the exact count.
constexpr int64_t kAttemptSummarySeconds = 10;
// Details of denied attempts the probe sends per sandbox and second at most.
constexpr uint32_t kProbeEventsPerSecond = 100;

struct Daemon {
  NodeConfig config;
  std::string config_sha256;
  std::string binary_sha256;
  asio::io_context io;
  std::unique_ptr<ingest::Ingestor> ingestor;
  // The evidence log: the writer thread's once it runs.
  std::unique_ptr<evidence::Log> evidence;
  // Declared after `io`, so it is destroyed (its thread joined) first.
  std::unique_ptr<Writer> writer;
  policy::Policy policy;
  std::vector<Journal> journals;
  // What restore_ingest found, for /healthz.
  json restore_summary;
  // The writer thread's: the log index of every accepted entry whose
  // envelope may still be held, by envelope sha256 (the restore point's
  // list). The loop hands over what the ingestor forgets (`forgotten`),
  // and the next restore point drops it.
  std::map<std::string, uint64_t, std::less<>> accepted_index;
  // The writer thread's too: the index of each journal's last
  // journal_position entry (the restore point's "positions").
  std::map<std::string, uint64_t> position_index;
  std::vector<std::string> forgotten;
  // The process that reads /proc and the runtimes' state for the sweep; the
  // pool's thread talks to it (app/sampler_process.hpp).
  std::unique_ptr<SamplerProcess> sampler;
  std::optional<ConfineReport> confinement;
  correlate::Correlator correlator;
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<api::HttpServer> http;
  std::unique_ptr<asio::thread_pool> pool;
  // Reads evidence files too large for the loop (GET /evidence/: entry
  // bundles, blobs), on a thread of its own: a cold disk delays those
  // answers, never the loop or a sweep.
  std::unique_ptr<asio::thread_pool> files;
  std::unique_ptr<asio::steady_timer> sweep_timer;
  std::unique_ptr<asio::steady_timer> journal_timer;
  std::unique_ptr<asio::steady_timer> checkpoint_timer;
  // The escalation-attempt probe, when it loaded (app/attempt_watch.hpp),
  // its ring buffer on the loop and its poll timer; else why not.
  std::optional<AttemptWatch> attempts;
  std::string probes_note;
  /// What is watched (each engine's roots, and whether they are there),
  /// read before confinement; said once when the daemon runs.
  std::string watching;
  std::unique_ptr<asio::posix::stream_descriptor> attempt_events;
  std::unique_ptr<asio::steady_timer> attempt_timer;
  // Change notifications (probes/change_notify.hpp): writes to watched
  // sandboxes' cgroup files and new sandboxes, on the loop; else why not.
  std::optional<probes::ChangeNotify> changes;
  std::string changes_note = "not started";
  std::unique_ptr<asio::posix::stream_descriptor> change_events;
  // Cgroup directories already warned about (once each).
  std::set<std::string> unwatchable;
  int64_t last_attempt_summary = 0;
  // Probe-triggered resamples in flight, by sandbox (probe_resample).
  struct ProbeResample {
    bool again = false;
    uint64_t earliest_ns = 0;        // the first event it answers, CLOCK_MONOTONIC
    uint64_t again_ns = UINT64_MAX;  // the first event that came meanwhile
    // The times of the events that came meanwhile, the first
    // kMeanwhileKept of them (for the latency's origin).
    std::vector<uint64_t> meanwhile_ns;
  };
  static constexpr size_t kMeanwhileKept = 64;
  std::map<std::string, ProbeResample> probe_resamples;
  int64_t last_heartbeat = 0;
  std::string stop_reason = "stopped";
  std::unique_ptr<asio::signal_set> signals;
  bool sweep_running = false;
  bool sweep_requested = false;
  int64_t last_sweep = 0;
  int64_t boot = boot_time();
  bool stopping = false;
  int exit_code = 0;
};

// The sampler process cannot be used any more: the daemon stops, loudly, and
// its service manager starts it again (with a new sampler). Runs on the loop.
void sampler_failed(Daemon& d, const std::string& why) {
  if (d.stopping) return;
  spdlog::critical("{}; stopping, as nothing can be sampled any more", why);
  d.exit_code = 1;
  d.stop_reason = why;
  d.stopping = true;
  if (d.http) d.http->stop();
  d.io.stop();
}

// ---- the sweep: discovery and sampling on the pool, results on the loop.

correlate::SweepOptions sweep_options(const Daemon& d) {
  correlate::SweepOptions options;
  options.roots.runc_roots.assign(d.config.runc_roots.begin(), d.config.runc_roots.end());
  options.roots.crun_roots.assign(d.config.crun_roots.begin(), d.config.crun_roots.end());
  options.roots.containerd_roots = d.config.containerd_roots;
  options.roots.podman_storage = d.config.podman_storage;
  options.cgroup_globs = d.config.cgroup_globs;
  options.boot_time = d.boot;
  return options;
}

// Each verdict change is one log line (and, with the evidence log, one entry).
void log_changes(const std::vector<correlate::VerdictChange>& changes) {
  for (const auto& change : changes) {
    const auto& hash = change.status.observed_sha256;
    const std::string observed = hash ? hash->substr(0, 12) : "-";
    const size_t findings = change.status.findings.size();
    if (change.from)
      spdlog::info("sandbox {}: verdict {} -> {} (observed {}, {} findings)", change.sandbox_id,
                   *change.from, change.to, observed, findings);
    else
      spdlog::info("sandbox {}: discovered, verdict {} (observed {}, {} findings)",
                   change.sandbox_id, change.to, observed, findings);
  }
}

// ---- evidence: every entry goes through the writer (durable, in order).

// Writes `entries` to the evidence log, not waiting for them: a failure is
// logged loudly (what could not be recorded is named).
void record(Daemon& d, std::vector<evidence::Pending> entries) {
  if (entries.empty() || !d.writer) return;
  std::string types;
  for (const auto& e : entries) types += (types.empty() ? "" : ", ") + e.entry.value("type", "?");
  DurableRecord r;
  r.entries = std::move(entries);
  d.writer->submit(std::move(r), [types = std::move(types)](const Result<void>& written) {
    if (!written) spdlog::error("EVIDENCE NOT RECORDED: {}: {}", types, written.error().message);
  });
}

void record_changes(Daemon& d, const std::vector<correlate::VerdictChange>& changes, int64_t now) {
  std::vector<evidence::Pending> entries;
  for (const auto& change : changes)
    for (auto& entry : evidence::changed(now, change)) entries.push_back(std::move(entry));
  record(d, std::move(entries));
}

// Every live sandbox's state, every kHeartbeatSeconds.
void record_heartbeats(Daemon& d, int64_t now) {
  if (now - d.last_heartbeat < kHeartbeatSeconds) return;
  d.last_heartbeat = now;
  std::vector<evidence::Pending> entries;
  for (const auto& [id, status] : d.correlator.statuses())
    if (status.verdict != "gone") entries.push_back(evidence::heartbeat(now, status));
  record(d, std::move(entries));
}

// The gauges Prometheus witnesses the log with: the latest checkpoint's
// size and the first 6 bytes of its root.
void publish_checkpoint(Daemon& d, uint64_t size, const evidence::Hash& root) {
  uint64_t prefix = 0;
  for (int i = 0; i < 6; ++i) prefix = (prefix << 8) | root[i];
  d.metrics->set_evidence(size, prefix);
}

// A checkpoint of the log as it is (a no-op when it did not grow).
void checkpoint_now(Daemon& d) {
  if (!d.writer) return;
  auto signed_at = std::make_shared<std::optional<std::pair<uint64_t, evidence::Hash>>>();
  auto error = std::make_shared<std::string>();
  DurableRecord r;
  r.job = [&d, signed_at, error, forgotten = std::exchange(d.forgotten, {})](evidence::Log& log) {
    if (auto note = log.checkpoint(); note)
      *signed_at = std::pair{log.size(), log.root()};
    else
      *error = note.error().message;
    for (const auto& envelope : forgotten) d.accepted_index.erase(envelope);
    evidence::RestorePoint point;
    const auto head = log.head();
    point.tree_size = head.size;
    point.root = head.root;
    for (const auto& [envelope, index] : d.accepted_index) point.accepted.push_back(index);
    std::sort(point.accepted.begin(), point.accepted.end());
    for (const auto& [journal, index] : d.position_index) point.positions.push_back(index);
    std::sort(point.positions.begin(), point.positions.end());
    if (auto written = evidence::write_restore_point(d.config.state_dir, point); !written)
      *error += (error->empty() ? "" : "; ") + written.error().message;
  };
  d.writer->submit(std::move(r), [&d, signed_at, error](const Result<void>&) {
    if (*signed_at) publish_checkpoint(d, (*signed_at)->first, (*signed_at)->second);
    if (!error->empty())
      spdlog::error("evidence checkpoint or restore point not written: {}", *error);
  });
}

void schedule_checkpoints(Daemon& d) {
  d.checkpoint_timer->expires_after(std::chrono::seconds(d.config.checkpoint_interval_seconds));
  d.checkpoint_timer->async_wait([&d](const boost::system::error_code& ec) {
    if (ec || d.stopping) return;
    checkpoint_now(d);
    schedule_checkpoints(d);
  });
}

// Blobs, then the entries, numbered as they go in, in one append; the
// accepted ones join the restore point's list. On the writer thread, or at
// startup before it runs.
Result<void> append_entries(Daemon& d, std::vector<evidence::Pending>& entries) {
  evidence::Log& log = *d.evidence;
  std::vector<std::string> sealed;
  std::vector<std::pair<std::string, uint64_t>> accepted, positions;
  for (auto& pending : entries) {
    for (const auto& blob : pending.blobs)
      if (auto stored = log.put_blob(blob); !stored) return std::unexpected(stored.error());
    const uint64_t index = log.size() + sealed.size();
    if (evidence::is_accepted_entry(pending.entry))
      accepted.emplace_back(pending.entry.value("envelope_sha256", ""), index);
    if (pending.entry.value("type", "") == evidence::kJournalPositionType)
      positions.emplace_back(pending.entry.value("journal", ""), index);
    DW_TRY(bytes, evidence::seal(std::move(pending.entry), index));
    sealed.push_back(std::move(bytes));
  }
  if (sealed.empty()) return {};
  if (auto appended = log.append(sealed); !appended) return std::unexpected(appended.error());
  for (auto& [envelope, index] : accepted) d.accepted_index[std::move(envelope)] = index;
  for (auto& [journal, index] : positions) d.position_index[std::move(journal)] = index;
  return {};
}

// The batch sink, on the writer thread: blobs, then the entries (numbered
// here, so `seq` is the index), one flush; then the accepted store; then the
// jobs. Nothing is acknowledged before all of it is durable.
Result<void> write_batch(Daemon& d, std::vector<DurableRecord>& records) {
  evidence::Log& log = *d.evidence;
  std::vector<evidence::Pending> entries;
  for (auto& r : records)
    for (auto& pending : r.entries) entries.push_back(std::move(pending));
  if (auto appended = append_entries(d, entries); !appended) return appended;
  for (auto& r : records)
    if (r.job) r.job(log);
  return {};
}

// The probes watch what was just sampled (app/attempt_watch.hpp).
void track_for_probes(Daemon& d, const std::vector<correlate::SweepItem>& items) {
  if (!d.attempts) return;
  const auto& host = d.sampler->hello().host_namespaces.inodes;
  const auto pid_ns = host.find("pid");
  d.attempts->track(items, pid_ns == host.end() ? 0 : pid_ns->second, d.correlator.statuses());
}

// The change notifications watch the cgroup directories of what was just
// sampled (each v1 hierarchy's and the unified one; the root cgroup and
// named hierarchies never), and no longer those of sandboxes gone.
void track_for_changes(Daemon& d, const std::vector<correlate::SweepItem>& items) {
  if (!d.changes) return;
  static const observe::CgroupReader cgroupfs;
  for (const auto& item : items) {
    std::set<fs::path> dirs;
    const auto& cgroups = item.ref.cgroups;
    if (item.ref.membership == sandbox::Membership::cgroup) {
      if (cgroups.unified && *cgroups.unified != "/")
        dirs.insert(cgroupfs.unified_dir(*cgroups.unified));
      for (const auto& [controller, path] : cgroups.v1)
        if (path != "/" && !controller.empty() && !controller.starts_with("name="))
          dirs.insert(cgroupfs.v1_dir(controller, path));
    }
    for (const auto& problem : d.changes->watch_sandbox(item.ref.sandbox_id, dirs))
      if (d.unwatchable.insert(problem).second)
        spdlog::warn("sandbox {}: {}; its cgroup changes are seen by the sweep only",
                     item.ref.sandbox_id, problem);
  }
  for (const auto& id : d.changes->sandboxes()) {
    const auto* status = d.correlator.find(id);
    if (!status || (status->verdict && *status->verdict == "gone")) d.changes->unwatch_sandbox(id);
  }
}

void start_sweep(Daemon& d) {
  if (d.stopping) return;
  if (d.sweep_running) {
    d.sweep_requested = true;
    return;
  }
  d.sweep_running = true;
  correlate::DeclaredBySandbox declared;
  for (const auto& [id, status] : d.correlator.statuses()) {
    if (auto p = correlate::declared_for(*d.ingestor, id, status.names))
      declared.emplace(id, std::move(*p));
  }
  // Sandboxes not yet seen may already have launches: their ids come from
  // discovery, so declared projections are looked up again per sandbox id.
  asio::post(*d.pool, [&d, scopes = correlate::scopes_of(declared)]() mutable {
    // A sandbox that cannot be sampled is a problem line, and the others are
    // still swept; an error is the sampler process failing.
    auto result = d.sampler->sweep(scopes);
    if (!result) {
      asio::post(d.io, [&d, why = result.error().message] { sampler_failed(d, why); });
      return;
    }
    for (const auto& problem : result->problems) spdlog::warn("{}", problem);
    // Those caught in the runtime's setup or a member's exit, sampled again
    // when it is over (1 s for all of them at most).
    auto budget = std::chrono::milliseconds(1000);
    for (auto& item : result->items) {
      if (!in_transition(item)) continue;
      auto again =
          settle([&] { return d.sampler->sample_one(item.ref.sandbox_id, scopes); }, budget);
      if (again) item = std::move(*again);
    }
    asio::post(d.io, [&d, items = std::move(result->items)]() mutable {
      d.sweep_running = false;
      // A sandbox seen for the first time was sampled with the default scope;
      // if it has a launch, sample it again right away with the right one.
      bool rescope = false;
      for (const auto& item : items)
        if (!d.correlator.find(item.ref.sandbox_id) &&
            correlate::declared_for(*d.ingestor, item.ref.sandbox_id, item.ref.names))
          rescope = true;
      int64_t now = unix_now();
      try {
        const auto changes = d.correlator.apply_sweep(items, *d.ingestor, d.policy, now,
                                                      d.config.unattested_grace_seconds);
        log_changes(changes);
        record_changes(d, changes, now);
        record_heartbeats(d, now);
        d.metrics->apply_changes(changes, d.correlator.statuses(), now);
        track_for_probes(d, items);
        track_for_changes(d, items);
      } catch (const std::exception& e) {
        spdlog::error("sweep results not applied: internal error: {}", e.what());
      }
      // Memory stays bounded by what is live: launches of sandboxes that
      // are not running and that are older than the replay window leave
      // memory (never the store).
      const size_t forgotten = d.ingestor->forget(
          now - d.config.event_max_age_seconds,
          [&d](std::string_view sandbox_id) {
            const auto* status = d.correlator.find(sandbox_id);
            return status && status->verdict != "gone";
          },
          &d.forgotten);
      if (forgotten > 0)
        spdlog::info("dropped {} launches of sandboxes gone for longer than {} s from memory",
                     forgotten, d.config.event_max_age_seconds);
      d.last_sweep = now;
      for (const auto& item : items) d.metrics->observe_sample_duration(item.sample_seconds);
      d.metrics->set_last_sweep(now);
      if (d.sweep_requested || rescope) {
        d.sweep_requested = false;
        start_sweep(d);
      }
    });
  });
}

// Samples one sandbox now, outside the sweep: after a launch or grant for
// it is accepted (and, with the probes, on a privilege-relevant event in
// it). `trigger` names why, for the log. One that is gone or not found is
// left to the next full sweep, which is started at once.
//
// `done` gets whether it found the sandbox newly drifted, and when the
// runtime's own setup was last seen in it (settle; 0: it was not).
void resample(Daemon& d, const std::string& id_or_name, std::string trigger,
              std::function<void(bool drifted, uint64_t setup_seen_ns)> done = {}) {
  if (d.stopping) return;
  // A launch may name the sandbox by one of its names: sample it by its id
  // when it was seen before (the sampler finds a name it has not seen).
  const auto* known = d.correlator.find(id_or_name);
  const std::string sandbox_id = known ? known->sandbox_id : id_or_name;
  correlate::DeclaredBySandbox declared;
  if (auto p = correlate::declared_for(*d.ingestor, sandbox_id,
                                       known ? known->names : std::vector<std::string>{}))
    declared.emplace(sandbox_id, *p);
  asio::post(*d.pool, [&d, scopes = correlate::scopes_of(declared), sandbox_id,
                       trigger = std::move(trigger), done = std::move(done)]() mutable {
    auto budget = std::chrono::milliseconds(1000);
    uint64_t setup_seen_ns = 0;
    auto item =
        settle([&] { return d.sampler->sample_one(sandbox_id, scopes); }, budget, &setup_seen_ns);
    const auto broken = d.sampler->failure();
    asio::post(d.io, [&d, item = std::move(item), broken, sandbox_id, trigger, setup_seen_ns,
                      done = std::move(done)]() mutable {
      if (d.stopping) return;
      bool drifted = false;
      // Runs however this ends (nothing to sample, an error): the caller's
      // bookkeeping must not wait for a resample that is over.
      struct Finally {
        std::function<void(bool, uint64_t)>& done;
        bool& drifted;
        uint64_t setup_seen_ns;
        ~Finally() {
          if (done) done(drifted, setup_seen_ns);
        }
      } finally{done, drifted, setup_seen_ns};
      if (broken) return sampler_failed(d, "sampler process: " + *broken);
      if (!item) {
        spdlog::info("sandbox {}: resample ({}) found nothing to sample: {}; sweeping", sandbox_id,
                     trigger, item.error().message);
        start_sweep(d);
        return;
      }
      const int64_t now = unix_now();
      try {
        const auto changes = d.correlator.apply_sample(*item, *d.ingestor, d.policy, now,
                                                       d.config.unattested_grace_seconds);
        for (const auto& change : changes)
          drifted = drifted || (change.to == "drifted" && change.from != "drifted");
        track_for_probes(d, {*item});
        track_for_changes(d, {*item});
        log_changes(changes);
        record_changes(d, changes, now);
        d.metrics->apply_changes(changes, d.correlator.statuses(), now, false);
        d.metrics->observe_sample_duration(item->sample_seconds);
      } catch (const std::exception& e) {
        spdlog::error("sandbox {}: resample not applied: internal error: {}", sandbox_id, e.what());
      }
    });
  });
}

void schedule_sweep(Daemon& d, std::chrono::milliseconds delay) {
  d.sweep_timer->expires_after(delay);
  d.sweep_timer->async_wait([&d](const boost::system::error_code& ec) {
    if (ec || d.stopping) return;
    start_sweep(d);
    schedule_sweep(d, std::chrono::seconds(d.config.sweep_interval_seconds));
  });
}

// ---- ingestion: HTTP and journals share one path. Verification runs on
// the loop; the accepted store is written by the writer thread (group
// commit), and the answer waits for it, so nothing is acknowledged before
// it is durable and the loop never waits on the disk.

using api::IngestDone;

void report_outcome(Daemon& d, const ingest::IngestOutcome& outcome,
                    std::optional<ingest::EnvelopeKind> kind, const std::string& source) {
  d.metrics->count_ingest(outcome.kind.value_or(kind.value_or(ingest::EnvelopeKind::launch)),
                          outcome.result);
  if (outcome.result == ingest::IngestResult::accepted) {
    spdlog::info("{}: accepted {}", source, outcome.id);
    // The sandbox it is about is judged again now, not at the next sweep.
    const ingest::LaunchRecord* launch = nullptr;
    if (outcome.kind == ingest::EnvelopeKind::grant) {
      if (const auto* grant = d.ingestor->grant(outcome.id))
        launch = d.ingestor->launch(grant->launch_id);
    } else {
      launch = d.ingestor->launch(outcome.id);
    }
    if (launch)
      resample(d, launch->sandbox_id, "accepted " + outcome.id);
    else
      start_sweep(d);
  } else if (outcome.result == ingest::IngestResult::duplicate) {
    spdlog::info("{}: duplicate {}", source, outcome.id);
  } else if (outcome.result == ingest::IngestResult::unavailable) {
    spdlog::error("{}: unavailable: {}", source, outcome.reason);
  } else {
    spdlog::warn("{}: {}: {}", source, ingest::to_string(outcome.result), outcome.reason);
  }
}

// Whether a rejection is evidence: everything but a retry of what is
// already in the log (duplicate) or in flight (unavailable).
bool is_evidence(ingest::IngestResult result) {
  return result != ingest::IngestResult::accepted && result != ingest::IngestResult::duplicate &&
         result != ingest::IngestResult::unavailable;
}

void ingest_envelope(Daemon& d, std::string_view bytes, std::optional<ingest::EnvelopeKind> kind,
                     std::string source, IngestDone done) {
  const int64_t now = unix_now();
  auto begun = d.ingestor->begin(bytes, kind, now);
  if (auto* outcome = std::get_if<ingest::IngestOutcome>(&begun)) {
    report_outcome(d, *outcome, kind, source);
    if (!is_evidence(outcome->result) || !d.writer) {
      done(*outcome);
      return;
    }
    // A rejection is answered once its entry is durable (a journal line's
    // offset is committed after it, too); a failure to record it is logged
    // and does not change the answer.
    DurableRecord r;
    r.entries.push_back(
        evidence::rejected(now, outcome->kind.value_or(kind.value_or(ingest::EnvelopeKind::launch)),
                           *outcome, bytes, bytes.size(), source));
    d.writer->submit(std::move(r),
                     [outcome = *outcome, done = std::move(done)](const Result<void>& written) {
                       if (!written)
                         spdlog::error("EVIDENCE NOT RECORDED: a {} rejection: {}",
                                       ingest::to_string(outcome.result), written.error().message);
                       done(outcome);
                     });
    return;
  }
  auto pending =
      std::make_shared<ingest::PendingAccept>(std::move(std::get<ingest::PendingAccept>(begun)));
  DurableRecord r;
  r.entries.push_back(evidence::accepted(now, *pending, bytes, source));
  d.writer->submit(std::move(r), [&d, pending, kind, source = std::move(source),
                                  done = std::move(done)](const Result<void>& stored) {
    auto outcome = d.ingestor->finish(std::move(*pending), stored);
    report_outcome(d, outcome, kind, source);
    done(outcome);
  });
}

// One poll's lines go in order, pipelined through the writer (one fsync
// serves many lines), except that a grant waits until the lines before it
// are stored: it may name a launch from the line above. The offset is
// committed only through the last line before the first one that could not
// be made durable (`unavailable`), and the tail rewinds there, so that line
// and the ones after it are read again on the next poll.
struct JournalBatch {
  std::vector<ingest::JournalLine> lines;
  std::vector<bool> durable;
  size_t next = 0;         // the next line to ingest
  size_t outstanding = 0;  // ingested, outcome not final yet
  size_t finished = 0;
  bool pumping = false;  // inside pump_journal (outcomes may come synchronously)
  std::string source;
};

bool is_grant_envelope(std::string_view line) {
  auto envelope = ingest::parse_envelope(line);
  return envelope && envelope->payload_type == ingest::kGrantPayloadType;
}

evidence::JournalPosition position_of(const Journal& journal,
                                      const ingest::JournalTail::Position& p) {
  return {journal.name, static_cast<uint64_t>(p.inode), p.offset, p.preceding};
}

// The journal's committed position into the log (after the outcomes of the
// lines before it are durable), when it moved. A position that fails to be
// written only means those lines are read again after a restart: the
// accepted ones come out as duplicates.
void record_position(Daemon& d, Journal& journal) {
  const auto& position = journal.tail->committed_position();
  if (journal.recorded == position || !d.writer) return;
  journal.recorded = position;
  DurableRecord r;
  r.entries.push_back(
      evidence::journal_position(unix_now(), position_of(journal, position), "journal poll"));
  d.writer->submit(std::move(r), [name = journal.name](const Result<void>& written) {
    if (!written)
      spdlog::error(
          "journal {}: position not recorded ({}); its last lines are read again after "
          "a restart",
          name, written.error().message);
  });
}

void finish_journal_batch(Daemon& d, Journal& journal, const JournalBatch& batch) {
  journal.busy = false;
  auto& tail = *journal.tail;
  size_t good = 0;
  while (good < batch.durable.size() && batch.durable[good]) ++good;
  Result<void> committed;
  if (good == batch.lines.size()) {
    committed = tail.commit();
  } else {
    if (good > 0) committed = tail.commit_through(batch.lines[good - 1]);
    tail.reread_uncommitted();
    spdlog::error(
        "journal {}: a line could not be stored; its offset is not committed and it is read "
        "again on the next poll",
        tail.path().string());
  }
  if (!committed)
    spdlog::error("journal {}: offset not saved: {}", tail.path().string(),
                  committed.error().message);
  record_position(d, journal);
}

void pump_journal(Daemon& d, Journal& journal, const std::shared_ptr<JournalBatch>& batch) {
  batch->pumping = true;
  while (batch->next < batch->lines.size()) {
    if (batch->outstanding > 0 && is_grant_envelope(batch->lines[batch->next].text)) break;
    const size_t i = batch->next++;
    ++batch->outstanding;
    ingest_envelope(d, batch->lines[i].text, std::nullopt, batch->source,
                    [&d, &journal, batch, i](const ingest::IngestOutcome& outcome) {
                      batch->durable[i] = outcome.result != ingest::IngestResult::unavailable;
                      --batch->outstanding;
                      if (++batch->finished == batch->lines.size()) {
                        finish_journal_batch(d, journal, *batch);
                      } else if (batch->outstanding == 0 && !batch->pumping) {
                        pump_journal(d, journal, batch);
                      }
                    });
  }
  batch->pumping = false;
}

void poll_journal(Daemon& d, Journal& journal) {
  if (journal.busy) return;
  auto& tail = *journal.tail;
  auto polled = tail.poll_lines();
  if (!polled) {
    if (polled.error().message != journal.last_error)
      spdlog::warn("journal {}: {} (retried every poll; logged again when this changes)",
                   tail.path().string(), polled.error().message);
    journal.last_error = polled.error().message;
    return;
  }
  if (!journal.last_error.empty()) {
    spdlog::info("journal {}: readable again", tail.path().string());
    journal.last_error.clear();
  }
  if (polled->rewound) spdlog::warn("journal {}: {}", tail.path().string(), *polled->rewound);
  if (polled->lines.empty()) return;
  auto batch = std::make_shared<JournalBatch>();
  batch->lines = std::move(polled->lines);
  batch->durable.assign(batch->lines.size(), false);
  batch->source = "journal " + tail.path().string();
  journal.busy = true;
  pump_journal(d, journal, batch);
}

void poll_journals(Daemon& d) {
  for (auto& journal : d.journals) poll_journal(d, journal);
}

void schedule_journals(Daemon& d) {
  d.journal_timer->expires_after(std::chrono::milliseconds(500));
  d.journal_timer->async_wait([&d](const boost::system::error_code& ec) {
    if (ec || d.stopping) return;
    poll_journals(d);
    schedule_journals(d);
  });
}

// What the daemon keeps across its two processes: the front none, the
// sampler what its own confinement report says.
json sampler_capabilities(const Daemon& d) {
  if (!d.sampler) return json::array();
  const json& report = d.sampler->hello().confinement;
  const auto it = report.find("capabilities");
  return it != report.end() && it->is_array() ? *it : json::array();
}

json probes_health(const Daemon& d) {
  json probes = d.attempts ? d.attempts->health()
                           : json{{"cap_capable", {{"attached", false}, {"why", d.probes_note}}}};
  probes["inotify"] =
      d.changes ? d.changes->health() : json{{"attached", false}, {"why", d.changes_note}};
  return probes;
}

// Each engine: where its sandboxes are looked for, and how many are live.
json engines_health(const Daemon& d) {
  const auto paths = [](const std::vector<fs::path>& list) {
    json out = json::array();
    for (const auto& path : list) out.push_back(path.string());
    return out;
  };
  json runtime_roots = paths(d.config.runc_roots);
  for (const auto& root : paths(d.config.crun_roots)) runtime_roots.push_back(root);
  json engines{
      {"runc", {{"roots", paths(d.config.runc_roots)}}},
      {"crun", {{"roots", paths(d.config.crun_roots)}}},
      {"podman", {{"roots", runtime_roots}, {"storage", paths(d.config.podman_storage)}}},
      {"containerd", {{"roots", paths(d.config.containerd_roots)}}},
      {"cgroup", {{"globs", d.config.cgroup_globs}}},
  };
  for (auto& [name, engine] : engines.items()) engine["live"] = 0;
  for (const auto& [id, s] : d.correlator.statuses()) {
    if (s.verdict == "gone" || !engines.contains(s.engine)) continue;
    auto& live = engines[s.engine]["live"];
    live = live.get<int>() + 1;
  }
  return engines;
}

json healthz(const Daemon& d) {
  json ingest = json::object();
  for (auto kind : {ingest::EnvelopeKind::launch, ingest::EnvelopeKind::grant}) {
    json counts = json::object();
    for (auto result : ingest::kAllIngestResults)
      counts[ingest::to_string(result)] = d.ingestor->count(kind, result);
    ingest[kind == ingest::EnvelopeKind::launch ? "launch_events" : "grants"] = counts;
  }
  json verdicts = json::object();
  for (const char* v : correlate::kVerdicts) verdicts[v] = 0;
  for (const auto& [id, s] : d.correlator.statuses())
    if (s.verdict) verdicts[*s.verdict] = verdicts[*s.verdict].get<int>() + 1;
  // "degraded": running, but unable to do what it is for. Each reason says
  // what is missing and what follows from it.
  json reasons = json::array();
  const ingest::TrustStore& trust = d.ingestor->trust();
  if (trust.empty()) {
    reasons.push_back("no trust key is loaded (" + d.config.trust.string() +
                      " is missing or lists none): no launch event or grant can be accepted and "
                      "every sandbox ends unattested; add keys with driftwatch trust add and "
                      "restart");
  } else if (trust.count(ingest::TrustRole::control_plane) == 0) {
    reasons.push_back("no control_plane key in " + d.config.trust.string() +
                      ": no launch event can be accepted and every sandbox ends unattested");
  }
  return json{
      {"engines", engines_health(d)},
      {"status", reasons.empty() ? "ok" : "degraded"},
      {"reasons", reasons},
      {"node", d.config.node_name},
      {"host_namespaces", d.sampler ? json(d.sampler->hello().host_namespaces.source) : json()},
      {"user", d.confinement ? json{{"name", d.confinement->user.name},
                                    {"uid", d.confinement->user.uid},
                                    {"gid", d.confinement->user.gid}}
                             : json()},
      {"processes",
       {{"front", {{"pid", ::getpid()}}},
        {"sampler", {{"pid", d.sampler ? json(d.sampler->pid()) : json()}}},
        {"proc_peer", {{"pid", d.sampler ? json(d.sampler->hello().proc_peer_pid) : json()}}}}},
      {"confinement",
       {{"front", d.confinement ? to_json(*d.confinement) : json()},
        {"sampler", d.sampler ? d.sampler->hello().confinement : json()},
        {"proc_peer", d.sampler ? d.sampler->hello().proc_peer_confinement : json()}}},
      {"restore", d.restore_summary},
      {"probes", probes_health(d)},
      {"version", build_version()},
      {"revision", build_revision()},
      {"config_sha256", d.config_sha256},
      {"trust_keys", d.ingestor->trust().size()},
      {"held", {{"launches", d.ingestor->launches_held()}, {"grants", d.ingestor->grants_held()}}},
      {"policy", d.policy.name},
      {"last_sweep", d.last_sweep ? json(ingest::format_rfc3339(d.last_sweep)) : json()},
      {"sandboxes", verdicts},
      {"ingest", ingest},
      {"capabilities", sampler_capabilities(d)}};
}

api::DaemonView daemon_view(Daemon& d) {
  api::DaemonView view;
  view.health = [&d] { return healthz(d); };
  view.metrics = [&d] { return d.metrics->serialize(); };
  view.sandboxes = [&d] {
    json list = json::array();
    for (const auto& [id, status] : d.correlator.statuses())
      list.push_back(correlate::to_json(status));
    return list;
  };
  view.sandbox = [&d](std::string_view id) -> std::optional<json> {
    const auto* status = d.correlator.find(id);
    if (!status) return std::nullopt;
    json sandbox = correlate::to_json(*status);
    // What the probe counted denied in it since it was first watched (null:
    // no probe; the log's escalation_attempt entries have the history).
    sandbox["denied_attempts"] =
        d.attempts ? json(d.attempts->denied_of(status->sandbox_id)) : json();
    return sandbox;
  };
  view.ingest = [&d](ingest::EnvelopeKind kind, std::string_view body, std::string source,
                     api::IngestDone done) {
    ingest_envelope(d, body, kind, std::move(source), std::move(done));
  };
  view.reject_too_large = [&d](ingest::EnvelopeKind kind, std::optional<uint64_t> length) {
    auto outcome = d.ingestor->reject_too_large(kind, length);
    d.metrics->count_ingest(kind, outcome.result);
    spdlog::warn("POST {}: too_large: {}", ingest::to_string(kind), outcome.reason);
    record(d, {evidence::rejected(unix_now(), kind, outcome, {}, length.value_or(0),
                                  "POST " + ingest::to_string(kind))});
    return outcome;
  };
  view.evidence_proof = [&d](uint64_t index, api::ProofDone done) {
    if (!d.writer) return done(fail("the evidence log is not open"));
    auto proof = std::make_shared<Result<std::string>>(fail("not made"));
    DurableRecord r;
    r.job = [proof, index](evidence::Log& log) {
      if (!log.latest_checkpoint() || index >= log.size()) {
        *proof = fail("no entry ", std::to_string(index), " in the log's latest checkpoint");
        return;
      }
      *proof = evidence::make_tlog_proof(log, index);
    };
    d.writer->submit(std::move(r), [proof, done = std::move(done)](const Result<void>& ran) {
      if (!ran) return done(std::unexpected(ran.error()));
      done(std::move(*proof));
    });
  };
  view.evidence_dir = d.config.state_dir / "evidence";
  // The signer is fixed once open_evidence has run; the writer thread
  // never changes it.
  view.evidence_verifier = [&d]() -> std::optional<evidence::NoteVerifier> {
    if (!d.evidence) return std::nullopt;
    return d.evidence->verifier();
  };
  view.off_loop = [&d](std::function<api::HttpResponse()> work, api::Respond respond) {
    if (!d.files) return respond(work());  // no thread yet (nor a running loop)
    asio::post(*d.files, [&d, work = std::move(work), respond = std::move(respond)]() mutable {
      api::HttpResponse answer = work();
      asio::post(d.io, [respond = std::move(respond), answer = std::move(answer)]() mutable {
        respond(std::move(answer));
      });
    });
  };
  return view;
}

// ---- startup steps, in order. Each depends on the ones above it: the
// state dir before the ingestor (its log lives there), trust and policy
// before anything is ingested or judged, the HTTP port before privileges are
// dropped (a low port would need CAP_NET_BIND_SERVICE), privileges dropped
// before any thread starts (credentials and filters are per thread: the
// writer and the sweep pool must inherit them), the loops last.

using Step = std::function<Result<void>(Daemon&)>;

// Created 0700 for the daemon user when missing; an existing one is checked,
// never chmodded (a state_dir of /tmp is refused, not locked down).
// Subdirectories are made later by whoever writes there.
Result<void> prepare_state_dir(Daemon& d) {
  DW_TRY(user, user_to_run_as());
  return ensure_state_dir(d.config.state_dir, user);
}

// The sha256 of the running binary, for `monitor_started`: read now, while
// /proc/self/exe is within reach (Landlock takes it away).
Result<void> hash_binary(Daemon& d) {
  auto binary = read_file("/proc/self/exe", size_t{1} << 30);
  if (!binary) return fail("cannot hash the running binary: ", binary.error().message);
  d.binary_sha256 = sha256_hex(*binary);
  return {};
}

// The evidence log and the node key that signs its checkpoints, both in
// state_dir, opened as the daemon user after drop_privileges (the log
// starts a thread of its own). What open() had to cut is a `recovered`
// entry; then `monitor_started`.
Result<void> open_evidence(Daemon& d) {
  const std::string origin = "driftwatch/" + d.config.node_name;
  DW_TRY(signer, load_or_create_node_key(d.config.state_dir, origin));
  DW_TRY(log, evidence::Log::open(d.config.state_dir / "evidence", std::move(signer), origin));
  d.evidence = std::make_unique<evidence::Log>(std::move(log));
  const auto& recovery = d.evidence->recovery();
  std::vector<std::string> entries;
  const int64_t now = unix_now();
  if (!recovery.clean()) {
    spdlog::error("RECOVERY: evidence log: {}", recovery.summary());
    json details{{"cut_entries", recovery.cut_entries},
                 {"removed", recovery.removed},
                 {"rewritten", recovery.rewritten},
                 {"checkpoint_size", recovery.checkpoint_size},
                 {"size", recovery.size}};
    DW_TRY(bytes,
           evidence::seal(
               evidence::recovered(now, "evidence", recovery.summary(), std::move(details)).entry,
               d.evidence->size()));
    entries.push_back(std::move(bytes));
  }
  DW_TRY(started, evidence::seal(evidence::monitor_started(now, d.config.node_name, build_version(),
                                                           build_revision(), d.binary_sha256,
                                                           d.config_sha256, d.policy)
                                     .entry,
                                 d.evidence->size() + entries.size()));
  entries.push_back(std::move(started));
  if (auto appended = d.evidence->append(entries); !appended)
    return fail("evidence log ", d.evidence->dir().string(), ": ", appended.error().message);
  DW_TRY(note, d.evidence->checkpoint());
  (void)note;
  publish_checkpoint(d, d.evidence->size(), d.evidence->root());
  spdlog::info("evidence log {}: {} entries, checkpoint signed by {}", d.evidence->dir().string(),
               d.evidence->size(), origin);
  return {};
}

Result<void> load_trust(Daemon& d) {
  ingest::TrustStore trust;
  std::error_code ec;
  // symlink_status: a dangling link is not "no trust file" but an error
  // (TrustStore::load refuses links, naming it).
  if (!fs::exists(fs::symlink_status(d.config.trust, ec))) {
    spdlog::error(
        "NO TRUST FILE: {} does not exist. No launch event or grant can be accepted, and "
        "every sandbox on this node will end 'unattested'. Write the control-plane and operator "
        "public keys there (see driftwatch keygen).",
        d.config.trust.string());
  } else {
    DW_TRY(loaded, ingest::TrustStore::load(d.config.trust));
    trust = std::move(loaded);
    spdlog::info("trust: {} keys from {}", trust.size(), d.config.trust.string());
  }
  ingest::IngestOptions options;
  options.event_max_age_seconds = d.config.event_max_age_seconds;
  d.ingestor = std::make_unique<ingest::Ingestor>(std::move(trust), options);
  return {};
}

Result<void> load_node_policy(Daemon& d) {
  DW_TRY(policy, policy::load_policy(d.config.policy));
  d.policy = std::move(policy);
  std::vector<std::string> rule_ids;
  for (const auto& rule : d.policy.rules) rule_ids.push_back(rule.id);
  d.metrics->set_policy_rules(rule_ids);
  spdlog::info("policy: {} ({} rules)", d.policy.name, d.policy.rules.size());
  return {};
}

// Launches and grants come back from the evidence log (evidence/restore.hpp:
// the entries a restore point names and those after it). Nothing
// acknowledged may vanish silently: an entry whose envelope cannot be read
// back or no longer verifies is logged line by line, counted in /healthz,
// and recorded as a `recovered` entry. The accepted store of versions before
// the log (ingest/accepted.jsonl) is read once: what the log lacks is entered
// into it, and the file is renamed, never deleted.
Result<void> restore_ingest(Daemon& d) {
  evidence::Log& log = *d.evidence;
  DW_TRY(found, evidence::read_accepted(log, d.config.state_dir));
  if (!found.point_refused.empty())
    spdlog::warn("restore point not used: {}; reading the whole log", found.point_refused);
  DW_TRY(legacy, ingest::read_legacy_store(d.config.state_dir));
  std::vector<ingest::StoredEnvelope> stored = found.envelopes;
  std::set<std::string> in_log;
  for (const auto& e : found.envelopes) in_log.insert(sha256_hex(e.bytes));
  size_t legacy_from = stored.size();
  if (legacy)
    for (const auto& e : legacy->envelopes)
      if (!in_log.contains(sha256_hex(e.bytes))) stored.push_back(e);
  auto report = d.ingestor->restore(stored);
  for (size_t i = 0; i < found.envelopes.size(); ++i)
    if (d.ingestor->id_of(sha256_hex(found.envelopes[i].bytes)))
      d.accepted_index[sha256_hex(found.envelopes[i].bytes)] = found.indexes[i];

  const int64_t now = unix_now();
  std::vector<evidence::Pending> entries;
  std::vector<std::string> lost = found.problems;
  for (auto& why : report.skipped) lost.push_back(std::move(why));
  size_t migrated = 0;
  if (legacy) {
    for (const auto& why : legacy->skipped) lost.push_back(why);
    if (legacy->torn_bytes > 0)
      lost.push_back(legacy->path.string() + ": a torn last line of " +
                     std::to_string(legacy->torn_bytes) + " bytes (never acknowledged) not read");
    const std::string source = "migrated from " + legacy->path.string();
    for (size_t i = legacy_from; i < stored.size(); ++i) {
      const std::string envelope_sha256 = sha256_hex(stored[i].bytes);
      const auto id = d.ingestor->id_of(envelope_sha256);
      if (!id) continue;
      ingest::PendingAccept accept;
      accept.kind = stored[i].kind;
      accept.id = *id;
      accept.envelope_sha256 = envelope_sha256;
      if (accept.kind == ingest::EnvelopeKind::launch)
        accept.launch = *d.ingestor->launch(*id);
      else
        accept.grant = *d.ingestor->grant(*id);
      entries.push_back(evidence::accepted(now, accept, stored[i].bytes, source));
      ++migrated;
    }
  }
  for (const auto& why : lost) spdlog::error("RECOVERY: {}", why);
  if (!lost.empty()) {
    // An entry holds at most 60 KiB: the first kMaxListedRecoveries
    // sentences, each cut to 512 bytes, and the count; the daemon's log
    // above names every one.
    json listed = json::array();
    for (size_t i = 0; i < lost.size() && i < kMaxListedRecoveries; ++i) {
      size_t cut = std::min<size_t>(lost[i].size(), 512);
      while (cut > 0 && cut < lost[i].size() &&
             (static_cast<unsigned char>(lost[i][cut]) & 0xC0) == 0x80)
        --cut;  // not inside a UTF-8 sequence
      listed.push_back(lost[i].substr(0, cut));
    }
    entries.push_back(evidence::recovered(
        now, "accepted", std::to_string(lost.size()) + " accepted envelopes not restored",
        json{{"not_restored", std::move(listed)}, {"not_restored_total", lost.size()}}));
  }
  // Where each journal is read on: its last position in the log, or, the
  // first time, the offset file an earlier version kept (recorded in the
  // log now, the file renamed once that is durable).
  std::vector<fs::path> offset_files;
  for (auto& journal : d.journals) {
    const auto in_log = found.journals.find(journal.name);
    std::optional<ingest::JournalTail::Position> start;
    if (in_log != found.journals.end()) {
      const auto& p = in_log->second.second;
      start = ingest::JournalTail::Position{static_cast<ino_t>(p.inode), p.offset, p.preceding};
      d.position_index[journal.name] = in_log->second.first;
    }
    auto from_file = journal.tail->keep_position_in_log(start);
    if (!from_file) {
      spdlog::error(
          "journal {}: {}; reading it from its start (its accepted lines come out as "
          "duplicates)",
          journal.name, from_file.error().message);
      continue;
    }
    journal.recorded = journal.tail->committed_position();
    if (*from_file) {
      entries.push_back(
          evidence::journal_position(now, position_of(journal, journal.tail->committed_position()),
                                     "migrated from " + journal.tail->offset_file().string()));
      offset_files.push_back(journal.tail->offset_file());
    }
  }
  if (!entries.empty()) {
    if (auto appended = append_entries(d, entries); !appended)
      return fail("evidence log ", log.dir().string(), ": ", appended.error().message);
    DW_TRY(note, log.checkpoint());
    (void)note;
    publish_checkpoint(d, log.size(), log.root());
  }
  for (const auto& file : offset_files) {
    auto retired = file;
    retired += ".migrated";
    std::error_code ec;
    fs::rename(file, retired, ec);
    if (ec)
      spdlog::warn("{}: its position is in the evidence log, but it cannot be renamed: {}",
                   file.string(), ec.message());
    else
      spdlog::info("{}: its position is in the evidence log now; the file renamed to {}",
                   file.string(), retired.string());
  }
  if (legacy) {
    DW_TRY(retired, ingest::retire_legacy_store(*legacy));
    spdlog::warn("{}: {} accepted envelopes entered into the evidence log, the file renamed to {}",
                 legacy->path.string(), migrated, retired.string());
  }
  spdlog::info("restored {} accepted launch events and grants {}", report.restored, found.how);
  d.restore_summary = json{{"restored", report.restored},
                           {"how", found.how},
                           {"entries_read", found.entries_read},
                           {"not_restored", lost.size()},
                           {"migrated", migrated}};
  return {};
}

Result<void> start_writer(Daemon& d) {
  d.writer = std::make_unique<Writer>(
      d.io, [&d](std::vector<DurableRecord>& records) { return write_batch(d, records); });
  return {};
}

Result<void> open_journals(Daemon& d) {
  for (const auto& journal : d.config.launch_journals) {
    std::error_code ec;
    auto absolute = fs::absolute(journal, ec);
    if (ec) return fail("launch journal ", journal.string(), ": ", ec.message());
    std::string key = sha256_hex(absolute.lexically_normal().string()).substr(0, 16);
    Journal tail;
    tail.name = absolute.lexically_normal().string();
    tail.tail = std::make_unique<ingest::JournalTail>(
        journal, d.config.state_dir / "journals" / (key + ".offset"));
    d.journals.push_back(std::move(tail));
  }
  return {};
}

Result<void> start_http(Daemon& d) {
  d.http = std::make_unique<api::HttpServer>(d.io);
  api::add_routes(*d.http, daemon_view(d));
  if (auto listening = d.http->listen(d.config.listen); !listening)
    return std::unexpected(listening.error());
  spdlog::info("listening on {} (port {})", d.config.listen, d.http->port());
  return {};
}

// Each engine and where its sandboxes are looked for, each path marked
// present or absent (looked at now, before confinement), e.g. "runc
// /run/runc; crun /run/crun (absent); …": an engine whose roots are all
// absent has nothing on this node yet, and is still watched.
std::string describe_watching(const NodeConfig& config) {
  const auto where = [](const std::vector<fs::path>& paths) {
    std::string out;
    for (const auto& path : paths) {
      std::error_code ec;
      out += (out.empty() ? " " : ", ") + path.string() +
             (fs::is_directory(path, ec) ? "" : " (absent)");
    }
    return out.empty() ? std::string(" (no root configured)") : out;
  };
  std::string out = "runc" + where(config.runc_roots) + "; crun" + where(config.crun_roots) +
                    "; containerd" + where(config.containerd_roots) + "; podman storage" +
                    where(config.podman_storage);
  out += config.cgroup_globs.empty()
             ? "; no cgroup globs"
             : "; cgroup globs " + fmt::format("{}", fmt::join(config.cgroup_globs, ", "));
  return out;
}

// The sampler process, started from this binary while this process may
// still execute it, and confined by itself (role `sampler`) before it
// answers.
Result<void> start_sampler(Daemon& d) {
  d.watching = describe_watching(d.config);
  SamplerSetup setup;
  setup.options = sweep_options(d);
  DW_TRY(user, user_to_run_as());
  setup.user = std::move(user);
  setup.state_dir = d.config.state_dir;
  DW_TRY(sampler, SamplerProcess::start(setup));
  d.sampler = std::move(sampler);
  const auto& hello = d.sampler->hello();
  const json& report = hello.confinement;
  spdlog::info("sampler process {}: host namespaces {}'s; confined: {}", d.sampler->pid(),
               hello.host_namespaces.source == "pid1" ? "PID 1" : "the monitor",
               report.value("seccomp", std::string("?")) == "filter"
                   ? "capabilities " + sampler_capabilities(d).dump() +
                         ", a seccomp filter that denies every write"
                   : std::string("NOT CONFINED"));
  // The peer's report is the sampler's word (an object, nothing more
  // checked): each field is looked at for its type first.
  const json& peer = hello.proc_peer_confinement;
  auto field = [&](const char* key) {
    const auto it = peer.find(key);
    return it != peer.end() && it->is_string() ? it->get<std::string>() : std::string("?");
  };
  const auto peer_caps = peer.find("capabilities");
  spdlog::info("proc peer {} (the sampler's ptrace-mode reads): confined: {}", hello.proc_peer_pid,
               field("seccomp") == "filter" && peer_caps != peer.end()
                   ? "capabilities " + peer_caps->dump() + ", opens " + field("opens")
                   : std::string("NOT CONFINED"));
  return {};
}

// Everything in app/confine.hpp for the front: the daemon user,
// CAP_DAC_READ_SEARCH alone, a read-only mount namespace but for state_dir, no_new_privs,
// seccomp, Landlock.
// The eBPF probes, loaded while the process may still load them (CAP_BPF,
// CAP_PERFMON); after drop_privileges only the map and ring-buffer
// descriptors are used, and the seccomp filter allows bpf(2) for map
// commands alone. A probe that does not load leaves the daemon sampling,
// loudly, and `driftwatch_probe_attached` says so.
Result<void> load_probes(Daemon& d) {
  if (!d.config.probes) {
    d.probes_note = "switched off in the node config (\"probes\": false)";
    spdlog::warn("probes {}: sampling only", d.probes_note);
    return {};
  }
  auto loaded = AttemptWatch::load(kProbeEventsPerSecond, d.config.syscall_probes);
  if (!loaded) {
    d.probes_note = loaded.error().message;
    spdlog::warn("PROBES NOT ATTACHED: {}; sampling only", d.probes_note);
    return {};
  }
  d.attempts.emplace(std::move(*loaded));
  for (const auto& [probe, why] : d.attempts->attach_report()) {
    d.metrics->set_probe_attached(probe, why.empty());
    if (why.empty())
      spdlog::info("probe attached: {}", probe);
    else
      spdlog::warn("PROBE NOT ATTACHED: {}", why);
  }
  return {};
}

// A lifecycle event in a watched sandbox (exec, fork, a task moved into its
// cgroup): resample it now. One resample per sandbox runs at a time; events
// meanwhile ask for one more after it. When the resample finds the sandbox
// newly drifted, the time from the kernel's event is the probe's detection
// latency; when the runtime's own setup was still running in the sandbox
// (`runc exec`: runc's init enters it first and holds the runtime's
// capabilities until it executes the workload), from the workload's start
// instead: what drifted is the workload, which did not run before. Its
// start is the exec by which runc's init becomes the workload, after the
// last sample that still saw that setup began (that sample read the
// runtime's name, which the exec replaces): the first kernel event in the
// sandbox after that start is no later than it. Without one in yet, the
// time counts from that sample's start.
void probe_resample(Daemon& d, const std::string& sandbox_id, uint64_t event_ns,
                    const std::string& why) {
  auto [it, fresh] = d.probe_resamples.try_emplace(sandbox_id);
  if (!fresh) {
    it->second.again = true;
    it->second.again_ns = std::min(it->second.again_ns, event_ns);
    if (it->second.meanwhile_ns.size() < Daemon::kMeanwhileKept)
      it->second.meanwhile_ns.push_back(event_ns);
    return;
  }
  it->second.earliest_ns = event_ns;
  resample(d, sandbox_id, "probe: " + why, [&d, sandbox_id](bool drifted, uint64_t setup_ns) {
    auto pending = d.probe_resamples.find(sandbox_id);
    if (pending == d.probe_resamples.end()) return;
    if (drifted) {
      const uint64_t now_ns = monotonic_ns();
      uint64_t start_ns = setup_ns;
      if (setup_ns != 0) {
        uint64_t first_after = UINT64_MAX;
        for (uint64_t t : pending->second.meanwhile_ns)
          if (t > setup_ns) first_after = std::min(first_after, t);
        if (first_after != UINT64_MAX) start_ns = first_after;
      }
      const uint64_t origin = std::max(pending->second.earliest_ns, start_ns);
      if (now_ns > origin)
        d.metrics->observe_probe_latency(static_cast<double>(now_ns - origin) / 1e9);
    }
    const bool again = pending->second.again;
    const uint64_t again_ns = pending->second.again_ns;
    d.probe_resamples.erase(pending);
    if (again) probe_resample(d, sandbox_id, again_ns, "more events meanwhile");
  });
}

// What the change notifications saw: a written cgroup file resamples its
// sandbox (timed from when the loop read it), a new container is sampled
// alone, anything else that appeared starts a sweep.
void take_changes(Daemon& d) {
  auto changes = d.changes->take();
  if (!changes) {
    spdlog::warn("{}", changes.error().message);
    return;
  }
  const uint64_t now_ns = monotonic_ns();
  for (const auto& change : *changes) {
    switch (change.kind) {
      case probes::Change::Kind::sandbox:
        probe_resample(d, change.sandbox_id, now_ns, "cgroup file " + change.what + " written");
        break;
      case probes::Change::Kind::discovery:
        if (!change.sandbox_id.empty())
          resample(d, change.sandbox_id, "discovery: " + change.what);
        else
          start_sweep(d);
        break;
      case probes::Change::Kind::overflow:
        spdlog::warn("change notifications lost ({}): sweeping", change.what);
        start_sweep(d);
        break;
    }
  }
  if (!changes->empty()) d.metrics->count_probe_events("inotify", changes->size(), 0);
}

// Waits for the descriptor to be readable, then reads it. The wait is
// registered before the read, not after: the reactor watches descriptors
// edge-triggered and completes a wait only on an edge after it was
// registered, so what arrived between a read and the next wait would lie
// unread until something else arrived (measured: a containerd container's
// state file, written while the daemon armed its new namespace's watches,
// was not seen for as long as the test waited).
template <class Take>
void wait_then_take(asio::posix::stream_descriptor& descriptor, Take take) {
  descriptor.async_wait(asio::posix::stream_descriptor::wait_read,
                        [&descriptor, take](const boost::system::error_code& ec) {
                          if (!ec) wait_then_take(descriptor, take);
                        });
  take();
}

void wait_for_changes(Daemon& d) {
  wait_then_take(*d.change_events, [&d] {
    if (!d.stopping && d.changes) take_changes(d);
  });
}

// Change notifications on the loop, when the probes are on. The front keeps
// CAP_DAC_READ_SEARCH, which inotify_add_watch needs for runc's 0700 root.
void start_changes(Daemon& d) {
  if (!d.config.probes) {
    d.changes_note = "switched off in the node config (\"probes\": false)";
    d.metrics->set_probe_attached("inotify", false);
    return;
  }
  auto opened = probes::ChangeNotify::open();
  if (!opened) {
    d.changes_note = opened.error().message;
    spdlog::warn(
        "CHANGE NOTIFICATIONS OFF: {}; cgroup changes and new sandboxes wait for the sweep",
        d.changes_note);
    d.metrics->set_probe_attached("inotify", false);
    return;
  }
  d.changes.emplace(std::move(*opened));
  std::vector<fs::path> roots(d.config.runc_roots.begin(), d.config.runc_roots.end());
  roots.insert(roots.end(), d.config.crun_roots.begin(), d.config.crun_roots.end());
  for (const auto& problem :
       d.changes->watch_discovery(roots, d.config.cgroup_globs, d.config.containerd_roots))
    spdlog::warn("discovery by notification: {}", problem);
  const int fd = ::dup(d.changes->fd());
  if (fd < 0) {
    d.changes_note = std::string("cannot watch the notifications: ") + std::strerror(errno);
    spdlog::warn("CHANGE NOTIFICATIONS OFF: {}", d.changes_note);
    d.changes.reset();
    d.metrics->set_probe_attached("inotify", false);
    return;
  }
  d.change_events = std::make_unique<asio::posix::stream_descriptor>(d.io, fd);
  d.metrics->set_probe_attached("inotify", true);
  spdlog::info("probe attached: inotify (cgroup files of watched sandboxes, new sandboxes)");
  wait_for_changes(d);
}

void take_probe_events(Daemon& d) {
  d.attempts->take_events([&d](const std::string& id, const probes::LifecycleEvent& event) {
    probe_resample(d, id, event.time_ns, probes::describe(event));
  });
}

// Every second: the probe's counters into metrics; every
// kAttemptSummarySeconds, the denied attempts since into evidence.
void poll_attempts(Daemon& d, bool final) {
  if (!d.attempts) return;
  take_probe_events(d);
  const int64_t now = unix_now();
  const bool summarize = final || now - d.last_attempt_summary >= kAttemptSummarySeconds;
  if (summarize) d.last_attempt_summary = now;
  auto entries = d.attempts->poll(now, *d.metrics, summarize, [&d](const std::string& id) {
    const auto* status = d.correlator.find(id);
    return status ? status->launch_id : std::nullopt;
  });
  record(d, std::move(entries));
}

void schedule_attempts(Daemon& d) {
  d.attempt_timer->expires_after(std::chrono::seconds(1));
  d.attempt_timer->async_wait([&d](const boost::system::error_code& ec) {
    if (ec || d.stopping) return;
    poll_attempts(d, false);
    schedule_attempts(d);
  });
}

void wait_for_attempt_events(Daemon& d) {
  wait_then_take(*d.attempt_events, [&d] {
    if (!d.stopping && d.attempts) take_probe_events(d);
  });
}

Result<void> drop_privileges(Daemon& d) {
  DW_TRY(options, confine_options_for(d.config));
  options.allow_bpf_map_ops = d.attempts.has_value();
  DW_TRY(report, confine(options));
  if (!report.started_as_root)
    spdlog::warn("not running as root: other users' sandboxes cannot be sampled");
  d.confinement = report;
  spdlog::info(
      "confined: running as {} (uid {}, gid {}) with capabilities [{}], no_new_privs, a seccomp "
      "filter denying {} syscalls; mounts: {}; Landlock: {}",
      report.user.name, report.user.uid, report.user.gid, fmt::join(report.kept_capabilities, ", "),
      report.denied_syscalls.size(), report.mounts_note, report.landlock);
  return {};
}

Result<void> start_loops(Daemon& d) {
  d.pool = std::make_unique<asio::thread_pool>(1);
  d.files = std::make_unique<asio::thread_pool>(1);
  d.sweep_timer = std::make_unique<asio::steady_timer>(d.io);
  d.journal_timer = std::make_unique<asio::steady_timer>(d.io);
  d.checkpoint_timer = std::make_unique<asio::steady_timer>(d.io);
  d.signals = std::make_unique<asio::signal_set>(d.io, SIGTERM, SIGINT);
  {
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_UNBLOCK, &stop_signals, nullptr);
  }
  d.signals->async_wait([&d](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: stopping", signal);
    d.stop_reason = "signal " + std::to_string(signal);
    d.stopping = true;
    if (d.http) d.http->stop();
    d.sweep_timer->cancel();
    d.journal_timer->cancel();
    d.io.stop();
  });
  start_changes(d);
  poll_journals(d);
  schedule_journals(d);
  schedule_sweep(d, std::chrono::milliseconds(0));
  schedule_checkpoints(d);
  if (d.attempts) {
    d.attempt_timer = std::make_unique<asio::steady_timer>(d.io);
    d.last_attempt_summary = unix_now();
    schedule_attempts(d);
    const int fd = ::dup(d.attempts->events_fd());
    if (fd < 0) return fail("cannot watch the probe's ring buffer: ", std::strerror(errno));
    d.attempt_events = std::make_unique<asio::posix::stream_descriptor>(d.io, fd);
    wait_for_attempt_events(d);
  }
  return {};
}

}  // namespace

int cmd_run(const std::optional<fs::path>& config_path) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
  // SIGTERM and SIGINT wait (blocked, pending) until start_loops can handle
  // them: a stop during startup still runs the teardown. Every thread
  // started meanwhile inherits the mask, so they reach the loop's thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto loaded = load_node_config(config_path);
  if (!loaded) {
    std::cerr << "driftwatch: " << loaded.error().message << "\n";
    return 2;
  }
  Daemon d;
  d.config = std::move(*loaded);
  auto canonical = canonical_json(to_json(d.config));
  d.config_sha256 = canonical ? sha256_hex(*canonical) : "";
  d.metrics =
      std::make_unique<metrics::Metrics>(build_version(), build_revision(), d.config_sha256);
  spdlog::info("driftwatch {} ({}) starting on node {}, config sha256 {}", build_version(),
               build_revision(), d.config.node_name, d.config_sha256);

  const std::vector<std::pair<const char*, Step>> steps = {
      {"prepare_state_dir", prepare_state_dir},
      {"hash_binary", hash_binary},
      {"load_trust", load_trust},
      {"load_policy", load_node_policy},
      {"open_journals", open_journals},
      {"start_http", start_http},
      {"start_sampler", start_sampler},
      {"load_probes", load_probes},
      {"drop_privileges", drop_privileges},
      {"open_evidence", open_evidence},
      {"restore_ingest", restore_ingest},
      {"start_writer", start_writer},
      {"start_loops", start_loops},
  };
  int& exit_code = d.exit_code;
  for (const auto& [name, step] : steps) {
    auto result = step(d);
    if (!result) {
      spdlog::error("startup step {} failed: {}", name, result.error().message);
      std::cerr << "driftwatch: " << name << ": " << result.error().message << "\n";
      exit_code = 2;
      break;
    }
  }
  if (exit_code == 0) {
    // One line that says what this daemon does, for whoever reads the log
    // first: what it watches, how often, where its state is, where to ask.
    // Then "running" alone, the line scripts wait for.
    const std::string api = "http://" + d.config.listen.substr(0, d.config.listen.rfind(':')) +
                            ":" + std::to_string(d.http->port());
    spdlog::info(
        "watching {}; a full sweep every {} s{}; state dir {}; API {} (/healthz, /metrics, "
        "/v1/sandboxes, POST /v1/launch-events); {}",
        d.watching, d.config.sweep_interval_seconds,
        d.attempts ? ", and at once on probe events" : "", d.config.state_dir.string(), api,
        d.ingestor->trust().empty() ? "NO TRUST KEY: nothing can be attested"
                                    : std::to_string(d.ingestor->trust().size()) +
                                          " trust keys from " + d.config.trust.string());
    spdlog::info("running");
    try {
      d.io.run();
    } catch (const std::exception& e) {
      // Handlers return Results; an exception here is a bug. Stop cleanly
      // (teardown below) rather than terminate, and say so.
      spdlog::critical("internal error on the event loop: {}; stopping", e.what());
      exit_code = 1;
      d.stop_reason = std::string("internal error: ") + e.what();
    }
  }

  // Teardown, always, in reverse dependency order. A SIGTERM or SIGINT from
  // now on waits (blocked, pending) until the process has exited with its
  // own code: it must cut neither the last entry and checkpoint nor an exit
  // status that says why the daemon stopped.
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  d.stopping = true;
  if (d.http) d.http->stop();
  if (d.sweep_timer) d.sweep_timer->cancel();
  if (d.journal_timer) d.journal_timer->cancel();
  if (d.checkpoint_timer) d.checkpoint_timer->cancel();
  if (d.attempt_timer) d.attempt_timer->cancel();
  if (d.attempt_events) d.attempt_events->cancel();
  if (d.change_events) d.change_events->cancel();
  // A request in flight on the pool ends at once (end of stream) rather
  // than at the sampler's answer.
  if (d.sampler) d.sampler->shut_down();
  if (d.pool) d.pool->join();
  // Reads in flight finish; their answers go nowhere (connections closed).
  if (d.files) d.files->join();
  // The last entry and a checkpoint covering everything, then finish the
  // writes in flight and run their completions, so what was
  // stored is also committed (journal offsets); new work is refused by
  // `stopping`.
  // Journal batches in flight finish first (their last outcomes come
  // through the writer, which is still running), so their positions go
  // into the log too; at most 5 s.
  d.io.restart();
  try {
    for (const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
         d.writer && std::chrono::steady_clock::now() < until &&
         std::ranges::any_of(d.journals, [](const Journal& j) { return j.busy; });)
      d.io.run_one_for(std::chrono::milliseconds(50));
  } catch (const std::exception& e) {
    spdlog::error("teardown: {}", e.what());
  }
  if (d.writer) {
    poll_attempts(d, true);
    record(d, {evidence::monitor_stopped(unix_now(), d.stop_reason)});
    checkpoint_now(d);
  }
  d.writer.reset();
  d.io.restart();
  try {
    d.io.poll();
  } catch (const std::exception& e) {
    spdlog::error("teardown: {}", e.what());
  }
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace driftwatch::app
