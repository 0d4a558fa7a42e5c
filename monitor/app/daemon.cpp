#include "app/daemon.hpp"

// Boost 1.74's asio uses std::exchange without including <utility>.
#include <utility>

#include <glob.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>
#include <boost/asio.hpp>

#include "api/http_server.hpp"
#include "app/node_config.hpp"
#include "common/build_info.hpp"
#include "common/canonical_json.hpp"
#include "common/file_io.hpp"
#include "common/sha256.hpp"
#include "correlate/correlator.hpp"
#include "ingest/ingestor.hpp"
#include "ingest/journal.hpp"
#include "metrics/metrics.hpp"
#include "observe/capabilities.hpp"
#include "policy/policy.hpp"
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

// The capabilities the daemon keeps after startup: reading other users'
// /proc/PID/{ns,root,exe} needs CAP_SYS_PTRACE (ptrace access mode read),
// and looking up masked paths inside a sandbox's root and reading bundles
// and journals of other owners needs CAP_DAC_READ_SEARCH. Nothing else.
constexpr int kKeptCapabilities[] = {CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH};

struct Daemon {
  NodeConfig config;
  std::string config_sha256;
  asio::io_context io;
  std::unique_ptr<ingest::Ingestor> ingestor;
  policy::Policy policy;
  std::vector<std::unique_ptr<ingest::JournalTail>> journals;
  correlate::Correlator correlator;
  std::unique_ptr<metrics::Metrics> metrics;
  std::unique_ptr<api::HttpServer> http;
  std::unique_ptr<asio::thread_pool> pool;
  std::unique_ptr<asio::steady_timer> sweep_timer;
  std::unique_ptr<asio::steady_timer> journal_timer;
  std::unique_ptr<asio::signal_set> signals;
  bool sweep_running = false;
  bool sweep_requested = false;
  int64_t last_sweep = 0;
  int64_t boot = boot_time();
  std::vector<std::string> kept_capabilities;
  bool stopping = false;
};

// ---- the sweep: discovery and sampling on the pool, results on the loop.

std::vector<correlate::SweepItem> run_sweep(
    const NodeConfig& config, const std::map<std::string, projection::Projection>& declared,
    int64_t boot) {
  observe::ProcReader proc("/proc");
  observe::CgroupReader cgroups("/sys/fs/cgroup");
  sandbox::Sampler sampler(proc, cgroups);
  sandbox::DiscoveryRoots roots;
  roots.runc_roots.assign(config.runc_roots.begin(), config.runc_roots.end());
  roots.crun_roots.assign(config.crun_roots.begin(), config.crun_roots.end());
  auto refs = sandbox::list_containers(roots, proc);
  for (const auto& pattern : config.cgroup_globs) {
    glob_t matches{};
    if (glob(pattern.c_str(), GLOB_ONLYDIR | GLOB_NOSORT, nullptr, &matches) == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) {
        auto ref = sandbox::sandbox_for_cgroup(proc, cgroups, matches.gl_pathv[i]);
        if (ref) refs.push_back(std::move(*ref));
      }
    }
    globfree(&matches);
  }
  auto table = sandbox::ProcessTable::scan(proc);
  const long ticks = sysconf(_SC_CLK_TCK);
  std::vector<correlate::SweepItem> items;
  for (const auto& ref : refs) {
    auto it = declared.find(ref.sandbox_id);
    auto scope =
        it != declared.end() ? projection::scope_for(it->second) : projection::default_scope();
    auto sample_start = std::chrono::steady_clock::now();
    auto observation = sampler.sample(ref, scope, &table);
    if (!observation) {
      if (!observation.error().vanished)
        spdlog::warn("sandbox {}: not sampled: {}", ref.sandbox_id, observation.error().message);
      continue;
    }
    auto observed = projection::observed_projection(*observation, scope);
    if (!observed) continue;
    correlate::SweepItem item;
    item.ref = ref;
    item.observation = std::move(*observation);
    item.observed = std::move(*observed);
    item.started_at = boot + static_cast<int64_t>(ref.first_process.start_time_ticks / ticks);
    item.sampled_at = unix_now();
    item.sample_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - sample_start).count();
    if (ref.bundle) {
      // The bundle is written by the runtime's caller on the host, never by
      // the sandbox; still, it is outside input: bounded and strictly parsed.
      auto text = read_file(*ref.bundle / "config.json", 4u << 20, "bundle config");
      auto doc = text ? parse_json(*text, "config.json") : std::unexpected(text.error());
      if (doc) {
        auto bytes = canonical_json(*doc);
        if (bytes) item.consumed_config_sha256 = sha256_hex(*bytes);
      }
    }
    items.push_back(std::move(item));
  }
  return items;
}

void schedule_sweep(Daemon& d, std::chrono::milliseconds delay);

void start_sweep(Daemon& d) {
  if (d.stopping) return;
  if (d.sweep_running) {
    d.sweep_requested = true;
    return;
  }
  d.sweep_running = true;
  std::map<std::string, projection::Projection> declared;
  for (const auto& [id, status] : d.correlator.statuses()) {
    if (auto p = correlate::declared_for(*d.ingestor, id)) declared.emplace(id, std::move(*p));
  }
  // Sandboxes not yet seen may already have launches: their ids come from
  // discovery, so declared projections are looked up again per sandbox id.
  asio::post(*d.pool, [&d, declared = std::move(declared)]() mutable {
    auto items = run_sweep(d.config, declared, d.boot);
    asio::post(d.io, [&d, items = std::move(items)]() mutable {
      // A sandbox seen for the first time was sampled with the default scope;
      // if it has a launch, sample it again right away with the right one.
      bool rescope = false;
      for (const auto& item : items)
        if (!d.correlator.find(item.ref.sandbox_id) &&
            correlate::declared_for(*d.ingestor, item.ref.sandbox_id))
          rescope = true;
      int64_t now = unix_now();
      auto previous = d.correlator.statuses();
      d.correlator.apply_sweep(items, *d.ingestor, d.policy, now,
                               d.config.unattested_grace_seconds);
      d.last_sweep = now;
      for (const auto& item : items) d.metrics->observe_sample_duration(item.sample_seconds);
      d.metrics->update_sandboxes(previous, d.correlator.statuses(), now);
      d.metrics->set_last_sweep(now);
      d.sweep_running = false;
      if (d.sweep_requested || rescope) {
        d.sweep_requested = false;
        start_sweep(d);
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

// ---- ingestion: HTTP and journals share one path.

ingest::IngestOutcome ingest_envelope(Daemon& d, std::string_view bytes,
                                      std::optional<ingest::EnvelopeKind> kind,
                                      std::string_view source) {
  auto outcome = d.ingestor->ingest(bytes, kind, unix_now());
  d.metrics->count_ingest(outcome.kind.value_or(kind.value_or(ingest::EnvelopeKind::launch)),
                          outcome.result);
  if (outcome.result == ingest::IngestResult::accepted) {
    spdlog::info("{}: accepted {}", source, outcome.id);
    start_sweep(d);
  } else if (outcome.result == ingest::IngestResult::duplicate) {
    spdlog::info("{}: duplicate {}", source, outcome.id);
  } else {
    spdlog::warn("{}: {}: {}", source, ingest::to_string(outcome.result), outcome.reason);
  }
  return outcome;
}

api::HttpResponse ingest_response(const ingest::IngestOutcome& outcome) {
  json body{{"result", ingest::to_string(outcome.result)}};
  if (outcome.result == ingest::IngestResult::accepted) body["id"] = outcome.id;
  if (outcome.result != ingest::IngestResult::accepted &&
      outcome.result != ingest::IngestResult::duplicate)
    body["reason"] = outcome.reason;
  // Verified but not stored (disk full, say): 503, so the sender retries.
  int status = outcome.not_durable ? 503 : ingest::http_status(outcome.result);
  return {status, "application/json", body.dump()};
}

void poll_journals(Daemon& d) {
  for (auto& tail : d.journals) {
    auto lines = tail->poll();
    if (!lines) {
      spdlog::warn("journal {}: {}", tail->path().string(), lines.error().message);
      continue;
    }
    if (lines->empty()) continue;
    for (const auto& line : *lines) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      ingest_envelope(d, line, std::nullopt, "journal " + tail->path().string());
    }
    // The offset moves on only after every line's outcome is durable.
    if (auto committed = tail->commit(); !committed)
      spdlog::error("journal {}: offset not saved: {}", tail->path().string(),
                    committed.error().message);
  }
}

void schedule_journals(Daemon& d) {
  d.journal_timer->expires_after(std::chrono::milliseconds(500));
  d.journal_timer->async_wait([&d](const boost::system::error_code& ec) {
    if (ec || d.stopping) return;
    poll_journals(d);
    schedule_journals(d);
  });
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
  return json{{"status", "ok"},
              {"node", d.config.node_name},
              {"version", build_version()},
              {"revision", build_revision()},
              {"config_sha256", d.config_sha256},
              {"trust_keys", d.ingestor->trust().size()},
              {"policy", d.policy.name},
              {"last_sweep", d.last_sweep ? json(ingest::format_rfc3339(d.last_sweep)) : json()},
              {"sandboxes", verdicts},
              {"ingest", ingest},
              {"capabilities", d.kept_capabilities}};
}

void add_routes(Daemon& d) {
  auto& http = *d.http;
  http.route("GET", "/healthz", [&d](const api::HttpRequest&) {
    return api::HttpResponse{200, "application/json", healthz(d).dump()};
  });
  http.route("GET", "/metrics", [&d](const api::HttpRequest&) {
    return api::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                             d.metrics->serialize()};
  });
  http.route("GET", "/v1/sandboxes", [&d](const api::HttpRequest&) {
    json list = json::array();
    for (const auto& [id, status] : d.correlator.statuses())
      list.push_back(correlate::to_json(status));
    return api::HttpResponse{200, "application/json",
                             list.dump(-1, ' ', false, json::error_handler_t::replace)};
  });
  http.route("GET", "/v1/sandboxes/", [&d](const api::HttpRequest& request) {
    std::string id = request.path.substr(std::string("/v1/sandboxes/").size());
    const auto* status = d.correlator.find(id);
    if (!status)
      return api::HttpResponse{404, "application/json",
                               json{{"error", "no sandbox '" + id + "' on this node"}}.dump(
                                   -1, ' ', false, json::error_handler_t::replace)};
    return api::HttpResponse{
        200, "application/json",
        correlate::to_json(*status).dump(-1, ' ', false, json::error_handler_t::replace)};
  });
  auto ingest_route = [&d](ingest::EnvelopeKind kind, std::string source) {
    return [&d, kind, source](const api::HttpRequest& request) {
      if (request.body_too_large) {
        auto outcome = d.ingestor->reject_too_large(kind, request.declared_length);
        d.metrics->count_ingest(kind, outcome.result);
        spdlog::warn("{}: too_large: {}", source, outcome.reason);
        return ingest_response(outcome);
      }
      return ingest_response(ingest_envelope(d, request.body, kind, source));
    };
  };
  http.route("POST", "/v1/launch-events",
             ingest_route(ingest::EnvelopeKind::launch, "POST /v1/launch-events"));
  http.route("POST", "/v1/grants", ingest_route(ingest::EnvelopeKind::grant, "POST /v1/grants"));
}

// ---- startup steps, in order. Each depends on the ones above it: the
// state dir before the ingestor (its log lives there), trust and policy
// before anything is ingested or judged, the HTTP port before privileges are
// dropped (a low port would need CAP_NET_BIND_SERVICE), the loops last.

using Step = std::function<Result<void>(Daemon&)>;

Result<void> prepare_state_dir(Daemon& d) {
  std::error_code ec;
  fs::create_directories(d.config.state_dir / "journals", ec);
  if (ec) return fail("cannot create ", d.config.state_dir.string(), ": ", ec.message());
  fs::permissions(d.config.state_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  return {};
}

Result<void> load_trust(Daemon& d) {
  ingest::TrustStore trust;
  std::error_code ec;
  if (!fs::exists(d.config.trust, ec)) {
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
  d.ingestor = std::make_unique<ingest::Ingestor>(std::move(trust), options, d.config.state_dir);
  return {};
}

Result<void> load_node_policy(Daemon& d) {
  DW_TRY(policy, policy::load_policy(d.config.policy));
  d.policy = std::move(policy);
  spdlog::info("policy: {} ({} rules)", d.policy.name, d.policy.rules.size());
  return {};
}

Result<void> restore_ingest(Daemon& d) {
  DW_TRY(restored, d.ingestor->restore());
  spdlog::info("restored {} accepted launch events and grants", restored);
  return {};
}

Result<void> open_journals(Daemon& d) {
  for (const auto& journal : d.config.launch_journals) {
    std::string key = sha256_hex(fs::absolute(journal).lexically_normal().string()).substr(0, 16);
    d.journals.push_back(std::make_unique<ingest::JournalTail>(
        journal, d.config.state_dir / "journals" / (key + ".offset")));
  }
  return {};
}

Result<void> start_http(Daemon& d) {
  d.http = std::make_unique<api::HttpServer>(d.io);
  add_routes(d);
  if (auto listening = d.http->listen(d.config.listen); !listening)
    return std::unexpected(listening.error());
  spdlog::info("listening on {} (port {})", d.config.listen, d.http->port());
  return {};
}

Result<void> drop_privileges(Daemon& d) {
  if (geteuid() != 0) {
    spdlog::warn("not running as root: other users' sandboxes cannot be sampled");
    return {};
  }
  uint64_t keep = 0;
  for (int cap : kKeptCapabilities) keep |= 1ull << cap;
  // No exec'd helper may regain what is dropped here.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return fail("cannot set no_new_privs: ", std::strerror(errno));
  for (int cap = 0; cap <= observe::kLastCapability; ++cap) {
    if (keep & (1ull << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL)
      return fail("cannot drop ", observe::capability_name(cap),
                  " from the bounding set: ", std::strerror(errno));
  }
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(keep);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(keep >> 32);
  if (syscall(SYS_capset, &header, data) != 0)
    return fail("cannot drop capabilities: ", std::strerror(errno));
  d.kept_capabilities = observe::capability_names(keep);
  spdlog::info("dropped every capability but {}", fmt::join(d.kept_capabilities, ", "));
  return {};
}

Result<void> start_loops(Daemon& d) {
  d.pool = std::make_unique<asio::thread_pool>(1);
  d.sweep_timer = std::make_unique<asio::steady_timer>(d.io);
  d.journal_timer = std::make_unique<asio::steady_timer>(d.io);
  d.signals = std::make_unique<asio::signal_set>(d.io, SIGTERM, SIGINT);
  d.signals->async_wait([&d](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    spdlog::info("signal {}: stopping", signal);
    d.stopping = true;
    if (d.http) d.http->stop();
    d.sweep_timer->cancel();
    d.journal_timer->cancel();
    d.io.stop();
  });
  poll_journals(d);
  schedule_journals(d);
  schedule_sweep(d, std::chrono::milliseconds(0));
  return {};
}

}  // namespace

int cmd_run(const std::optional<fs::path>& config_path) {
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %l %v", spdlog::pattern_time_type::utc);
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
      {"prepare_state_dir", prepare_state_dir}, {"load_trust", load_trust},
      {"load_policy", load_node_policy},        {"restore_ingest", restore_ingest},
      {"open_journals", open_journals},         {"start_http", start_http},
      {"drop_privileges", drop_privileges},     {"start_loops", start_loops},
  };
  int exit_code = 0;
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
    spdlog::info("running");
    d.io.run();
  }

  // Teardown, always, in reverse dependency order.
  d.stopping = true;
  if (d.http) d.http->stop();
  if (d.sweep_timer) d.sweep_timer->cancel();
  if (d.journal_timer) d.journal_timer->cancel();
  if (d.pool) d.pool->join();
  for (auto& tail : d.journals) (void)tail->commit();
  spdlog::info("stopped");
  return exit_code;
}

}  // namespace driftwatch::app
