#include "support/process_guard.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>
#include <utility>

extern char** environ;

namespace driftwatch::testing {
namespace {

using namespace std::chrono_literals;

// PATH as most shells have it, plus the sbin directories a non-root PATH
// lacks: runc lives in /usr/sbin on Debian.
constexpr std::string_view kFallbackPath =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::runtime_error system_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err));
}

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

std::pair<UniqueFd, UniqueFd> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw system_error("pipe2", errno);
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

int decode_wait_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string resolve_program(const std::vector<std::string>& argv) {
  if (argv.empty()) throw std::runtime_error("cannot start a command with an empty argv");
  std::string path = have_tool(argv.front());
  if (path.empty()) {
    throw std::runtime_error("cannot start `" + describe_command(argv) + "`: " + argv.front() +
                             " is not an executable in PATH");
  }
  return path;
}

std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  out.reserve(argv.size() + 1);
  for (const auto& arg : argv) out.push_back(const_cast<char*>(arg.c_str()));
  out.push_back(nullptr);
  return out;
}

// posix_spawn attributes and file actions with RAII, shared by both spawners.
struct SpawnSetup {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;

  SpawnSetup() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
    // Own process group, so a kill reaches grandchildren too; default signal
    // dispositions and an empty mask, whatever the test runner set up.
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  pid_t spawn(const std::vector<std::string>& argv) {
    std::string program = resolve_program(argv);
    // Nothing of the test process beyond stdio leaks into the child.
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
    auto args = c_argv(argv);
    pid_t pid = -1;
    int err = posix_spawn(&pid, program.c_str(), &actions, &attr, args.data(), environ);
    if (err != 0) throw system_error("cannot start `" + describe_command(argv) + "`", err);
    return pid;
  }
};

// Blocks SIGPIPE for this thread while we write to a child's stdin, so that a
// child exiting early yields EPIPE rather than killing the test runner.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &previous_);
  }
  ~SigpipeBlocked() {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    timespec zero{};
    while (sigtimedwait(&pipe_only, nullptr, &zero) == SIGPIPE) {
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t previous_;
};

}  // namespace

std::string have_tool(std::string_view name) {
  auto executable = [](const std::filesystem::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.empty()) return {};
  if (name.find('/') != std::string_view::npos) {
    return executable(std::filesystem::path(name)) ? std::string(name) : std::string();
  }
  std::string search;
  if (const char* env = std::getenv("PATH")) search = env;
  search += ':';
  search += kFallbackPath;
  std::string_view rest = search;
  while (!rest.empty()) {
    auto colon = rest.find(':');
    std::string_view dir = rest.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (dir.empty()) continue;
    auto candidate = std::filesystem::path(dir) / name;
    if (executable(candidate)) return candidate.string();
  }
  return {};
}

std::string describe_command(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& arg : argv) {
    if (!out.empty()) out += ' ';
    out += arg;
  }
  return out;
}

ChildProcess ChildProcess::start(const std::vector<std::string>& argv,
                                 const SpawnOptions& options) {
  SpawnSetup setup;
  // Defaults are private objects, never the host's /dev/null: crun chowns the
  // stdio it inherits when the container has a user namespace.
  UniqueFd empty_stdin, discarded_output;
  std::string in, out;
  if (options.stdin_path) {
    in = options.stdin_path->string();
    posix_spawn_file_actions_addopen(&setup.actions, 0, in.c_str(), O_RDONLY, 0);
  } else {
    UniqueFd write_end;
    std::tie(empty_stdin, write_end) = make_pipe();  // closed at once: reads see EOF
    posix_spawn_file_actions_adddup2(&setup.actions, empty_stdin.get(), 0);
  }
  if (options.output_path) {
    out = options.output_path->string();
    posix_spawn_file_actions_addopen(&setup.actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_APPEND,
                                     0644);
  } else {
    discarded_output = UniqueFd(::memfd_create("discarded-output", MFD_CLOEXEC));
    if (discarded_output.get() < 0) throw system_error("memfd_create", errno);
    posix_spawn_file_actions_adddup2(&setup.actions, discarded_output.get(), 1);
  }
  posix_spawn_file_actions_adddup2(&setup.actions, 1, 2);
  return ChildProcess(setup.spawn(argv));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)), status_(std::exchange(other.status_, std::nullopt)) {}

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) kill();
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
  }
  return *this;
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) kill();
}

std::optional<int> ChildProcess::poll() {
  if (status_ || pid_ <= 0) return status_;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) status_ = decode_wait_status(status);
  return status_;
}

std::optional<int> ChildProcess::wait_for(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!poll()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
  return status_;
}

int ChildProcess::kill() {
  if (pid_ <= 0) return -1;
  if (!poll()) {
    ::kill(-pid_, SIGKILL);
    ::kill(pid_, SIGKILL);  // in case it left its process group
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    status_ = decode_wait_status(status);
  }
  return *status_;
}

CommandResult run_command(const std::vector<std::string>& argv,
                          std::optional<std::string> stdin_text,
                          std::chrono::milliseconds timeout) {
  SigpipeBlocked no_sigpipe;
  auto [out_read, out_write] = make_pipe();
  auto [err_read, err_write] = make_pipe();
  // stdin is a pipe even without text (closed at once, so reads see EOF):
  // never the host's /dev/null, which crun chowns for user-namespaced
  // containers.
  auto [in_read, in_write] = make_pipe();
  SpawnSetup setup;
  posix_spawn_file_actions_adddup2(&setup.actions, in_read.get(), 0);
  posix_spawn_file_actions_adddup2(&setup.actions, out_write.get(), 1);
  posix_spawn_file_actions_adddup2(&setup.actions, err_write.get(), 2);

  ChildProcess child(setup.spawn(argv));
  // Our copies of the child's ends must go, or we never see EOF.
  in_read.reset();
  out_write.reset();
  err_write.reset();

  for (int fd : {out_read.get(), err_read.get(), in_write.get()}) {
    if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }

  CommandResult result;
  std::string_view pending = stdin_text ? std::string_view(*stdin_text) : std::string_view();
  if (pending.empty()) in_write.reset();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto timed_out = [&] {
    child.kill();
    return std::runtime_error("`" + describe_command(argv) + "` did not finish within " +
                              std::to_string(timeout.count()) +
                              " ms; killed it. stdout: " + result.out + " stderr: " + result.err);
  };

  char buffer[16384];
  while (out_read.get() >= 0 || err_read.get() >= 0 || in_write.get() >= 0) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) throw timed_out();
    pollfd fds[3] = {
        {out_read.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}, {in_write.get(), POLLOUT, 0}};
    auto wait_ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
    int n = ::poll(fds, 3, static_cast<int>(std::min<long long>(wait_ms + 1, 1000)));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw system_error("poll on the pipes of `" + describe_command(argv) + "`", errno);
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      UniqueFd& fd = i == 0 ? out_read : err_read;
      std::string& sink = i == 0 ? result.out : result.err;
      ssize_t got = ::read(fd.get(), buffer, sizeof buffer);
      if (got > 0) {
        sink.append(buffer, static_cast<size_t>(got));
      } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
        fd.reset();
      }
    }
    if (fds[2].fd >= 0 && fds[2].revents != 0) {
      ssize_t put = ::write(in_write.get(), pending.data(), pending.size());
      if (put > 0) pending.remove_prefix(static_cast<size_t>(put));
      if (pending.empty() || (put < 0 && errno != EAGAIN && errno != EINTR)) in_write.reset();
    }
  }
  // Both outputs are closed; the child may still be on its way out.
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  auto status = child.wait_for(std::max(remaining, 0ms));
  if (!status) throw timed_out();
  result.exit_code = *status;
  return result;
}

}  // namespace driftwatch::testing
