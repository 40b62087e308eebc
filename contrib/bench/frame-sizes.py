#!/usr/bin/env python3
"""contrib/bench/frame-sizes.py COR-MAP MBIT[,MBIT...] SIZE=INDEX[:PUSH-SECONDS] ...

What a boot needs from images of several frame sizes, read from their real indexes (so the
compressed lengths are what `imgfs push --frame-size` stored, not an estimate). COR-MAP is
`qemu-img map --output=json` of a copy-on-read qcow2 overlay the boot ran through (its clusters,
64 KiB, are what the guest read; contrib/bench/slowlink makes it). For each frame size: the frames
the boot touches, their uncompressed and compressed bytes, the image's compressed size and index
size, the range requests a fetch of all touched frames at once takes (RangeRequest.plan: members
contiguous in one layer join, up to 16 MiB; what a boot profile's fetch sends) and the link time
of index + touched members at MBIT Mbit/s. Called by contrib/bench/slowlink (FRAME_SIZES).
"""
import json
import struct
import sys

MAX_REQUEST = 16 << 20


def parse_index(path):
    data = open(path, "rb").read()
    if data[:8] != b"IMGFSIDX":
        sys.exit(f"frame-sizes: {path} is not an imgfs frame index")
    frame_size, layer_count = struct.unpack_from("<II", data, 16)
    disk_size, frame_count = struct.unpack_from("<QQ", data, 24)
    layers = [struct.unpack_from("<Q", data, 64 + 40 * i + 32)[0] for i in range(layer_count)]
    base = 64 + 40 * layer_count
    frames = []
    for i in range(frame_count):
        offset, length, layer, flags = struct.unpack_from("<QIII", data, base + 56 * i)
        stored = layer != 0xFFFFFFFF
        frames.append((offset, length, layer if stored else None, bool(flags & 1)))
    return frame_size, disk_size, layers, frames, len(data)


def touched_frames(cor_map, frame_size):
    touched = set()
    for e in cor_map:
        if e.get("data") and e.get("depth") == 0:
            touched.update(range(e["start"] // frame_size, (e["start"] + e["length"] - 1) // frame_size + 1))
    return touched


def plan(frames, index_frames):
    """RangeRequest.plan with gap 0 and 16 MiB requests: the number of requests."""
    located = sorted((index_frames[f][2], index_frames[f][0], index_frames[f][1]) for f in frames
                     if not index_frames[f][3] and index_frames[f][2] is not None)
    requests, last = 0, None   # last: (layer, start, end)
    for layer, offset, length in located:
        if last and last[0] == layer and offset <= last[2] and max(offset + length, last[2]) - last[1] <= MAX_REQUEST:
            last = (layer, last[1], max(offset + length, last[2]))
        else:
            requests += 1
            last = (layer, offset, offset + length)
    return requests


def main():
    cor_map = json.load(open(sys.argv[1]))
    rates = [float(m) for m in sys.argv[2].split(",")]
    read = sum(e["length"] for e in cor_map if e.get("data") and e.get("depth") == 0)
    rows = []
    for arg in sys.argv[3:]:
        size, rest = arg.split("=", 1)
        index_path, _, push_s = rest.partition(":")
        frame_size, disk_size, layers, frames, index_bytes = parse_index(index_path)
        touched = touched_frames(cor_map, frame_size)
        data = [f for f in touched if not frames[f][3]]
        members = {(frames[f][2], frames[f][0]): frames[f][1] for f in data if frames[f][2] is not None}
        raw = sum(min(frame_size, disk_size - f * frame_size) for f in data)
        gz = sum(members.values())
        stored = sum(1 for f in frames if not f[3])
        rows.append(dict(size=size, frame_size=frame_size, touched=len(data), raw=raw, gz=gz,
                         image=sum(layers), index=index_bytes, stored=stored, requests=plan(data, frames),
                         push_s=push_s or "-", link_s=[(index_bytes + gz) * 8 / (m * 1e6) for m in rates]))
    print(f"the boot reads {read / 1e6:.1f} MB (64 KiB clusters of a copy-on-read overlay); per frame size:")
    print("| frame | frames touched (of stored) | touched, uncompressed | touched, compressed | × read | image | index | requests (profile fetch) | index + touched at " + ", ".join(f"{m:g}" for m in rates) + " Mbit/s | push |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['touched']} (of {r['stored']}) | {r['raw'] / 1e6:.1f} MB | {r['gz'] / 1e6:.1f} MB | "
              f"{r['gz'] / read:.2f} | {r['image'] / 1e6:.1f} MB | {r['index'] / 1e6:.2f} MB | {r['requests']} | " +
              ", ".join(f"{t:.1f} s" for t in r["link_s"]) + f" | {r['push_s']} s |")


if __name__ == "__main__":
    main()
