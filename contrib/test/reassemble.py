#!/usr/bin/env python3
"""reassemble.py REGISTRY REPOSITORY REFERENCE OUT

A second reader of the imgfs format, written from docs/FORMAT.md alone: fetches the manifest,
the frame index and every chunk layer with plain `curl`, decompresses each layer with plain
`gunzip`, and writes the disk to OUT (holes left as holes), checking every frame's SHA-256 and
each layer's uncompressed digest. Prints the manifest's fs-verity digest annotation.
Exit status 0 only if every check passed."""
import hashlib, json, os, struct, subprocess, sys

def curl(url, accept=None):
    cmd = ["curl", "-fsSL", url]
    if accept:
        cmd += ["-H", "Accept: " + accept]
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout

def main():
    registry, repository, reference, out = sys.argv[1:5]
    base = f"http://{registry}/v2/{repository}"
    manifest = json.loads(curl(f"{base}/manifests/{reference}", "application/vnd.oci.image.manifest.v1+json"))
    layers = manifest["layers"]
    index_desc = [l for l in layers if l["mediaType"] == "application/vnd.imgfs.disk.index.v1"]
    assert len(index_desc) == 1, "exactly one index layer"
    index = curl(f"{base}/blobs/{index_desc[0]['digest']}")
    assert "sha256:" + hashlib.sha256(index).hexdigest() == index_desc[0]["digest"], "index digest"

    magic, version, flags, frame_size, layer_count, disk_size, frame_count = struct.unpack_from("<8sIIIIQQ", index, 0)
    assert magic == b"IMGFSIDX" and version == 1, "index magic/version"
    assert len(index) == 64 + 40 * layer_count + 56 * frame_count, "index size"
    layer_digests = []
    for i in range(layer_count):
        digest, _size = struct.unpack_from("<32sQ", index, 64 + 40 * i)
        layer_digests.append("sha256:" + digest.hex())
    frames = []
    base_off = 64 + 40 * layer_count
    for i in range(frame_count):
        c_off, c_len, layer, fflags, _r, digest = struct.unpack_from("<QIIII32s", index, base_off + 56 * i)
        length = min(frame_size, disk_size - i * frame_size)
        frames.append((i, c_off, c_len, layer, fflags & 1, digest, length))

    chunk_descs = {l["digest"]: l for l in layers if l["mediaType"] == "application/vnd.imgfs.disk.chunk.v1+gzip"}
    with open(out, "wb") as f:
        f.truncate(disk_size)
        zero_frames = 0
        for layer_no, digest in enumerate(layer_digests):
            desc = chunk_descs[digest]
            # Members of this layer in blob order; frames sharing a member are copies.
            members = {}
            for fr in frames:
                if fr[3] == layer_no:
                    members.setdefault((fr[1], fr[2]), []).append(fr)
            curl_p = subprocess.Popen(["curl", "-fsSL", f"{base}/blobs/{digest}"], stdout=subprocess.PIPE)
            gunzip = subprocess.Popen(["gunzip", "-c"], stdin=curl_p.stdout, stdout=subprocess.PIPE)
            curl_p.stdout.close()
            whole = hashlib.sha256()
            total = 0
            for (c_off, c_len) in sorted(members):
                group = members[(c_off, c_len)]
                length = group[0][6]
                data = gunzip.stdout.read(length)
                assert len(data) == length, f"layer {digest}: short gunzip output"
                whole.update(data)
                total += length
                for fr in group:
                    assert hashlib.sha256(data).digest() == fr[5], f"frame {fr[0]} digest mismatch"
                    if fr[4]:
                        zero_frames += 1
                    if data.count(0) != len(data):
                        f.seek(fr[0] * frame_size)
                        f.write(data)
            assert gunzip.stdout.read(1) == b"", f"layer {digest}: trailing data after the indexed members"
            assert gunzip.wait() == 0 and curl_p.wait() == 0, f"layer {digest}: curl or gunzip failed"
            ann = desc.get("annotations", {})
            assert int(ann["dev.imgfs.chunk.uncompressed-size"]) == total, "uncompressed size annotation"
            assert ann["dev.imgfs.chunk.uncompressed-digest"] == "sha256:" + whole.hexdigest(), "uncompressed digest annotation"
    for fr in frames:
        if fr[3] == 0xFFFFFFFF:
            assert fr[4] == 1, f"frame {fr[0]} is neither stored nor a hole"
            assert fr[5] == hashlib.sha256(b"\0" * fr[6]).digest(), f"hole frame {fr[0]} digest"
    print(manifest["annotations"]["dev.imgfs.disk.fsverity-digest"])

if __name__ == "__main__":
    main()
