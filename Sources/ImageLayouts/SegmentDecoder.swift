import Codec
import OCI
import Verity

/// Decodes one whole-layer segment (gzip, Apple LZ4 or stored) as its compressed bytes stream
/// in, checking everything the manifest promises about it.
///
/// Decoded bytes go to `output` with their disk offset as they are produced (unverified until
/// `finish()` returns: a caller that writes them must not call the region complete before). More
/// compressed bytes than the descriptor's size, or more decoded bytes than the segment's length,
/// fail at once, so a hostile layer cannot make a reader write past its segment. Not thread-safe.
public final class SegmentDecoder {
    public let segment: Segment
    private let compressedHasher = SHA256Hasher()
    private let uncompressedHasher: SHA256Hasher?
    private var compressedCount: Int64 = 0
    private var decodedCount: UInt64 = 0
    private let gzip: GzipStreamDecoder?
    private let lz4: AppleLZ4Decoder?
    private let tar: TarMemberStage?

    public init(segment: Segment) throws(SegmentError) {
        self.segment = segment
        self.uncompressedHasher = segment.uncompressedDigest == nil ? nil : SHA256Hasher()
        tar = segment.codec == .gzipTar || segment.codec == .tar ? TarMemberStage(segment: segment) : nil
        switch segment.codec {
        case .gzip, .gzipTar:
            do { gzip = try GzipStreamDecoder() } catch { throw SegmentError(segment, .decode(error)) }
            lz4 = nil
        case .appleLZ4:
            gzip = nil
            lz4 = AppleLZ4Decoder()
        case .none, .tar:
            gzip = nil
            lz4 = nil
        case .imgfsFrames:
            throw SegmentError(segment, .unsupportedCodec)
        }
    }

    /// Feeds the next compressed bytes of the blob.
    public func feed(_ input: UnsafeRawBufferPointer, output: (_ diskOffset: UInt64, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws(SegmentError) {
        compressedCount += Int64(input.count)
        guard compressedCount <= segment.blob.size else { throw SegmentError(segment, .compressedTooLong(size: segment.blob.size)) }
        compressedHasher.update(input)
        try withoutActuallyEscaping(output) { (output) throws(SegmentError) in try run(input, output: output) }
    }

    private func run(_ input: UnsafeRawBufferPointer, output: @escaping (UInt64, UnsafeRawBufferPointer) throws -> Void) throws(SegmentError) {
        // `at`: where the bytes go in the segment; past `decodedCount` only for a sparse tar member's holes.
        let place: (UInt64, UnsafeRawBufferPointer) throws -> Void = { [self] at, bytes in
            guard at >= decodedCount, at <= segment.length, UInt64(bytes.count) <= segment.length - at else {
                throw SegmentError(segment, .decodedTooLong(expected: segment.length))
            }
            if at > decodedCount { uncompressedHasher?.updateZeros(count: Int(at - decodedCount)) }
            uncompressedHasher?.update(bytes)
            decodedCount = at + UInt64(bytes.count)
            try output(segment.diskOffset + at, bytes)
        }
        let emit: (UnsafeRawBufferPointer) throws -> Void = { [self] bytes in
            if let tar { try tar.feed(bytes, output: place) } else { try place(decodedCount, bytes) }
        }
        do {
            if let gzip {
                try gzip.decode(input, output: emit)
            } else if let lz4 {
                try lz4.decode(input, output: emit)
            } else {
                try emit(input)
            }
        } catch let error as SegmentError {
            throw error
        } catch CodecError.consumer(let inner) {
            if let inner = inner as? SegmentError { throw inner }
            throw SegmentError(segment, .output(inner))
        } catch let error as CodecError {
            throw SegmentError(segment, .decode(error))
        } catch {
            throw SegmentError(segment, .output(error))
        }
    }

    /// Ends the blob: checks the compressed size and digest, the codec's end marker, the decoded
    /// length and (when the manifest gives one) the decoded digest.
    public func finish() throws(SegmentError) {
        do {
            try gzip?.finish()
            try lz4?.finish()
        } catch {
            throw SegmentError(segment, .decode(error))
        }
        guard compressedCount == segment.blob.size else {
            throw SegmentError(segment, .compressedSizeMismatch(expected: segment.blob.size, actual: compressedCount))
        }
        let actual = compressedHasher.finalize()
        guard actual == segment.blob.digest else { throw SegmentError(segment, .compressedDigestMismatch(actual: actual)) }
        if let tar {
            try tar.finish()
            // A sparse member may end in a hole.
            if decodedCount < segment.length { uncompressedHasher?.updateZeros(count: Int(segment.length - decodedCount)) }
            decodedCount = segment.length
        }
        guard decodedCount == segment.length else {
            throw SegmentError(segment, .decodedSizeMismatch(expected: segment.length, actual: decodedCount))
        }
        if let expected = segment.uncompressedDigest, let hasher = uncompressedHasher {
            let decoded = hasher.finalize()
            guard decoded == expected else { throw SegmentError(segment, .uncompressedDigestMismatch(expected: expected, actual: decoded)) }
        }
    }
}

/// A layer whose bytes do not match what the manifest says about them.
public struct SegmentError: Error, CustomStringConvertible {
    public enum Kind: Sendable {
        case compressedTooLong(size: Int64)
        case compressedSizeMismatch(expected: Int64, actual: Int64)
        case compressedDigestMismatch(actual: Digest)
        case decodedTooLong(expected: UInt64)
        case decodedSizeMismatch(expected: UInt64, actual: UInt64)
        case uncompressedDigestMismatch(expected: Digest, actual: Digest)
        case decode(CodecError)
        case unsupportedCodec
        /// A container layer whose tar stream or disk member is not what it must be.
        case tar(String)
        case output(any Error)
    }

    public let layer: String
    public let digest: Digest
    public let kind: Kind

    public init(_ segment: Segment, _ kind: Kind) {
        self.layer = segment.name
        self.digest = segment.blob.digest
        self.kind = kind
    }

    public var description: String {
        let what: String = switch kind {
        case .compressedTooLong(let size): "the registry sent more than the \(size) bytes the manifest lists"
        case .compressedSizeMismatch(let expected, let actual): "blob is \(actual) bytes, the manifest lists \(expected)"
        case .compressedDigestMismatch(let actual): "blob digest mismatch: got \(actual)"
        case .decodedTooLong(let expected): "decodes to more than the \(expected) bytes its annotations give"
        case .decodedSizeMismatch(let expected, let actual): "decodes to \(actual) bytes, its annotations give \(expected)"
        case .uncompressedDigestMismatch(let expected, let actual): "uncompressed digest mismatch: expected \(expected), got \(actual)"
        case .decode(let error): "corrupt data: \(error)"
        case .unsupportedCodec: "imgfs chunk layers are read frame by frame, not whole"
        case .tar(let reason): reason
        case .output(let error): "\(error)"
        }
        return "\(layer): \(what)"
    }
}
