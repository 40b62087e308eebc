/// Span checkpoints for Apple framed LZ4 (tart's disk layers): a checkpoint is a block
/// boundary, at the first block starting at least `spanSize` bytes after the previous one.
///
/// Apple's encoder compresses a stream continuously, so a block may copy from up to 64 KiB of
/// the blocks before it: each checkpoint keeps that history as its window (empty only at the
/// stream's start). The decoder rejects any reach beyond the window it is given, so a stream
/// whose blocks are independent simply never uses it. Not thread-safe.
public final class AppleLZ4CheckpointBuilder {
    public let spanSize: UInt64
    private let decoder = AppleLZ4Decoder()
    private var lastCheckpoint: UInt64?
    private var consumed: UInt64 = 0

    public init(spanSize: Int) throws(CodecError) {
        guard spanSize > 0 else { throw .checkpointInvalid(reason: "span size \(spanSize) is not positive") }
        self.spanSize = UInt64(spanSize)
    }

    public var uncompressedSize: UInt64 { decoder.produced }
    public var compressedSize: UInt64 { consumed }

    public func decode(
        _ input: UnsafeRawBufferPointer,
        output: (UnsafeRawBufferPointer) throws -> Void,
        checkpoint: (SpanCheckpoint) throws -> Void
    ) throws(CodecError) {
        // The hook only lives for this call, since `checkpoint` is not escaping.
        try withoutActuallyEscaping(checkpoint) { checkpoint throws(CodecError) in
            decoder.blockStart = { [unowned self] compressedOffset, uncompressedOffset, history throws(CodecError) in
                if let last = lastCheckpoint, uncompressedOffset - last < spanSize { return }
                lastCheckpoint = uncompressedOffset
                let point = SpanCheckpoint(uncompressedOffset: uncompressedOffset, compressedOffset: compressedOffset, bitCount: 0, window: Array(history), isMemberStart: false)
                do { try checkpoint(point) } catch { throw .consumer(error) }
            }
            defer { decoder.blockStart = nil }
            try decoder.decode(input, output: output)
        }
        consumed += UInt64(input.count)
    }

    public func finish() throws(CodecError) {
        try decoder.finish()
    }
}

/// Decodes one span of Apple framed LZ4 from its checkpoint. Stateless; any thread.
public enum AppleLZ4SpanDecoder {
    /// The `length` uncompressed bytes from `checkpoint`; `compressed` holds the stream from
    /// `checkpoint.compressedOffset` and may run past the span's end.
    public static func decode(from checkpoint: SpanCheckpoint, compressed: UnsafeRawBufferPointer, length: Int) throws(CodecError) -> [UInt8] {
        guard checkpoint.bitCount == 0, !checkpoint.isMemberStart else {
            throw .checkpointInvalid(reason: "an LZ4 checkpoint has leftover bits or a member start")
        }
        guard checkpoint.window.count <= SpanWindow.lz4Maximum else {
            throw .checkpointInvalid(reason: "window of \(checkpoint.window.count) bytes is above LZ4's \(SpanWindow.lz4Maximum)")
        }
        let decoder = AppleLZ4Decoder(resumingAt: checkpoint.compressedOffset, history: checkpoint.window)
        var out = [UInt8]()
        out.reserveCapacity(length)
        // Feed block-sized pieces so decoding stops soon after the span is full.
        var rest = compressed
        while out.count < length && !rest.isEmpty && !decoder.isFinished {
            let piece = UnsafeRawBufferPointer(rebasing: rest.prefix(256 * 1024))
            try decoder.decode(piece) { out.append(contentsOf: $0) }
            rest = UnsafeRawBufferPointer(rebasing: rest.dropFirst(piece.count))
        }
        guard out.count >= length else { throw .spanTruncated(produced: out.count, expected: length) }
        if out.count > length { out.removeSubrange(length...) }
        return out
    }

    public static func decode(from checkpoint: SpanCheckpoint, compressed: [UInt8], length: Int) throws(CodecError) -> [UInt8] {
        try withTypedBytes(compressed) { bytes throws(CodecError) in try decode(from: checkpoint, compressed: bytes, length: length) }
    }
}
