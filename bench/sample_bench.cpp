// sample_bench: what sampling a sandbox costs, on real runc containers.
//
//   sample_bench [options]       measure and write Markdown tables
//   sample_bench hold [options]  start a one-process container, print its id,
//                                keep it until stdin closes (for bench/run.sh's
//                                hyperfine comparison)
//
// Measured: Sampler::sample + observed_projection of a one-process and a
// 100-process sandbox, in the daemon's mode (one ProcessTable per sweep) and
// in inspect's (each sample scans /proc); the one-process sample broken down
// by the kernel files it reads; and a sweep of many one-process sandboxes.
//
// Needs root. Every container and bundle it creates is deleted when it
// exits, fails or gets SIGINT/SIGTERM (the RAII guards of tests/support run
// while the exception unwinds); bench/run.sh's trap deletes what a SIGKILL
// leaves behind, by the id prefix.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "measure.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "projection/observed.hpp"
#include "projection/projection.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/identity.hpp"
#include "sandbox/sampler.hpp"
#include "support/oci_bundle.hpp"

namespace driftwatch::bench {
namespace {

using namespace std::chrono_literals;
using projection::ObservationScope;
using testing::Container;
using testing::OciBundle;
using testing::value_or_throw;

struct Options {
  std::string id_prefix;  // every container id starts with it
  int warmup = 200;
  int iterations = 2000;
  int repetitions = 7;
  int sandboxes = 200;
  int sweeps = 15;
  int parallel = 4;  // containers started or deleted at once
  std::string markdown_path;
};

void progress(const std::string& line) {
  std::cerr << "sample_bench: " << line << std::endl;
}

std::string number(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

// "12.3 (11.9–13.0)": median and range.
std::string with_range(const Stats& s, int decimals) {
  return number(s.median, decimals) + " (" + number(s.min, decimals) + "–" +
         number(s.max, decimals) + ")";
}

std::string percent(double share) {
  return number(100 * share, 0) + " %";
}

std::string percent(const std::optional<double>& share) {
  return share ? percent(*share) : "—";
}

void on_interrupt(int signo) {
  interrupted = true;
  // A second Ctrl-C kills at once; bench/run.sh's trap then deletes the
  // containers by their id prefix.
  signal(signo, SIG_DFL);
}

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: `hold`'s blocking read must return
  for (int signo : {SIGINT, SIGTERM, SIGHUP}) sigaction(signo, &action, nullptr);
}

template <class T>
T checked(Result<T> result, const std::string& what) {
  if (!result) throw std::runtime_error(what + " failed: " + result.error().message);
  return std::move(*result);
}

// Runs f(0..count-1) on `threads` threads; stops handing out work on the
// first exception or an interrupt and rethrows that exception after all
// threads have finished.
template <class F>
void parallel_for(int count, int threads, F f) {
  std::atomic<int> next{0};
  std::mutex mutex;
  std::exception_ptr failure;
  auto worker = [&] {
    for (;;) {
      {
        std::lock_guard lock(mutex);
        if (failure || interrupted) return;
      }
      const int i = next++;
      if (i >= count) return;
      try {
        f(i);
      } catch (...) {
        std::lock_guard lock(mutex);
        if (!failure) failure = std::current_exception();
      }
    }
  };
  std::vector<std::jthread> pool;
  for (int t = 0; t < std::max(1, threads); ++t) pool.emplace_back(worker);
  pool.clear();  // joins
  if (failure) std::rethrow_exception(failure);
  throw_if_interrupted();
}

/// Many runc containers from one bundle, started and deleted in parallel.
/// The destructor deletes every one still running, also while an exception
/// unwinds. Must not outlive the bundle.
class Fleet {
 public:
  explicit Fleet(int parallel) : parallel_(parallel) {}
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;
  ~Fleet() { remove_all(); }

  void start(const OciBundle& bundle, const std::vector<std::string>& ids) {
    containers_.resize(ids.size());
    std::atomic<int> started{0};
    const auto begin = std::chrono::steady_clock::now();
    parallel_for(static_cast<int>(ids.size()), parallel_, [&](int i) {
      containers_[i] = value_or_throw(Container::start("runc", bundle, ids[i]));
      const int n = ++started;
      if (n % 20 == 0 || n == static_cast<int>(ids.size())) {
        std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;
        progress("started " + std::to_string(n) + "/" + std::to_string(ids.size()) +
                 " containers (" + number(elapsed.count(), 1) + " s)");
      }
    });
  }

  void remove_all() noexcept {
    size_t running = 0;
    for (const auto& c : containers_) running += c.has_value();
    if (running == 0) return;
    progress("deleting " + std::to_string(running) + " containers");
    try {
      // Deletion must run even after an interrupt: no parallel_for here.
      std::atomic<size_t> next{0};
      std::vector<std::jthread> pool;
      for (int t = 0; t < std::max(1, parallel_); ++t) {
        pool.emplace_back([&] {
          for (size_t i; (i = next++) < containers_.size();) containers_[i].reset();
        });
      }
    } catch (const std::exception& e) {
      progress(std::string("parallel delete failed (") + e.what() + "); deleting one by one");
    }
    containers_.clear();  // whatever a failed thread start left
  }

 private:
  int parallel_;
  std::vector<std::optional<Container>> containers_;
};

/// The readers and scope every measurement shares: inspect's defaults.
struct Host {
  observe::ProcReader proc{"/proc"};
  observe::CgroupReader cgroups{"/sys/fs/cgroup"};
  sandbox::DiscoveryRoots roots;  // /run/runc and /run/crun
  ObservationScope scope = projection::default_scope();
  ObservationScope no_paths = [] {
    ObservationScope s = projection::default_scope();
    s.masked_candidates.clear();
    s.readonly_candidates.clear();
    return s;
  }();
  size_t path_candidates() const {
    return scope.masked_candidates.size() + scope.readonly_candidates.size();
  }
  size_t process_count() const { return proc.pids().size(); }
};

// One sample and its projection, as the daemon and inspect do it; throws
// unless every one of the sandbox's `expected_members` was read.
void sample_and_project(const sandbox::Sampler& sampler, const sandbox::SandboxRef& ref,
                        const ObservationScope& scope, const sandbox::ProcessTable* table,
                        size_t expected_members) {
  auto observation = checked(sampler.sample(ref, scope, table), "sample of " + ref.sandbox_id);
  if (observation.members.size() != expected_members) {
    throw std::runtime_error("sample of " + ref.sandbox_id + " found " +
                             std::to_string(observation.members.size()) + " members, expected " +
                             std::to_string(expected_members));
  }
  checked(projection::observed_projection(observation, scope),
          "observed_projection of " + ref.sandbox_id);
}

struct Row {
  std::string label;
  Timing timing;
};

// ---- one-process and 100-process sandboxes ----------------------------------

struct SingleResults {
  Row daemon;
  Row inspect;
  Row inspect_cli_work;
  size_t host_processes = 0;
  // Breakdown (µs per call, × calls per sample).
  struct Part {
    std::string label;
    std::string kernel_work;
    Timing timing;
    double per_sample = 1;  // calls per sample; 0 = informational, not summed
  };
  std::vector<Part> parts;
  Stats path_checks;  // CPU µs per sample: default scope minus no candidate paths
  Timing scan;
  double other_load = 0;  // cores busy with other work while measuring
  double stolen = 0;      // cores' worth of time stolen by the hypervisor
};

void round_progress(const std::string& what, int round, int rounds) {
  progress(what + ": round " + std::to_string(round + 1) + "/" + std::to_string(rounds));
}

SingleResults bench_one_process(const Options& opt, const Host& host) {
  progress("one-process sandbox: starting a runc container (sleep 3600)");
  OciBundle bundle = OciBundle::with_default_spec();
  Container container =
      value_or_throw(Container::start("runc", bundle, opt.id_prefix + "one-process"));
  auto ref = checked(sandbox::find_container(host.roots, container.id(), host.proc),
                     "find_container " + container.id());
  sandbox::Sampler sampler(host.proc, host.cgroups);
  const pid_t pid = ref.first_process.pid;
  const auto table = sandbox::ProcessTable::scan(host.proc);
  const auto membership = checked(host.proc.cgroup(pid), "read /proc/PID/cgroup");
  const auto observation = checked(sampler.sample(ref, host.scope, &table), "sample");
  const size_t hierarchies = (ref.cgroups.unified ? 1 : 0) + ref.cgroups.v1.size();

  // Every operation below runs in one interleaved suite, so that the parts
  // and the whole are timed under the same conditions.
  Suite suite(opt.warmup, opt.iterations, opt.repetitions);
  const size_t daemon = suite.add([&] { sample_and_project(sampler, ref, host.scope, &table, 1); });
  const size_t no_paths =
      suite.add([&] { sample_and_project(sampler, ref, host.no_paths, &table, 1); });
  const size_t inspect =
      suite.add([&] { sample_and_project(sampler, ref, host.scope, nullptr, 1); });
  const size_t inspect_cli = suite.add([&] {
    auto found = checked(sandbox::find_container(host.roots, container.id(), host.proc),
                         "find_container " + container.id());
    sandbox::Sampler fresh(host.proc, host.cgroups);
    sample_and_project(fresh, found, host.scope, nullptr, 1);
  });
  const size_t scan = suite.add([&] { sandbox::ProcessTable::scan(host.proc); });

  struct PartOp {
    std::string label;
    std::string kernel_work;
    size_t op;
    double per_sample;
  };
  std::vector<PartOp> parts;
  auto part = [&](std::string label, std::string kernel_work, double per_sample,
                  std::function<void()> op) {
    parts.push_back(
        {std::move(label), std::move(kernel_work), suite.add(std::move(op)), per_sample});
  };
  part("pin a process (PinnedProcess::pin + still_alive)",
       "pidfd_open, read /proc/PID/stat, poll, close; once for the sandbox, once for the member", 2,
       [&] {
         auto pinned = checked(sandbox::PinnedProcess::pin(host.proc, pid), "pin");
         if (!pinned.still_alive()) throw std::runtime_error("container process exited");
       });
  part("/proc/PID/status, read only (ProcReader::read)",
       "open, read, close (included in the next row)", 0,
       [&] { checked(host.proc.read(pid, "status"), "read status"); });
  part("/proc/PID/status, read + parse", "open, read, close", 1,
       [&] { checked(host.proc.status(pid), "status"); });
  part("8 namespace links", "8 × readlink /proc/PID/ns/*", 1, [&] {
    for (const char* kind : observe::kNamespaceKinds)
      checked(host.proc.namespace_inode(pid, kind), "namespace_inode");
  });
  part("/proc/PID/limits, read + parse", "open, read, close", 1,
       [&] { checked(host.proc.limits(pid), "limits"); });
  part("/proc/PID/cgroup, read + parse", "open, read, close", 1,
       [&] { checked(host.proc.cgroup(pid), "cgroup"); });
  part("cgroup limits (CgroupReader::limits)",
       "open, read, close of each limit file (memory, pids, cpu)", 1,
       [&] { checked(host.cgroups.limits(membership), "limits"); });
  part("attr/current, cmdline, exe", "2 × open, read, close; 1 readlink", 1, [&] {
    checked(host.proc.lsm_label(pid), "lsm_label");
    checked(host.proc.cmdline(pid), "cmdline");
    checked(host.proc.exe_path(pid), "exe_path");
  });
  part("membership (Sampler::members, shared table)",
       "cgroup.procs of " + std::to_string(hierarchies) + " hierarchies, readlink ns/pid", 1,
       [&] { checked(sampler.members(ref, &table), "members"); });
  // For a runc container every cgroup differs from PID 1's, so these are
  // exactly the cgroups members() lists.
  part("cgroup.procs alone (CgroupReader::procs)",
       std::to_string(hierarchies) + " × open, read, close (included in the row above)", 0,
       [&] { checked(host.cgroups.procs(ref.cgroups), "procs"); });
  part("observed_projection", "none (user space)", 1, [&] {
    checked(projection::observed_projection(observation, host.scope), "observed_projection");
  });

  SingleResults r;
  r.host_processes = host.process_count();
  const OtherLoad load;
  suite.run([&](int round) { round_progress("one-process sandbox", round, opt.repetitions); });
  r.other_load = load.cores();
  r.stolen = load.stolen_cores();

  r.daemon = {"daemon: sample + observed_projection, ProcessTable shared per sweep",
              suite.timing(daemon)};
  r.inspect = {"inspect: the same + its own /proc scan (" + std::to_string(r.host_processes) +
                   " host processes)",
               suite.timing(inspect)};
  r.inspect_cli_work = {
      "`inspect --oci` in-process: + find_container (state.json) + Sampler construction",
      suite.timing(inspect_cli)};
  for (const auto& p : parts)
    r.parts.push_back({p.label, p.kernel_work, suite.timing(p.op), p.per_sample});
  r.path_checks = suite.difference(daemon, no_paths);
  r.scan = suite.timing(scan);
  return r;
}

struct HundredResults {
  Row daemon;
  Row inspect;
  Row members;
  size_t members_count = 0;
  int iterations = 0;
  double other_load = 0;
  double stolen = 0;
};

HundredResults bench_hundred_processes(const Options& opt, const Host& host) {
  constexpr size_t kMembers = 100;
  progress("100-process sandbox: starting a runc container (sh + 99 × sleep 3600)");
  OciBundle bundle = OciBundle::with_default_spec();
  bundle.config()["process"]["args"] = {"sh", "-c",
                                        "for i in $(seq 99); do sleep 3600 & done; wait"};
  bundle.write_config();
  Container container =
      value_or_throw(Container::start("runc", bundle, opt.id_prefix + "hundred-processes"));
  auto ref = checked(sandbox::find_container(host.roots, container.id(), host.proc),
                     "find_container " + container.id());
  sandbox::Sampler sampler(host.proc, host.cgroups);

  const auto deadline = std::chrono::steady_clock::now() + 30s;
  for (;;) {
    throw_if_interrupted();
    const auto table = sandbox::ProcessTable::scan(host.proc);
    const size_t n = checked(sampler.members(ref, &table), "members").size();
    if (n == kMembers) break;
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error("container " + container.id() + " has " + std::to_string(n) +
                               " processes 30 s after start, expected " + std::to_string(kMembers) +
                               "; its log: " + container.log());
    }
    std::this_thread::sleep_for(50ms);
  }

  // A sample reads 100 members: a tenth of the iterations keeps the run short.
  HundredResults r;
  r.members_count = kMembers;
  r.iterations = std::max(10, opt.iterations / 10);
  Suite suite(std::max(2, opt.warmup / 10), r.iterations, opt.repetitions);
  const auto table = sandbox::ProcessTable::scan(host.proc);
  const size_t daemon =
      suite.add([&] { sample_and_project(sampler, ref, host.scope, &table, kMembers); });
  const size_t inspect =
      suite.add([&] { sample_and_project(sampler, ref, host.scope, nullptr, kMembers); });
  const size_t members = suite.add([&] { checked(sampler.members(ref, &table), "members"); });
  const OtherLoad load;
  suite.run([&](int round) { round_progress("100-process sandbox", round, opt.repetitions); });
  r.other_load = load.cores();
  r.stolen = load.stolen_cores();
  r.daemon = {"daemon", suite.timing(daemon)};
  r.inspect = {"inspect", suite.timing(inspect)};
  r.members = {"membership", suite.timing(members)};
  return r;
}

// ---- a sweep of many sandboxes -----------------------------------------------

struct SweepResults {
  int sandboxes = 0;
  size_t host_processes = 0;
  Timing full;
  Timing list;
  Timing scan;
  Timing samples;
  double setup_seconds = 0;
  double other_load = 0;
  double stolen = 0;
};

SweepResults bench_sweep(const Options& opt, const Host& host) {
  progress("sweep: starting " + std::to_string(opt.sandboxes) + " runc containers, " +
           std::to_string(opt.parallel) + " at a time");
  const auto begin = std::chrono::steady_clock::now();
  OciBundle bundle = OciBundle::with_default_spec();  // one rootfs, read-only, for all
  Fleet fleet(opt.parallel);
  std::vector<std::string> ids;
  for (int i = 0; i < opt.sandboxes; ++i)
    ids.push_back(opt.id_prefix + "sweep-" + std::to_string(i));
  fleet.start(bundle, ids);
  SweepResults r;
  r.setup_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();

  // runc containers only: another runtime's leftovers must not count.
  sandbox::DiscoveryRoots roots{.runc_roots = host.roots.runc_roots, .crun_roots = {}};
  const auto found = sandbox::list_containers(roots, host.proc);
  size_t ours = 0;
  for (const auto& ref : found) ours += ref.sandbox_id.starts_with(opt.id_prefix);
  if (ours != ids.size() || found.size() != ids.size()) {
    throw std::runtime_error("list_containers found " + std::to_string(found.size()) +
                             " runc containers, " + std::to_string(ours) + " of them ours; need " +
                             std::to_string(ids.size()) +
                             " and no others (delete foreign runc containers first)");
  }
  r.sandboxes = static_cast<int>(found.size());
  r.host_processes = host.process_count();
  sandbox::Sampler sampler(host.proc, host.cgroups);
  auto sweep_all = [&](const std::vector<sandbox::SandboxRef>& refs,
                       const sandbox::ProcessTable& table) {
    for (const auto& ref : refs) sample_and_project(sampler, ref, host.scope, &table, 1);
  };

  // One batch is one sweep; the parts run interleaved with the whole.
  Suite suite(2, 1, opt.sweeps);
  const size_t full = suite.add([&] {
    const auto refs = sandbox::list_containers(roots, host.proc);
    if (refs.size() != ids.size()) throw std::runtime_error("a sweep container is gone");
    const auto table = sandbox::ProcessTable::scan(host.proc);
    sweep_all(refs, table);
  });
  const size_t list = suite.add([&] { sandbox::list_containers(roots, host.proc); });
  const size_t scan = suite.add([&] { sandbox::ProcessTable::scan(host.proc); });
  const auto table = sandbox::ProcessTable::scan(host.proc);
  const size_t samples = suite.add([&] { sweep_all(found, table); });
  const OtherLoad load;
  suite.run([&](int round) { round_progress("sweep", round, opt.sweeps); });
  r.other_load = load.cores();
  r.stolen = load.stolen_cores();
  r.full = suite.timing(full);
  r.list = suite.timing(list);
  r.scan = suite.timing(scan);
  r.samples = suite.timing(samples);
  return r;  // the fleet deletes the containers, then the bundle goes
}

// ---- report -----------------------------------------------------------------

std::string report(const Options& opt, const Host& host, const SingleResults& one,
                   const HundredResults& hundred, const SweepResults& sweep) {
  std::ostringstream md;
  const auto& d = one.daemon.timing;
  md << "### Per sample\n\n"
     << "CPU time of the monitor process (CLOCK_PROCESS_CPUTIME_ID) per sample: median of "
     << opt.repetitions << " batches of " << opt.iterations
     << " samples (100-process sandbox: " << hundred.iterations
     << "), after a warm-up; (min–max) over the batches. The batches of every row of a table "
     << "(and of every part below) alternate round by round, so that drift hits all alike. "
     << "System share: kernel time / CPU time, from getrusage (— where the run was too short "
     << "for its tick-based split). Other processes kept " << number(one.other_load, 2)
     << " (one process) and " << number(hundred.other_load, 2)
     << " (100 processes) cores busy on average meanwhile; the hypervisor stole "
     << number(one.stolen, 2) << " and " << number(hundred.stolen, 2) << " cores.\n\n"
     << "| sandbox | mode | CPU µs per sample | wall µs | system share |\n"
     << "| --- | --- | ---: | ---: | ---: |\n";
  auto single_row = [&](const std::string& sandbox, const Row& row, const std::string& extra) {
    md << "| " << sandbox << " | " << row.label << " | " << with_range(row.timing.cpu_us, 1)
       << extra << " | " << number(row.timing.wall_us.median, 1) << " | "
       << percent(row.timing.system_share) << " |\n";
  };
  single_row("1 process (`sleep 3600`)", one.daemon, "");
  single_row("1 process", one.inspect, "");
  single_row("1 process", one.inspect_cli_work, "");
  auto per_member = [&](const Row& row) {
    return "; " + number(row.timing.cpu_us.median / hundred.members_count, 1) + " per member";
  };
  single_row("100 processes (`sh` + 99 × `sleep`)", hundred.daemon, per_member(hundred.daemon));
  single_row("100 processes", hundred.inspect, per_member(hundred.inspect));

  md << "\n### Where a one-process sample's CPU goes (daemon mode)\n\n"
     << "Each part timed alone, in the same interleaved rounds as the rows above, on the same "
     << "container. Masked/read-only paths: a sample with the default scope minus one with no "
     << "candidate paths, round by round.\n\n"
     << "| part | kernel work | CPU µs per call | calls per sample | µs per sample | "
        "share of the sample | system share |\n"
     << "| --- | --- | ---: | ---: | ---: | ---: | ---: |\n";
  double sum = 0;
  for (const auto& part : one.parts) {
    const double per_sample = part.timing.cpu_us.median * part.per_sample;
    sum += per_sample;
    const bool summed = part.per_sample > 0;
    md << "| " << part.label << " | " << part.kernel_work << " | "
       << with_range(part.timing.cpu_us, 1) << " | " << (summed ? number(part.per_sample, 0) : "—")
       << " | " << (summed ? number(per_sample, 1) : "—") << " | "
       << (summed ? percent(per_sample / d.cpu_us.median) : "—") << " | "
       << percent(part.timing.system_share) << " |\n";
  }
  const double paths = one.path_checks.median;
  sum += paths;
  const size_t candidates = host.path_candidates();
  auto per_path = [&](double v) { return number(v / static_cast<double>(candidates), 1); };
  md << "| masked/read-only path checks (" << candidates << " paths) | per path: open_in_root "
     << "(openat per component) in /proc/PID/root, statx, fstatfs, close; once: open root, fstatfs"
     << " | " << per_path(paths) << " (" << per_path(one.path_checks.min) << "–"
     << per_path(one.path_checks.max) << ") per path | " << candidates << " | " << number(paths, 1)
     << " | " << percent(paths / d.cpu_us.median) << " | — |\n";
  md << "| **sum of the parts** | | | | **" << number(sum, 1) << "** | "
     << percent(sum / d.cpu_us.median) << " | |\n"
     << "| **measured sample + projection** | | | | **" << number(d.cpu_us.median, 1)
     << "** | 100 % | " << percent(d.system_share) << " |\n"
     << "| ProcessTable::scan (inspect mode only) | readdir /proc, readlink ns/pid × "
     << one.host_processes << " processes | " << with_range(one.scan.cpu_us, 1) << " | 1 | "
     << number(one.scan.cpu_us.median, 1) << " | — | " << percent(one.scan.system_share) << " |\n";
  md << "\n100-process sandbox, membership alone (cgroup.procs with 100 pids): "
     << with_range(hundred.members.timing.cpu_us, 1) << " µs CPU.\n";

  md << "\n### Sweep of " << sweep.sandboxes << " one-process sandboxes (daemon mode)\n\n"
     << "Per sweep: median of " << opt.sweeps << " sweeps (min–max). " << sweep.host_processes
     << " processes on the host. Setting up the " << sweep.sandboxes << " containers took "
     << number(sweep.setup_seconds, 0) << " s (" << opt.parallel
     << " at a time). Other processes kept " << number(sweep.other_load, 2)
     << " cores busy on average while the sweeps were timed; the hypervisor stole "
     << number(sweep.stolen, 2) << " cores.\n\n"
     << "| part | CPU ms per sweep | wall ms per sweep | CPU µs per sandbox | system share |\n"
     << "| --- | ---: | ---: | ---: | ---: |\n";
  auto sweep_row = [&](const std::string& label, const Timing& t) {
    Stats ms{t.cpu_us.median / 1000, t.cpu_us.min / 1000, t.cpu_us.max / 1000};
    md << "| " << label << " | " << with_range(ms, 2) << " | " << number(t.wall_us.median / 1000, 2)
       << " | " << number(t.cpu_us.median / sweep.sandboxes, 1) << " | " << percent(t.system_share)
       << " |\n";
  };
  const std::string n = std::to_string(sweep.sandboxes);
  sweep_row("**full sweep**: list_containers + ProcessTable::scan + " + n +
                " × (sample + observed_projection)",
            sweep.full);
  sweep_row("list_containers (" + n + " × state.json)", sweep.list);
  sweep_row("ProcessTable::scan", sweep.scan);
  sweep_row(n + " × (sample + observed_projection)", sweep.samples);
  return md.str();
}

int run_benchmarks(const Options& opt) {
  Host host;
  progress("container ids start with " + opt.id_prefix);
  auto one = bench_one_process(opt, host);
  auto hundred = bench_hundred_processes(opt, host);
  auto sweep = bench_sweep(opt, host);
  const std::string md = report(opt, host, one, hundred, sweep);
  if (opt.markdown_path.empty()) {
    std::cout << md;
  } else {
    std::ofstream out(opt.markdown_path);
    out << md;
    if (!out) throw std::runtime_error("cannot write " + opt.markdown_path);
  }
  return 0;
}

// Keeps a one-process container for as long as stdin is open.
int hold(const Options& opt) {
  OciBundle bundle = OciBundle::with_default_spec();
  Container container = value_or_throw(Container::start("runc", bundle, opt.id_prefix + "hold"));
  std::cout << container.id() << std::endl;
  char buffer[256];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
    if (n == 0 || interrupted) break;
    if (n < 0 && errno != EINTR) break;
  }
  return 0;
}

}  // namespace
}  // namespace driftwatch::bench

int main(int argc, char** argv) {
  using namespace driftwatch::bench;
  Options opt;
  opt.id_prefix = "dwbench-" + std::to_string(::getpid()) + "-";
  CLI::App app{"CPU cost of driftwatch's sampler on real runc containers (needs root)"};
  app.add_option("--id-prefix", opt.id_prefix, "prefix of every container id")
      ->capture_default_str();
  app.add_option("--warmup", opt.warmup, "samples before timing")->capture_default_str();
  app.add_option("--iterations", opt.iterations, "samples per repetition")->capture_default_str();
  app.add_option("--repetitions", opt.repetitions, "repetitions")->capture_default_str();
  app.add_option("--sandboxes", opt.sandboxes, "containers in the sweep")->capture_default_str();
  app.add_option("--sweeps", opt.sweeps, "timed sweeps")->capture_default_str();
  app.add_option("--parallel", opt.parallel, "containers started at once")->capture_default_str();
  app.add_option("--markdown", opt.markdown_path, "write the tables here (default: stdout)");
  auto* hold_command =
      app.add_subcommand("hold",
                         "start a one-process container, print its id, keep it until "
                         "stdin closes");
  app.fallthrough();  // `sample_bench hold --id-prefix P` as well as `--id-prefix P hold`
  CLI11_PARSE(app, argc, argv);

  if (auto why = driftwatch::testing::missing_requirement({"root", "runc", "busybox"})) {
    std::cerr << "sample_bench: cannot run: " << *why
              << ". It starts runc containers and reads other processes' /proc files: run "
                 "bench/run.sh as root (scripts/install-deps.sh installs runc and "
                 "busybox-static).\n";
    return 2;
  }
  install_interrupt_handlers();
  try {
    return *hold_command ? hold(opt) : run_benchmarks(opt);
  } catch (const Interrupted&) {
    std::cerr << "sample_bench: interrupted; its containers are deleted\n";
    return 130;
  } catch (const std::exception& e) {
    std::cerr << "sample_bench: " << e.what() << "\n";
    return 1;
  }
}
