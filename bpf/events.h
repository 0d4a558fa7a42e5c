/* The records shared by the BPF programs (bpf/NAME.bpf.c) and the monitor
 * (monitor/probes/): map keys and values and ring-buffer events. Plain C,
 * fixed-width types only, laid out the same for both compilers. */
#ifndef DRIFTWATCH_BPF_EVENTS_H
#define DRIFTWATCH_BPF_EVENTS_H

#ifdef __BPF__
/* vmlinux.h defines __u32 and friends. */
#else
#include <linux/types.h>
#endif

/* A watched sandbox is named in the kernel by a token the monitor assigns
 * (never 0); the watched maps give the token of a cgroup id or of a PID
 * namespace inode. */
#define DW_MAX_WATCHED 4096
/* Distinct (sandbox, syscall, capability, outcome) counters held at once. */
#define DW_MAX_COUNTERS 65536

/* A capability check inside a watched sandbox: counted exactly per key. */
struct dw_attempt_key {
  __u32 token;
  __u32 syscall; /* the syscall number the task is in (x86-64) */
  __u32 capability;
  __u32 denied; /* 1: the kernel refused it; 0: allowed */
};

/* Indexes of the `dw_lost` array: what was counted but not detailed, or not
 * counted at all (that one must stay 0). */
enum dw_lost_reason {
  DW_LOST_RINGBUF_FULL = 0,  /* a detail event the ring buffer had no room for */
  DW_LOST_RATE_LIMITED = 1,  /* a detail event over the sandbox's rate */
  DW_LOST_COUNTERS_FULL = 2, /* an attempt not counted: the counter map is full */
  DW_LOST_REASONS = 3,
};

/* A denied attempt, in detail (rate-limited per sandbox). */
struct dw_attempt_event {
  __u64 time_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
  __u64 cgroup_id;
  __u32 token;
  __u32 pid; /* thread group id, in the initial PID namespace */
  __u32 tid;
  __u32 uid; /* the task's real uid, in the initial user namespace */
  __u32 euid;
  __u32 syscall;
  __s32 capability;
  __s32 result; /* cap_capable's return: 0 or -EPERM */
  char comm[16];
};

/* Something that may change a watched sandbox's privileges: the monitor
 * resamples it at once. */
enum dw_lifecycle_kind {
  DW_LIFECYCLE_EXEC = 1,   /* a task in the sandbox executed a program */
  DW_LIFECYCLE_FORK = 2,   /* a task in the sandbox forked */
  DW_LIFECYCLE_ATTACH = 3, /* a task was moved into the sandbox's cgroup */
  /* a task in the sandbox changed namespaces: unshare or setns succeeded,
   * or it forked a child into namespaces of its own (clone, clone3) */
  DW_LIFECYCLE_NAMESPACE = 4,
};

struct dw_lifecycle_event {
  __u64 time_ns; /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
  __u32 token;
  __u32 kind;
  __u32 pid;     /* the task it happened to (the child, for a fork) */
  __u32 syscall; /* DW_LIFECYCLE_NAMESPACE: the syscall (x86-64 number); else 0 */
  __s64 result;  /* DW_LIFECYCLE_NAMESPACE: its return (the child's pid for clone) */
  __u64 flags;   /* DW_LIFECYCLE_NAMESPACE: the CLONE_NEW* flags (setns: its nstype) */
};

/* Lifecycle events per sandbox and 10 ms at most: a resample needs one.
 * Namespace changes have a window of their own, so that an exec or a fork
 * just before cannot swallow one. */
#define DW_LIFECYCLE_WINDOW_NS 10000000ULL

/* The per-sandbox detail rate limit (events per second), set before load. */
#define DW_DEFAULT_EVENTS_PER_SECOND 100

#endif
