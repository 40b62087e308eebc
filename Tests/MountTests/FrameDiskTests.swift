import Cache
import Foundation
import ImgfsFormat
@testable import Mount
import OCI
import PieceFetch
import Synchronization
import Testing
import Threading
import Verity

@Suite struct FrameDiskTests {
    let frameSize = TestImage.frameSize

    @Test func readsMatchTheDiskAndAdjacentMissingFramesGoOutAsOneRangeRequest() throws {
        let image = try TestImage.make(frames: 16)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }

        // Frames 2 and 3, from the middle of 2 to the middle of 3.
        let offset = UInt64(2 * frameSize + 100)
        let bytes = try session.disk.bytes(at: offset, count: frameSize)
        #expect(bytes == Array(image.disk[Int(offset)..<Int(offset) + frameSize]))
        let calls = registry.rangeCalls
        #expect(calls.count == 1)
        let first = try #require(image.index.frames[2].location)
        let second = try #require(image.index.frames[3].location)
        #expect(calls.first?.range == first.compressedRange.lowerBound..<second.compressedRange.upperBound)
        #expect(session.disk.statistics.snapshot().framesFetched == 2)

        // Served again from the cache: no new request.
        _ = try session.disk.bytes(at: offset, count: frameSize)
        #expect(registry.rangeCalls.count == 1)
    }

    /// A reader's range request must end when the reader has to be answered, so the read's
    /// deadline goes down to it; background work has a bound of its own, much longer.
    @Test func aDemandReadGivesItsDeadlineToItsRangeRequestAndPrefetchAGenerousOne() throws {
        let image = try TestImage.make(frames: 16)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        var options = DiskOptions()
        options.readaheadThreads = 0
        options.readTimeout = 7
        options.backgroundTransferTimeout = 500
        let session = try openSession(registry, root: directory.path, options: options)
        defer { session.stop() }

        let before = monotonicNow()
        _ = try session.disk.bytes(at: UInt64(2 * frameSize), count: 4096)
        let after = monotonicNow()
        let demand = try #require(registry.rangeDeadlines.first)
        #expect(demand >= before + 7 && demand <= after + 7, "deadline \(demand - before) s after the read began")

        let start = monotonicNow()
        try session.disk.prefetch([9], purpose: .prefetch)
        let background = try #require(registry.rangeDeadlines.last)
        #expect(registry.rangeDeadlines.count == 2)
        #expect(background >= start + 500 && background <= monotonicNow() + 500)
    }

    @Test func failuresKeepTheErrnoOfTheirLocalCause() {
        let blob = SHA256Hasher.digest([1])
        #expect(MountError.io(operation: "pwrite", path: "/x", errno: ENOSPC).causeErrno == ENOSPC)
        #expect(MountError.cache(.system(operation: "pwrite", path: "/x", errno: EDQUOT)).causeErrno == EDQUOT)
        #expect(MountError.foreign(.cacheIO(layer: "disk", operation: "write", path: "/x", errno: ENOSPC)).causeErrno == ENOSPC)
        #expect(MountError.readOnly.causeErrno == EROFS)
        #expect(MountError.timedOut(frame: 1, seconds: 30).causeErrno == nil)
        #expect(MountError.fetch(blob: blob, frame: 1, range: 0..<10, SourceError(.unreachable, "refused")).causeErrno == nil)
        #expect(MountError.verification(blob: blob, frame: 1, expected: blob, actual: nil, attempts: 3).causeErrno == nil)
    }

    @Test func rangeRequestsAreCappedAndSplitAtLayerBoundaries() throws {
        let image = try TestImage.make(frames: 16, chunkFrames: 8)
        let all = Array(0..<16)
        let groups = RangeRequest.plan(all, index: image.index, maxBytes: 1 << 40)
        #expect(groups.count == 2, "two chunk layers, one request each")
        let one = try #require(image.index.frames[0].location).compressedLength
        let capped = RangeRequest.plan(Array(0..<8), index: image.index, maxBytes: Int64(one) * 2 + 10)
        #expect(capped.count >= 3)
        #expect(capped.flatMap(\.frames).sorted() == Array(0..<8))
    }

    @Test func eightReadersOfOneFrameWaitForOneFetch() throws {
        let image = try TestImage.make(frames: 8)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        registry.rangeDelay = 0.3
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }
        let disk = session.disk
        let expected = Array(image.frame(5))
        let correct = Atomic<Int>(0)
        WorkerThread.run(count: 8, name: "reader") { i in
            let offset = UInt64(5 * TestImage.frameSize + i * 1000)
            if let bytes = try? disk.bytes(at: offset, count: 4096), bytes == Array(expected[i * 1000..<i * 1000 + 4096]) {
                correct.add(1, ordering: .relaxed)
            }
        }
        #expect(correct.load(ordering: .relaxed) == 8)
        #expect(registry.rangeCalls.count == 1)
        #expect(disk.statistics.snapshot().framesFetched == 1)
    }

    @Test func aFrameThatFailsVerificationIsRetriedThenFailsWhileOtherFramesWork() throws {
        let image = try TestImage.make(frames: 16, chunkFrames: 8)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let badLayer = image.index.layers[0].digest
        registry.corrupt(badLayer)
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }

        #expect(throws: MountError.self) { try session.disk.bytes(at: UInt64(frameSize), count: 4096) }
        let calls = registry.rangeCalls.filter { $0.digest == badLayer }
        #expect(calls.count == 3, "three attempts, then the read fails")
        #expect(session.disk.statistics.snapshot().verificationFailures == 3)
        #expect(!session.disk.cache.contains(1), "a frame that failed verification is never cached")

        // Frames of the other layer are unaffected.
        let good = try session.disk.bytes(at: UInt64(9 * frameSize), count: frameSize)
        #expect(good == Array(image.frame(9)))

        // A read spanning a good and a bad frame fails as a whole (no partial wrong data).
        #expect(throws: MountError.self) { try session.disk.bytes(at: UInt64(7 * frameSize), count: 2 * frameSize) }
    }

    @Test func wrongBytesFromAMirrorAreRefetchedFromUpstream() throws {
        let image = try TestImage.make(frames: 8, chunkFrames: 8)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let layer = image.index.layers[0].digest
        registry.corruptInMirror(layer)
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }

        // The mirror's bytes fail verification once; the second attempt asks upstream only and
        // the read succeeds with the right bytes.
        #expect(try session.disk.bytes(at: UInt64(2 * frameSize), count: frameSize) == Array(image.frame(2)))
        #expect(registry.rangeCalls.filter { $0.digest == layer }.count == 2)
        #expect(registry.upstreamOnlyCalls == 1)
        #expect(session.disk.statistics.snapshot().verificationFailures == 1)
        #expect(session.disk.cache.contains(2))
    }

    @Test func holesAreServedAsZerosWithoutFetching() throws {
        let image = try TestImage.make(frames: 8, holes: [2, 3])
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }

        let zeros = try session.disk.bytes(at: UInt64(2 * frameSize), count: 2 * frameSize)
        #expect(zeros == [UInt8](repeating: 0, count: 2 * frameSize))
        #expect(registry.rangeCalls.isEmpty)

        // Frames 1 and 4 are contiguous in the layer (holes are not stored): one request.
        let span = try session.disk.bytes(at: UInt64(frameSize), count: 4 * frameSize)
        #expect(span == Array(image.disk[frameSize..<5 * frameSize]))
        #expect(registry.rangeCalls.count == 1)
    }

    @Test func aReopenedCacheServesEverythingWithoutTheNetwork() throws {
        let image = try TestImage.make(frames: 12, holes: [4])
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        do {
            let session = try openSession(registry, root: directory.path)
            defer { session.stop() }
            #expect(try session.disk.bytes(at: 0, count: image.disk.count) == image.disk)
            #expect(session.cacheComplete)
        }
        registry.resetCounts()
        registry.setOffline(true)
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }
        #expect(session.resolved.offline)
        #expect(try session.disk.bytes(at: 0, count: image.disk.count) == image.disk)
        #expect(registry.rangeCalls.isEmpty)
        #expect(session.disk.statistics.snapshot().hitRatio == 1)
    }

    @Test func framesCachedForAnotherImageAreReusedInsteadOfFetched() throws {
        let first = try TestImage.make(frames: 16, holes: [10])
        let second = try TestImage.make(frames: 16, holes: [10], differing: [6])
        #expect(first.indexDigest != second.indexDigest)
        let registry = FakeRegistry()
        registry.add(first, tag: "v1")
        registry.add(second, tag: "v2")
        let directory = TemporaryDirectory()
        do {
            let session = try openSession(registry, root: directory.path, tag: "v1")
            defer { session.stop() }
            _ = try session.disk.bytes(at: 0, count: first.disk.count)
        }
        registry.resetCounts()
        let session = try openSession(registry, root: directory.path, tag: "v2")
        defer { session.stop() }
        #expect(try session.disk.bytes(at: 0, count: second.disk.count) == second.disk)
        let calls = registry.rangeCalls
        #expect(calls.count == 1, "only the frame that differs is fetched")
        #expect(calls.first?.range == second.index.frames[6].location?.compressedRange)
        #expect(session.disk.statistics.snapshot().sharedFrames == 14)
    }

    @Test func pinnedDigestsMountOfflineWithoutARefRecordAndUncachedTagsFailClearly() throws {
        let image = try TestImage.make(frames: 4)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let store = MetadataStore(root: directory.path, logger: testLogger)
        let resolver = ImageResolver(source: registry, store: store, logger: testLogger)
        let pinned = Reference(registry: "fake:5000", repository: "vm/test", tag: nil, digest: SHA256Hasher.digest(image.manifestBytes))
        _ = try resolver.resolve(pinned)

        registry.setOffline(true)
        registry.resetCounts()
        let again = try resolver.resolve(pinned)
        #expect(again.indexDigest == image.indexDigest)
        #expect(registry.manifestCalls == 0, "a stored pinned manifest needs no registry")

        #expect {
            try resolver.resolve(Reference(registry: "fake:5000", repository: "vm/test", tag: "v1", digest: nil))
        } throws: { error in
            guard case .offline = error as? MountError else { return false }
            return true
        }
    }

    @Test func aDamagedStoredBlobIsDetectedAndFetchedAgain() throws {
        let image = try TestImage.make(frames: 4)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let store = MetadataStore(root: directory.path, logger: testLogger)
        let resolver = ImageResolver(source: registry, store: store, logger: testLogger)
        let locator = Reference(registry: "fake:5000", repository: "vm/test", tag: "v1", digest: nil)
        _ = try resolver.resolve(locator)
        let path = directory.path + "/blobs/sha256/" + image.indexDigest.hex
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path))
        registry.resetCounts()
        let again = try resolver.resolve(locator)
        #expect(again.index == image.index)
        #expect(registry.blobCalls == [image.indexDigest])
    }

    @Test func sequentialReadsTriggerReadahead() throws {
        let image = try TestImage.make(frames: 64, chunkFrames: 64)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        var options = DiskOptions()
        options.readaheadThreads = 1
        // The test's 64 KiB frames stand for 1 MiB ones: a readahead unit each.
        options.readaheadUnitBytes = frameSize
        let session = try openSession(registry, root: directory.path, options: options)
        defer { session.stop() }
        session.start()
        // Readahead opens once two frames read in a row are `StreamDetector.settle` frames behind.
        for frame in 0..<6 {
            _ = try session.disk.bytes(at: UInt64(frame * frameSize), count: frameSize)
        }
        // Readahead runs in the background, and stores (with fdatasync) before it counts: wait for
        // it however slow the machine is (a loaded machine once took longer than the 1 s this
        // used to allow); the bound only keeps a broken readahead from hanging the suite.
        waitUntil { session.disk.statistics.snapshot().readaheadFrames > 0 }
        #expect(session.disk.statistics.snapshot().readaheadFrames > 0)
        // The reader goes on into what readahead fetched: hits, counted once readahead has them.
        for frame in 6..<12 {
            _ = try session.disk.bytes(at: UInt64(frame * frameSize), count: frameSize)
        }
        waitUntil { session.disk.statistics.snapshot().readaheadHits ?? 0 > 0 }
        #expect(session.disk.statistics.snapshot().readaheadHits ?? 0 > 0)
        #expect(session.disk.statistics.snapshot().link?.requests ?? 0 > 0)  // measured; too few bytes for a rate
    }

    @Test func prefetchFetchesTheWholeDiskWithinItsRate() throws {
        let image = try TestImage.make(frames: 32, holes: [3], chunkFrames: 16)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path, prefetch: true)
        defer { session.stop() }
        session.start()
        // The pass starts once a reader has read a few frames (`ReadActivity.startFrames`).
        for frame in [0, 10, 20, 30] { _ = try session.disk.bytes(at: UInt64(frame * TestImage.frameSize), count: 1) }
        // The prefetcher stores a batch (setting its bits) before it counts it: the cache can be
        // complete a moment before the counter says so. Wait for both.
        waitUntil {
            let snapshot = session.disk.statistics.snapshot()
            return session.cacheComplete && snapshot.prefetchedFrames + snapshot.readaheadFrames >= 31 - 4
        }
        #expect(session.cacheComplete)
        // Every data frame once: the reads' (at most four: the pass may claim the last one read
        // first, and the read then waits for it), readahead's, and the pass's.
        let snapshot = session.disk.statistics.snapshot()
        #expect(snapshot.framesFetched == 31)
        #expect(snapshot.prefetchedFrames + snapshot.readaheadFrames >= 31 - 4)
        #expect(snapshot.prefetchedFrames > 0)
        registry.resetCounts()
        #expect(try session.disk.bytes(at: 0, count: image.disk.count) == image.disk)
        #expect(registry.rangeCalls.isEmpty)
    }
}

/// Polls `condition` until it holds, for at most `limit` seconds: background work is waited for,
/// never timed (a slow machine makes it slow, not wrong).
func waitUntil(limit: Double = 120, _ condition: () -> Bool) {
    let deadline = Date().addingTimeInterval(limit)
    while !condition() && Date() < deadline { usleep(10_000) }
}
