#!/usr/bin/env bash
# Checks the deploy files offline (CTest runs each part as its own test):
#
#   scripts/check-deploy.sh unit BINARY
#       deploy/systemd/driftwatch.service passes `systemd-analyze verify`
#       with no word said about it: systemd 252 only warns (exit 0) on an
#       unknown key or a bad value, so any output fails here. PID 1 need not
#       be systemd: the unit is verified as a file, with ExecStart= pointed
#       at BINARY (the build's), since verify also checks that it exists.
#       `systemd-analyze security --offline` is printed for the record.
#   scripts/check-deploy.sh federation
#       deploy/prometheus-federation/{node,central}.yml and
#       deploy/prometheus.yml pass `promtool check config` (which also
#       loads the alert rules they name).
#
# Exits 77 (CTest: skipped) when the tool a part needs is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() {
  if ! command -v "$1" >/dev/null; then
    echo "check-deploy: skipped: $1 not found (scripts/install-deps.sh installs it)" >&2
    exit 77
  fi
}

case "${1:-}" in
  unit)
    need systemd-analyze
    binary=$(realpath "${2:?usage: check-deploy.sh unit BINARY}")
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    sed "s#/usr/local/bin/driftwatch#$binary#" deploy/systemd/driftwatch.service \
      >"$work/driftwatch.service"
    grep -q "^ExecStart=$binary run " "$work/driftwatch.service" ||
      { echo "check-deploy: ExecStart= does not name /usr/local/bin/driftwatch" >&2; exit 1; }
    echo "== systemd-analyze verify deploy/systemd/driftwatch.service (ExecStart=$binary)"
    set +e
    said=$(cd "$work" && systemd-analyze verify ./driftwatch.service 2>&1)
    rc=$?
    set -e
    if [[ $rc -ne 0 || -n "$said" ]]; then
      echo "check-deploy: systemd-analyze verify exited $rc and said:" >&2
      echo "$said" >&2
      exit 1
    fi
    echo "== systemd-analyze security --offline=yes (for the record)"
    (cd "$work" && systemd-analyze security --offline=yes --no-pager ./driftwatch.service |
       tail -1) || true
    echo "check-deploy: unit: no warnings"
    ;;
  federation)
    need promtool
    for config in deploy/prometheus.yml deploy/prometheus-federation/node.yml \
                  deploy/prometheus-federation/central.yml; do
      echo "== promtool check config $config"
      promtool check config "$config"
    done
    echo "check-deploy: federation: all configs valid"
    ;;
  *)
    echo "usage: check-deploy.sh unit BINARY | federation" >&2
    exit 2
    ;;
esac
