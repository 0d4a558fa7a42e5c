#!/usr/bin/env bash
# Builds the driftwatch container image with Podman from this machine's
# build, without pulling anything (no registry is needed): stages the
# daemon binary, every shared library it links (ldd), the dynamic loader and
# an /etc/passwd and /etc/group naming root and the daemon's user, then
# `podman build -f deploy/container/Containerfile` on that context.
#
#   scripts/build-image.sh [--binary PATH] [--tag NAME]
#
# --binary: the driftwatch to put in (default: build/driftwatch, built by
# scripts/build.sh); --tag: the image name (default
# localhost/driftwatch:<version>). Prints the image name on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build-image: $*" >&2; }

binary=build/driftwatch
tag=""
while (($#)); do
  case $1 in
    --binary) binary=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) say "unknown option $1 (see --help)"; exit 2 ;;
  esac
done
command -v podman >/dev/null || { say "podman is missing: run scripts/install-deps.sh"; exit 1; }
[[ -x $binary ]] || { say "$binary is missing: build first (scripts/build.sh) or give --binary"; exit 1; }
if [[ -z $tag ]]; then
  version=$("$binary" --version | awk '{print $1}')
  tag=localhost/driftwatch:${version:-dev}
fi

context=$(mktemp -d /var/tmp/driftwatch-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
rootfs=$context/rootfs
mkdir -p "$rootfs/usr/bin" "$rootfs/etc/driftwatch" "$rootfs/var/lib/driftwatch" "$rootfs/tmp" \
  "$rootfs/proc" "$rootfs/sys" "$rootfs/dev" "$rootfs/run"
chmod 1777 "$rootfs/tmp"
cp "$binary" "$rootfs/usr/bin/driftwatch"

# Every library the binary needs, at the path the loader looks for it, and
# the loader itself (ldd's "=> /path" and its absolute first-column paths).
libraries=$(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[[ -n $libraries ]] || { say "ldd names no library for $binary"; exit 1; }
for lib in $libraries; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done
# /lib64 is a link to usr/lib64 or lib on some hosts: keep the loader's path.
say "staged $binary and $(wc -w <<<"$libraries") libraries"

# The daemon's own user, with the host's ids when it has one (scripts/
# install-deps.sh creates it), so that a state dir on a hostPath keeps one owner.
uid=$(id -u driftwatch 2>/dev/null || echo 999)
gid=$(id -g driftwatch 2>/dev/null || echo 999)
cat >"$rootfs/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/usr/sbin/nologin
driftwatch:x:$uid:$gid:driftwatch daemon:/nonexistent:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
PASSWD
cat >"$rootfs/etc/group" <<GROUP
root:x:0:
driftwatch:x:$gid:
nogroup:x:65534:
GROUP
# The embedded defaults with the API reachable from outside the pod.
cat >"$rootfs/etc/driftwatch/config.json" <<'CONFIG'
{"listen": "0.0.0.0:9477", "state_dir": "/var/lib/driftwatch", "trust": "/etc/driftwatch/trust.json"}
CONFIG
cp deploy/container/Containerfile "$context/Containerfile"
podman build --quiet -t "$tag" -f "$context/Containerfile" "$context" >&2
say "built $tag"
echo "$tag"
