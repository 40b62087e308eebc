#!/usr/bin/env python3
"""boot-reads.py [--frame-size BYTES] DISK COR-MAP GZ-CACHE PROFILE...: what reached imgfs against what the guest read.

COR-MAP is `qemu-img map --output=json` of the copy-on-read overlay a local boot went through (the
guest's reads, in 64 KiB clusters); each PROFILE a boot profile recorded by `imgfs mount
--record-profile` (every frame a FUSE read touched, in first-read order: the guest's reads as the
host kernel passed them on, readahead included). Prints, per profile, its frames and their gzip'd
size, and how many of them the guest never read. GZ-CACHE keeps the frames' gzip'd sizes between
calls (a JSON file, created if missing). The profiles' frames are of BYTES (default 1 MiB), the
frame size of the image they were recorded from."""
import json
import os
import struct
import sys
import zlib


def guest_frames(cor_map, frame_size):
    frames = set()
    for e in json.load(open(cor_map)):
        if e.get("data") and e.get("depth") == 0:
            frames.update(range(e["start"] // frame_size, (e["start"] + e["length"] - 1) // frame_size + 1))
    return frames


def profile_frames(path):
    b = open(path, "rb").read()
    if len(b) < 16 or b[:8] != b"IMGFSPRF":
        return []
    (count,) = struct.unpack_from("<I", b, 12)
    return list(struct.unpack_from(f"<{count}I", b, 16))


def main():
    args = sys.argv[1:]
    frame_size = 1 << 20
    if args[:1] == ["--frame-size"]:
        frame_size, args = int(args[1]), args[2:]
    disk, cor_map, cache_path = args[:3]
    cache = json.load(open(cache_path)) if os.path.exists(cache_path) else {}
    guest = guest_frames(cor_map, frame_size)
    with open(disk, "rb") as f:
        def gz(frame):
            key = f"{frame_size}:{frame}"
            if key not in cache:
                f.seek(frame * frame_size)
                cache[key] = len(zlib.compress(f.read(frame_size), 6))
            return cache[key]
        for path in args[3:]:
            frames = profile_frames(path)
            extra = [x for x in frames if x not in guest]
            missed = guest - set(frames)
            mb = lambda fs: sum(gz(x) for x in fs) / 1e6
            print(f"  {os.path.basename(path)}: {len(frames)} frames read through FUSE ({mb(frames):.1f} MB gz), "
                  f"{len(extra)} of them never read by the guest ({mb(extra):.1f} MB gz); "
                  f"{len(missed)} guest frames not read through FUSE")
    json.dump(cache, open(cache_path, "w"))


main()
