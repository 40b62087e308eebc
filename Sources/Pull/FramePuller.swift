import Cache
import Codec
import Fetch
import Formats
import ImageFormat
import Logging
import Verity

/// Pulls an imgfs image frame by frame: frames already in the local mount cache are copied
/// (and re-verified), the rest are fetched in coalesced range requests per chunk layer (a whole
/// fresh layer is one request: its members are stored back to back), each member is gunzipped
/// and checked against the frame index before it is written. Holes are never written.
struct FramePuller {
    /// One gzip member and the frames that use it (several when the chunk deduplicated them).
    struct Member: Sendable {
        var offset: UInt64
        var length: UInt32
        var frames: [Int]
    }

    /// One range request: consecutive members of one layer blob.
    struct Run: Sendable {
        var layer: Digest
        var range: Range<Int64>
        var members: [Member]
        var frames: [Int] { members.flatMap(\.frames) }
    }

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
        let runs = Self.runs(for: remaining, index: index, maximumRunBytes: options.maximumRunBytes)
        let pool = WorkPool(runs)
        try pool.run(threads: options.jobs, name: "pull-frames") { () throws(PullError) in
            let decompressor: GzipFrameDecompressor
            do { decompressor = try GzipFrameDecompressor() } catch {
                throw .frame(layer: SHA256Hasher.digest([UInt8]()), frame: -1, reason: "\(error)")
            }
            return { (run) throws(PullError) in
                try DamageRetry.run("layer \(run.layer) bytes \(run.range.lowerBound)..<\(run.range.upperBound)", logger: logger) { () throws(PullError) in
                    try fetch(run, decompressor: decompressor, pool: pool)
                }
            }
        }
    }

    /// Groups the frames still missing into range requests, per layer in blob order.
    static func runs(for frames: [Int], index: FrameIndex, maximumRunBytes: Int64) -> [Run] {
        var membersByLayer = [Int: [UInt64: Member]]()
        for frame in frames {
            guard let location = index.frames[frame].location else { continue }
            membersByLayer[location.layer, default: [:]][location.compressedOffset, default:
                Member(offset: location.compressedOffset, length: location.compressedLength, frames: [])].frames.append(frame)
        }
        var runs = [Run]()
        for layer in membersByLayer.keys.sorted() {
            let digest = index.layers[layer].digest
            let members = (membersByLayer[layer] ?? [:]).values.sorted { $0.offset < $1.offset }
            var current: Run?
            for member in members {
                let start = Int64(member.offset), end = start + Int64(member.length)
                if var run = current, start - run.range.upperBound <= coalesceGap, end - run.range.lowerBound <= maximumRunBytes, start >= run.range.upperBound {
                    run.range = run.range.lowerBound..<end
                    run.members.append(member)
                    current = run
                } else {
                    if let run = current { runs.append(run) }
                    current = Run(layer: digest, range: start..<end, members: [member])
                }
            }
            if let run = current { runs.append(run) }
        }
        return runs
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
            let entry = index.frames[frame]
            let length = index.geometry.length(ofFrame: frame)
            guard locator.contains(entry.digest), let bytes = locator.bytes(for: entry.digest, length: length),
                  let verified = try? VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: length, expectedDigest: entry.digest) else {
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

    private func fetch(_ run: Run, decompressor: GzipFrameDecompressor, pool: WorkPool<Run>) throws(PullError) {
        var blob = [UInt8]()
        blob.reserveCapacity(run.range.count)
        let progress = self.progress
        progress.requests.add(1, ordering: .relaxed)
        do {
            try client.blob(repository, digest: run.layer, range: run.range) { buffer in
                if pool.shouldStop { throw PullCancelled() }
                blob.append(contentsOf: buffer)
                progress.downloadedBytes.add(Int64(buffer.count), ordering: .relaxed)
            }
        } catch {
            if error.underlying is PullCancelled { throw .invalidOption("cancelled") }
            throw .registry(error)
        }
        for member in run.members {
            let start = Int(Int64(member.offset) - run.range.lowerBound)
            guard let first = member.frames.first else { continue }
            let length = index.geometry.length(ofFrame: first)
            let bytes: [UInt8]
            do {
                bytes = try blob.withRawBytes { (raw) throws(CodecError) in
                    try decompressor.decompress(UnsafeRawBufferPointer(rebasing: raw[start..<start + Int(member.length)]), expectedSize: length)
                }
            } catch {
                throw .frame(layer: run.layer, frame: first, reason: "corrupt gzip member at offset \(member.offset): \(error)")
            }
            for frame in member.frames {
                let expected = index.frames[frame]
                let verified: VerifiedFrame
                do {
                    verified = try VerifiedFrame.verify(frame: frame, bytes: bytes, expectedLength: index.geometry.length(ofFrame: frame), expectedDigest: expected.digest)
                } catch {
                    throw .frame(layer: run.layer, frame: frame, reason: "\(error)")
                }
                try write(verified, frame: frame)
            }
        }
        try disk.sync()
        try journal.markFramesDone(run.frames)
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
