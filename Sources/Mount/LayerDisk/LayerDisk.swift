import Cache
import ImageLayouts
import FuseFS
import Glibc
import Logging
import Synchronization
import Threading
import Verity

/// The disk of an image without a frame index (lume OCI, lume legacy, tart, and KubeVirt
/// containerDisks, whose one segment is the disk file inside a tar layer: `SegmentDecoder`'s tar
/// stage, see `ContainerDiskFormat`), served lazily at whole-layer granularity. Safe to call
/// from many FUSE threads at once.
///
/// A read of `[offset, offset + size)`:
/// 1. disk bytes in no segment are zeros (and holes for `SEEK_HOLE`);
/// 2. a segment whose verified file is in the `SegmentStore` is read from it;
/// 3. otherwise the read claims the segment's flight in `SegmentFlights` and waits (bounded) while
///    a fetch thread streams the whole blob through `SegmentDecoder` into a sparse partial file,
///    checks the compressed digest, decoded length and uncompressed digest, and renames the file
///    into place. Unverified bytes are never read back: only the renamed file is opened.
///
/// A layer that fails is retried `fetchAttempts` times, then reads in it fail with EIO; other
/// layers are unaffected.
public final class LayerDisk: VirtualDisk {
    public let layout: DiskLayout
    public let statistics: MountStatistics
    let store: SegmentStore
    let source: any BlobSource
    let options: DiskOptions
    let logger: Logger
    /// Whole-layer fetches, queued for the fetch threads; readers wait for them.
    let flights = SingleFlight<SegmentKey, VerifiedSegmentFile, MountError>()
    /// The segment a key's fetch decodes: the first in disk order with that key (segments sharing
    /// a blob share a key; `verifiedFile` checks each one's length against what was fetched).
    let segmentsByKey: [SegmentKey: Segment]
    /// Verified files opened so far, by key; kept open until the disk is released.
    /// Lock order: a leaf (taken alone, never while holding the flights' monitor).
    let files = Mutex<[SegmentKey: VerifiedSegmentFile]>([:])
    let workers = Mutex<[WorkerThread]>([])
    let stopping = Atomic<Bool>(false)

    public init(layout: DiskLayout, cacheRoot: String, source: any BlobSource, statistics: MountStatistics = MountStatistics(),
                options: DiskOptions = DiskOptions(), logger: Logger) throws(MountError) {
        if let framed = layout.segments.first(where: { $0.codec == .imgfsFrames }) {
            throw .foreign(.layout(.badLayer(layer: framed.name, reason: "imgfs chunk layers are served frame by frame, not as whole layers")))
        }
        self.layout = layout
        var segmentsByKey: [SegmentKey: Segment] = [:]
        for segment in layout.segments where segmentsByKey[SegmentKey(segment)] == nil { segmentsByKey[SegmentKey(segment)] = segment }
        self.segmentsByKey = segmentsByKey
        do { self.store = try SegmentStore(cacheRoot: cacheRoot, logger: logger) } catch { throw .cache(error) }
        self.source = source
        self.statistics = statistics
        self.options = options
        self.logger = logger
    }

    public var size: UInt64 { layout.diskSize }

    /// Starts the fetch threads. Reads before `start` wait until their timeout.
    public func start() {
        let threads = (0..<max(1, options.layerFetchThreads)).map { i in
            WorkerThread(name: "layer-fetch-\(i)") { [self] in
                while let (flight, demanded) = flights.next() {
                    guard let segment = segmentsByKey[flight.key] else { continue }
                    let result = fetch(segment, key: flight.key, demanded: demanded)
                    if case .success(let file) = result { files.withLock { $0[flight.key] = file } }
                    flights.complete(flight, result)
                }
            }
        }
        workers.withLock { $0 = threads }
    }

    /// Stops fetching and waits for the fetch threads; waiting readers get errors.
    public func stop() {
        stopping.store(true, ordering: .relaxed)
        flights.close(failing: .stopped)
        let threads = workers.withLock { threads in
            defer { threads = [] }
            return threads
        }
        for thread in threads { thread.join() }
    }

    public var isStopping: Bool { stopping.load(ordering: .relaxed) }

    // MARK: - Reading

    public func read(at offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(MountError) -> Int {
        guard offset < size, buffer.count > 0 else { return 0 }
        let length = Int(min(UInt64(buffer.count), size - offset))
        let end = offset + UInt64(length)
        // One deadline for the whole read, however many layers it spans.
        let deadline = monotonicNow() + options.layerReadTimeout
        do throws(MountError) {
            var position = offset
            for segment in layout.segments(overlapping: offset..<end) where segment.length > 0 {
                if segment.diskOffset > position {
                    zero(buffer, Int(position - offset)..<Int(segment.diskOffset - offset))
                    position = segment.diskOffset
                }
                let upTo = min(end, segment.diskRange.upperBound)
                let file = try verifiedFile(for: segment, deadline: deadline)
                do {
                    try file.read(at: position - segment.diskOffset,
                                  into: UnsafeMutableRawBufferPointer(rebasing: buffer[Int(position - offset)..<Int(upTo - offset)]),
                                  layer: segment.name)
                } catch { throw .cache(error) }
                position = upTo
            }
            if position < end { zero(buffer, Int(position - offset)..<length) }
            statistics.bytesServed.add(Int64(length), ordering: .relaxed)
            return length
        } catch {
            // Logged once, with the request it failed, where FUSE answers the kernel.
            statistics.readErrors.add(1, ordering: .relaxed)
            throw error
        }
    }

    private func zero(_ buffer: UnsafeMutableRawBufferPointer, _ range: Range<Int>) {
        UnsafeMutableRawBufferPointer(rebasing: buffer[range]).initializeMemory(as: UInt8.self, repeating: 0)
    }

    /// Holes are the disk ranges no segment covers; everything a segment covers is data.
    public func seek(from offset: UInt64, whence: SeekWhence) -> UInt64? {
        guard offset < size else { return nil }
        switch whence {
        case .data:
            if let segment = layout.segment(containing: offset), segment.length > 0 { return offset }
            let next = layout.segments(overlapping: offset..<size).first { $0.length > 0 && $0.diskOffset >= offset }
            return next.map { $0.diskOffset }
        case .hole:
            var position = offset
            // Adjacent segments leave no hole between them: follow them to the first gap.
            while let segment = layout.segment(containing: position), segment.length > 0 {
                position = segment.diskRange.upperBound
                if position >= size { return size }
            }
            return position
        }
    }

    /// The verified file of `segment`: already open, in the store, or fetched now (waiting until
    /// `deadline` at most, on the `monotonicNow()` clock).
    func verifiedFile(for segment: Segment, deadline: Double) throws(MountError) -> VerifiedSegmentFile {
        let key = SegmentKey(segment)
        if let file = files.withLock({ $0[key] }), file.length == segment.length {
            statistics.cacheHits.add(1, ordering: .relaxed)
            return file
        }
        // Not opened by this daemon yet: checked once, whole, before its first byte is served.
        let checked: VerifiedSegmentFile?
        do { checked = try store.openChecked(key, segment: segment, logger: logger) } catch { throw .cache(error) }
        if let file = checked {
            files.withLock { $0[key] = file }
            statistics.cacheHits.add(1, ordering: .relaxed)
            return file
        }
        guard !isStopping else { throw .stopped }
        statistics.cacheMisses.add(1, ordering: .relaxed)
        let started = monotonicNow()
        defer { statistics.countReadWait(seconds: monotonicNow() - started) }
        let file = try fetchThroughWorkers(segment, key: key, demand: true, timeout: deadline - monotonicNow())
        // A flight of another segment with this key verified another length claim: this one's is false.
        guard file.length == segment.length else {
            throw .foreign(.verification(SegmentError(segment, .decodedSizeMismatch(expected: segment.length, actual: file.length)), attempts: 1))
        }
        return file
    }

    /// Fetches `segment` in the background unless it is cached, and waits for it (for prefetch).
    func prefetch(_ segment: Segment) throws(MountError) {
        let key = SegmentKey(segment)
        guard segment.length > 0, files.withLock({ $0[key] }) == nil, !store.contains(key, length: segment.length) else { return }
        // No deadline that matters: stop() fails or finishes every flight.
        _ = try fetchThroughWorkers(segment, key: key, demand: false, timeout: 24 * 3600)
    }

    /// Queues `segment`'s fetch for the fetch threads (or joins the one queued or running) and
    /// waits for it at most `timeout` seconds; the fetch goes on after a reader gives up.
    private func fetchThroughWorkers(_ segment: Segment, key: SegmentKey, demand: Bool, timeout: Double) throws(MountError) -> VerifiedSegmentFile {
        let flight = flights.enqueue(key, demand: demand)
        guard let result = flights.wait(flight, timeout: timeout) else {
            throw .foreign(.timedOut(layer: segment.name, blob: segment.blob.digest, seconds: timeout))
        }
        return try result.get()
    }

    /// Segments whose verified file is present, and the disk bytes they cover (for `imgfs status`).
    public func cachedSegments() -> (count: Int, bytes: UInt64) {
        let open = files.withLock { Set($0.keys) }
        var count = 0
        var bytes: UInt64 = 0
        for segment in layout.segments {
            let key = SegmentKey(segment)
            if open.contains(key) || store.contains(key, length: segment.length) {
                count += 1
                bytes += segment.length
            }
        }
        return (count, bytes)
    }
}
