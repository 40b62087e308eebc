import Cache
import Foundation
import Glibc
import ImgfsFormat
import Testing
import Verity

/// Issue 11: the bitmap file says which frames were stored, not that their bytes are still
/// intact, so every process checks each cached frame once before it serves it.
@Suite struct VerifiedReadTests {
    @Test func aFlippedByteInACachedFrameIsDroppedOnTheFirstReadAfterReopen() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 8)
        do {
            let cache = try disk.open(dir.path)
            try cache.store(contentsOf: (0..<8).map(disk.verified))
            // Frames this process wrote from a VerifiedFrame need no second look.
            #expect(cache.unverified(in: 0..<8).isEmpty)
            #expect(cache.presentDataDescriptor(frames: 0..<8) != nil)
            cache.close()
        }
        let dataPath = entryDirectory(dir.path, disk.key) + "/data"
        let offset = 5 * disk.geometry.frameSize + 1234
        patch(dataPath, at: offset, with: [disk.frames[5][1234] ^ 0x01])

        let cache = try disk.open(dir.path)
        #expect(cache.allPresent, "the bitmap still claims every frame")
        #expect(cache.unverified(in: 0..<8) == Array(0..<8))
        // Nothing is spliced from the file before its frames are checked.
        #expect(cache.presentDataDescriptor(frames: 4..<6) == nil)
        #expect(try cache.readFrame(4) == disk.frames[4])
        #expect(cache.isVerified(4))
        #expect(try cache.readFrame(5) == nil, "the corrupt frame is never returned")
        #expect(!cache.contains(5))
        var buffer = [UInt8](repeating: 0, count: 16)
        #expect(throws: CacheError.frameNotPresent(frame: 5, path: cache.dataFilePath)) {
            try buffer.withUnsafeMutableBytes { try cache.read(frame: 5, offset: 0, into: $0) }
        }
        #expect(!cache.allPresent)
        #expect(cache.presentDataDescriptor(frames: 4..<6) == nil)

        // Refetched (stored again from a VerifiedFrame), it is served without another check.
        try cache.store(disk.verified(5))
        #expect(cache.isVerified(5))
        #expect(try cache.readFrame(5) == disk.frames[5])
        cache.close()

        // The drop was durable: the bit was cleared on disk until the frame was stored again.
        let reopened = try disk.open(dir.path)
        defer { reopened.close() }
        #expect(try reopened.readFrame(5) == disk.frames[5])
    }

    @Test func aDropReachesTheBitmapFileSoTheNextOpenDoesNotClaimTheFrame() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 4)
        do {
            let cache = try disk.open(dir.path)
            try cache.store(contentsOf: (0..<4).map(disk.verified))
            cache.close()
        }
        patch(entryDirectory(dir.path, disk.key) + "/data", at: 2 * disk.geometry.frameSize, with: [0xff, 0xff, 0xff])
        do {
            let cache = try disk.open(dir.path)
            let dropped = try cache.verifyAll()
            #expect(dropped == [2])
            #expect(try cache.verify(2) == .absent)
            cache.close()
        }
        let cache = try disk.open(dir.path)
        defer { cache.close() }
        #expect(!cache.contains(2))
        #expect(cache.presentCount == 3)
        #expect(try cache.verifyAll().isEmpty)
    }

    @Test func bytesWrittenOverAPresentHoleAreNeverServed() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 4, holes: [1])
        do {
            let cache = try disk.open(dir.path, holes: [1])
            cache.close()
        }
        patch(entryDirectory(dir.path, disk.key) + "/data", at: disk.geometry.frameSize + 10, with: [1, 2, 3])
        let cache = try disk.open(dir.path, holes: [1])
        defer { cache.close() }
        // Opening punches present holes again, which is what checks them.
        #expect(cache.isVerified(1))
        let fd = try #require(cache.presentDataDescriptor(frames: 1..<2))
        var bytes = [UInt8](repeating: 0xaa, count: disk.geometry.frameSize)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(disk.geometry.frameSize)) }
        #expect(n == disk.geometry.frameSize)
        #expect(bytes.allSatisfy { $0 == 0 })
    }
}
