import CZlib

/// Streaming gunzip (several members, as `GzipStreamDecoder`) that also records a
/// `SpanCheckpoint` at the first deflate block boundary or member start at least `spanSize`
/// uncompressed bytes after the previous one, as zlib's `zran` does with `Z_BLOCK`.
///
/// Every decoded byte before a checkpoint reaches `output` before the checkpoint reaches
/// `checkpoint`, so a caller hashing spans can close one when the next checkpoint arrives.
/// The first checkpoint is always at offset 0. Not thread-safe.
public final class GzipCheckpointBuilder {
    public let spanSize: UInt64

    private let stream = ZlibStream()
    private let buffer: UnsafeMutableRawBufferPointer
    private let window: UnsafeMutablePointer<Bytef>
    private var consumed: UInt64 = 0
    private var produced: UInt64 = 0
    private var lastCheckpoint: UInt64?
    private var inMember = false
    private var needsReset = false
    private var membersDecoded = 0

    public init(spanSize: Int, outputBufferSize: Int = 1 << 20) throws(CodecError) {
        guard spanSize > 0 else { throw .checkpointInvalid(reason: "span size \(spanSize) is not positive") }
        self.spanSize = UInt64(spanSize)
        buffer = .allocate(byteCount: max(outputBufferSize, 4096), alignment: 16)
        window = .allocate(capacity: SpanWindow.gzipMaximum)
        let status = imgfs_inflateInit2(stream.pointer, GzipStreamDecoder.windowBits)
        guard status == Z_OK else {
            buffer.deallocate()
            window.deallocate()
            throw status == Z_MEM_ERROR ? .outOfMemory("zlib inflate state") : .zlib(code: status, message: "inflateInit2 failed", inputOffset: 0)
        }
    }

    deinit {
        inflateEnd(stream.pointer)
        buffer.deallocate()
        window.deallocate()
    }

    /// Uncompressed bytes produced so far.
    public var uncompressedSize: UInt64 { produced }
    /// Compressed bytes consumed so far.
    public var compressedSize: UInt64 { consumed }

    public func decode(
        _ input: UnsafeRawBufferPointer,
        output: (UnsafeRawBufferPointer) throws -> Void,
        checkpoint: (SpanCheckpoint) throws -> Void
    ) throws(CodecError) {
        var rest = input
        while !rest.isEmpty {
            let slice = UnsafeRawBufferPointer(rebasing: rest.prefix(zlibMaxSlice))
            try decodeSlice(slice, output: output, checkpoint: checkpoint)
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(slice.count))
        }
    }

    /// Ends the stream: fails if it was empty or stopped inside a member.
    public func finish() throws(CodecError) {
        if inMember || membersDecoded == 0 { throw .truncatedStream(inputOffset: consumed) }
    }

    private func due() -> Bool {
        guard let lastCheckpoint else { return true }
        return produced - lastCheckpoint >= spanSize
    }

    private func emit(_ point: SpanCheckpoint, to checkpoint: (SpanCheckpoint) throws -> Void) throws(CodecError) {
        lastCheckpoint = point.uncompressedOffset
        do { try checkpoint(point) } catch { throw .consumer(error) }
    }

    private func decodeSlice(
        _ input: UnsafeRawBufferPointer,
        output: (UnsafeRawBufferPointer) throws -> Void,
        checkpoint: (SpanCheckpoint) throws -> Void
    ) throws(CodecError) {
        let z = stream.pointer
        stream.setInput(input)
        while true {
            if needsReset {
                guard z.pointee.avail_in > 0 else { return }
                inflateReset(z)
                needsReset = false
            }
            if !inMember && z.pointee.avail_in > 0 {
                inMember = true
                // A member start needs no window: the cheapest checkpoint there is.
                if due() {
                    try emit(SpanCheckpoint(uncompressedOffset: produced, compressedOffset: consumed, bitCount: 0, window: [], isMemberStart: true), to: checkpoint)
                }
            }
            z.pointee.next_out = buffer.baseAddress?.assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(buffer.count)
            let availableBefore = z.pointee.avail_in
            let status = inflate(z, Z_BLOCK)
            consumed += UInt64(availableBefore - z.pointee.avail_in)
            let count = buffer.count - Int(z.pointee.avail_out)
            if count > 0 {
                produced += UInt64(count)
                try deliver(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), to: output)
            }
            switch status {
            case Z_STREAM_END:
                inMember = false
                needsReset = true
                membersDecoded += 1
            case Z_OK:
                let type = z.pointee.data_type
                // 128: stopped at a block boundary (or just after the gzip header); 64: the
                // block that follows is the member's last, so nothing after it is worth a point.
                if type & 128 != 0 && type & 64 == 0 && due() {
                    try emit(currentCheckpoint(bitCount: UInt8(type & 7)), to: checkpoint)
                }
                if z.pointee.avail_in == 0 && z.pointee.avail_out > 0 { return }
            case Z_BUF_ERROR:
                return
            case Z_MEM_ERROR:
                throw .outOfMemory("zlib inflate window")
            default:
                throw .zlib(code: status, message: stream.message, inputOffset: consumed)
            }
        }
    }

    private func currentCheckpoint(bitCount: UInt8) -> SpanCheckpoint {
        var length: uInt = 0
        inflateGetDictionary(stream.pointer, window, &length)
        let history = [UInt8](UnsafeBufferPointer(start: window, count: Int(length)))
        return SpanCheckpoint(uncompressedOffset: produced, compressedOffset: consumed, bitCount: bitCount, window: history, isMemberStart: false)
    }
}
