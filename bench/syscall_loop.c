/* A static loop program for bench/probes.sh, copied into a no-capability
 * runc sandbox (a bare busybox rootfs: hence static). One mode per run:
 *
 *   getpid N             N raw getpid() syscalls
 *   openat N             N openat("/etc/passwd", O_RDONLY) + close
 *   setuid N             N setuid(0) calls (denied without CAP_SETUID)
 *   paced-setuid RATE S  setuid(0) at RATE calls/s for S seconds, paced
 *                        against CLOCK_MONOTONIC (catches up in bursts when
 *                        it falls behind, never runs ahead)
 *
 * Prints one line of key=value fields, e.g.
 *   "getpid ops=5000000 ns_per_op=61.4 cpu_ns_per_op=60.9 denied=0"
 *   "paced-setuid ops=1000000 denied=1000000 seconds=10.000 rate=99998 max_behind=12"
 * ns_per_op is wall time over the loop, cpu_ns_per_op this process's CPU
 * time (user + system, the probes' and audit's kernel work included): on a
 * shared machine the wall time also counts the time other processes had the
 * core. bench/probes.sh takes medians of repeats.
 * Exit 0, or 2 on a usage error. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double clock_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double now_ns(void) {
  return clock_ns(CLOCK_MONOTONIC);
}

static double cpu_ns(void) {
  return clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

static int usage(void) {
  fprintf(stderr,
          "usage: syscall_loop getpid|openat|setuid N\n"
          "       syscall_loop paced-setuid RATE SECONDS\n");
  return 2;
}

static void paced(long rate, double seconds) {
  const long total = (long)((double)rate * seconds);
  long made = 0, denied = 0, max_behind = 0;
  const double start = now_ns();
  while (made < total) {
    /* Calls due by now; make them, then look at the clock again. */
    long due = (long)((now_ns() - start) * (double)rate / 1e9);
    if (due > total) due = total;
    if (due - made > max_behind) max_behind = due - made;
    for (; made < due; ++made) denied += setuid(0) != 0;
  }
  const double took = (now_ns() - start) / 1e9;
  printf("paced-setuid ops=%ld denied=%ld seconds=%.3f rate=%.0f max_behind=%ld\n", made, denied,
         took, (double)made / took, max_behind);
}

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) return usage();
  const char* mode = argv[1];
  if (!strcmp(mode, "paced-setuid")) {
    if (argc != 4) return usage();
    paced(atol(argv[2]), atof(argv[3]));
    return 0;
  }
  const long n = atol(argv[2]);
  if (n <= 0) return usage();
  long denied = 0;
  double start = 0, took = 0;
  const double cpu_start = cpu_ns();
  if (!strcmp(mode, "getpid")) {
    start = now_ns();
    for (long i = 0; i < n; ++i) syscall(SYS_getpid);
    took = now_ns() - start;
  } else if (!strcmp(mode, "openat")) {
    start = now_ns();
    for (long i = 0; i < n; ++i) {
      const int fd = openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
      if (fd >= 0) close(fd);
    }
    took = now_ns() - start;
  } else if (!strcmp(mode, "setuid")) {
    start = now_ns();
    for (long i = 0; i < n; ++i) denied += setuid(0) != 0;
    took = now_ns() - start;
  } else {
    return usage();
  }
  const double cpu_took = cpu_ns() - cpu_start;
  printf("%s ops=%ld ns_per_op=%.1f cpu_ns_per_op=%.1f denied=%ld\n", mode, n, took / (double)n,
         cpu_took / (double)n, denied);
  return 0;
}
