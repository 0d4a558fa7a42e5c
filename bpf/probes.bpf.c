// SPDX-License-Identifier: GPL-2.0
/* The probes, one object, each program attached on its own.
 *
 * dw_exec, dw_fork and dw_cgroup_attach (tp_btf/sched_process_exec,
 * sched_process_fork, cgroup_attach_task): something that may change a
 * watched sandbox's privileges happened (a program executed in it, a task
 * forked in it, a task moved into its cgroup); one event per sandbox and
 * DW_LIFECYCLE_WINDOW_NS (execs in a window of their own) through a ring
 * buffer of its own tells the monitor to resample it now.
 *
 * Namespace changes in a watched sandbox (DW_LIFECYCLE_NAMESPACE, a window
 * of their own): a clone or clone3 into new namespaces, seen by dw_fork; a
 * successful unshare or setns, seen by dw_sys_exit_unshare and
 * dw_sys_exit_setns (tracepoint/syscalls/sys_exit_*), the only syscall
 * tracepoints here, because nothing cheaper sees them.
 *
 * dw_cap_capable, escalation attempts: every capability check the kernel makes inside a
 * watched sandbox (tp_btf/cap_capable), with its result and the syscall the
 * task is in, counted exactly per (sandbox, syscall, capability, outcome) in
 * a hash map, and each denied one detailed through a ring buffer at most
 * `events_per_second` times per second and sandbox. Anything outside a
 * watched sandbox returns after one or two map lookups.
 *
 * Not every check is an attempt. Filtered out here:
 *  - the kernel's silent CAP_SYS_ADMIN check of memory overcommit
 *    accounting, made on brk, mmap, mprotect, mremap, shmget, execve and
 *    fork (cap_vm_enough_memory); for clone and clone3 a CAP_SYS_ADMIN check
 *    counts only when new namespaces were asked for (then it is the
 *    namespace check, an attempt);
 *  - the runtime's own setup: runc's init process ("runc:[0:PARENT]",
 *    "runc:[1:CHILD]", "runc:[2:INIT]") and crun's ("crun") dropping
 *    privileges before it executes the workload. Told apart by the task's
 *    name, which the workload can set too: a workload naming itself so hides
 *    its attempts from the detail and the counts (README, known limits). */

#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "events.h"

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 events_per_second = DW_DEFAULT_EVENTS_PER_SECOND;
extern int CONFIG_HZ __kconfig; /* ticks per second, for the rate windows */

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_WATCHED);
  __type(key, __u64); /* cgroup id (the unified hierarchy's) */
  __type(value, __u32);
} dw_watched_cgroups SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_WATCHED);
  __type(key, __u32); /* PID namespace inode */
  __type(value, __u32);
} dw_watched_pidns SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_COUNTERS);
  __type(key, struct dw_attempt_key);
  __type(value, __u64);
} dw_attempts SEC(".maps");

struct dw_rate {
  __u64 window_start; /* jiffies */
  __u64 sent;
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_WATCHED);
  __type(key, __u32);
  __type(value, struct dw_rate);
} dw_rates SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, DW_LOST_REASONS);
  __type(key, __u32);
  __type(value, __u64);
} dw_lost SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 20);
} dw_attempt_events SEC(".maps");

#define CAP_SYS_ADMIN_NR 21
/* x86-64 syscall numbers */
#define NR_mmap 9
#define NR_mprotect 10
#define NR_brk 12
#define NR_mremap 25
#define NR_shmget 29
#define NR_clone 56
#define NR_fork 57
#define NR_vfork 58
#define NR_execve 59
#define NR_execveat 322
#define NR_clone3 435
#define NR_unshare 272
#define NR_setns 308
#define DW_CLONE_NEW_NAMESPACES \
  0x7E020000ULL                  /* NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET */
#define DW_CLONE_NEWTIME 0x80ULL /* unshare and clone3 only */
#define DW_NAMESPACE_FLAGS (DW_CLONE_NEW_NAMESPACES | DW_CLONE_NEWTIME)

static __always_inline void count_lost(__u32 reason) {
  __u64* value = bpf_map_lookup_elem(&dw_lost, &reason);
  if (value) __sync_fetch_and_add(value, 1);
}

/* Kernel memory is read directly through the BTF-typed pointers the
 * tracepoints and bpf_get_current_task_btf() give (CO-RE relocated loads),
 * not through helper calls: on the machines measured (README, "The probes")
 * every call and return goes through the kernel's return thunk, and the
 * helper calls were most of the capability probe's cost. */

/* The token of the watched sandbox `task` is in: its cgroup in the unified
 * hierarchy (what bpf_get_current_cgroup_id gives), else its PID namespace.
 * A task in the initial PID namespace (level 0) is in no sandbox's private
 * one, so a task outside every sandbox costs one map lookup. */
static __always_inline __u32* watched_token(struct task_struct* task) {
  __u64 cgroup = task->cgroups->dfl_cgrp->kn->id;
  __u32* token = bpf_map_lookup_elem(&dw_watched_cgroups, &cgroup);
  if (token) return token;
  struct pid* pid = task->thread_pid;
  unsigned int level = pid->level;
  if (level == 0) return 0;
  __u32 inum = BPF_CORE_READ(pid, numbers[level].ns, ns.inum);
  return bpf_map_lookup_elem(&dw_watched_pidns, &inum);
}

static __always_inline int is_runtime_setup(const char comm[16]) {
  if (comm[0] == 'r' && comm[1] == 'u' && comm[2] == 'n' && comm[3] == 'c' && comm[4] == ':' &&
      comm[5] == '[')
    return 1;
  return comm[0] == 'c' && comm[1] == 'r' && comm[2] == 'u' && comm[3] == 'n' && comm[4] == 0;
}

/* Whether a CAP_SYS_ADMIN check in syscall `nr` is the overcommit
 * accounting rather than an attempt. */
static __always_inline int is_accounting_check(long nr, struct pt_regs* regs) {
  switch (nr) {
    case NR_mmap:
    case NR_mprotect:
    case NR_brk:
    case NR_mremap:
    case NR_shmget:
    case NR_execve:
    case NR_execveat:
    case NR_fork:
    case NR_vfork:
      return 1;
    case NR_clone:
      return (regs->di & DW_CLONE_NEW_NAMESPACES) == 0;
    case NR_clone3: {
      __u64 flags = 0; /* struct clone_args starts with its flags */
      if (bpf_probe_read_user(&flags, sizeof flags, (void*)regs->di) != 0) return 0;
      return (flags & DW_CLONE_NEW_NAMESPACES) == 0;
    }
  }
  return 0;
}

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 18);
} dw_lifecycle_events SEC(".maps");

/* The last lifecycle event sent per token, for the window. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_WATCHED);
  __type(key, __u32);
  __type(value, __u64);
} dw_lifecycle_last SEC(".maps");

/* The last exec event sent per token: a window of its own, so that the
 * exec by which a runtime's init becomes the workload (a few milliseconds
 * after it entered the sandbox's cgroup, itself an event) is sent, and
 * times the workload's start (the monitor's detection latency). */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_WATCHED);
  __type(key, __u32);
  __type(value, __u64);
} dw_exec_last SEC(".maps");

/* The last namespace event sent per token: a window of its own. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, DW_MAX_WATCHED);
  __type(key, __u32);
  __type(value, __u64);
} dw_namespace_last SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} dw_lifecycle_lost SEC(".maps");

/* What a namespace event says beyond its kind (zero for the others). */
struct dw_namespace_change {
  __u32 syscall;
  __s64 result;
  __u64 flags;
};

/* One event per token and DW_LIFECYCLE_WINDOW_NS in `last` (a map). */
static __always_inline void send_lifecycle(void* last_map, __u32 token, __u32 kind, __u32 pid,
                                           const struct dw_namespace_change* change) {
  const __u64 now = bpf_ktime_get_ns();
  __u64* last = bpf_map_lookup_elem(last_map, &token);
  if (last && now - *last < DW_LIFECYCLE_WINDOW_NS) return;
  bpf_map_update_elem(last_map, &token, &now, BPF_ANY);
  struct dw_lifecycle_event* event = bpf_ringbuf_reserve(&dw_lifecycle_events, sizeof *event, 0);
  if (!event) {
    __u32 zero = 0;
    __u64* lost = bpf_map_lookup_elem(&dw_lifecycle_lost, &zero);
    if (lost) __sync_fetch_and_add(lost, 1);
    return;
  }
  event->time_ns = now;
  event->token = token;
  event->kind = kind;
  event->pid = pid;
  event->syscall = change ? change->syscall : 0;
  event->result = change ? change->result : 0;
  event->flags = change ? change->flags : 0;
  bpf_ringbuf_submit(event, 0);
}

static __always_inline void lifecycle(__u32 token, __u32 kind, __u32 pid) {
  send_lifecycle(&dw_lifecycle_last, token, kind, pid, 0);
}

static __always_inline void namespace_changed(__u32 token, __u32 pid,
                                              const struct dw_namespace_change* change) {
  send_lifecycle(&dw_namespace_last, token, DW_LIFECYCLE_NAMESPACE, pid, change);
}

/* The CLONE_NEW* flags a clone or clone3 in progress asked for (its saved
 * registers; clone3's struct clone_args starts with its flags, in user
 * memory), 0 when they cannot be read. */
static __always_inline __u64 clone_flags(long nr, struct pt_regs* regs) {
  if (nr == NR_clone) return regs->di & DW_NAMESPACE_FLAGS;
  __u64 flags = 0;
  if (nr == NR_clone3 && bpf_probe_read_user(&flags, sizeof flags, (void*)regs->di) != 0) return 0;
  return flags & DW_NAMESPACE_FLAGS;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(dw_exec, struct task_struct* p, pid_t old_pid, struct linux_binprm* bprm) {
  __u32* token = watched_token(bpf_get_current_task_btf());
  if (token) send_lifecycle(&dw_exec_last, *token, DW_LIFECYCLE_EXEC, p->tgid, 0);
  return 0;
}

/* A clone or clone3 with CLONE_NEW* flags is seen here, after the fact and
 * with no syscall tracepoint: the child's namespaces (its nsproxy, or its
 * credentials' user namespace, for CLONE_NEWUSER) are not its parent's. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(dw_fork, struct task_struct* parent, struct task_struct* child) {
  struct task_struct* task = bpf_get_current_task_btf();
  __u32* token = watched_token(task);
  if (!token) return 0;
  const __u32 pid = child->tgid;
  if (child->nsproxy == parent->nsproxy &&
      child->real_cred->user_ns == parent->real_cred->user_ns) {
    lifecycle(*token, DW_LIFECYCLE_FORK, pid);
    return 0;
  }
  struct pt_regs* regs = (struct pt_regs*)bpf_task_pt_regs(task);
  const long nr = regs->orig_ax;
  struct dw_namespace_change change = {
      .syscall = (__u32)nr, .result = pid, .flags = clone_flags(nr, regs)};
  namespace_changed(*token, pid, &change);
  return 0;
}

/* Fires once per hierarchy; only the unified one's cgroup ids are watched. */
SEC("tp_btf/cgroup_attach_task")
int BPF_PROG(dw_cgroup_attach, struct cgroup* dst, const char* path, struct task_struct* task,
             bool threadgroup) {
  if (dst->root->hierarchy_id != 0) return 0;
  __u64 id = dst->kn->id;
  __u32* token = bpf_map_lookup_elem(&dw_watched_cgroups, &id);
  if (token) lifecycle(*token, DW_LIFECYCLE_ATTACH, task->tgid);
  return 0;
}

/* unshare and setns, on their way out: nothing cheaper sees them. An
 * unprivileged unshare(CLONE_NEWUSER) makes no capability check (so
 * cap_capable never fires), forks nothing and executes nothing. Only what
 * succeeded changed a namespace; what failed for want of a capability is
 * already counted by cap_capable. The syscall's arguments are still in the
 * task's saved registers on exit (x86-64 preserves rdi and rsi), so the exit
 * tracepoint alone does: no enter program, no per-task map.
 *
 * Enabling any syscall tracepoint moves every task on the node onto the
 * slow syscall path (README, "The probes": the measured cost), so these two
 * can be switched off in the node config ("syscall_probes": false). */
static __always_inline int syscall_exit(long nr, long ret, __u64 flags) {
  __u32* token = watched_token(bpf_get_current_task_btf());
  if (!token) return 0;
  struct dw_namespace_change change = {.syscall = (__u32)nr, .result = ret, .flags = flags};
  namespace_changed(*token, bpf_get_current_pid_tgid() >> 32, &change);
  return 0;
}

static __always_inline struct pt_regs* current_regs(void) {
  return (struct pt_regs*)bpf_task_pt_regs(bpf_get_current_task_btf());
}

SEC("tracepoint/syscalls/sys_exit_unshare")
int dw_sys_exit_unshare(struct trace_event_raw_sys_exit* ctx) {
  if (ctx->ret != 0) return 0; /* failed: nothing changed */
  const __u64 flags = current_regs()->di;
  /* CLONE_FS, CLONE_FILES, CLONE_SYSVSEM alone leave the namespaces be */
  if ((flags & DW_NAMESPACE_FLAGS) == 0) return 0;
  return syscall_exit(NR_unshare, ctx->ret, flags & DW_NAMESPACE_FLAGS);
}

SEC("tracepoint/syscalls/sys_exit_setns")
int dw_sys_exit_setns(struct trace_event_raw_sys_exit* ctx) {
  if (ctx->ret != 0) return 0; /* failed: nothing changed */
  return syscall_exit(NR_setns, ctx->ret, current_regs()->si);
}

SEC("tp_btf/cap_capable")
int BPF_PROG(dw_cap_capable, const struct cred* cred, struct user_namespace* target_ns,
             const struct user_namespace* capable_ns, int cap, int ret) {
  struct task_struct* task = bpf_get_current_task_btf();
  __u32* found = watched_token(task);
  if (!found) return 0;
  const __u32 token = *found;
  if (is_runtime_setup(task->comm)) return 0;

  struct pt_regs* regs = (struct pt_regs*)bpf_task_pt_regs(task);
  const long nr = regs->orig_ax;
  if (nr < 0) return 0; /* not in a syscall (a kernel thread's work) */
  if (cap == CAP_SYS_ADMIN_NR && is_accounting_check(nr, regs)) return 0;

  struct dw_attempt_key key = {
      .token = token, .syscall = (__u32)nr, .capability = (__u32)cap, .denied = ret != 0};
  __u64* count = bpf_map_lookup_elem(&dw_attempts, &key);
  if (!count) {
    __u64 zero = 0;
    if (bpf_map_update_elem(&dw_attempts, &key, &zero, BPF_NOEXIST) != 0 &&
        !bpf_map_lookup_elem(&dw_attempts, &key)) {
      count_lost(DW_LOST_COUNTERS_FULL);
      return 0;
    }
    count = bpf_map_lookup_elem(&dw_attempts, &key);
    if (!count) {
      count_lost(DW_LOST_COUNTERS_FULL);
      return 0;
    }
  }
  __sync_fetch_and_add(count, 1);
  if (ret == 0) return 0; /* allowed checks are counted, not detailed */

  /* At most events_per_second details per sandbox and second, windows timed
   * in jiffies (a tick's precision, and no clock read). */
  const __u64 now = bpf_jiffies64();
  struct dw_rate* rate = bpf_map_lookup_elem(&dw_rates, &token);
  if (!rate) {
    struct dw_rate fresh = {.window_start = now, .sent = 0};
    bpf_map_update_elem(&dw_rates, &token, &fresh, BPF_NOEXIST);
    rate = bpf_map_lookup_elem(&dw_rates, &token);
    if (!rate) return 0;
  }
  if (now - rate->window_start >= (__u64)CONFIG_HZ) {
    rate->window_start = now;
    rate->sent = 0;
  }
  if (rate->sent >= events_per_second) {
    count_lost(DW_LOST_RATE_LIMITED);
    return 0;
  }
  __sync_fetch_and_add(&rate->sent, 1);

  struct dw_attempt_event* event = bpf_ringbuf_reserve(&dw_attempt_events, sizeof *event, 0);
  if (!event) {
    count_lost(DW_LOST_RINGBUF_FULL);
    return 0;
  }
  bpf_get_current_comm(event->comm, sizeof event->comm);
  event->time_ns = bpf_ktime_get_ns();
  event->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
  event->token = token;
  const __u64 pid_tgid = bpf_get_current_pid_tgid();
  event->pid = pid_tgid >> 32;
  event->tid = (__u32)pid_tgid;
  event->uid = cred->uid.val;
  event->euid = cred->euid.val;
  event->syscall = (__u32)nr;
  event->capability = cap;
  event->result = ret;
  bpf_ringbuf_submit(event, 0);
  return 0;
}
