#!/usr/bin/env bash
# Installs the dependencies, builds, prepares the host for the real-runtime
# tests (see prepare-test-host.sh) and runs every test through CTest.
# Tests that need root, runc, crun or bwrap skip with a message without them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
if [[ $(id -u) -eq 0 ]]; then
  bash scripts/prepare-test-host.sh
else
  echo "test.sh: not root: integration tests on real runtimes will skip"
fi
cd build
ctest --output-on-failure --timeout 900 "$@"
