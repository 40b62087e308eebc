import Codec
import Verity

/// Why a span index was refused, or a span or layer did not match it. Each case names the
/// layer (by blob digest) and, where there is one, the span.
public enum SpanIndexError: Error, CustomStringConvertible {
    /// The encoded index breaks the format at byte `offset`.
    case malformed(reason: String, offset: Int)
    /// Decoding the layer or a span failed (corrupt bytes or a hostile checkpoint).
    case codec(layer: Digest, span: Int?, CodecError)
    /// The layer's compressed bytes do not hash to its digest, or are not its size.
    case layerMismatch(layer: Digest, actualDigest: Digest, expectedSize: UInt64, actualSize: UInt64)
    /// The layer decodes to bytes whose size or SHA-256 is not what the image's manifest says.
    case uncompressedMismatch(layer: Digest, reason: String)
    /// A span's uncompressed bytes do not match the index (`actual` nil: the length differs).
    case spanMismatch(layer: Digest, span: Int, expected: Digest, actual: Digest?, expectedLength: Int, actualLength: Int)
    /// `--verify`: the index disagrees with the layer it was checked against.
    case indexDisagrees(layer: Digest, span: Int?, reason: String)
    /// The range handed to the span decoder is not the one `compressedRange(ofSpan:)` names.
    case wrongRange(layer: Digest, span: Int, expected: Int, actual: Int)
    case noSuchSpan(layer: Digest, span: Int, count: Int)
    /// The image has a layer the index does not cover (or the reverse).
    case layerNotIndexed(layer: Digest)
    case invalidSpanSize(Int, allowed: ClosedRange<Int>)

    public var description: String {
        switch self {
        case .malformed(let reason, let offset):
            "span index malformed at byte \(offset): \(reason)"
        case .codec(let layer, let span, let error):
            if let span { "layer \(layer) span \(span): \(error)" } else { "layer \(layer): \(error)" }
        case .layerMismatch(let layer, let actual, let expectedSize, let actualSize):
            "layer \(layer): the blob read has digest \(actual) and \(actualSize) bytes (expected \(expectedSize))"
        case .uncompressedMismatch(let layer, let reason):
            "layer \(layer): \(reason)"
        case .spanMismatch(let layer, let span, let expected, let actual, let expectedLength, let actualLength):
            if let actual {
                "layer \(layer) span \(span): digest mismatch: the index says \(expected), the bytes are \(actual)"
            } else {
                "layer \(layer) span \(span): decoded to \(actualLength) bytes, the index says \(expectedLength)"
            }
        case .indexDisagrees(let layer, let span, let reason):
            if let span { "span index wrong for layer \(layer) span \(span): \(reason)" } else { "span index wrong for layer \(layer): \(reason)" }
        case .wrongRange(let layer, let span, let expected, let actual):
            "layer \(layer) span \(span): given \(actual) compressed bytes, the span's range is \(expected)"
        case .noSuchSpan(let layer, let span, let count):
            "layer \(layer) has \(count) spans, no span \(span)"
        case .layerNotIndexed(let layer):
            "the span index does not cover layer \(layer)"
        case .invalidSpanSize(let size, let allowed):
            "span size \(size) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        }
    }
}
