#pragma once
// Timing for the benchmarks. The unit is CPU time of this process
// (CLOCK_PROCESS_CPUTIME_ID): what a sample costs the node, independent of
// how busy the other core is. Each measurement runs an operation `iterations`
// times in a row (after a warm-up) and repeats that `repetitions` times; the
// per-operation time of each repetition is one value, reported as median, min
// and max. Wall time is taken alongside, and getrusage splits the CPU time
// into user and system (kernel) time.

#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
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

template <class Op>
Batch run_batch(int iterations, Op& op) {
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

/// Runs `op` `warmup` times, then `repetitions` batches of `iterations`.
/// `op` throws when the operation fails: a benchmark of a failing sample
/// would measure the error path.
template <class Op>
Timing measure(int warmup, int iterations, int repetitions, Op&& op) {
  for (int i = 0; i < warmup; ++i) op();
  std::vector<double> cpu;
  std::vector<double> wall;
  double user = 0;
  double system = 0;
  for (int r = 0; r < repetitions; ++r) {
    const Batch batch = run_batch(iterations, op);
    cpu.push_back(batch.cpu_us);
    wall.push_back(batch.wall_us);
    user += batch.user_us;
    system += batch.system_us;
  }
  Timing timing;
  timing.cpu_us = stats_of(cpu);
  timing.wall_us = stats_of(wall);
  if (user + system >= kMinCpuForSplitUs) timing.system_share = system / (user + system);
  timing.iterations = iterations;
  timing.repetitions = repetitions;
  return timing;
}

/// CPU µs per operation of `with` minus `without`, one value per repetition.
/// Their batches alternate, so that a drift of the machine's speed during
/// the run hits both alike instead of showing up as a difference.
template <class With, class Without>
Stats measure_difference(int warmup, int iterations, int repetitions, With&& with,
                         Without&& without) {
  for (int i = 0; i < warmup; ++i) {
    with();
    without();
  }
  std::vector<double> difference;
  for (int r = 0; r < repetitions; ++r) {
    const double a = run_batch(iterations, with).cpu_us;
    const double b = run_batch(iterations, without).cpu_us;
    difference.push_back(a - b);
  }
  return stats_of(difference);
}

/// How busy the rest of the machine was while we measured: the CPU time all
/// processes used (from /proc/stat, in USER_HZ ticks) minus our own, in cores
/// busy on average. A number well above zero means the run shared the machine
/// (caches, the other core's work on the same /proc and cgroupfs locks).
class OtherLoad {
 public:
  OtherLoad()
      : busy_s_(busy_seconds()),
        self_us_(clock_us(CLOCK_PROCESS_CPUTIME_ID)),
        wall_us_(clock_us(CLOCK_MONOTONIC)) {}

  /// Cores busy with other work since construction.
  double cores() const {
    const double wall = clock_us(CLOCK_MONOTONIC) - wall_us_;
    if (wall <= 0) return 0;
    const double others =
        (busy_seconds() - busy_s_) * 1e6 - (clock_us(CLOCK_PROCESS_CPUTIME_ID) - self_us_);
    return std::max(0.0, others / wall);
  }

 private:
  // user + nice + system + irq + softirq of the "cpu" line; idle, iowait and
  // steal are not work done on this machine's behalf.
  static double busy_seconds() {
    std::ifstream stat("/proc/stat");
    std::string cpu;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0;
    stat >> cpu >> user >> nice >> system >> idle >> iowait >> irq >> softirq;
    return (user + nice + system + irq + softirq) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }

  double busy_s_;
  double self_us_;
  double wall_us_;
};

}  // namespace driftwatch::bench
