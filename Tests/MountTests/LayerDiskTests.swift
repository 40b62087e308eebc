import Cache
import Codec
import ImageLayouts
import Foundation
@testable import Mount
import OCI
import Synchronization
import Testing
import Threading
import Verity

/// A registry of layer blobs in memory: counts range requests per blob and records the class
/// each was asked with, can corrupt one blob, delay or hold every request, or go offline.
final class FakeLayerSource: BlobSource, @unchecked Sendable {
    private let lock = NSCondition()
    private var blobs: [Digest: [UInt8]] = [:]
    private var corrupted: Set<Digest> = []
    private var calls: [Digest: Int] = [:]
    private var offline = false
    private var held = false
    private var deadlines: [Double] = []
    private var classes: [FetchClass] = []
    private var lastUrgent: (@Sendable () -> Bool)?
    var delay: Double = 0

    func add(_ blob: [UInt8]) -> Digest {
        let digest = SHA256Hasher.digest(blob)
        lock.withLock { blobs[digest] = blob }
        return digest
    }

    func corrupt(_ digest: Digest) { lock.withLock { _ = corrupted.insert(digest) } }
    func setOffline(_ value: Bool) { lock.withLock { offline = value } }
    func requests(_ digest: Digest) -> Int { lock.withLock { calls[digest] ?? 0 } }
    var totalRequests: Int { lock.withLock { calls.values.reduce(0, +) } }
    /// The deadline each range request was given, in order.
    var requestDeadlines: [Double] { lock.withLock { deadlines } }
    /// The class of the priority each range request was given, in order.
    var requestClasses: [FetchClass] { lock.withLock { classes } }
    /// What the last background request's `urgent` says now (nil: no background request yet).
    var lastRequestIsUrgent: Bool? { lock.withLock { lastUrgent }?() }
    /// While held, range requests are recorded and then wait (before answering) until `release`.
    func hold() { lock.withLock { held = true } }
    func release() { lock.withLock { held = false; lock.broadcast() } }

    func manifest(_ reference: String) throws(SourceError) -> SourceManifest { throw SourceError(.notFound, "no manifests here") }

    func blob(_ digest: Digest, maxSize: Int64) throws(SourceError) -> [UInt8] {
        guard let blob = lock.withLock({ blobs[digest] }) else { throw SourceError(.notFound, "blob unknown: \(digest)") }
        return blob
    }

    func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority) throws(SourceError) -> [UInt8] {
        let (blob, isCorrupt, isOffline) = lock.withLock { () -> ([UInt8]?, Bool, Bool) in
            calls[digest, default: 0] += 1
            deadlines.append(deadline)
            switch priority {
            case .demand: classes.append(.demand)
            case .background(let fetchClass, let urgent):
                classes.append(fetchClass)
                lastUrgent = urgent
            }
            while held { lock.wait() }
            return (blobs[digest], corrupted.contains(digest), offline)
        }
        if delay > 0 { usleep(UInt32(delay * 1e6)) }
        if isOffline { throw SourceError(.unreachable, "connection refused") }
        guard let blob else { throw SourceError(.notFound, "blob unknown: \(digest)") }
        guard range.lowerBound >= 0, range.upperBound <= Int64(blob.count) else { throw SourceError(.other, "range not satisfiable") }
        var bytes = Array(blob[Int(range.lowerBound)..<Int(range.upperBound)])
        if isCorrupt, bytes.count > 40 { bytes[bytes.count / 2] ^= 0x40 }
        return bytes
    }
}

/// A disk of whole-layer segments with gaps between them, and the source that holds them.
struct SegmentFixture {
    var disk: [UInt8]
    var layout: DiskLayout
    var source = FakeLayerSource()

    /// Pieces at the given disk offsets, each encoded with its codec; bytes between them are zeros.
    init(size: Int, pieces: [(offset: Int, bytes: [UInt8], codec: SegmentCodec)], withUncompressedDigest: Bool = true) throws {
        disk = [UInt8](repeating: 0, count: size)
        var segments: [Segment] = []
        for (number, piece) in pieces.enumerated() {
            disk.replaceSubrange(piece.offset..<piece.offset + piece.bytes.count, with: piece.bytes)
            let blob: [UInt8] = switch piece.codec {
            case .gzip: try piece.bytes.withUnsafeBytes { raw throws(CodecError) in try GzipStreamEncoder(level: 1).encodeMember(raw) }
            case .appleLZ4: try piece.bytes.withUnsafeBytes { raw throws(CodecError) in try AppleLZ4Encoder(blockSize: 64 * 1024, chained: true).encode(raw) }
            default: piece.bytes
            }
            let digest = source.add(blob)
            segments.append(Segment(layerIndex: number, blob: Descriptor(mediaType: .octetStream, digest: digest, size: Int64(blob.count)),
                                    codec: piece.codec, diskOffset: UInt64(piece.offset), length: UInt64(piece.bytes.count),
                                    uncompressedDigest: withUncompressedDigest ? SHA256Hasher.digest(piece.bytes) : nil))
        }
        layout = try DiskLayout(diskSize: UInt64(size), segments: segments)
    }

    static func pattern(_ count: Int, seed: UInt32) -> [UInt8] {
        var state = seed
        return (0..<count).map { i in
            state = state &* 1_103_515_245 &+ 12345
            // Runs of zeros every so often, so the sparse writer has blocks to skip.
            return (i / 4096) % 3 == 2 ? 0 : UInt8(truncatingIfNeeded: i % 2 == 0 ? state >> 16 : UInt32(i & 0xff))
        }
    }

    func open(_ root: String, options: DiskOptions = Self.fastOptions) throws -> LayerDisk {
        let disk = try LayerDisk(layout: layout, cacheRoot: root, source: source, options: options, logger: testLogger)
        disk.start()
        return disk
    }

    static var fastOptions: DiskOptions {
        var options = DiskOptions()
        options.layerReadTimeout = 20
        options.layerRequestBytes = 16 * 1024
        return options
    }
}

extension LayerDisk {
    func bytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: count)
        let n = try out.withUnsafeMutableBytes { buffer throws(MountError) in try read(at: offset, into: buffer) }
        return Array(out[0..<n])
    }
}

func segmentFiles(_ root: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: root + "/segments")) ?? []).sorted()
}

@Suite struct LayerDiskTests {
    @Test func readsServeTheSegmentsWithZerosAndHolesBetweenThem() throws {
        let a = SegmentFixture.pattern(100_000, seed: 1)
        let b = SegmentFixture.pattern(70_000, seed: 2)
        let c = SegmentFixture.pattern(30_000, seed: 3)
        let fixture = try SegmentFixture(size: 400_000, pieces: [(10_000, a, .gzip), (150_000, b, .appleLZ4), (220_000, c, .none)])
        let directory = TemporaryDirectory()
        let disk = try fixture.open(directory.path)
        defer { disk.stop() }

        // Odd-sized reads across every boundary.
        var offset = 0
        while offset < fixture.disk.count {
            let count = min(33_333, fixture.disk.count - offset)
            #expect(try disk.bytes(at: UInt64(offset), count: count) == Array(fixture.disk[offset..<offset + count]), "at \(offset)")
            offset += count
        }
        #expect(try disk.bytes(at: 399_990, count: 100).count == 10, "short only at the end")
        #expect(disk.seek(from: 0, whence: .data) == 10_000)
        #expect(disk.seek(from: 0, whence: .hole) == 0)
        #expect(disk.seek(from: 20_000, whence: .hole) == 110_000)
        #expect(disk.seek(from: 160_000, whence: .data) == 160_000)
        #expect(disk.seek(from: 160_000, whence: .hole) == 220_000 + 30_000, "adjacent segments are one data run")
        #expect(disk.seek(from: 300_000, whence: .data) == nil)
        #expect(disk.seek(from: 300_000, whence: .hole) == 300_000)
        let snapshot = disk.statistics.snapshot()
        #expect(snapshot.framesFetched == 3)
        #expect(snapshot.verificationFailures == 0)
        #expect(disk.cachedSegments().count == 3)
    }

    @Test func segmentsSharingABlobFetchItOnce() throws {
        let part = SegmentFixture.pattern(50_000, seed: 9)
        let fixture = try SegmentFixture(size: 200_000, pieces: [(0, part, .gzip), (50_000, part, .gzip), (120_000, part, .gzip)])
        let shared = fixture.layout.segments[0].blob.digest
        #expect(Set(fixture.layout.segments.map(\.blob.digest)).count == 1)
        let directory = TemporaryDirectory()
        let disk = try fixture.open(directory.path)
        defer { disk.stop() }
        #expect(try disk.bytes(at: 0, count: 200_000) == fixture.disk)
        let blobSize = Int(fixture.layout.segments[0].blob.size)
        let perFetch = (blobSize + 16 * 1024 - 1) / (16 * 1024)
        #expect(fixture.source.requests(shared) == perFetch, "one streamed fetch of the shared blob")
        #expect(disk.statistics.snapshot().framesFetched == 1)
    }

    @Test func concurrentReadersOfOneLayerWaitForOneFetch() throws {
        let part = SegmentFixture.pattern(64 * 1024, seed: 4)
        let fixture = try SegmentFixture(size: 64 * 1024, pieces: [(0, part, .appleLZ4)])
        fixture.source.delay = 0.05
        let directory = TemporaryDirectory()
        var options = SegmentFixture.fastOptions
        options.layerRequestBytes = 1 << 20
        options.layerFetchThreads = 4
        let disk = try fixture.open(directory.path, options: options)
        defer { disk.stop() }
        let correct = Atomic<Int>(0)
        let expected = fixture.disk
        WorkerThread.run(count: 8, name: "reader") { i in
            let offset = i * 5000
            if let bytes = try? disk.bytes(at: UInt64(offset), count: 4096), bytes == Array(expected[offset..<offset + 4096]) {
                correct.add(1, ordering: .relaxed)
            }
        }
        #expect(correct.load(ordering: .relaxed) == 8)
        #expect(fixture.source.totalRequests == 1)
        #expect(disk.statistics.snapshot().framesFetched == 1)
    }

    @Test func aCorruptLayerFailsAfterRetriesIsNeverCachedAndOtherLayersWork() throws {
        let good = SegmentFixture.pattern(40_000, seed: 5)
        let bad = SegmentFixture.pattern(40_000, seed: 6)
        let fixture = try SegmentFixture(size: 100_000, pieces: [(0, good, .gzip), (50_000, bad, .gzip)])
        let badDigest = fixture.layout.segments[1].blob.digest
        fixture.source.corrupt(badDigest)
        let directory = TemporaryDirectory()
        var options = SegmentFixture.fastOptions
        options.fetchAttempts = 2
        let disk = try fixture.open(directory.path, options: options)
        defer { disk.stop() }

        do {
            _ = try disk.bytes(at: 60_000, count: 100)
            Issue.record("a read of the corrupt layer succeeded")
        } catch let error as MountError {
            guard case .foreign(.verification(let inner, let attempts)) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(inner.digest == badDigest)
            #expect(attempts == 2)
            #expect(error.description.contains(badDigest.description))
        }
        #expect(disk.statistics.snapshot().verificationFailures == 2)
        #expect(!segmentFiles(directory.path).contains { $0.hasPrefix(badDigest.hex) }, "nothing of the bad layer is kept: \(segmentFiles(directory.path))")
        #expect(try disk.bytes(at: 0, count: 40_000) == good)
        #expect(try disk.bytes(at: 45_000, count: 5000) == [UInt8](repeating: 0, count: 5000))
    }

    @Test func aFalseUncompressedDigestIsAVerificationFailure() throws {
        let part = SegmentFixture.pattern(30_000, seed: 7)
        var fixture = try SegmentFixture(size: 30_000, pieces: [(0, part, .appleLZ4)])
        var segment = fixture.layout.segments[0]
        segment.uncompressedDigest = SHA256Hasher.digest([1, 2, 3])
        fixture.layout = try DiskLayout(diskSize: 30_000, segments: [segment])
        let directory = TemporaryDirectory()
        var options = SegmentFixture.fastOptions
        options.fetchAttempts = 1
        let disk = try fixture.open(directory.path, options: options)
        defer { disk.stop() }
        #expect(throws: MountError.self) { try disk.bytes(at: 0, count: 10) }
        #expect(segmentFiles(directory.path).isEmpty)
    }

    @Test func aReopenedDiskServesFromTheCacheWithoutFetching() throws {
        let part = SegmentFixture.pattern(200_000, seed: 8)
        let fixture = try SegmentFixture(size: 300_000, pieces: [(50_000, part, .gzip)])
        let directory = TemporaryDirectory()
        do {
            let disk = try fixture.open(directory.path)
            #expect(try disk.bytes(at: 0, count: 300_000) == fixture.disk)
            disk.stop()
        }
        let files = segmentFiles(directory.path).filter { !$0.hasSuffix(".sha256") }
        #expect(files.count == 1 && !files[0].contains(".partial"), "\(files)")
        // Zero blocks were skipped: the cached file is sparse.
        var st = stat()
        #expect(stat(directory.path + "/segments/" + files[0], &st) == 0)
        #expect(Int(st.st_blocks) * 512 < 200_000)

        fixture.source.setOffline(true)
        let before = fixture.source.totalRequests
        let again = try fixture.open(directory.path)
        defer { again.stop() }
        #expect(try again.bytes(at: 0, count: 300_000) == fixture.disk)
        #expect(fixture.source.totalRequests == before)
        #expect(again.statistics.snapshot().cacheHits >= 1)
    }

    @Test func aReadGivesUpAfterItsTimeoutWhileTheFetchGoesOn() throws {
        let part = SegmentFixture.pattern(20_000, seed: 10)
        let fixture = try SegmentFixture(size: 20_000, pieces: [(0, part, .none)])
        fixture.source.delay = 0.6
        let directory = TemporaryDirectory()
        var options = SegmentFixture.fastOptions
        options.layerReadTimeout = 0.1
        options.layerRequestBytes = 1 << 20
        let disk = try fixture.open(directory.path, options: options)
        defer { disk.stop() }
        do {
            _ = try disk.bytes(at: 0, count: 10)
            Issue.record("the read did not time out")
        } catch let error as MountError {
            guard case .foreign(.timedOut) = error else { Issue.record("unexpected \(error)"); return }
        }
        usleep(1_000_000)
        #expect(try disk.bytes(at: 0, count: 20_000) == part)
        #expect(fixture.source.totalRequests == 1)
    }

    /// A read that spans two layers waits one read timeout in all, not one per layer; and each
    /// range request of a layer's fetch gets the generous bound of its own.
    @Test func aReadAcrossLayersHasOneDeadlineAndEachRequestItsBound() throws {
        let a = SegmentFixture.pattern(20_000, seed: 12)
        let b = SegmentFixture.pattern(20_000, seed: 13)
        let fixture = try SegmentFixture(size: 40_000, pieces: [(0, a, .none), (20_000, b, .none)])
        fixture.source.delay = 2
        let directory = TemporaryDirectory()
        var options = SegmentFixture.fastOptions
        options.layerReadTimeout = 3
        options.layerRequestBytes = 1 << 20
        options.backgroundTransferTimeout = 77
        let disk = try fixture.open(directory.path, options: options)
        defer { disk.stop() }
        let start = monotonicNow()
        do {
            // The first layer arrives after 2 s; the second would after 4 s, past the read's 3 s.
            _ = try disk.bytes(at: 10_000, count: 20_000)
            Issue.record("the read waited past its timeout")
        } catch let error as MountError {
            guard case .foreign(.timedOut) = error else { Issue.record("unexpected \(error)"); return }
        }
        #expect(monotonicNow() - start < 3.8, "one read timeout in all")
        let first = try #require(fixture.source.requestDeadlines.first)
        #expect(first >= start + 77 && first <= start + 77 + 3)
    }

    @Test func aStaleUnverifiedPartialIsRemovedAndNeverServed() throws {
        let part = SegmentFixture.pattern(10_000, seed: 11)
        let fixture = try SegmentFixture(size: 10_000, pieces: [(0, part, .none)])
        let directory = TemporaryDirectory()
        let key = SegmentKey(fixture.layout.segments[0])
        try FileManager.default.createDirectory(atPath: directory.path + "/segments", withIntermediateDirectories: true)
        // What a crash mid-fetch leaves behind: garbage under a partial name of a dead process.
        let stale = directory.path + "/segments/\(key.name).partial.999999"
        _ = FileManager.default.createFile(atPath: stale, contents: Data(repeating: 0x55, count: 10_000))
        let disk = try fixture.open(directory.path)
        defer { disk.stop() }
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(try disk.bytes(at: 0, count: 10_000) == part)
    }

    /// Issue 11: a layer file is checked, whole, the first time a daemon serves it; one that
    /// changed on disk is removed and fetched again, with or without an uncompressed digest in
    /// the manifest (without one, the digest recorded at fetch time is the reference).
    @Test(arguments: [true, false])
    func aFlippedByteInACachedLayerIsNeverServedAndTheLayerIsFetchedAgain(withUncompressedDigest: Bool) throws {
        let part = SegmentFixture.pattern(100_000, seed: 12)
        let fixture = try SegmentFixture(size: 120_000, pieces: [(10_000, part, .gzip)], withUncompressedDigest: withUncompressedDigest)
        let directory = TemporaryDirectory()
        do {
            let disk = try fixture.open(directory.path)
            #expect(try disk.bytes(at: 0, count: 120_000) == fixture.disk)
            disk.stop()
        }
        let key = SegmentKey(fixture.layout.segments[0])
        let path = directory.path + "/segments/" + key.name
        #expect(FileManager.default.fileExists(atPath: path + ".sha256"))
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: 777)
        let original = try #require(try handle.read(upToCount: 1))
        try handle.seek(toOffset: 777)
        try handle.write(contentsOf: Data([original[0] ^ 0x01]))
        try handle.close()

        let before = fixture.source.totalRequests
        let again = try fixture.open(directory.path)
        defer { again.stop() }
        #expect(try again.bytes(at: 0, count: 120_000) == fixture.disk)
        #expect(fixture.source.totalRequests > before, "the layer was fetched again")
        // Repaired on disk, and checked only once per daemon: no further fetch.
        let after = fixture.source.totalRequests
        #expect(try again.bytes(at: 10_777, count: 1) == [part[777]])
        #expect(fixture.source.totalRequests == after)
    }

    /// The background pass over the layers is `.prefetch` on the link (it holds still for
    /// readers' transfers, `DemandGate`), and counted as such; a layer a reader waits for is
    /// demand. Both used to reach the source as demand.
    @Test func aPrefetchedLayerIsFetchedAsPrefetchAndAReadLayerAsDemand() throws {
        let a = SegmentFixture.pattern(60_000, seed: 14)
        let b = SegmentFixture.pattern(60_000, seed: 15)
        let fixture = try SegmentFixture(size: 120_000, pieces: [(0, a, .gzip), (60_000, b, .gzip)])
        let directory = TemporaryDirectory()
        let disk = try fixture.open(directory.path)
        defer { disk.stop() }

        try disk.prefetch(fixture.layout.segments[0])
        let prefetched = fixture.source.requestClasses
        #expect(!prefetched.isEmpty && prefetched.allSatisfy { $0 == .prefetch }, "\(prefetched)")
        #expect(fixture.source.lastRequestIsUrgent == false, "no reader waits for a finished prefetch")

        #expect(try disk.bytes(at: 60_000, count: 60_000) == b)
        let read = fixture.source.requestClasses.dropFirst(prefetched.count)
        #expect(!read.isEmpty && read.allSatisfy { $0 == .demand }, "\(Array(read))")

        let byClass = try #require(disk.statistics.snapshot().bytesFetchedByClass)
        #expect(byClass.prefetch == fixture.layout.segments[0].blob.size)
        #expect(byClass.demand == fixture.layout.segments[1].blob.size)
        #expect(byClass.readahead == 0 && byClass.profile == 0)
    }

    /// A reader who comes to wait for a layer the background pass is fetching makes the transfer
    /// under way urgent (it stops holding still) and the layer's later requests demand.
    @Test func aReaderJoiningAPrefetchedLayerMakesItDemand() throws {
        let part = SegmentFixture.pattern(100_000, seed: 16)
        let fixture = try SegmentFixture(size: 100_000, pieces: [(0, part, .none)])
        let segment = fixture.layout.segments[0]
        let directory = TemporaryDirectory()
        let disk = try fixture.open(directory.path)
        defer { disk.stop() }

        fixture.source.hold()
        let prefetch = WorkerThread(name: "test-prefetch") { try? disk.prefetch(segment) }
        waitUntil(limit: 20) { fixture.source.totalRequests == 1 }
        #expect(fixture.source.requestClasses == [.prefetch])
        #expect(fixture.source.lastRequestIsUrgent == false)

        let served = Mutex<[UInt8]?>(nil)
        let reader = WorkerThread(name: "test-reader") { served.withLock { $0 = try? disk.bytes(at: 0, count: 100_000) } }
        waitUntil(limit: 20) { disk.flights.isDemanded(SegmentKey(segment)) }
        #expect(fixture.source.lastRequestIsUrgent == true, "the held transfer no longer yields")
        fixture.source.release()
        reader.join()
        prefetch.join()

        #expect(served.withLock { $0 } == part)
        let classes = fixture.source.requestClasses
        #expect(classes.count == (100_000 + 16 * 1024 - 1) / (16 * 1024))
        #expect(classes.first == .prefetch && classes.dropFirst().allSatisfy { $0 == .demand }, "\(classes)")
    }
}
