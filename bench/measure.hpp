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

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
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
  /// the split from tick samples, so it is a proportion, not a timer.
  double system_share = 0;
  int iterations = 0;
  int repetitions = 0;
};

inline double clock_us(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

inline double timeval_us(const timeval& tv) {
  return static_cast<double>(tv.tv_sec) * 1e6 + static_cast<double>(tv.tv_usec);
}

/// Runs `op` `warmup` times, then `repetitions` batches of `iterations`.
/// `op` throws when the operation fails: a benchmark of a failing sample
/// would measure the error path.
template <class Op>
Timing measure(int warmup, int iterations, int repetitions, Op&& op) {
  for (int i = 0; i < warmup; ++i) op();
  std::vector<double> cpu;
  std::vector<double> wall;
  double user_total = 0;
  double system_total = 0;
  for (int r = 0; r < repetitions; ++r) {
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
    cpu.push_back((cpu_after - cpu_before) / iterations);
    wall.push_back((wall_after - wall_before) / iterations);
    user_total += timeval_us(usage_after.ru_utime) - timeval_us(usage_before.ru_utime);
    system_total += timeval_us(usage_after.ru_stime) - timeval_us(usage_before.ru_stime);
  }
  Timing timing;
  timing.cpu_us = stats_of(cpu);
  timing.wall_us = stats_of(wall);
  const double total = user_total + system_total;
  timing.system_share = total > 0 ? system_total / total : 0;
  timing.iterations = iterations;
  timing.repetitions = repetitions;
  return timing;
}

}  // namespace driftwatch::bench
