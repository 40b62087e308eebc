import Codec
import Verity

/// A span index: for each disk layer of an image (gzip or Apple LZ4, compressed whole), the
/// checkpoints that let one span of it be fetched and decoded alone, and the SHA-256 of each
/// span's uncompressed bytes. Pushed beside the image as an OCI artifact whose `subject` is the
/// image's manifest; the binary encoding is in docs/FORMAT.md ("Span indexes").
public struct SpanIndex: Sendable, Equatable {
    public static let version: UInt32 = 1
    public var layers: [LayerSpans]

    public init(layers: [LayerSpans]) {
        self.layers = layers
    }

    /// The entry for the layer blob `digest`, if the index covers it (a scan: readers that look
    /// layers up per read keep `byLayer`).
    public func layer(_ digest: Digest) -> LayerSpans? {
        layers.first { $0.layerDigest == digest }
    }

    /// The entries by layer blob digest (the decoder guarantees digests are distinct).
    public var byLayer: [Digest: LayerSpans] {
        Dictionary(layers.map { ($0.layerDigest, $0) }, uniquingKeysWith: { first, _ in first })
    }
}

/// How a layer blob is compressed, as far as span decoding goes.
public enum SpanCodec: UInt8, Sendable, Equatable, CustomStringConvertible {
    case gzip = 1
    case appleLZ4 = 2

    public var description: String {
        switch self {
        case .gzip: "gzip"
        case .appleLZ4: "apple-lz4"
        }
    }
}

/// One checkpoint and the span that starts there.
public struct SpanEntry: Sendable, Equatable {
    /// Where the span starts, as decoders take it (`PackedCheckpoint.decode`); its `stream` is the
    /// layer's codec.
    public var checkpoint: PackedCheckpoint
    /// SHA-256 of the span's uncompressed bytes.
    public var digest: Digest

    public init(checkpoint: PackedCheckpoint, digest: Digest) {
        self.checkpoint = checkpoint
        self.digest = digest
    }

    public var uncompressedOffset: UInt64 { checkpoint.uncompressedOffset }
    public var compressedOffset: UInt64 { checkpoint.compressedOffset }
    /// The first compressed byte decoding needs (the byte with the leftover bits, if any).
    public var compressedStart: UInt64 { checkpoint.compressedStart }
}

/// The spans of one layer blob.
public struct LayerSpans: Sendable, Equatable {
    /// The layer blob's digest (of its compressed bytes), as in the image manifest.
    public var layerDigest: Digest
    public var compressedSize: UInt64
    public var uncompressedSize: UInt64
    public var codec: SpanCodec
    /// The least uncompressed distance between two checkpoints: spans are at least this long
    /// (the last may be shorter) and end at the next deflate block or LZ4 block boundary.
    public var spanSize: UInt32
    /// Sorted by offset; the first at offset 0. Empty only for an empty layer.
    public var spans: [SpanEntry]
    /// SHA-256 of each `spanSize`-aligned stretch of the disk bytes in the decoded layer
    /// (`frameOrigin`, `frameLength`; the last may be short):
    /// what a mount serves the layer by, as frames of `spanSize` bytes at fixed disk offsets,
    /// each decoded from the last checkpoint before it (`ImageLayouts.SpanIndexedLayout`).
    public var frameDigests: [Digest]
    /// Where the disk's bytes are in the decoded layer: all of it for lume and tart; the disk
    /// file's data for a containerDisk (after its tar headers). Frames start at `frameOrigin`.
    public var frameOrigin: UInt64
    public var frameLength: UInt64

    public init(layerDigest: Digest, compressedSize: UInt64, uncompressedSize: UInt64, codec: SpanCodec, spanSize: UInt32, spans: [SpanEntry],
                frameDigests: [Digest] = [], frameOrigin: UInt64 = 0, frameLength: UInt64? = nil) {
        self.layerDigest = layerDigest
        self.compressedSize = compressedSize
        self.uncompressedSize = uncompressedSize
        self.codec = codec
        self.spanSize = spanSize
        self.spans = spans
        self.frameDigests = frameDigests
        self.frameOrigin = frameOrigin
        self.frameLength = frameLength ?? uncompressedSize
    }

    public var spanCount: Int { spans.count }

    /// The span holding uncompressed byte `offset` of the layer, nil past its end.
    public func span(containing offset: UInt64) -> Int? {
        guard offset < uncompressedSize, !spans.isEmpty else { return nil }
        var low = 0, high = spans.count
        while high - low > 1 {
            let mid = (low + high) / 2
            if spans[mid].uncompressedOffset <= offset { low = mid } else { high = mid }
        }
        return low
    }

    /// Uncompressed bytes of the layer that span `span` holds.
    public func uncompressedRange(ofSpan span: Int) -> Range<UInt64> {
        let end = span + 1 < spans.count ? spans[span + 1].uncompressedOffset : uncompressedSize
        return spans[span].uncompressedOffset..<end
    }

    /// The byte range of the layer blob to fetch (HTTP Range) to decode span `span`: from its
    /// checkpoint to the next checkpoint (or the blob's end).
    public func compressedRange(ofSpan span: Int) -> Range<UInt64> {
        let end = span + 1 < spans.count ? spans[span + 1].compressedOffset : compressedSize
        return spans[span].compressedStart..<end
    }
}

extension SpanCodec {
    /// The stream kind a checkpoint of this codec points into.
    public var stream: PackedCheckpoint.Stream { self == .gzip ? .gzip : .appleLZ4 }
}
