#include "app/sampler_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <iostream>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "app/child_process.hpp"
#include "app/proc_peer.hpp"
#include "observe/proc_reader.hpp"
#include "sandbox/sampler.hpp"

namespace driftwatch::app {
namespace {

namespace fs = std::filesystem;
namespace wire = correlate::wire;
using nlohmann::json;

constexpr int kSocketFd = 3;

// ---- the setup message: front -> sampler, once

json path_list(const std::vector<fs::path>& paths) {
  json list = json::array();
  for (const auto& path : paths) list.push_back(path.string());
  return list;
}

json setup_json(const SamplerSetup& setup) {
  const auto& roots = setup.options.roots;
  return json{{"setup",
               {{"runc_roots", path_list(roots.runc_roots)},
                {"crun_roots", path_list(roots.crun_roots)},
                {"containerd_roots", path_list(roots.containerd_roots)},
                {"podman_storage", path_list(roots.podman_storage)},
                {"cgroup_globs", setup.options.cgroup_globs},
                {"boot_time", setup.options.boot_time},
                {"proc_root", setup.options.proc_root.string()},
                {"cgroup_root", setup.options.cgroup_root.string()},
                {"hash_bundle_config", setup.options.hash_bundle_config},
                {"state_dir", setup.state_dir.string()},
                {"user",
                 {{"name", setup.user.name},
                  {"uid", setup.user.uid},
                  {"gid", setup.user.gid},
                  {"dedicated", setup.user.dedicated}}}}}};
}

Result<std::vector<std::string>> string_list(const json& doc, const char* key) {
  const auto it = doc.find(key);
  if (it == doc.end() || !it->is_array() || it->size() > 256)
    return fail("setup: ", key, ": not a list of at most 256 strings");
  std::vector<std::string> out;
  for (const auto& item : *it) {
    if (!item.is_string() || item.get_ref<const std::string&>().size() > 4096)
      return fail("setup: ", key, ": not a list of strings");
    out.push_back(item.get<std::string>());
  }
  return out;
}

Result<SamplerSetup> parse_setup(const json& message) {
  try {
    if (!message.is_object() || !message.contains("setup") || !message["setup"].is_object())
      return fail("the first message is not a setup object");
    const json& s = message["setup"];
    SamplerSetup setup;
    DW_TRY(runc, string_list(s, "runc_roots"));
    DW_TRY(crun, string_list(s, "crun_roots"));
    DW_TRY(containerd, string_list(s, "containerd_roots"));
    DW_TRY(podman, string_list(s, "podman_storage"));
    DW_TRY(globs, string_list(s, "cgroup_globs"));
    setup.options.roots.runc_roots.assign(runc.begin(), runc.end());
    setup.options.roots.crun_roots.assign(crun.begin(), crun.end());
    setup.options.roots.containerd_roots.assign(containerd.begin(), containerd.end());
    setup.options.roots.podman_storage.assign(podman.begin(), podman.end());
    setup.options.cgroup_globs = std::move(globs);
    if (!s.contains("boot_time") || !s["boot_time"].is_number_integer())
      return fail("setup: boot_time: not an integer");
    setup.options.boot_time = s["boot_time"].get<int64_t>();
    for (const char* key : {"proc_root", "cgroup_root"})
      if (!s.contains(key) || !s[key].is_string()) return fail("setup: ", key, ": not a string");
    setup.options.proc_root = s["proc_root"].get<std::string>();
    setup.options.cgroup_root = s["cgroup_root"].get<std::string>();
    if (!s.contains("hash_bundle_config") || !s["hash_bundle_config"].is_boolean())
      return fail("setup: hash_bundle_config: not a boolean");
    setup.options.hash_bundle_config = s["hash_bundle_config"].get<bool>();
    if (!s.contains("state_dir") || !s["state_dir"].is_string())
      return fail("setup: state_dir: not a string");
    setup.state_dir = s["state_dir"].get<std::string>();
    if (!s.contains("user") || !s["user"].is_object()) return fail("setup: user: not an object");
    const json& u = s["user"];
    if (!u.contains("name") || !u["name"].is_string() || !u.contains("uid") ||
        !u["uid"].is_number_unsigned() || !u.contains("gid") || !u["gid"].is_number_unsigned() ||
        !u.contains("dedicated") || !u["dedicated"].is_boolean())
      return fail("setup: user: needs name, uid, gid and dedicated");
    setup.user.name = u["name"].get<std::string>();
    setup.user.uid = u["uid"].get<uid_t>();
    setup.user.gid = u["gid"].get<gid_t>();
    setup.user.dedicated = u["dedicated"].get<bool>();
    if (setup.user.uid == 0 || setup.user.gid == 0)
      if (geteuid() == 0) return fail("setup: user: the sampler does not run as root");
    return setup;
  } catch (const std::exception& e) {
    return fail("setup: ", e.what());
  }
}

// One request, answered. Never throws: sweep() and sample_one() do not, and
// an exception from anywhere else is the response's error.
wire::Response answer(const correlate::SweepOptions& options, const wire::Request& request) {
  wire::Response response;
  response.id = request.id;
  try {
    if (request.op == wire::Request::Op::sweep) {
      auto result = correlate::sweep(options, request.scopes);
      for (auto& item : result.items) response.items.push_back(wire::to_sample(std::move(item)));
      response.problems = std::move(result.problems);
    } else {
      auto item = correlate::sample_one(options, request.sandbox_id, request.scopes);
      if (item) {
        response.items.push_back(wire::to_sample(std::move(*item)));
      } else {
        response.error = item.error().message;
        response.vanished = item.error().vanished;
      }
    }
  } catch (const std::exception& e) {
    response.items.clear();
    response.error = std::string("internal error in the sampler: ") + e.what();
  }
  return response;
}

}  // namespace

// ---- the front's side

Result<std::unique_ptr<SamplerProcess>> SamplerProcess::start(
    const SamplerSetup& setup, const fs::path& exe, std::chrono::milliseconds hello_timeout) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
    return fail("cannot make the sampler's socket: ", describe_errno(errno));
  Fd ours(pair[0]);
  Fd theirs(pair[1]);
  const std::string exe_path = exe.string();
  const char* argv[] = {"driftwatch", "sampler-process", nullptr};
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return fail("cannot start the sampler process: fork: ", describe_errno(errno));
  if (pid == 0) {
    // The child: async-signal-safe calls only until execv. The front's
    // blocked stop signals are not the sampler's.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    if (theirs.get() == kSocketFd) {
      ::fcntl(kSocketFd, F_SETFD, 0);
    } else if (::dup2(theirs.get(), kSocketFd) != kSocketFd) {
      ::_exit(127);
    }
    ::syscall(SYS_close_range, kSocketFd + 1, ~0U, 0);
    ::execv(exe_path.c_str(), const_cast<char* const*>(argv));
    ::_exit(127);
  }
  theirs.reset();
  std::unique_ptr<SamplerProcess> process(new SamplerProcess(pid, std::move(ours)));
  auto stop = [&](const Error& error) -> Result<std::unique_ptr<SamplerProcess>> {
    ::kill(pid, SIGKILL);
    return fail("sampler process (", exe_path, "): ", error.message);
  };
  if (auto sent = process->send(setup_json(setup)); !sent) return stop(sent.error());
  auto message = process->receive(std::chrono::steady_clock::now() + hello_timeout);
  if (!message) return stop(message.error());
  auto hello = wire::parse_hello(*message);
  if (!hello) return stop(Error{"its hello: " + hello.error().message});
  if (hello->pid != pid)
    return stop(Error{"its hello names pid " + std::to_string(hello->pid) + ", not " +
                      std::to_string(pid)});
  process->hello_ = std::move(*hello);
  process->failure_.reset();
  return process;
}

SamplerProcess::~SamplerProcess() {
  socket_.reset();  // the sampler reads end of stream and exits
  // Still there after 2 s: killed if this process may (not from inside the
  // front's Landlock domain), and by the kernel when this process exits.
  reap_child(pid_);
}

void SamplerProcess::shut_down() {
  ::shutdown(socket_.get(), SHUT_RDWR);
}

std::optional<std::string> SamplerProcess::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

Error SamplerProcess::broke(std::string why) {  // with mutex_ held
  // A killed process closes its socket before it becomes a zombie: give it
  // a moment to, so that the log says how it ended. Called off the loop.
  int status = 0;
  for (int i = 0; pid_ > 0 && i < 100; ++i) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      why += " (the sampler process " + describe_wait_status(status) + ")";
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  failure_ = why;
  return Error{"sampler process: " + why};
}

Result<void> SamplerProcess::send(const json& message) {
  const std::string bytes = wire::encode_frame(message);
  const auto deadline = std::chrono::steady_clock::now() + kRequestTimeout;
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(socket_.get(), bytes.data() + done, bytes.size() - done,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return std::unexpected(broke("cannot send: " + describe_errno(errno)));
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::unexpected(broke("stalled: it reads no requests"));
    pollfd p{socket_.get(), POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left.count()));
  }
  return {};
}

Result<json> SamplerProcess::receive(std::chrono::steady_clock::time_point deadline) {
  char buffer[1 << 16];
  for (;;) {
    auto frame = reader_.next();
    if (!frame) return std::unexpected(broke("sent a bad frame: " + frame.error().message));
    if (*frame) return std::move(**frame);
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::unexpected(broke("stalled: no answer in time"));
    pollfd p{socket_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR)
      return std::unexpected(broke("poll: " + describe_errno(errno)));
    if (ready <= 0) continue;
    const ssize_t n = ::recv(socket_.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (n == 0) return std::unexpected(broke("closed its socket"));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return std::unexpected(broke("cannot read: " + describe_errno(errno)));
    }
    reader_.feed(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

Result<wire::Response> SamplerProcess::exchange(const wire::Request& request) {
  if (failure_) return fail("sampler process: ", *failure_);
  if (auto sent = send(wire::to_json(request)); !sent) return std::unexpected(sent.error());
  DW_TRY(message, receive(std::chrono::steady_clock::now() + kRequestTimeout));
  auto response = wire::parse_response(message);
  if (!response) return std::unexpected(broke("sent a bad response: " + response.error().message));
  if (auto answers = wire::check_answers(request, *response); !answers)
    return std::unexpected(broke("sent a wrong answer: " + answers.error().message));
  return response;
}

Result<correlate::SweepResult> SamplerProcess::sweep(const correlate::ScopesBySandbox& scopes) {
  std::lock_guard lock(mutex_);
  wire::Request request;
  request.id = next_id_++;
  request.op = wire::Request::Op::sweep;
  request.scopes = scopes;
  correlate::SweepResult result;
  result.problems = wire::fit_to_limits(request);
  DW_TRY(response, exchange(request));
  for (auto& problem : response.problems) result.problems.push_back(std::move(problem));
  for (auto& sample : response.items) {
    const std::string id = sample.ref.sandbox_id;
    auto item = wire::to_sweep_item(std::move(sample), wire::scope_of(request, id));
    if (!item) {
      result.problems.push_back("sandbox " + id + ": not sampled: " + item.error().message);
      continue;
    }
    result.items.push_back(std::move(*item));
  }
  return result;
}

Result<correlate::SweepItem> SamplerProcess::sample_one(std::string_view sandbox_id,
                                                        const correlate::ScopesBySandbox& scopes) {
  std::lock_guard lock(mutex_);
  wire::Request request;
  request.id = next_id_++;
  request.op = wire::Request::Op::sample_one;
  request.sandbox_id = std::string(sandbox_id);
  request.scopes = scopes;
  (void)wire::fit_to_limits(request);
  DW_TRY(response, exchange(request));
  if (response.error) {
    Error error{*response.error};
    error.vanished = response.vanished;
    return std::unexpected(std::move(error));
  }
  return wire::to_sweep_item(std::move(response.items.front()),
                             wire::scope_of(request, sandbox_id));
}

// ---- the sampler's side

int run_sampler_process() {
  struct stat st {};
  if (::fstat(kSocketFd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    std::cerr << "driftwatch sampler-process: descriptor 3 is not a socket: this process is "
                 "started by `driftwatch run`, not by hand\n";
    return 2;
  }
  auto complain = [](const std::string& what) {
    std::cerr << "driftwatch sampler-process: " << what << "\n";
    return 2;
  };
  const pid_t front = ::getppid();
  wire::FrameReader reader;
  auto first = wire::read_frame(kSocketFd, reader);
  if (!first) return complain("no setup from the front: " + first.error().message);
  auto setup = parse_setup(*first);
  if (!setup) return complain(setup.error().message);
  correlate::SweepOptions options = std::move(setup->options);
  // Read before confinement, as root: every sample compares with these.
  {
    observe::ProcReader proc(options.proc_root);
    options.host_namespaces = sandbox::Sampler::read_host_namespaces(proc);
  }
  // The ptrace-mode reads go to the proc peer, forked now, while this
  // process has one thread and the privileges the peer confines itself
  // from; the sampler keeps no CAP_SYS_PTRACE.
  // Neither sees the front's state dir (its node key): covered in their
  // mount namespaces.
  std::vector<fs::path> covered;
  if (!setup->state_dir.empty()) covered.push_back(setup->state_dir);
  auto peer = ProcPeer::start(setup->user, options.proc_root, covered);
  if (!peer) return complain("cannot start the proc peer: " + peer.error().message);
  options.ptrace_reads = *peer;
  Fd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!null) return complain("cannot open /dev/null: " + describe_errno(errno));
  std::vector<fs::path> roots = options.roots.runc_roots;
  for (const auto* more :
       {&options.roots.crun_roots, &options.roots.containerd_roots, &options.roots.podman_storage})
    roots.insert(roots.end(), more->begin(), more->end());
  auto report = confine(sampler_confine_options(setup->user, std::move(roots), covered));
  if (!report) return complain("cannot confine the sampler: " + report.error().message);
  // The credential change cleared the parent-death signal: set it again,
  // and make sure the front did not die meanwhile.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != front) return 3;
  // From here on the sampler writes to its sockets only (its filter refuses
  // opening anything for writing; what it inherited goes to /dev/null).
  for (int fd : {0, 1, 2}) ::dup2(null.get(), fd);
  null.reset();

  wire::Hello hello;
  hello.pid = ::getpid();
  hello.host_namespaces = *options.host_namespaces;
  hello.confinement = to_json(*report);
  hello.proc_peer_pid = (*peer)->pid();
  hello.proc_peer_confinement = (*peer)->confinement();
  if (!wire::write_frame(kSocketFd, wire::to_json(hello))) return 3;
  for (;;) {
    auto message = wire::read_frame(kSocketFd, reader);
    if (!message) return 0;  // the front closed the socket, or broke the stream
    auto request = wire::parse_request(*message);
    if (!request) return 4;  // the front would not understand an answer either
    auto response = answer(options, *request);
    // A peer that failed made every read of this answer fail: the front
    // hears of it as this process's exit (5), and stops the daemon.
    if ((*peer)->failure()) return 5;
    wire::fit_to_limits(response);
    if (!wire::write_frame(kSocketFd, wire::to_json(response))) return 0;
  }
}

}  // namespace driftwatch::app
