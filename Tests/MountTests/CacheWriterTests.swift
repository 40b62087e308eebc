import Cache
import ImgfsFormat
@testable import Mount
import Synchronization
import Testing
import Threading

/// The cache writer (`CacheWriter`): fetched frames are written off the fetching threads, and
/// until then they are served from memory.
@Suite struct CacheWriterTests {
    let frameSize = TestImage.frameSize

    func verified(_ image: TestImage, _ frame: Int) throws -> VerifiedFrame {
        try VerifiedFrame.verify(frame: frame, bytes: Array(image.frame(frame)), expectedLength: frameSize,
                                 expectedDigest: image.index.frames[frame].digest)
    }

    /// A reader that asks for a queued frame always finds it: its bytes pending, or the frame in
    /// the cache, never neither (which would send it to the registry again).
    @Test func aQueuedFrameIsPendingOrCachedNeverNeither() throws {
        let image = try TestImage.make(frames: 96)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }
        let cache = session.disk.cache
        let writer = CacheWriter(cache: cache, capacity: 4, logger: testLogger)
        writer.start()

        let queued = Atomic<Int>(0)
        let done = Atomic<Bool>(false)
        let problems = Mutex<[String]>([])
        let checker = WorkerThread(name: "checker") {
            while !done.load(ordering: .acquiring) {
                for frame in 0..<queued.load(ordering: .acquiring) {
                    if let pending = writer.pending(frame) {
                        if pending.bytes != Array(image.frame(frame)) { problems.withLock { $0.append("frame \(frame): wrong pending bytes") } }
                    } else if !cache.contains(frame) {
                        problems.withLock { $0.append("frame \(frame): neither pending nor cached") }
                    }
                }
            }
        }
        for frame in 0..<96 {
            writer.enqueue(try verified(image, frame))
            queued.store(frame + 1, ordering: .releasing)
        }
        writer.stop()
        done.store(true, ordering: .releasing)
        checker.join()

        #expect(problems.withLock { $0 }.isEmpty, "\(problems.withLock { Array($0.prefix(5)) })")
        #expect((0..<96).allSatisfy { cache.contains($0) }, "every queued frame is written by the time the writer stops")
        #expect((0..<96).allSatisfy { writer.pending($0) == nil })
        var bytes = [UInt8](repeating: 0, count: frameSize)
        let n = try bytes.withUnsafeMutableBytes { try cache.read(frame: 95, offset: 0, into: $0) }
        #expect(n == frameSize && bytes == Array(image.frame(95)))
    }

    /// Never started (a disk nobody called `start` on), or stopped: frames are written at once,
    /// on the caller's thread.
    @Test func withoutItsThreadAFrameIsWrittenBeforeEnqueueReturns() throws {
        let image = try TestImage.make(frames: 8)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }
        let writer = CacheWriter(cache: session.disk.cache, capacity: 2, logger: testLogger)
        writer.enqueue(try verified(image, 3))
        #expect(session.disk.cache.contains(3))
        writer.start()
        writer.stop()
        writer.enqueue(try verified(image, 5))
        #expect(session.disk.cache.contains(5))
        #expect(writer.pending(3) == nil && writer.pending(5) == nil)
    }

    /// Two mounts of one 8-frame image on one cache root: their claims conflict as two daemons' do.
    struct TwoMounts {
        let image: TestImage
        let directory = TemporaryDirectory()
        let mine: FrameSession
        let other: FrameSession

        init() throws {
            image = try TestImage.make(frames: 8)
            let registry = FakeRegistry()
            registry.add(image, tag: "v1")
            mine = try openSession(registry, root: directory.path)
            other = try openSession(registry, root: directory.path)
        }

        func stop() {
            mine.stop()
            other.stop()
        }
    }

    /// While its write is held, a frame is pending with its own bytes and its claim stays held
    /// (another mount of the image sees it claimed, so it waits rather than fetching); once
    /// written, it is cached and the claim is free.
    @Test func aFramesClaimIsHeldUntilItIsWritten() throws {
        let mounts = try TwoMounts()
        defer { mounts.stop() }
        let (image, other, cache) = (mounts.image, mounts.other, mounts.mine.disk.cache)
        let gate = Monitor(false)
        let writer = CacheWriter(cache: cache, capacity: 2, logger: testLogger) { frame in
            gate.wait(until: { $0 }) { _ in }
            try cache.stage(frame)
        }
        writer.start()
        guard case .owned = try cache.claim(3, waitUntil: nil) else { Issue.record("frame 3 not claimable"); return }
        writer.enqueue(try verified(image, 3))
        #expect(writer.pending(3)?.bytes == Array(image.frame(3)))
        #expect(!cache.contains(3))
        #expect(try other.disk.cache.isClaimedByAnotherProcess(3), "the claim is held while the write is")
        gate.update { $0 = true }
        writer.stop()
        #expect(writer.pending(3) == nil)
        #expect(cache.contains(3))
        #expect(try !other.disk.cache.isClaimedByAnotherProcess(3))
    }

    /// A write that fails (a full disk) leaves the frame neither pending nor cached, so it is
    /// fetched again, and frees its claim, so that the next fetch, here or in another mount,
    /// can take it.
    @Test func aFailedWriteFreesTheFrameForAnotherFetch() throws {
        let mounts = try TwoMounts()
        defer { mounts.stop() }
        let (image, other, cache) = (mounts.image, mounts.other, mounts.mine.disk.cache)
        let writer = CacheWriter(cache: cache, capacity: 2, logger: testLogger) { frame in
            throw CacheError.frameNotPresent(frame: frame.index, path: "a full disk")
        }
        writer.start()
        guard case .owned = try cache.claim(4, waitUntil: nil) else { Issue.record("frame 4 not claimable"); return }
        writer.enqueue(try verified(image, 4))
        writer.stop()
        #expect(writer.pending(4) == nil)
        #expect(!cache.contains(4))
        #expect(try !other.disk.cache.isClaimedByAnotherProcess(4))
        guard case .owned = try other.disk.cache.claim(4, waitUntil: nil) else { Issue.record("frame 4 not claimable elsewhere"); return }
        other.disk.cache.releaseClaim(4)
    }

    /// A started disk answers reads from fetched bytes while the writer stores them: every frame is
    /// fetched once, whether a later read finds it pending or written, and all of it is in the
    /// cache after the disk stops.
    @Test func aStartedDiskFetchesEachFrameOnceAndKeepsItAll() throws {
        let image = try TestImage.make(frames: 40, holes: [7])
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        do {
            let session = try openSession(registry, root: directory.path)
            session.start()
            defer { session.stop() }
            for _ in 0..<2 {
                for frame in 0..<40 {
                    #expect(try session.disk.bytes(at: UInt64(frame * frameSize), count: frameSize) == Array(image.frame(frame)))
                }
            }
            #expect(session.disk.statistics.snapshot().framesFetched == 39)
        }
        registry.resetCounts()
        registry.setOffline(true)
        let session = try openSession(registry, root: directory.path)
        defer { session.stop() }
        #expect(session.cacheComplete)
        #expect(try session.disk.bytes(at: 0, count: image.disk.count) == image.disk)
        #expect(registry.rangeCalls.isEmpty)
    }
}
