// What the probes cost every task on the node, watched or not: getpid and
// openat+close loops in this (unwatched) process with no probe attached,
// with the tp_btf programs only, and with the syscall tracepoints
// (sys_exit_unshare, sys_exit_setns) as well. Enabling any syscall
// tracepoint puts every task on the kernel's slow syscall path, so that is
// the cost to weigh against what they see (README, "The probes").
//
//   syscall_probe_bench [--rounds N] [--getpid N] [--openat N]
//
// Each round runs every configuration once, in a rotating order, loading
// and attaching the probes afresh (KernelProbes::load, as the daemon does),
// so that a slow drift of a shared machine hits them alike; reported are
// the median, min and max ns per operation over the rounds and the median
// of each round's ratio to "tp_btf only", in this
// thread's CPU time (CLOCK_THREAD_CPUTIME_ID: user and kernel time spent
// on the loop, not the time it waited for a core another process held).
// As root; it mounts tracefs if it is not.

#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "probes/kernel_probes.hpp"

namespace {

using driftwatch::probes::KernelProbes;

struct Options {
  int rounds = 15;
  long getpid = 2'000'000;
  long openat = 300'000;
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

bool run_round(Config& config, const Options& options) {
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
    probes.emplace(std::move(*loaded));
  }
  (void)getpid_ns(options.getpid / 10);  // warm up
  config.getpid.push_back(getpid_ns(options.getpid));
  config.openat.push_back(openat_close_ns(options.openat));
  return true;
}

// The median over the rounds of (this configuration / tp_btf only) - 1, in
// percent: the rounds are paired, so a drift of the machine's speed
// between rounds cancels out.
double paired_percent(const std::vector<double>& mine, const std::vector<double>& base) {
  std::vector<double> ratios;
  for (size_t i = 0; i < mine.size() && i < base.size(); ++i)
    ratios.push_back(100 * (mine[i] / base[i] - 1));
  return stats(ratios).median;
}

void report(const std::vector<Config>& configs, const Options& options) {
  std::printf("%d rounds; getpid x %ld, openat+close x %ld per round; CPU ns/op\n", options.rounds,
              options.getpid, options.openat);
  std::printf("%-22s %30s %32s\n", "", "getpid median [min-max] paired",
              "openat+close median [min-max] paired");
  const Config& base = configs[1];
  for (const auto& c : configs) {
    const Stats g = stats(c.getpid), o = stats(c.openat);
    std::printf("%-22s %7.1f [%6.1f-%6.1f] %+5.1f%% %8.1f [%7.1f-%7.1f] %+5.1f%%\n", c.name,
                g.median, g.min, g.max, paired_percent(c.getpid, base.getpid), o.median, o.min,
                o.max, paired_percent(c.openat, base.openat));
  }
  std::printf("(paired: the median of each round's ratio to tp_btf only)\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const long value = std::atol(argv[i + 1]);
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
      std::fprintf(stderr, "usage: syscall_probe_bench [--rounds N] [--getpid N] [--openat N]\n");
      return 2;
    }
  }
  std::vector<Config> configs = {{"no probes", false, false, {}, {}},
                                 {"tp_btf only", true, false, {}, {}},
                                 {"tp_btf + syscall tps", true, true, {}, {}}};
  for (int round = 0; round < options.rounds; ++round)
    for (size_t k = 0; k < configs.size(); ++k)
      if (!run_round(configs[(k + static_cast<size_t>(round)) % configs.size()], options)) return 1;
  report(configs, options);
  return 0;
}
