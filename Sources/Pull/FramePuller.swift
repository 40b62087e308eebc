import Cache
import Fetch
import ImageLayouts
import ImgfsFormat
import Logging
import PieceFetch
import Verity

/// Pulls an imgfs image frame by frame: frames already in the local mount cache are copied
/// (and re-verified), the rest are fetched in coalesced range requests per chunk layer (a whole
/// fresh layer is one request: its members are stored back to back) and decoded and verified by
/// `RangeRequest.decode` before they are written. Holes are never written.
struct FramePuller {
    /// Members closer than this are fetched together, gap included: one request beats two.
    static let coalesceGap: Int64 = 256 * 1024

    let client: RegistryClient
    let repository: String
    let index: FrameIndex
    let disk: SparseDisk
    let journal: PullJournal
    let progress: PullProgress
    let options: PullOptions
    let logger: Logger

    func run() throws(PullError) {
        let geometry = index.geometry
        var remaining = [Int]()
        var buffer = [UInt8](repeating: 0, count: geometry.frameSize)
        var rechecked = 0
        for (frame, entry) in index.frames.enumerated() where !entry.isHole {
            // A frame a previous run journalled is re-read and hashed, not trusted because the
            // journal says so: the file may have been damaged or written to since.
            if journal.isFrameDone(frame), try isIntact(frame, buffer: &buffer) {
                progress.doneBytes.add(Int64(geometry.length(ofFrame: frame)), ordering: .relaxed)
            } else {
                if journal.isFrameDone(frame) { rechecked += 1 }
                remaining.append(frame)
            }
        }
        if rechecked > 0 {
            logger.info("frames of the resumed pull no longer match their digests; fetching them again", metadata: ["count": "\(rechecked)"])
        }
        if remaining.count < index.frames.filter({ !$0.isHole }).count { progress.unitsResumed.add(1, ordering: .relaxed) }
        remaining = try copyFromCache(remaining)
        let requests = RangeRequest.plan(remaining, index: index, maxBytes: options.maximumRunBytes, gap: Self.coalesceGap)
        let pool = WorkPool(requests)
        try pool.run(threads: options.jobs, name: "pull-frames") { (request) throws(PullError) in
            try PullError.retryingDamage("layer \(request.blob) bytes \(request.range)", logger: logger) { () throws(PullError) in
                try fetch(request, pool: pool)
            }
        }
    }

    /// Copies frames the mount cache has verified copies of; returns the frames still missing.
    private func copyFromCache(_ frames: [Int]) throws(PullError) -> [Int] {
        guard let root = options.cacheRoot, !frames.isEmpty else { return frames }
        let wanted = Set(frames.map { index.frames[$0].digest })
        // Exclude nothing: the cache entry of this very image (a mount of it) is the likeliest source.
        let locator = SharedFrameLocator(root: root, excluding: CacheKey(digest: SHA256Hasher.digest([UInt8]())), wanted: wanted, logger: logger)
        guard locator.count > 0 else { return frames }
        var missing = [Int]()
        var copied = [Int]()
        for frame in frames {
            guard let verified = locator.verifiedFrame(frame, of: index) else {
                missing.append(frame)
                continue
            }
            try write(verified, frame: frame)
            copied.append(frame)
        }
        if !copied.isEmpty {
            try disk.sync()
            try journal.markFramesDone(copied)
            progress.framesFromCache.add(copied.count, ordering: .relaxed)
            logger.info("frames copied from the mount cache", metadata: ["count": "\(copied.count)"])
        }
        return missing
    }

    private func fetch(_ request: RangeRequest, pool: WorkPool<RangeRequest>) throws(PullError) {
        var blob = [UInt8]()
        blob.reserveCapacity(request.range.count)
        let progress = self.progress
        progress.requests.add(1, ordering: .relaxed)
        do {
            try client.blob(repository, digest: request.blob, range: request.range) { buffer in
                if pool.shouldStop { throw PullCancelled() }
                blob.append(contentsOf: buffer)
                progress.downloadedBytes.add(Int64(buffer.count), ordering: .relaxed)
            }
        } catch {
            if error.underlying is PullCancelled { throw .invalidOption("cancelled") }
            throw .registry(error)
        }
        var failure: PullError?
        request.decode(blob, index: index) { frame, result in
            guard failure == nil else { return }
            do throws(PullError) {
                try write(result.mapError { PullError.frame(layer: request.blob, frame: frame, reason: $0.reason) }.get(), frame: frame)
            } catch { failure = error }
        }
        if let failure { throw failure }
        try disk.sync()
        try journal.markFramesDone(request.frames)
    }

    /// Whether the bytes of `frame` in the partial disk hash to the index's digest.
    private func isIntact(_ frame: Int, buffer: inout [UInt8]) throws(PullError) -> Bool {
        let length = index.geometry.length(ofFrame: frame)
        let offset = index.geometry.offset(ofFrame: frame)
        let disk = self.disk
        try buffer.withUnsafeMutableBytes { raw in
            Result { () throws(PullError) in try disk.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<length]), at: offset) }
        }.get()
        return buffer.withUnsafeBytes { SHA256Hasher.digest(UnsafeRawBufferPointer(rebasing: $0[0..<length])) } == index.frames[frame].digest
    }

    private func write(_ frame: VerifiedFrame, frame index: Int) throws(PullError) {
        let offset = self.index.geometry.offset(ofFrame: index)
        try disk.clear(offset..<offset + UInt64(frame.bytes.count))
        try frame.bytes.withRawBytes { (raw) throws(PullError) in try disk.writeSkippingZeros(raw, at: offset) }
        progress.doneBytes.add(Int64(frame.bytes.count), ordering: .relaxed)
    }
}

extension Array where Element == UInt8 {
    // The standard library's withUnsafeBytes is `rethrows`, which erases typed throws.
    func withRawBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try self.withUnsafeBytes { raw in Result { () throws(E) -> R in try body(raw) } }.get()
    }
}
