#!/usr/bin/env bash
# slowlink-test.sh IMGFS: a reader's read is served while readahead and background prefetch fill a
# slow link, and the background classes back off while readers wait (issue 20).
#
# The registry runs on 10.216.0.2 in a network namespace behind a veth shaped to 16 Mbit/s
# (contrib/bench/shaped-link.sh). The image is 288 MiB of random bytes (frames do not compress, so
# a 1 MiB frame takes 0.5 s of the link). The mount runs with prefetch on; a sequential reader keeps
# readahead busy and the background prefetch fetches the rest of the disk.
# Every timed read is more than 8 frames (StreamDetector's slack) from every other read, so that
# none of them starts readahead of its own.
# 1. Eight reads of one frame each, far from both, one after the other: each completes within 5 s
#    (alone it takes 0.5 s of the link; queued behind the prefetch batches and readahead batches in
#    flight it waited up to 4.1 s before demand went first).
# 2. Four readers at once read twelve more such frames, so that a reader's transfer is always
#    running: over that time the readahead, profile and prefetch classes together moved fewer
#    bytes than demand (`imgfs status --json` bytesFetchedByClass). Between one reader's reads the
#    link is idle and background work may take it, so only continuous demand shows the back-off.
# Prints "ok" and exits 0 when both hold. Needs root.
set -euo pipefail
imgfs=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
ns=imgfs-slowtest-$$
work=$(mktemp -d "${TMPDIR:-/var/tmp}/imgfs-slowlink-test.XXXXXX")
registry_pid="" reader_pid=""
mnt=$work/mnt
stop() {
    kill "$1" 2>/dev/null || return 0
    for _ in $(seq 1 20); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}
cleanup() {
    [[ -n $reader_pid ]] && stop "$reader_pid"
    grep -qF " $mnt " /proc/mounts && { "$imgfs" umount "$mnt" >/dev/null 2>&1 || fusermount3 -u -z "$mnt" 2>/dev/null || true; }
    [[ -n $registry_pid ]] && stop "$registry_pid"
    "$root/contrib/bench/shaped-link.sh" down "$ns"
    rm -rf "$work"
}
trap cleanup EXIT

"$root/contrib/bench/shaped-link.sh" up "$ns" 0 10.216.0
mkdir -p "$work/data" "$mnt" "$work/image"
cat > "$work/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/data}}
http: {addr: "10.216.0.2:5000", secret: imgfs-slowlink-test}
YAML
closefds() { for fd in /proc/self/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null; done; }
( closefds; exec ip netns exec "$ns" docker-registry serve "$work/registry.yml" ) >"$work/registry.log" 2>&1 </dev/null &
registry_pid=$!
for _ in $(seq 1 100); do curl -s -o /dev/null http://10.216.0.2:5000/v2/ && break; sleep 0.1; done

head -c $((288 << 20)) /dev/urandom > "$work/image/disk.img"
ref=10.216.0.2:5000/slowlink/test:1
"$imgfs" push --quiet --plain-http "$work/image" "$ref" >/dev/null
"$root/contrib/bench/shaped-link.sh" rate "$ns" 16

"$imgfs" mount --plain-http --cache-dir "$work/cache" --log-file "$work/mount.log" "$ref" "$mnt" >/dev/null
# A sequential reader from the start: demand reads of its own, and readahead ahead of it. The
# background prefetch (no profile, so it starts at once) works from the start too.
( closefds; exec dd if="$mnt/disk.img" of=/dev/null bs=1M count=40 status=none ) </dev/null >/dev/null 2>&1 &
reader_pid=$!
sleep 3

by_class() {
    "$imgfs" status --json "$mnt" | python3 -c '
import json, sys
s = json.load(sys.stdin); s = s[0] if isinstance(s, list) else s
b = s["statistics"]["bytesFetchedByClass"]
print(b["demand"], b["readahead"] + b["profile"] + b["prefetch"])'
}
sleep 1.1
read -r demand0 background0 < <(by_class)
# Eight frames in the last quarter of the disk, one at a time, each timed.
python3 - "$mnt/disk.img" "$work/image/disk.img" <<'PY'
import os, sys, time
mounted, original = sys.argv[1], sys.argv[2]
frame = 1 << 20
with open(mounted, "rb", buffering=0) as m, open(original, "rb") as o:
    for i in range(8):
        offset = (90 + 10 * i) * frame + 4096
        start = time.monotonic()
        got = os.pread(m.fileno(), 4096, offset)
        took = time.monotonic() - start
        o.seek(offset)
        if got != o.read(4096):
            sys.exit(f"wrong bytes at {offset}")
        if took > 5.0:
            sys.exit(f"a demand read of frame {offset // frame} took {took:.2f} s (bound 5 s)")
        print(f"frame {offset // frame}: {took:.2f} s", file=sys.stderr)
PY
sleep 1.2   # the status file is rewritten every second
read -r demand1 background1 < <(by_class)
# 2: continuous demand, four readers of three frames each.
python3 - "$mnt/disk.img" "$work/image/disk.img" <<'PY'
import os, sys, threading
mounted, original = sys.argv[1], sys.argv[2]
frame = 1 << 20
failures = []
def reader(first):
    with open(mounted, "rb", buffering=0) as m, open(original, "rb") as o:
        for i in range(3):
            offset = (170 + 9 * (first + 4 * i)) * frame + 8192
            got = os.pread(m.fileno(), 4096, offset)
            o.seek(offset)
            if got != o.read(4096):
                failures.append(offset)
threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
for t in threads: t.start()
for t in threads: t.join()
if failures:
    sys.exit(f"wrong bytes at {failures}")
PY
sleep 1.2
read -r demand2 background2 < <(by_class)
echo "during the timed reads: demand $((demand1 - demand0)) bytes, readahead+profile+prefetch $((background1 - background0)) bytes" >&2
demand=$((demand2 - demand1)) background=$((background2 - background1))
echo "during the concurrent reads: demand $demand bytes, readahead+profile+prefetch $background bytes" >&2
((demand >= 12 << 20)) || { echo "the concurrent reads fetched only $demand demand bytes" >&2; exit 1; }
((background1 > 0)) || { echo "no readahead or prefetch bytes at all: the link was never saturated" >&2; exit 1; }
((background < demand)) || { echo "background classes did not back off: $background bytes against demand's $demand" >&2; exit 1; }
echo ok
