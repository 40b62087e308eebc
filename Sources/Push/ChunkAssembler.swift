import Codec
import ImgfsFormat
import SystemIO
import Verity

/// Puts encoded frames, in disk order, into chunk layers and the frame index.
///
/// Identical frames are stored once per chunk, not across chunks: a frame that changes then
/// changes only its own chunk layer, so re-pushing an edited disk uploads only the chunks that
/// hold edits (docs/FORMAT.md, "Deduplication").
///
/// Over a base image, frames the encoders deferred (`EncodedFrame.isDeferred`) wait until their
/// chunk is decided: re-used whole, they are never compressed; once the chunk needs a layer of
/// its own, they are read again (`reread`), checked against the digest they were hashed with
/// and compressed here, in frame order, before the next member.
final class ChunkAssembler {
    struct FinishedChunk {
        var layer: ChunkLayer
        var spool: SpoolFile
    }

    private let geometry: DiskGeometry
    private let framesPerChunk: Int
    private let layout: FrameIndex.Layout
    private let spoolDirectory: String
    private let fsverity = FSVerityHasher()
    private let onChunk: (FinishedChunk) throws(PushError) -> Void
    private let base: PushBase?
    private let reread: ((_ frame: Int, _ length: Int) throws(PushError) -> [UInt8])?
    private let compressionLevel: Int
    private var compressor: GzipFrameCompressor?
    /// Deferred frames of the chunk being filled that are not in its spool yet, in frame order.
    private var deferred: [Int] = []
    /// Deferred frames compressed here after all, because their chunk changed.
    private(set) var deferredFramesCompressed = 0
    /// Chunk layers taken unchanged from `base` (not handed to `onChunk`, so never uploaded).
    private(set) var reusedChunks = [ChunkLayer]()

    /// Per frame: digest, hole flag, and (chunk number, offset, length) if stored.
    private var entries = [(digest: Digest, isHole: Bool, chunk: Int?, offset: UInt64, length: UInt32)]()
    private var chunks = [ChunkLayer]()

    // The chunk being filled.
    private var chunkNumber = 0
    private var spool: SpoolFile?
    private var compressedHasher = SHA256Hasher()
    private var uncompressedHasher = SHA256Hasher()
    private var uncompressedSize: UInt64 = 0
    private var storedInChunk = [Digest: (offset: UInt64, length: UInt32)]()

    /// - Parameters:
    ///   - base: the image a written disk came from, with `reread` to read a frame of the disk
    ///     again and the `compressionLevel` to compress deferred frames with.
    init(geometry: DiskGeometry, chunkSize: UInt64, layout: FrameIndex.Layout, spoolDirectory: String,
         base: PushBase? = nil, reread: ((_ frame: Int, _ length: Int) throws(PushError) -> [UInt8])? = nil,
         compressionLevel: Int = 6, onChunk: @escaping (FinishedChunk) throws(PushError) -> Void) {
        self.base = base
        self.reread = reread
        self.compressionLevel = compressionLevel
        self.geometry = geometry
        self.layout = layout
        self.framesPerChunk = layout == .singleLayer ? max(1, geometry.frameCount) : Int(chunkSize / UInt64(geometry.frameSize))
        self.spoolDirectory = spoolDirectory
        self.onChunk = onChunk
        entries.reserveCapacity(geometry.frameCount)
    }

    /// Adds the next frame; frames must arrive in index order.
    func add(_ frame: EncodedFrame) throws(PushError) {
        precondition(frame.index == entries.count, "frames reach the assembler in disk order")
        let number = frame.index / framesPerChunk
        if number != chunkNumber {
            try finishChunk()
            chunkNumber = number
        }
        if frame.isZero {
            fsverity.updateZeros(count: UInt64(frame.length))
        } else if let buffer = frame.buffer {
            buffer.withUnsafeBytes { fsverity.update(UnsafeRawBufferPointer(rebasing: $0[0..<frame.length])) }
        }

        entries.append((frame.digest, frame.isZero, nil, 0, 0))
        if frame.isDeferred {
            guard spool != nil, let buffer = frame.buffer else {
                deferred.append(frame.index)
                return
            }
            // The chunk already has a layer of its own (an encoder deferred this frame before it
            // learnt that): compress it now, from the bytes at hand.
            try store(frame.index) { () throws(PushError) in
                let member = try buffer.withBytes { (raw) throws(PushError) in
                    try compress(UnsafeRawBufferPointer(rebasing: raw[0..<frame.length]), frame: frame.index)
                }
                return (member, buffer)
            }
            return
        }
        guard let member = frame.member else { return }
        try storeDeferred()
        try store(frame.index) { () throws(PushError) in (member, frame.isZero ? nil : frame.buffer) }
    }

    /// Puts frame `index`'s member into the chunk's spool, or points it at an identical member
    /// already there (then `encode` is not called). `encode` gives the member and the frame's
    /// uncompressed bytes, nil for zeros.
    private func store(_ index: Int, encode: () throws(PushError) -> (member: [UInt8], bytes: [UInt8]?)) throws(PushError) {
        let digest = entries[index].digest
        let length = geometry.length(ofFrame: index)
        // Single-layer images must gunzip to the exact disk, so nothing is deduplicated there.
        if layout == .multiLayer, let stored = storedInChunk[digest] {
            entries[index].chunk = chunkNumber
            entries[index].offset = stored.offset
            entries[index].length = stored.length
            return
        }
        let (member, bytes) = try encode()
        let chunkSpool: SpoolFile
        do throws(IOError) {
            if let spool { chunkSpool = spool } else {
                chunkSpool = try SpoolFile(directory: spoolDirectory, prefix: "imgfs-push")
                spool = chunkSpool
            }
            try chunkSpool.append(member)
        } catch {
            throw PushError(error)
        }
        let offset = UInt64(chunkSpool.size) - UInt64(member.count)
        compressedHasher.update(member)
        if let bytes {
            bytes.withUnsafeBytes { uncompressedHasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<length])) }
        } else {
            uncompressedHasher.updateZeros(count: length)
        }
        uncompressedSize += UInt64(length)
        storedInChunk[digest] = (offset, UInt32(member.count))
        entries[index].chunk = chunkNumber
        entries[index].offset = offset
        entries[index].length = UInt32(member.count)
    }

    /// Reads, checks and compresses the chunk's deferred frames, and stores them in frame order.
    private func storeDeferred() throws(PushError) {
        guard !deferred.isEmpty else { return }
        guard let reread else { throw .source("internal: frames were deferred without a way to read them again") }
        let frames = deferred
        deferred = []
        for index in frames {
            try store(index) { () throws(PushError) in
                let length = geometry.length(ofFrame: index)
                let bytes = try reread(index, length)
                let member = try bytes.withBytes { (raw) throws(PushError) in
                    let frame = UnsafeRawBufferPointer(rebasing: raw[0..<length])
                    guard SHA256Hasher.digest(frame) == entries[index].digest else {
                        throw PushError.source("the disk changed while it was pushed: frame \(index) (offset \(geometry.offset(ofFrame: index))) reads differently now")
                    }
                    return try compress(frame, frame: index)
                }
                return (member, bytes)
            }
        }
    }

    /// Deferred frames are few (those of changed chunks that preceded the change), so they are
    /// compressed on this thread.
    private func compress(_ bytes: UnsafeRawBufferPointer, frame: Int) throws(PushError) -> [UInt8] {
        deferredFramesCompressed += 1
        do throws(CodecError) {
            if compressor == nil { compressor = try GzipFrameCompressor(level: compressionLevel) }
            return try compressor!.compress(bytes)
        } catch {
            throw .compression(frame: frame, error)
        }
    }

    /// Closes the last chunk and returns the frame index, the chunk layers and the fs-verity digest.
    func finish() throws(PushError) -> (index: FrameIndex, chunks: [ChunkLayer], fsverity: Digest) {
        try finishChunk()
        var layerNumbers = [Digest: Int]()
        var layerRefs = [FrameIndex.LayerRef]()
        var chunkLayer = [Int: Int]()
        for chunk in chunks {
            if let existing = layerNumbers[chunk.digest] {
                chunkLayer[chunk.number] = existing
            } else {
                layerNumbers[chunk.digest] = layerRefs.count
                chunkLayer[chunk.number] = layerRefs.count
                layerRefs.append(FrameIndex.LayerRef(digest: chunk.digest, compressedSize: chunk.compressedSize))
            }
        }
        let frames = entries.map { entry in
            FrameIndex.FrameEntry(digest: entry.digest, isHole: entry.isHole, location: entry.chunk.flatMap { chunk in
                chunkLayer[chunk].map { FrameIndex.Location(layer: $0, compressedOffset: entry.offset, compressedLength: entry.length) }
            })
        }
        let index = FrameIndex(geometry: geometry, layout: layout, layers: layerRefs, frames: frames)
        return (index, chunks, fsverity.finalize())
    }

    private func finishChunk() throws(PushError) {
        defer {
            spool = nil
            compressedHasher = SHA256Hasher()
            uncompressedHasher = SHA256Hasher()
            uncompressedSize = 0
            storedInChunk.removeAll(keepingCapacity: true)
            deferred = []
        }
        guard spool != nil || !deferred.isEmpty else { return }
        let firstFrame = chunkNumber * framesPerChunk
        let lastFrame = min(geometry.frameCount, firstFrame + framesPerChunk) - 1
        let diskOffset = geometry.offset(ofFrame: firstFrame)
        let diskEnd = geometry.offset(ofFrame: lastFrame) + UInt64(geometry.length(ofFrame: lastFrame))
        if let base, let reused = base.reusableLayer(chunk: chunkNumber, frames: firstFrame..<lastFrame + 1,
                                                     digest: { entries[$0].digest }, isHole: { entries[$0].isHole }) {
            // Unchanged since the base: its members, not the ones just encoded (the compression
            // level may differ), and no upload. The spool is dropped by the defer above.
            for frame in firstFrame...lastFrame {
                if let location = base.index.frames[frame].location {
                    entries[frame].chunk = chunkNumber
                    entries[frame].offset = location.compressedOffset
                    entries[frame].length = location.compressedLength
                } else {
                    entries[frame].chunk = nil
                }
            }
            chunks.append(reused)
            reusedChunks.append(reused)
            return
        }
        try storeDeferred()
        guard let spool else { return }
        let layer = ChunkLayer(number: chunkNumber, digest: compressedHasher.finalize(), compressedSize: spool.size,
                               diskOffset: diskOffset, diskLength: diskEnd - diskOffset,
                               uncompressedSize: uncompressedSize, uncompressedDigest: uncompressedHasher.finalize())
        chunks.append(layer)
        try onChunk(FinishedChunk(layer: layer, spool: spool))
    }
}
