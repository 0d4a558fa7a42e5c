/* A static helper copied into test sandboxes: makes the escalation attempts
 * the probe tests count, and says what the kernel answered. One attempt per
 * argument, in order:
 *
 *   setuid  setgid  mount  bpf  chroot  unshare-net  ptrace:PID
 *   storm:N  (N setuid(0) calls)        sleep:S
 *
 * Prints "<attempt> <errno name or ok>" per attempt; exit 0. Run it only in
 * a sandbox: on the host as root every attempt succeeds. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

static void say(const char* what, long rc) {
  printf("%s %s\n", what, rc == 0 ? "ok" : strerrorname_np(errno));
  fflush(stdout);
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (!strcmp(a, "setuid")) {
      say(a, setuid(0));
    } else if (!strcmp(a, "setgid")) {
      say(a, setgid(0));
    } else if (!strcmp(a, "mount")) {
      say(a, mount("none", "/tmp", "tmpfs", 0, NULL));
    } else if (!strcmp(a, "bpf")) {
      union bpf_attr attr;
      memset(&attr, 0, sizeof attr);
      attr.map_type = BPF_MAP_TYPE_ARRAY;
      attr.key_size = 4;
      attr.value_size = 4;
      attr.max_entries = 1;
      long fd = syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof attr);
      say(a, fd >= 0 ? 0 : -1);
    } else if (!strcmp(a, "chroot")) {
      say(a, chroot("/"));
    } else if (!strcmp(a, "unshare-net")) {
      say(a, unshare(CLONE_NEWNET));
    } else if (!strncmp(a, "ptrace:", 7)) {
      say(a, ptrace(PTRACE_ATTACH, atoi(a + 7), 0, 0));
    } else if (!strncmp(a, "storm:", 6)) {
      long n = atol(a + 6), denied = 0;
      for (long k = 0; k < n; ++k) denied += setuid(0) != 0;
      printf("%s denied %ld\n", a, denied);
      fflush(stdout);
    } else if (!strncmp(a, "sleep:", 6)) {
      sleep((unsigned)atoi(a + 6));
    } else {
      printf("%s unknown\n", a);
    }
  }
  return 0;
}
