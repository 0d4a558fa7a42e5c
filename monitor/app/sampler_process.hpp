#pragma once
// The daemon's sampler process: the one part of driftwatch that reads other
// processes. The front (app/daemon.cpp) starts it from its own binary
// (`driftwatch sampler-process`, with a Unix socket as descriptor 3) before
// either confines itself, sends it the sweep options once, and then asks it
// for sweeps and single samples, one request at a time, from the front's
// worker thread.
//
// The sampler keeps CAP_DAC_READ_SEARCH alone and writes no file
// (app/confine.hpp, role `sampler`); the ptrace-mode reads (namespace and
// exe links, the view of a sandbox's root) are done for it by its proc peer
// (app/proc_peer.hpp), a child with CAP_SYS_PTRACE alone that can open no
// file but O_PATH. The front keeps CAP_DAC_READ_SEARCH and is Landlocked to
// its state dir and journals. None trusts another: every message is
// parsed strictly (correlate/wire.hpp), the front projects each observation
// itself, and a sampler that dies, stalls or sends something malformed
// makes the front fail loudly (the daemon then stops, and its service
// manager starts it again) rather than guess; so does a failed proc peer,
// whose sampler then exits.
//
// Protocol (frames of correlate/wire.hpp): front → sampler a setup object,
// sampler → front a hello once confined, then request → response pairs.
// The sampler exits when the front closes the socket, and is killed by the
// kernel when the front dies (PR_SET_PDEATHSIG).

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "app/confine.hpp"
#include "common/posix.hpp"
#include "common/result.hpp"
#include "correlate/sweep.hpp"
#include "correlate/wire.hpp"

namespace driftwatch::app {

/// What the sampler is told once, at start.
struct SamplerSetup {
  correlate::SweepOptions options;  // host_namespaces: read by the sampler itself
  /// Whom the sampler becomes (the front's user).
  DaemonUser user;
  /// The front's state dir: covered in the sampler's and its proc peer's
  /// mount namespaces (the node key is there). Empty: nothing covered.
  std::filesystem::path state_dir;
};

class SamplerProcess {
 public:
  /// Starts `exe sampler-process` (the daemon's own binary by default) with
  /// a socket as descriptor 3, sends `setup` and waits for the hello of the
  /// confined sampler (at most `hello_timeout`). Must run before any thread
  /// is started (it forks) and while the front may still execute programs
  /// (before its own confinement).
  static Result<std::unique_ptr<SamplerProcess>> start(
      const SamplerSetup& setup, const std::filesystem::path& exe = "/proc/self/exe",
      std::chrono::milliseconds hello_timeout = std::chrono::seconds(10));
  SamplerProcess(const SamplerProcess&) = delete;
  SamplerProcess& operator=(const SamplerProcess&) = delete;
  /// Closes the socket (the sampler exits) and reaps the child.
  ~SamplerProcess();

  pid_t pid() const { return pid_; }
  const correlate::wire::Hello& hello() const { return hello_; }

  /// Every sandbox, sampled by the sampler and projected here. An error
  /// only when the sampler failed (failure() says it from then on).
  Result<correlate::SweepResult> sweep(const correlate::ScopesBySandbox& scopes);
  /// One sandbox. An error for a sandbox not found or not sampled (the
  /// sampler's message), and when the sampler failed (then failure() is set).
  Result<correlate::SweepItem> sample_one(std::string_view sandbox_id,
                                          const correlate::ScopesBySandbox& scopes);

  /// Ends the conversation from any thread: a request in flight fails at
  /// once, and the sampler reads end of stream and exits.
  void shut_down();

  /// Why the sampler can no longer be used (it died, stalled past the
  /// request timeout, or broke the protocol); nullopt while it works.
  std::optional<std::string> failure() const;

  /// How long a request may take before the sampler counts as stalled.
  static constexpr std::chrono::seconds kRequestTimeout{120};

 private:
  SamplerProcess(pid_t pid, Fd socket) : pid_(pid), socket_(std::move(socket)) {}
  Result<correlate::wire::Response> exchange(const correlate::wire::Request& request);
  Result<nlohmann::json> receive(std::chrono::steady_clock::time_point deadline);
  Result<void> send(const nlohmann::json& message);
  Error broke(std::string why);

  pid_t pid_ = -1;
  Fd socket_;
  correlate::wire::FrameReader reader_;
  correlate::wire::Hello hello_;
  uint64_t next_id_ = 1;
  mutable std::mutex mutex_;
  std::optional<std::string> failure_;
};

/// The body of `driftwatch sampler-process`: refuses to run unless
/// descriptor 3 is a Unix socket (it is started by `driftwatch run`, never by
/// hand). Returns the exit code.
int run_sampler_process();

}  // namespace driftwatch::app
