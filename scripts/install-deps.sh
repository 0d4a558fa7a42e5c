#!/usr/bin/env bash
# Installs everything driftwatch needs to build, test and benchmark on a
# Debian 12 machine. Idempotent: packages already present are skipped, so
# the README's commands and .ci/run can both call it every time.
#
#   install-deps.sh               everything: build, tests, benchmarks, fuzzing
#   install-deps.sh --build-only  what building the daemon alone needs
#                                 (scripts/build.sh --release)
set -euo pipefail

build_only=false
case "${1:-}" in
  --build-only) build_only=true ;;
  "") ;;
  -h | --help)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "install-deps: unknown option '$1' (see --help)" >&2
    exit 2
    ;;
esac

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

build_packages=(
  cmake g++ make pkg-config clang llvm libbpf-dev bpftool
  libboost-dev libboost-system-dev nlohmann-json3-dev prometheus-cpp-dev
  libssl-dev libcli11-dev libspdlog-dev libfmt-dev zlib1g-dev libelf-dev
)
packages=(
  "${build_packages[@]}"
  # the tests' framework, and the formatting check
  catch2 clang-format
  # real runtimes and peers used by tests and benchmarks
  runc crun bubblewrap busybox-static prometheus auditd bpftrace
  # the engines people run above runc and crun (tests/integration/engines_test.cpp)
  podman containerd
  hyperfine jq python3-cryptography iproute2
  # the evidence log's interop test: Go's golang.org/x/mod/sumdb/{note,tlog}
  golang-go golang-golang-x-mod-dev
  # fuzzing (scripts/fuzz.sh): libFuzzer and the sanitizer runtimes for clang
  libclang-rt-14-dev
  # the report's integration test: the HTML page printed by headless
  # Chromium and read back as text
  chromium poppler-utils
)
# ... and the OSCAL document validated by Ajv (tests/integration/
# validate_oscal.js): node and npm, unless a node with its own npm is
# already installed (Debian's npm conflicts with such packages).
command -v npm >/dev/null || packages+=(nodejs npm)
if $build_only; then
  packages=("${build_packages[@]}")
fi

# Ajv for validate_oscal.js, into build/node-deps (project-local, not global);
# only when missing, so that offline reruns work.
install_node_deps() {
  local root prefix
  root="$(cd "$(dirname "$0")/.." && pwd)"
  prefix="$root/build/node-deps"
  if [[ -f "$prefix/node_modules/ajv/package.json" && -f "$prefix/node_modules/ajv-formats/package.json" ]]; then
    echo "install-deps: ajv present in $prefix"
    return 0
  fi
  if ! command -v npm >/dev/null; then
    echo "install-deps: no npm; the OSCAL validation test will skip" >&2
    return 0
  fi
  mkdir -p "$prefix"
  npm install --silent --no-audit --no-fund --prefix "$prefix" ajv@8 ajv-formats@3
  echo "install-deps: installed ajv@8 and ajv-formats@3 into $prefix"
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages present"
  $build_only || install_node_deps
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages (${missing[*]}); run as root to install them" >&2
  exit 2
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# auditd, prometheus and containerd must not start services during install
# on CI hosts (the containerd test starts a containerd of its own).
if [[ ! -e /usr/sbin/policy-rc.d ]]; then
  printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap "rm -f /usr/sbin/policy-rc.d" EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
$build_only || install_node_deps
