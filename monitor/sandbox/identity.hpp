#pragma once
// Process identity that survives PID reuse. A PID alone names whatever
// process holds the number now; (pid, start time) names one process, and a
// pidfd held across a sample proves the process did not exit while its files
// were read.

#include <sys/types.h>

#include <cstdint>
#include <optional>

#include "common/result.hpp"
#include "observe/proc_reader.hpp"

namespace driftwatch::sandbox {

struct ProcessIdentity {
  pid_t pid = 0;
  uint64_t start_time_ticks = 0;  // /proc/PID/stat field 22
  bool operator==(const ProcessIdentity&) const = default;
};

/// A pidfd on a live process, opened before its /proc files are read.
/// `still_alive()` after the reads tells whether the files described this
/// process: a PID is never reused while a pidfd's process has not exited
/// and been reaped... and if it did exit, the sample is dropped.
class PinnedProcess {
 public:
  /// Pins `pid`; `expected_start` (if given) must match its start time, so
  /// a recycled PID is refused. Errors for a PID that does not exist are
  /// `vanished`, and so for a zombie, unless it is a leader thread whose
  /// process lives on in other threads.
  static Result<PinnedProcess> pin(const observe::ProcReader& proc, pid_t pid,
                                   std::optional<uint64_t> expected_start = {});
  PinnedProcess(PinnedProcess&& other) noexcept;
  PinnedProcess& operator=(PinnedProcess&& other) noexcept;
  PinnedProcess(const PinnedProcess&) = delete;
  PinnedProcess& operator=(const PinnedProcess&) = delete;
  ~PinnedProcess();

  const ProcessIdentity& identity() const { return identity_; }
  /// True while the pinned process has not exited.
  bool still_alive() const;

 private:
  PinnedProcess(ProcessIdentity identity, int pidfd) : identity_(identity), pidfd_(pidfd) {}
  ProcessIdentity identity_;
  int pidfd_ = -1;
};

}  // namespace driftwatch::sandbox
