#!/usr/bin/env bash
# The benchmarks, in one command (as root): builds driftwatch, runs
# sample_bench (CPU per sample of a 1- and a 100-process runc sandbox, where
# that time goes, a sweep of 200 sandboxes), metrics_bench, ingest_bench
# (launch events made durable: group commit against one fsync each),
# bench/evidence.sh (the evidence log: durable appends with concurrent
# producers, verify of a 1,000,000-entry log against Go's sumdb/tlog, the
# daemon's start-up with that log), bench/probes.sh (the eBPF probes:
# overhead on syscall loops against auditd and bpftrace, lost counts at
# 100,000 attempts/s, the daemon's CPU with 200 idle sandboxes, drift
# detection latency), then hyperfine (`driftwatch
# inspect --oci ID` against the shell a user would write for the same reads),
# and prints a Markdown report, also saved as bench/results/<date>.md.
#
# Everything started here is deleted at the end, on failure and on Ctrl-C:
# sample_bench deletes its own containers; this script's trap deletes any
# runc container left with this run's id prefix (dwbench-<pid>-) and its
# bundle, should sample_bench have been killed outright.
#
# Options are passed to sample_bench, e.g. `bench/run.sh --sandboxes 20
# --iterations 200` for a quick check (`build/bench/sample_bench --help`).
#
# Measure on an otherwise idle machine: the numbers are CPU time, but a busy
# sibling core still shares caches and the /proc and cgroupfs locks.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "bench/run.sh: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
  say "must run as root: it starts runc containers and reads other processes' /proc files" \
    "(try: sudo bench/run.sh)"
  exit 2
fi

prefix="dwbench-$$-"
work=$(mktemp -d)
child=""     # the sample_bench running now, for the signal trap
hold_pid=""  # `sample_bench hold`, which keeps hyperfine's container
hold_in=""   # its stdin: closing it ends it

# delete_leftovers
source bench/lib.sh

stop_hold() {
  if [[ -n $hold_in ]]; then exec {hold_in}>&-; fi
  hold_in=""
  if [[ -n $hold_pid ]]; then
    kill -TERM "$hold_pid" 2>/dev/null || true
    wait "$hold_pid" 2>/dev/null || true
  fi
  hold_pid=""
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  stop_hold
  delete_leftovers
  rm -rf "$work"
  exit "$status"
}

on_signal() {
  say "interrupted; cleaning up"
  if [[ -n $child ]]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" 2>/dev/null || true
  fi
  exit 130
}

trap cleanup EXIT
trap on_signal INT TERM HUP

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

say "building (scripts/build.sh)"
bash scripts/build.sh >&2
bin=build/bench/sample_bench
if [[ ! -x $bin ]]; then
  say "$bin was not built: it needs the tests' support library (configure with DRIFTWATCH_TESTS=ON)"
  exit 1
fi

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "running sample_bench (a few minutes; it starts 200 containers)"
run_waited "$bin" --id-prefix "$prefix" --markdown "$work/sample.md" "$@"

say "running metrics_bench (GET /metrics with 1,000 sandboxes)"
run_waited build/bench/metrics_bench --sandboxes 1000 --requests 200 >"$work/metrics.md"

say "running ingest_bench (signed launch events made durable, on /var/tmp's disk)"
run_waited build/bench/ingest_bench --events 2000 --rounds 7 --dir /var/tmp >"$work/ingest.md"

say "running bench/evidence.sh (the evidence log: appends, verify, daemon start-up)"
run_waited bash bench/evidence.sh >"$work/evidence.md"

say "running bench/probes.sh (the probes: overhead, lost counts, idle CPU, drift latency)"
run_waited bash bench/probes.sh >"$work/probes.md"

say "starting a container for hyperfine"
coproc HOLD { exec "$bin" --id-prefix "$prefix" hold; }
# shellcheck disable=SC2153  # HOLD_PID is set by coproc
hold_pid=$HOLD_PID
hold_in=${HOLD[1]}
hold_id=""
read -r -t 120 -u "${HOLD[0]}" hold_id || true
if [[ -z $hold_id ]]; then
  say "sample_bench hold printed no container id"
  exit 1
fi

driftwatch_cmd="build/driftwatch inspect --oci $hold_id"
shell_cmd="bash bench/manual_inspect.sh $hold_id"
# Both must work before they are timed: hyperfine would time an error path.
out=$($driftwatch_cmd)
[[ $out == *"\"sandbox_id\":\"$hold_id\""* ]] || { say "'$driftwatch_cmd' did not report $hold_id"; exit 1; }
out=$($shell_cmd)
[[ $out == *NoNewPrivs:* ]] || { say "'$shell_cmd' did not print the status"; exit 1; }

say "running hyperfine"
# The third command is the floor: starting the driftwatch binary at all.
run_waited hyperfine -N --warmup 20 --min-runs 200 --export-json "$work/hyperfine.json" \
  -n "\`driftwatch inspect --oci ID\`" "$driftwatch_cmd" \
  -n "shell: \`runc state\`, \`cat\`, \`readlink\` (bench/manual_inspect.sh)" "$shell_cmd" \
  -n "\`driftwatch --version\` (process start only)" "build/driftwatch --version" >&2
stop_hold

# ---- the report ---------------------------------------------------------------
hf=$work/hyperfine.json
hyperfine_rows=$(jq -r 'def ms: . * 1000 * 100 | round / 100; .results[] |
  "| \(.command) | \(.times | length) | \(.mean | ms) ± \(.stddev | ms) | \(.min | ms)–\(.max | ms) | \(.user + .system | ms) |"' "$hf")
wall_ratio=$(jq '(.results[1].mean / .results[0].mean) * 10 | round / 10' "$hf")
cpu_ratio=$(jq '((.results[1].user + .results[1].system) / (.results[0].user + .results[0].system)) * 10 | round / 10' "$hf")

date_day=$(date +%F)
report=bench/results/$date_day.md
mkdir -p bench/results
revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain 2>/dev/null) ]]; then revision+=" (uncommitted changes)"; fi

{
  echo "## driftwatch benchmarks, $date_day"
  echo
  echo "- command: \`bench/run.sh${*:+ $*}\`, revision $revision, $(date -u '+%F %H:%M UTC')"
  echo "- machine: $(nproc) cores ($(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')),"
  echo "  $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, kernel $(uname -r),"
  echo "  Debian $(cat /etc/debian_version), $(runc --version | head -1), $(hyperfine --version)"
  echo "- load average before the run: $load_before; after: $(cut -d" " -f1-3 /proc/loadavg)"
  echo
  cat "$work/sample.md"
  echo
  echo "### Serving \`/metrics\` with 1,000 live sandboxes (goal: <= 20 ms)"
  echo
  echo "The daemon's own metrics families and HTTP server, in one process; a synthetic fleet"
  echo "(90% attested, 5% drifted with two findings each, 5% unattested, 2% violating)."
  echo
  cat "$work/metrics.md"
  echo
  echo "### Signed launch events made durable (2,000 envelopes arriving together)"
  echo
  echo "Verification (JSON, JCS, declared projection, Ed25519) on one thread, then the accepted"
  echo "store on /var/tmp's disk: one fdatasync per envelope against the daemon's writer thread,"
  echo "which appends everything queued meanwhile with one fdatasync. Fresh state dir per round."
  echo
  cat "$work/ingest.md"
  echo
  cat "$work/evidence.md"
  echo
  cat "$work/probes.md"
  echo
  echo "### \`driftwatch inspect\` against the shell a user would write"
  echo
  echo "hyperfine after 20 warm-ups, no intermediate shell (\`-N\`), on one one-process runc"
  echo "container. CPU = user + system time of the command and its children"
  echo "(\`runc state\`, \`cat\`, \`readlink\`). The shell does less: it parses nothing, checks no"
  echo "masked or read-only paths and reads only the init process."
  echo
  echo "| command | runs | wall ms, mean ± σ | wall ms, min–max | CPU ms, mean |"
  echo "| --- | ---: | ---: | ---: | ---: |"
  echo "$hyperfine_rows"
  echo
  echo "The shell takes ${wall_ratio}× driftwatch's wall time and ${cpu_ratio}× its CPU time."
} | tee "$report"
say "saved $report"
