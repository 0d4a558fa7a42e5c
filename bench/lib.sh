# Shell functions the benchmark scripts share (sourced by bench/run.sh and
# bench/probes.sh). Each expects a `say` function and a `prefix` variable:
# the container id prefix of this run.

# Deletes what a killed bench program left: containers with our prefix, then
# the bundles they were started from (those holding <prefix>*.stdin files,
# under /run/driftwatch-test, made by tests/support).
delete_leftovers() {
  # A `runc run -d` in flight (its own process group: the kill missed it)
  # would create its container after the listing below; let it finish.
  local waited=0
  while pgrep -f -- "runc run -d --bundle .* ${prefix}" >/dev/null && ((waited++ < 120)); do
    sleep 0.5
  done
  local ids
  ids=$(runc list --format json 2>/dev/null |
    jq -r --arg p "$prefix" '.[]? | select(.id | startswith($p)) | .id' 2>/dev/null) || true
  if [[ -n $ids ]]; then
    say "deleting leftover containers: $(echo "$ids" | wc -l)"
    while read -r id; do runc delete -f "$id" >/dev/null 2>&1 || true; done <<<"$ids"
  fi
  local dir
  for dir in /run/driftwatch-test/bundle-*; do
    if compgen -G "$dir/${prefix}*.stdin" >/dev/null; then rm -rf "$dir"; fi
  done
}
