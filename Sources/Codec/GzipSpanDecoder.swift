import CZlib

/// Decodes one span of a gzip stream (one or more members) from a `SpanCheckpoint`, given only
/// the compressed bytes from `checkpoint.compressedStart` on, as `zran`'s extract does: raw
/// deflate primed with the leftover bits and the window, switching to gzip mode at each
/// following member. Not thread-safe: one per thread.
public final class GzipSpanDecoder {
    private let stream = ZlibStream()

    public init() throws(CodecError) {
        let status = imgfs_inflateInit2(stream.pointer, -15)
        guard status == Z_OK else {
            throw status == Z_MEM_ERROR ? .outOfMemory("zlib inflate state") : .zlib(code: status, message: "inflateInit2 failed", inputOffset: 0)
        }
    }

    deinit { inflateEnd(stream.pointer) }

    /// Fills `output` with the uncompressed bytes that start at `checkpoint`. `compressed` holds
    /// the stream's bytes from `checkpoint.compressedStart`; it may run past the span's end.
    /// Fails with `.spanTruncated` if it ends before `output` is full, and with
    /// `.checkpointInvalid` or `.zlib` if the checkpoint does not fit the bytes.
    public func decode(from checkpoint: SpanCheckpoint, compressed: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(CodecError) {
        guard checkpoint.bitCount < 8 else {
            throw .checkpointInvalid(reason: "bit count \(checkpoint.bitCount) is above 7")
        }
        guard checkpoint.window.count <= SpanWindow.gzipMaximum else {
            throw .checkpointInvalid(reason: "window of \(checkpoint.window.count) bytes is above the deflate window of \(SpanWindow.gzipMaximum)")
        }
        guard checkpoint.bitCount == 0 || checkpoint.compressedOffset > 0 else {
            throw .checkpointInvalid(reason: "\(checkpoint.bitCount) leftover bits before compressed offset 0")
        }
        if checkpoint.isMemberStart && (checkpoint.bitCount != 0 || !checkpoint.window.isEmpty) {
            throw .checkpointInvalid(reason: "a member start has leftover bits or a window")
        }
        guard compressed.count <= Int(UInt32.max) else {
            throw .checkpointInvalid(reason: "compressed range of \(compressed.count) bytes is too large for one span")
        }
        let z = stream.pointer
        try reset(gzip: checkpoint.isMemberStart)
        var input = compressed
        if checkpoint.bitCount > 0 {
            guard let first = input.first else { throw .spanTruncated(produced: 0, expected: output.count) }
            let bits = Int32(checkpoint.bitCount)
            try check(inflatePrime(z, bits, Int32(first >> (8 - bits))), "inflatePrime", offset: 0)
            input = UnsafeRawBufferPointer(rebasing: input.dropFirst())
        }
        if !checkpoint.window.isEmpty {
            let status = checkpoint.window.withUnsafeBufferPointer { window in
                inflateSetDictionary(z, window.baseAddress, uInt(window.count))
            }
            try check(status, "inflateSetDictionary", offset: 0)
        }
        stream.setInput(input)
        var raw = !checkpoint.isMemberStart
        var filled = 0
        while filled < output.count {
            z.pointee.next_out = (output.baseAddress! + filled).assumingMemoryBound(to: Bytef.self)
            z.pointee.avail_out = uInt(output.count - filled)
            let status = inflate(z, Z_NO_FLUSH)
            filled = output.count - Int(z.pointee.avail_out)
            let offset = UInt64(compressed.count) - UInt64(z.pointee.avail_in)
            switch status {
            case Z_OK:
                continue
            case Z_STREAM_END:
                // A member's deflate data ended inside the span; the next member follows.
                if raw {
                    // Raw mode stops before the member's trailer (CRC-32, ISIZE); the span's
                    // SHA-256 covers these bytes, so the trailer is skipped, not checked.
                    let trailer = min(8, Int(z.pointee.avail_in))
                    guard trailer == 8 else { throw .spanTruncated(produced: filled, expected: output.count) }
                    z.pointee.next_in += 8
                    z.pointee.avail_in -= 8
                    raw = false
                }
                guard filled < output.count else { break }
                guard z.pointee.avail_in > 0 else { throw .spanTruncated(produced: filled, expected: output.count) }
                try reset(gzip: true)
            case Z_BUF_ERROR:
                throw .spanTruncated(produced: filled, expected: output.count)
            case Z_NEED_DICT:
                throw .checkpointInvalid(reason: "the stream asks for a preset dictionary at compressed offset \(checkpoint.compressedStart + offset)")
            case Z_MEM_ERROR:
                throw .outOfMemory("zlib inflate window")
            default:
                throw .zlib(code: status, message: stream.message, inputOffset: checkpoint.compressedStart + offset)
            }
        }
    }

    public func decode(from checkpoint: SpanCheckpoint, compressed: [UInt8], length: Int) throws(CodecError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let outcome: Result<Void, CodecError> = out.withUnsafeMutableBytes { out in
            compressed.withUnsafeBytes { compressed in
                do throws(CodecError) {
                    try decode(from: checkpoint, compressed: compressed, into: out)
                    return .success(())
                } catch { return .failure(error) }
            }
        }
        try outcome.get()
        return out
    }

    private func reset(gzip: Bool) throws(CodecError) {
        try check(inflateReset2(stream.pointer, gzip ? GzipMemberInflater.windowBits : -15), "inflateReset2", offset: 0)
    }

    private func check(_ status: Int32, _ call: String, offset: UInt64) throws(CodecError) {
        guard status == Z_OK else { throw .zlib(code: status, message: "\(call) failed", inputOffset: offset) }
    }
}
