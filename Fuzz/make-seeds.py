#!/usr/bin/env python3
"""Writes the seed corpora of Fuzz/corpus (run from the repository root). The seeds are small,
valid inputs of each format; libFuzzer mutates them from there. Re-running rewrites the same files."""
import gzip, hashlib, json, struct, subprocess, tempfile, os

C = 'Fuzz/corpus/'
def write(target, name, data):
    os.makedirs(C + target, exist_ok=True)
    with open(f'{C}{target}/{name}', 'wb') as f:
        f.write(data if isinstance(data, bytes) else data.encode())

sha = lambda b: hashlib.sha256(b).digest()
dg = lambda b: 'sha256:' + hashlib.sha256(b).hexdigest()
js = lambda o: json.dumps(o, sort_keys=True, separators=(',', ':')).encode()
def desc(media, blob, annotations=None, size=None):
    d = {'mediaType': media, 'digest': dg(blob), 'size': len(blob) if size is None else size}
    if annotations: d['annotations'] = annotations
    return d
def manifest(config, layers, annotations=None):
    m = {'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'config': config, 'layers': layers}
    if annotations: m['annotations'] = annotations
    return js(m)

# --- reference
for i, r in enumerate(["alpine", "library/alpine:3.19", "ghcr.io/owner/vm:latest", "localhost:5000/vm/ubuntu:24.04",
                       "127.0.0.1:5000/a/b/c@sha256:" + "ab" * 32, "docker.io/library/ubuntu:22.04@sha256:" + "01" * 32,
                       "[::1]:5000/vm:tag", "Registry.Example/x", "example.com:443/deep/path/name_with-sep.x:v1.2-rc_3"]):
    write('reference', f'seed-{i}', r)

# --- lz4 (first byte: piece size - 1)
text = (b"imgfs frames fetched lazily; " * 300)[:6000]
with tempfile.NamedTemporaryFile() as f:
    f.write(text); f.flush()
    frame = subprocess.run(['lz4', '-c', '-B4', '-BI', '--no-frame-crc', f.name], capture_output=True, check=True).stdout
pos = 7 + (8 if frame[4] & 0x08 else 0)
bsize = struct.unpack('<I', frame[pos:pos + 4])[0]
assert not bsize & 0x80000000, 'lz4 stored the block uncompressed'
block = frame[pos + 4:pos + 4 + bsize]
comp = b'bv41' + struct.pack('<II', len(text), len(block)) + block
raw = b'bv4-' + struct.pack('<I', 11) + b'hello world'
end = b'bv4$'
for i, (first, body) in enumerate([(0xff, comp + end), (3, raw + end), (0, raw + comp + raw + end), (7, comp + comp + end), (1, end)]):
    write('lz4', f'seed-{i}', bytes([first]) + body)

# --- gzip (first byte even: member with LE16 expected size; odd: stream with piece size)
m1, m2 = gzip.compress(text, mtime=0), gzip.compress(b"x" * 1000, mtime=0)
write('gzip', 'seed-0', bytes([0]) + struct.pack('<H', len(text)) + m1)
write('gzip', 'seed-1', bytes([0]) + struct.pack('<H', 0) + gzip.compress(b"", mtime=0))
write('gzip', 'seed-2', bytes([1, 0xff]) + m1 + m2)
write('gzip', 'seed-3', bytes([1, 5]) + m2)
write('gzip', 'seed-4', bytes([2]) + struct.pack('<H', 1000) + m2)

# --- frame index
def index(frames, layers, disk, fs=65536, flags=0):
    out = b'IMGFSIDX' + struct.pack('<IIIIQQ', 1, flags, fs, len(layers), disk, len(frames)) + b'\0' * 24
    for d, s in layers: out += d + struct.pack('<Q', s)
    for off, ln, layer, ff, d in frames: out += struct.pack('<QIIII', off, ln, layer, ff, 0) + d
    return out
HOLE = 0xffffffff
# 3 frames, the last 100 bytes; chunks of 2 frames: frame 0 in chunk 0's layer, frame 1 a hole, frame 2 in chunk 1's.
L0, L1 = b'chunk zero', b'chunk one'
idx_multi = index([(0, 1000, 0, 0, sha(b'a')), (0, 0, HOLE, 1, sha(b'\0' * 65536)), (0, 500, 1, 0, sha(b'c'))],
                  [(sha(L0), 1000), (sha(L1), 500)], 131172)
idx_single = index([(0, 1000, 0, 0, sha(b'a')), (1000, 500, 0, 0, sha(b'b'))], [(sha(L0), 1500)], 131072, flags=1)
write('frame-index', 'seed-0', idx_multi)
write('frame-index', 'seed-1', idx_single)
write('frame-index', 'seed-2', index([(0, 1000, 0, 0, sha(b'a')), (0, 1000, 0, 0, sha(b'a'))], [(sha(L0), 1000)], 65536 * 2))
write('frame-index', 'seed-3', index([], [], 0))

# --- imgfs manifests: manifest NUL config [NUL index]
def imgfs(config, idx, chunks, layout):
    cfg = js({'imgfsFormat': 1, 'disk': config})
    layers = [desc('application/vnd.imgfs.disk.index.v1', idx)]
    for n, (blob, size, off, length) in enumerate(chunks):
        layers.append(desc('application/vnd.imgfs.disk.chunk.v1+gzip', blob, {
            'dev.imgfs.chunk.number': str(n), 'dev.imgfs.chunk.offset': str(off), 'dev.imgfs.chunk.length': str(length),
            'org.opencontainers.image.title': f'chunk-{n}'}, size=size))
    layers.append(desc('application/vnd.imgfs.nvram.v1', b'nvram', {'org.opencontainers.image.title': 'nvram.bin'}))
    layers.append(desc('application/vnd.imgfs.vm-config.v1+json', b'{}', {'org.opencontainers.image.title': 'config.json'}))
    m = manifest(desc('application/vnd.imgfs.config.v1+json', cfg), layers, {
        'dev.imgfs.format.version': '1', 'dev.imgfs.disk.size': str(config['size']), 'dev.imgfs.disk.layout': layout,
        'dev.imgfs.disk.frame-size': str(config['frameSize']), 'dev.imgfs.disk.fsverity-digest': dg(b'verity')})
    return m, cfg
multi = imgfs({'size': 131172, 'frameSize': 65536, 'chunkSize': 131072, 'layout': 'multi-layer'}, idx_multi,
              [(L0, 1000, 0, 131072), (L1, 500, 131072, 100)], 'multi-layer')
single = imgfs({'size': 131072, 'frameSize': 65536, 'chunkSize': 131072, 'layout': 'single-layer'}, idx_single,
               [(L0, 1500, 0, 131072)], 'single-layer')
write('manifest', 'imgfs-multi', multi[0] + b'\0' + multi[1])
write('manifest', 'imgfs-single', single[0] + b'\0' + single[1])
write('manifest', 'config', multi[1])
write('manifest', 'index', js({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json', 'manifests': [
    {**desc('application/vnd.oci.image.manifest.v1+json', multi[0]), 'platform': {'architecture': 'arm64', 'os': 'darwin'}}]}))
write('formats', 'imgfs-multi', multi[0] + b'\0' + multi[1] + b'\0' + idx_multi)
write('formats', 'imgfs-single', single[0] + b'\0' + single[1] + b'\0' + idx_single)

# --- lume OCI: chunked parts, and one gzip disk layer
cfg = b'{"cpuCount":4,"memorySize":8589934592,"diskSize":1048576}'
lume_cfg = desc('application/vnd.trycua.lume.config.v1+json', cfg)
parts = [desc('application/vnd.trycua.lume.disk.v1', f'part{i}'.encode(), {
    'org.trycua.lume.part.number': str(i), 'org.trycua.lume.part.total': '2', 'org.trycua.lume.part.offset': str(i * 524288),
    'org.trycua.lume.content.uncompressed-size': '524288', 'org.trycua.lume.content.uncompressed-digest': dg(f'p{i}'.encode())}) for i in range(2)]
nv = desc('application/vnd.trycua.lume.nvram.v1', b'nvram')
write('formats', 'lume-oci-parts', manifest(lume_cfg, parts + [nv], {'org.trycua.lume.total-uncompressed-size': '1048576'}) + b'\0' + cfg)
write('formats', 'lume-oci-single', manifest(lume_cfg, [desc('application/vnd.trycua.lume.disk.v1', b'disk', {
    'org.trycua.lume.content.uncompressed-size': '1048576'})]) + b'\0' + cfg)

# --- lume legacy: LZ4 parts in order, the disk size in the OCI config blob
legacy_cfg = js({'annotations': {'com.trycua.lume.disk.uncompressed_size': '2097152'}})
pieces = [desc('application/octet-stream+lz4', f'piece{i}'.encode(), {
    'org.trycua.lume.uncompressed-size': '1048576', 'org.trycua.lume.uncompressed-content-digest': dg(f'u{i}'.encode())}) for i in range(2)]
write('formats', 'lume-legacy', manifest(desc('application/vnd.oci.image.config.v1+json', legacy_cfg),
    [desc('application/vnd.oci.image.config.v1+json', b'{}'), desc('application/octet-stream', b'nvram')] + pieces) + b'\0' + legacy_cfg)

# --- tart: LZ4 disk layers of equal size
tart_pieces = [desc('application/vnd.cirruslabs.tart.disk.v2', f'tart{i}'.encode(), {
    'org.cirruslabs.tart.uncompressed-size': '524288', 'org.cirruslabs.tart.uncompressed-content-digest': dg(f't{i}'.encode())}) for i in range(2)]
write('formats', 'tart', manifest(desc('application/vnd.oci.image.config.v1+json', b'{"os":"darwin"}'),
    [desc('application/vnd.cirruslabs.tart.config.v1', b'{"version":1}')] + tart_pieces + [desc('application/vnd.cirruslabs.tart.nvram.v1', b'nv')],
    {'org.cirruslabs.tart.uncompressed-disk-size': '1048576', 'org.cirruslabs.tart.upload-time': '2026-01-01T00:00:00Z'}) + b'\0{"os":"darwin"}')

# --- KubeVirt containerDisk: the disk under /disk/ in a tar+gzip layer (the third part; it holds NULs)
import io, tarfile
def tar_bytes(fmt, members):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode='w', format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 107
            info.mode = 0o555 if data is None else 0o440
            info.type = tarfile.DIRTYPE if data is None else tarfile.REGTYPE
            info.size = 0 if data is None else len(data)
            t.addfile(info, None if data is None else io.BytesIO(data))
    return out.getvalue()
cdisk = gzip.compress(tar_bytes(tarfile.GNU_FORMAT, [('disk', None), ('disk/disk.img', text[:3000])]), mtime=0)
write('formats', 'containerdisk', manifest(desc('application/vnd.oci.image.config.v1+json', b'{"architecture":"amd64","os":"linux"}'),
    [desc('application/vnd.oci.image.layer.v1.tar+gzip', cdisk)]) + b'\0{"architecture":"amd64","os":"linux"}\0' + cdisk)

# --- tar (first byte: piece size - 1): GNU and PAX archives as containerDisks hold them
write('tar', 'seed-0', bytes([100]) + tar_bytes(tarfile.GNU_FORMAT, [('disk', None), ('disk/disk.img', text[:3000])]))
write('tar', 'seed-1', bytes([6]) + tar_bytes(tarfile.PAX_FORMAT, [('disk/' + 'n' * 120 + '.qcow2', b'QFI\xfb' + text[:700])]))
write('tar', 'seed-2', bytes([255]) + tar_bytes(tarfile.USTAR_FORMAT, [('./disk/disk.img', b'')]))

# --- foreign artifacts (classification and its message)
write('formats', 'container', manifest(desc('application/vnd.oci.image.config.v1+json', b'{"architecture":"amd64","os":"linux"}'),
    [desc('application/vnd.oci.image.layer.v1.tar+gzip', b'layer')]))
write('formats', 'helm', manifest(desc('application/vnd.cncf.helm.config.v1+json', b'{}'), [desc('application/vnd.cncf.helm.chart.content.v1.tar+gzip', b'c')]))

# --- span indexes (docs/FORMAT.md, "Span indexes"): a gzip layer with a member-start span and a
# mid-stream span with a window, an Apple LZ4 layer, an empty layer.
import zlib
def span_record(u, c, bits, member, window, digest):
    cw = b''
    if window:
        co = zlib.compressobj(6, zlib.DEFLATED, -15)
        cw = co.compress(window) + co.flush()
    return struct.pack('<QQBBHIII', u, c, bits, 1 if member else 0, 0, len(window), len(cw), 0) + digest + cw
def span_layer(blob, csize, usize, codec, span_size, spans, origin=0, length=None):
    length = usize - origin if length is None else length
    frames = (length + span_size - 1) // span_size
    return (struct.pack('<32sQQB3sIIIQQ', sha(blob), csize, usize, codec, b'\0' * 3, span_size, len(spans), 0, origin, length)
            + b''.join(spans) + b''.join(sha(b'frame %d' % i) for i in range(frames)))
def span_index(layers):
    return b'IMGFSSPN' + struct.pack('<III12s', 1, 0, len(layers), b'\0' * 12) + b''.join(layers)
write('span-index', 'seed-gzip', span_index([span_layer(b'L0', 5000, 200000, 1, 65536, [
    span_record(0, 0, 0, True, b'', sha(b'a')),
    span_record(70000, 900, 3, False, bytes(range(256)) * 16, sha(b'b'))])]))
write('span-index', 'seed-lz4', span_index([span_layer(b'L1', 3000, 131072, 2, 65536, [
    span_record(0, 0, 0, False, b'', sha(b'c')),
    span_record(65536, 1500, 0, False, b'x' * 65536, sha(b'd'))])]))
write('span-index', 'seed-empty-layer', span_index([span_layer(b'L2', 20, 0, 1, 1 << 20, [])]))

# --- the JSON dictionary (Fuzz/dictionaries/json.dict; manifest.dict and formats.dict link to it):
# every string literal the readers compare against (media types, annotation keys) and the JSON keys.
import glob, re
tokens = set()
for f in glob.glob('Sources/OCI/*.swift') + glob.glob('Sources/ImgfsFormat/*.swift') + glob.glob('Sources/ImageLayouts/*.swift'):
    for m in re.finditer(r'"((?:application|org|dev|com)\.?[^"\\ ]*|[a-z]+[-.][a-z.-]+)"', open(f).read()):
        tokens.add(m.group(1))
keys = ['schemaVersion', 'mediaType', 'artifactType', 'config', 'layers', 'annotations', 'digest', 'size', 'manifests', 'platform',
        'architecture', 'os', 'variant', 'imgfsFormat', 'disk', 'frameSize', 'chunkSize', 'layout', 'files', 'multi-layer', 'single-layer']
out = ['# Strings the manifest and format readers look for (generated; see Fuzz/make-seeds.py).']
out += ['"\\"%s\\""' % t for t in sorted(tokens | set(keys))]
out += ['"sha256:"', '"sha256:%s"' % ('0' * 64), '":"', '","', '"{"', '"}"', '"["', '"]"', '"null"', '"true"', '"-1"',
        '"18446744073709551615"', '"9223372036854775807"', '"17592186044416"', '"65536"', '"\\x00"']
with open('Fuzz/dictionaries/json.dict', 'w') as f:
    f.write('\n'.join(out) + '\n')
