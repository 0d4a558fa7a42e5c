#pragma once
// Timing for the benchmarks. The unit is CPU time of this process
// (CLOCK_PROCESS_CPUTIME_ID): what a sample costs the node, independent of
// how busy the other core is. A Suite runs each of its operations
// `iterations` times in a row (a batch), every operation once per round, for
// `repetitions` rounds after a warm-up; each batch gives one per-operation
// value, reported as median, min and max. Interleaving the operations makes a
// slow drift of the machine's speed (a VM's neighbours) hit all of them
// alike, so that parts and totals measured in one suite stay comparable.
// Wall time is taken alongside, and getrusage splits the CPU time into user
// and system (kernel) time.

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace driftwatch::bench {

/// Set by the SIGINT/SIGTERM handler; long loops poll it and unwind, so that
/// the containers' RAII guards delete them.
inline std::atomic<bool> interrupted{false};

struct Interrupted : std::runtime_error {
  Interrupted() : std::runtime_error("interrupted") {}
};

inline void throw_if_interrupted() {
  if (interrupted.load(std::memory_order_relaxed)) throw Interrupted();
}

/// Median, min and max of a set of per-operation times.
struct Stats {
  double median = 0;
  double min = 0;
  double max = 0;
};

inline Stats stats_of(std::vector<double> values) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  const double median = n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return {median, values.front(), values.back()};
}

struct Timing {
  Stats cpu_us;   // CPU µs per operation, one value per repetition
  Stats wall_us;  // wall µs per operation
  /// System time / (user + system) over all repetitions. getrusage derives
  /// the split from scheduler-tick samples, so it is left out (nullopt) when
  /// the repetitions took less than kMinCpuForSplitUs of CPU in all.
  std::optional<double> system_share;
  int iterations = 0;
  int repetitions = 0;
};

inline constexpr double kMinCpuForSplitUs = 200'000;

inline double clock_us(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

inline double timeval_us(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
}

/// One batch: `op` run `iterations` times in a row.
struct Batch {
  double cpu_us = 0;  // per operation
  double wall_us = 0;
  double user_us = 0;  // whole batch, from getrusage
  double system_us = 0;
};

inline Batch run_batch(int iterations, const std::function<void()>& op) {
  throw_if_interrupted();
  rusage usage_before{};
  getrusage(RUSAGE_SELF, &usage_before);
  const double wall_before = clock_us(CLOCK_MONOTONIC);
  const double cpu_before = clock_us(CLOCK_PROCESS_CPUTIME_ID);
  for (int i = 0; i < iterations; ++i) op();
  const double cpu_after = clock_us(CLOCK_PROCESS_CPUTIME_ID);
  const double wall_after = clock_us(CLOCK_MONOTONIC);
  rusage usage_after{};
  getrusage(RUSAGE_SELF, &usage_after);
  return {(cpu_after - cpu_before) / iterations, (wall_after - wall_before) / iterations,
          timeval_us(usage_after.ru_utime) - timeval_us(usage_before.ru_utime),
          timeval_us(usage_after.ru_stime) - timeval_us(usage_before.ru_stime)};
}

/// Operations timed together, in interleaved batches. Each operation throws
/// when it fails: a benchmark of a failing sample would time the error path.
class Suite {
 public:
  Suite(int warmup, int iterations, int repetitions)
      : warmup_(warmup), iterations_(iterations), repetitions_(repetitions) {}

  /// Adds an operation; returns its index for timing() and difference().
  size_t add(std::function<void()> op) {
    ops_.push_back({std::move(op), {}});
    return ops_.size() - 1;
  }

  /// Warms every operation up, then runs the rounds; `on_round(r)` is called
  /// before round r (for progress).
  void run(const std::function<void(int)>& on_round = {}) {
    for (auto& op : ops_)
      for (int i = 0; i < warmup_; ++i) op.run();
    for (int r = 0; r < repetitions_; ++r) {
      if (on_round) on_round(r);
      for (auto& op : ops_) op.batches.push_back(run_batch(iterations_, op.run));
    }
  }

  Timing timing(size_t index) const {
    std::vector<double> cpu;
    std::vector<double> wall;
    double user = 0;
    double system = 0;
    for (const Batch& batch : ops_.at(index).batches) {
      cpu.push_back(batch.cpu_us);
      wall.push_back(batch.wall_us);
      user += batch.user_us;
      system += batch.system_us;
    }
    Timing timing;
    timing.cpu_us = stats_of(cpu);
    timing.wall_us = stats_of(wall);
    if (user + system >= kMinCpuForSplitUs) timing.system_share = system / (user + system);
    timing.iterations = iterations_;
    timing.repetitions = repetitions_;
    return timing;
  }

  /// CPU µs per operation of `a` minus `b`, from the batches of the same
  /// round: the cost of what `a` does beyond `b`.
  Stats difference(size_t a, size_t b) const {
    std::vector<double> values;
    const auto& with = ops_.at(a).batches;
    const auto& without = ops_.at(b).batches;
    for (size_t r = 0; r < with.size() && r < without.size(); ++r)
      values.push_back(with[r].cpu_us - without[r].cpu_us);
    return stats_of(values);
  }

 private:
  struct Op {
    std::function<void()> run;
    std::vector<Batch> batches;
  };
  int warmup_;
  int iterations_;
  int repetitions_;
  std::vector<Op> ops_;
};

/// How busy the rest of the machine was while we measured: the CPU time all
/// processes used (from /proc/stat, in USER_HZ ticks) minus our own, in cores
/// busy on average. A number well above zero means the run shared the machine
/// (caches, the other core's work on the same /proc and cgroupfs locks).
/// In a VM, `stolen_cores` is the time the hypervisor ran something else on
/// our vCPUs; a process's CPU clock keeps running through it.
class OtherLoad {
 public:
  OtherLoad()
      : start_(read_stat()),
        self_us_(clock_us(CLOCK_PROCESS_CPUTIME_ID)),
        wall_us_(clock_us(CLOCK_MONOTONIC)) {}

  /// Cores busy with other work since construction.
  double cores() const {
    const double wall = clock_us(CLOCK_MONOTONIC) - wall_us_;
    if (wall <= 0) return 0;
    const double others = (read_stat().busy_s - start_.busy_s) * 1e6 -
                          (clock_us(CLOCK_PROCESS_CPUTIME_ID) - self_us_);
    return std::max(0.0, others / wall);
  }

  /// Cores' worth of time stolen by the hypervisor since construction.
  double stolen_cores() const {
    const double wall = clock_us(CLOCK_MONOTONIC) - wall_us_;
    return wall > 0 ? (read_stat().steal_s - start_.steal_s) * 1e6 / wall : 0;
  }

 private:
  struct Stat {
    double busy_s = 0;  // user + nice + system + irq + softirq, all CPUs
    double steal_s = 0;
  };
  static Stat read_stat() {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    const auto hz = static_cast<double>(sysconf(_SC_CLK_TCK));
    return {(user + nice + system + irq + softirq) / hz, steal / hz};
  }

  Stat start_;
  double self_us_;
  double wall_us_;
};

}  // namespace driftwatch::bench
