#!/usr/bin/env bash
# contrib/vm/build-debian-disk.sh OUT_DIR [SIZE]
#
# Builds a real distribution's boot disk, for benches that need a boot's real read pattern rather
# than contrib/vm/build-disk.sh's busybox /init: Debian 12 (bookworm) made by mmdebstrap with
# systemd as init, udev, dbus, python3 and linux-image-amd64, in one ext4 file system filling a
# sparse raw OUT_DIR/disk.img of SIZE (default 4G). When multi-user.target is reached, the unit
# imgfs-boot-done.service prints the marker "IMGFS-BOOT-OK debian" on the serial console and powers
# the guest off, so contrib/vm/boot.sh detects the end of the boot the way it does for the busybox
# disk. OUT_DIR/config.json names the kernel and the Debian-made initrd inside the image (boot.sh
# extracts them with debugfs) and the command line; OUT_DIR/expected-marker holds the marker.
#
# Needs mmdebstrap, e2fsprogs and a Debian mirror (apt's sources of this machine); runs as root
# (mmdebstrap's root mode, so the kernel's postinst builds the initrd inside the chroot). Takes a
# few minutes; contrib/bench/slowlink keeps the result under /var/tmp so reruns skip it.
set -euo pipefail
out=${1:?usage: build-debian-disk.sh OUT_DIR [SIZE]}
size=${2:-4G}
marker="IMGFS-BOOT-OK debian"
log() { echo "build-debian-disk: $*" >&2; }
command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null
command -v mkfs.ext4 >/dev/null || { log "mkfs.ext4 missing (apt-get install e2fsprogs)"; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$stage"' EXIT
root="$stage/root"

# The end-of-boot unit: after multi-user.target (everything a normal boot starts has started),
# print the marker where boot.sh looks for it and power off; --no-block so the unit itself can
# finish while systemd stops the rest.
cat > "$stage/imgfs-boot-done.service" <<'UNIT'
[Unit]
Description=imgfs bench: report the end of the boot and power off
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/sh -c "echo IMGFS-BOOT-OK debian > /dev/ttyS0; systemctl poweroff --no-block"
[Install]
WantedBy=multi-user.target
UNIT

log "mmdebstrap bookworm into $root"
mmdebstrap --quiet --variant=minbase --mode=root \
    --include=linux-image-amd64,initramfs-tools,systemd-sysv,udev,dbus,python3,kmod,procps \
    --customize-hook='echo "/dev/vda / ext4 rw,relatime 0 1" > "$1/etc/fstab"' \
    --customize-hook='echo imgfs-bench > "$1/etc/hostname"' \
    --customize-hook="cp '$stage/imgfs-boot-done.service' \"\$1/etc/systemd/system/\"" \
    --customize-hook='chroot "$1" systemctl enable imgfs-boot-done.service' \
    --customize-hook='chroot "$1" passwd -d root' \
    bookworm "$root"

kernel=$(cd "$root/boot" && ls vmlinuz-* | sort -V | tail -n1)
initrd=initrd.img-${kernel#vmlinuz-}
[[ -f $root/boot/$kernel && -f $root/boot/$initrd ]] || { log "no kernel or initrd in $root/boot"; exit 1; }

log "mkfs.ext4 -d into a $size disk.img"
truncate -s "$size" "$stage/disk.img"
mkfs.ext4 -q -F -L root -d "$root" "$stage/disk.img" >/dev/null

python3 - "$stage/config.json" "/boot/$kernel" "/boot/$initrd" "$marker" <<'PY'
import json, sys
path, kernel, initrd, marker = sys.argv[1:]
config = {
    "os": "linux",
    "arch": "x86_64",
    "memoryMiB": 1024,
    "disk": {"path": "disk.img", "format": "raw", "interface": "virtio"},
    "boot": {"kernel": kernel, "initrd": initrd,
             "cmdline": "root=/dev/vda rw console=ttyS0 panic=1 quiet loglevel=3"},
    "bootCheck": {"marker": marker},
}
with open(path, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
echo "$marker" > "$stage/expected-marker"
mv -f "$stage/disk.img" "$stage/config.json" "$stage/expected-marker" "$out/"
log "built $out/disk.img: $(du -B1 "$out/disk.img" | cut -f1) bytes of data, kernel $kernel"
