#!/usr/bin/env bash
# Installs everything driftwatch needs to build, test and benchmark on a
# Debian 12 machine. Idempotent: packages already present are skipped, so
# the README's commands and .ci/run can both call it every time.
set -euo pipefail

# The daemon's own system user and group: `driftwatch run` starts as root,
# binds its port, then runs as this user (README, "The daemon"). Without it
# the daemon falls back to nobody (65534), which other services share.
ensure_daemon_user() {
  if getent passwd driftwatch >/dev/null; then
    return 0
  fi
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: no user driftwatch; run as root to create it" >&2
    return 0
  fi
  getent group driftwatch >/dev/null || groupadd --system driftwatch
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
    --gid driftwatch driftwatch
  echo "install-deps: created system user driftwatch ($(id driftwatch))"
}
ensure_daemon_user

packages=(
  # build
  cmake g++ make pkg-config clang llvm libbpf-dev bpftool
  libboost-dev libboost-system-dev nlohmann-json3-dev prometheus-cpp-dev
  libssl-dev catch2 libcli11-dev libspdlog-dev libfmt-dev zlib1g-dev libelf-dev
  clang-format
  # real runtimes and peers used by tests and benchmarks
  runc crun bubblewrap busybox-static prometheus auditd bpftrace
  hyperfine jq python3-cryptography iproute2
  # the evidence log's interop test: Go's golang.org/x/mod/sumdb/{note,tlog}
  golang-go golang-golang-x-mod-dev
  # fuzzing (scripts/fuzz.sh): libFuzzer and the sanitizer runtimes for clang
  libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 2
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# auditd and prometheus must not start services during install on CI hosts.
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap "rm -f /usr/sbin/policy-rc.d" EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
