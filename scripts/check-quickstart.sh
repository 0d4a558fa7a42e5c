#!/usr/bin/env bash
# The README's first quick-start command, as written, checked: builds the
# daemon alone (scripts/build.sh --release), runs `build-release/driftwatch
# run` on its embedded defaults, and checks that it says what it watches,
# answers /healthz on 127.0.0.1:9477 and stops cleanly on SIGTERM.
# Needs root (the daemon starts as root) and a free port 9477. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() {
  echo "check-quickstart: FAILED: $*" >&2
  exit 1
}
[[ $(id -u) -eq 0 ]] || fail "run as root: the quick start runs the daemon as root"
if ss -Htln 'sport = :9477' 2>/dev/null | grep -q .; then
  fail "port 9477 is in use ($(ss -Htlnp 'sport = :9477' | head -1)); stop what holds it"
fi

echo "== scripts/build.sh --release"
bash scripts/build.sh --release
for built in build-release/tests build-release/bench; do
  [[ ! -e "$built" ]] || fail "$built exists: the release build built more than the daemon"
done

echo "== build-release/driftwatch run (embedded defaults)"
log=$(mktemp)
daemon_pid=
cleanup() {
  [[ -z "$daemon_pid" ]] || kill -KILL "$daemon_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
build-release/driftwatch run >"$log" 2>&1 &
daemon_pid=$!
for _ in $(seq 200); do
  grep -q ' info running$' "$log" && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$log" >&2; fail "the daemon exited at start"; }
  sleep 0.1
done
grep -q ' info running$' "$log" || { cat "$log" >&2; fail "the daemon did not say 'running' in 20 s"; }
watching=$(grep ' info watching ' "$log") || { cat "$log" >&2; fail "no 'watching' line"; }
echo "$watching"
for want in "watching runc /run/runc" "crun /run/crun" "containerd /run/containerd/runc" \
  "podman storage /var/lib/containers/storage" "a full sweep every 10 s" \
  "state dir /var/lib/driftwatch" "API http://127.0.0.1:9477 "; do
  [[ "$watching" == *"$want"* ]] || fail "the watching line does not say '$want'"
done
health=$(python3 -c 'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:9477/healthz", timeout=5).read().decode())') ||
  { cat "$log" >&2; fail "GET /healthz"; }
python3 - "$health" <<'PY' || fail "unexpected /healthz: $health"
import json, sys
health = json.loads(sys.argv[1])
# No trust file on a fresh machine: running, and saying why it cannot attest.
assert health["status"] in ("ok", "degraded"), health["status"]
print("healthz: status", health["status"], "reasons", health.get("reasons"))
PY
kill -TERM "$daemon_pid"
wait "$daemon_pid" || { cat "$log" >&2; fail "the daemon did not stop cleanly"; }
daemon_pid=
echo "check-quickstart: the first quick-start command builds the daemon alone and runs"
