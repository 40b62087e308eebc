import Cache
import Foundation
import Testing
import Verity

@Suite struct SharedFrameLocatorTests {
    @Test func findsAFrameStoredInAnotherEntryAndNothingElse() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let a = TestDisk(frameCount: 8, seed: 3)
        let cacheA = try a.open(dir.path)
        try cacheA.store(contentsOf: [2, 3].map(a.verified))
        // Frame 5's bytes are in A's data file but its bit is clear (as after a crash before the bit).
        patch(cacheA.dataFilePath, at: 5 * 65536, with: a.frames[5])
        cacheA.close()

        // B is another image with its own key; it shares A's frames 3 and 5.
        let b = TestDisk(frameCount: 4, seed: 77)
        let wanted: Set<Digest> = [a.digests[3], a.digests[5], b.digests[0]]
        let locator = SharedFrameLocator(root: dir.path, excluding: b.key, wanted: wanted, logger: quietLogger)
        #expect(locator.count == 1)
        #expect(locator.bytes(for: a.digests[3], length: 65536) == a.frames[3])
        #expect(locator.bytes(for: a.digests[5], length: 65536) == nil)
        #expect(locator.bytes(for: b.digests[0], length: 65536) == nil)
        // Frames of the excluded entry itself are not offered.
        let selfLocator = SharedFrameLocator(root: dir.path, excluding: a.key, wanted: wanted, logger: quietLogger)
        #expect(selfLocator.count == 0)
    }

    @Test func aFrameEvictedAfterTheScanIsNotReturned() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let a = TestDisk(frameCount: 4, seed: 5)
        let cacheA = try a.open(dir.path)
        try cacheA.store(a.verified(1))
        cacheA.close()
        let other = TestDisk(frameCount: 2, seed: 6)
        let locator = SharedFrameLocator(root: dir.path, excluding: other.key, wanted: [a.digests[1]], logger: quietLogger)
        #expect(locator.count == 1)
        _ = try CacheEviction.evict(root: dir.path, limit: 0, logger: quietLogger)
        #expect(locator.bytes(for: a.digests[1], length: 65536) == nil)
    }

    @Test func worksWithNoCacheYet() {
        let locator = SharedFrameLocator(root: "/nonexistent/imgfs", excluding: TestDisk(frameCount: 1).key,
                                         wanted: [TestDisk(frameCount: 1).digests[0]], logger: quietLogger)
        #expect(locator.count == 0)
    }
}
