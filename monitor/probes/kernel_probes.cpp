#include "probes/kernel_probes.hpp"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/vfs.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <utility>

#include "events.h"
#include "probes.skel.h"

namespace driftwatch::probes {
namespace {

std::string errno_text(int err) {
  return std::strerror(err < 0 ? -err : err);
}

// x86-64 numbers of the syscalls whose capability checks are escalation
// attempts worth naming; anything else is "other".
struct NamedSyscall {
  uint32_t nr;
  const char* name;
};
constexpr NamedSyscall kSyscalls[] = {
    {56, "clone"},
    {101, "ptrace"},
    {105, "setuid"},
    {106, "setgid"},
    {113, "setreuid"},
    {114, "setregid"},
    {116, "setgroups"},
    {117, "setresuid"},
    {119, "setresgid"},
    {122, "setfsuid"},
    {123, "setfsgid"},
    {126, "capset"},
    {133, "mknod"},
    {155, "pivot_root"},
    {161, "chroot"},
    {165, "mount"},
    {166, "umount2"},
    {169, "reboot"},
    {170, "sethostname"},
    {175, "init_module"},
    {246, "kexec_load"},
    {259, "mknodat"},
    {272, "unshare"},
    {308, "setns"},
    {310, "process_vm_readv"},
    {311, "process_vm_writev"},
    {313, "finit_module"},
    {321, "bpf"},
    {425, "io_uring_setup"},
    {428, "open_tree"},
    {429, "move_mount"},
    {430, "fsopen"},
    {432, "fsmount"},
    {435, "clone3"},
    {442, "mount_setattr"},
    {90, "chmod"},
    {92, "chown"},
    {94, "lchown"},
    {260, "fchownat"},
    {268, "fchmodat"},
    {257, "openat"},
    {2, "open"},
    {62, "kill"},
    {200, "tkill"},
    {234, "tgkill"},
    {160, "setrlimit"},
    {302, "prlimit64"},
    {141, "setpriority"},
    {172, "iopl"},
    {173, "ioperm"},
    {298, "perf_event_open"},
    {157, "prctl"},
};

constexpr uint32_t kNrUnshare = 272;
constexpr uint32_t kNrSetns = 308;

struct RingContext {
  const std::function<void(const AttemptEvent&)>* each = nullptr;
  const std::function<void(const LifecycleEvent&)>* lifecycle = nullptr;
};

int on_lifecycle(void* context, void* data, size_t size) {
  auto* ring = static_cast<RingContext*>(context);
  if (size < sizeof(dw_lifecycle_event) || ring->lifecycle == nullptr || !*ring->lifecycle)
    return 0;
  dw_lifecycle_event raw{};
  std::memcpy(&raw, data, sizeof raw);
  LifecycleEvent event;
  event.kind = raw.kind == DW_LIFECYCLE_FORK        ? LifecycleEvent::Kind::fork
               : raw.kind == DW_LIFECYCLE_ATTACH    ? LifecycleEvent::Kind::attach
               : raw.kind == DW_LIFECYCLE_NAMESPACE ? LifecycleEvent::Kind::namespace_change
                                                    : LifecycleEvent::Kind::exec;
  event.time_ns = raw.time_ns;
  event.token = raw.token;
  event.pid = raw.pid;
  event.syscall = raw.syscall;
  event.result = raw.result;
  event.flags = raw.flags;
  (*ring->lifecycle)(event);
  return 0;
}

int on_event(void* context, void* data, size_t size) {
  auto* ring = static_cast<RingContext*>(context);
  if (size < sizeof(dw_attempt_event) || ring->each == nullptr) return 0;
  dw_attempt_event raw{};
  std::memcpy(&raw, data, sizeof raw);
  AttemptEvent event;
  event.time_ns = raw.time_ns;
  event.cgroup_id = raw.cgroup_id;
  event.token = raw.token;
  event.pid = raw.pid;
  event.tid = raw.tid;
  event.uid = raw.uid;
  event.euid = raw.euid;
  event.syscall = raw.syscall;
  event.capability = raw.capability;
  event.result = raw.result;
  event.comm.assign(raw.comm, strnlen(raw.comm, sizeof raw.comm));
  (*ring->each)(event);
  return 0;
}

}  // namespace

std::string to_string(LifecycleEvent::Kind kind) {
  switch (kind) {
    case LifecycleEvent::Kind::exec:
      return "exec";
    case LifecycleEvent::Kind::fork:
      return "fork";
    case LifecycleEvent::Kind::attach:
      return "attach";
    case LifecycleEvent::Kind::namespace_change:
      return "namespace";
  }
  return "exec";
}

std::string describe(const LifecycleEvent& event) {
  if (event.kind != LifecycleEvent::Kind::namespace_change) return to_string(event.kind);
  char text[96];
  std::snprintf(text, sizeof text, "namespace: %s 0x%" PRIx64 " = %" PRId64,
                syscall_kind(event.syscall).c_str(), event.flags, event.result);
  return text;
}

std::string namespace_probe(const LifecycleEvent& event) {
  if (event.syscall == kNrUnshare) return "syscalls/sys_exit_unshare";
  if (event.syscall == kNrSetns) return "syscalls/sys_exit_setns";
  return "sched_process_fork";
}

TracefsStatus ensure_tracefs() {
  TracefsStatus status;
  status.needed = true;
  struct statfs fs {};
  if (::statfs(kTracefsPath, &fs) != 0) {
    status.error = std::string("cannot stat ") + kTracefsPath + ": " + errno_text(errno);
    return status;
  }
  if (fs.f_type == TRACEFS_MAGIC) {
    status.mounted = true;
    return status;
  }
  // As systemd mounts it. Left mounted: other tools expect it there, and
  // unmounting it could pull it from under one of them.
  if (::mount("nodev", kTracefsPath, "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    status.error =
        std::string("cannot mount tracefs on ") + kTracefsPath + ": " + errno_text(errno);
    return status;
  }
  status.mounted = true;
  status.mounted_by_driftwatch = true;
  return status;
}

std::string syscall_kind(uint32_t nr) {
  for (const auto& s : kSyscalls)
    if (s.nr == nr) return s.name;
  return "other";
}

const std::vector<std::string>& syscall_kinds() {
  static const std::vector<std::string> kinds = [] {
    std::vector<std::string> out;
    for (const auto& s : kSyscalls) out.push_back(s.name);
    out.push_back("other");
    return out;
  }();
  return kinds;
}

struct KernelProbes::State {
  probes_bpf* skeleton = nullptr;
  ring_buffer* ring = nullptr;
  RingContext context;
  std::vector<bpf_link*> links;
  AttachReport attached;
  TracefsStatus tracefs;
  ~State() {
    if (ring) ring_buffer__free(ring);
    for (bpf_link* link : links) bpf_link__destroy(link);
    if (skeleton) probes_bpf::destroy(skeleton);
  }
};

KernelProbes::KernelProbes(std::unique_ptr<State> state) : state_(std::move(state)) {}
KernelProbes::KernelProbes(KernelProbes&&) noexcept = default;
KernelProbes& KernelProbes::operator=(KernelProbes&&) noexcept = default;
KernelProbes::~KernelProbes() = default;

namespace {

struct Program {
  const char* name;     // in driftwatch_probe_attached
  const char* section;  // for the reason it did not attach
  bpf_program* program;
  bool syscall;  // a syscall tracepoint: needs tracefs, costs every task
};

std::vector<Program> programs_of(probes_bpf* skeleton) {
  return {
      {"cap_capable", "tp_btf/cap_capable", skeleton->progs.dw_cap_capable, false},
      {"sched_process_exec", "tp_btf/sched_process_exec", skeleton->progs.dw_exec, false},
      {"sched_process_fork", "tp_btf/sched_process_fork", skeleton->progs.dw_fork, false},
      {"cgroup_attach_task", "tp_btf/cgroup_attach_task", skeleton->progs.dw_cgroup_attach, false},
      {"syscalls/sys_exit_unshare", "tracepoint/syscalls/sys_exit_unshare",
       skeleton->progs.dw_sys_exit_unshare, true},
      {"syscalls/sys_exit_setns", "tracepoint/syscalls/sys_exit_setns",
       skeleton->progs.dw_sys_exit_setns, true},
  };
}

}  // namespace

Result<KernelProbes> KernelProbes::load(uint32_t events_per_second, bool syscall_probes) {
  auto state = std::make_unique<State>();
  state->skeleton = probes_bpf::open();
  if (!state->skeleton) return fail("probes: cannot open: ", errno_text(errno));
  state->skeleton->rodata->events_per_second = events_per_second;
  const auto programs = programs_of(state->skeleton);
  if (!syscall_probes)
    for (const auto& p : programs)
      if (p.syscall) (void)bpf_program__set_autoload(p.program, false);
  if (int err = probes_bpf::load(state->skeleton); err != 0)
    return fail("probes: cannot load (needs BTF and CAP_BPF): ", errno_text(err));
  size_t attached = 0;
  for (const auto& p : programs) {
    if (p.syscall && !syscall_probes) {
      state->attached.emplace_back(p.name,
                                   "switched off in the node config (\"syscall_probes\": false)");
      continue;
    }
    if (p.syscall && !state->tracefs.needed) state->tracefs = ensure_tracefs();
    if (p.syscall && !state->tracefs.mounted) {
      state->attached.emplace_back(
          p.name, "cannot attach " + std::string(p.section) + ": " + state->tracefs.error);
      continue;
    }
    bpf_link* link = bpf_program__attach(p.program);
    if (!link) {
      state->attached.emplace_back(
          p.name, "cannot attach " + std::string(p.section) + ": " + errno_text(errno));
      continue;
    }
    state->links.push_back(link);
    state->attached.emplace_back(p.name, "");
    ++attached;
  }
  if (attached == 0) return fail("probes: ", state->attached.front().second);
  state->ring = ring_buffer__new(bpf_map__fd(state->skeleton->maps.dw_attempt_events), on_event,
                                 &state->context, nullptr);
  if (!state->ring) return fail("probes: cannot open their ring buffer: ", errno_text(errno));
  if (ring_buffer__add(state->ring, bpf_map__fd(state->skeleton->maps.dw_lifecycle_events),
                       on_lifecycle, &state->context) != 0)
    return fail("probes: cannot open the lifecycle ring buffer: ", errno_text(errno));
  return KernelProbes(std::move(state));
}

Result<void> KernelProbes::watch_cgroup(uint64_t cgroup_id, uint32_t token) {
  if (bpf_map__update_elem(state_->skeleton->maps.dw_watched_cgroups, &cgroup_id, sizeof cgroup_id,
                           &token, sizeof token, BPF_ANY) != 0)
    return fail("probes: cannot watch cgroup ", std::to_string(cgroup_id), ": ", errno_text(errno));
  return {};
}

Result<void> KernelProbes::watch_pid_namespace(uint32_t inode, uint32_t token) {
  if (bpf_map__update_elem(state_->skeleton->maps.dw_watched_pidns, &inode, sizeof inode, &token,
                           sizeof token, BPF_ANY) != 0)
    return fail("probes: cannot watch PID namespace ", std::to_string(inode), ": ",
                errno_text(errno));
  return {};
}

void KernelProbes::unwatch_cgroup(uint64_t cgroup_id) {
  (void)bpf_map__delete_elem(state_->skeleton->maps.dw_watched_cgroups, &cgroup_id,
                             sizeof cgroup_id, 0);
}

void KernelProbes::unwatch_pid_namespace(uint32_t inode) {
  (void)bpf_map__delete_elem(state_->skeleton->maps.dw_watched_pidns, &inode, sizeof inode, 0);
}

void KernelProbes::forget_token(uint32_t token) {
  const bpf_map* map = state_->skeleton->maps.dw_attempts;
  std::vector<dw_attempt_key> doomed;
  dw_attempt_key key{}, next{};
  const void* previous = nullptr;
  while (bpf_map__get_next_key(map, previous, &next, sizeof next) == 0) {
    if (next.token == token) doomed.push_back(next);
    key = next;
    previous = &key;
  }
  for (const auto& k : doomed) (void)bpf_map__delete_elem(map, &k, sizeof k, 0);
  (void)bpf_map__delete_elem(state_->skeleton->maps.dw_rates, &token, sizeof token, 0);
  (void)bpf_map__delete_elem(state_->skeleton->maps.dw_lifecycle_last, &token, sizeof token, 0);
  (void)bpf_map__delete_elem(state_->skeleton->maps.dw_namespace_last, &token, sizeof token, 0);
  (void)bpf_map__delete_elem(state_->skeleton->maps.dw_exec_last, &token, sizeof token, 0);
}

Result<std::vector<AttemptCount>> KernelProbes::counts() const {
  const bpf_map* map = state_->skeleton->maps.dw_attempts;
  std::vector<AttemptCount> out;
  dw_attempt_key key{}, next{};
  const void* previous = nullptr;
  while (bpf_map__get_next_key(map, previous, &next, sizeof next) == 0) {
    uint64_t value = 0;
    if (bpf_map__lookup_elem(map, &next, sizeof next, &value, sizeof value, 0) == 0)
      out.push_back({next.token, next.syscall, next.capability, next.denied != 0, value});
    key = next;
    previous = &key;
  }
  if (errno != ENOENT) return fail("probes: cannot read its counters: ", errno_text(errno));
  return out;
}

AttemptLosses KernelProbes::losses() const {
  std::array<uint64_t, DW_LOST_REASONS> values{};
  for (uint32_t i = 0; i < DW_LOST_REASONS; ++i)
    (void)bpf_map__lookup_elem(state_->skeleton->maps.dw_lost, &i, sizeof i, &values[i],
                               sizeof values[i], 0);
  uint64_t lifecycle = 0;
  const uint32_t zero = 0;
  (void)bpf_map__lookup_elem(state_->skeleton->maps.dw_lifecycle_lost, &zero, sizeof zero,
                             &lifecycle, sizeof lifecycle, 0);
  return {values[DW_LOST_RINGBUF_FULL], values[DW_LOST_RATE_LIMITED], values[DW_LOST_COUNTERS_FULL],
          lifecycle};
}

int KernelProbes::events_fd() const {
  return ring_buffer__epoll_fd(state_->ring);
}

const AttachReport& KernelProbes::attach_report() const {
  return state_->attached;
}

const TracefsStatus& KernelProbes::tracefs() const {
  return state_->tracefs;
}

Result<size_t> KernelProbes::consume(const std::function<void(const AttemptEvent&)>& each,
                                     const std::function<void(const LifecycleEvent&)>& lifecycle) {
  size_t seen = 0;
  const std::function<void(const AttemptEvent&)> counting = [&](const AttemptEvent& event) {
    ++seen;
    each(event);
  };
  state_->context.each = &counting;
  state_->context.lifecycle = &lifecycle;
  const int n = ring_buffer__consume(state_->ring);
  state_->context.each = nullptr;
  state_->context.lifecycle = nullptr;
  if (n < 0) return fail("probes: cannot read its ring buffer: ", errno_text(n));
  return seen;
}

}  // namespace driftwatch::probes
