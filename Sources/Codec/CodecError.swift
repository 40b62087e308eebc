/// Why a codec refused its input or could not run. Every case names the sizes and offsets
/// involved, so a bad frame or layer can be located from the message alone.
public enum CodecError: Error, CustomStringConvertible {
    case invalidLevel(Int, allowed: ClosedRange<Int>)
    case invalidBlockSize(Int, allowed: ClosedRange<Int>)
    /// A C library could not allocate its state.
    case outOfMemory(String)

    /// libdeflate produced nothing although its own bound was provided as room.
    case compressionFailed(inputSize: Int)
    /// The member is not valid gzip: bad header, bad deflate data, truncated, or CRC/ISIZE mismatch.
    case corruptMember(memberSize: Int, expectedSize: Int)
    /// The member decodes to more or fewer bytes than the frame it should hold.
    case memberSizeMismatch(memberSize: Int, expectedSize: Int, actualSize: Int?)
    /// The member ends before the input does.
    case trailingData(memberSize: Int, memberEnd: Int)

    /// zlib rejected the stream at `inputOffset` (bytes consumed so far).
    case zlib(code: Int32, message: String, inputOffset: UInt64)
    /// The gzip stream ended inside a member, or was empty.
    case truncatedStream(inputOffset: UInt64)

    case lz4BadMagic(offset: UInt64, magic: [UInt8])
    /// The LZ4 stream ended inside a block or before its `bv4$` end marker.
    case lz4Truncated(offset: UInt64)
    case lz4BlockTooLarge(offset: UInt64, decodedSize: Int, limit: Int)
    /// The LZ4 block at `offset` does not decode to exactly `decodedSize` bytes.
    case lz4CorruptBlock(offset: UInt64, encodedSize: Int, decodedSize: Int)
    case lz4DataAfterEnd(offset: UInt64)

    /// A span checkpoint (gzip bit offset and window, LZ4 block boundary and dictionary) that
    /// cannot be a real one: `reason` says which field is out of range.
    case checkpointInvalid(reason: String)
    /// Decoding a span from its checkpoint ran out of compressed bytes (or reached the
    /// stream's end) after `produced` of the span's `expected` bytes.
    case spanTruncated(produced: Int, expected: Int)

    /// The output handler passed to a streaming codec threw; the codec stopped there.
    case consumer(any Error)

    public var description: String {
        switch self {
        case .invalidLevel(let level, let allowed):
            "compression level \(level) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        case .invalidBlockSize(let size, let allowed):
            "block size \(size) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        case .outOfMemory(let what):
            "out of memory allocating \(what)"
        case .compressionFailed(let size):
            "compressing \(size) bytes failed"
        case .corruptMember(let memberSize, let expectedSize):
            "corrupt gzip member of \(memberSize) bytes (expected to decode to \(expectedSize) bytes)"
        case .memberSizeMismatch(let memberSize, let expectedSize, let actualSize):
            if let actualSize {
                "gzip member of \(memberSize) bytes decodes to \(actualSize) bytes, expected \(expectedSize)"
            } else {
                "gzip member of \(memberSize) bytes decodes to more than the expected \(expectedSize) bytes"
            }
        case .trailingData(let memberSize, let memberEnd):
            "gzip member ends at byte \(memberEnd) of \(memberSize): \(memberSize - memberEnd) trailing bytes"
        case .zlib(let code, let message, let offset):
            "gzip stream invalid near input offset \(offset): \(message) (zlib \(code))"
        case .truncatedStream(let offset):
            "gzip stream truncated at input offset \(offset): it ends inside a member or has none"
        case .lz4BadMagic(let offset, let magic):
            "no LZ4 block magic at offset \(offset): found \(magic.map { String($0, radix: 16) }), expected bv41, bv4- or bv4$"
        case .lz4Truncated(let offset):
            "LZ4 stream truncated at offset \(offset): it ends inside a block or before bv4$"
        case .lz4BlockTooLarge(let offset, let size, let limit):
            "LZ4 block at offset \(offset) declares \(size) bytes, above the limit of \(limit)"
        case .lz4CorruptBlock(let offset, let encodedSize, let decodedSize):
            "LZ4 block at offset \(offset) (\(encodedSize) bytes) does not decode to its declared \(decodedSize) bytes"
        case .lz4DataAfterEnd(let offset):
            "data after the LZ4 end marker at offset \(offset)"
        case .checkpointInvalid(let reason):
            "invalid span checkpoint: \(reason)"
        case .spanTruncated(let produced, let expected):
            "span decoding stopped after \(produced) of \(expected) bytes: the compressed range ends too early"
        case .consumer(let error):
            "output handler failed: \(error)"
        }
    }
}
