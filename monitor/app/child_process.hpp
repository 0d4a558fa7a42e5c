#pragma once
// The daemon's child processes (the sampler, its proc peer): how one ended,
// and reaping one that was told to stop.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>

namespace driftwatch::app {

/// How a child ended, from waitpid's status: "exited with status 5", "was
/// killed by SIGKILL".
inline std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("was killed by SIG") + (name ? name : std::to_string(WTERMSIG(status)));
  }
  return "stopped";
}

/// Reaps the child `pid` once it has exited, waiting up to `patience` for
/// one told to stop (its socket closed); then SIGKILL where this process may
/// still signal, and reaped now, or by init once this process exits.
inline void reap_child(pid_t pid, std::chrono::milliseconds patience = std::chrono::seconds(2)) {
  if (pid <= 0) return;
  const auto deadline = std::chrono::steady_clock::now() + patience;
  do {
    const pid_t done = ::waitpid(pid, nullptr, WNOHANG);
    if (done == pid || (done < 0 && errno == ECHILD)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  } while (std::chrono::steady_clock::now() < deadline);
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, WNOHANG);
}

}  // namespace driftwatch::app
