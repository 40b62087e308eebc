import Cache
import Foundation
import Glibc
import ImgfsFormat
import Logging
import Verity

let quietLogger = Logger(label: "imgfs.cache.tests", factory: { _ in SwiftLogNoOpLogHandler() })

/// A fresh directory under the system temp dir, removed by `remove()`.
struct TemporaryDirectory {
    let path: String

    init() {
        var template = Array((NSTemporaryDirectory() + "/imgfs-cache-XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: template.withUnsafeBufferPointer { $0.baseAddress! })
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A synthetic disk: deterministic pseudo-random frames, some of them holes (all zeros).
struct TestDisk {
    let geometry: DiskGeometry
    let frames: [[UInt8]]
    let digests: [Digest]
    let key: CacheKey
    let holes: [Int]

    init(frameCount: Int, frameSize: Int = DiskGeometry.minimumFrameSize, shortLast: Int? = nil, holes: [Int] = [], seed: UInt64 = 1) {
        let lastLength = shortLast ?? frameSize
        let diskSize = UInt64(frameCount - 1) * UInt64(frameSize) + UInt64(lastLength)
        geometry = try! DiskGeometry(diskSize: diskSize, frameSize: frameSize)
        var frames: [[UInt8]] = []
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        for i in 0..<frameCount {
            let length = geometry.length(ofFrame: i)
            if holes.contains(i) {
                frames.append([UInt8](repeating: 0, count: length))
                continue
            }
            var bytes = [UInt8](repeating: 0, count: length)
            bytes.withUnsafeMutableBytes { raw in
                let words = raw.bindMemory(to: UInt64.self)
                for w in words.indices {
                    state ^= state << 13; state ^= state >> 7; state ^= state << 17
                    words[w] = state
                }
            }
            frames.append(bytes)
        }
        self.frames = frames
        digests = frames.map { SHA256Hasher.digest($0) }
        var index: [UInt8] = []
        for d in digests { index += d.bytes }
        index += withUnsafeBytes(of: diskSize) { Array($0) }
        key = CacheKey(digest: SHA256Hasher.digest(index))
        self.holes = holes
    }

    func verified(_ i: Int) -> VerifiedFrame {
        try! VerifiedFrame.verify(frame: i, bytes: frames[i], expectedLength: frames[i].count, expectedDigest: digests[i])
    }

    func open(_ root: String, holes: [Int] = []) throws -> FrameCache {
        try FrameCache.open(root: root, key: key, geometry: geometry, frameDigests: digests,
                            imageReference: "localhost:5000/test/disk:1", holes: holes, logger: quietLogger)
    }
}

func entryDirectory(_ root: String, _ key: CacheKey) -> String { root + "/disks/" + key.digest.hex }

func allocatedBytes(_ path: String) -> UInt64 {
    var st = stat()
    guard stat(path, &st) == 0 else { return 0 }
    return UInt64(st.st_blocks) * 512
}

/// Overwrites bytes of a file in place.
func patch(_ path: String, at offset: Int, with bytes: [UInt8]) {
    let fd = Glibc.open(path, O_WRONLY)
    precondition(fd >= 0)
    _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(offset)) }
    close(fd)
}

/// Reopens the entry read-only-in-spirit and checks the crash-safety property: every frame whose
/// bit is set has bytes whose SHA-256 is the frame's digest. Returns how many bits were set.
func checkEverySetBitVerifies(_ disk: TestDisk, root: String) throws -> Int {
    let cache = try disk.open(root)
    defer { cache.close() }
    var present = 0
    for i in 0..<disk.geometry.frameCount where cache.contains(i) {
        present += 1
        let bytes = try cache.readFrame(i)
        guard let bytes, SHA256Hasher.digest(bytes) == disk.digests[i] else {
            throw TestFailure("frame \(i) has its bit set but its bytes do not match its digest")
        }
    }
    return present
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

// <unistd.h> values, hidden by Glibc without _GNU_SOURCE.
let seekData: Int32 = 3
let seekHole: Int32 = 4
