// confine() as the daemon's drop_privileges step calls it: in a forked child
// that then tries what a compromised daemon would try, and what monitoring
// needs, and reports every outcome to the parent through a pipe. Nothing in
// the child uses Catch; the parent asserts.

#include "app/confine.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/bpf.h>
#include <linux/openat2.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "app/proc_peer.hpp"
#include "common/file_io.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_parsers.hpp"
#include "observe/proc_reader.hpp"
#include "projection/projection.hpp"
#include "sandbox/discovery.hpp"
#include "sandbox/ptrace_reads.hpp"
#include "sandbox/sampler.hpp"
#include "support/skip.hpp"

#ifndef __NR_open_tree_attr
#define __NR_open_tree_attr 467
#endif

namespace fs = std::filesystem;
using driftwatch::app::ConfineOptions;
using driftwatch::app::DaemonUser;
using nlohmann::json;

namespace {

// Written into the address space the victim process shares with the test
// (it is a fork), so an attack knows where to aim.
volatile uint64_t g_marker = 0x5eedf00dcafe0001;

template <size_t N>
uint64_t mask_of(const int (&caps)[N]) {
  uint64_t mask = 0;
  for (int cap : caps) mask |= uint64_t{1} << cap;
  return mask;
}

// A directory under /tmp, removed with everything in it.
class TempDir {
 public:
  explicit TempDir(const std::string& label) {
    std::string pattern = "/tmp/dw-" + label + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Kills and reaps a child process, whatever the test did.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }
  bool alive() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  // Waits for a child that was meant to exit; -1 after the deadline.
  int wait(std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }

 private:
  pid_t pid_;
};

// A root process that sleeps until it is killed: the "other process on the
// host" an attack aims at.
pid_t start_victim() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (;;) ::pause();
  }
  if (pid < 0) throw std::runtime_error("fork failed");
  return pid;
}

struct Attempt {
  bool ok = false;
  int error = 0;
  std::string detail;
};
using Attempts = std::map<std::string, Attempt>;

// The child's end: one JSON line per attempt.
class Recorder {
 public:
  Recorder(int fd, int hold_fd) : fd_(fd), hold_fd_(hold_fd) {}
  void record(const std::string& name, bool ok, int error, const std::string& detail = "") {
    std::string line = json{{"name", name}, {"ok", ok}, {"errno", error}, {"detail", detail}}.dump(
                           -1, ' ', false, json::error_handler_t::replace) +
                       "\n";
    (void)driftwatch::write_all(fd_, line);
  }
  // Waits while the parent reads this process's /proc/PID/status from
  // outside (a Landlocked child cannot read its own): recorded as
  // "/proc/PID/status".
  void hold() {
    record("held", true, 0);
    char byte;
    while (::read(hold_fd_, &byte, 1) < 0 && errno == EINTR) {
    }
  }

 private:
  int fd_;
  int hold_fd_;
};

// The credentials of `pid` as the kernel shows them, as JSON.
std::string status_json(pid_t pid) {
  auto text = driftwatch::read_file("/proc/" + std::to_string(pid) + "/status", 1 << 16);
  if (!text) return "";
  auto status = driftwatch::observe::parse_status(*text);
  if (!status) return "";
  return json{{"uid", status->uid},
              {"gid", status->gid},
              {"groups", status->groups},
              {"CapEff", status->cap_effective},
              {"CapPrm", status->cap_permitted},
              {"CapBnd", status->cap_bounding},
              {"CapInh", status->cap_inheritable},
              {"CapAmb", status->cap_ambient},
              {"NoNewPrivs", status->no_new_privs},
              {"Seccomp", status->seccomp}}
      .dump();
}

// Records a call's outcome: ok when it returned >= 0; errno taken at once.
#define ATTEMPT(recorder, name, expr)                                                 \
  do {                                                                                \
    errno = 0;                                                                        \
    const long attempt_rc_ = static_cast<long>(expr);                                 \
    const int attempt_errno_ = errno;                                                 \
    (recorder).record((name), attempt_rc_ >= 0, attempt_rc_ < 0 ? attempt_errno_ : 0, \
                      "returned " + std::to_string(attempt_rc_));                     \
  } while (false)

// Records ptrace, process_vm_readv/writev and pidfd_getfd aimed at `victim`.
void attack_process(Recorder& r, pid_t victim) {
  ATTEMPT(r, "ptrace PTRACE_ATTACH a root process",
          ::ptrace(PTRACE_ATTACH, victim, nullptr, nullptr));
  ATTEMPT(r, "ptrace PTRACE_SEIZE a root process",
          ::ptrace(PTRACE_SEIZE, victim, nullptr, nullptr));
  uint64_t value = 0xbadbadbadbad;
  iovec local{&value, sizeof value};
  iovec remote{const_cast<uint64_t*>(&g_marker), sizeof value};
  ATTEMPT(r, "process_vm_writev into a root process",
          ::process_vm_writev(victim, &local, 1, &remote, 1, 0));
  ATTEMPT(r, "process_vm_readv from a root process",
          ::process_vm_readv(victim, &local, 1, &remote, 1, 0));
  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, victim, 0));
  ATTEMPT(r, "pidfd_getfd from a root process", ::syscall(SYS_pidfd_getfd, pidfd, 0, 0));
  if (pidfd >= 0) ::close(pidfd);
}

// Runs `body` in a forked child (in its own session, no terminal) and
// returns what it recorded.
Attempts run_in_child(const std::function<void(Recorder&)>& body) {
  int fds[2];
  int hold[2];
  if (::pipe2(fds, O_CLOEXEC) != 0 || ::pipe2(hold, O_CLOEXEC) != 0)
    throw std::runtime_error("pipe failed");
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    ::close(fds[0]);
    ::close(hold[1]);
    ::setsid();
    Recorder recorder(fds[1], hold[0]);
    try {
      body(recorder);
    } catch (const std::exception& e) {
      recorder.record("exception", false, 0, e.what());
    }
    recorder.record("done", true, 0);
    ::_exit(0);
  }
  ChildGuard child(pid);
  ::close(fds[1]);
  ::close(hold[0]);
  driftwatch::Fd reader(fds[0]);
  driftwatch::Fd release(hold[1]);
  std::string status;
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{reader.get(), POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    char buffer[4096];
    ssize_t n = ::read(reader.get(), buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (release && text.find("\"name\":\"held\"") != std::string::npos) {
      status = status_json(pid);
      release.reset();
    }
  }
  child.wait(std::chrono::seconds(10));
  Attempts attempts;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) break;
    auto doc = json::parse(text.substr(start, end - start), nullptr, false);
    start = end + 1;
    if (doc.is_discarded()) continue;
    attempts[doc["name"].get<std::string>()] =
        Attempt{doc["ok"].get<bool>(), doc["errno"].get<int>(), doc["detail"].get<std::string>()};
  }
  if (!status.empty()) attempts["/proc/PID/status"] = Attempt{true, 0, status};
  return attempts;
}

std::string describe(const Attempts& attempts, const std::string& name) {
  auto it = attempts.find(name);
  if (it == attempts.end()) return name + ": not recorded";
  return name + ": " + (it->second.ok ? "succeeded" : "failed") +
         (it->second.error ? std::string(" (") + std::strerror(it->second.error) + ")" : "") +
         (it->second.detail.empty() ? "" : " " + it->second.detail);
}

// The attempt failed with one of `errors`.
void check_denied(const Attempts& attempts, const std::string& name, std::set<int> errors) {
  INFO(describe(attempts, name));
  auto it = attempts.find(name);
  REQUIRE(it != attempts.end());
  CHECK_FALSE(it->second.ok);
  CHECK(errors.contains(it->second.error));
}

void check_allowed(const Attempts& attempts, const std::string& name) {
  INFO(describe(attempts, name));
  auto it = attempts.find(name);
  REQUIRE(it != attempts.end());
  CHECK(it->second.ok);
}

// The child's confine() report; the test stops unless confine() worked and
// the child ran to its end.
json confine_report(Attempts& attempts) {
  INFO("child recorded " << attempts.size() << " attempts");
  REQUIRE(attempts.contains("confine"));
  INFO(describe(attempts, "confine"));
  REQUIRE(attempts["confine"].ok);
  REQUIRE_FALSE(attempts.contains("exception"));
  REQUIRE(attempts.contains("done"));
  return json::parse(attempts["confine"].detail);
}

// /proc/PID/status of the held child: the daemon user, exactly `caps`
// (bounding set too), no_new_privs, a seccomp filter.
void check_status(Attempts& attempts, const DaemonUser& user, uint64_t caps) {
  check_allowed(attempts, "/proc/PID/status");
  auto status = json::parse(attempts["/proc/PID/status"].detail);
  INFO(status.dump());
  for (int i = 0; i < 4; ++i) CHECK(status["uid"][i] == user.uid);
  CHECK(status["CapEff"] == caps);
  CHECK(status["CapPrm"] == caps);
  CHECK(status["CapBnd"] == caps);
  CHECK(status["CapAmb"] == 0);
  CHECK(status["NoNewPrivs"] == true);
  CHECK(status["Seccomp"] == 2);
}

void write_text(const fs::path& path, const std::string& text, mode_t mode) {
  std::ofstream(path) << text;
  fs::permissions(path, static_cast<fs::perms>(mode), fs::perm_options::replace);
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct stat stat_of(const fs::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("cannot stat " + path.string());
  return st;
}

}  // namespace

namespace {

// What an attack aims at on the host, under one temp dir (0755): root's
// file, a world-writable directory, and a runc state root as runc leaves it
// (0700 root, 0600 state.json).
struct HostFiles {
  explicit HostFiles(const std::string& label) : base(label) {
    fs::permissions(base.path(), fs::perms(0755), fs::perm_options::replace);
    write_text(victim_file, "root's\n", 0644);
    fs::create_directory(public_dir);
    fs::permissions(public_dir, fs::perms(01777), fs::perm_options::replace);
    fs::create_directories(runc_root / "c1");
    fs::permissions(runc_root, fs::perms(0700), fs::perm_options::replace);
    write_text(runc_root / "c1" / "state.json", "{\"init_process_pid\": 1}\n", 0600);
  }
  TempDir base;
  const fs::path victim_file = base.path() / "root-owned.txt";
  const fs::path public_dir = base.path() / "public";
  const fs::path runc_root = base.path() / "runc";
};

}  // namespace

namespace {

// The front's drop_privileges, in a child, then every attempt.
void check_confined_front() {
  auto user = driftwatch::app::resolve_daemon_user();
  REQUIRE(user);

  HostFiles host("confine");
  const TempDir& base = host.base;
  const fs::path& victim_file = host.victim_file;
  const fs::path& public_dir = host.public_dir;
  const fs::path& runc_root = host.runc_root;
  // A state dir as an earlier version running as root left it: 0700, root's,
  // with a symlink to root's file and a hard link of a root-only file (the
  // hand-over must change neither of those files).
  const fs::path state = base.path() / "state";
  fs::create_directories(state / "ingest");
  fs::permissions(state, fs::perms(0700), fs::perm_options::replace);
  write_text(state / "ingest" / "accepted.jsonl", "{}\n", 0600);
  fs::create_symlink(victim_file, state / "link-to-root-owned");
  const fs::path outside_secret = base.path() / "outside-secret";
  write_text(outside_secret, "secret\n", 0600);
  fs::create_hard_link(outside_secret, state / "hard-link");
  // A journal root-only, as runc's state root is.
  const fs::path journal_dir = base.path() / "journals";
  fs::create_directory(journal_dir);
  fs::permissions(journal_dir, fs::perms(0700), fs::perm_options::replace);
  write_text(journal_dir / "launches.jsonl", "{\"line\": 1}\n", 0600);
  const fs::path etc_file = "/etc/driftwatch-confine-test-" + std::to_string(::getpid());
  const fs::path tmp_file = "/tmp/driftwatch-confine-test-" + std::to_string(::getpid());
  struct Cleanup {
    fs::path a, b;
    ~Cleanup() {
      std::error_code ec;
      fs::remove(a, ec);
      fs::remove(b, ec);
    }
  } cleanup{etc_file, tmp_file};
  struct CleanupVia {
    fs::path a;
    ~CleanupVia() {
      std::error_code ec;
      fs::remove(a, ec);
    }
  } cleanup_via{tmp_file.string() + "-via-root"};

  // A TCP listener the confined code must not reach.
  driftwatch::Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  REQUIRE(listener);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(listener.get(), 4) == 0);
  socklen_t length = sizeof address;
  REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0);

  // A file handle for root's file, made while still unconfined: what
  // open_by_handle_at would turn into an open file anywhere on the disk.
  std::vector<char> handle_bytes(sizeof(file_handle) + MAX_HANDLE_SZ);
  auto* handle = reinterpret_cast<file_handle*>(handle_bytes.data());
  handle->handle_bytes = MAX_HANDLE_SZ;
  int mount_id = 0;
  REQUIRE(::name_to_handle_at(AT_FDCWD, victim_file.c_str(), handle, &mount_id, 0) == 0);

  ChildGuard victim(start_victim());
  const std::string victim_proc = "/proc/" + std::to_string(victim.pid());

  driftwatch::app::NodeConfig config;
  config.state_dir = state;
  config.launch_journals = {journal_dir / "launches.jsonl"};
  config.runc_roots = {runc_root};
  config.crun_roots = {};

  auto attempts = run_in_child([&](Recorder& r) {
    // A socket made before the step, as the daemon holds its listener.
    int early_socket = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    // What the daemon does: prepare_state_dir, then drop_privileges.
    auto options = driftwatch::app::confine_options_for(config);
    if (!options) return r.record("confine", false, 0, options.error().message);
    auto prepared = driftwatch::app::ensure_state_dir(state, options->user);
    if (!prepared) return r.record("confine", false, 0, prepared.error().message);
    auto report = driftwatch::app::confine(*options);
    if (!report) return r.record("confine", false, 0, report.error().message);
    r.record("confine", true, 0, to_json(*report).dump());

    // ---- attacks
    ATTEMPT(r, "overwrite root's file outside the state dir",
            ::open(victim_file.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC));
    ATTEMPT(r, "chmod root's file", ::chmod(victim_file.c_str(), 0666));
    ATTEMPT(r, "chown root's file", ::chown(victim_file.c_str(), ::getuid(), ::getgid()));
    ATTEMPT(r, "create a file in /etc",
            ::open(etc_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ATTEMPT(r, "create a file in /tmp",
            ::open(tmp_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ATTEMPT(
        r, "create a file in a world-writable directory outside the state dir",
        ::open((public_dir / "planted").c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ATTEMPT(r, "read /etc/shadow", ::open("/etc/shadow", O_RDONLY | O_CLOEXEC));
    for (const char* dir : {"/root", "/home", "/etc/ssh"}) {
      std::error_code ec;
      size_t entries = 0;
      for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
           it.increment(ec))
        ++entries;
      r.record(std::string("list ") + dir, entries > 0, 0, std::to_string(entries) + " entries");
    }
    ATTEMPT(r, "write a sysctl", ::open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC));
    attack_process(r, victim.pid());
    ATTEMPT(r, "open a root process's /proc/PID/mem for writing",
            ::open((victim_proc + "/mem").c_str(), O_RDWR | O_CLOEXEC));
    fs::create_directory(state / "mnt");
    ATTEMPT(r, "mount a tmpfs", ::mount("tmpfs", (state / "mnt").c_str(), "tmpfs", 0, nullptr));
    ATTEMPT(r, "unshare a user namespace", ::unshare(CLONE_NEWUSER));
    {
      errno = 0;
      long rc = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
      if (rc == 0) ::_exit(0);
      int error = errno;
      if (rc > 0) ::waitpid(static_cast<pid_t>(rc), nullptr, 0);
      r.record("clone into a new user namespace", rc > 0, rc < 0 ? error : 0);
    }
    {
      bpf_attr attr{};
      attr.map_type = BPF_MAP_TYPE_ARRAY;
      attr.key_size = 4;
      attr.value_size = 8;
      attr.max_entries = 1;
      ATTEMPT(r, "bpf BPF_MAP_CREATE", ::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr));
    }
    ATTEMPT(r, "init_module", ::syscall(SYS_init_module, nullptr, 0, ""));
    ATTEMPT(r, "finit_module", ::syscall(SYS_finit_module, -1, "", 0));
    ATTEMPT(r, "kill a root process", ::kill(victim.pid(), SIGTERM));
    {
      int mount_fd = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      auto* h = reinterpret_cast<file_handle*>(const_cast<char*>(handle_bytes.data()));
      ATTEMPT(r, "open_by_handle_at root's file", ::open_by_handle_at(mount_fd, h, O_RDWR));
      if (mount_fd >= 0) ::close(mount_fd);
    }
    ATTEMPT(r, "setuid(0)", ::syscall(SYS_setuid, 0));
    ATTEMPT(r, "capset", ::syscall(SYS_capset, nullptr, nullptr));
    ATTEMPT(r, "connect to a TCP listener on 127.0.0.1 with a socket made before",
            ::connect(early_socket, reinterpret_cast<const sockaddr*>(&address), sizeof address));
    ATTEMPT(r, "make a new TCP socket", ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    {
      const char* argv[] = {"/bin/sh", "-c", "true", nullptr};
      ATTEMPT(r, "execute a shell", ::execve("/bin/sh", const_cast<char**>(argv), environ));
    }
    ATTEMPT(r, "io_uring_setup", ::syscall(SYS_io_uring_setup, 1, nullptr));

    // ---- what the single confined process could still do before the
    // split into front and sampler: now out of the front's reach
    {
      const std::string planted = victim_proc + "/root" + tmp_file.string() + "-via-root";
      ATTEMPT(r, "create a file in /tmp through a root process's /proc/PID/root",
              ::open(planted.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    }
    ATTEMPT(r, "read /etc/shadow through a root process's /proc/PID/root",
            ::open((victim_proc + "/root/etc/shadow").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read a root process's memory through /proc/PID/mem",
            ::open((victim_proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    // ---- and what the sampler does, which the front cannot
    ATTEMPT(r, "read /etc/passwd", ::open("/etc/passwd", O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read /proc/1/status", ::open("/proc/1/status", O_RDONLY | O_CLOEXEC));
    {
      char target[256];
      ATTEMPT(r, "readlink a root process's /proc/PID/ns/mnt",
              ::readlink((victim_proc + "/ns/mnt").c_str(), target, sizeof target));
    }
    // The runtime roots may be listed (the change notifications arm a
    // watch on each container there), nothing in them read.
    ATTEMPT(r, "read a state file in a root-only runc root",
            ::open((runc_root / "c1" / "state.json").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "list a root-only runc root",
            ::open(runc_root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));

    // ---- what the front needs still works
    {
      fs::path dir = state / "journals";
      bool ok = ::mkdir(dir.c_str(), 0700) == 0;
      int fd = ::open((dir / "x.tmp").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      ok = ok && fd >= 0 && driftwatch::write_all(fd, "{\"offset\":1}\n") && ::fsync(fd) == 0;
      if (fd >= 0) ::close(fd);
      ok = ok && ::rename((dir / "x.tmp").c_str(), (dir / "x.offset").c_str()) == 0;
      int dirfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      ok = ok && dirfd >= 0 && ::fsync(dirfd) == 0;
      int error = errno;
      if (dirfd >= 0) ::close(dirfd);
      r.record("write, fsync and rename in the state dir", ok, ok ? 0 : error);
    }
    {
      auto journal = driftwatch::read_file(journal_dir / "launches.jsonl", 1 << 16);
      r.record("read a root-only journal", journal.has_value(), 0,
               journal ? "" : journal.error().message);
    }
    {
      std::atomic<bool> ran{false};
      try {
        std::thread thread([&] { ran = true; });
        thread.join();
      } catch (const std::exception& e) {
        r.record("start a thread", false, 0, e.what());
      }
      r.record("start a thread", ran, 0);
    }
    r.hold();
  });

  auto report = confine_report(attempts);
  CHECK(report["role"] == "front");
  CHECK(report["user"]["uid"] == user->uid);
  CHECK(report["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(report["seccomp"] == "filter");
  REQUIRE(report["read_only_mounts"] == true);
  REQUIRE(report["landlocked"] == true);
  const bool read_only_mounts = true;

  const std::set<int> denied_write{EACCES, EPERM, EROFS};
  check_denied(attempts, "overwrite root's file outside the state dir", denied_write);
  check_denied(attempts, "chmod root's file", {EPERM, EROFS});
  check_denied(attempts, "chown root's file", {EPERM, EROFS});
  check_denied(attempts, "create a file in /etc", denied_write);
  if (read_only_mounts) {
    check_denied(attempts, "create a file in /tmp", {EROFS});
    check_denied(attempts, "create a file in a world-writable directory outside the state dir",
                 {EROFS});
    if (fs::exists("/etc/shadow")) check_denied(attempts, "read /etc/shadow", {EACCES});
    // Covered by an empty mount: nothing listed where the host has entries.
    for (const char* dir : {"/root", "/home", "/etc/ssh"}) {
      std::error_code ec;
      if (fs::directory_iterator(dir, ec) == fs::directory_iterator()) continue;
      INFO(describe(attempts, std::string("list ") + dir));
      CHECK_FALSE(attempts[std::string("list ") + dir].ok);
    }
    CHECK_FALSE(fs::exists(tmp_file));
    CHECK(fs::is_empty(public_dir));
  }
  check_denied(attempts, "write a sysctl", denied_write);
  check_denied(attempts, "ptrace PTRACE_ATTACH a root process", {EPERM});
  check_denied(attempts, "ptrace PTRACE_SEIZE a root process", {EPERM});
  check_denied(attempts, "open a root process's /proc/PID/mem for writing", denied_write);
  check_denied(attempts, "process_vm_writev into a root process", {EPERM});
  check_denied(attempts, "process_vm_readv from a root process", {EPERM});
  check_denied(attempts, "pidfd_getfd from a root process", {EPERM});
  check_denied(attempts, "mount a tmpfs", {EPERM});
  check_denied(attempts, "unshare a user namespace", {EPERM});
  check_denied(attempts, "clone into a new user namespace", {EPERM});
  check_denied(attempts, "bpf BPF_MAP_CREATE", {EPERM});
  // EPERM both from the filter and from a missing CAP_SYS_MODULE; the
  // filter-alone test below shows it is the filter's.
  check_denied(attempts, "init_module", {EPERM});
  check_denied(attempts, "finit_module", {EPERM});
  check_denied(attempts, "kill a root process", {EPERM});
  check_denied(attempts, "open_by_handle_at root's file", {EPERM});
  check_denied(attempts, "setuid(0)", {EPERM});
  check_denied(attempts, "capset", {EPERM});
  check_denied(attempts, "connect to a TCP listener on 127.0.0.1 with a socket made before",
               {EPERM});
  check_denied(attempts, "make a new TCP socket", {EPERM});
  check_denied(attempts, "execute a shell", {EPERM});
  check_denied(attempts, "io_uring_setup", {EPERM});

  // Nothing of it happened.
  CHECK(read_text(victim_file) == "root's\n");
  CHECK(stat_of(victim_file).st_uid == 0);
  CHECK((stat_of(victim_file).st_mode & 07777) == 0644);
  CHECK_FALSE(fs::exists(etc_file));
  CHECK(victim.alive());
  sockaddr_in peer{};
  socklen_t peer_length = sizeof peer;
  CHECK(::accept(listener.get(), reinterpret_cast<sockaddr*>(&peer), &peer_length) < 0);
  CHECK(g_marker == 0x5eedf00dcafe0001);

  // The state dir was handed over; nothing it links to was.
  CHECK(stat_of(state).st_uid == user->uid);
  CHECK((stat_of(state).st_mode & 07777) == 0700);
  CHECK(stat_of(state / "ingest").st_uid == user->uid);
  CHECK(stat_of(state / "ingest" / "accepted.jsonl").st_uid == user->uid);
  CHECK(stat_of(state / "link-to-root-owned").st_uid == user->uid);
  CHECK(stat_of(outside_secret).st_uid == 0);  // the hard link was skipped

  // Out of the front's reach now (Landlock: nothing outside the state dir
  // and the journals' directories, no ptrace-mode access out of the domain).
  check_denied(attempts, "create a file in /tmp through a root process's /proc/PID/root",
               {EACCES, EROFS});
  check_denied(attempts, "read /etc/shadow through a root process's /proc/PID/root", {EACCES});
  check_denied(attempts, "read a root process's memory through /proc/PID/mem", {EACCES});
  check_denied(attempts, "read /etc/passwd", {EACCES});
  check_denied(attempts, "read /proc/1/status", {EACCES});
  check_denied(attempts, "readlink a root process's /proc/PID/ns/mnt", {EACCES});
  check_denied(attempts, "read a state file in a root-only runc root", {EACCES});
  CHECK_FALSE(fs::exists(tmp_file.string() + "-via-root"));

  // What the front does.
  for (const char* name : {"write, fsync and rename in the state dir", "read a root-only journal",
                           "start a thread", "list a root-only runc root"})
    check_allowed(attempts, name);
  CHECK(read_text(state / "journals" / "x.offset") == "{\"offset\":1}\n");

  check_allowed(attempts, "/proc/PID/status");
  auto status = json::parse(attempts["/proc/PID/status"].detail);
  INFO(status.dump());
  for (int i = 0; i < 4; ++i) {
    CHECK(status["uid"][i] == user->uid);
    CHECK(status["gid"][i] == user->gid);
  }
  CHECK(status["groups"].empty());
  const uint64_t front = mask_of(driftwatch::app::kFrontCapabilities);
  CHECK(status["CapEff"] == front);
  CHECK(status["CapPrm"] == front);
  CHECK(status["CapBnd"] == front);
  CHECK(status["CapInh"] == 0);
  CHECK(status["CapAmb"] == 0);
  CHECK(status["NoNewPrivs"] == true);
  CHECK(status["Seccomp"] == 2);
}

}  // namespace

namespace {

// The sampler's confinement, in a child: it reads what sampling needs and
// writes nothing at all, wherever and however it tries.
void check_confined_sampler() {
  auto user = driftwatch::app::resolve_daemon_user();
  REQUIRE(user);
  HostFiles host("confine-sampler");
  const TempDir& base = host.base;
  const fs::path& victim_file = host.victim_file;
  const fs::path& public_dir = host.public_dir;
  const fs::path& runc_root = host.runc_root;
  // The daemon user's own directory (as its state dir is): still no write.
  const fs::path own_dir = base.path() / "own";
  fs::create_directory(own_dir);
  REQUIRE(::chown(own_dir.c_str(), user->uid, user->gid) == 0);
  const fs::path own_file = own_dir / "file";
  write_text(own_file, "own\n", 0600);
  REQUIRE(::chown(own_file.c_str(), user->uid, user->gid) == 0);
  // The front's state dir, with its signing key: the daemon user's own, so
  // file modes do not keep the sampler out; its mount namespace must.
  const fs::path state_dir = base.path() / "state";
  fs::create_directory(state_dir);
  REQUIRE(::chown(state_dir.c_str(), user->uid, user->gid) == 0);
  REQUIRE(::chmod(state_dir.c_str(), 0700) == 0);
  const fs::path node_key = state_dir / "node.key";
  write_text(node_key, "the node's private key\n", 0600);
  REQUIRE(::chown(node_key.c_str(), user->uid, user->gid) == 0);
  const fs::path tmp_file = "/tmp/driftwatch-sampler-test-" + std::to_string(::getpid());
  struct Cleanup {
    fs::path a;
    ~Cleanup() {
      std::error_code ec;
      fs::remove(a, ec);
      fs::remove(a.string() + "-via-root", ec);
    }
  } cleanup{tmp_file};

  ChildGuard victim(start_victim());
  const std::string victim_proc = "/proc/" + std::to_string(victim.pid());

  auto attempts = run_in_child([&](Recorder& r) {
    // What the sampler process does before it confines itself: read the
    // host's namespaces, start its proc peer.
    driftwatch::observe::ProcReader proc("/proc");
    const auto host_namespaces = driftwatch::sandbox::Sampler::read_host_namespaces(proc);
    auto peer = driftwatch::app::ProcPeer::start(*user, "/proc", {state_dir});
    if (!peer) return r.record("confine", false, 0, "proc peer: " + peer.error().message);
    auto report = driftwatch::app::confine(
        driftwatch::app::sampler_confine_options(*user, {host.runc_root}, {state_dir}));
    if (!report) return r.record("confine", false, 0, report.error().message);
    r.record("confine", true, 0, to_json(*report).dump());
    const std::string victim_path = victim_file.string();
    const std::string own_path = own_file.string();

    // ---- every way of writing
    ATTEMPT(r, "open root's file for writing", ::open(victim_path.c_str(), O_WRONLY | O_CLOEXEC));
    ATTEMPT(r, "open its own file for reading and writing",
            ::open(own_path.c_str(), O_RDWR | O_CLOEXEC));
    ATTEMPT(r, "truncate its own file on open", ::open(own_path.c_str(), O_RDONLY | O_TRUNC));
    ATTEMPT(r, "create a file in its own directory",
            ::openat(AT_FDCWD, (own_dir / "new").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600));
    ATTEMPT(r, "create a file in /tmp", ::creat(tmp_file.c_str(), 0644));
    ATTEMPT(r, "create a file in /tmp through a root process's /proc/PID/root",
            ::open((victim_proc + "/root" + tmp_file.string() + "-via-root").c_str(),
                   O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ATTEMPT(r, "an unnamed temporary file in /tmp", ::open("/tmp", O_TMPFILE | O_RDWR, 0600));
    {
      open_how how{};
      how.flags = O_WRONLY | O_CREAT;
      how.mode = 0644;
      ATTEMPT(r, "openat2", ::syscall(SYS_openat2, AT_FDCWD, tmp_file.c_str(), &how, sizeof how));
    }
    ATTEMPT(r, "write a sysctl", ::open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC));
    ATTEMPT(r, "open a root process's /proc/PID/mem for writing",
            ::open((victim_proc + "/mem").c_str(), O_RDWR | O_CLOEXEC));
    ATTEMPT(r, "mkdir in a world-writable directory", ::mkdir((public_dir / "d").c_str(), 0755));
    ATTEMPT(r, "symlink in a world-writable directory",
            ::symlink("/etc/shadow", (public_dir / "s").c_str()));
    ATTEMPT(r, "hard-link its own file elsewhere",
            ::link(own_path.c_str(), (public_dir / "l").c_str()));
    ATTEMPT(r, "rename its own file", ::rename(own_path.c_str(), (own_dir / "moved").c_str()));
    ATTEMPT(r, "unlink its own file", ::unlink(own_path.c_str()));
    ATTEMPT(r, "truncate its own file", ::truncate(own_path.c_str(), 0));
    ATTEMPT(r, "chmod its own file", ::chmod(own_path.c_str(), 0666));
    {
      int fd = ::open(own_path.c_str(), O_RDONLY | O_CLOEXEC);
      ATTEMPT(r, "fchmod its own file through a read-only descriptor", ::fchmod(fd, 0666));
      ATTEMPT(r, "set an attribute on its own file", ::fsetxattr(fd, "user.driftwatch", "x", 1, 0));
      if (fd >= 0) ::close(fd);
    }
    ATTEMPT(r, "touch its own file", ::utimensat(AT_FDCWD, own_path.c_str(), nullptr, 0));
    ATTEMPT(r, "kill a root process", ::kill(victim.pid(), SIGTERM));
    ATTEMPT(r, "signal its parent", ::kill(::getppid(), 0));
    attack_process(r, victim.pid());
    ATTEMPT(r, "make a new TCP socket", ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    {
      const char* argv[] = {"/bin/sh", "-c", "true", nullptr};
      ATTEMPT(r, "execute a shell", ::execve("/bin/sh", const_cast<char**>(argv), environ));
    }
    ATTEMPT(r, "mount a tmpfs", ::mount("tmpfs", own_dir.c_str(), "tmpfs", 0, nullptr));

    ATTEMPT(r, "read /etc/shadow", ::open("/etc/shadow", O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read the front's node key", ::open(node_key.c_str(), O_RDONLY | O_CLOEXEC));
    {
      std::error_code ec;
      size_t entries = 0;
      for (auto it = fs::directory_iterator(state_dir, ec); !ec && it != fs::directory_iterator();
           it.increment(ec))
        ++entries;
      r.record("see anything in the front's state dir", entries > 0, ec ? ec.value() : 0,
               std::to_string(entries) + " entries");
    }
    {
      // Its proc peer looks paths up in other processes' roots, this one's
      // too: the key is not found there (absent, or unknown behind the
      // covering mount's mode 000).
      auto view = (*peer)->root_view(::getpid(), {node_key.string()});
      const auto state =
          view.states.empty() ? driftwatch::sandbox::PathState::unknown : view.states.front();
      r.record("through its proc peer: look the front's node key up",
               state != driftwatch::sandbox::PathState::absent &&
                   state != driftwatch::sandbox::PathState::unknown,
               view.opened ? 0 : EACCES, std::string(driftwatch::sandbox::to_string(state)));
    }
    // ---- what it holds no CAP_SYS_PTRACE for: other users' roots and
    // memory, and the links its proc peer reads for it
    ATTEMPT(r, "read /etc/shadow through a root process's /proc/PID/root",
            ::open((victim_proc + "/root/etc/shadow").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read /etc/passwd through a root process's /proc/PID/root",
            ::open((victim_proc + "/root/etc/passwd").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read /etc/shadow through PID 1's /proc/PID/root",
            ::open("/proc/1/root/etc/shadow", O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "open a root process's /proc/PID/root",
            ::open((victim_proc + "/root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    {
      int fd = ::open((victim_proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
      const int open_error = errno;
      uint64_t value = 0;
      long n = fd < 0 ? -1
                      : ::pread(fd, &value, sizeof value,
                                static_cast<off_t>(reinterpret_cast<uintptr_t>(&g_marker)));
      int error = fd < 0 ? open_error : errno;
      r.record("read a root process's memory through /proc/PID/mem", n == sizeof value,
               n < 0 ? error : 0, value == g_marker ? "read the marker" : "");
      if (fd >= 0) ::close(fd);
    }
    ATTEMPT(r, "read a root process's /proc/PID/environ",
            ::open((victim_proc + "/environ").c_str(), O_RDONLY | O_CLOEXEC));
    for (const std::string& link :
         {victim_proc + "/ns/pid", victim_proc + "/ns/mnt", victim_proc + "/exe"}) {
      char target[256];
      ATTEMPT(r, "itself: readlink " + link, ::readlink(link.c_str(), target, sizeof target));
    }

    // ---- sampling still works
    for (const std::string& file :
         {std::string("/proc/1/status"), victim_proc + "/status", victim_proc + "/limits",
          victim_proc + "/cgroup", victim_proc + "/cmdline", std::string("/sys/fs/cgroup")}) {
      std::error_code ec;
      bool ok = fs::is_directory(file, ec)
                    ? fs::directory_iterator(file, ec) != fs::directory_iterator() && !ec
                    : driftwatch::read_file(file, 1 << 20).has_value();
      r.record("read " + file, ok, ok ? 0 : errno);
    }
    {
      // Through its proc peer, as the daemon's sampler reads them.
      std::vector<driftwatch::sandbox::ProcLink> links;
      for (const char* name : {"ns/pid", "ns/mnt", "exe"}) links.push_back({victim.pid(), name});
      const auto answers = (*peer)->read_links(links);
      for (size_t i = 0; i < links.size(); ++i)
        r.record("through its proc peer: readlink " + victim_proc + "/" + links[i].name,
                 answers[i].error == 0, answers[i].error, answers[i].target);
    }
    {
      std::error_code ec;
      size_t entries = 0;
      for (auto it = fs::directory_iterator(runc_root, ec); !ec && it != fs::directory_iterator();
           it.increment(ec))
        ++entries;
      auto text = driftwatch::read_file(runc_root / "c1" / "state.json", 1 << 16);
      r.record("list a root-only 0700 directory and read its 0600 file",
               entries == 1 && text.has_value(), 0, text ? "" : text.error().message);
    }
    {
      driftwatch::observe::CgroupReader cgroups("/sys/fs/cgroup");
      driftwatch::sandbox::Sampler sampler(proc, cgroups, host_namespaces, *peer);
      auto ref = driftwatch::sandbox::sandbox_for_pid(proc, victim.pid());
      driftwatch::Result<driftwatch::projection::Observation> observation =
          std::unexpected(driftwatch::Error{"no sandbox"});
      if (ref)
        observation = sampler.sample(*ref, driftwatch::projection::default_scope());
      else
        observation = std::unexpected(ref.error());
      bool ok = observation && !observation->members.empty() &&
                observation->members.front().namespaces.size() >= 7 &&
                !observation->members.front().exe.empty() && !observation->mount_views.empty() &&
                !(*peer)->failure();
      r.record("sample a root process with the daemon's sampler", ok, 0,
               observation ? driftwatch::projection::members_json(*observation).dump()
                           : observation.error().message);
    }
    r.hold();
  });

  auto report = confine_report(attempts);
  CHECK(report["role"] == "sampler");
  CHECK(report["capabilities"] == json({"CAP_DAC_READ_SEARCH"}));
  CHECK(report["opens"] == "read-only");
  CHECK(report["landlocked"] == false);
  CHECK(report["read_only_mounts"] == true);
  if (fs::exists("/etc/shadow")) check_denied(attempts, "read /etc/shadow", {EACCES});
  // Not readable, not even there: an empty mount covers the state dir.
  check_denied(attempts, "read the front's node key", {ENOENT, EACCES});
  check_denied(attempts, "see anything in the front's state dir", {0, EACCES});
  check_denied(attempts, "through its proc peer: look the front's node key up", {0});
  CHECK(report["hidden_paths"].dump().find(fs::canonical(state_dir).string()) != std::string::npos);

  for (const char* name : {"open root's file for writing",
                           "open its own file for reading and writing",
                           "truncate its own file on open",
                           "create a file in its own directory",
                           "create a file in /tmp",
                           "create a file in /tmp through a root process's /proc/PID/root",
                           "an unnamed temporary file in /tmp",
                           "write a sysctl",
                           "open a root process's /proc/PID/mem for writing",
                           "mkdir in a world-writable directory",
                           "symlink in a world-writable directory",
                           "hard-link its own file elsewhere",
                           "rename its own file",
                           "unlink its own file",
                           "truncate its own file",
                           "chmod its own file",
                           "fchmod its own file through a read-only descriptor",
                           "set an attribute on its own file",
                           "touch its own file",
                           "kill a root process",
                           "signal its parent",
                           "ptrace PTRACE_ATTACH a root process",
                           "ptrace PTRACE_SEIZE a root process",
                           "process_vm_writev into a root process",
                           "process_vm_readv from a root process",
                           "pidfd_getfd from a root process",
                           "make a new TCP socket",
                           "execute a shell",
                           "mount a tmpfs"})
    check_denied(attempts, name, {EPERM});
  check_denied(attempts, "openat2", {ENOSYS});

  // Nothing of it happened.
  CHECK(read_text(victim_file) == "root's\n");
  CHECK(read_text(own_file) == "own\n");
  CHECK((stat_of(own_file).st_mode & 07777) == 0600);
  CHECK(fs::is_empty(public_dir));
  CHECK_FALSE(fs::exists(own_dir / "new"));
  CHECK_FALSE(fs::exists(tmp_file));
  CHECK_FALSE(fs::exists(tmp_file.string() + "-via-root"));
  CHECK(victim.alive());
  CHECK(g_marker == 0x5eedf00dcafe0001);

  for (const char* name : {"read /proc/1/status", "read /sys/fs/cgroup",
                           "list a root-only 0700 directory and read its 0600 file",
                           "sample a root process with the daemon's sampler"})
    check_allowed(attempts, name);
  for (const std::string& suffix : {"/status", "/limits", "/cgroup", "/cmdline"})
    check_allowed(attempts, "read " + victim_proc + suffix);
  for (const std::string& suffix : {"/ns/pid", "/ns/mnt", "/exe"}) {
    // Not by itself: no CAP_SYS_PTRACE. Through its proc peer, which has.
    check_denied(attempts, "itself: readlink " + victim_proc + suffix, {EACCES});
    check_allowed(attempts, "through its proc peer: readlink " + victim_proc + suffix);
  }

  check_status(attempts, *user, mask_of(driftwatch::app::kSamplerCapabilities));

  // What it could before the split, with CAP_SYS_PTRACE (issue 7, defect
  // 6): other users' files through their roots, and their memory.
  for (const char* name :
       {"read /etc/shadow through a root process's /proc/PID/root",
        "read /etc/passwd through a root process's /proc/PID/root",
        "read /etc/shadow through PID 1's /proc/PID/root", "open a root process's /proc/PID/root",
        "read a root process's memory through /proc/PID/mem",
        "read a root process's /proc/PID/environ"})
    check_denied(attempts, name, {EACCES});
}

}  // namespace

namespace {

// The proc peer's confinement, in a child: it reads links and looks paths
// up in other processes' roots, and gets no byte of any file's content.
void check_confined_proc_peer() {
  auto user = driftwatch::app::resolve_daemon_user();
  REQUIRE(user);
  HostFiles host("confine-peer");
  const std::string victim_path = host.victim_file.string();
  const fs::path tmp_file = "/tmp/driftwatch-peer-test-" + std::to_string(::getpid());
  struct Cleanup {
    fs::path a;
    ~Cleanup() {
      std::error_code ec;
      fs::remove(a, ec);
    }
  } cleanup{tmp_file};
  ChildGuard victim(start_victim());
  const std::string victim_proc = "/proc/" + std::to_string(victim.pid());

  auto attempts = run_in_child([&](Recorder& r) {
    auto report = driftwatch::app::confine(driftwatch::app::proc_peer_confine_options(*user));
    if (!report) return r.record("confine", false, 0, report.error().message);
    r.record("confine", true, 0, to_json(*report).dump());

    // ---- no content, of any file, by any open
    ATTEMPT(r, "read /etc/shadow through PID 1's /proc/PID/root",
            ::open("/proc/1/root/etc/shadow", O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read /etc/shadow through a root process's /proc/PID/root",
            ::open((victim_proc + "/root/etc/shadow").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read /etc/passwd through a root process's /proc/PID/root",
            ::open((victim_proc + "/root/etc/passwd").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read a world-readable file", ::open(victim_path.c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "read /etc/hostname", ::openat(AT_FDCWD, "/etc/hostname", O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "list a directory", ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ATTEMPT(r, "open a root process's /proc/PID/mem for reading",
            ::open((victim_proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
    ATTEMPT(r, "open a root process's /proc/PID/mem for writing",
            ::open((victim_proc + "/mem").c_str(), O_RDWR | O_CLOEXEC));
    ATTEMPT(r, "read a root process's /proc/PID/environ",
            ::open((victim_proc + "/environ").c_str(), O_RDONLY | O_CLOEXEC));
    {
      // An O_PATH descriptor: looked up, never read.
      int fd = ::open((victim_proc + "/root/etc/passwd").c_str(), O_PATH | O_CLOEXEC);
      r.record("open /etc/passwd O_PATH through a root process's /proc/PID/root", fd >= 0,
               fd < 0 ? errno : 0);
      char buffer[64];
      ATTEMPT(r, "read an O_PATH descriptor", ::read(fd, buffer, sizeof buffer));
      ATTEMPT(r, "pread an O_PATH descriptor", ::pread(fd, buffer, sizeof buffer, 0));
      errno = 0;
      void* map = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE, fd, 0);
      r.record("mmap an O_PATH descriptor", map != MAP_FAILED, map == MAP_FAILED ? errno : 0);
      if (map != MAP_FAILED) ::munmap(map, 4096);
      ATTEMPT(r, "sendfile from an O_PATH descriptor", ::sendfile(1, fd, nullptr, 64));
      const std::string self = "/proc/self/fd/" + std::to_string(fd);
      ATTEMPT(r, "re-open an O_PATH descriptor for reading through /proc/self/fd",
              ::open(self.c_str(), O_RDONLY | O_CLOEXEC));
      ATTEMPT(r, "re-open an O_PATH descriptor for reading with openat(fd, \"\")",
              ::openat(fd, "", O_RDONLY | O_CLOEXEC));
      char value[256];
      ATTEMPT(r, "read an extended attribute", ::fgetxattr(fd, "security.selinux", value, 256));
      ATTEMPT(r, "read an extended attribute by path",
              ::getxattr((victim_proc + "/root/etc/passwd").c_str(), "security.selinux", value,
                         sizeof value));
      {
        // Passing the descriptor on, to a process that could read it.
        int pair[2] = {-1, -1};
        ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
        char cbuf[CMSG_SPACE(sizeof(int))] = {};
        char byte = 'x';
        iovec iov{&byte, 1};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof cbuf;
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
        ATTEMPT(r, "pass an O_PATH descriptor on with sendmsg", ::sendmsg(pair[0], &msg, 0));
        for (int end : pair)
          if (end >= 0) ::close(end);
      }
      if (fd >= 0) ::close(fd);
    }
    {
      open_how how{};
      how.flags = O_RDONLY;
      ATTEMPT(r, "openat2", ::syscall(SYS_openat2, AT_FDCWD, "/etc/passwd", &how, sizeof how));
    }
    attack_process(r, victim.pid());
    // ---- nor any write
    ATTEMPT(r, "create a file in /tmp",
            ::open(tmp_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    ATTEMPT(r, "create a file in /tmp O_PATH | O_CREAT",
            ::open(tmp_file.c_str(), O_PATH | O_CREAT | O_CLOEXEC, 0644));
    ATTEMPT(r, "mkdir in /tmp", ::mkdir(tmp_file.c_str(), 0755));
    ATTEMPT(r, "kill a root process", ::kill(victim.pid(), SIGTERM));
    ATTEMPT(r, "make a new TCP socket", ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    {
      const char* argv[] = {"/bin/sh", "-c", "true", nullptr};
      ATTEMPT(r, "execute a shell", ::execve("/bin/sh", const_cast<char**>(argv), environ));
    }

    // ---- what it is for
    for (const std::string& link :
         {victim_proc + "/ns/pid", victim_proc + "/ns/mnt", victim_proc + "/exe",
          std::string("/proc/1/ns/mnt"), std::string("/proc/1/exe")}) {
      char target[256];
      ATTEMPT(r, "readlink " + link, ::readlink(link.c_str(), target, sizeof target));
    }
    {
      const driftwatch::sandbox::LocalPtraceReads reads{driftwatch::observe::ProcReader("/proc")};
      for (pid_t pid : {victim.pid(), pid_t{1}}) {
        const auto view = reads.root_view(pid, {"/etc/passwd", "/proc/kcore", "/no-such-path"});
        json states = json::array();
        for (auto state : view.states) states.push_back(std::string(to_string(state)));
        const bool ok = view.opened && view.states.size() == 3 &&
                        view.states[0] != driftwatch::sandbox::PathState::unknown &&
                        view.states[2] == driftwatch::sandbox::PathState::absent;
        r.record("root view of " + std::string(pid == 1 ? "PID 1" : "a root process"), ok, 0,
                 states.dump());
      }
    }
    r.hold();
  });

  auto report = confine_report(attempts);
  CHECK(report["role"] == "proc_peer");
  CHECK(report["capabilities"] == json({"CAP_SYS_PTRACE"}));
  CHECK(report["read_only_mounts"] == true);
  CHECK(report["landlocked"] == false);

  // The seccomp filters refuse them, whatever the kernel would allow.
  for (const char* name : {"read /etc/shadow through PID 1's /proc/PID/root",
                           "read /etc/shadow through a root process's /proc/PID/root",
                           "read /etc/passwd through a root process's /proc/PID/root",
                           "read a world-readable file",
                           "read /etc/hostname",
                           "list a directory",
                           "open a root process's /proc/PID/mem for reading",
                           "open a root process's /proc/PID/mem for writing",
                           "read a root process's /proc/PID/environ",
                           "re-open an O_PATH descriptor for reading through /proc/self/fd",
                           "re-open an O_PATH descriptor for reading with openat(fd, \"\")",
                           "read an extended attribute",
                           "read an extended attribute by path",
                           "pass an O_PATH descriptor on with sendmsg",
                           "ptrace PTRACE_ATTACH a root process",
                           "ptrace PTRACE_SEIZE a root process",
                           "process_vm_readv from a root process",
                           "process_vm_writev into a root process",
                           "pidfd_getfd from a root process",
                           "create a file in /tmp",
                           "create a file in /tmp O_PATH | O_CREAT",
                           "mkdir in /tmp",
                           "kill a root process",
                           "make a new TCP socket",
                           "execute a shell"})
    check_denied(attempts, name, {EPERM});
  check_denied(attempts, "openat2", {ENOSYS});
  // The kernel refuses to read through an O_PATH descriptor.
  check_allowed(attempts, "open /etc/passwd O_PATH through a root process's /proc/PID/root");
  for (const char* name : {"read an O_PATH descriptor", "pread an O_PATH descriptor",
                           "mmap an O_PATH descriptor", "sendfile from an O_PATH descriptor"})
    check_denied(attempts, name, {EBADF});
  CHECK_FALSE(fs::exists(tmp_file));
  CHECK(victim.alive());
  CHECK(g_marker == 0x5eedf00dcafe0001);

  for (const std::string& link :
       {victim_proc + "/ns/pid", victim_proc + "/ns/mnt", victim_proc + "/exe"})
    check_allowed(attempts, "readlink " + link);
  check_allowed(attempts, "root view of a root process");
  // PID 1 too, where root itself may read it (a VM's init may hold
  // capabilities no process here has, and refuse even root).
  char target[256];
  if (::readlink("/proc/1/ns/mnt", target, sizeof target) >= 0) {
    check_allowed(attempts, "readlink /proc/1/ns/mnt");
    check_allowed(attempts, "readlink /proc/1/exe");
    check_allowed(attempts, "root view of PID 1");
  } else {
    WARN("PID 1's links are out of root's own reach here ("
         << std::strerror(errno) << "): the proc peer's reads of PID 1 are not checked");
  }

  check_status(attempts, *user, mask_of(driftwatch::app::kProcPeerCapabilities));
}

}  // namespace

TEST_CASE(
    "confine: the front, with the daemon's own options, cannot write others' files, read "
    "outside its state dir and journals, trace, signal, mount, escape or connect, and still "
    "does its job",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root: confine() changes user, capabilities and mounts");
  check_confined_front();
}

TEST_CASE(
    "confine: the sampler reads every process's status and the runtimes' root-only state, writes "
    "nothing anywhere, not even its own files, and reads no other user's root or memory",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root: confine() changes user and capabilities");
  check_confined_sampler();
}

TEST_CASE(
    "confine: the proc peer reads other processes' links and roots, and no file's content, "
    "memory or descriptor at all",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root: confine() changes user and capabilities");
  check_confined_proc_peer();
}

namespace {

struct Probe {
  const char* name;
  std::function<long()> call;
};

// One call per denied syscall whose outcome without the filter is anything
// but EPERM (success, or another error), and that is harmless as root.
std::vector<Probe> probes() {
  static char byte = 0;
  static iovec local{&byte, 1};
  static iovec remote{&byte, 1};
  constexpr pid_t kNoSuchPid = 0x3fffffff;
  const char* missing = "/nonexistent-driftwatch-probe";
  return {
      {"ptrace", [] { return ::syscall(SYS_ptrace, PTRACE_PEEKDATA, kNoSuchPid, 0, 0); }},
      {"process_vm_readv",
       [] { return ::syscall(SYS_process_vm_readv, kNoSuchPid, &local, 1, &remote, 1, 0); }},
      {"process_vm_writev",
       [] { return ::syscall(SYS_process_vm_writev, kNoSuchPid, &local, 1, &remote, 1, 0); }},
      {"pidfd_getfd", [] { return ::syscall(SYS_pidfd_getfd, -1, 0, 0); }},
      {"kcmp", [] { return ::syscall(SYS_kcmp, kNoSuchPid, kNoSuchPid, 0, 0, 0); }},
      {"process_madvise", [] { return ::syscall(SYS_process_madvise, -1, nullptr, 0, 0, 0); }},
      {"open_by_handle_at", [] { return ::syscall(SYS_open_by_handle_at, -1, nullptr, 0); }},
      {"name_to_handle_at",
       [=] { return ::syscall(SYS_name_to_handle_at, AT_FDCWD, missing, nullptr, nullptr, 0); }},
      {"mount", [=] { return ::syscall(SYS_mount, "none", missing, "tmpfs", 0, nullptr); }},
      {"umount2", [=] { return ::syscall(SYS_umount2, missing, 0); }},
      {"move_mount", [] { return ::syscall(SYS_move_mount, -1, "", -1, "", 0); }},
      {"open_tree", [=] { return ::syscall(SYS_open_tree, AT_FDCWD, missing, 0); }},
      {"open_tree_attr",
       [=] { return ::syscall(__NR_open_tree_attr, AT_FDCWD, missing, 0, nullptr, 0); }},
      {"fsopen", [] { return ::syscall(SYS_fsopen, "no-such-filesystem-driftwatch", 0); }},
      {"fsconfig", [] { return ::syscall(SYS_fsconfig, -1, 0, nullptr, nullptr, 0); }},
      {"fsmount", [] { return ::syscall(SYS_fsmount, -1, 0, 0); }},
      {"fspick", [=] { return ::syscall(SYS_fspick, AT_FDCWD, missing, 0); }},
      {"mount_setattr",
       [=] { return ::syscall(SYS_mount_setattr, AT_FDCWD, missing, 0, nullptr, 0); }},
      {"pivot_root", [=] { return ::syscall(SYS_pivot_root, missing, missing); }},
      {"chroot", [=] { return ::syscall(SYS_chroot, missing); }},
      {"setns", [] { return ::syscall(SYS_setns, -1, 0); }},
      {"unshare", [] { return ::syscall(SYS_unshare, 0); }},
      {"kexec_load",
       [] { return ::syscall(SYS_kexec_load, 0, 0xffffffffUL, nullptr, 0xffff0000UL); }},
      {"kexec_file_load",
       [] { return ::syscall(SYS_kexec_file_load, -1, -1, 0, nullptr, 0xffff0000UL); }},
      {"init_module", [] { return ::syscall(SYS_init_module, nullptr, 0, ""); }},
      {"finit_module", [] { return ::syscall(SYS_finit_module, -1, "", 0); }},
      {"delete_module",
       [] { return ::syscall(SYS_delete_module, "no_such_module_dw", O_NONBLOCK); }},
      {"reboot", [] { return ::syscall(SYS_reboot, 0, 0, 0, nullptr); }},  // bad magic: EINVAL
      {"swapon", [=] { return ::syscall(SYS_swapon, missing, 0); }},
      {"swapoff", [=] { return ::syscall(SYS_swapoff, missing); }},
      {"perf_event_open", [] { return ::syscall(SYS_perf_event_open, nullptr, 0, -1, -1, 0); }},
      {"userfaultfd",
       [] {
         long fd = ::syscall(SYS_userfaultfd, O_CLOEXEC);
         if (fd >= 0) ::close(static_cast<int>(fd));
         return fd;
       }},
      {"syslog", [] { return ::syscall(SYS_syslog, 10, nullptr, 0); }},  // buffer size
      {"iopl", [] { return ::syscall(SYS_iopl, 4); }},                   // EINVAL
      {"ioperm", [] { return ::syscall(SYS_ioperm, 0xfffffff0UL, 0x100, 0); }},
      {"personality", [] { return ::syscall(SYS_personality, 0xffffffffUL); }},  // a query
      {"acct", [] { return ::syscall(SYS_acct, "/nonexistent-driftwatch-probe/acct"); }},
      {"quotactl", [] { return ::syscall(SYS_quotactl, 0, nullptr, 0, nullptr); }},
      {"quotactl_fd", [] { return ::syscall(SYS_quotactl_fd, -1, 0, 0, nullptr); }},
      {"vhangup", [] { return ::syscall(SYS_vhangup); }},  // no terminal after setsid()
      {"keyctl", [] { return ::syscall(SYS_keyctl, -1, 0, 0, 0, 0); }},
      {"add_key", [] { return ::syscall(SYS_add_key, nullptr, nullptr, nullptr, 0, 0); }},
      {"request_key", [] { return ::syscall(SYS_request_key, nullptr, nullptr, nullptr, 0); }},
      {"io_uring_setup", [] { return ::syscall(SYS_io_uring_setup, 0, nullptr); }},
      {"io_uring_enter", [] { return ::syscall(SYS_io_uring_enter, -1, 0, 0, 0, nullptr, 0); }},
      {"io_uring_register", [] { return ::syscall(SYS_io_uring_register, -1, 0, nullptr, 0); }},
      {"settimeofday", [] { return ::syscall(SYS_settimeofday, nullptr, nullptr); }},  // no-op
      {"clock_settime", [] { return ::syscall(SYS_clock_settime, -1, nullptr); }},
      {"adjtimex", [] { return ::syscall(SYS_adjtimex, nullptr); }},
      {"clock_adjtime", [] { return ::syscall(SYS_clock_adjtime, -1, nullptr); }},
      {"setuid", [] { return ::syscall(SYS_setuid, ::getuid()); }},
      {"setgid", [] { return ::syscall(SYS_setgid, ::getgid()); }},
      {"setreuid", [] { return ::syscall(SYS_setreuid, -1, -1); }},
      {"setregid", [] { return ::syscall(SYS_setregid, -1, -1); }},
      {"setresuid", [] { return ::syscall(SYS_setresuid, -1, -1, -1); }},
      {"setresgid", [] { return ::syscall(SYS_setresgid, -1, -1, -1); }},
      {"setgroups", [] { return ::syscall(SYS_setgroups, 0x7fffffff, nullptr); }},
      {"setfsuid", [] { return ::syscall(SYS_setfsuid, -1); }},  // returns the fsuid
      {"setfsgid", [] { return ::syscall(SYS_setfsgid, -1); }},
      {"capset", [] { return ::syscall(SYS_capset, nullptr, nullptr); }},
      {"execve", [=] { return ::syscall(SYS_execve, missing, nullptr, nullptr); }},
      {"execveat", [=] { return ::syscall(SYS_execveat, AT_FDCWD, missing, nullptr, nullptr, 0); }},
      {"socket",
       [] {
         long fd = ::syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
         if (fd >= 0) ::close(static_cast<int>(fd));
         return fd;
       }},
      {"connect", [] { return ::syscall(SYS_connect, -1, nullptr, 0); }},
      {"bpf", [] { return ::syscall(SYS_bpf, BPF_MAP_CREATE, nullptr, 0); }},
  };
}

// Runs every probe (and the non-EPERM special cases) in a child, with or
// without the filter, as root.
Attempts run_probes(bool filtered) {
  return run_in_child([filtered](Recorder& r) {
    if (filtered) {
      if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return r.record("filter", false, errno, "no_new_privs");
      auto installed = driftwatch::app::install_seccomp_filter(false);
      if (!installed) return r.record("filter", false, 0, installed.error().message);
    }
    r.record("filter", true, 0);
    for (const auto& probe : probes()) ATTEMPT(r, probe.name, probe.call());
    ATTEMPT(r, "clone3", ::syscall(SYS_clone3, nullptr, 0));
    ATTEMPT(r, "ioctl TIOCSTI", ::syscall(SYS_ioctl, -1, TIOCSTI, "x"));
    ATTEMPT(r, "ioctl TIOCLINUX", ::syscall(SYS_ioctl, -1, TIOCLINUX, "x"));
    for (auto [name, flags] : {std::pair{"clone with CLONE_NEWUSER", CLONE_NEWUSER | SIGCHLD},
                               std::pair{"clone with CLONE_NEWNET", CLONE_NEWNET | SIGCHLD},
                               std::pair{"clone (fork)", SIGCHLD}}) {
      errno = 0;
      long rc = ::syscall(SYS_clone, flags, 0, 0, 0, 0);
      if (rc == 0) ::_exit(0);
      int error = errno;
      if (rc > 0) ::waitpid(static_cast<pid_t>(rc), nullptr, 0);
      r.record(name, rc > 0, rc < 0 ? error : 0);
    }
    {
      std::atomic<bool> ran{false};
      std::thread thread([&] { ran = true; });
      thread.join();
      r.record("std::thread", ran, 0);
    }
  });
}

}  // namespace

TEST_CASE(
    "confine: the seccomp filter alone answers each denied syscall with EPERM, where the same call "
    "without it does something else",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root: without the filter the probes must not be EPERM");
  // Every syscall the filter denies has a probe, and every probe is denied.
  std::set<std::string> denied;
  for (const auto& name : driftwatch::app::seccomp_denied_syscalls(false)) denied.insert(name);
  std::set<std::string> probed;
  for (const auto& probe : probes()) probed.insert(probe.name);
  CHECK(probed == denied);

  auto without = run_probes(false);
  auto with = run_probes(true);
  REQUIRE(without.contains("done"));
  INFO(describe(with, "filter"));
  REQUIRE(with["filter"].ok);
  REQUIRE(with.contains("done"));
  for (const auto& name : denied) {
    INFO(describe(without, name) << " | filtered: " << describe(with, name));
    REQUIRE(without.contains(name));
    CHECK_FALSE((!without[name].ok && without[name].error == EPERM));
    check_denied(with, name, {EPERM});
  }
  // clone3 is ENOSYS, so that glibc falls back to clone, whose flags the
  // filter reads: threads and forks work, namespaces do not.
  CHECK(without["clone3"].error != ENOSYS);
  check_denied(with, "clone3", {ENOSYS});
  for (const char* name : {"ioctl TIOCSTI", "ioctl TIOCLINUX"}) {
    CHECK(without[name].error == EBADF);
    check_denied(with, name, {EPERM});
  }
  for (const char* name : {"clone with CLONE_NEWUSER", "clone with CLONE_NEWNET"}) {
    check_allowed(without, name);
    check_denied(with, name, {EPERM});
  }
  check_allowed(with, "clone (fork)");
  check_allowed(with, "std::thread");
}

namespace {

// One harmless call per syscall the sampler's filter adds, whose outcome
// without the filter is anything but EPERM (mostly ENOENT on a missing
// path, EBADF on no descriptor, ESRCH on no process).
std::vector<Probe> sampler_probes() {
  constexpr pid_t kNoSuchPid = 0x3fffffff;
  static const char* missing = "/nonexistent-driftwatch-probe/x";
  static const char* other = "/nonexistent-driftwatch-probe/y";
  return {
      {"creat", [] { return ::syscall(SYS_creat, missing, 0600); }},
      {"mkdir", [] { return ::syscall(SYS_mkdir, missing, 0700); }},
      {"mkdirat", [] { return ::syscall(SYS_mkdirat, AT_FDCWD, missing, 0700); }},
      {"mknod", [] { return ::syscall(SYS_mknod, missing, S_IFIFO | 0600, 0); }},
      {"mknodat", [] { return ::syscall(SYS_mknodat, AT_FDCWD, missing, S_IFIFO | 0600, 0); }},
      {"rmdir", [] { return ::syscall(SYS_rmdir, missing); }},
      {"unlink", [] { return ::syscall(SYS_unlink, missing); }},
      {"unlinkat", [] { return ::syscall(SYS_unlinkat, AT_FDCWD, missing, 0); }},
      {"rename", [] { return ::syscall(SYS_rename, missing, other); }},
      {"renameat", [] { return ::syscall(SYS_renameat, AT_FDCWD, missing, AT_FDCWD, other); }},
      {"renameat2", [] { return ::syscall(SYS_renameat2, AT_FDCWD, missing, AT_FDCWD, other, 0); }},
      {"link", [] { return ::syscall(SYS_link, missing, other); }},
      {"linkat", [] { return ::syscall(SYS_linkat, AT_FDCWD, missing, AT_FDCWD, other, 0); }},
      {"symlink", [] { return ::syscall(SYS_symlink, "target", missing); }},
      {"symlinkat", [] { return ::syscall(SYS_symlinkat, "target", AT_FDCWD, missing); }},
      {"truncate", [] { return ::syscall(SYS_truncate, missing, 0); }},
      {"ftruncate", [] { return ::syscall(SYS_ftruncate, -1, 0); }},
      {"fallocate", [] { return ::syscall(SYS_fallocate, -1, 0, 0, 1); }},
      {"chmod", [] { return ::syscall(SYS_chmod, missing, 0600); }},
      {"fchmod", [] { return ::syscall(SYS_fchmod, -1, 0600); }},
      {"fchmodat", [] { return ::syscall(SYS_fchmodat, AT_FDCWD, missing, 0600); }},
      {"fchmodat2", [] { return ::syscall(452, AT_FDCWD, missing, 0600, 0); }},
      {"chown", [] { return ::syscall(SYS_chown, missing, 0, 0); }},
      {"fchown", [] { return ::syscall(SYS_fchown, -1, 0, 0); }},
      {"lchown", [] { return ::syscall(SYS_lchown, missing, 0, 0); }},
      {"fchownat", [] { return ::syscall(SYS_fchownat, AT_FDCWD, missing, 0, 0, 0); }},
      {"setxattr", [] { return ::syscall(SYS_setxattr, missing, "user.x", "", 0, 0); }},
      {"lsetxattr", [] { return ::syscall(SYS_lsetxattr, missing, "user.x", "", 0, 0); }},
      {"fsetxattr", [] { return ::syscall(SYS_fsetxattr, -1, "user.x", "", 0, 0); }},
      {"setxattrat", [] { return ::syscall(463, -1, "", 0, "user.x", nullptr, 0); }},
      {"removexattr", [] { return ::syscall(SYS_removexattr, missing, "user.x"); }},
      {"lremovexattr", [] { return ::syscall(SYS_lremovexattr, missing, "user.x"); }},
      {"fremovexattr", [] { return ::syscall(SYS_fremovexattr, -1, "user.x"); }},
      {"removexattrat", [] { return ::syscall(466, -1, "", 0, "user.x"); }},
      {"utime", [] { return ::syscall(SYS_utime, missing, nullptr); }},
      {"utimes", [] { return ::syscall(SYS_utimes, missing, nullptr); }},
      {"futimesat", [] { return ::syscall(SYS_futimesat, AT_FDCWD, missing, nullptr); }},
      {"utimensat", [] { return ::syscall(SYS_utimensat, AT_FDCWD, missing, nullptr, 0); }},
      {"mq_open",
       [] { return ::syscall(SYS_mq_open, "no-such-queue-driftwatch", O_RDONLY, 0, nullptr); }},
      {"shmget", [] { return ::syscall(SYS_shmget, 0x7eadbeef, 0, 0); }},
      {"msgget", [] { return ::syscall(SYS_msgget, 0x7eadbeef, 0); }},
      {"semget", [] { return ::syscall(SYS_semget, 0x7eadbeef, 0, 0); }},
      {"kill", [] { return ::syscall(SYS_kill, kNoSuchPid, 0); }},
      {"tkill", [] { return ::syscall(SYS_tkill, kNoSuchPid, 0); }},
      {"tgkill", [] { return ::syscall(SYS_tgkill, kNoSuchPid, kNoSuchPid, 0); }},
      {"rt_sigqueueinfo", [] { return ::syscall(SYS_rt_sigqueueinfo, kNoSuchPid, 0, nullptr); }},
      {"rt_tgsigqueueinfo",
       [] { return ::syscall(SYS_rt_tgsigqueueinfo, kNoSuchPid, kNoSuchPid, 0, nullptr); }},
      {"pidfd_send_signal", [] { return ::syscall(SYS_pidfd_send_signal, -1, 0, nullptr, 0); }},
  };
}

// In a child: `role`'s filter (or none), then each probe, then `more`.
Attempts run_role_probes(bool filtered, driftwatch::app::ConfineRole role,
                         const std::vector<Probe>& probes,
                         const std::function<void(Recorder&)>& more) {
  return run_in_child([&](Recorder& r) {
    if (filtered) {
      if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return r.record("filter", false, errno, "no_new_privs");
      auto installed = driftwatch::app::install_seccomp_filter(false, role);
      if (!installed) return r.record("filter", false, 0, installed.error().message);
    }
    r.record("filter", true, 0);
    for (const auto& probe : probes) ATTEMPT(r, probe.name, probe.call());
    more(r);
  });
}

// The syscalls `role`'s filter denies on top of `base`'s each have a probe
// in `probes`, and each is EPERM with the filter and not without it.
// Returns the attempts without and with the filter.
std::pair<Attempts, Attempts> check_filter_adds(driftwatch::app::ConfineRole role,
                                                driftwatch::app::ConfineRole base,
                                                const std::vector<Probe>& probes,
                                                const std::function<void(Recorder&)>& more) {
  std::set<std::string> added;
  for (const auto& name : driftwatch::app::seccomp_denied_syscalls(false, role)) added.insert(name);
  for (const auto& name : driftwatch::app::seccomp_denied_syscalls(false, base)) added.erase(name);
  std::set<std::string> probed;
  for (const auto& probe : probes) probed.insert(probe.name);
  CHECK(probed == added);

  auto without = run_role_probes(false, role, probes, more);
  auto with = run_role_probes(true, role, probes, more);
  REQUIRE(without.contains("done"));
  INFO(describe(with, "filter"));
  REQUIRE(with["filter"].ok);
  REQUIRE(with.contains("done"));
  for (const auto& name : added) {
    INFO(describe(without, name) << " | filtered: " << describe(with, name));
    REQUIRE(without.contains(name));
    CHECK_FALSE((!without[name].ok && without[name].error == EPERM));
    check_denied(with, name, {EPERM});
  }
  return {without, with};
}

// The open flags each probe of the sampler's filter tries.
void sampler_open_probes(Recorder& r) {
  const char* missing = "/nonexistent-driftwatch-probe/x";
  ATTEMPT(r, "open O_WRONLY", ::syscall(SYS_open, missing, O_WRONLY, 0));
  ATTEMPT(r, "open O_RDWR", ::syscall(SYS_open, missing, O_RDWR, 0));
  ATTEMPT(r, "openat O_CREAT", ::syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY | O_CREAT, 0));
  ATTEMPT(r, "openat O_TRUNC", ::syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY | O_TRUNC, 0));
  ATTEMPT(r, "openat O_RDONLY", ::syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY, 0));
  ATTEMPT(r, "openat O_PATH", ::syscall(SYS_openat, AT_FDCWD, missing, O_PATH, 0));
  ATTEMPT(r, "openat2", ::syscall(SYS_openat2, AT_FDCWD, missing, nullptr, 0));
}

}  // namespace

TEST_CASE(
    "confine: the sampler's filter answers every call that writes, changes a file or sends a "
    "signal with EPERM, opens for writing with EPERM and openat2 with ENOSYS, and lets reads pass",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root: without the filter the probes must not be EPERM");
  using driftwatch::app::ConfineRole;
  auto [without, with] = check_filter_adds(ConfineRole::sampler, ConfineRole::front,
                                           sampler_probes(), sampler_open_probes);
  for (const char* name : {"open O_WRONLY", "open O_RDWR", "openat O_CREAT", "openat O_TRUNC"}) {
    INFO(describe(without, name));
    CHECK(without[name].error == ENOENT);
    check_denied(with, name, {EPERM});
  }
  for (const char* name : {"openat O_RDONLY", "openat O_PATH"}) {
    INFO(describe(with, name));
    CHECK(with[name].error == ENOENT);
  }
  CHECK(without["openat2"].error != ENOSYS);
  check_denied(with, "openat2", {ENOSYS});
}

namespace {

// One harmless call per syscall the proc peer's filter adds to the
// sampler's, whose outcome without the filter is anything but EPERM.
std::vector<Probe> proc_peer_probes() {
  static const char* missing = "/nonexistent-driftwatch-probe/x";
  return {
      {"getxattr", [] { return ::syscall(SYS_getxattr, missing, "user.x", nullptr, 0); }},
      {"lgetxattr", [] { return ::syscall(SYS_lgetxattr, missing, "user.x", nullptr, 0); }},
      {"fgetxattr", [] { return ::syscall(SYS_fgetxattr, -1, "user.x", nullptr, 0); }},
      {"getxattrat", [] { return ::syscall(464, -1, "", 0, "user.x", nullptr, 0); }},
      {"listxattr", [] { return ::syscall(SYS_listxattr, missing, nullptr, 0); }},
      {"llistxattr", [] { return ::syscall(SYS_llistxattr, missing, nullptr, 0); }},
      {"flistxattr", [] { return ::syscall(SYS_flistxattr, -1, nullptr, 0); }},
      {"listxattrat", [] { return ::syscall(465, -1, "", 0, nullptr, 0); }},
      {"sendmsg", [] { return ::syscall(SYS_sendmsg, -1, nullptr, 0); }},
      {"sendmmsg", [] { return ::syscall(SYS_sendmmsg, -1, nullptr, 0, 0); }},
  };
}

// The opens the proc peer's content-free filter decides.
void proc_peer_open_probes(Recorder& r) {
  const char* missing = "/nonexistent-driftwatch-probe/x";
  ATTEMPT(r, "open O_RDONLY", ::syscall(SYS_open, missing, O_RDONLY, 0));
  ATTEMPT(r, "openat O_RDONLY", ::syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY, 0));
  ATTEMPT(r, "openat O_RDONLY | O_DIRECTORY",
          ::syscall(SYS_openat, AT_FDCWD, missing, O_RDONLY | O_DIRECTORY, 0));
  ATTEMPT(r, "openat O_WRONLY", ::syscall(SYS_openat, AT_FDCWD, missing, O_WRONLY, 0));
  ATTEMPT(r, "open O_PATH", ::syscall(SYS_open, missing, O_PATH, 0));
  ATTEMPT(r, "openat O_PATH | O_NOFOLLOW",
          ::syscall(SYS_openat, AT_FDCWD, missing, O_PATH | O_NOFOLLOW, 0));
  ATTEMPT(r, "openat2", ::syscall(SYS_openat2, AT_FDCWD, missing, nullptr, 0));
}

}  // namespace

TEST_CASE(
    "confine: the proc peer's filters answer reading extended attributes, sendmsg and every open "
    "without O_PATH with EPERM, and let O_PATH lookups pass",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root: without the filter the probes must not be EPERM");
  using driftwatch::app::ConfineRole;
  auto [without, with] = check_filter_adds(ConfineRole::proc_peer, ConfineRole::sampler,
                                           proc_peer_probes(), proc_peer_open_probes);
  for (const char* name :
       {"open O_RDONLY", "openat O_RDONLY", "openat O_RDONLY | O_DIRECTORY", "openat O_WRONLY"}) {
    INFO(describe(without, name));
    CHECK(without[name].error == ENOENT);
    check_denied(with, name, {EPERM});
  }
  for (const char* name : {"open O_PATH", "openat O_PATH | O_NOFOLLOW"}) {
    INFO(describe(with, name));
    CHECK(with[name].error == ENOENT);
  }
  check_denied(with, "openat2", {ENOSYS});
}

TEST_CASE(
    "confine: with bpf map access allowed, maps already open can be read and written, nothing "
    "new can be created or loaded",
    "[root][bpf][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root to create a BPF map");
  auto attempts = run_in_child([](Recorder& r) {
    bpf_attr create{};
    create.map_type = BPF_MAP_TYPE_ARRAY;
    create.key_size = 4;
    create.value_size = 8;
    create.max_entries = 1;
    long map = ::syscall(SYS_bpf, BPF_MAP_CREATE, &create, sizeof create);
    if (map < 0) return r.record("create before", false, errno);
    r.record("create before", true, 0);
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    auto installed = driftwatch::app::install_seccomp_filter(true);
    if (!installed) return r.record("filter", false, 0, installed.error().message);
    uint32_t key = 0;
    uint64_t value = 42, read_back = 0;
    bpf_attr update{};
    update.map_fd = static_cast<uint32_t>(map);
    update.key = reinterpret_cast<uint64_t>(&key);
    update.value = reinterpret_cast<uint64_t>(&value);
    ATTEMPT(r, "update", ::syscall(SYS_bpf, BPF_MAP_UPDATE_ELEM, &update, sizeof update));
    bpf_attr lookup{};
    lookup.map_fd = static_cast<uint32_t>(map);
    lookup.key = reinterpret_cast<uint64_t>(&key);
    lookup.value = reinterpret_cast<uint64_t>(&read_back);
    ATTEMPT(r, "lookup", ::syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &lookup, sizeof lookup));
    r.record("read back", read_back == 42, 0, std::to_string(read_back));
    ATTEMPT(r, "map create", ::syscall(SYS_bpf, BPF_MAP_CREATE, &create, sizeof create));
    bpf_attr load{};
    ATTEMPT(r, "program load", ::syscall(SYS_bpf, BPF_PROG_LOAD, &load, sizeof load));
    bpf_attr get{};
    ATTEMPT(r, "object get", ::syscall(SYS_bpf, BPF_OBJ_GET, &get, sizeof get));
    ATTEMPT(r, "map get fd by id", ::syscall(SYS_bpf, BPF_MAP_GET_FD_BY_ID, &get, sizeof get));
  });
  INFO(describe(attempts, "create before"));
  if (!attempts["create before"].ok) DW_SKIP("BPF maps cannot be created here");
  check_allowed(attempts, "update");
  check_allowed(attempts, "lookup");
  check_allowed(attempts, "read back");
  for (const char* name : {"map create", "program load", "object get", "map get fd by id"})
    check_denied(attempts, name, {EPERM});
}

TEST_CASE(
    "confine: started as another user, it keeps no capability it lacks, and still sets "
    "no_new_privs and the filter",
    "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root to become another user first");
  TempDir base("confine-user");
  auto attempts = run_in_child([&](Recorder& r) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      return r.record("confine", false, errno, "cannot become nobody");
    ConfineOptions options;
    options.state_dir = base.path();
    auto report = driftwatch::app::confine(options);
    if (!report) return r.record("confine", false, 0, report.error().message);
    r.record("confine", true, 0, to_json(*report).dump());
    ATTEMPT(r, "ptrace PTRACE_TRACEME", ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr));
    r.hold();
  });
  INFO(describe(attempts, "confine"));
  check_allowed(attempts, "confine");
  auto report = json::parse(attempts["confine"].detail);
  CHECK(report["started_as_root"] == false);
  CHECK(report["user"]["uid"] == 65534);
  CHECK(report["capabilities"].empty());
  CHECK(report["read_only_mounts"] == false);
  CHECK(report["landlocked"] == true);
  check_allowed(attempts, "/proc/PID/status");
  auto status = json::parse(attempts["/proc/PID/status"].detail);
  INFO(status.dump());
  CHECK(status["uid"][0] == 65534);
  CHECK(status["CapEff"] == 0);
  CHECK(status["CapPrm"] == 0);
  CHECK(status["NoNewPrivs"] == true);
  CHECK(status["Seccomp"] == 2);
  check_denied(attempts, "ptrace PTRACE_TRACEME", {EPERM});
}

TEST_CASE("confine: refuses to run with a second thread, before changing anything", "[app]") {
  auto attempts = run_in_child([](Recorder& r) {
    std::atomic<bool> stop{false};
    std::thread sleeper([&] {
      while (!stop) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    });
    ConfineOptions options;
    options.user = DaemonUser{"nobody", 65534, 65534, false};
    options.state_dir = "/nonexistent-driftwatch-state";
    auto report = driftwatch::app::confine(options);
    stop = true;
    sleeper.join();
    r.record("confine", report.has_value(), 0, report ? "" : report.error().message);
    auto text = driftwatch::read_file("/proc/self/status", 1 << 16);
    auto status = driftwatch::observe::parse_status(text ? *text : std::string());
    r.record(
        "unchanged",
        status && status->uid[0] == ::getuid() && !status->no_new_privs && status->seccomp == 0, 0);
  });
  INFO(describe(attempts, "confine"));
  REQUIRE(attempts.contains("confine"));
  CHECK_FALSE(attempts["confine"].ok);
  CHECK_THAT(attempts["confine"].detail, Catch::Contains("2 threads are running"));
  check_allowed(attempts, "unchanged");
}

TEST_CASE("state dir: an unsafe existing directory is refused and its mode left alone", "[app]") {
  TempDir base("statedir");
  DaemonUser me{"me", ::geteuid(), ::getegid(), true};

  SECTION("a directory writable by others, like /tmp") {
    fs::path dir = base.path() / "public";
    fs::create_directory(dir);
    fs::permissions(dir, fs::perms(01777), fs::perm_options::replace);
    auto result = driftwatch::app::ensure_state_dir(dir, me);
    REQUIRE_FALSE(result);
    CHECK(result.error().message == "state_dir " + dir.string() +
                                        " is writable by others (mode 1777): use a directory of "
                                        "its own, e.g. /var/lib/driftwatch");
    CHECK((stat_of(dir).st_mode & 07777) == 01777);
  }
  SECTION("a directory writable by its group") {
    fs::path dir = base.path() / "group";
    fs::create_directory(dir);
    fs::permissions(dir, fs::perms(0770), fs::perm_options::replace);
    auto result = driftwatch::app::ensure_state_dir(dir, me);
    REQUIRE_FALSE(result);
    CHECK_THAT(result.error().message, Catch::Contains("is writable by its group (mode 0770)"));
    CHECK((stat_of(dir).st_mode & 07777) == 0770);
  }
  SECTION("a symbolic link to a directory") {
    fs::path target = base.path() / "target";
    fs::create_directory(target);
    fs::permissions(target, fs::perms(0755), fs::perm_options::replace);
    fs::path link = base.path() / "link";
    fs::create_directory_symlink(target, link);
    auto result = driftwatch::app::ensure_state_dir(link, me);
    REQUIRE_FALSE(result);
    CHECK(result.error().message == "state_dir " + link.string() + " is a symbolic link (to " +
                                        target.string() + "): name the directory itself");
    CHECK(fs::is_symlink(link));
    CHECK((stat_of(target).st_mode & 07777) == 0755);
  }
  SECTION("a regular file, a relative path, the root directory") {
    fs::path file = base.path() / "file";
    write_text(file, "x", 0600);
    auto result = driftwatch::app::ensure_state_dir(file, me);
    REQUIRE_FALSE(result);
    CHECK_THAT(result.error().message, Catch::Contains("is not a directory"));
    CHECK_FALSE(driftwatch::app::ensure_state_dir("relative/state", me));
    auto root = driftwatch::app::ensure_state_dir("/", me);
    REQUIRE_FALSE(root);
    CHECK_THAT(root.error().message, Catch::Contains("root directory"));
  }
  SECTION("a missing one is created 0700 with its missing parents") {
    fs::path dir = base.path() / "a" / "b" / "state";
    REQUIRE(driftwatch::app::ensure_state_dir(dir, me));
    CHECK((stat_of(dir).st_mode & 07777) == 0700);
    CHECK(stat_of(dir).st_uid == me.uid);
    CHECK((stat_of(base.path() / "a").st_mode & 07777) == 0755);
    // And accepted as it is the next time.
    CHECK(driftwatch::app::ensure_state_dir(dir, me));
  }
  SECTION("an existing one of the right owner keeps its mode, even a readable one") {
    fs::path dir = base.path() / "readable";
    fs::create_directory(dir);
    fs::permissions(dir, fs::perms(0755), fs::perm_options::replace);
    CHECK(driftwatch::app::ensure_state_dir(dir, me));
    CHECK((stat_of(dir).st_mode & 07777) == 0755);
  }
}

TEST_CASE("state dir: whose directory the daemon takes over when started as root", "[root][app]") {
  if (::geteuid() != 0) DW_SKIP("needs root to make directories of other owners");
  TempDir base("statedir-root");
  DaemonUser daemon{"nobody", 65534, 65534, false};

  SECTION("created for the daemon user") {
    fs::path dir = base.path() / "new";
    REQUIRE(driftwatch::app::ensure_state_dir(dir, daemon));
    CHECK(stat_of(dir).st_uid == daemon.uid);
    CHECK(stat_of(dir).st_gid == daemon.gid);
  }
  SECTION("someone else's is refused") {
    fs::path dir = base.path() / "alice";
    fs::create_directory(dir);
    fs::permissions(dir, fs::perms(0700), fs::perm_options::replace);
    REQUIRE(::chown(dir.c_str(), 12345, 12345) == 0);
    auto result = driftwatch::app::ensure_state_dir(dir, daemon);
    REQUIRE_FALSE(result);
    CHECK_THAT(result.error().message, Catch::Contains("belongs to uid 12345"));
    CHECK(stat_of(dir).st_uid == 12345);
  }
  SECTION(
      "root's 0700 one with journals/ (an earlier version's) and root's empty one are taken; "
      "root's 0755 one and root's 0700 home are not") {
    fs::path old_state = base.path() / "old";
    fs::create_directories(old_state / "journals");
    fs::permissions(old_state, fs::perms(0700), fs::perm_options::replace);
    write_text(old_state / "node.key", "k", 0600);
    CHECK(driftwatch::app::ensure_state_dir(old_state, daemon));
    fs::path home = base.path() / "home";
    fs::create_directories(home / ".ssh");
    fs::permissions(home, fs::perms(0700), fs::perm_options::replace);
    auto refused = driftwatch::app::ensure_state_dir(home, daemon);
    REQUIRE_FALSE(refused);
    CHECK_THAT(refused.error().message,
               Catch::Contains("belongs to root (mode 0700) and is not a state dir driftwatch "
                               "made"));
    fs::path empty = base.path() / "empty";
    fs::create_directory(empty);
    fs::permissions(empty, fs::perms(0755), fs::perm_options::replace);
    CHECK(driftwatch::app::ensure_state_dir(empty, daemon));
    fs::path full = base.path() / "full";
    fs::create_directory(full);
    fs::permissions(full, fs::perms(0755), fs::perm_options::replace);
    write_text(full / "www.html", "x", 0644);
    auto result = driftwatch::app::ensure_state_dir(full, daemon);
    REQUIRE_FALSE(result);
    CHECK_THAT(result.error().message, Catch::Contains("belongs to root (mode 0755)"));
  }
  SECTION("confine() itself refuses a state dir writable by others, before changing anything") {
    fs::path dir = base.path() / "public";
    fs::create_directory(dir);
    fs::permissions(dir, fs::perms(01777), fs::perm_options::replace);
    auto attempts = run_in_child([&](Recorder& r) {
      ConfineOptions options;
      options.user = daemon;
      options.state_dir = dir;
      auto report = driftwatch::app::confine(options);
      r.record("confine", report.has_value(), 0, report ? "" : report.error().message);
      r.record("still root", ::getuid() == 0 && ::geteuid() == 0, 0);
    });
    INFO(describe(attempts, "confine"));
    CHECK_FALSE(attempts["confine"].ok);
    CHECK_THAT(attempts["confine"].detail, Catch::Contains("writable by others (mode 1777)"));
    check_allowed(attempts, "still root");
    CHECK((stat_of(dir).st_mode & 07777) == 01777);
    CHECK(stat_of(dir).st_uid == 0);
  }
}
