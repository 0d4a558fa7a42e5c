#!/usr/bin/env bash
# The evidence log's benchmarks, in one command (as root, after a build into
# build/; bench/run.sh calls it):
#
#   1. durable appends with 1, 4, 16 and 64 concurrent producers through the
#      daemon's BatchWriter + Log::append, against one fdatasync per entry
#      (build/bench/evidence_bench append), and what a batch's flush costs
#      as one syncfs against an fdatasync per file and directory
#      (evidence_bench flush);
#   2. a 1,000,000-entry log written through evidence::Log
#      (evidence_bench generate), then `driftwatch verify` of it against Go's
#      sumdb/tlog computing the same root from the same files (the interop
#      test's tests/interop/evidence/main.go with -tree, built offline from
#      Debian's golang-golang-x-mod-dev);
#   3. `driftwatch run` with that log in its state dir against an empty log:
#      time from exec to the "running" log line, and VmHWM/VmRSS of the front
#      and the sampler process once start-up has settled.
#
# Prints Markdown on stdout. Everything is written under WORK (default a new
# directory in /var/tmp: it must be on the disk a state dir would be on, not
# a tmpfs) and removed at the end, also on failure or Ctrl-C.
#
#   bench/evidence.sh [--entries N] [--starts K] [--seconds S]
#
# The daemon is started only with a config file and the state dir, so the
# measurement does not depend on what its start-up steps do inside.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "bench/evidence.sh: $*" >&2; }

entries=1000000
starts=5
seconds=2
while (($#)); do
  case $1 in
    --entries) entries=$2; shift 2 ;;
    --starts) starts=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    *) say "unknown option $1"; exit 2 ;;
  esac
done

if [[ $(id -u) -ne 0 ]]; then
  say "must run as root: the daemon starts as root and drops to its own user"
  exit 2
fi
for tool in build/driftwatch build/bench/evidence_bench; do
  [[ -x $tool ]] || { say "$tool is missing: build first (scripts/build.sh)"; exit 1; }
done

work=$(mktemp -d /var/tmp/driftwatch-evidence-bench.XXXXXX)
chmod 0755 "$work"  # the daemon's user walks into its state dirs
daemon_pid=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM HUP
  if [[ -n $daemon_pid ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM HUP

# The load average at each section's start, for the report: the timed parts
# are wall time, and a build on the other core shows in them.
load() { cut -d' ' -f1-3 /proc/loadavg; }
thousands() { sed ':a;s/\B[0-9]\{3\}\>/,&/;ta' <<<"$1"; }

# ---- 1. durable appends ---------------------------------------------------
load_append=$(load)
say "durable appends (${seconds} s a row)"
build/bench/evidence_bench append --dir "$work/append" --seconds "$seconds" >"$work/append.md"
say "a batch's flush, two ways"
build/bench/evidence_bench flush --dir "$work/flush" --batches 100 >"$work/flush.md"

# ---- the daemon's configs: a state dir for the big log and an empty one ---
node=bench-node
full=$work/state-full
empty=$work/state-empty
build/driftwatch keygen --name cp-bench --out "$work/keys" >/dev/null
jq -n --arg pem "$(cat "$work/keys/cp-bench.pub")" \
  '{control_plane: [{name: "cp-bench", public_key_pem: $pem}]}' >"$work/trust.json"
for state in "$full" "$empty"; do
  jq -n --arg node "$node" --arg state "$state" --arg trust "$work/trust.json" \
    '{node_name: $node, listen: "127.0.0.1:0", state_dir: $state, trust: $trust}' \
    >"$state.json"
done

now_ns() { date +%s%N; }
# Starts the daemon on config $1, waits for "running" (the time to it goes
# to $startup_ms), lets it settle, reads the front's and the sampler's
# /proc/PID/status into $rss_line, stops it.
start_daemon() {
  local config=$1 out=$work/daemon.log
  : >"$out"
  local t0
  t0=$(now_ns)
  build/driftwatch run --config "$config" >"$out" 2>&1 &
  daemon_pid=$!
  local waited=0
  until grep -q ' info running$' "$out"; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
      say "driftwatch run --config $config exited:"; cat "$out" >&2; exit 1
    fi
    if ((waited++ > 12000)); then say "not running after 120 s"; cat "$out" >&2; exit 1; fi
    sleep 0.005
  done
  startup_ms=$((($(now_ns) - t0) / 1000000))
  sleep 3  # settle: the first sweep, the loops started
  local sampler
  sampler=$(cat "/proc/$daemon_pid/task/"*/children 2>/dev/null | tr ' ' '\n' | grep -m1 . || true)
  status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
  rss_line="$(status_kib "$daemon_pid" VmHWM) $(status_kib "$daemon_pid" VmRSS)"
  if [[ -n $sampler ]]; then
    rss_line+=" $(status_kib "$sampler" VmHWM) $(status_kib "$sampler" VmRSS)"
  else
    rss_line+=" 0 0"
  fi
  kill -TERM "$daemon_pid"
  wait "$daemon_pid" || true
  daemon_pid=""
}

# ---- 2. a 1,000,000-entry log, verified ------------------------------------
# The daemon's first start makes the state dir, node.key and an evidence log
# of its own few entries; the generator appends to that log with the key.
say "first start of the daemon on $full (makes the state dir and node.key)"
start_daemon "$full.json"
say "writing a log of $entries entries into $full/evidence"
/usr/bin/time -f '%e s wall, %M KiB max RSS' -o "$work/generate.time" \
  build/bench/evidence_bench generate --state-dir "$full" --node-name "$node" \
  --entries "$entries" >"$work/vkey"
vkey=$(cat "$work/vkey")
log_bytes=$(du -sb "$full/evidence" | cut -f1)
log_files=$(find "$full/evidence" -type f | wc -l)

go_cache=build/go-cache
tlog_root=build/bench/tlog_root
have_go=""
if command -v go >/dev/null && [[ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ]]; then
  GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOCACHE="$PWD/$go_cache" \
    go build -o "$tlog_root" tests/interop/evidence/main.go
  have_go=1
else
  say "go or golang-golang-x-mod-dev is missing: no Go peer for verify"
fi

load_verify=$(load)
verify_cmd="build/driftwatch verify --log $full/evidence --key $full/node.vkey"
go_cmd="$tlog_root -tree $full/evidence $vkey"
# Both must succeed before they are timed.
$verify_cmd >"$work/verify.out" || { say "driftwatch verify failed: $(cat "$work/verify.out")"; exit 1; }
if [[ -n $have_go ]]; then
  $go_cmd >"$work/go.out" || { say "tlog_root failed: $(cat "$work/go.out")"; exit 1; }
fi
say "timing verify (hyperfine)"
hyperfine_args=(-N --warmup 1 --runs 5 --export-json "$work/verify.json"
  -n "\`driftwatch verify --log DIR --key VKEY\`" "$verify_cmd")
[[ -n $have_go ]] && hyperfine_args+=(-n "Go sumdb/tlog and note (interop main.go -tree)" "$go_cmd")
hyperfine "${hyperfine_args[@]}" >&2
for cmd in "$verify_cmd" "$go_cmd"; do
  [[ $cmd == "$go_cmd" && -z $have_go ]] && continue
  /usr/bin/time -f '%M' -o "$work/rss" $cmd >/dev/null
  echo "$(cat "$work/rss")" >>"$work/verify.rss"
done

# ---- 3. the daemon's start-up ---------------------------------------------
load_run=$(load)
say "daemon start-up: a warm-up start each (hands the state dir over, makes keys), then $starts each, interleaved"
start_daemon "$empty.json"
start_daemon "$full.json"
grep -o 'evidence log [^ ]*: [0-9]* entries' "$work/daemon.log" | head -1 >"$work/full-entries"
: >"$work/startup.tsv"
for ((i = 0; i < starts; i++)); do
  for which in empty full; do
    state=$empty
    [[ $which == full ]] && state=$full
    start_daemon "$state.json"
    echo "$which $startup_ms $rss_line" >>"$work/startup.tsv"
  done
done

# ---- the report -------------------------------------------------------------
median_of() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
range_of() { sort -n | awk 'NR == 1 {min = $1} {max = $1} END {print min "–" max}'; }
col() { awk -v w="$1" -v c="$2" '$1 == w {print $c}' "$work/startup.tsv"; }
mib() { awk '{printf "%.1f", $1 / 1024}'; }

echo "### Durable appends with concurrent producers (goal: >= 20,000 entries/s)"
echo
echo "Each producer thread submits one entry through the daemon's write path (\`BatchWriter\` on an"
echo "asio loop, blobs, \`seal\`, \`Log::append\`: one flush per batch) and waits for its durable"
echo "callback before the next; ${seconds} s per row, a fresh log in /var/tmp each. Latency: from"
echo "submission to the callback on the loop (when the daemon would answer 202)."
echo
cat "$work/append.md"
echo
echo "Load average at the start: $load_append; at the end of the run: $(load)."
echo
echo "What one batch's flush costs on this disk, two ways (\`evidence_bench flush\`: the files a batch"
echo "of 64 entries writes, staged and renamed as \`Log\` does; 100 batches each, interleaved):"
echo
cat "$work/flush.md"
echo
echo "### \`driftwatch verify\` of a log of $(thousands "$entries") entries (goal: <= 5 s)"
echo
echo "The log: written by \`evidence_bench generate\` through \`evidence::Log\` in batches of 4,096"
echo "($(awk '{print $1}' "$work/generate.time") s), heartbeat observations with a launch_accepted and"
echo "its envelope blob every 50 entries, a checkpoint every 16,384 entries; $(echo "$log_bytes" | awk '{printf "%.0f MB", $1 / 1e6}')"
echo "in $(thousands "$log_files") files. hyperfine, 5 runs after a warm-up (page cache warm); load average"
echo "at the start: $load_verify."
echo
jq -r --slurpfile rss <(jq -R . "$work/verify.rss" | jq -s .) \
  'def s: . * 100 | round / 100; "| command | wall s, mean ± σ | min–max | user + system s | max RSS, MiB |",
   "| --- | ---: | ---: | ---: | ---: |",
   (.results | to_entries[] | .key as $i | .value |
    "| \(.command) | \(.mean | s) ± \(.stddev | s) | \(.min | s)–\(.max | s) | \(.user + .system | s) | \(($rss[0][$i] | tonumber) / 1024 * 10 | round / 10) |")' \
  "$work/verify.json"
echo
echo "driftwatch: $(head -c 300 "$work/verify.out" | tr '\n' ' ')"
[[ -n $have_go ]] && echo "Go: $(tr '\n' ' ' <"$work/go.out")" && echo &&
  jq -r '"driftwatch verify / Go sumdb/tlog, wall: \((.results[0].mean / .results[1].mean) * 100 | round / 100)x"' "$work/verify.json"
echo
echo "### \`driftwatch run\` with that log against an empty one (goal: within 5 MB and 0.5 s)"
echo
echo "$starts starts each, interleaved, after one warm-up start each; the full state dir's log at start:"
echo "$(cat "$work/full-entries"). Start-up: exec to the \"running\" log line (polled every 5 ms)."
echo "RSS from /proc/PID/status 3 s after \"running\", median of the starts. Load average at the"
echo "start: $load_run."
echo
echo "| state dir | start-up ms, median (min–max) | front VmHWM MiB | front VmRSS MiB | sampler VmHWM MiB | sampler VmRSS MiB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for which in empty full; do
  label="empty log"
  [[ $which == full ]] && label="$(thousands "$entries")-entry log"
  echo "| $label | $(col $which 2 | median_of) ($(col $which 2 | range_of)) | $(col $which 3 | median_of | mib) | $(col $which 4 | median_of | mib) | $(col $which 5 | median_of | mib) | $(col $which 6 | median_of | mib) |"
done
echo
d_ms=$(($(col full 2 | median_of | cut -d. -f1) - $(col empty 2 | median_of | cut -d. -f1)))
d_rss=$(echo "$(col full 3 | median_of) $(col empty 3 | median_of)" | awk '{printf "%.1f", ($1 - $2) / 1024}')
d_cur=$(echo "$(col full 4 | median_of) $(col empty 4 | median_of)" | awk '{printf "%.1f", ($1 - $2) / 1024}')
echo "full - empty: start-up ${d_ms} ms, front VmHWM ${d_rss} MiB, front VmRSS ${d_cur} MiB"
