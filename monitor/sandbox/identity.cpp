#include "sandbox/identity.hpp"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace driftwatch::sandbox {

Result<PinnedProcess> PinnedProcess::pin(const observe::ProcReader& proc, pid_t pid,
                                         std::optional<uint64_t> expected_start) {
  std::string name = "pid " + std::to_string(pid);
  int fd = -1;
  // A pidfd only means something on the real /proc; fixture roots are
  // identified by start time alone.
  if (proc.root() == "/proc") {
    fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) {
      if (errno == ESRCH) return vanished(name + " does not exist");
      return fail("cannot pin ", name, ": pidfd_open: ", std::strerror(errno));
    }
  }
  PinnedProcess pinned({pid, 0}, fd);
  auto stat = proc.stat(pid);
  if (!stat) return wrap(stat.error(), name, ": ");
  if (expected_start && stat->start_time_ticks != *expected_start)
    return vanished(name + " was reused by another process (start time changed)");
  pinned.identity_.start_time_ticks = stat->start_time_ticks;
  // A zombie has no /proc state worth sampling: its credentials are gone.
  // But a leader thread that exited alone is a zombie too, while its
  // process runs on in its other threads (the pidfd polls readable only
  // when all have exited): that process is pinned, and sampled through
  // them (sandbox/sampler.hpp).
  if (stat->state == 'X') return vanished(name + " has exited");
  if (stat->state == 'Z') {
    auto status = proc.status(pid);
    if (!status || status->threads < 2) return vanished(name + " has exited");
  }
  return pinned;
}

PinnedProcess::PinnedProcess(PinnedProcess&& other) noexcept
    : identity_(other.identity_), pidfd_(std::exchange(other.pidfd_, -1)) {}

PinnedProcess& PinnedProcess::operator=(PinnedProcess&& other) noexcept {
  if (this != &other) {
    if (pidfd_ >= 0) close(pidfd_);
    identity_ = other.identity_;
    pidfd_ = std::exchange(other.pidfd_, -1);
  }
  return *this;
}

PinnedProcess::~PinnedProcess() {
  if (pidfd_ >= 0) close(pidfd_);
}

bool PinnedProcess::still_alive() const {
  if (pidfd_ < 0) return true;
  // A pidfd polls readable once its process has exited.
  pollfd p{pidfd_, POLLIN, 0};
  return poll(&p, 1, 0) == 0;
}

}  // namespace driftwatch::sandbox
