#!/usr/bin/env bash
# Prepares a host for driftwatch's integration tests. Run as root; idempotent:
# a second run finds the work done and changes nothing.
#
# Why: crun 1.8 refuses to start any container on a hybrid cgroup host while a
# controller is still available on the v2 hierarchy ("cgroups in hybrid mode
# not supported, drop all controllers from cgroupv2"). On Debian 12 hybrid
# hosts that controller is hugetlb, which nothing binds to v1. Mounting such a
# controller as its own v1 hierarchy moves it off v2. runc does not care
# either way. Pure v2 and pure v1 hosts need nothing.
#
# The script checks the need with a real `crun run` of a busybox bundle
# before it mounts anything, and checks the result the same way afterwards.
set -euo pipefail

say() { echo "prepare-test-host: $*"; }
die() {
  echo "prepare-test-host: $*" >&2
  exit 1
}

cgroup_root=/sys/fs/cgroup
unified=$cgroup_root/unified

[[ $(id -u) -eq 0 ]] || die "must run as root (it mounts cgroup hierarchies)"

# Runs a one-shot busybox container with crun. Prints crun's error output and
# returns 1 when crun refuses. Returns 2 when the probe cannot run at all (no
# crun or busybox, unexpected spec), so callers can tell "unknown" apart.
probe_crun() {
  command -v crun >/dev/null || return 2
  local busybox
  busybox=$(command -v busybox || true)
  [[ -n $busybox ]] || return 2
  local bundle id out rc
  bundle=$(mktemp -d /var/tmp/driftwatch-prepare-XXXXXX)
  # The bundle must be searchable by the container's user.
  chmod 0755 "$bundle"
  id="dwprepare-$$-$RANDOM"
  mkdir -p "$bundle/rootfs/bin" "$bundle/rootfs/proc" "$bundle/rootfs/dev" "$bundle/rootfs/sys"
  cp "$busybox" "$bundle/rootfs/bin/busybox"
  ln -s busybox "$bundle/rootfs/bin/true"
  if command -v runc >/dev/null; then
    runc spec --bundle "$bundle"
  else
    crun spec --bundle "$bundle"
  fi
  # A foreground run without a terminal; the default spec runs "sh" on a tty.
  sed -i -e 's/"terminal": true/"terminal": false/' -e 's/^\(\s*\)"sh"$/\1"true"/' \
    "$bundle/config.json"
  if ! grep -q '"terminal": false' "$bundle/config.json" ||
    ! grep -qE '^\s*"true"$' "$bundle/config.json"; then
    rm -rf "$bundle"
    echo "prepare-test-host: cannot adapt the default OCI spec for the crun probe" >&2
    return 2
  fi
  # stdin from a private empty file, not /dev/null: crun chowns its stdio for
  # user-namespaced containers, and /dev/null is shared with the whole host.
  : >"$bundle/stdin"
  rc=0
  out=$(crun run --bundle "$bundle" "$id" <"$bundle/stdin" 2>&1) || rc=$?
  crun delete -f "$id" >/dev/null 2>&1 || true
  rm -rf "$bundle"
  if ((rc != 0)); then
    echo "$out"
    return 1
  fi
  return 0
}

fstype=$(stat -f -c %T "$cgroup_root" 2>/dev/null || echo missing)
if [[ $fstype == cgroup2fs ]]; then
  say "pure cgroup v2 host ($cgroup_root is cgroup2): nothing to do"
  exit 0
fi
if [[ ! -d $unified ]] || [[ $(stat -f -c %T "$unified") != cgroup2fs ]]; then
  say "no cgroup v2 hierarchy at $unified (legacy v1 host): nothing to do"
  exit 0
fi

read -r -a on_v2 <"$unified/cgroup.controllers" || true
if ((${#on_v2[@]} == 0)); then
  say "hybrid cgroups; no controller left on v2 ($unified/cgroup.controllers is empty): nothing to do"
  exit 0
fi
say "hybrid cgroups; controllers still on v2: ${on_v2[*]}"

rc=0
out=$(probe_crun) || rc=$?
case $rc in
  0)
    say "crun starts containers as is: nothing to do"
    exit 0
    ;;
  2) say "cannot probe crun (crun or busybox missing); moving the controllers anyway" ;;
  *) say "crun refuses to start a container now: ${out//$'\n'/ }" ;;
esac

for controller in "${on_v2[@]}"; do
  mount_point=$cgroup_root/$controller
  if mountpoint -q "$mount_point"; then
    die "$mount_point is already a mount point, yet $controller is still on cgroup v2;" \
      "inspect it with: findmnt $mount_point"
  fi
  mkdir -p "$mount_point"
  if ! mount -t cgroup -o "$controller" cgroup "$mount_point"; then
    die "cannot mount the $controller controller as cgroup v1 at $mount_point; it may be" \
      "enabled in a v2 cgroup.subtree_control (check $unified)"
  fi
  say "mounted the $controller controller as a cgroup v1 hierarchy at $mount_point"
done

read -r -a left <"$unified/cgroup.controllers" || true
((${#left[@]} == 0)) || die "controllers still on cgroup v2 after mounting: ${left[*]}"

rc=0
out=$(probe_crun) || rc=$?
case $rc in
  0) say "crun now starts containers" ;;
  2) say "cannot probe crun (crun or busybox missing); cgroup layout prepared" ;;
  *) die "crun still refuses to start a container: $out" ;;
esac
