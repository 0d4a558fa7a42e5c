#!/usr/bin/env bash
# Installs the dependencies (idempotent) and builds driftwatch.
#
#   build.sh            everything, into build/ (RelWithDebInfo): the daemon,
#                       the tests and the benchmarks (scripts/test.sh runs it)
#   build.sh --release  the daemon alone, into build-release/ (Release, no
#                       tests, no benchmarks; only the build dependencies):
#                       what the README's first command runs
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  --release)
    bash scripts/install-deps.sh --build-only
    cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DDRIFTWATCH_TESTS=OFF \
      -DDRIFTWATCH_BENCH=OFF >/dev/null
    cmake --build build-release -j"$(nproc)" --target driftwatch
    echo "build.sh: built build-release/driftwatch ($(build-release/driftwatch --version))"
    ;;
  "")
    bash scripts/install-deps.sh
    cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build build -j"$(nproc)"
    ;;
  -h | --help)
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    echo "build.sh: unknown option '$1' (see --help)" >&2
    exit 2
    ;;
esac
