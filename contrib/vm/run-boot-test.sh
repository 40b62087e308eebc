#!/usr/bin/env bash
# contrib/vm/run-boot-test.sh
#
# The VM boot test of issue 4: builds the test VM (contrib/vm/cached-vm.sh: build-disk.sh, cached
# between runs under IMGFS_VM_CACHE, keyed by the hash of the scripts that make it), pushes it to
# the test registry, mounts it with a fresh cache directory and boots the VM from
# MOUNTPOINT/disk.img (cold), unmounts, mounts again with the same cache directory and boots
# again (warm). Exit status 0 only if both boots print the expected marker. Every mount is
# unmounted, and a registry this script started is stopped, even on failure.
#
# Environment: IMGFS_BIN (default .build/release/imgfs), IMGFS_TEST_REGISTRY (host:port; without
# it a registry is started and stopped here), IMGFS_TEST_SCRATCH (scratch parent, default
# /var/tmp), IMGFS_VM_ACCEL (tcg or kvm), IMGFS_VM_TIMEOUT (per boot, seconds, default 180).
set -euo pipefail
test_name=boot-test
source "$(dirname "$0")/test-lib.sh"
require_tools qemu-system-x86_64 debugfs mkfs.ext4 fusermount3
"$imgfs" mount --help >/dev/null 2>&1 || die "$imgfs has no mount command"

# --- The VM directory (built once per version of the scripts that make it).
vm=$("$here/cached-vm.sh")

# --- Push.
test_registry; registry=$REPLY
ref="$registry/it/boot-$(random_hex):latest"
t0=$(date +%s)
"$imgfs" push --quiet "$vm" "$ref" >/dev/null || die "imgfs push $vm $ref"
log "pushed $ref in $(( $(date +%s) - t0 )) s"

# --- Cold, then warm: the same cache directory, mounted twice.
cache="$work/cache"
mnt="$work/mnt"
mkdir -p "$cache" "$mnt"
mounted+=("$mnt")
for pass in cold warm; do
    "$imgfs" mount --cache-dir "$cache" --log-file "$work/mount-$pass.log" "$ref" "$mnt" \
        || die "$pass: imgfs mount $ref $mnt"
    [[ -f $mnt/disk.img && -f $mnt/config.json ]] || die "$pass: the mount has no disk.img or config.json"
    status=0
    seconds=$("$here/boot.sh" "$mnt/disk.img" --log "$work/console-$pass.log") || status=$?
    sleep 1.2   # the daemon rewrites its status file every second
    "$imgfs" status --json "$mnt" > "$work/status-$pass.json" 2>/dev/null || true
    "$imgfs" umount "$mnt" || die "$pass: imgfs umount $mnt"
    if ((status != 0)); then
        log "daemon log ($pass, last 30 lines):"
        tail -n 30 "$work/mount-$pass.log" >&2 || true
        die "$pass boot from $mnt/disk.img"
    fi
    fetched=$(python3 - "$work/status-$pass.json" <<'PY' 2>/dev/null || echo "?"
import json, sys
s = json.load(open(sys.argv[1]))
s = s[0] if isinstance(s, list) else s
def find(o, names):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in names and isinstance(v, (int, float)): return v
            r = find(v, names)
            if r is not None: return r
    if isinstance(o, list):
        for v in o:
            r = find(v, names)
            if r is not None: return r
print("%.1f MB" % (find(s, ("fetchedBytes", "bytesFetched", "fetched")) / 1e6))
PY
)
    log "$pass boot: ok in $seconds s (fetched from the registry: $fetched)"
done
log "passed"
