import Cache
import Foundation
import ImgfsFormat
@testable import Mount
import Synchronization
import Testing
import Threading

/// Two mounts of one image on one cache root (two sessions in one process: their cache handles
/// are separate open file descriptions, so their frame claims conflict as two daemons' do).
@Suite struct SharedEntryTests {
    let frameSize = TestImage.frameSize

    /// Started, each mount's cache writer stores its frames (`CacheWriter`) after the reads that
    /// fetched them returned, and a frame's claim is held until then: released earlier, the other
    /// mount would find it neither claimed nor stored and fetch it again.
    @Test(arguments: [false, true]) func twoMountsReadingAtOnceFetchEachFrameOnce(started: Bool) throws {
        let image = try TestImage.make(frames: 64, holes: [5, 40])
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        registry.rangeDelay = 0.002
        let directory = TemporaryDirectory()
        var options = DiskOptions()
        options.readaheadThreads = 2
        let sessions = try (0..<2).map { _ in try openSession(registry, root: directory.path, options: options) }
        defer { for session in sessions { session.stop() } }
        if started { for session in sessions { session.start() } }

        // Each mount read by two threads, frame by frame, one from each end.
        let failures = Mutex<[String]>([])
        var threads: [WorkerThread] = []
        for (s, session) in sessions.enumerated() {
            for direction in [false, true] {
                threads.append(WorkerThread(name: "reader-\(s)") {
                    for i in direction ? Array((0..<64).reversed()) : Array(0..<64) {
                        do {
                            let bytes = try session.disk.bytes(at: UInt64(i * frameSize), count: frameSize)
                            if bytes != Array(image.frame(i)) { failures.withLock { $0.append("mount \(s) frame \(i): wrong bytes") } }
                        } catch {
                            failures.withLock { $0.append("mount \(s) frame \(i): \(error)") }
                        }
                    }
                })
            }
        }
        for thread in threads { thread.join() }
        #expect(failures.withLock { $0 }.isEmpty, "\(failures.withLock { $0 })")

        let snapshots = sessions.map { $0.disk.statistics.snapshot() }
        #expect(snapshots.map(\.framesFetched).reduce(0, +) == 62, "fetched \(snapshots.map(\.framesFetched))")
        for snapshot in snapshots {
            #expect(snapshot.framesFetched + (snapshot.framesFromOtherMounts ?? 0) == 62)
        }
        let fetchedBytes = registry.rangeCalls.reduce(0) { $0 + Int($1.range.count) }
        let oneCopy = image.index.frames.compactMap(\.location).reduce(0) { $0 + Int($1.compressedLength) }
        #expect(fetchedBytes == oneCopy, "the registry served \(fetchedBytes) bytes; one copy is \(oneCopy)")
    }

    @Test func backgroundWorkSkipsAFrameAnotherMountIsFetchingAndAReaderWaitsForIt() throws {
        let image = try TestImage.make(frames: 16)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let a = try openSession(registry, root: directory.path)
        defer { a.stop() }
        let b = try openSession(registry, root: directory.path)
        defer { b.stop() }

        // Mount A is "fetching" frame 3: it holds the claim.
        guard case .owned = try a.disk.cache.claim(3, waitUntil: nil) else { throw TestFailure("not owned") }
        try b.disk.prefetch([3], purpose: .prefetch)
        #expect(registry.rangeCalls.isEmpty, "prefetch fetched a frame another mount is fetching")
        #expect(!b.disk.cache.contains(3))

        let verified = try VerifiedFrame.verify(frame: 3, bytes: Array(image.frame(3)), expectedLength: frameSize,
                                                expectedDigest: image.index.frames[3].digest)
        let holder = WorkerThread(name: "holder") {
            usleep(300_000)
            try? a.disk.cache.stage(verified)
            a.disk.cache.releaseClaim(3)
        }
        let bytes = try b.disk.bytes(at: UInt64(3 * frameSize), count: frameSize)
        holder.join()
        #expect(bytes == Array(image.frame(3)))
        #expect(registry.rangeCalls.isEmpty, "the reader fetched a frame the other mount stored")
        #expect(b.disk.statistics.snapshot().framesFromOtherMounts == 1)
    }

    @Test func aReaderFetchesItselfWhenTheOtherMountNeverStoresTheFrame() throws {
        let image = try TestImage.make(frames: 16)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let a = try openSession(registry, root: directory.path)
        defer { a.stop() }
        var options = DiskOptions()
        options.readaheadThreads = 0
        options.readTimeout = 5
        let b = try openSession(registry, root: directory.path, options: options)
        defer { b.stop() }

        guard case .owned = try a.disk.cache.claim(7, waitUntil: nil) else { throw TestFailure("not owned") }
        // The other mount gives up on the frame (as if it died: its claim goes, its bytes never came).
        let holder = WorkerThread(name: "holder") {
            usleep(200_000)
            a.disk.cache.releaseClaim(7)
        }
        let start = monotonicNow()
        let bytes = try b.disk.bytes(at: UInt64(7 * frameSize), count: frameSize)
        holder.join()
        #expect(bytes == Array(image.frame(7)))
        #expect(monotonicNow() - start < 4, "the reader was held past the release")
        #expect(registry.rangeCalls.count == 1)
        #expect(b.disk.statistics.snapshot().framesFetched == 1)
    }

    @Test func aReaderGivesUpAtItsDeadlineOnAClaimThatIsNeverReleased() throws {
        let image = try TestImage.make(frames: 16)
        let registry = FakeRegistry()
        registry.add(image, tag: "v1")
        let directory = TemporaryDirectory()
        let a = try openSession(registry, root: directory.path)
        defer { a.stop() }
        var options = DiskOptions()
        options.readaheadThreads = 0
        options.readTimeout = 1
        let b = try openSession(registry, root: directory.path, options: options)
        defer { b.stop() }

        guard case .owned = try a.disk.cache.claim(9, waitUntil: nil) else { throw TestFailure("not owned") }
        let start = monotonicNow()
        #expect(throws: MountError.self) { _ = try b.disk.bytes(at: UInt64(9 * frameSize), count: frameSize) }
        let waited = monotonicNow() - start
        #expect(waited >= 0.9 && waited < 5, "waited \(waited) s with a 1 s read timeout")
        a.disk.cache.releaseClaim(9)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
