#!/usr/bin/env bash
# The install test of issue 19: what a new VM host with no Swift goes through.
#
#   bash contrib/test/install-test.sh DEB REGISTRY
#
# In a fresh Debian 12 root (mmdebstrap; no Swift inside) `apt-get install ./imgfs_*.deb` pulls
# the dependencies from Debian; inside it `imgfs --version` runs, `imgfs push` sends a disk to
# REGISTRY (HOST:PORT on the host's loopback; the root shares the host's network), `imgfs mount`
# mounts it, `cmp` finds it identical, `imgfs umount` ends it, `man imgfs-mount` finds its page
# and `systemd-analyze verify` accepts the installed units, if any.
#
# The root is made once and kept as a tarball in /var/cache/imgfs-test, named by a hash of what
# goes into it, so later runs only unpack it (seconds) and install imgfs. Each step has a
# timeout (contrib/test/run bounds the whole at 15 minutes, enough for a first run that also
# downloads the root). Whatever it mounts it unmounts, even on failure.
set -euo pipefail
[[ $# -eq 2 ]] || { echo "usage: bash contrib/test/install-test.sh DEB REGISTRY" >&2; exit 2; }
deb=$(realpath "$1")
registry=$2
started=$(date +%s)

# What the root holds besides Debian's essential packages and apt: man-db for `man`, systemd for
# `systemd-analyze verify`. Changing this list makes a new root.
include=man-db,systemd
cache=/var/cache/imgfs-test
key=$(printf 'bookworm apt %s %s\n' "$include" "$(dpkg --print-architecture)" | sha256sum | cut -c1-16)
tarball="$cache/debian12-root-$key.tar"

if ! command -v mmdebstrap >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
fi
if [[ ! -f "$tarball" ]]; then
    echo "== install test: making the Debian 12 root (cached as $tarball)" >&2
    mkdir -p "$cache"
    timeout 600 mmdebstrap --quiet --format=tar --variant=apt --include="$include" bookworm "$tarball.partial"
    mv "$tarball.partial" "$tarball"
fi

root=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-install-root.XXXXXX")
cleanup() {
    # Mounts inside the root first (a FUSE mount a failed step left), deepest first, then the root's own.
    grep -F " $root/" /proc/mounts | awk '{print $2}' | sort -r | while read -r mnt; do
        case "$mnt" in
            "$root/proc" | "$root/dev") ;;
            *) fusermount3 -u -z "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true ;;
        esac
    done
    umount -l "$root/proc" 2>/dev/null || true
    umount -l "$root/dev" 2>/dev/null || true
    # Nothing is mounted below the root any more, so removing it cannot reach the host's /dev.
    if ! grep -qF " $root/" /proc/mounts; then rm -rf "$root"; fi
}
trap cleanup EXIT

tar -C "$root" -xf "$tarball"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"          # /dev/fuse for the mount, /dev/null and friends for apt
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
in_root() { timeout "${2:-120}" chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 bash -euo pipefail -c "$1"; }

echo "== install test: apt-get install ./$(basename "$deb")" >&2
in_root "command -v swift && { echo 'the root has swift' >&2; exit 1; } || true"
in_root "export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq -o Dpkg::Use-Pty=0 --no-install-recommends /tmp/$(basename "$deb") >/dev/null" 400

echo "== install test: imgfs --version, push, mount, cmp, umount" >&2
in_root "imgfs --version"
in_root "
    head -c 6000000 /dev/urandom > /tmp/disk.img && truncate -s 8M /tmp/disk.img
    imgfs push --quiet /tmp/disk.img $registry/install-test/disk:1
    mkdir -p /mnt/imgfs
    imgfs mount --cache-dir /var/tmp/imgfs-cache $registry/install-test/disk:1 /mnt/imgfs
    status=0
    cmp /tmp/disk.img /mnt/imgfs/disk.img || status=\$?
    imgfs status
    imgfs umount /mnt/imgfs
    ! grep -q ' /mnt/imgfs ' /proc/mounts
    exit \$status
" 300

echo "== install test: man imgfs-mount, completions, units" >&2
in_root "man -w imgfs-mount && man imgfs-mount 2>/dev/null | grep -q 'imgfs mount'"
in_root "test -s /usr/share/bash-completion/completions/imgfs && test -s /usr/share/zsh/vendor-completions/_imgfs && test -s /usr/share/fish/vendor_completions.d/imgfs.fish"
in_root "test \"\$(readlink /sbin/mount.fuse.imgfs)\" = /usr/bin/imgfs"
in_root "
    units=\$(dpkg -L imgfs | grep -E '^/(usr/)?lib/systemd/system/[^/]+\\.(service|socket|mount|timer|target)\$' || true)
    if [[ -n \"\$units\" ]]; then systemd-analyze verify \$units; echo \"verified: \$units\"; else echo 'no systemd units in the package'; fi
"
echo "install test passed in $(( $(date +%s) - started )) s" >&2
