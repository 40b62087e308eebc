/// A checkpoint as an index keeps it, in the registry and in a mount's memory: its window
/// deflated (`WindowCodec`), since 32 KiB of raw history per 2 MiB span would cost a mount of a
/// 40 GiB image 640 MiB. Unpacked only for the one decode that needs it.
///
/// Untrusted until the decoded bytes match their digest: `decode` checks the fields against the
/// codec's limits and the bytes it is given, and fails with a `CodecError`, never traps.
public struct PackedCheckpoint: Sendable, Hashable {
    /// The stream a checkpoint points into.
    public enum Stream: UInt8, Sendable, Hashable {
        /// One or more gzip members (lume OCI layers, containerDisk layers).
        case gzip = 1
        /// Apple framed LZ4 (tart, lume legacy).
        case appleLZ4 = 2
    }

    public var stream: Stream
    public var uncompressedOffset: UInt64
    public var compressedOffset: UInt64
    /// gzip: 0...7 leftover bits in the byte before `compressedOffset`.
    public var bitCount: UInt8
    /// gzip: the checkpoint is the first byte of a member header.
    public var isMemberStart: Bool
    /// Length of the window once inflated.
    public var windowLength: Int
    public var compressedWindow: [UInt8]

    public init(stream: Stream, uncompressedOffset: UInt64, compressedOffset: UInt64, bitCount: UInt8, isMemberStart: Bool,
                windowLength: Int, compressedWindow: [UInt8]) {
        self.stream = stream
        self.uncompressedOffset = uncompressedOffset
        self.compressedOffset = compressedOffset
        self.bitCount = bitCount
        self.isMemberStart = isMemberStart
        self.windowLength = windowLength
        self.compressedWindow = compressedWindow
    }

    /// The first compressed byte decoding needs (the byte holding the leftover bits, if any).
    public var compressedStart: UInt64 { bitCount > 0 ? compressedOffset - 1 : compressedOffset }

    /// Fills `output` with the uncompressed bytes from this checkpoint on; `compressed` holds
    /// the stream from `compressedStart` and may run past what `output` needs.
    public func decode(_ compressed: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(CodecError) {
        let limit = stream == .gzip ? SpanWindow.gzipMaximum : SpanWindow.lz4Maximum
        guard (0...limit).contains(windowLength) else {
            throw .checkpointInvalid(reason: "window of \(windowLength) bytes is outside 0...\(limit)")
        }
        let window = windowLength == 0 ? [] : try WindowCodec().decompress(compressedWindow, length: windowLength)
        let checkpoint = SpanCheckpoint(uncompressedOffset: uncompressedOffset, compressedOffset: compressedOffset,
                                        bitCount: bitCount, window: window, isMemberStart: isMemberStart)
        switch stream {
        case .gzip:
            try GzipSpanDecoder().decode(from: checkpoint, compressed: compressed, into: output)
        case .appleLZ4:
            let bytes = try AppleLZ4SpanDecoder.decode(from: checkpoint, compressed: compressed, length: output.count)
            bytes.withUnsafeBytes { output.copyMemory(from: $0) }
        }
    }

    /// `length` uncompressed bytes from this checkpoint on.
    public func decode(_ compressed: UnsafeRawBufferPointer, length: Int) throws(CodecError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: length)
        let outcome = out.withUnsafeMutableBytes { out in Result { () throws(CodecError) in try decode(compressed, into: out) } }
        try outcome.get()
        return out
    }
}
