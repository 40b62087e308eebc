import Codec
import ImgfsFormat
import Synchronization
import SystemIO
import Verity

/// A frame read from the source, on its way to a compression worker.
struct FrameJob: Sendable {
    var index: Int
    var length: Int
    /// nil when the sparse map says the frame lies wholly in a hole: nothing was read.
    var buffer: [UInt8]?
}

/// A frame after a worker: its digest, whether it is all zeros, and the gzip member to store.
struct EncodedFrame: Sendable {
    var index: Int
    var length: Int
    var digest: Digest
    var isZero: Bool
    /// nil for zero frames of multi-layer images (not stored), and for deferred frames.
    var member: [UInt8]?
    /// The uncompressed bytes (returned to the buffer pool after the assembler hashed them).
    var buffer: [UInt8]?
    /// Not compressed because the base image has the same frame: its chunk layer is likely
    /// re-used. The assembler compresses it after all if its chunk turns out changed.
    var isDeferred = false
}

/// Per-thread frame work: zero detection, SHA-256, compression. Not thread-safe (owns a compressor).
final class FrameEncoder {
    private let compressor: GzipFrameCompressor
    private let zeroFrames: ZeroFrames
    private let storeZeroFrames: Bool
    private let base: BaseFrames?

    init(level: Int, zeroFrames: ZeroFrames, storeZeroFrames: Bool, base: BaseFrames? = nil) throws(PushError) {
        do { compressor = try GzipFrameCompressor(level: level) } catch { throw .compression(frame: -1, error) }
        self.zeroFrames = zeroFrames
        self.storeZeroFrames = storeZeroFrames
        self.base = base
    }

    func encode(_ job: FrameJob) throws(PushError) -> EncodedFrame {
        guard let buffer = job.buffer, !buffer.withUnsafeBytes({ FileIO.isAllZero(UnsafeRawBufferPointer(rebasing: $0[0..<job.length])) }) else {
            let zero = zeroFrames.frame(length: job.length)
            base?.note(frame: job.index, digest: zero.digest, isHole: true)
            return EncodedFrame(index: job.index, length: job.length, digest: zero.digest, isZero: true,
                                member: storeZeroFrames ? zero.member : nil, buffer: job.buffer)
        }
        let digest = buffer.withUnsafeBytes { SHA256Hasher.digest(UnsafeRawBufferPointer(rebasing: $0[0..<job.length])) }
        if let base, base.note(frame: job.index, digest: digest, isHole: false) {
            return EncodedFrame(index: job.index, length: job.length, digest: digest, isZero: false, member: nil,
                                buffer: buffer, isDeferred: true)
        }
        let member = try buffer.withBytes { (raw) throws(PushError) in
            try compress(UnsafeRawBufferPointer(rebasing: raw[0..<job.length]), frame: job.index)
        }
        return EncodedFrame(index: job.index, length: job.length, digest: digest, isZero: false, member: member, buffer: buffer)
    }

    func compress(_ bytes: UnsafeRawBufferPointer, frame: Int) throws(PushError) -> [UInt8] {
        do throws(CodecError) { return try compressor.compress(bytes) } catch { throw .compression(frame: frame, error) }
    }
}

/// The base image's frames as the encoders see them, when pushing a written disk over it: a
/// frame whose digest and hole flag are the base's need not be compressed while its chunk has
/// shown no change, since the chunk's layer will be the base's. Shared by the encoders.
final class BaseFrames: Sendable {
    let index: FrameIndex
    let framesPerChunk: Int
    private let changedChunks = Mutex<Set<Int>>([])

    init(index: FrameIndex, framesPerChunk: Int) {
        self.index = index
        self.framesPerChunk = max(1, framesPerChunk)
    }

    /// Records what frame `frame` holds now; returns whether its compression may be deferred.
    func note(frame: Int, digest: Digest, isHole: Bool) -> Bool {
        let chunk = frame / framesPerChunk
        let same = frame < index.frames.count && index.frames[frame].digest == digest && index.frames[frame].isHole == isHole
        return changedChunks.withLock { changed in
            if !same { changed.insert(chunk) }
            return same && !isHole && !changed.contains(chunk)
        }
    }
}

/// The digest and gzip member of an all-zero frame, computed once per length (a disk has at
/// most two frame lengths: the frame size and the last frame's).
final class ZeroFrames: Sendable {
    struct Frame: Sendable {
        var digest: Digest
        var member: [UInt8]
    }

    private let full: Frame
    private let last: Frame
    private let fullLength: Int
    private let lastLength: Int

    init(frameSize: Int, lastLength: Int, level: Int) throws(PushError) {
        let compressor: GzipFrameCompressor
        do { compressor = try GzipFrameCompressor(level: level) } catch { throw .compression(frame: -1, error) }
        func make(_ length: Int) throws(PushError) -> Frame {
            let zeros = [UInt8](repeating: 0, count: length)
            do throws(CodecError) {
                let member = try compressor.compress(zeros)
                return Frame(digest: SHA256Hasher.digest(zeros), member: member)
            } catch {
                throw .compression(frame: -1, error)
            }
        }
        self.fullLength = frameSize
        self.lastLength = lastLength
        full = try make(frameSize)
        last = lastLength == frameSize ? full : try make(max(lastLength, 0))
    }

    func frame(length: Int) -> Frame { length == fullLength ? full : last }
}
