import ImageFormat
import SystemIO
import Verity

/// Puts encoded frames, in disk order, into chunk layers and the frame index.
///
/// Identical frames are stored once per chunk, not across chunks: a frame that changes then
/// changes only its own chunk layer, so re-pushing an edited disk uploads only the chunks that
/// hold edits (docs/FORMAT.md, "Deduplication").
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

    init(geometry: DiskGeometry, chunkSize: UInt64, layout: FrameIndex.Layout, spoolDirectory: String,
         base: PushBase? = nil, onChunk: @escaping (FinishedChunk) throws(PushError) -> Void) {
        self.base = base
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

        guard let member = frame.member else {
            entries.append((frame.digest, frame.isZero, nil, 0, 0))
            return
        }
        // Single-layer images must gunzip to the exact disk, so nothing is deduplicated there.
        if layout == .multiLayer, let stored = storedInChunk[frame.digest] {
            entries.append((frame.digest, frame.isZero, number, stored.offset, stored.length))
            return
        }
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
        if frame.isZero {
            uncompressedHasher.updateZeros(count: frame.length)
        } else if let buffer = frame.buffer {
            buffer.withUnsafeBytes { uncompressedHasher.update(UnsafeRawBufferPointer(rebasing: $0[0..<frame.length])) }
        }
        uncompressedSize += UInt64(frame.length)
        let length = UInt32(member.count)
        storedInChunk[frame.digest] = (offset, length)
        entries.append((frame.digest, frame.isZero, number, offset, length))
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
        }
        guard let spool else { return }
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
        let layer = ChunkLayer(number: chunkNumber, digest: compressedHasher.finalize(), compressedSize: spool.size,
                               diskOffset: diskOffset, diskLength: diskEnd - diskOffset,
                               uncompressedSize: uncompressedSize, uncompressedDigest: uncompressedHasher.finalize())
        chunks.append(layer)
        try onChunk(FinishedChunk(layer: layer, spool: spool))
    }
}
