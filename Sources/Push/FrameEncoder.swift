import Codec
import ImageFormat
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
    /// nil for zero frames of multi-layer images (not stored).
    var member: [UInt8]?
    /// The uncompressed bytes (returned to the buffer pool after the assembler hashed them).
    var buffer: [UInt8]?
}

/// Per-thread frame work: zero detection, SHA-256, compression. Not thread-safe (owns a compressor).
final class FrameEncoder {
    private let compressor: GzipFrameCompressor
    private let zeroFrames: ZeroFrames
    private let storeZeroFrames: Bool

    init(level: Int, zeroFrames: ZeroFrames, storeZeroFrames: Bool) throws(PushError) {
        do { compressor = try GzipFrameCompressor(level: level) } catch { throw .compression(frame: -1, error) }
        self.zeroFrames = zeroFrames
        self.storeZeroFrames = storeZeroFrames
    }

    func encode(_ job: FrameJob) throws(PushError) -> EncodedFrame {
        guard let buffer = job.buffer, !buffer.withUnsafeBytes({ FileIO.isAllZero(UnsafeRawBufferPointer(rebasing: $0[0..<job.length])) }) else {
            let zero = zeroFrames.frame(length: job.length)
            return EncodedFrame(index: job.index, length: job.length, digest: zero.digest, isZero: true,
                                member: storeZeroFrames ? zero.member : nil, buffer: job.buffer)
        }
        let (digest, member) = try buffer.withBytes { (raw) throws(PushError) in
            let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<job.length])
            let digest = SHA256Hasher.digest(bytes)
            do throws(CodecError) {
                return (digest, try compressor.compress(bytes))
            } catch {
                throw .compression(frame: job.index, error)
            }
        }
        return EncodedFrame(index: job.index, length: job.length, digest: digest, isZero: false, member: member, buffer: buffer)
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
