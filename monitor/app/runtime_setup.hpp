#pragma once
// Telling the runtime's own setup inside a sandbox from the workload, on
// the sampling side (the probe tells the runtime's capability checks apart
// the same way, in bpf/probes.bpf.c).
//
// runc's init ("runc:[2:INIT]") or crun, before it executes the workload,
// holds the runtime's capabilities for a few milliseconds: every plain
// `runc exec` sampled then looked drifted (measured). It is told by the
// process name, which a workload can set too: a workload naming itself so
// delays its own judgment by at most the settling budget, and is then
// judged as it is (README, "The probes": known limits).

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <thread>

#include "correlate/correlator.hpp"

namespace driftwatch::app {

/// Whether a member of the sample is still in the runtime's own setup.
inline bool in_runtime_setup(const correlate::SweepItem& item) {
  return std::ranges::any_of(item.observation.members, [](const auto& member) {
    return member.status.name.starts_with("runc:[") || member.status.name == "crun";
  });
}

/// Whether a member was exiting when it was read (a process's exit, such as
/// a `runc exec`'s command ending, is seen for a few milliseconds in which
/// some of its files describe the exit: on a v1 cgroup hierarchy its
/// cgroups read "/", so no limits, measured on every plain `runc exec
/// true`). A leader thread that exits while other threads run on is not
/// such a member: the sampler stands its live threads for it.
inline bool member_exiting(const correlate::SweepItem& item) {
  return std::ranges::any_of(item.observation.members,
                             [](const auto& member) { return member.exiting; });
}

/// Whether the sample is to be taken again: the runtime's setup, or an exit.
inline bool in_transition(const correlate::SweepItem& item) {
  return in_runtime_setup(item) || member_exiting(item);
}

inline uint64_t monotonic_ns() {
  timespec now{};
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1000000000ULL + static_cast<uint64_t>(now.tv_nsec);
}

/// Samples (`sample()`: a Result<SweepItem>) until the sample is not caught
/// in a transition (the runtime's setup, a member's exit), every `step`, for
/// at most `budget` (which it spends; 1 ms steps: a step is paid on every
/// runc exec). The caller's thread waits meanwhile. `setup_seen_ns`, when
/// given, gets the CLOCK_MONOTONIC time at which the last sample that still
/// saw the runtime's setup began (left alone when none did; an exit does not
/// count): the setup ended after it, so a change that took effect when the
/// workload started is no older.
template <class Sample>
auto settle(Sample sample, std::chrono::milliseconds& budget, uint64_t* setup_seen_ns = nullptr,
            std::chrono::milliseconds step = std::chrono::milliseconds(1)) {
  uint64_t started = monotonic_ns();
  auto item = sample();
  while (item && in_transition(*item) && budget.count() > 0) {
    if (setup_seen_ns && in_runtime_setup(*item)) *setup_seen_ns = started;
    std::this_thread::sleep_for(step);
    budget -= step;
    started = monotonic_ns();
    item = sample();
  }
  return item;
}

}  // namespace driftwatch::app
