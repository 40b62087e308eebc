import Cache
import Foundation
import Glibc
import Testing

@Suite struct EvictionTests {
    @Test func punchesUnmountedEntriesUnderTheLimitAndNeverTouchesAnOpenOne() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let old = TestDisk(frameCount: 32, seed: 10)
        let mounted = TestDisk(frameCount: 16, seed: 11)

        let oldCache = try old.open(dir.path)
        try oldCache.store(contentsOf: (0..<32).map(old.verified))
        #expect(oldCache.allPresent)
        oldCache.close()
        let mountedCache = try mounted.open(dir.path)
        defer { mountedCache.close() }
        try mountedCache.store(contentsOf: (0..<16).map(mounted.verified))

        let oldData = entryDirectory(dir.path, old.key) + "/data"
        let mountedData = mountedCache.dataFilePath
        let mountedBefore = allocatedBytes(mountedData)
        let oldBefore = allocatedBytes(oldData)
        #expect(oldBefore >= 32 * 65536)

        // Room for the mounted disk, its small files, and about 10 frames of the old one.
        let limit = mountedBefore + 10 * 65536 + 64 * 1024
        let report = try CacheEviction.evict(root: dir.path, limit: limit, logger: quietLogger)
        #expect(report.bytesAfter <= limit)
        #expect(report.bytesBefore > limit)
        #expect(report.framesEvicted > 0 && report.framesEvicted < 32)
        #expect(report.entriesEvicted == [old.key.digest.hex])
        #expect(allocatedBytes(oldData) < oldBefore)
        #expect(allocatedBytes(mountedData) == mountedBefore)

        // The open entry is intact.
        #expect(mountedCache.presentCount == 16)
        for i in 0..<16 { #expect(try mountedCache.readFrame(i) == mounted.frames[i]) }

        // The evicted entry lost exactly its punched frames, and what is left still verifies.
        let present = try checkEverySetBitVerifies(old, root: dir.path)
        #expect(present == 32 - report.framesEvicted)
        let reopened = try old.open(dir.path)
        #expect(!reopened.allPresent)
        reopened.close()

        // A limit that cannot be met: everything unmounted goes, the mounted entry stays.
        let all = try CacheEviction.evict(root: dir.path, limit: 0, logger: quietLogger)
        #expect(all.entriesInUse == [mounted.key.digest.hex])
        #expect(try checkEverySetBitVerifies(old, root: dir.path) == 0)
        #expect(allocatedBytes(oldData) == 0)
        #expect(mountedCache.presentCount == 16)
        #expect(allocatedBytes(mountedData) == mountedBefore)
    }

    @Test func nothingHappensUnderTheLimit() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let disk = TestDisk(frameCount: 4)
        let cache = try disk.open(dir.path)
        try cache.store(disk.verified(0))
        cache.close()
        let report = try CacheEviction.evict(root: dir.path, limit: 1 << 30, logger: quietLogger)
        #expect(report.framesEvicted == 0)
        #expect(report.bytesAfter == report.bytesBefore)
        #expect(try checkEverySetBitVerifies(disk, root: dir.path) == 1)
    }

    @Test func leastRecentlyUsedEntryGoesFirst() throws {
        let dir = TemporaryDirectory()
        defer { dir.remove() }
        let older = TestDisk(frameCount: 8, seed: 20)
        let newer = TestDisk(frameCount: 8, seed: 21)
        for disk in [older, newer] {
            let cache = try disk.open(dir.path)
            try cache.store(contentsOf: (0..<8).map(disk.verified))
            cache.close()
            usleep(20_000)
        }
        let newerData = entryDirectory(dir.path, newer.key) + "/data"
        let newerBefore = allocatedBytes(newerData)
        let total = allocatedBytes(entryDirectory(dir.path, older.key) + "/data") + newerBefore
        _ = try CacheEviction.evict(root: dir.path, limit: total - 3 * 65536, logger: quietLogger)
        #expect(allocatedBytes(newerData) == newerBefore)
        #expect(try checkEverySetBitVerifies(older, root: dir.path) < 8)
    }
}
