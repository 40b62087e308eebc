// imgfs-bench: limits that contrib/bench scripts compare imgfs against, measured with the
// same libraries imgfs uses (not shipped; a benchmark harness, so it prints and exits).
//
//   imgfs-bench decompress INDEX BLOB-DIR [THREADS]
//
// Decompresses every stored frame of an imgfs image from local chunk-layer files with
// libdeflate on THREADS threads (default: all cores) and checks each frame's SHA-256 against
// the index, exactly the CPU work a cold mount does per frame. BLOB-DIR is a registry's storage
// root (docker/registry/v2/blobs/sha256/xx/HEX/data) or a directory of files named by hex
// digest. The blobs are read into memory before the clock starts, so the figure is CPU only.
import Codec
// String(format:) for the figures; this tool is not shipped, so full Foundation costs nothing.
import Foundation
import Glibc
import ImgfsFormat
import Synchronization
import Threading
import Verity

func fail(_ message: String) -> Never {
    let line = Array("imgfs-bench: \(message)\n".utf8)
    _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    exit(1)
}

func readFile(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { return nil }
    let size = Int(info.st_size)
    var ok = true
    let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
        guard let base = buffer.baseAddress else { ok = size == 0; initialized = 0; return }
        var done = 0
        while done < size {
            let n = pread(fd, base + done, size - done, off_t(done))
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { ok = false; break }
            done += n
        }
        initialized = ok ? size : 0
    }
    return ok ? bytes : nil
}

/// Read-only after setup; shared by the worker threads.
final class Blobs: Sendable {
    let layers: [[UInt8]]
    init(_ layers: [[UInt8]]) { self.layers = layers }
}

let arguments = CommandLine.arguments
guard arguments.count >= 4, arguments[1] == "decompress" else {
    fail("usage: imgfs-bench decompress INDEX BLOB-DIR [THREADS]")
}
guard let indexBytes = readFile(arguments[2]) else { fail("cannot read \(arguments[2])") }
let index: FrameIndex
do { index = try FrameIndex(decoding: indexBytes) } catch { fail("\(arguments[2]): \(error)") }
let threads = arguments.count > 4 ? Int(arguments[4]) ?? 0 : Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
guard threads > 0 else { fail("THREADS must be a positive number") }

var layerBytes: [[UInt8]] = []
for layer in index.layers {
    let hex = layer.digest.hex
    let candidates = ["\(arguments[3])/docker/registry/v2/blobs/sha256/\(hex.prefix(2))/\(hex)/data", "\(arguments[3])/\(hex)"]
    guard let bytes = candidates.lazy.compactMap(readFile).first else { fail("no local copy of layer \(layer.digest) under \(arguments[3])") }
    layerBytes.append(bytes)
}
let blobs = Blobs(layerBytes)
let stored = index.frames.indices.filter { !index.frames[$0].isHole }
let next = Atomic<Int>(0)
let failures = Atomic<Int>(0)
let bytesOut = Atomic<Int>(0)

let start = monotonicNow()
WorkerThread.run(count: threads, name: "decompress") { _ in
    guard let decompressor = try? GzipFrameDecompressor() else { failures.add(1, ordering: .relaxed); return }
    let hasher = SHA256Hasher()
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: index.geometry.frameSize, alignment: 64)
    defer { output.deallocate() }
    var produced = 0
    while true {
        let position = next.add(1, ordering: .relaxed).oldValue
        guard position < stored.count else { break }
        let frame = stored[position]
        let entry = index.frames[frame]
        guard let location = entry.location else { failures.add(1, ordering: .relaxed); continue }
        let length = index.geometry.length(ofFrame: frame)
        let target = UnsafeMutableRawBufferPointer(rebasing: output[0..<length])
        let ok: Bool = blobs.layers[location.layer].withUnsafeBytes { raw in
            let start = Int(location.compressedOffset)
            let member = UnsafeRawBufferPointer(rebasing: raw[start..<start + Int(location.compressedLength)])
            do { try decompressor.decompress(member, into: target) } catch { return false }
            hasher.reset()
            hasher.update(UnsafeRawBufferPointer(target))
            return hasher.finalize() == entry.digest
        }
        if !ok { failures.add(1, ordering: .relaxed) }
        produced += length
    }
    bytesOut.add(produced, ordering: .relaxed)
}
let seconds = monotonicNow() - start
if failures.load(ordering: .relaxed) > 0 { fail("\(failures.load(ordering: .relaxed)) frames did not decompress or verify") }
let megabytes = Double(bytesOut.load(ordering: .relaxed)) / 1e6
print(String(format: "frames %d  bytes %.0f MB  threads %d  seconds %.3f  MB/s %.1f", stored.count, megabytes, threads, seconds, megabytes / seconds))
