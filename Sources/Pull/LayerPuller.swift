import Fetch
import ImageLayouts
import Logging
import OCI
import PieceFetch
import Verity

/// Pulls whole-layer formats (lume, tart, containerDisks): one unit per distinct blob, fetched in one GET,
/// decoded while it streams, written to every segment that shares the blob, verified
/// (compressed digest, decoded length and digest), then made durable and journalled.
struct LayerPuller {
    struct Unit: Sendable {
        var segments: [Segment]
        var bytes: UInt64 { segments.reduce(0) { $0 + $1.length } }
    }

    let client: RegistryClient
    let repository: String
    let disk: SparseDisk
    let journal: PullJournal
    let progress: PullProgress
    let jobs: Int
    let logger: Logger

    /// Groups segments by blob: lume uploads identical parts once, and one fetch serves them all.
    static func units(_ layout: DiskLayout) throws(PullError) -> [Unit] {
        var order = [Digest]()
        var groups = [Digest: [Segment]]()
        for segment in layout.segments {
            if groups[segment.blob.digest] == nil { order.append(segment.blob.digest) }
            groups[segment.blob.digest, default: []].append(segment)
        }
        return try order.map { (digest) throws(PullError) in
            let segments = groups[digest] ?? []
            guard let first = segments.first else { return Unit(segments: []) }
            for other in segments.dropFirst() where other.length != first.length || other.uncompressedDigest != first.uncompressedDigest || other.codec != first.codec {
                throw .layout(.badLayer(layer: other.name, reason: "shares its blob with \(first.name) but not its uncompressed size or digest"))
            }
            return Unit(segments: segments)
        }
    }

    func run(_ layout: DiskLayout) throws(PullError) {
        var pending = [Unit]()
        for unit in try Self.units(layout) {
            guard let first = unit.segments.first else { continue }
            if journal.isBlobDone(first.blob.digest) {
                progress.doneBytes.add(Int64(unit.bytes), ordering: .relaxed)
                progress.unitsResumed.add(1, ordering: .relaxed)
            } else {
                pending.append(unit)
            }
        }
        // Largest first: a big layer started last would otherwise finish alone on one core.
        pending.sort { $0.segments[0].blob.size > $1.segments[0].blob.size }
        let pool = WorkPool(pending)
        try pool.run(threads: jobs, name: "pull-layer") { (unit) throws(PullError) in
            // pull() clears the unit's disk ranges first, so a second attempt starts clean.
            try PullError.retryingDamage("layer \(unit.segments.first?.blob.digest.description ?? "?")", logger: logger) { () throws(PullError) in
                try pull(unit, pool: pool)
            }
        }
    }

    private func pull(_ unit: Unit, pool: WorkPool<Unit>) throws(PullError) {
        guard let first = unit.segments.first else { return }
        for segment in unit.segments { try disk.clear(segment.diskRange) }
        let disk = self.disk, progress = self.progress, segments = unit.segments
        logger.debug("fetching layer", metadata: ["digest": "\(first.blob.digest)", "size": "\(first.blob.size)", "segments": "\(segments.count)"])
        progress.requests.add(1, ordering: .relaxed)
        do {
            try LayerStream.decode(first, chunks: { feed in
                try client.blob(repository, digest: first.blob.digest, range: nil) { buffer in
                    if pool.shouldStop { throw PullCancelled() }
                    progress.downloadedBytes.add(Int64(buffer.count), ordering: .relaxed)
                    try feed(buffer)
                }
            }) { offset, bytes in
                for segment in segments {
                    try disk.writeSkippingZeros(bytes, at: offset - first.diskOffset + segment.diskOffset)
                }
                progress.doneBytes.add(Int64(bytes.count * segments.count), ordering: .relaxed)
            }
        } catch {
            throw Self.pullError(error, segment: first)
        }
        try disk.sync()
        try journal.markBlobDone(first.blob.digest)
    }

    /// The one error to report for a failed layer transfer: a write failure as itself, a bad layer
    /// as a layer error (naming layer and digest), anything else as the registry's error.
    static func pullError(_ error: any Error, segment: Segment) -> PullError {
        switch error {
        case let error as PullError: return error
        case let error as SegmentError:
            if case .output(let inner) = error.kind { return pullError(inner, segment: segment) }
            return .layer(error)
        case let error as FetchError:
            if let inner = error.underlying { return pullError(inner, segment: segment) }
            return .registry(error)
        case is PullCancelled:
            return .invalidOption("cancelled")
        default:
            return .layer(SegmentError(segment, .output(error)))
        }
    }
}
