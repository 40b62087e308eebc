#!/usr/bin/env bash
# contrib/vm/run-restart-boot-test.sh
#
# The VM boot of issue 10: pushes the test VM (contrib/vm/cached-vm.sh), mounts it with a fresh
# cache directory and boots it from MOUNTPOINT/disk.img while the mount's serving process is
# killed (`kill -9`) twice during the boot; the descriptor holder starts another each time and
# the boot must complete and print its marker. Exit status 0 only if it does, both kills landed
# while qemu was running, and `imgfs status` counts two restarts.
#
# Environment: as contrib/vm/run-boot-test.sh; IMGFS_RESTART_KILLS (default "3 8": seconds after
# qemu starts at which the server is killed).
set -euo pipefail
test_name=restart-boot-test
source "$(dirname "$0")/test-lib.sh"
require_tools qemu-system-x86_64 debugfs mkfs.ext4 fusermount3 python3

vm=$("$here/cached-vm.sh")
test_registry; registry=$REPLY
ref="$registry/it/restart-boot-$(random_hex):latest"
"$imgfs" push --quiet "$vm" "$ref" >/dev/null || die "imgfs push $vm $ref"

cache="$work/cache"
mnt="$work/mnt"
mkdir -p "$cache" "$mnt"
mounted+=("$mnt")
"$imgfs" mount --cache-dir "$cache" --log-file "$work/mount.log" "$ref" "$mnt" || die "imgfs mount $ref $mnt"

server_pid() {
    "$imgfs" status --json "$mnt" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["pid"])'
}

status=0
"$here/boot.sh" "$mnt/disk.img" --log "$work/console.log" > "$work/seconds" &
boot=$!
start=$(date +%s.%N)
kills=0
for at in ${IMGFS_RESTART_KILLS:-3 8}; do
    while (( $(echo "$(date +%s.%N) - $start < $at" | bc) )); do sleep 0.1; done
    kill -0 "$boot" 2>/dev/null || die "the boot ended before the kill at $at s; nothing was tested"
    pid=$(server_pid) || die "imgfs status"
    kill -9 "$pid"
    kills=$((kills + 1))
    log "killed the serving process (pid $pid) $at s into the boot"
    # Wait for the next server before the next kill.
    for _ in $(seq 1 100); do
        next=$(server_pid 2>/dev/null || true)
        [[ -n $next && $next != "$pid" ]] && kill -0 "$next" 2>/dev/null && break
        sleep 0.05
    done
done
wait "$boot" || status=$?
restarts=$("$imgfs" status --json "$mnt" | python3 -c 'import json, sys; print(json.load(sys.stdin)[0].get("restarts"))')
"$imgfs" umount "$mnt" || die "imgfs umount $mnt"
if ((status != 0)); then
    log "daemon log (last 30 lines):"
    tail -n 30 "$work/mount.log" >&2 || true
    die "boot from $mnt/disk.img with $kills kills"
fi
[[ $restarts == "$kills" ]] || die "imgfs status counts $restarts restarts, not $kills"
log "boot: ok in $(cat "$work/seconds") s with the serving process killed $kills times ($restarts restarts)"
log "passed"
