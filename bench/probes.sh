#!/usr/bin/env bash
# The probes' benchmarks, in one command (as root, after a build; bench/run.sh
# calls it):
#
#   1. overhead on syscall-heavy loops inside a watched no-capability runc
#      sandbox (bench/syscall_loop.c: getpid, openat+close, a denied
#      setuid(0) storm), under four conditions in interleaved rounds: no
#      monitor; `driftwatch run` watching the sandbox (probes on); auditd
#      with rules for the privilege-related syscalls; a bpftrace script
#      counting the same syscalls' sys_exit tracepoints per cgroup; then
#      the probes' own cost per call (kernel.bpf_stats_enabled), and getpid
#      and openat+close in many short paired rounds of no probes, the
#      probes alone (watching the loop's cgroup) and the same bpftrace
#      script (build/bench/syscall_probe_bench), which resolves what the
#      rounds of whole monitors cannot on a noisy machine;
#   2. lost counts: setuid(0) paced at 100,000/s for 10 s in the watched
#      sandbox, against driftwatch_escalation_attempts_total and
#      driftwatch_probe_events_lost_total, and the probe's attempts not
#      counted (/healthz, must be 0);
#   3. the daemon's own CPU (utime + stime of the front and the sampler, from
#      /proc) with 200 idle watched sandboxes, sweep interval 10 s against
#      60 s;
#   4. drift detection latency on attested sandboxes with a 60 s sweep:
#      runc exec --cap CAP_SYS_ADMIN, runc update --memory and --pids-limit
#      higher, a host process moved into the sandbox's cgroups
#      (build/bench/probes_bench latency), polled through GET
#      /v1/sandboxes/ID and read from driftwatch_detection_latency_seconds.
#
# Prints Markdown on stdout and saves it as bench/results/probes-<date>.md.
# Everything it starts (containers, daemons, auditd and its rules, bpftrace)
# is stopped and removed at the end, also on failure or Ctrl-C.
#
#   bench/probes.sh [--build DIR] [--quick] [--rounds N] [--paired-rounds N]
#                   [--idle-seconds S] [--changes N] [--storm-rate R]
#                   [--storm-seconds S]
#
# --build: the build directory (default build/); --quick: fewer rounds, a
# 30 s CPU window, 40 changes, a 3 s storm, 20 idle sandboxes, for a check.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "bench/probes.sh: $*" >&2; }

build=build
rounds=5
paired_rounds=41
reps=3
idle_seconds=120
idle_sandboxes=200
changes=200
controls=20
settle_ms=300
storm_rate=100000
storm_seconds=10
quick=""
while (($#)); do
  case $1 in
    --build) build=$2; shift 2 ;;
    --quick) quick=1; rounds=2; paired_rounds=5; reps=2; idle_seconds=30; idle_sandboxes=20
      changes=40
      controls=4
      storm_seconds=3; shift ;;
    --rounds) rounds=$2; shift 2 ;;
    --paired-rounds) paired_rounds=$2; shift 2 ;;
    --idle-seconds) idle_seconds=$2; shift 2 ;;
    --changes) changes=$2; shift 2 ;;
    --storm-rate) storm_rate=$2; shift 2 ;;
    --storm-seconds) storm_seconds=$2; shift 2 ;;
    *) say "unknown option $1"; exit 2 ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  say "must run as root: it starts runc containers, the daemon (which loads eBPF programs)," \
    "auditd and bpftrace (try: sudo bench/probes.sh)"
  exit 2
fi
dw=$build/driftwatch
bench_bin=$build/bench/probes_bench
loop_bin=$build/bench/syscall_loop
for tool in "$dw" "$bench_bin" "$loop_bin"; do
  [[ -x $tool ]] || { say "$tool is missing: build first (scripts/build.sh, or --build DIR)"; exit 1; }
done
for tool in runc auditd auditctl bpftrace jq curl; do
  command -v "$tool" >/dev/null || { say "$tool is missing: run scripts/install-deps.sh"; exit 1; }
done
if pgrep -x auditd >/dev/null; then
  say "an auditd is running already: this bench starts and stops its own; stop that one first"
  exit 1
fi

prefix="dwprobes-$$-"
work=$(mktemp -d /var/tmp/driftwatch-probes-bench.XXXXXX)
chmod 0755 "$work"  # the daemon's user walks into its state dirs
daemon_pid=""
hold_pid=""
hold_in=""
auditd_pid=""
audit_enabled_before=""
audit_backlog_before=""
mounted_tracefs=""
bpftrace_pid=""
child=""

stop_daemon() {
  if [[ -n $daemon_pid ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  daemon_pid=""
}

stop_auditd() {
  auditctl -D -k dwbench >/dev/null 2>&1 || true
  if [[ -n $auditd_pid ]]; then
    kill -TERM "$auditd_pid" 2>/dev/null || true
    wait "$auditd_pid" 2>/dev/null || true
  fi
  auditd_pid=""
  if [[ -n $audit_enabled_before ]]; then
    auditctl -e "$audit_enabled_before" -b "$audit_backlog_before" >/dev/null 2>&1 || true
  fi
}

stop_bpftrace() {
  if [[ -n $bpftrace_pid ]]; then
    kill -INT "$bpftrace_pid" 2>/dev/null || true
    wait "$bpftrace_pid" 2>/dev/null || true
  fi
  bpftrace_pid=""
}

stop_hold() {
  if [[ -n $hold_in ]]; then exec {hold_in}>&-; fi
  hold_in=""
  if [[ -n $hold_pid ]]; then
    # Closing stdin ends it; it deletes its containers first.
    local waited=0
    while kill -0 "$hold_pid" 2>/dev/null && ((waited++ < 1200)); do sleep 0.1; done
    kill -TERM "$hold_pid" 2>/dev/null || true
    wait "$hold_pid" 2>/dev/null || true
  fi
  hold_pid=""
}

# delete_leftovers
source bench/lib.sh

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ -n $child ]]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  stop_bpftrace
  stop_auditd
  stop_daemon
  [[ -n ${stats_before:-} ]] && restore_stats
  stop_hold
  delete_leftovers
  if [[ -n $mounted_tracefs ]]; then umount /sys/kernel/tracing 2>/dev/null || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted; cleaning up"; exit 130' INT TERM HUP

# Runs a command in the background and waits for it, so that a signal runs
# the trap at once (bash defers traps until a foreground command ends).
run_waited() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

load() { cut -d' ' -f1-3 /proc/loadavg; }
median_of() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print "nan"; else print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# Nearest-rank percentile: percentile_of 99 < values.
percentile_of() { sort -g | awk -v q="$1" '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit} r = int(q / 100 * NR); if (r < q / 100 * NR) r++; if (r < 1) r = 1; print v[r]}'; }
fmt() { awk -v d="$1" '{printf "%." d "f\n", $1}'; }

# ---- the daemon ----------------------------------------------------------------
"$dw" keygen --name cp-bench --out "$work/keys" >/dev/null
jq -n --arg pem "$(cat "$work/keys/cp-bench.pub")" \
  '{control_plane: [{name: "cp-bench", public_key_pem: $pem}]}' >"$work/trust.json"

# Writes a node config for state dir $1 with sweep interval $2 (and a grace
# period for unlaunched sandboxes of $3 s, default 30).
node_config() {
  jq -n --arg state "$work/$1" --arg trust "$work/trust.json" --argjson sweep "$2" \
    --argjson grace "${3:-30}" \
    '{node_name: "bench-node", listen: "127.0.0.1:0", state_dir: $state, trust: $trust,
      sweep_interval_seconds: $sweep, unattested_grace_seconds: $grace, probes: true}' \
    >"$work/$1.json"
}

port=""
http() { curl -sf --max-time 10 "http://127.0.0.1:$port$1"; }
# A series' value in /metrics (0 when absent).
metric() { http /metrics | awk -v s="$1" '$1 == s {print $2; found = 1} END {if (!found) print 0}'; }

# Starts the daemon on config $1 and waits until it runs; sets daemon_pid, port.
start_daemon() {
  local out=$work/daemon.log
  : >"$out"
  "$dw" run --config "$1" >"$out" 2>&1 &
  daemon_pid=$!
  local waited=0
  until grep -q ' info running$' "$out"; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      say "driftwatch run --config $1 exited:"; cat "$out" >&2; daemon_pid=""; exit 1
    fi
    if ((waited++ > 6000)); then say "not running after 60 s"; cat "$out" >&2; exit 1; fi
    sleep 0.01
  done
  port=$(sed -n 's/.*listening on .* (port \([0-9]*\)).*/\1/p' "$out" | head -1)
  [[ $(http /healthz | jq -r '.probes.cap_capable.attached') == true ]] ||
    { say "the probes are not attached: $(http /healthz | jq -c .probes)"; exit 1; }
}

# Waits until the daemon watches at least $1 sandboxes through its probe.
wait_watched() {
  local waited=0 n=0
  while n=$(http /healthz | jq '.probes.cap_capable.watched_sandboxes') && ((n < $1)); do
    if ((waited++ > 600)); then say "only $n of $1 sandboxes watched after 60 s"; exit 1; fi
    sleep 0.1
  done
}

# Starts `probes_bench hold`; its container ids go to $work/held.
start_hold() {
  coproc HOLD { exec "$bench_bin" --id-prefix "$prefix" hold "$@"; }
  # shellcheck disable=SC2153  # HOLD_PID is set by coproc
  hold_pid=$HOLD_PID
  hold_in=${HOLD[1]}
  : >"$work/held"
  local line
  while read -r -t 600 -u "${HOLD[0]}" line; do
    [[ $line == ready ]] && return 0
    echo "$line" >>"$work/held"
  done
  say "probes_bench hold did not get its sandboxes ready"
  exit 1
}

# ---- 1. overhead on syscall loops ----------------------------------------------
# The privilege-related syscalls of the probe's list (monitor/probes/
# kernel_probes.cpp) that only a privileged operation makes: auditd's rules
# and bpftrace's tracepoints. Left out: the everyday ones whose capability
# checks the probe also names (open, openat, chmod, chown, kill, clone,
# prctl, prlimit64, setrlimit, setpriority): a rule on every openat is not
# what a user would write to watch escalation attempts.
privileged_syscalls=(setuid setgid setreuid setregid setgroups setresuid setresgid setfsuid
  setfsgid capset ptrace mount umount2 pivot_root chroot unshare setns init_module finit_module
  kexec_load bpf reboot sethostname mknod mknodat process_vm_readv process_vm_writev open_tree
  move_mount fsopen fsmount mount_setattr iopl ioperm perf_event_open io_uring_setup)

tracefs=/sys/kernel/tracing
if [[ ! -d $tracefs/events ]]; then
  mount -t tracefs tracefs "$tracefs"  # for bpftrace too; unmounted at the end
  mounted_tracefs=1
fi
traced=()
for s in "${privileged_syscalls[@]}"; do
  [[ -d $tracefs/events/syscalls/sys_exit_$s ]] && traced+=("tracepoint:syscalls:sys_exit_$s")
done
{
  echo "// privilege-related syscalls' results, counted per cgroup"
  for ((i = 0; i < ${#traced[@]}; i++)); do
    if ((i + 1 < ${#traced[@]})); then echo "${traced[$i]},"; else echo "${traced[$i]}"; fi
  done
  echo "{ @calls[cgroup, probe, args->ret] = count(); }"
} >"$work/attempts.bt"

start_auditd() {
  # Its own config and log under $work: the host's audit log is not touched.
  mkdir -p "$work/audit"
  sed -e "s|^log_file *=.*|log_file = $work/audit/audit.log|" /etc/audit/auditd.conf \
    >"$work/audit/auditd.conf"
  chmod 0640 "$work/audit/auditd.conf"
  audit_enabled_before=$(auditctl -s | awk '$1 == "enabled" {print $2}')
  audit_backlog_before=$(auditctl -s | awk '$1 == "backlog_limit" {print $2}')
  auditd -n -c "$work/audit" &
  auditd_pid=$!
  local waited=0
  until [[ $(auditctl -s | awk '$1 == "pid" {print $2}') == "$auditd_pid" ]]; do
    if ! kill -0 "$auditd_pid" 2>/dev/null; then say "auditd exited"; auditd_pid=""; exit 1; fi
    if ((waited++ > 500)); then say "auditd did not register within 5 s"; exit 1; fi
    sleep 0.01
  done
  # As Debian's default rules file: a backlog of 8192, failures to printk.
  auditctl -b 8192 -f 1 -e 1 >/dev/null
  local list
  list=$(IFS=,; echo "${privileged_syscalls[*]}")
  auditctl -a always,exit -F arch=b64 -S "$list" -k dwbench >/dev/null
}

start_bpftrace() {
  bpftrace "$work/attempts.bt" >"$work/bpftrace.out" 2>&1 &
  bpftrace_pid=$!
  local waited=0
  until grep -q '^Attaching' "$work/bpftrace.out"; do
    if ! kill -0 "$bpftrace_pid" 2>/dev/null; then
      say "bpftrace exited:"; cat "$work/bpftrace.out" >&2; bpftrace_pid=""; exit 1
    fi
    if ((waited++ > 6000)); then say "bpftrace did not attach within 60 s"; exit 1; fi
    sleep 0.01
  done
  sleep 1  # "Attaching N probes..." comes before the last one is attached
}

# The loops run on the last CPU, each monitor's own processes on the first
# (taskset): the monitors' user-space work then does not take the loop's
# core, and what is left in the loop's CPU time is their kernel-side cost.
loop_cpu=$(($(nproc) - 1))
pin_monitor() {
  local pid
  for pid in "$@"; do taskset -a -p -c 0 "$pid" >/dev/null; done
}

setup_condition() {
  case $1 in
    none) ;;
    driftwatch) start_daemon "$work/overhead.json"; wait_watched 1
      pin_monitor "$daemon_pid" "$(http /healthz | jq -r '.processes.sampler.pid')" ;;
    auditd) start_auditd; pin_monitor "$auditd_pid" ;;
    bpftrace) start_bpftrace; pin_monitor "$bpftrace_pid" ;;
  esac
}

teardown_condition() {
  case $1 in
    none) ;;
    driftwatch) stop_daemon ;;
    auditd) stop_auditd ;;
    bpftrace) stop_bpftrace ;;
  esac
}

# Wall and CPU ns/op of one run of the loop program in the sandbox, a tab
# between them.
loop_ns() {
  local out
  out=$(taskset -c "$loop_cpu" runc exec "$sandbox" /bin/syscall_loop "$@")
  sed -n 's/.* ns_per_op=\([0-9.]*\) cpu_ns_per_op=\([0-9.]*\).*/\1\t\2/p' <<<"$out"
}

declare -A ops=([getpid]=2000000 [openat]=300000 [setuid]=200000)
if [[ -n $quick ]]; then ops=([getpid]=1000000 [openat]=200000 [setuid]=200000); fi
conditions=(none driftwatch auditd bpftrace)
modes=(getpid openat setuid)

say "starting a no-capability runc sandbox"
start_hold --sandboxes 1 --loop "$loop_bin"
sandbox=$(head -1 "$work/held")
node_config overhead 10

load_overhead=$(load)
say "overhead: $rounds rounds x ${#conditions[@]} conditions x ${#modes[@]} loops x $reps"
: >"$work/overhead.tsv"
for ((r = 0; r < rounds; r++)); do
  # Each round starts with another condition: none is always first or last.
  for ((c = 0; c < ${#conditions[@]}; c++)); do
    cond=${conditions[$(((c + r) % ${#conditions[@]}))]}
    setup_condition "$cond"
    for mode in "${modes[@]}"; do
      for ((k = 0; k < reps; k++)); do
        echo -e "$r\t$cond\t$mode\t$(loop_ns "$mode" "${ops[$mode]}")" >>"$work/overhead.tsv"
      done
    done
    if [[ $cond == auditd ]]; then
      auditctl -s | awk '$1 == "lost" {print $2}' >>"$work/overhead-audit-lost"
    fi
    if [[ $cond == driftwatch ]]; then
      sleep 1.2  # the daemon reads the probe's counters every second
      metric 'driftwatch_escalation_attempts_total{kind="setuid",outcome="denied"}' \
        >>"$work/overhead-dw-denied"
    fi
    teardown_condition "$cond"
  done
  say "round $((r + 1))/$rounds done (load $(load))"
done
load_overhead_end=$(load)

# The probes' own work in the kernel during each loop, counted by the kernel
# (kernel.bpf_stats_enabled: run count and run time of each program): how
# many times each driftwatch program ran per call of the loop, and its time
# per call. Measured in a pass of its own, because the statistics add two
# clock reads to each program run.
prog_stats() {
  bpftool prog show -j | jq -r '.[] | select(.name | startswith("dw_")) |
    "\(.name)\t\(.run_cnt // 0)\t\(.run_time_ns // 0)"' | sort
}
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
restore_stats() { sysctl -qw kernel.bpf_stats_enabled="$stats_before" || true; }
say "the probes' in-kernel cost per call (kernel.bpf_stats_enabled)"
start_daemon "$work/overhead.json"
wait_watched 1
pin_monitor "$daemon_pid" "$(http /healthz | jq -r '.processes.sampler.pid')"
sysctl -qw kernel.bpf_stats_enabled=1
: >"$work/probe-cost.tsv"
for mode in "${modes[@]}"; do
  prog_stats >"$work/stats-before"
  loop_ns "$mode" "${ops[$mode]}" >/dev/null
  prog_stats >"$work/stats-after"
  join -t $'\t' "$work/stats-before" "$work/stats-after" |
    awk -F'\t' -v m="$mode" -v n="${ops[$mode]}" \
      '{printf "%s\t%s\t%d\t%.3f\t%.1f\t%.1f\n", m, $1, $4 - $2, ($4 - $2) / n, ($5 - $3) / n, ($4 > $2) ? ($5 - $3) / ($4 - $2) : 0}' \
      >>"$work/probe-cost.tsv"
done
restore_stats
stop_daemon

# Paired rounds of the probes alone against bpftrace: getpid and
# openat+close in one process on the loops' CPU, each round loading and
# attaching driftwatch's programs afresh (watching the process's own cgroup,
# as a sandbox's) and starting the bpftrace script afresh, in rotating
# order; the median of each round's ratio to no probes.
say "paired rounds: no probes, the probes alone, bpftrace ($paired_rounds rounds)"
load_paired=$(load)
taskset -c "$loop_cpu" "$build/bench/syscall_probe_bench" --rounds "$paired_rounds" --watched \
  --bpftrace "$work/attempts.bt" --tsv "$work/paired.tsv" >"$work/paired.txt" 2>"$work/paired.err" ||
  { say "syscall_probe_bench failed:"; cat "$work/paired.err" >&2; exit 1; }
load_paired_end=$(load)
audit_lost=$(awk 'NR == 1 {a = $1} {b = $1} END {print b - a}' "$work/overhead-audit-lost")
bpftrace_setuid=$(awk '/sys_exit_setuid, -1\]/ {print $NF}' "$work/bpftrace.out" | sort -g | tail -1)

# ---- 2. lost counts at 100,000 attempts/s --------------------------------------
say "storm: setuid(0) at $storm_rate/s for $storm_seconds s"
start_daemon "$work/overhead.json"
wait_watched 1
sleep 2  # a poll of the counters between the start and the storm
denied_series='driftwatch_escalation_attempts_total{kind="setuid",outcome="denied"}'
lost_series='driftwatch_probe_events_lost_total{probe="cap_capable"}'
denied0=$(metric "$denied_series")
lost0=$(metric "$lost_series")
details0=$(http /healthz | jq '.probes.cap_capable.details')
load_storm=$(load)
storm_out=$(runc exec "$sandbox" /bin/syscall_loop paced-setuid "$storm_rate" "$storm_seconds")
# The daemon reads the kernel's counters every second: wait until they settle.
prev=-1
denied1=$(metric "$denied_series")
for ((i = 0; i < 20 && denied1 != prev; i++)); do
  sleep 1.2
  prev=$denied1
  denied1=$(metric "$denied_series")
done
lost1=$(metric "$lost_series")
health=$(http /healthz)
stop_daemon
storm_made=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<<"$storm_out")
storm_denied=$(sed -n 's/.* denied=\([0-9]*\).*/\1/p' <<<"$storm_out")
storm_rate_seen=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$storm_out")
storm_took=$(sed -n 's/.* seconds=\([0-9.]*\).*/\1/p' <<<"$storm_out")
storm_behind=$(sed -n 's/.* max_behind=\([0-9]*\).*/\1/p' <<<"$storm_out")
counted=$(awk -v a="$denied1" -v b="$denied0" 'BEGIN {printf "%.0f", a - b}')
lost=$(awk -v a="$lost1" -v b="$lost0" 'BEGIN {printf "%.0f", a - b}')
details=$(($(jq '.probes.cap_capable.details' <<<"$health") - details0))
not_counted=$(jq '.probes.cap_capable.attempts_not_counted' <<<"$health")
stop_hold

# ---- 3. the daemon's CPU with idle watched sandboxes ---------------------------
say "starting $idle_sandboxes idle sandboxes"
start_hold --sandboxes "$idle_sandboxes"
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
: >"$work/idle.tsv"
for interval in 10 60; do
  # A grace period longer than the run: the sandboxes stay `pending`, so
  # no verdict changes inside the window.
  node_config "idle-$interval" "$interval" 3600
  say "sweep interval $interval s: ${idle_seconds} s window"
  start_daemon "$work/idle-$interval.json"
  wait_watched "$idle_sandboxes"
  sleep 5  # the resamples and evidence of the sandboxes just found
  front=$daemon_pid
  sampler=$(http /healthz | jq -r '.processes.sampler.pid')
  load_idle_start=$(load)
  f0=$(ticks_of "$front")
  s0=$(ticks_of "$sampler")
  sweep0=$(metric driftwatch_last_sweep_timestamp_seconds)
  sleep "$idle_seconds"
  f1=$(ticks_of "$front")
  s1=$(ticks_of "$sampler")
  sweep1=$(metric driftwatch_last_sweep_timestamp_seconds)
  echo -e "$interval\t$((f1 - f0))\t$((s1 - s0))\t$load_idle_start\t$(load)\t$sweep0\t$sweep1" \
    >>"$work/idle.tsv"
  stop_daemon
done
stop_hold

# ---- 4. drift detection latency ------------------------------------------------
node_config latency 60
say "drift latency: $changes changes on attested sandboxes, 60 s sweep"
start_daemon "$work/latency.json"
http /metrics | grep '^driftwatch_detection_latency_seconds' >"$work/latency-hist-before"
load_latency=$(load)
run_waited "$bench_bin" --id-prefix "$prefix" latency --port "$port" --driftwatch "$dw" \
  --key "$work/keys/cp-bench.key" --changes "$changes" --controls "$controls" \
  --settle-ms "$settle_ms" --out "$work/latency.tsv"
http /metrics | grep '^driftwatch_detection_latency_seconds' >"$work/latency-hist-after"
load_latency_end=$(load)
stop_daemon

# ---- the report -----------------------------------------------------------------
date_day=$(date -u +%F)
mkdir -p bench/results
report=bench/results/probes-$date_day.md
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then revision+=" (uncommitted changes)"; fi

# col_values CONDITION MODE COLUMN (4: wall, 5: CPU)
col_values() { awk -F'\t' -v c="$1" -v m="$2" -v k="$3" '$2 == c && $3 == m {print $k}' "$work/overhead.tsv"; }
goal_of() {
  case $1 in
    getpid | openat) echo "≤ +1 %, and below bpftrace" ;;
    setuid) echo "≤ +30 %" ;;
  esac
}
label_of() {
  case $1 in
    getpid) echo "getpid" ;;
    openat) echo "openat + close" ;;
    setuid) echo "setuid(0), denied" ;;
  esac
}

# latency_col KIND COLUMN [all]: the column of the kind's rows that drifted
# within the time (all: every row).
latency_col() {
  awk -F'\t' -v k="$1" -v c="$2" -v a="${3:-}" '$1 == k && (a == "all" || ($3 >= 0 && $c >= 0)) {print $c}' \
    "$work/latency.tsv"
}
p50_p99() { echo "$(latency_col "$1" "$2" | percentile_of 50 | fmt 1) / $(latency_col "$1" "$2" | percentile_of 99 | fmt 1)"; }

{
  echo "### The probes: overhead, latency, losses ($date_day)"
  echo
  echo "- command: \`bench/probes.sh${quick:+ --quick}\`, revision $revision, $(date -u '+%F %H:%M UTC')"
  echo "- machine: $(nproc) cores ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "  $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r),"
  echo "  Debian $(cat /etc/debian_version), $(runc --version | head -1), $(bpftrace --version),"
  echo "  auditd $(auditctl -v | awk '{print $NF}')"
  echo
  echo "#### 1. Overhead on syscall loops in a watched runc sandbox"
  echo
  echo "A no-capability runc sandbox (uid 1000, busybox rootfs); \`runc exec\` of"
  echo "\`bench/syscall_loop MODE N\` (static), which prints wall and CPU ns per call over N calls"
  echo "(getpid ${ops[getpid]}, openat ${ops[openat]}, setuid ${ops[setuid]}). $rounds rounds; each round"
  echo "starts each condition in turn (rotated order), runs each loop $reps times and stops it."
  echo "driftwatch: \`driftwatch run\` with probes, watching the sandbox (/healthz"
  echo "\`watched_sandboxes\` ≥ 1 before each loop). auditd: its own auditd (\`auditd -n\`), rules"
  echo "\`-a always,exit -F arch=b64 -S <${#privileged_syscalls[@]} privilege-related syscalls>\`, backlog 8192."
  echo "bpftrace: \`@calls[cgroup, probe, args->ret] = count()\` on the sys_exit tracepoints of"
  echo "the same syscalls (${#traced[@]} exist here). Median of $((rounds * reps)) runs each (for no"
  echo "monitor also min–max); in parentheses the change against the median without a monitor."
  echo
  for column in 5 4; do
    if ((column == 5)); then
      echo "CPU time of the loop's process (user + system: the probes' and audit's work in the"
      echo "kernel is in it), ns per call:"
    else
      echo "Wall time, ns per call (on a shared machine this also counts the time others had the core):"
    fi
    echo
    echo "| loop | no monitor | driftwatch | auditd | bpftrace | goal (driftwatch) |"
    echo "| --- | ---: | ---: | ---: | ---: | --- |"
    for mode in "${modes[@]}"; do
      base=$(col_values none "$mode" "$column" | median_of)
      row="| $(label_of "$mode") | $(fmt 1 <<<"$base") ($(col_values none "$mode" "$column" | sort -g | head -1 | fmt 1)–$(col_values none "$mode" "$column" | sort -g | tail -1 | fmt 1))"
      for cond in driftwatch auditd bpftrace; do
        m=$(col_values "$cond" "$mode" "$column" | median_of)
        ratio=$(awk -v a="$m" -v b="$base" 'BEGIN {printf "%+.1f %%", (a / b - 1) * 100}')
        row+=" | $(fmt 1 <<<"$m") ($ratio)"
      done
      echo "$row | $(goal_of "$mode") |"
    done
    echo
  done
  echo "Load average at the start: $load_overhead; at the end: $load_overhead_end. The loops ran"
  echo "on CPU $loop_cpu, each monitor's processes on CPU 0."
  echo
  echo "The probes' own kernel work during each loop, in a pass of its own with"
  echo "\`kernel.bpf_stats_enabled=1\` (each program's run count and run time, as the kernel"
  echo "counts them; the statistics add two clock reads to each run, so the times are upper"
  echo "bounds; the counts are the whole node's, so other processes' capability checks, forks"
  echo "and execs in that time are in them). Programs that did not run during a loop are left out:"
  echo
  echo "| loop | program | runs | runs per call | program ns per call | ns per run |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  for mode in "${modes[@]}"; do
    if ! awk -F'\t' -v m="$mode" '$1 == m && $3 > 0 {found = 1} END {exit !found}' "$work/probe-cost.tsv"; then
      echo "| $(label_of "$mode") | (none ran) | 0 | 0 | 0 | |"
    fi
    awk -F'\t' -v l="$(label_of "$mode")" -v m="$mode" '$1 == m && $3 > 0 {printf "| %s | %s | %d | %.3f | %.1f | %.1f |\n", l, $2, $3, $4, $5, $6}' \
      "$work/probe-cost.tsv"
  done
  echo
  echo "Paired rounds (\`build/bench/syscall_probe_bench --watched --bpftrace\`): $paired_rounds rounds, each"
  echo "running getpid and openat+close loops in one process on CPU $loop_cpu with no probes, with"
  echo "driftwatch's programs alone (loaded and attached afresh each round as the daemon does, with"
  echo "its defaults: no syscall tracepoints; the process's own cgroup in the watched set), with its"
  echo "two optional syscall tracepoints as well, and under the same bpftrace script (started"
  echo "afresh each round, on CPU 0), in rotating order. CPU ns per call (median, min–max), and the"
  echo "median of each round's ratio to no probes, which cancels the machine's drift between rounds:"
  echo
  echo "| configuration | getpid, ns | paired vs no probes | openat + close, ns | paired vs no probes |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  awk -F'\t' '{
      name = $1
      if (name == "tp_btf only") name = "driftwatch probes (default)"
      else if (name == "tp_btf + syscall tps") name = "driftwatch probes + `syscall_probes`"
      printf "| %s | %.1f (%.1f–%.1f) | %+.1f %% | %.1f (%.1f–%.1f) | %+.1f %% |\n", name, $2, $3, $4, $5, $7, $8, $9, $10
    }' "$work/paired.tsv"
  echo
  echo "Load average at the start: $load_paired; at the end: $load_paired_end."
  echo
  echo "Seen by the monitors: driftwatch counted $(tail -1 "$work/overhead-dw-denied" 2>/dev/null || echo '?')"
  echo "denied setuid in its last round ($((reps * ops[setuid])) made); the kernel's audit"
  echo "\`lost\` counter grew by $audit_lost records between the first and the last auditd round;"
  echo "bpftrace's map held ${bpftrace_setuid:-?} failed setuid in its last round."
  echo
  echo "#### 2. Lost counts: setuid(0) paced at $storm_rate/s for $storm_seconds s (goal: none lost)"
  echo
  echo "| attempts made (denied) | achieved rate /s | counted (\`driftwatch_escalation_attempts_total{kind=\"setuid\",outcome=\"denied\"}\` delta) | lost counts | attempts not counted (probe's counter map full) | details sent | details not sent (\`driftwatch_probe_events_lost_total{probe=\"cap_capable\"}\` delta, rate limit) |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  echo "| $storm_made ($storm_denied) | $storm_rate_seen in $storm_took s (at most $storm_behind calls behind) | $counted | $((storm_denied - counted)) | $not_counted | $details | $lost |"
  echo
  echo "Load average at the start: $load_storm."
  echo
  echo "#### 3. The daemon's CPU with $idle_sandboxes idle watched sandboxes (probes on)"
  echo
  echo "utime + stime of the front and the sampler (/proc/PID/stat, ${hz} Hz ticks) over ${idle_seconds} s,"
  echo "from 5 s after all $idle_sandboxes sandboxes were watched."
  echo
  echo "| sweep interval | front, CPU s | sampler, CPU s | together, CPU s | % of one core | load average, start → end |"
  echo "| ---: | ---: | ---: | ---: | ---: | --- |"
  while IFS=$'\t' read -r interval ft st l0 l1 _ _; do
    awk -v i="$interval" -v f="$ft" -v s="$st" -v hz="$hz" -v w="$idle_seconds" -v l0="$l0" -v l1="$l1" \
      'BEGIN {printf "| %d s | %.2f | %.2f | %.2f | %.2f %% | %s → %s |\n", i, f / hz, s / hz, (f + s) / hz, (f + s) / hz / w * 100, l0, l1}'
  done <"$work/idle.tsv"
  echo
  awk -F'\t' -v hz="$hz" -v w="$idle_seconds" 'NR == 1 {a = $2 + $3} NR == 2 {b = $2 + $3}
    END {printf "A 60 s sweep instead of 10 s saves %.2f CPU s per %d s (%.2f %% of a core, %.0f %% of the daemon'"'"'s CPU at 10 s).\n", (a - b) / hz, w, (a - b) / hz / w * 100, (a > 0) ? (a - b) / a * 100 : 0}' \
    "$work/idle.tsv"
  echo
  echo "#### 4. Drift detection latency, sweep interval 60 s (goal: p99 ≤ 20 ms)"
  echo
  echo "One attested sandbox per kind (runc default spec, memory 64 MiB, pids 32; a launch event"
  echo "signed with \`driftwatch sign\` and POSTed); $changes changes, kinds interleaved, each on an"
  echo "attested sandbox and restored after (process killed, limit set back, host process"
  echo "killed; a \`runc exec ID true\` resamples it, and the next change waits for \`attested\`)."
  echo "A thread polls GET /v1/sandboxes/ID every 0.5 ms from just before the command."
  echo "*Visible*: to the first answer \`drifted\`. *Settled*: to the first answer of the state"
  echo "(verdict and observed hash) that then lasted ${settle_ms} ms. Both include the runtime's own"
  echo "command (*command*). *Daemon*: the change's observation in"
  echo "\`driftwatch_detection_latency_seconds{trigger=\"probe\"}\` (its \`_sum\` delta), from the"
  echo "kernel's first event of the change to the verdict. A change not drifted within 2 s is"
  echo "counted, with no latency."
  echo
  echo "| change | n | drifted within 2 s | found by | visible p50 / p99, ms | settled p50 / p99, ms | command p50 / p99, ms | daemon p50 / p99, ms | max visible, ms |"
  echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
  for kind in exec-cap memory pids cgroup-move; do
    n=$(awk -F'\t' -v k="$kind" '$1 == k' "$work/latency.tsv" | wc -l)
    ((n > 0)) || continue
    seen=$(awk -F'\t' -v k="$kind" '$1 == k && $3 >= 0' "$work/latency.tsv" | wc -l)
    triggers=$(awk -F'\t' -v k="$kind" '$1 == k {t[$6]++} END {for (x in t) printf "%s%s %d", (n++ ? ", " : ""), x, t[x]}' "$work/latency.tsv")
    label=$kind
    case $kind in
      exec-cap) label="\`runc exec --cap CAP_SYS_ADMIN\`" ;;
      memory) label="\`runc update --memory\` 64 → 128 MiB" ;;
      pids) label="\`runc update --pids-limit\` 32 → 64" ;;
      cgroup-move) label="host process written to the sandbox's cgroup.procs" ;;
    esac
    commands=$(latency_col "$kind" 5 all | percentile_of 50 | fmt 1)" / "$(latency_col "$kind" 5 all | percentile_of 99 | fmt 1)
    if ((seen > 0)); then
      echo "| $label | $n | $seen | $triggers | $(p50_p99 "$kind" 3) | $(p50_p99 "$kind" 4) | $commands | $(p50_p99 "$kind" 7) | $(latency_col "$kind" 3 | sort -g | tail -1 | fmt 1) |"
    else
      echo "| $label | $n | 0 | $triggers | not measured: never drifted within 2 s | — | $commands | — | — |"
    fi
  done
  echo
  all_seen() { awk -F'\t' -v c="$1" 'NR > 1 && $1 != "exec-plain" && $6 == "probe" && $3 >= 0 && $c >= 0 {print $c}' "$work/latency.tsv"; }
  echo "Every change a probe found, all kinds: visible p50 / p99 $(all_seen 3 | percentile_of 50 | fmt 1) /"
  echo "$(all_seen 3 | percentile_of 99 | fmt 1) ms, settled $(all_seen 4 | percentile_of 50 | fmt 1) / $(all_seen 4 | percentile_of 99 | fmt 1) ms,"
  echo "daemon $(all_seen 7 | percentile_of 50 | fmt 1) / $(all_seen 7 | percentile_of 99 | fmt 1) ms ($(all_seen 3 | wc -l) changes)."
  controls_n=$(awk -F'\t' '$1 == "exec-plain"' "$work/latency.tsv" | wc -l)
  if ((controls_n > 0)); then
    false_alarms=$(awk -F'\t' '$1 == "exec-plain" && $3 >= 0' "$work/latency.tsv" | wc -l)
    echo
    echo "Control: $controls_n plain \`runc exec ID true\` (no change of privileges) on an attested"
    echo "sandbox: the verdict turned \`drifted\` on the way $false_alarms times (visible after"
    echo "$(latency_col exec-plain 3 | percentile_of 50 | fmt 1) ms at the median), and was \`drifted\` still ${settle_ms} ms"
    echo "after the command $(awk -F'\t' '$1 == "exec-plain" && $4 >= 0' "$work/latency.tsv" | wc -l) times."
  fi
  echo
  echo "Load average at the start: $load_latency; at the end: $load_latency_end."
  echo
  echo "The daemon's histogram over the whole run, as Prometheus sees it (cumulative buckets):"
  echo
  echo "| trigger | ≤ 1 ms | ≤ 5 ms | ≤ 10 ms | ≤ 50 ms | ≤ 100 ms | ≤ 1 s | ≤ 60 s | count | mean, ms |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for trigger in probe sweep; do
    hist() {
      local series=$1 file=$2
      awk -v s="$series" '$1 == s {print $2; f = 1} END {if (!f) print 0}' "$work/$file"
    }
    row="| $trigger"
    for le in 0.001 0.005 0.01 0.05 0.1 1 60; do
      series="driftwatch_detection_latency_seconds_bucket{trigger=\"$trigger\",le=\"$le\"}"
      row+=" | $(awk -v a="$(hist "$series" latency-hist-after)" -v b="$(hist "$series" latency-hist-before)" 'BEGIN {print a - b}')"
    done
    count=$(awk -v a="$(hist "driftwatch_detection_latency_seconds_count{trigger=\"$trigger\"}" latency-hist-after)" \
      -v b="$(hist "driftwatch_detection_latency_seconds_count{trigger=\"$trigger\"}" latency-hist-before)" 'BEGIN {print a - b}')
    sum=$(awk -v a="$(hist "driftwatch_detection_latency_seconds_sum{trigger=\"$trigger\"}" latency-hist-after)" \
      -v b="$(hist "driftwatch_detection_latency_seconds_sum{trigger=\"$trigger\"}" latency-hist-before)" 'BEGIN {print a - b}')
    mean=$(awk -v s="$sum" -v c="$count" 'BEGIN {if (c > 0) printf "%.1f", s / c * 1000; else print "—"}')
    echo "$row | $count | $mean |"
  done
} | tee "$report"
cp "$work/latency.tsv" "bench/results/probes-$date_day-latency.tsv"
cp "$work/overhead.tsv" "bench/results/probes-$date_day-overhead.tsv"
cp "$work/paired.tsv" "bench/results/probes-$date_day-paired.tsv"
say "saved $report (and the raw rows beside it)"
