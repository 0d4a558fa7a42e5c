#include "app/proc_peer.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>
#include <iostream>

#include "app/child_process.hpp"
#include "observe/proc_reader.hpp"

namespace driftwatch::app {
namespace {

namespace fs = std::filesystem;
namespace wire = correlate::wire;
using nlohmann::json;

// The peer's end of the socket pair, once it has closed everything else.
constexpr int kPeerSocketFd = 3;

// One request, answered by this process (the peer).
wire::PeerResponse answer(const sandbox::LocalPtraceReads& reads,
                          const wire::PeerRequest& request) {
  wire::PeerResponse response;
  response.id = request.id;
  if (request.op == wire::PeerRequest::Op::links)
    response.links = reads.read_links(request.links);
  else
    response.root_view = reads.root_view(request.pid, request.paths);
  wire::fit_to_limits(response);
  return response;
}

// The body of the peer, in the child of ProcPeer::start(): confines itself,
// says hello, answers until the sampler closes the socket. Returns the exit
// code.
int run_proc_peer(const DaemonUser& user, const fs::path& proc_root,
                  std::vector<fs::path> covered_dirs, pid_t sampler) {
  auto complain = [](const std::string& what) {
    std::cerr << "driftwatch proc peer: " << what << "\n";
    return 2;
  };
  // The sampler going away must end a send, not this process by SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return complain("cannot open /dev/null: " + describe_errno(errno));
  auto report = confine(proc_peer_confine_options(user, std::move(covered_dirs)));
  if (!report) return complain("cannot confine the proc peer: " + report.error().message);
  // The credential change cleared the parent-death signal: set it again,
  // and make sure the sampler did not die meanwhile.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != sampler) return 3;
  for (int fd : {0, 1, 2}) ::dup2(null.get(), fd);
  null.reset();

  wire::PeerHello hello;
  hello.pid = ::getpid();
  hello.confinement = to_json(*report);
  if (!wire::write_frame(kPeerSocketFd, wire::to_json(hello))) return 3;
  const sandbox::LocalPtraceReads reads{observe::ProcReader(proc_root)};
  wire::FrameReader reader;
  for (;;) {
    auto message = wire::read_frame(kPeerSocketFd, reader);
    if (!message) return 0;  // the sampler closed the socket, or broke the stream
    auto request = wire::parse_peer_request(*message);
    if (!request) return 4;  // the sampler would not understand an answer either
    if (!wire::write_frame(kPeerSocketFd, wire::to_json(answer(reads, *request)))) return 0;
  }
}

Result<void> set_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
    return fail("cannot set the proc peer's socket timeouts: ", describe_errno(errno));
  return {};
}

}  // namespace

Result<std::shared_ptr<ProcPeer>> ProcPeer::start(const DaemonUser& user, const fs::path& proc_root,
                                                  std::vector<fs::path> covered_dirs,
                                                  std::chrono::milliseconds hello_timeout) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return fail("cannot make the proc peer's socket: ", describe_errno(errno));
  Fd ours(pair[0]);
  Fd theirs(pair[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return fail("cannot start the proc peer: fork: ", describe_errno(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    // Nothing of the sampler's but its end of the pair (the front's socket
    // included, which is the sampler's descriptor 3): dup2 replaces it.
    if (theirs.get() != kPeerSocketFd && ::dup2(theirs.get(), kPeerSocketFd) != kPeerSocketFd)
      ::_exit(127);
    ::syscall(SYS_close_range, kPeerSocketFd + 1, ~0U, 0);
    int code = 2;
    try {
      code = run_proc_peer(user, proc_root, std::move(covered_dirs), parent);
    } catch (const std::exception& e) {
      std::cerr << "driftwatch proc peer: internal error: " << e.what() << "\n";
    }
    ::_exit(code);
  }
  theirs.reset();
  std::shared_ptr<ProcPeer> peer(new ProcPeer(pid, std::move(ours)));
  auto stop = [&](const std::string& why) -> Result<std::shared_ptr<ProcPeer>> {
    ::kill(pid, SIGKILL);
    int status = 0;
    std::string how;
    if (::waitpid(pid, &status, 0) == pid) how = " (it " + describe_wait_status(status) + ")";
    peer->pid_ = -1;
    return fail("proc peer: ", why, how);
  };
  if (auto set = set_timeouts(peer->socket_.get(), hello_timeout); !set)
    return stop(set.error().message);
  auto message = wire::read_frame(peer->socket_.get(), peer->reader_);
  if (!message) return stop("no hello: " + message.error().message);
  auto hello = wire::parse_peer_hello(*message);
  if (!hello) return stop("its hello: " + hello.error().message);
  if (hello->pid != pid)
    return stop("its hello names pid " + std::to_string(hello->pid) + ", not " +
                std::to_string(pid));
  peer->confinement_ = std::move(hello->confinement);
  if (auto set = set_timeouts(peer->socket_.get(), kRequestTimeout); !set)
    return stop(set.error().message);
  return peer;
}

ProcPeer::~ProcPeer() {
  socket_.reset();  // the peer reads end of stream and exits
  // Still there after 2 s: killed if this process may (a confined sampler
  // may not signal), and by the kernel when this process exits.
  reap_child(pid_);
}

std::optional<std::string> ProcPeer::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

Result<wire::PeerResponse> ProcPeer::exchange(wire::PeerRequest request) const {
  std::lock_guard lock(mutex_);
  if (failure_) return fail("proc peer: ", *failure_);
  auto broke = [&](const std::string& why) -> Result<wire::PeerResponse> {
    failure_ = why;
    ::shutdown(socket_.get(), SHUT_RDWR);
    return fail("proc peer: ", why);
  };
  request.id = next_id_++;
  if (auto sent = wire::write_frame(socket_.get(), wire::to_json(request)); !sent)
    return broke("cannot send a request: " + sent.error().message);
  auto message = wire::read_frame(socket_.get(), reader_);
  if (!message) return broke("no answer: " + message.error().message);
  auto response = wire::parse_peer_response(*message, request);
  if (!response) return broke("sent a bad response: " + response.error().message);
  return response;
}

std::vector<observe::LinkRead> ProcPeer::read_links(
    const std::vector<sandbox::ProcLink>& links) const {
  std::vector<observe::LinkRead> out;
  out.reserve(links.size());
  for (size_t start = 0; start < links.size(); start += wire::kMaxPeerLinks) {
    wire::PeerRequest request;
    request.op = wire::PeerRequest::Op::links;
    const size_t end = std::min(links.size(), start + wire::kMaxPeerLinks);
    request.links.assign(links.begin() + static_cast<std::ptrdiff_t>(start),
                         links.begin() + static_cast<std::ptrdiff_t>(end));
    auto response = exchange(std::move(request));
    if (!response) break;
    for (auto& link : response->links) out.push_back(std::move(link));
  }
  out.resize(links.size(), observe::LinkRead{EIO, {}});
  return out;
}

sandbox::RootView ProcPeer::root_view(pid_t pid, const std::vector<std::string>& paths) const {
  if (paths.size() > wire::kMaxRootViewPaths) return {};  // the front's limits forbid it
  wire::PeerRequest request;
  request.op = wire::PeerRequest::Op::root_view;
  request.pid = pid;
  request.paths = paths;
  auto response = exchange(std::move(request));
  if (!response || !response->root_view) return {};
  return std::move(*response->root_view);
}

}  // namespace driftwatch::app
