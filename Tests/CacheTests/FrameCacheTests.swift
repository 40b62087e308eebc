import Cache
import Foundation
import Glibc
import ImgfsFormat
import Testing
import Verity

@Suite struct FrameCacheTests {
    @Test func storeAndReadRoundTrip() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 10, shortLast: 5000)
        let cache = try disk.open(dir.path)
        defer { cache.close() }

        for i in [0, 3, 9] { try cache.store(disk.verified(i)) }
        #expect(try cache.readFrame(0) == disk.frames[0])
        #expect(try cache.readFrame(3) == disk.frames[3])
        #expect(try cache.readFrame(9) == disk.frames[9])
        #expect(try cache.readFrame(9)?.count == 5000)

        // Partial reads within a frame, clipped at the frame's end.
        var buffer = [UInt8](repeating: 0, count: 100)
        let n = try buffer.withUnsafeMutableBytes { try cache.read(frame: 3, offset: 1000, into: $0) }
        #expect(n == 100)
        #expect(buffer == Array(disk.frames[3][1000..<1100]))
        let tail = try buffer.withUnsafeMutableBytes { try cache.read(frame: 9, offset: 4950, into: $0) }
        #expect(tail == 50)
        #expect(Array(buffer[0..<50]) == Array(disk.frames[9][4950..<5000]))

        // Frames never stored are not there, and reading one is refused.
        #expect(!cache.contains(1))
        #expect(!cache.contains(-1))
        #expect(!cache.contains(10))
        #expect(try cache.readFrame(1) == nil)
        #expect(throws: CacheError.frameNotPresent(frame: 1, path: cache.dataFilePath)) {
            try buffer.withUnsafeMutableBytes { try cache.read(frame: 1, offset: 0, into: $0) }
        }
        #expect(throws: CacheError.frameOutOfRange(frame: 10, frameCount: 10)) { try cache.readFrame(10) }

        let stats = cache.stats()
        #expect(stats.presentFrames == 3)
        #expect(stats.totalFrames == 10)
        #expect(stats.presentBytes == UInt64(2 * 65536 + 5000))
        #expect(stats.diskSize == disk.geometry.diskSize)
        #expect(!cache.allPresent)

        // The data file is sparse with the disk's logical size.
        var st = stat()
        #expect(stat(cache.dataFilePath, &st) == 0)
        #expect(UInt64(st.st_size) == disk.geometry.diskSize)
    }

    @Test func storingAVerifiedFrameOfAnotherGeometryIsRefused() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 4, shortLast: 4096)
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        let wrong = try VerifiedFrame.verify(frame: 3, bytes: disk.frames[0], expectedLength: 65536, expectedDigest: disk.digests[0])
        #expect(throws: CacheError.frameLengthMismatch(frame: 3, expected: 4096, actual: 65536)) { try cache.store(wrong) }
        #expect(!cache.contains(3))
    }

    @Test func reopenKeepsBits() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 20)
        do {
            let cache = try disk.open(dir.path)
            try cache.store(contentsOf: [2, 7, 8, 19].map(disk.verified))
            cache.close()
        }
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        #expect(cache.presentCount == 4)
        for i in 0..<20 {
            #expect(cache.contains(i) == [2, 7, 8, 19].contains(i))
        }
        #expect(try cache.readFrame(7) == disk.frames[7])
        let meta = try String(contentsOfFile: entryDirectory(dir.path, disk.key) + "/meta.json", encoding: .utf8)
        #expect(meta.contains("localhost:5000\\/test\\/disk:1") || meta.contains("localhost:5000/test/disk:1"))
    }

    @Test func stagedFramesServeAtOnceAndReachTheBitmapOnlyWhenCommitted() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8)
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        try cache.stage(disk.verified(5))
        #expect(cache.contains(5))
        #expect(cache.hasStaged)
        #expect(try cache.readFrame(5) == disk.frames[5])

        // A second opener reads the bitmap file: the staged frame is not durable yet.
        let before = try disk.open(dir.path)
        #expect(!before.contains(5))
        before.close()

        try cache.commitStaged()
        #expect(!cache.hasStaged)
        let after = try disk.open(dir.path)
        #expect(after.contains(5))
        #expect(try after.readFrame(5) == disk.frames[5])
        after.close()
    }

    @Test func closeCommitsWhatIsStaged() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8)
        do {
            let cache = try disk.open(dir.path)
            for i in [1, 6] { try cache.stage(disk.verified(i)) }
            cache.close()
        }
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        #expect(cache.presentCount == 2)
        #expect(try cache.readFrame(6) == disk.frames[6])
    }

    @Test func corruptedBitmapHeaderResetsTheEntry() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8)
        do {
            let cache = try disk.open(dir.path)
            try cache.store(contentsOf: (0..<8).map(disk.verified))
            #expect(cache.allPresent)
            cache.close()
        }
        // One flipped bit in the frame-size field: the header checksum no longer matches.
        let bitmap = entryDirectory(dir.path, disk.key) + "/bitmap"
        patch(bitmap, at: 17, with: [0x01])
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        #expect(cache.presentCount == 0)
        #expect(try cache.readFrame(0) == nil)
        // The reset dropped the old bytes too.
        #expect(allocatedBytes(cache.dataFilePath) < 65536)
    }

    @Test func corruptedMagicResetsTheEntry() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 3)
        do {
            let cache = try disk.open(dir.path)
            try cache.store(disk.verified(1))
            cache.close()
        }
        patch(entryDirectory(dir.path, disk.key) + "/bitmap", at: 0, with: Array("XXXXXXXX".utf8))
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        #expect(cache.presentCount == 0)
    }

    @Test func geometryMismatchResetsTheEntry() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 6)
        do {
            let cache = try disk.open(dir.path)
            try cache.store(contentsOf: [0, 1].map(disk.verified))
            cache.close()
        }
        // Same key, different geometry (a bug or a forged key): never trust the old bits.
        let other = TestDisk(frameCount: 6, shortLast: 1000)
        let cache = try FrameCache.open(root: dir.path, key: disk.key, geometry: other.geometry, frameDigests: other.digests,
                                        imageReference: "x", logger: quietLogger)
        #expect(cache.presentCount == 0)
        cache.close()
        // And different digests with the same geometry also reset.
        let cache2 = try FrameCache.open(root: dir.path, key: disk.key, geometry: disk.geometry,
                                         frameDigests: TestDisk(frameCount: 6, seed: 9).digests, imageReference: "x", logger: quietLogger)
        #expect(cache2.presentCount == 0)
        cache2.close()
    }

    @Test func digestCountMustMatchGeometry() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 4)
        #expect(throws: CacheError.digestCountMismatch(expected: 4, actual: 3)) {
            try FrameCache.open(root: dir.path, key: disk.key, geometry: disk.geometry, frameDigests: Array(disk.digests.prefix(3)),
                                imageReference: "x", logger: quietLogger)
        }
    }

    @Test func holesStayHoles() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let holes = [1, 2, 5]
        let disk = TestDisk(frameCount: 6, holes: holes)
        let cache = try disk.open(dir.path, holes: holes)
        #expect(cache.presentCount == 3)
        #expect(cache.contains(1) && cache.contains(2) && cache.contains(5))
        #expect(try cache.readFrame(2) == disk.frames[2])

        try cache.store(contentsOf: [0, 3, 4].map(disk.verified))
        #expect(cache.allPresent)
        cache.close()

        // The all-present flag is in the header on disk.
        let bitmap = try [UInt8](Data(contentsOf: URL(fileURLWithPath: entryDirectory(dir.path, disk.key) + "/bitmap")))
        #expect(bitmap[12] & 1 == 1)

        let path = entryDirectory(dir.path, disk.key) + "/data"
        let fd = Glibc.open(path, O_RDONLY)
        defer { Glibc.close(fd) }
        #expect(lseek(fd, 0, seekHole) == 65536)
        #expect(lseek(fd, 65536, seekData) == 3 * 65536)
        #expect(lseek(fd, 3 * 65536, seekHole) == 5 * 65536)
        #expect(allocatedBytes(path) <= 3 * 65536 + 8192)

        let reopened = try disk.open(dir.path)
        defer { reopened.close() }
        #expect(reopened.allPresent)
        for i in 0..<6 { #expect(try reopened.readFrame(i) == disk.frames[i]) }
    }

    @Test func usingAClosedCacheThrows() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 2)
        let cache = try disk.open(dir.path)
        cache.close()
        cache.close()
        #expect(throws: CacheError.self) { try cache.store(disk.verified(0)) }
    }

    @Test func concurrentStoreAndReadFromEightThreads() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 96, shortLast: 12345)
        let cache = try disk.open(dir.path)
        let failures = Failures()
        DispatchQueue.concurrentPerform(iterations: 8) { thread in
            var rng = SystemRandomNumberGenerator()
            for i in (0..<96).shuffled(using: &rng) {
                do {
                    if !cache.contains(i) {
                        if i % 3 == thread % 3 {
                            try cache.store(contentsOf: [i, (i + 1) % 96].map(disk.verified))
                        } else {
                            try cache.store(disk.verified(i))
                        }
                    }
                    guard try cache.readFrame(i) == disk.frames[i] else { failures.add("frame \(i) read back wrong"); continue }
                    var buffer = [UInt8](repeating: 0, count: 4096)
                    let n = try buffer.withUnsafeMutableBytes { try cache.read(frame: i, offset: 8192, into: $0) }
                    if Array(buffer[0..<n]) != Array(disk.frames[i][8192..<8192 + n]) { failures.add("partial read of \(i) wrong") }
                } catch {
                    failures.add("thread \(thread), frame \(i): \(error)")
                }
            }
        }
        #expect(failures.all.isEmpty, "\(failures.all)")
        #expect(cache.allPresent)
        #expect(cache.presentCount == 96)
        cache.close()
        #expect(try checkEverySetBitVerifies(disk, root: dir.path) == 96)
    }
}

final class Failures: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []
    func add(_ message: String) { lock.withLock { messages.append(message) } }
    var all: [String] { lock.withLock { messages } }
}
