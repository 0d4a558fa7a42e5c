/* A static helper copied into test sandboxes: makes the escalation attempts
 * the probe tests count, and says what the kernel answered. One attempt per
 * argument, in order:
 *
 *   setuid  setgid  mount  bpf  chroot  unshare-net  ptrace:PID
 *   storm:N  (N setuid(0) calls)        sleep:S
 *
 * and the namespace changes the probes see without a capability check:
 *
 *   unshare-user  (unshare(CLONE_NEWUSER): this process's own user namespace)
 *   unshare-user-uts  (a user and a UTS namespace of its own)
 *   setns-uts     (setns into its own UTS namespace again: after
 *                  unshare-user-uts, a setns that succeeds unprivileged)
 *   clone-user  clone3-user  (a child in a user namespace of its own, which
 *                  exits at once)
 *   unshare-files (unshare(CLONE_FILES): no namespace changes)
 *   msleep:MS     (the probes send one namespace event per sandbox and 10 ms)
 *
 * and what a process can do to its own threads, which the sampler must see
 * through:
 *
 *   hold-thread   (a second thread that sleeps for good, holding this
 *                  thread's credentials as they are now)
 *   drop:N[,N…]   (capability numbers dropped from this thread alone: from
 *                  its bounding set, then its effective, permitted and
 *                  inheritable sets; other threads keep theirs)
 *   leader-exit   (the main thread exits; the process lives on in its
 *                  other threads, its leader a zombie; after hold-thread)
 *
 * Prints "<attempt> <errno name or ok>" per attempt; exit 0. Run it only in
 * a sandbox: on the host as root every attempt succeeds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char* what, long rc) {
  printf("%s %s\n", what, rc == 0 ? "ok" : strerrorname_np(errno));
  fflush(stdout);
}

static long setns_uts(void) {
  int fd = open("/proc/self/ns/uts", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long rc = setns(fd, CLONE_NEWUTS);
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

/* A child in a user namespace of its own (clone, or clone3), reaped. */
static long clone_user(int version) {
  long pid;
  if (version == 3) {
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    pid = syscall(SYS_clone3, &args, sizeof args);
  } else {
    pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  }
  if (pid < 0) return -1;
  if (pid == 0) _exit(0);
  int status = 0;
  waitpid((pid_t)pid, &status, 0);
  return 0;
}

static void* hold(void* arg) {
  (void)arg;
  for (;;) pause();
  return NULL;
}

/* Drops the listed capabilities from the calling thread only (the raw
 * system calls: glibc's wrappers would not be per-thread for set*id, and
 * capset never is). */
static long drop_caps(const char* list) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (syscall(SYS_capget, &header, data) != 0) return -1;
  char* copy = strdup(list);
  for (char* p = strtok(copy, ","); p; p = strtok(NULL, ",")) {
    int cap = atoi(p);
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      free(copy);
      return -1;
    }
    data[cap / 32].effective &= ~(1u << (cap % 32));
    data[cap / 32].permitted &= ~(1u << (cap % 32));
    data[cap / 32].inheritable &= ~(1u << (cap % 32));
  }
  free(copy);
  return syscall(SYS_capset, &header, data);
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
    } else if (!strcmp(a, "unshare-user")) {
      say(a, unshare(CLONE_NEWUSER));
    } else if (!strcmp(a, "unshare-files")) {
      say(a, unshare(CLONE_FILES));
    } else if (!strcmp(a, "unshare-user-uts")) {
      say(a, unshare(CLONE_NEWUSER | CLONE_NEWUTS));
    } else if (!strcmp(a, "setns-uts")) {
      say(a, setns_uts());
    } else if (!strcmp(a, "clone-user")) {
      say(a, clone_user(2));
    } else if (!strcmp(a, "clone3-user")) {
      say(a, clone_user(3));
    } else if (!strncmp(a, "ptrace:", 7)) {
      say(a, ptrace(PTRACE_ATTACH, atoi(a + 7), 0, 0));
    } else if (!strncmp(a, "storm:", 6)) {
      long n = atol(a + 6), denied = 0;
      for (long k = 0; k < n; ++k) denied += setuid(0) != 0;
      printf("%s denied %ld\n", a, denied);
      fflush(stdout);
    } else if (!strcmp(a, "hold-thread")) {
      pthread_t thread;
      errno = pthread_create(&thread, NULL, hold, NULL);
      say(a, errno == 0 ? 0 : -1);
    } else if (!strncmp(a, "drop:", 5)) {
      say(a, drop_caps(a + 5));
    } else if (!strcmp(a, "leader-exit")) {
      say(a, 0);
      syscall(SYS_exit, 0);
    } else if (!strncmp(a, "msleep:", 7)) {
      usleep((useconds_t)atoi(a + 7) * 1000);
    } else if (!strncmp(a, "sleep:", 6)) {
      sleep((unsigned)atoi(a + 6));
    } else {
      printf("%s unknown\n", a);
    }
  }
  return 0;
}
