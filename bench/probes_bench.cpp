// probes_bench: the sandboxes bench/probes.sh needs, and its drift-latency
// driver, on real runc containers.
//
//   probes_bench hold --sandboxes N [--loop FILE]
//       start N no-capability runc sandboxes (uid 1000, busybox rootfs,
//       FILE copied to /bin/syscall_loop), print their ids one a line, then
//       "ready"; keep them until stdin closes
//   probes_bench latency --port P --key KEY --kinds K,… --changes N --out TSV
//       against a running daemon (sweep interval 60 s), one attested
//       sandbox per kind: N changes in all, the kinds interleaved, each made
//       on an attested sandbox and restored after, one TSV row per change
//
// The change kinds: `exec-cap` (runc exec --cap CAP_SYS_ADMIN sleep),
// `memory` (runc update --memory to twice the launch's limit), `pids` (runc
// update --pids-limit to twice the launch's), `cgroup-move` (a host process
// written into the cgroup.procs of every hierarchy the sandbox is in, as
// tests/integration/drift_test.cpp does). A thread started before the
// change polls GET /v1/sandboxes/ID every 0.5 ms and keeps each (verdict,
// observed_sha256) it sees: *visible* is the first "drifted", *settled* the
// moment the last state seen (300 ms after the command returned) was first
// answered, when that state is drifted: a `runc exec` passes through
// runc's own init process first, which the daemon may sample on the way. The
// daemon's own driftwatch_detection_latency_seconds is read before and
// after: the change's probe observation is its _sum delta. A restore puts
// the launch's config back (kill the process, update the limit back), then
// a `runc exec ID true` in the sandbox makes the daemon resample it, and the
// next change waits until it is `attested` again.
//
// `--controls N` adds N plain `runc exec ID true` on an attested sandbox of
// their own (kind `exec-plain`, no change of privileges): whether the
// verdict turns drifted on the way is a false alarm.
//
// Needs root. Every container and bundle it creates is deleted when it
// exits, fails or gets SIGINT/SIGTERM; bench/probes.sh's trap deletes what a
// SIGKILL leaves behind, by the id prefix.

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "ingest/envelope.hpp"
#include "measure.hpp"
#include "observe/proc_reader.hpp"
#include "support/http_client.hpp"
#include "support/oci_bundle.hpp"
#include "support/process_guard.hpp"

namespace driftwatch::bench {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using testing::ChildProcess;
using testing::Container;
using testing::OciBundle;
using testing::value_or_throw;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int64_t kLaunchMemory = 64 << 20;
constexpr int kLaunchPids = 32;

struct Options {
  std::string id_prefix;
  // hold
  int sandboxes = 1;
  int parallel = 4;
  std::string loop_path;
  // latency
  uint16_t port = 0;
  std::string driftwatch = "build/driftwatch";
  std::string key_path;
  std::string kinds = "exec-cap,memory,pids,cgroup-move";
  int changes = 200;
  int controls = 0;
  int timeout_ms = 2000;
  int settle_ms = 300;
  std::string out_path;
};

void progress(const std::string& line) {
  std::cerr << "probes_bench: " << line << std::endl;
}

void on_interrupt(int signo) {
  interrupted = true;
  signal(signo, SIG_DFL);  // a second Ctrl-C kills at once
}

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_interrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: `hold`'s blocking read must return
  for (int signo : {SIGINT, SIGTERM, SIGHUP}) sigaction(signo, &action, nullptr);
}

double ms_since(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

// ---- hold -------------------------------------------------------------------

// A sandbox as the probe tests make it: no capabilities at all, uid 1000,
// the loop program in /bin.
OciBundle no_capability_bundle(const std::string& loop_path) {
  OciBundle bundle = OciBundle::without_capabilities();
  if (!loop_path.empty()) bundle.add_program(loop_path, "syscall_loop");
  return bundle;
}

int hold(const Options& opt) {
  OciBundle bundle = no_capability_bundle(opt.loop_path);
  std::vector<std::optional<Container>> containers(static_cast<size_t>(opt.sandboxes));
  // Deletes whatever was started, also while an exception unwinds.
  struct Deleter {
    std::vector<std::optional<Container>>& containers;
    int parallel;
    ~Deleter() {
      std::atomic<size_t> next{0};
      std::vector<std::jthread> pool;
      for (int t = 0; t < std::max(1, parallel); ++t)
        pool.emplace_back([&] {
          for (size_t i; (i = next++) < containers.size();) containers[i].reset();
        });
    }
  } deleter{containers, opt.parallel};

  std::atomic<int> next{0}, started{0};
  std::mutex mutex;
  std::exception_ptr failure;
  {
    std::vector<std::jthread> pool;
    for (int t = 0; t < std::max(1, opt.parallel); ++t) {
      pool.emplace_back([&] {
        for (int i; (i = next++) < opt.sandboxes;) {
          {
            std::lock_guard lock(mutex);
            if (failure || interrupted) return;
          }
          try {
            containers[static_cast<size_t>(i)] = value_or_throw(
                Container::start("runc", bundle, opt.id_prefix + "s" + std::to_string(i)));
            if (const int n = ++started; n % 50 == 0) progress("started " + std::to_string(n));
          } catch (...) {
            std::lock_guard lock(mutex);
            if (!failure) failure = std::current_exception();
          }
        }
      });
    }
  }
  if (failure) std::rethrow_exception(failure);
  throw_if_interrupted();
  for (const auto& c : containers) std::cout << c->id() << "\n";
  std::cout << "ready" << std::endl;
  char buffer[256];
  for (;;) {
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
    if (n == 0 || interrupted) break;
    if (n < 0 && errno != EINTR) break;
  }
  return 0;
}

// ---- latency ----------------------------------------------------------------

// count and sum of driftwatch_detection_latency_seconds by trigger.
struct Histogram {
  std::map<std::string, std::pair<double, double>> by_trigger;  // count, sum
};

double series_value(const std::string& body, const std::string& series) {
  const size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return 0;
  return std::stod(body.substr(at + series.size() + 2));
}

Histogram read_histogram(uint16_t port) {
  const auto reply = testing::http_request(port, "GET", "/metrics");
  if (reply.status != 200)
    throw std::runtime_error("GET /metrics: " + std::to_string(reply.status));
  Histogram h;
  for (const char* trigger : {"probe", "sweep"}) {
    const std::string labels = std::string("{trigger=\"") + trigger + "\"}";
    h.by_trigger[trigger] = {
        series_value(reply.body, "driftwatch_detection_latency_seconds_count" + labels),
        series_value(reply.body, "driftwatch_detection_latency_seconds_sum" + labels)};
  }
  return h;
}

std::string verdict_of(uint16_t port, const std::string& id) {
  const auto reply = testing::http_request(port, "GET", "/v1/sandboxes/" + id);
  if (reply.status != 200) return "";
  auto parsed = json::parse(reply.body, nullptr, false);
  return parsed.is_object() && parsed["verdict"].is_string() ? parsed["verdict"].get<std::string>()
                                                             : "";
}

bool wait_verdict(uint16_t port, const std::string& id, const std::string& verdict,
                  std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    throw_if_interrupted();
    if (verdict_of(port, id) == verdict) return true;
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// One sandbox per kind, attested by a signed launch event.
struct Subject {
  std::string kind;
  OciBundle bundle;
  std::optional<Container> container;
  std::optional<ChildProcess> intruder;  // cgroup-move: the host process moved in
  pid_t exec_pid = -1;                   // exec-cap: the process with CAP_SYS_ADMIN
};

OciBundle limited_bundle() {
  OciBundle bundle = OciBundle::with_default_spec();
  bundle.config()["linux"]["resources"]["memory"] = {{"limit", kLaunchMemory}};
  bundle.config()["linux"]["resources"]["pids"] = {{"limit", kLaunchPids}};
  bundle.write_config();
  return bundle;
}

void attest(const Options& opt, Subject& s, const fs::path& scratch) {
  const auto& c = *s.container;
  const json payload{{"launch_id", "L-" + c.id()},
                     {"sandbox_id", c.id()},
                     {"runtime", "runc"},
                     {"issued_at", ingest::format_rfc3339(std::time(nullptr))},
                     {"requested_by", "oidc:bench@example.org"},
                     {"config", s.bundle.config()}};
  const fs::path path = scratch / (c.id() + ".launch.json");
  std::ofstream(path) << payload.dump();
  auto signed_ = testing::run_command(
      {opt.driftwatch, "sign", "--key", opt.key_path, "--type", "launch", path.string()});
  if (signed_.exit_code != 0) throw std::runtime_error("driftwatch sign failed: " + signed_.err);
  auto reply = testing::http_request(opt.port, "POST", "/v1/launch-events", signed_.out);
  if (reply.status != 202)
    throw std::runtime_error("POST /v1/launch-events for " + c.id() + ": " +
                             std::to_string(reply.status) + " " + reply.body);
  if (!wait_verdict(opt.port, c.id(), "attested", 20s))
    throw std::runtime_error(c.id() + " is not attested 20 s after its launch event (verdict " +
                             verdict_of(opt.port, c.id()) + ")");
}

// Moves `pid` into every cgroup the sandbox's init is in, unified first.
void move_into_cgroups(pid_t init_pid, pid_t pid) {
  observe::ProcReader proc("/proc");
  auto membership = proc.cgroup(init_pid);
  if (!membership) throw std::runtime_error("cannot read the sandbox's /proc/PID/cgroup");
  int moved = 0;
  auto move_into = [&](const std::string& dir) {
    std::ofstream procs(dir + "/cgroup.procs");
    procs << pid << "\n";
    procs.flush();
    if (procs.good()) ++moved;
  };
  const std::string unified = fs::exists("/sys/fs/cgroup/unified/cgroup.controllers")
                                  ? "/sys/fs/cgroup/unified"
                                  : "/sys/fs/cgroup";
  if (membership->unified) move_into(unified + *membership->unified);
  for (const auto& [controller, path] : membership->v1) {
    std::string name = controller.starts_with("name=") ? controller.substr(5) : controller;
    if (auto comma = name.find(','); comma != std::string::npos) name = name.substr(0, comma);
    move_into("/sys/fs/cgroup/" + name + path);
  }
  if (moved == 0) throw std::runtime_error("could not move a process into any of its cgroups");
}

void change(Subject& s) {
  Container& c = *s.container;
  if (s.kind == "exec-cap") {
    s.exec_pid = value_or_throw(c.exec({"sleep", "3600"}, {"--cap", "CAP_SYS_ADMIN"}));
  } else if (s.kind == "memory") {
    value_or_throw(c.update({"--memory", std::to_string(2 * kLaunchMemory)}));
  } else if (s.kind == "pids") {
    value_or_throw(c.update({"--pids-limit", std::to_string(2 * kLaunchPids)}));
  } else if (s.kind == "cgroup-move") {
    move_into_cgroups(c.init_pid(), s.intruder->pid());
  } else if (s.kind == "exec-plain") {
    if (const auto done = c.exec_wait({"true"}); done.exit_code != 0)
      throw std::runtime_error("runc exec " + c.id() + " true failed: " + done.err);
  }
}

bool gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const size_t paren = text.rfind(')');
  if (paren == std::string::npos || paren + 2 >= text.size()) return true;
  const char state = text[paren + 2];
  return state == 'Z' || state == 'X';
}

// Puts the launch's config back and makes the daemon resample the sandbox
// (an exec in it), until it is attested again; the time it took.
double restore(const Options& opt, Subject& s) {
  const auto t0 = Clock::now();
  Container& c = *s.container;
  if (s.kind == "exec-cap" && s.exec_pid > 0) {
    ::kill(s.exec_pid, SIGKILL);
    for (int i = 0; i < 2000 && !gone(s.exec_pid); ++i) std::this_thread::sleep_for(1ms);
    s.exec_pid = -1;
  } else if (s.kind == "memory") {
    value_or_throw(c.update({"--memory", std::to_string(kLaunchMemory)}));
  } else if (s.kind == "pids") {
    value_or_throw(c.update({"--pids-limit", std::to_string(kLaunchPids)}));
  } else if (s.kind == "cgroup-move") {
    const pid_t old = s.intruder->pid();
    s.intruder->kill();
    for (int i = 0; i < 2000 && !gone(old); ++i) std::this_thread::sleep_for(1ms);
    s.intruder.emplace(ChildProcess::start({"sleep", "3600"}));
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (verdict_of(opt.port, c.id()) == "attested") return ms_since(t0, Clock::now());
    c.exec_wait({"true"});
    if (wait_verdict(opt.port, c.id(), "attested", 2s)) return ms_since(t0, Clock::now());
  }
  throw std::runtime_error(c.id() + " (" + s.kind + ") is not attested again after its restore");
}

std::vector<std::string> split_kinds(const std::string& text) {
  std::vector<std::string> kinds;
  std::stringstream in(text);
  for (std::string kind; std::getline(in, kind, ',');) {
    if (kind != "exec-cap" && kind != "memory" && kind != "pids" && kind != "cgroup-move" &&
        kind != "exec-plain")
      throw std::invalid_argument("unknown change kind \"" + kind +
                                  "\" (known: exec-cap, memory, pids, cgroup-move, exec-plain)");
    kinds.push_back(kind);
  }
  if (kinds.empty()) throw std::invalid_argument("--kinds names no kind");
  return kinds;
}

// What the poller saw: each new (verdict, observed hash), from the change.
struct Sighting {
  Clock::time_point at;
  std::string verdict;
  std::string observed;
};

std::pair<std::string, std::string> state_of(uint16_t port, const std::string& id) {
  const auto reply = testing::http_request(port, "GET", "/v1/sandboxes/" + id);
  if (reply.status != 200) return {};
  auto parsed = json::parse(reply.body, nullptr, false);
  if (!parsed.is_object()) return {};
  return {parsed.value("verdict", std::string()), parsed.value("observed_sha256", std::string())};
}

int latency(const Options& opt) {
  auto kinds = split_kinds(opt.kinds);
  std::ofstream out(opt.out_path);
  if (!out) throw std::runtime_error("cannot write " + opt.out_path);
  out << "kind\tround\tvisible_ms\tsettled_ms\tcommand_ms\ttrigger\tdaemon_ms\tstates\trestore_"
         "ms\n";
  const fs::path scratch = fs::path(opt.out_path).parent_path();

  // The schedule: the changes round-robin over the kinds, then the controls.
  std::vector<size_t> schedule;
  for (int n = 0; n < opt.changes; ++n) schedule.push_back(static_cast<size_t>(n) % kinds.size());
  if (opt.controls > 0) {
    kinds.push_back("exec-plain");
    for (int n = 0; n < opt.controls; ++n) schedule.push_back(kinds.size() - 1);
  }
  std::vector<Subject> subjects;
  for (const auto& kind : kinds) {
    Subject s{kind, limited_bundle(), std::nullopt, std::nullopt, -1};
    s.container = value_or_throw(Container::start("runc", s.bundle, opt.id_prefix + kind));
    if (kind == "cgroup-move") s.intruder.emplace(ChildProcess::start({"sleep", "3600"}));
    attest(opt, s, scratch);
    subjects.push_back(std::move(s));
  }
  progress("attested " + std::to_string(subjects.size()) + " sandboxes; " +
           std::to_string(opt.changes) + " changes, " + std::to_string(opt.controls) + " controls");

  std::map<size_t, int> rounds;
  for (size_t step = 0; step < schedule.size(); ++step) {
    throw_if_interrupted();
    Subject& s = subjects[schedule[step]];
    const int round = rounds[schedule[step]]++;
    const std::string id = s.container->id();
    if (!wait_verdict(opt.port, id, "attested", 5s))
      throw std::runtime_error(id + " is not attested before step " + std::to_string(step));
    const Histogram before = read_histogram(opt.port);

    // The poller runs from before the change: the verdict may turn before
    // the runtime's command returns.
    std::atomic<bool> started{false}, stop{false};
    std::vector<Sighting> seen;
    std::mutex seen_mutex;
    const auto deadline = Clock::now() + std::chrono::milliseconds(opt.timeout_ms);
    std::jthread poller([&] {
      started = true;
      std::pair<std::string, std::string> last{"attested", ""};
      bool first = true;
      while (!stop && Clock::now() < deadline && !interrupted) {
        auto state = state_of(opt.port, id);
        const auto at = Clock::now();
        if (first || state != last) {
          std::lock_guard lock(seen_mutex);
          seen.push_back({at, state.first, state.second});
        }
        first = false;
        last = std::move(state);
        std::this_thread::sleep_for(500us);
      }
    });
    while (!started) std::this_thread::yield();
    const auto c0 = Clock::now();
    change(s);
    const auto c1 = Clock::now();
    // Until the state has settled a while after the command, or the time is up.
    const auto settle = std::chrono::milliseconds(opt.settle_ms);
    while (Clock::now() < deadline && !interrupted) {
      if (s.kind == "exec-plain" && Clock::now() >= c1 + settle) break;
      {
        std::lock_guard lock(seen_mutex);
        if (Clock::now() >= c1 + settle && !seen.empty() && seen.back().verdict == "drifted" &&
            Clock::now() >= seen.back().at + settle)
          break;
      }
      std::this_thread::sleep_for(1ms);
    }
    stop = true;
    poller.join();
    throw_if_interrupted();

    const Histogram after = read_histogram(opt.port);
    std::string trigger = "none";
    double daemon_ms = -1;
    for (const char* name : {"sweep", "probe"}) {  // a probe's observation wins
      const auto& [count, sum] = after.by_trigger.at(name);
      const auto& [count0, sum0] = before.by_trigger.at(name);
      if (count > count0) {
        trigger = name;
        daemon_ms = (sum - sum0) * 1000 / (count - count0);
      }
    }
    double visible_ms = -1, settled_ms = -1;
    for (const auto& sighting : seen) {
      if (sighting.verdict == "drifted") {
        visible_ms = ms_since(c0, sighting.at);
        break;
      }
    }
    if (!seen.empty() && seen.back().verdict == "drifted")
      settled_ms = ms_since(c0, seen.back().at);
    const double restore_ms = restore(opt, s);
    char row[256];
    std::snprintf(row, sizeof row, "%s\t%d\t%.3f\t%.3f\t%.3f\t%s\t%.3f\t%zu\t%.1f\n",
                  s.kind.c_str(), round, visible_ms, settled_ms, ms_since(c0, c1), trigger.c_str(),
                  daemon_ms, seen.size(), restore_ms);
    out << row << std::flush;
    if ((step + 1) % 20 == 0)
      progress(std::to_string(step + 1) + "/" + std::to_string(schedule.size()));
  }
  return 0;
}

}  // namespace
}  // namespace driftwatch::bench

int main(int argc, char** argv) {
  using namespace driftwatch::bench;
  Options opt;
  opt.id_prefix = "dwprobes-" + std::to_string(::getpid()) + "-";
  CLI::App app{"Sandboxes and the drift-latency driver for bench/probes.sh (needs root)"};
  app.add_option("--id-prefix", opt.id_prefix, "prefix of every container id")
      ->capture_default_str();
  auto* hold_command = app.add_subcommand("hold", "start sandboxes, print ids, hold them");
  hold_command->add_option("--sandboxes", opt.sandboxes, "how many")->capture_default_str();
  hold_command->add_option("--parallel", opt.parallel, "started at once")->capture_default_str();
  hold_command->add_option("--loop", opt.loop_path, "copied to /bin/syscall_loop in each");
  auto* latency_command = app.add_subcommand("latency", "drift detection latency, TSV rows");
  latency_command->add_option("--port", opt.port, "the daemon's port")->required();
  latency_command->add_option("--driftwatch", opt.driftwatch, "for `driftwatch sign`")
      ->capture_default_str();
  latency_command->add_option("--key", opt.key_path, "a control-plane key the daemon trusts")
      ->required();
  latency_command->add_option("--kinds", opt.kinds, "change kinds, comma-separated")
      ->capture_default_str();
  latency_command->add_option("--changes", opt.changes, "changes in all, kinds interleaved")
      ->capture_default_str();
  latency_command->add_option("--controls", opt.controls, "plain runc exec, after the changes")
      ->capture_default_str();
  latency_command->add_option("--timeout-ms", opt.timeout_ms, "wait for drifted at most")
      ->capture_default_str();
  latency_command
      ->add_option("--settle-ms", opt.settle_ms, "a state that lasts this long is settled")
      ->capture_default_str();
  latency_command->add_option("--out", opt.out_path, "the TSV file")->required();
  app.require_subcommand(1);
  app.fallthrough();
  CLI11_PARSE(app, argc, argv);

  if (auto why = driftwatch::testing::missing_requirement({"root", "runc", "busybox"})) {
    std::cerr << "probes_bench: cannot run: " << *why
              << ". It starts runc containers: run bench/probes.sh as root "
                 "(scripts/install-deps.sh installs runc and busybox-static).\n";
    return 2;
  }
  install_interrupt_handlers();
  try {
    return *hold_command ? hold(opt) : latency(opt);
  } catch (const Interrupted&) {
    std::cerr << "probes_bench: interrupted; its containers are deleted\n";
    return 130;
  } catch (const std::exception& e) {
    std::cerr << "probes_bench: " << e.what() << "\n";
    return 1;
  }
}
