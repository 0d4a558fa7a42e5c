// What the probes cost every task on the node, watched or not: getpid and
// openat+close loops in this process with no probe attached, with the
// tp_btf programs only (driftwatch's default), and with the syscall
// tracepoints (sys_exit_unshare, sys_exit_setns) as well; with `--bpftrace
// SCRIPT`, also under that bpftrace script (the peer a user would pick).
// Enabling any syscall tracepoint puts every task on the kernel's slow
// syscall path, so that is the cost to weigh against what they see (README,
// "The probes").
//
//   syscall_probe_bench [--rounds N] [--getpid N] [--openat N] [--watched]
//                       [--bpftrace SCRIPT] [--tsv FILE]
//
// --tsv: the summary also as tab-separated rows (configuration; getpid
// median, min, max, paired vs no probes, vs tp_btf only; the same for
// openat+close), for bench/probes.sh.
// --watched: the loops run in a cgroup of their own (made under the unified
// hierarchy, removed at the end) that the probes watch, as a sandbox's
// processes are watched; otherwise the process is unwatched and the
// programs return after one lookup.
//
// Each round runs every configuration once, in a rotating order, loading
// and attaching the probes afresh (KernelProbes::load, as the daemon does)
// and starting bpftrace afresh (on another CPU when there is one), so that a
// slow drift of a shared machine hits them alike; reported are the median,
// min and max ns per operation over the rounds and the median of each
// round's ratio to "no probes" and to "tp_btf only" (paired rounds), in
// this thread's CPU time (CLOCK_THREAD_CPUTIME_ID: user and kernel time
// spent on the loop, not the time it waited for a core another process
// held). As root; it mounts tracefs if it is not.

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "observe/cgroupfs.hpp"
#include "probes/kernel_probes.hpp"

namespace {

using driftwatch::probes::KernelProbes;

struct Options {
  int rounds = 15;
  long getpid = 2'000'000;
  long openat = 300'000;
  bool watched = false;
  std::string bpftrace;  // a script; empty: no bpftrace configuration
  std::string tsv;       // a file for the summary's rows; empty: none
};

namespace fs = std::filesystem;

// The cgroup the loops run in with --watched: made under the unified
// hierarchy, this process moved in; moved back and removed at the end.
class OwnCgroup {
 public:
  static std::optional<OwnCgroup> make() {
    const driftwatch::observe::CgroupReader cgroupfs;
    if (cgroupfs.layout() == driftwatch::observe::CgroupLayout::legacy) {
      std::fprintf(stderr, "syscall_probe_bench: --watched needs a unified cgroup hierarchy\n");
      return std::nullopt;
    }
    std::string path;  // this process's v2 path ("0::/a/b")
    std::ifstream self("/proc/self/cgroup");
    for (std::string line; std::getline(self, line);)
      if (line.starts_with("0::")) path = line.substr(3);
    const fs::path from = cgroupfs.unified_dir(path.empty() ? "/" : path);
    const fs::path dir =
        cgroupfs.unified_dir("/driftwatch-syscall-bench-" + std::to_string(::getpid()));
    std::error_code error;
    if (!fs::create_directory(dir, error) || !move_self(dir)) {
      std::fprintf(stderr, "syscall_probe_bench: cannot run in a cgroup of its own at %s: %s\n",
                   dir.c_str(), error ? error.message().c_str() : std::strerror(errno));
      fs::remove(dir, error);
      return std::nullopt;
    }
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0) return std::nullopt;
    return OwnCgroup(dir, from, st.st_ino);
  }
  OwnCgroup(OwnCgroup&& other) noexcept
      : dir_(std::move(other.dir_)), from_(std::move(other.from_)), id_(other.id_) {
    other.dir_.clear();
  }
  OwnCgroup& operator=(OwnCgroup&&) = delete;
  ~OwnCgroup() {
    if (dir_.empty()) return;
    (void)move_self(from_);
    std::error_code error;
    fs::remove(dir_, error);
  }
  uint64_t id() const { return id_; }  // its directory's inode: the kernel's cgroup id

 private:
  OwnCgroup(fs::path dir, fs::path from, uint64_t id)
      : dir_(std::move(dir)), from_(std::move(from)), id_(id) {}
  static bool move_self(const fs::path& dir) {
    std::ofstream procs(dir / "cgroup.procs");
    procs << ::getpid() << std::flush;
    return static_cast<bool>(procs);
  }
  fs::path dir_, from_;
  uint64_t id_ = 0;
};

// bpftrace running a script until stopped: started, and waited for until it
// says it is attaching and has had a moment to finish.
class Bpftrace {
 public:
  static std::optional<Bpftrace> start(const std::string& script) {
    char log_template[] = "/tmp/driftwatch-syscall-bench-bpftrace-XXXXXX";
    const int log = ::mkstemp(log_template);
    if (log < 0) return std::nullopt;
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(log);
      return std::nullopt;
    }
    if (pid == 0) {
      // Off the loops' CPU, when there is another.
      cpu_set_t cpus;
      CPU_ZERO(&cpus);
      if (::sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        const int mine = ::sched_getcpu();
        cpu_set_t others;
        CPU_ZERO(&others);
        for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
          if (cpu != mine && cpu < static_cast<int>(std::thread::hardware_concurrency()))
            CPU_SET(cpu, &others);
        if (CPU_COUNT(&others) > 0) ::sched_setaffinity(0, sizeof others, &others);
      }
      ::dup2(log, 1);
      ::dup2(log, 2);
      ::execlp("bpftrace", "bpftrace", script.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(log);
    Bpftrace running(pid, log_template);
    for (int waited = 0; waited < 6000; ++waited) {
      if (running.log().find("Attaching") != std::string::npos) {
        // "Attaching N probes..." is printed before the attaching itself.
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        return running;
      }
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        std::fprintf(stderr, "syscall_probe_bench: bpftrace exited: %s\n", running.log().c_str());
        running.pid_ = -1;
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::fprintf(stderr, "syscall_probe_bench: bpftrace did not attach within 60 s\n");
    return std::nullopt;
  }
  Bpftrace(Bpftrace&& other) noexcept : pid_(other.pid_), log_path_(std::move(other.log_path_)) {
    other.pid_ = -1;
    other.log_path_.clear();
  }
  Bpftrace& operator=(Bpftrace&&) = delete;
  ~Bpftrace() {
    if (pid_ > 0) {
      ::kill(pid_, SIGINT);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    if (!log_path_.empty()) ::unlink(log_path_.c_str());
  }

 private:
  Bpftrace(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  std::string log() const {
    std::ifstream in(log_path_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  pid_t pid_ = -1;
  std::string log_path_;
};

double now_ns() {
  timespec t{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e9 + static_cast<double>(t.tv_nsec);
}

// syscall(), not getpid(): nothing in libc may answer it without the kernel.
double getpid_ns(long n) {
  const double start = now_ns();
  for (long i = 0; i < n; ++i) (void)::syscall(SYS_getpid);
  return (now_ns() - start) / static_cast<double>(n);
}

double openat_close_ns(long n) {
  const double start = now_ns();
  for (long i = 0; i < n; ++i) {
    const int fd = ::openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) ::close(fd);
  }
  return (now_ns() - start) / static_cast<double>(n);
}

struct Config {
  const char* name;
  bool probes;
  bool syscall_probes;
  bool bpftrace = false;
  std::vector<double> getpid, openat;
};

struct Stats {
  double median, min, max;
};

Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  const double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  return {median, v.front(), v.back()};
}

bool run_round(Config& config, const Options& options, const OwnCgroup* watched) {
  std::optional<Bpftrace> bpftrace;
  if (config.bpftrace) {
    auto started = Bpftrace::start(options.bpftrace);
    if (!started) return false;
    bpftrace.emplace(std::move(*started));
  }
  std::optional<KernelProbes> probes;
  if (config.probes) {
    auto loaded = KernelProbes::load(100, config.syscall_probes);
    if (!loaded) {
      std::fprintf(stderr, "syscall_probe_bench: %s\n", loaded.error().message.c_str());
      return false;
    }
    for (const auto& [probe, why] : loaded->attach_report()) {
      const bool wanted = config.syscall_probes || !probe.starts_with("syscalls/");
      if (wanted && !why.empty()) {
        std::fprintf(stderr, "syscall_probe_bench: %s: %s\n", probe.c_str(), why.c_str());
        return false;
      }
    }
    if (watched) {
      if (auto watching = loaded->watch_cgroup(watched->id(), 1); !watching) {
        std::fprintf(stderr, "syscall_probe_bench: %s\n", watching.error().message.c_str());
        return false;
      }
    }
    probes.emplace(std::move(*loaded));
  }
  (void)getpid_ns(options.getpid / 10);  // warm up
  config.getpid.push_back(getpid_ns(options.getpid));
  config.openat.push_back(openat_close_ns(options.openat));
  return true;
}

// The median over the rounds of (this configuration / base) - 1, in
// percent: the rounds are paired, so a drift of the machine's speed
// between rounds cancels out.
double paired_percent(const std::vector<double>& mine, const std::vector<double>& base) {
  std::vector<double> ratios;
  for (size_t i = 0; i < mine.size() && i < base.size(); ++i)
    ratios.push_back(100 * (mine[i] / base[i] - 1));
  return stats(ratios).median;
}

void report(const std::vector<Config>& configs, const Options& options) {
  std::printf("%d rounds; getpid x %ld, openat+close x %ld per round; CPU ns/op; %s\n",
              options.rounds, options.getpid, options.openat,
              options.watched ? "in a watched cgroup" : "unwatched");
  std::printf("%-22s %-46s %-48s\n", "", "getpid median [min-max] paired: vs none, vs tp_btf",
              "openat+close median [min-max] paired: vs none, vs tp_btf");
  const Config& none = configs[0];
  const Config& base = configs[1];
  for (const auto& c : configs) {
    const Stats g = stats(c.getpid), o = stats(c.openat);
    std::printf(
        "%-22s %7.1f [%6.1f-%6.1f] %+6.1f%% %+6.1f%%   %8.1f [%7.1f-%7.1f] %+6.1f%% %+6.1f%%\n",
        c.name, g.median, g.min, g.max, paired_percent(c.getpid, none.getpid),
        paired_percent(c.getpid, base.getpid), o.median, o.min, o.max,
        paired_percent(c.openat, none.openat), paired_percent(c.openat, base.openat));
  }
  std::printf("(paired: the median of each round's ratio to no probes, and to tp_btf only)\n");
}

bool write_tsv(const std::vector<Config>& configs, const std::string& path) {
  std::ofstream out(path);
  const Config& none = configs[0];
  const Config& base = configs[1];
  for (const auto& c : configs) {
    const Stats g = stats(c.getpid), o = stats(c.openat);
    char row[512];
    std::snprintf(row, sizeof row,
                  "%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\n", c.name,
                  g.median, g.min, g.max, paired_percent(c.getpid, none.getpid),
                  paired_percent(c.getpid, base.getpid), o.median, o.min, o.max,
                  paired_percent(c.openat, none.openat), paired_percent(c.openat, base.openat));
    out << row;
  }
  out.flush();
  if (!out) std::fprintf(stderr, "syscall_probe_bench: cannot write %s\n", path.c_str());
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  const char* usage =
      "usage: syscall_probe_bench [--rounds N] [--getpid N] [--openat N] [--watched] "
      "[--bpftrace SCRIPT] [--tsv FILE]\n";
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--watched") {
      options.watched = true;
      continue;
    }
    if (flag != "--rounds" && flag != "--getpid" && flag != "--openat" && flag != "--bpftrace" &&
        flag != "--tsv") {
      std::fprintf(stderr, "syscall_probe_bench: unknown option %s\n%s", flag.c_str(), usage);
      return 2;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "syscall_probe_bench: %s needs a value\n%s", flag.c_str(), usage);
      return 2;
    }
    const std::string text = argv[++i];
    if (flag == "--bpftrace") {
      if (!fs::is_regular_file(text)) {
        std::fprintf(stderr, "syscall_probe_bench: --bpftrace %s: not a file\n", text.c_str());
        return 2;
      }
      options.bpftrace = text;
      continue;
    }
    if (flag == "--tsv") {
      options.tsv = text;
      continue;
    }
    const long value = std::atol(text.c_str());
    if (value <= 0) {
      std::fprintf(stderr, "syscall_probe_bench: %s needs a positive number\n", flag.c_str());
      return 2;
    }
    if (flag == "--rounds") {
      options.rounds = static_cast<int>(value);
    } else if (flag == "--getpid") {
      options.getpid = value;
    } else if (flag == "--openat") {
      options.openat = value;
    } else {
      std::fprintf(stderr, "%s", usage);
      return 2;
    }
  }
  std::optional<OwnCgroup> own;
  if (options.watched) {
    auto made = OwnCgroup::make();
    if (!made) return 1;
    own.emplace(std::move(*made));
  }
  std::vector<Config> configs = {{"no probes", false, false, false, {}, {}},
                                 {"tp_btf only", true, false, false, {}, {}},
                                 {"tp_btf + syscall tps", true, true, false, {}, {}}};
  if (!options.bpftrace.empty()) configs.push_back({"bpftrace", false, false, true, {}, {}});
  for (int round = 0; round < options.rounds; ++round) {
    for (size_t k = 0; k < configs.size(); ++k)
      if (!run_round(configs[(k + static_cast<size_t>(round)) % configs.size()], options,
                     own ? &*own : nullptr))
        return 1;
    std::fprintf(stderr, "syscall_probe_bench: round %d/%d\n", round + 1, options.rounds);
  }
  report(configs, options);
  if (!options.tsv.empty() && !write_tsv(configs, options.tsv)) return 1;
  return 0;
}
