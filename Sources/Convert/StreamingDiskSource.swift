import Fetch
import ImageLayouts
import ImgfsFormat
import Logging
import PieceFetch
import Push
import Synchronization
import Threading
import Verity

/// The disk of a registry image as a `DiskSource`, decoded as it streams: a producer thread
/// fetches the segments in disk order (whole layers for lume and tart, coalesced frame ranges
/// for imgfs), decodes and checks them, and hands decoded pieces over a bounded queue; `read`
/// copies them out, zero-filling the holes between segments. Memory is bounded by the queue;
/// nothing touches the local disk.
///
/// Decoded bytes reach the pipeline before their layer's digest is checked (a layer is checked
/// when it ends), so `finish()` throws unless every segment verified: the pusher calls it before
/// it writes the manifest, and a bad layer never becomes a published image.
public final class StreamingDiskSource: DiskSource, @unchecked Sendable {
    struct Piece {
        var offset: UInt64
        var bytes: [UInt8]
        var end: UInt64 { offset + UInt64(bytes.count) }
    }

    public let size: UInt64
    private let extents: [Range<UInt64>]
    /// What the producer thread shares with the reader; a class of its own so the thread does
    /// not keep the source alive.
    final class Shared: Sendable {
        let queue = BoundedQueue<Piece>(capacity: 64)
        let failure = Mutex<(any Error)?>(nil)
        let completed = Atomic<Bool>(false)
    }

    private let shared = Shared()
    private var queue: BoundedQueue<Piece> { shared.queue }
    private var producer: WorkerThread?
    // Touched only by the one thread that calls `read` (the push pipeline's reader).
    private var current: Piece?

    public init(image: VMImage, client: RegistryClient, repository: String, logger: Logger) {
        self.size = image.layout.diskSize
        if let index = image.imgfs?.index {
            var ranges = [Range<UInt64>]()
            for (frame, entry) in index.frames.enumerated() where !entry.isHole {
                let start = index.geometry.offset(ofFrame: frame), end = start + UInt64(index.geometry.length(ofFrame: frame))
                if let last = ranges.last, last.upperBound == start { ranges[ranges.count - 1] = last.lowerBound..<end } else { ranges.append(start..<end) }
            }
            extents = ranges
        } else {
            extents = image.layout.segments.map(\.diskRange).filter { !$0.isEmpty }
        }
        let shared = self.shared
        producer = WorkerThread(name: "convert-source") {
            let queue = shared.queue
            do {
                if let index = image.imgfs?.index {
                    try Self.produceFrames(index, client: client, repository: repository, queue: queue)
                } else {
                    try Self.produceSegments(image.layout, client: client, repository: repository, queue: queue, logger: logger)
                }
                shared.completed.store(true, ordering: .releasing)
                queue.close()
            } catch {
                shared.failure.withLock { if $0 == nil { $0 = Self.rootCause(error) } }
                queue.cancel()
            }
        }
    }

    deinit {
        queue.cancel()
        producer?.join()
    }

    public func dataExtents() throws(PushError) -> [Range<UInt64>] { extents }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(PushError) {
        guard let base = buffer.baseAddress else { return }
        base.initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count)
        let end = offset + UInt64(buffer.count)
        while true {
            if current == nil {
                current = queue.pop()
                if current == nil { break }
            }
            guard let piece = current else { break }
            if piece.end <= offset { current = nil; continue }
            if piece.offset >= end { break }
            let from = max(piece.offset, offset), to = min(piece.end, end)
            piece.bytes.withUnsafeBytes { raw in
                guard let source = raw.baseAddress else { return }
                (base + Int(from - offset)).copyMemory(from: source + Int(from - piece.offset), byteCount: Int(to - from))
            }
            if piece.end <= end { current = nil } else { break }
        }
        if let error = shared.failure.withLock({ $0 }) { throw .sourceFailed(error) }
    }

    public func finish() throws(PushError) {
        producer?.join()
        producer = nil
        if let error = shared.failure.withLock({ $0 }) { throw .sourceFailed(error) }
        guard shared.completed.load(ordering: .acquiring) else { throw .source("the source image ended before its last layer was verified") }
    }

    /// Stops the producer early (the pipeline failed).
    public func cancel() { queue.cancel() }

    // MARK: - Producers

    private static func produceSegments(_ layout: DiskLayout, client: RegistryClient, repository: String, queue: BoundedQueue<Piece>, logger: Logger) throws {
        for segment in layout.segments {
            logger.debug("streaming layer", metadata: ["digest": "\(segment.blob.digest)", "offset": "\(segment.diskOffset)"])
            try LayerStream.decode(segment, chunks: { feed in try client.blob(repository, digest: segment.blob.digest, range: nil, sink: feed) }) { offset, bytes in
                guard queue.push(Piece(offset: offset, bytes: Array(bytes))) else { throw SourceCancelled() }
            }
        }
    }

    /// imgfs: frames in disk order, consecutive stored members fetched with one range request.
    private static func produceFrames(_ index: FrameIndex, client: RegistryClient, repository: String, queue: BoundedQueue<Piece>) throws {
        try RangeRequest.inDiskOrder(index, maxBytes: 16 * 1024 * 1024, fetch: { request in
            var blob = [UInt8]()
            blob.reserveCapacity(request.range.count)
            try client.blob(repository, digest: request.blob, range: request.range) { blob.append(contentsOf: $0) }
            return blob
        }, failed: { _, error in error }) { frame in
            guard queue.push(Piece(offset: index.geometry.offset(ofFrame: frame.index), bytes: frame.bytes)) else { throw SourceCancelled() }
        }
    }

    /// The error that stopped the producer, past the wrappers its callbacks threw it through.
    static func rootCause(_ error: any Error) -> any Error {
        if let fetch = error as? FetchError, let inner = fetch.underlying { return rootCause(inner) }
        if let segment = error as? SegmentError, case .output(let inner) = segment.kind, !(inner is SourceCancelled) { return rootCause(inner) }
        if let frame = error as? PieceError { return SourceFrameCheckFailed(error: frame) }
        return error
    }
}

/// A frame of the source image did not match its index.
struct SourceFrameCheckFailed: Error, CustomStringConvertible {
    var error: PieceError
    var description: String { "source frame check failed: \(error)" }
}

struct SourceCancelled: Error, CustomStringConvertible {
    var description: String { "cancelled" }
}
