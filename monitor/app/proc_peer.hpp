#pragma once
// The sampler's proc peer: the one process of the daemon that holds
// CAP_SYS_PTRACE, and the one that can read no file at all. The sampler
// (app/sampler_process.hpp) forks it before either confines itself; it
// confines itself (app/confine.hpp, role `proc_peer`: CAP_SYS_PTRACE alone,
// the sampler's no-write filter, then a filter that refuses every open
// without O_PATH), says hello, and answers the sampler's ptrace-mode reads
// (sandbox/ptrace_reads.hpp: namespace and exe links, the view of a
// sandbox's root), one request at a time, over a socket pair, in the frames
// of correlate/wire.hpp.
//
// So the process that reads file content (the sampler: CAP_DAC_READ_SEARCH)
// cannot follow another user's /proc/PID/root nor open its /proc/PID/mem,
// and the process that can (this one) gets nothing out of them but link
// targets and what a lookup finds: an O_PATH descriptor cannot be read,
// mapped or opened again for reading. Neither trusts the other: each parses
// what the other sends strictly (wire::parse_peer_request,
// parse_peer_response). The peer exits when the sampler closes the socket
// and is killed by the kernel when the sampler dies (PR_SET_PDEATHSIG); a
// peer that dies, stalls or breaks the protocol fails every read from then
// on (failure()), and the sampler then exits, which stops the daemon.

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "app/confine.hpp"
#include "common/posix.hpp"
#include "common/result.hpp"
#include "correlate/wire.hpp"
#include "sandbox/ptrace_reads.hpp"

namespace driftwatch::app {

class ProcPeer final : public sandbox::PtraceReads {
 public:
  /// Forks the proc peer, which becomes `user` (when started as root),
  /// reads /proc under `proc_root` and does not see `covered_dirs` (see
  /// ConfineOptions), and waits for its hello (at most
  /// `hello_timeout`). Must run in a process with one thread (it forks and
  /// the child goes on without exec), before that process confines itself:
  /// the peer needs the privileges confine() gives up.
  static Result<std::shared_ptr<ProcPeer>> start(
      const DaemonUser& user, const std::filesystem::path& proc_root = "/proc",
      std::vector<std::filesystem::path> covered_dirs = {},
      std::chrono::milliseconds hello_timeout = std::chrono::seconds(10));
  ProcPeer(const ProcPeer&) = delete;
  ProcPeer& operator=(const ProcPeer&) = delete;
  /// Closes the socket (the peer exits) and reaps it.
  ~ProcPeer() override;

  pid_t pid() const { return pid_; }
  /// The peer's confinement report, as it sent it in its hello.
  const nlohmann::json& confinement() const { return confinement_; }

  /// Each link read by the peer. When the peer has failed: EIO for each.
  std::vector<observe::LinkRead> read_links(
      const std::vector<sandbox::ProcLink>& links) const override;
  /// The root view made by the peer. When the peer has failed: not opened.
  sandbox::RootView root_view(pid_t pid, const std::vector<std::string>& paths) const override;

  /// Why the peer can no longer be used (it died, stalled past
  /// kRequestTimeout, or broke the protocol); nullopt while it works.
  std::optional<std::string> failure() const;

  /// How long one request may take before the peer counts as stalled: well
  /// below the front's SamplerProcess::kRequestTimeout, so that the front
  /// hears why.
  static constexpr std::chrono::seconds kRequestTimeout{30};

 private:
  ProcPeer(pid_t pid, Fd socket) : pid_(pid), socket_(std::move(socket)) {}
  Result<correlate::wire::PeerResponse> exchange(correlate::wire::PeerRequest request) const;

  pid_t pid_ = -1;
  Fd socket_;
  nlohmann::json confinement_ = nlohmann::json::object();
  mutable std::mutex mutex_;
  mutable correlate::wire::FrameReader reader_;
  mutable uint64_t next_id_ = 1;
  mutable std::optional<std::string> failure_;
};

}  // namespace driftwatch::app
