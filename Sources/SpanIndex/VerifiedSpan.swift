import Codec
import Verity

/// The uncompressed bytes of one span whose SHA-256 matched the span index.
///
/// The only way to make one is `LayerSpans.decodeSpan`, so code that takes a `VerifiedSpan`
/// (a cache writer, a FUSE reply) cannot be handed unverified bytes, as with `VerifiedFrame`.
public struct VerifiedSpan: Sendable {
    public let layer: Digest
    public let span: Int
    /// Where the bytes start in the layer's uncompressed stream.
    public let uncompressedOffset: UInt64
    public let digest: Digest
    public let bytes: [UInt8]

    fileprivate init(layer: Digest, span: Int, uncompressedOffset: UInt64, digest: Digest, bytes: [UInt8]) {
        self.layer = layer
        self.span = span
        self.uncompressedOffset = uncompressedOffset
        self.digest = digest
        self.bytes = bytes
    }
}

extension LayerSpans {
    /// Decodes span `span` from `compressed`, exactly the blob bytes `compressedRange(ofSpan:)`
    /// names, and returns them only if their length and SHA-256 match the index. Any thread;
    /// allocates its own decoder state.
    public func decodeSpan(_ span: Int, compressed: UnsafeRawBufferPointer) throws(SpanIndexError) -> VerifiedSpan {
        guard spans.indices.contains(span) else { throw .noSuchSpan(layer: layerDigest, span: span, count: spans.count) }
        let range = compressedRange(ofSpan: span)
        guard UInt64(compressed.count) == range.upperBound - range.lowerBound else {
            throw .wrongRange(layer: layerDigest, span: span, expected: Int(range.upperBound - range.lowerBound), actual: compressed.count)
        }
        let entry = spans[span]
        let length = Int(uncompressedRange(ofSpan: span).count)
        let bytes: [UInt8]
        do throws(CodecError) {
            bytes = try entry.checkpoint.decode(compressed, length: length)
        } catch {
            throw .codec(layer: layerDigest, span: span, error)
        }
        let actual = SHA256Hasher.digest(bytes)
        guard actual == entry.digest else {
            throw .spanMismatch(layer: layerDigest, span: span, expected: entry.digest, actual: actual, expectedLength: length, actualLength: bytes.count)
        }
        return VerifiedSpan(layer: layerDigest, span: span, uncompressedOffset: entry.uncompressedOffset, digest: actual, bytes: bytes)
    }

    public func decodeSpan(_ span: Int, compressed: [UInt8]) throws(SpanIndexError) -> VerifiedSpan {
        let outcome: Result<VerifiedSpan, SpanIndexError> = compressed.withUnsafeBytes { bytes in
            do throws(SpanIndexError) { return .success(try decodeSpan(span, compressed: bytes)) } catch { return .failure(error) }
        }
        return try outcome.get()
    }
}
