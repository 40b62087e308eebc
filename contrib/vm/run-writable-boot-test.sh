#!/usr/bin/env bash
# contrib/vm/run-writable-boot-test.sh
#
# Issue 4's writable boot test: pushes the test VM (contrib/vm/cached-vm.sh) to the test registry
# as REF, then
#   1. mounts REF with `imgfs mount --writable` and boots it without snapshot=on in write mode
#      (guest/init: imgfs.mode=write imgfs.token=T writes T to /imgfs-written, syncs, powers off);
#   2. boots the same writable mount again in readback mode and checks the guest reads T back;
#   3. with the writable mount still up, mounts REF read-only (same cache directory, another
#      mountpoint) and checks its disk.img is byte-for-byte the original VM disk;
#   4. pushes the writable mount point as REF2 (`imgfs push --json`) and checks only a few blobs
#      were uploaded (the changed chunk layers and the index) and that chunk layers were reused;
#   5. mounts REF2 with a fresh cache directory and checks its disk.img equals the writable
#      mount's disk.img.
# Exit status 0 only if every check passed. Every mount is unmounted, and a registry this script
# started is stopped, even on failure.
#
# Environment: as contrib/vm/run-boot-test.sh (IMGFS_BIN, IMGFS_TEST_REGISTRY, IMGFS_TEST_SCRATCH,
# IMGFS_VM_ACCEL, IMGFS_VM_TIMEOUT), plus IMGFS_WBOOT_CHUNK_SIZE (the chunk layer size REF is
# pushed with, default 64M, so the 3 GB disk has enough chunks for "only the changed ones" to
# mean something).
set -euo pipefail
chunk_size=${IMGFS_WBOOT_CHUNK_SIZE:-64M}
test_name=wboot-test
source "$(dirname "$0")/test-lib.sh"
require_tools qemu-system-x86_64 debugfs mkfs.ext4 fusermount3 cmp python3
"$imgfs" mount --help 2>/dev/null | grep -q -- --writable || die "$imgfs has no mount --writable"

# mount NAME REF [imgfs mount options...]: mounts REF at $work/NAME, logging to $work/mount-NAME.log.
mount_image() {
    local name=$1 ref=$2; shift 2
    local mnt="$work/$name"
    mkdir -p "$mnt"
    mounted+=("$mnt")
    "$imgfs" mount --log-file "$work/mount-$name.log" "$@" "$ref" "$mnt" || die "imgfs mount $* $ref $mnt"
    [[ -f $mnt/disk.img && -f $mnt/config.json ]] || die "$name: the mount has no disk.img or config.json"
}
# boot NAME DISK EXPECT [boot.sh options...]
boot() {
    local name=$1 disk=$2 expect=$3; shift 3
    local seconds status=0
    seconds=$("$here/boot.sh" "$disk" --expect "$expect" --log "$work/console-$name.log" "$@") || status=$?
    if ((status != 0)); then
        log "daemon log (last 30 lines):"
        tail -n 30 "$work/mount-writable.log" >&2 || true
        die "$name boot from $disk (expected $expect)"
    fi
    log "$name boot: ok in $seconds s ($expect)"
}

# --- The VM directory (built once per version of the scripts that make it) and its push.
vm=$("$here/cached-vm.sh")
test_registry; registry=$REPLY
repo="it/wboot-$(random_hex)"
ref="$registry/$repo:v1"
ref2="$registry/$repo:v2"
t0=$(date +%s)
"$imgfs" push --quiet --json --chunk-size "$chunk_size" "$vm" "$ref" > "$work/push1.json" || die "imgfs push $vm $ref"
base_chunks=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["chunkLayers"])' "$work/push1.json")
log "pushed $ref in $(( $(date +%s) - t0 )) s ($base_chunks chunk layers of $chunk_size)"

# --- 1 and 2: write, then read back, from the same writable mount.
cache="$work/cache"
mount_image writable "$ref" --cache-dir "$cache" --writable --writable-dir "$work/layer"
wdisk="$work/writable/disk.img"
token="tok-$(head -c8 /dev/urandom | od -An -tx1 | tr -d ' \n')"
boot write "$wdisk" "IMGFS-WRITE-OK $token" --no-snapshot --append "imgfs.mode=write imgfs.token=$token"
boot readback "$wdisk" "IMGFS-READBACK $token" --no-snapshot --append "imgfs.mode=readback"
cmp -s "$wdisk" "$vm/disk.img" && die "the writable disk.img still equals the original after the write boot"
log "writable disk.img differs from the original: yes ($(cmp "$wdisk" "$vm/disk.img" 2>/dev/null | head -1 || true))"

# --- 3: a read-only mount of the same reference, at the same time, serves the original bytes.
mount_image readonly "$ref" --cache-dir "$cache"
t0=$(date +%s)
cmp "$work/readonly/disk.img" "$vm/disk.img" || die "the read-only mount's disk.img differs from the original VM disk"
log "read-only mount (alongside the writable one): disk.img equals the original ($(( $(date +%s) - t0 )) s to compare)"

# --- 4: push of the written mount reuses the unchanged chunk layers.
t0=$(date +%s)
"$imgfs" push --quiet --json "$work/writable" "$ref2" > "$work/push2.json" || die "imgfs push $work/writable $ref2"
read -r uploaded reused chunks bytes compressed < <(python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))
print(s["blobsUploaded"], s["chunkLayersReused"], s["chunkLayers"], s["bytesUploaded"], s["framesCompressed"])' "$work/push2.json") \
    || die "cannot read the push summary: $(cat "$work/push2.json")"
changed=$((chunks - reused))
log "pushed the written disk as $ref2 in $(( $(date +%s) - t0 )) s: blobsUploaded=$uploaded chunkLayersReused=$reused of $chunks chunk layers (changed: $changed), bytesUploaded=$bytes, framesCompressed=$compressed"
((reused > 0)) || die "the push reused no chunk layers"
((changed >= 1 && changed * 2 <= chunks)) || die "$changed of $chunks chunk layers changed (want at least 1 and at most half)"
# The changed chunk layers and the index; the config blob, if the registry lacks it, too.
((uploaded >= changed + 1 && uploaded <= changed + 2)) || die "the push uploaded $uploaded blobs for $changed changed chunk layers"
# Frames of unchanged chunks are hashed, not compressed: at most the changed chunks' frames are.
# The frame size push chose for the base.
frame_size=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["frameSize"])' "$work/push1.json")
frames_per_chunk=$(( $(numfmt --from=iec "$chunk_size") / frame_size ))
((compressed >= 1 && compressed <= changed * frames_per_chunk)) \
    || die "the push compressed $compressed frames for $changed changed chunks of $frames_per_chunk frames"

# --- 5: a fresh mount of the new image is the written disk.
mount_image fresh "$ref2" --cache-dir "$work/cache-fresh"
t0=$(date +%s)
cmp "$work/fresh/disk.img" "$wdisk" || die "a fresh mount of $ref2 differs from the written disk"
log "fresh mount of $ref2: disk.img equals the written disk ($(( $(date +%s) - t0 )) s to compare)"

for m in "$work/fresh" "$work/readonly" "$work/writable"; do
    "$imgfs" umount "$m" || die "imgfs umount $m"
done
log "passed"
