#!/usr/bin/env bash
# What a user does without driftwatch to see the security state of one runc
# container: its init pid from `runc state`, then its /proc status, limits
# and cgroup files, the limit files of its cgroups, and its 8 namespace
# links. Written lean (one cat, one readlink; the rest is bash builtins), so
# that bench/run.sh compares driftwatch with a fair shell, not a slow one.
# It only prints the raw files: no parsing, no masked or read-only path
# checks, no membership (other processes of the container), no projection.
#
# Usage: bench/manual_inspect.sh CONTAINER_ID   (as root)
set -euo pipefail

id=${1:?usage: manual_inspect.sh CONTAINER_ID}
state=$(runc state "$id")
[[ $state =~ \"pid\":\ *([0-9]+) ]] || {
  echo "manual_inspect: no pid in \`runc state $id\`" >&2
  exit 1
}
pid=${BASH_REMATCH[1]}

files=("/proc/$pid/status" "/proc/$pid/limits" "/proc/$pid/cgroup")
# /proc/PID/cgroup lines are ID:CONTROLLERS:PATH; "0::PATH" is cgroup v2.
while IFS=: read -r _ controllers path; do
  if [[ -z $controllers ]]; then
    v2=/sys/fs/cgroup$path
    [[ -e /sys/fs/cgroup/unified ]] && v2=/sys/fs/cgroup/unified$path
    for f in memory.max pids.max cpu.max; do
      [[ -e $v2/$f ]] && files+=("$v2/$f")
    done
    continue
  fi
  IFS=, read -ra list <<<"$controllers"
  for controller in "${list[@]}"; do
    dir=/sys/fs/cgroup/$controller$path
    case $controller in
      memory) files+=("$dir/memory.limit_in_bytes") ;;
      pids) files+=("$dir/pids.max") ;;
      cpu) files+=("$dir/cpu.cfs_quota_us" "$dir/cpu.cfs_period_us") ;;
    esac
  done
done <"/proc/$pid/cgroup"

cat "${files[@]}"
readlink /proc/"$pid"/ns/{cgroup,ipc,mnt,net,pid,time,user,uts}
