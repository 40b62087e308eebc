#!/usr/bin/env bash
# slowlink-test.sh IMGFS: a reader's read is served while readahead and background prefetch fill a
# slow link, and the background prefetch backs off when readers arrive (issue 20).
#
# The registry runs on 10.219.0.2 in a network namespace behind a veth shaped to 16 Mbit/s
# (contrib/bench/shaped-link.sh; the benches use 10.214-10.218 and 10.220). The image is 320 MiB of
# random bytes, so frames do not compress: one 1 MiB frame is 0.52 s of the link. The mount runs
# with the background prefetch on (no boot profile, so it starts at once).
#
# Each of six rounds:
#   a. lets the mount's readers be quiet for 3.5 s, so that the background prefetch fills the link
#      with full 4 MiB batches (2 s of the link each); checked: it moved at least 2 MiB meanwhile;
#   b. starts a sequential reader of 6 MiB somewhere fresh (readahead ahead of it fills the link
#      too) and, 0.3 s later, reads one frame far from everything else, timed. Every timed read
#      is more than 8 frames (StreamDetector's slack) from every other read, so it starts no
#      readahead of its own.
#   Bound: each timed read completes within 2.5 s. Alone it takes 0.52 s. Readahead does not hold
#   still for it but shares the link (two readahead threads and the sequential reader's own
#   request: at most 4 flows, 4 × 0.52 = 2.1 s); the prefetch batch in flight holds still, with
#   its small receive window (at most 256 KiB, 0.13 s) and the shaper's 100 ms queue ahead.
#   Without demand first the prefetch batch kept its share of the link too: 1 MiB then took
#   past 2.5 s (see the report of issue 20's demand-first branch for the figures).
# Then, over the six rounds' timed parts (from each sequential reader's start to the end of its
# round), the background prefetch moved less than a quarter of what readers waited for
# (demand) — it backs off when readers arrive, although it filled the link just before — as
# `imgfs status --json` bytesFetchedByClass says.
# Prints "ok" and exits 0 when all hold. Needs root. Removes what it made, also on failure.
set -euo pipefail
imgfs=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
ns=imgfs-slowtest-$$
net=10.219.0
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-slowlink-test.XXXXXX")
registry_pid=""
mnt=$work/mnt
stop() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    for pid in $(jobs -p); do [[ $pid == "$registry_pid" ]] || stop "$pid"; done
    grep -qF " $mnt " /proc/mounts && { "$imgfs" umount "$mnt" >/dev/null 2>&1 || fusermount3 -u -z "$mnt" 2>/dev/null || true; }
    [[ -n $registry_pid ]] && stop "$registry_pid"
    "$root/contrib/bench/shaped-link.sh" down "$ns"
    rm -rf "$work"
}
trap cleanup EXIT

"$root/contrib/bench/shaped-link.sh" up "$ns" 0 $net
mkdir -p "$work/data" "$mnt" "$work/image"
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: "$net.2:5000", secret: imgfs-slowlink-test}
YAML
closefds() { for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; }
( closefds; exec ip netns exec "$ns" docker-registry serve "$work/registry.yml" ) >"$work/registry.log" 2>&1 </dev/null &
registry_pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null "http://$net.2:5000/v2/" && break; sleep 0.1; done

head -c $((320 << 20)) /dev/urandom > "$work/image/disk.img"
ref=$net.2:5000/slowlink/test:1
"$imgfs" push --quiet --plain-http "$work/image" "$ref" >/dev/null
"$root/contrib/bench/shaped-link.sh" rate "$ns" 16

"$imgfs" mount --plain-http --cache-dir "$work/cache" --log-file "$work/mount.log" "$ref" "$mnt" >/dev/null

# demand readahead profile prefetch, compressed bytes so far.
by_class() {
    "$imgfs" status --json "$mnt" | python3 -c '
import json, sys
s = json.load(sys.stdin); s = s[0] if isinstance(s, list) else s
b = s["statistics"]["bytesFetchedByClass"]
print(b["demand"], b["readahead"], b["profile"], b["prefetch"])'
}
# The status file is rewritten every second: a reading taken 1.1 s after an event includes it.
settle() { sleep 1.1; }

python3 - "$mnt/disk.img" "$work/image/disk.img" "$imgfs" "$mnt" <<'PY'
import json, os, subprocess, sys, threading, time
mounted, original, imgfs, mnt = sys.argv[1:5]
frame = 1 << 20
bound = 2.5

def by_class():
    s = json.loads(subprocess.run([imgfs, "status", "--json", mnt], check=True, capture_output=True).stdout)
    s = s[0] if isinstance(s, list) else s
    return s["statistics"]["bytesFetchedByClass"]

def check(m, o, offset, length):
    got = os.pread(m, length, offset)
    if got != os.pread(o, length, offset):
        sys.exit(f"wrong bytes at {offset}")

m = os.open(mounted, os.O_RDONLY)
o = os.open(original, os.O_RDONLY)
demand = prefetch = 0
for round in range(6):
    # a. readers quiet: the prefetch fills the link.
    before = by_class()
    time.sleep(3.5)
    quiet = by_class()
    filled = quiet["prefetch"] - before["prefetch"]
    if filled < 2 << 20:
        sys.exit(f"round {round}: the background prefetch moved only {filled} bytes in 3.5 s of quiet: the link was not filled")
    # b. a sequential reader (readahead) and a timed read far away.
    first = 40 + 40 * round            # 6 MiB from here, sequentially
    far = first + 20                   # one frame, 14 frames past the sequential reader's end
    def sequential():
        for i in range(6):
            check(m, o, (first + i) * frame, frame)
    reader = threading.Thread(target=sequential)
    start_class = by_class()
    reader.start()
    time.sleep(0.3)
    start = time.monotonic()
    check(m, o, far * frame + 4096, 4096)
    took = time.monotonic() - start
    print(f"round {round}: prefetch filled {filled / 1e6:.1f} MB in 3.5 s quiet; timed read of frame {far}: {took:.2f} s", file=sys.stderr)
    if took > bound:
        sys.exit(f"round {round}: a demand read of frame {far} took {took:.2f} s (bound {bound} s)")
    reader.join()
    time.sleep(1.1)
    end_class = by_class()
    demand += end_class["demand"] - start_class["demand"]
    prefetch += end_class["prefetch"] - start_class["prefetch"]
print(f"during the reads: demand {demand} bytes, prefetch {prefetch} bytes", file=sys.stderr)
if demand < 6 << 20:
    sys.exit(f"the reads fetched only {demand} demand bytes")
if prefetch * 4 >= demand:
    sys.exit(f"the background prefetch did not back off: {prefetch} bytes against demand's {demand}")
PY
echo ok
