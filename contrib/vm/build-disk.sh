#!/usr/bin/env bash
# contrib/vm/build-disk.sh OUT_DIR [SIZE]
#
# Builds a small bootable VM directory from Debian packages:
#   OUT_DIR/disk.img         sparse raw disk of SIZE (default 3G): one ext4 file system holding
#                            /boot/vmlinuz and /boot/initrd.img (Debian's linux-image-amd64 kernel
#                            and a busybox initramfs with its virtio and ext4 modules), a static
#                            busybox, /init, and a payload of this machine's /usr files
#   OUT_DIR/config.json      how to boot it (kernel, initrd, command line) and what the boot
#                            must print; it is pushed with the disk, so a mount has everything
#   OUT_DIR/expected-marker  the marker line the boot must print
#
# Everything the VM needs is in disk.img: contrib/vm/boot.sh extracts the kernel and initrd from
# it with debugfs. The guest's /init (contrib/vm/guest/init) reads a fixed share of the payload
# (READ_MB, default 90 MB, every sixth 8 MB run of files), prints "IMGFS-BOOT-OK <sha256 of those
# files>" and powers off; the payload is PAYLOAD_MB (default 600 MB), so a boot reads under a fifth
# of the data.
#
# Environment: PAYLOAD_MB, READ_MB, PAYLOAD_SOURCES (default /usr), IMGFS_VM_DEB_CACHE (where the
# kernel .debs are downloaded, default /var/tmp/imgfs-vm-debs). Needs busybox-static, e2fsprogs,
# python3 and apt (contrib/test/install-deps.sh installs them). No root file system is mounted and
# no loop device is used: mkfs.ext4 -d builds the image from a directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build-disk.sh OUT_DIR [SIZE]}
size=${2:-3G}
payload_mb=${PAYLOAD_MB:-600}
read_mb=${READ_MB:-90}
sources=${PAYLOAD_SOURCES:-/usr}
deb_cache=${IMGFS_VM_DEB_CACHE:-/var/tmp/imgfs-vm-debs}
busybox=/bin/busybox
max_file=$((16 * 1024 * 1024))   # larger files would make the read share lumpy

log() { echo "build-disk: $*" >&2; }
die() { echo "build-disk: $*" >&2; exit 1; }

[[ -x $busybox ]] && "$busybox" --list >/dev/null 2>&1 || die "$busybox missing (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then die "$busybox is dynamically linked; install busybox-static"; fi
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 missing (apt-get install e2fsprogs)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# --- The kernel: Debian's linux-image-amd64 and the versioned package it depends on, downloaded
# (not installed, so the host's /boot is untouched) and unpacked into the stage.
mkdir -p "$deb_cache"
kernel_pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [[ -z $kernel_pkg ]]; then
    apt-get update -qq
    kernel_pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[[ -n $kernel_pkg ]] || die "cannot resolve linux-image-amd64 to a versioned kernel package"
kernel_version=${kernel_pkg#linux-image-}
kernel_deb=$(ls "$deb_cache"/"${kernel_pkg}"_*.deb 2>/dev/null | tail -n1 || true)
if [[ -z $kernel_deb ]]; then
    log "downloading $kernel_pkg"
    # apt's sandbox user cannot write most directories; download as root without it.
    (cd "$deb_cache" && apt-get download -o APT::Sandbox::User=root "$kernel_pkg" >/dev/null)
    kernel_deb=$(ls "$deb_cache"/"${kernel_pkg}"_*.deb | tail -n1)
fi
mkdir "$stage/kernel"
dpkg-deb -x "$kernel_deb" "$stage/kernel"
vmlinuz="$stage/kernel/boot/vmlinuz-$kernel_version"
moddir="$stage/kernel/lib/modules/$kernel_version"
[[ -f $vmlinuz && -d $moddir ]] || die "$kernel_deb has no vmlinuz or modules for $kernel_version"

# --- The initramfs: busybox and the modules between the kernel and an ext4 root on virtio, in
# dependency order. Debian builds virtio_pci, virtio_blk and ext4 as modules and its package has
# no initrd (initramfs-tools makes one at install time), so we make our own small one.
modules=(virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci virtio_blk
         crc16 mbcache jbd2 crc32c_generic ext4)
ird="$stage/initramfs"
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$ird/bin/busybox"
cp "$here/guest/initramfs-init" "$ird/init"
chmod 755 "$ird/init"
declare -A have=()
for m in "${modules[@]}"; do
    ko=$(find "$moddir/kernel" -name "$m.ko" -print -quit)
    [[ -n $ko ]] || die "module $m not in $kernel_pkg"
    # Every dependency the module declares must already be in the list before it.
    deps=$(tr '\0' '\n' < "$ko" | sed -n 's/^depends=//p' | tr ',' ' ')
    for d in $deps; do [[ -n ${have[$d]:-} ]] || die "module $m needs $d, which is not loaded before it"; done
    cp "$ko" "$ird/lib/modules/$m.ko"
    have[$m]=1
done
printf '%s\n' "${modules[@]}" > "$ird/modules.order"
initrd="$stage/initrd.img"
(cd "$ird" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null | gzip -9 -n > "$initrd")

# --- The root file system.
root="$stage/root"
mkdir -p "$root"/{bin,boot,dev,proc,sys,tmp,imgfs-boot,payload}
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list); do
    [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
cp "$here/guest/init" "$root/init"
chmod 755 "$root/init"
cp "$vmlinuz" "$root/boot/vmlinuz"
cp "$initrd" "$root/boot/initrd.img"

# The payload: regular files under $sources in a fixed order, up to PAYLOAD_MB, copied into
# buckets of about 8 MB (/payload/bNNNN/...). mkfs.ext4 -d lays a directory's files out together,
# so a bucket is one contiguous run of the disk and buckets land in no particular order. Every
# sixth bucket, up to READ_MB, goes on the list the guest reads: scattered runs that touch about a
# sixth of the disk's 1 MiB frames (a finer choice, say every fifth file, would touch nearly every
# frame). Names with characters xargs would split on are skipped, so `xargs cat` reads the list.
log "collecting a ${payload_mb} MB payload from $sources (the boot reads up to ${read_mb} MB of it)"
python3 - "$root" "$payload_mb" "$read_mb" "$max_file" $sources <<'PY'
import os, re, shutil, sys
root, payload_mb, read_mb, max_file, sources = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
budget, read_budget, bucket_size, read_every = payload_mb * 10**6, read_mb * 10**6, 8 * 2**20, 6
safe = re.compile(r'^[A-Za-z0-9._+/@=,-]+$')
total = read_total = count = 0
bucket, bucket_bytes = 0, 0
read_list = []
def walk(top):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        if os.path.abspath(dirpath).startswith(os.path.abspath(root)):
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            yield os.path.join(dirpath, name)
def paths():
    for top in sources:
        yield from walk(top)
for path in paths():
    if total >= budget:
        break
    if not safe.match(path) or os.path.islink(path) or not os.path.isfile(path):
        continue
    try:
        size = os.path.getsize(path)
        if size == 0 or size > max_file or not os.access(path, os.R_OK):
            continue
        if bucket_bytes >= bucket_size:
            bucket, bucket_bytes = bucket + 1, 0
        rel = "payload/b%04d/%s" % (bucket, path.lstrip("/"))
        dest = os.path.join(root, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(path, dest)
    except OSError:
        continue
    total += size
    bucket_bytes += size
    count += 1
    if bucket % read_every == 0 and read_total + size <= read_budget:
        read_list.append(rel)
        read_total += size
with open(os.path.join(root, "imgfs-boot", "read-list"), "w") as f:
    f.write("".join(p + "\n" for p in read_list))
with open(os.path.join(root, "imgfs-boot", "sizes"), "w") as f:
    f.write(f"{total} {count} {read_total} {len(read_list)}\n")
PY
read -r payload_bytes payload_files read_bytes read_files < "$root/imgfs-boot/sizes"
sum=$(cd "$root" && xargs cat < imgfs-boot/read-list | sha256sum | cut -d' ' -f1)
marker="IMGFS-BOOT-OK $sum"

# --- The disk: sparse, larger than its data. mkfs.ext4 -d copies the tree without mounting it.
disk="$stage/disk.img"
truncate -s "$size" "$disk"
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -L imgfs-root -U 8f7c1c3e-5b1e-4a2f-9d55-1d6a7b2c0e01 \
    -E root_owner=0:0,hash_seed=2f1c6d5e-6a8b-4e8c-8a4b-7e9f0c1d2b3a -d "$root" "$disk"
# debugfs reads the image as boot.sh will; check the kernel is there before we call it built.
debugfs -R "stat /boot/vmlinuz" "$disk" 2>/dev/null | grep -q "Size: $(stat -c %s "$vmlinuz")" \
    || die "debugfs cannot see /boot/vmlinuz in the built disk"

cmdline="root=/dev/vda rw console=ttyS0 init=/init panic=1 quiet loglevel=3"
python3 - "$stage/config.json" <<PY
import json, sys
config = {
    "os": "linux",
    "arch": "x86_64",
    "memoryMiB": 512,
    "disk": {"path": "disk.img", "format": "raw", "interface": "virtio"},
    "boot": {
        "kernel": "/boot/vmlinuz",
        "initrd": "/boot/initrd.img",
        "cmdline": "$cmdline",
        "kernelPackage": "$kernel_pkg",
    },
    "bootCheck": {
        "marker": "$marker",
        "readBytes": $read_bytes,
        "readFiles": $read_files,
        "payloadBytes": $payload_bytes,
        "payloadFiles": $payload_files,
    },
}
with open(sys.argv[1], "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
PY
echo "$marker" > "$stage/expected-marker"
mv -f "$disk" "$stage/config.json" "$stage/expected-marker" "$out/"
data=$(du -B1 "$out/disk.img" | cut -f1)
log "built $out/disk.img: $(numfmt --to=iec "$(stat -c %s "$out/disk.img")") logical, $((data / 1000000)) MB allocated;" \
    "payload $((payload_bytes / 1000000)) MB in $payload_files files, boot reads $((read_bytes / 1000000)) MB in $read_files files"
