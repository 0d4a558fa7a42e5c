#!/usr/bin/env bash
# Builds every libFuzzer target (tests/fuzz/*_fuzz.cpp) with clang and runs
# each one briefly: first its regression inputs (tests/fuzz/regressions/NAME/,
# crashes found before, which must stay fixed), then FUZZ_SECONDS of fuzzing
# from a scratch copy of its seed corpus (tests/fuzz/corpus-NAME/), with its
# dictionary (tests/fuzz/dict/NAME.dict) when it has one. Prints
# one line per target (runs, runs per second, final coverage) and exits 1 if
# any target crashed, leaked, timed out on an input or ran out of memory.
#
#   scripts/fuzz.sh                 # every target, 30 s each
#   FUZZ_SECONDS=300 scripts/fuzz.sh envelope ingest
#
# Environment: FUZZ_SECONDS (default 30), FUZZ_BUILD_DIR (default
# build-fuzz), FUZZ_JOBS (build parallelism, default 2).
#
# Nothing is written into the source tree: the corpora grow in a scratch
# directory (on /dev/shm when there is one: the ingest and journal targets
# fsync), removed at the end; logs and crash inputs are kept in
# $FUZZ_BUILD_DIR/fuzz-logs/ and $FUZZ_BUILD_DIR/fuzz-artifacts/NAME/. To
# keep a crash as a regression, copy its input to tests/fuzz/regressions/NAME/
# and replay it with `$FUZZ_BUILD_DIR/tests/fuzz/NAME_fuzz FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
build=${FUZZ_BUILD_DIR:-build-fuzz}
jobs=${FUZZ_JOBS:-2}
started=$SECONDS

bash scripts/install-deps.sh

# The targets: every tests/fuzz/NAME_fuzz.cpp, or those named on the command line.
all=()
for source in tests/fuzz/*_fuzz.cpp; do
  name=$(basename "$source" .cpp)
  all+=("${name%_fuzz}")
done
if (($# > 0)); then
  names=()
  for wanted in "$@"; do
    wanted=${wanted%_fuzz}
    if [[ ! -f tests/fuzz/${wanted}_fuzz.cpp ]]; then
      echo "fuzz.sh: no target '$wanted' (have: ${all[*]})" >&2
      exit 2
    fi
    names+=("$wanted")
  done
else
  names=("${all[@]}")
fi

CC=clang CXX=clang++ cmake -S . -B "$build" -DDRIFTWATCH_FUZZ=ON -DDRIFTWATCH_TESTS=OFF \
  -DCMAKE_BUILD_TYPE=Debug >"$build.configure.log" 2>&1 || {
  cat "$build.configure.log" >&2
  echo "fuzz.sh: configuring $build with clang failed" >&2
  exit 1
}
rm -f "$build.configure.log"
cmake --build "$build" -j"$jobs" --target "${names[@]/%/_fuzz}"
built=$SECONDS

base=/dev/shm
[[ -d $base && -w $base ]] || base=${TMPDIR:-/tmp}
scratch=$(mktemp -d "$base/driftwatch-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
logs=$build/fuzz-logs
mkdir -p "$logs"

# libFuzzer's options for every run: a slow input (10 s) or a large one
# (2 GiB RSS) is a failure too; leaks are reported (ASan's LeakSanitizer).
options=(-timeout=10 -rss_limit_mb=2048 -detect_leaks=1)

failed=()
printf 'fuzz.sh: %d targets, %d s each\n' "${#names[@]}" "$seconds"
for name in "${names[@]}"; do
  binary=$build/tests/fuzz/${name}_fuzz
  corpus=$scratch/$name/corpus
  artifacts=$build/fuzz-artifacts/$name
  log=$logs/$name.log
  rm -rf "$artifacts"
  mkdir -p "$corpus" "$artifacts" "$scratch/$name/tmp"
  : >"$log"
  if [[ -d tests/fuzz/corpus-$name ]]; then cp -R "tests/fuzz/corpus-$name/." "$corpus/"; fi
  regressions=()
  if [[ -d tests/fuzz/regressions/$name ]]; then
    while IFS= read -r -d '' file; do regressions+=("$file"); done \
      < <(find "tests/fuzz/regressions/$name" -type f -print0 | sort -z)
    if ((${#regressions[@]} > 0)); then cp "${regressions[@]}" "$corpus/"; fi
  fi

  # Tokens the inputs are made of, so that mutations reach past the syntax.
  dict=()
  if [[ -f tests/fuzz/dict/$name.dict ]]; then dict=(-dict="tests/fuzz/dict/$name.dict"); fi

  # The fuzzers keep their scratch files under TMPDIR.
  status=0
  phase="on a regression input"
  if ((${#regressions[@]} > 0)); then
    TMPDIR=$scratch/$name/tmp "$binary" "${options[@]}" -artifact_prefix="$artifacts/" \
      "${regressions[@]}" >>"$log" 2>&1 || status=$?
  fi
  if ((status == 0)); then
    phase="while fuzzing"
    TMPDIR=$scratch/$name/tmp timeout --kill-after=30 $((seconds + 120)) \
      "$binary" "${options[@]}" "${dict[@]}" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "$corpus" >>"$log" 2>&1 || status=$?
  fi

  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  if ((status == 0)); then
    printf 'fuzz: %-20s ok      %9s runs %7s/s  cov %5s  ft %6s  corpus %5s  regressions %d\n' \
      "$name" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "${#regressions[@]}"
  else
    failed+=("$name")
    # The property the target reports, else the sanitizer's or libFuzzer's summary.
    kind=$(grep -m1 "^${name}_fuzz: " "$log" | cut -c1-160 || true)
    [[ -n $kind ]] || kind=$(grep -m1 '^SUMMARY: ' "$log" | cut -c1-160 || true)
    [[ -n $kind ]] || kind="exit status $status"
    printf 'fuzz: %-20s FAILED  %s (%s, %s runs); log %s\n' "$name" "$kind" "$phase" "${runs:-?}" \
      "$log"
    # What it was: the report, and each input that did it.
    grep -vE '^#[0-9]+|^INFO:|^stat::|NEW_FUNC|^Running: |^Executed ' "$log" | tail -40 | sed 's/^/    /'
    for input in "$artifacts"/*; do
      [[ -f $input ]] || continue
      echo "    input $input ($(stat -c %s "$input") bytes), first 256 bytes:"
      head -c 256 "$input" | od -A d -c | head -20 | sed 's/^/      /'
    done
  fi
done

printf 'fuzz.sh: %d targets in %d s (build %d s, fuzzing %d s)\n' "${#names[@]}" \
  $((SECONDS - started)) $((built - started)) $((SECONDS - built))
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]}" >&2
  exit 1
fi
