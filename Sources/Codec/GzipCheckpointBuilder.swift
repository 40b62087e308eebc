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

    private let members: GzipMemberInflater
    private let window: UnsafeMutablePointer<Bytef>
    private var lastCheckpoint: UInt64?

    public init(spanSize: Int, outputBufferSize: Int = 1 << 20) throws(CodecError) {
        guard spanSize > 0 else { throw .checkpointInvalid(reason: "span size \(spanSize) is not positive") }
        self.spanSize = UInt64(spanSize)
        members = try GzipMemberInflater(outputBufferSize: outputBufferSize)
        window = .allocate(capacity: SpanWindow.gzipMaximum)
    }

    deinit {
        window.deallocate()
    }

    /// Uncompressed bytes produced so far.
    public var uncompressedSize: UInt64 { members.produced }
    /// Compressed bytes consumed so far.
    public var compressedSize: UInt64 { members.consumed }

    public func decode(
        _ input: UnsafeRawBufferPointer,
        output: (UnsafeRawBufferPointer) throws -> Void,
        checkpoint: (SpanCheckpoint) throws -> Void
    ) throws(CodecError) {
        try members.decode(input, flush: Z_BLOCK, output: output, memberStarts: { () throws(CodecError) in
            // A member start needs no window: the cheapest checkpoint there is.
            if due() {
                try emit(SpanCheckpoint(uncompressedOffset: members.produced, compressedOffset: members.consumed, bitCount: 0, window: [],
                                        isMemberStart: true), to: checkpoint)
            }
        }, stepped: { (type) throws(CodecError) in
            // 128: stopped at a block boundary (or just after the gzip header); 64: the block
            // that follows is the member's last, so nothing after it is worth a point.
            if type & 128 != 0 && type & 64 == 0 && due() {
                try emit(currentCheckpoint(bitCount: UInt8(type & 7)), to: checkpoint)
            }
        })
    }

    /// Ends the stream: fails if it was empty or stopped inside a member.
    public func finish() throws(CodecError) {
        try members.finish()
    }

    private func due() -> Bool {
        guard let lastCheckpoint else { return true }
        return members.produced - lastCheckpoint >= spanSize
    }

    private func emit(_ point: SpanCheckpoint, to checkpoint: (SpanCheckpoint) throws -> Void) throws(CodecError) {
        lastCheckpoint = point.uncompressedOffset
        do { try checkpoint(point) } catch { throw .consumer(error) }
    }

    private func currentCheckpoint(bitCount: UInt8) -> SpanCheckpoint {
        var length: uInt = 0
        inflateGetDictionary(members.stream.pointer, window, &length)
        let history = [UInt8](UnsafeBufferPointer(start: window, count: Int(length)))
        return SpanCheckpoint(uncompressedOffset: members.produced, compressedOffset: members.consumed, bitCount: bitCount, window: history, isMemberStart: false)
    }
}
