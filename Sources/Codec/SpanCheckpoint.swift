/// A point in a compressed stream where decoding can start without the bytes before it: what
/// a span index records so one span of a gzip or Apple LZ4 layer can be fetched and decoded
/// alone (zlib's `zran` example, generalised to several gzip members and to Apple LZ4).
///
/// A checkpoint read from a registry is untrusted: the span decoders check every field
/// against the bytes they are given and fail with `CodecError.checkpointInvalid`, and the
/// decoded span is only trusted after its SHA-256 matches (see SpanIndex's `VerifiedSpan`).
public struct SpanCheckpoint: Sendable, Equatable {
    /// Offset in the uncompressed stream where the span starts.
    public let uncompressedOffset: UInt64
    /// Offset in the compressed stream of the first whole byte after the checkpoint.
    public let compressedOffset: UInt64
    /// gzip only, 0...7: how many high bits of the byte before `compressedOffset` belong to the
    /// next deflate block (deflate blocks end on bit, not byte, boundaries).
    public let bitCount: UInt8
    /// The uncompressed bytes a decoder must see as history: for gzip, up to 32 KiB of the
    /// current member before the checkpoint (empty at a member start); for Apple LZ4, up to
    /// 64 KiB before the block, or empty when the block and those after it in the span do not
    /// reach back (checked while building).
    public let window: [UInt8]
    /// gzip only: `compressedOffset` is the first byte of a member's header, so decoding
    /// starts in gzip mode rather than raw deflate.
    public let isMemberStart: Bool

    public init(uncompressedOffset: UInt64, compressedOffset: UInt64, bitCount: UInt8, window: [UInt8], isMemberStart: Bool) {
        self.uncompressedOffset = uncompressedOffset
        self.compressedOffset = compressedOffset
        self.bitCount = bitCount
        self.window = window
        self.isMemberStart = isMemberStart
    }

    /// The first compressed byte a decoder needs: the byte holding the leftover bits, if any.
    public var compressedStart: UInt64 {
        bitCount > 0 ? compressedOffset - 1 : compressedOffset
    }
}

/// The largest history each codec can use: a decoder rejects longer windows.
public enum SpanWindow {
    public static let gzipMaximum = 32 * 1024
    public static let lz4Maximum = AppleLZ4.windowSize
}
