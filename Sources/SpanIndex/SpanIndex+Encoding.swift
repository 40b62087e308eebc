import Codec
import Verity

/// The binary encoding (docs/FORMAT.md, "Span indexes"): little-endian, a 32-byte header, then
/// per layer an 80-byte record followed by its checkpoint records (64 bytes each, then the
/// compressed window), then the layer's frame digests (32 bytes each). The decoder is strict: every size is bounded by the bytes present
/// before anything is allocated, offsets are monotonic and inside the layer, and nothing
/// follows the last layer.
extension SpanIndex {
    public static let magic: [UInt8] = Array("IMGFSSPN".utf8)
    static let headerSize = 32
    static let layerRecordSize = 80
    static let spanRecordSize = 64
    /// Below 64 KiB the index stops being small; above 64 MiB a span is a layer.
    public static let spanSizes = (64 * 1024)...(64 << 20)
    public static let maximumLayers = 65536
    /// 16 TiB, the largest disk imgfs reads.
    public static let maximumLayerSize: UInt64 = 1 << 44

    public func encoded() -> [UInt8] {
        var out = Self.magic
        out.appendLE(Self.version)
        out.appendLE(UInt32(0))
        out.appendLE(UInt32(layers.count))
        out.append(contentsOf: repeatElement(0, count: 12))
        for layer in layers {
            out.append(contentsOf: layer.layerDigest.bytes)
            out.appendLE(layer.compressedSize)
            out.appendLE(layer.uncompressedSize)
            out.append(layer.codec.rawValue)
            out.append(contentsOf: [0, 0, 0])
            out.appendLE(layer.spanSize)
            out.appendLE(UInt32(layer.spans.count))
            out.appendLE(UInt32(0))
            out.appendLE(layer.frameOrigin)
            out.appendLE(layer.frameLength)
            for span in layer.spans {
                out.appendLE(span.uncompressedOffset)
                out.appendLE(span.compressedOffset)
                out.append(span.checkpoint.bitCount)
                out.append(span.checkpoint.isMemberStart ? 1 : 0)
                out.appendLE(UInt16(0))
                out.appendLE(UInt32(span.checkpoint.windowLength))
                out.appendLE(UInt32(span.checkpoint.compressedWindow.count))
                out.appendLE(UInt32(0))
                out.append(contentsOf: span.digest.bytes)
                out.append(contentsOf: span.checkpoint.compressedWindow)
            }
            for digest in layer.frameDigests { out.append(contentsOf: digest.bytes) }
        }
        return out
    }

    public init(decoding bytes: [UInt8]) throws(SpanIndexError) {
        var reader = Reader(bytes: bytes)
        guard try reader.bytes(8) == Self.magic else { throw .malformed(reason: "no IMGFSSPN magic", offset: 0) }
        let version = try reader.u32()
        guard version == Self.version else { throw .malformed(reason: "version \(version); this imgfs reads version \(Self.version)", offset: 8) }
        _ = try reader.u32()  // flags: none defined, ignored
        let layerCount = Int(try reader.u32())
        _ = try reader.bytes(12)
        guard layerCount <= Self.maximumLayers, layerCount * Self.layerRecordSize <= reader.remaining else {
            throw .malformed(reason: "\(layerCount) layers do not fit in \(reader.remaining) bytes", offset: 20)
        }
        var layers: [LayerSpans] = []
        layers.reserveCapacity(layerCount)
        var seen = Set<Digest>()
        for _ in 0..<layerCount {
            let layer = try Self.decodeLayer(&reader)
            guard seen.insert(layer.layerDigest).inserted else {
                throw .malformed(reason: "layer \(layer.layerDigest) is listed twice", offset: reader.position)
            }
            layers.append(layer)
        }
        guard reader.remaining == 0 else { throw .malformed(reason: "\(reader.remaining) bytes after the last layer", offset: reader.position) }
        self.init(layers: layers)
    }

    private static func decodeLayer(_ reader: inout Reader) throws(SpanIndexError) -> LayerSpans {
        let start = reader.position
        let digest = Digest(sha256Bytes: try reader.bytes(32))
        let compressedSize = try reader.u64()
        let uncompressedSize = try reader.u64()
        let codecByte = try reader.u8()
        guard let codec = SpanCodec(rawValue: codecByte) else { throw .malformed(reason: "unknown codec \(codecByte)", offset: start + 48) }
        _ = try reader.bytes(3)
        let spanSize = try reader.u32()
        let count = Int(try reader.u32())
        _ = try reader.u32()
        let frameOrigin = try reader.u64()
        let frameLength = try reader.u64()
        guard frameOrigin <= uncompressedSize, frameLength <= uncompressedSize - frameOrigin else {
            throw .malformed(reason: "frames at \(frameOrigin)+\(frameLength) outside the layer's \(uncompressedSize) bytes", offset: start + 64)
        }
        guard compressedSize <= maximumLayerSize, uncompressedSize <= maximumLayerSize else {
            throw .malformed(reason: "layer sizes \(compressedSize)/\(uncompressedSize) above \(maximumLayerSize)", offset: start + 32)
        }
        guard spanSizes.contains(Int(spanSize)) else { throw .malformed(reason: "span size \(spanSize) outside \(spanSizes)", offset: start + 52) }
        // Checkpoints are at least spanSize apart, so their number is bounded by the layer's size.
        let most = uncompressedSize == 0 ? 0 : uncompressedSize / UInt64(spanSize) + 1
        guard UInt64(count) <= most, count * spanRecordSize <= reader.remaining else {
            throw .malformed(reason: "\(count) spans for \(uncompressedSize) bytes in spans of \(spanSize)", offset: start + 56)
        }
        guard (count == 0) == (uncompressedSize == 0) else {
            throw .malformed(reason: "\(count) spans for a layer of \(uncompressedSize) bytes", offset: start + 56)
        }
        var spans: [SpanEntry] = []
        spans.reserveCapacity(count)
        for index in 0..<count {
            let at = reader.position
            let uncompressedOffset = try reader.u64()
            let compressedOffset = try reader.u64()
            let bitCount = try reader.u8()
            let flags = try reader.u8()
            _ = try reader.bytes(2)
            let windowLength = Int(try reader.u32())
            let compressedWindowLength = Int(try reader.u32())
            _ = try reader.u32()
            let spanDigest = Digest(sha256Bytes: try reader.bytes(32))
            func bad(_ reason: String) -> SpanIndexError { .malformed(reason: "layer \(digest) span \(index): \(reason)", offset: at) }
            let isMemberStart = flags & 1 != 0
            guard flags & ~1 == 0 else { throw bad("unknown flags \(flags)") }
            if let previous = spans.last {
                guard uncompressedOffset >= previous.uncompressedOffset + UInt64(spanSize) else { throw bad("uncompressed offset \(uncompressedOffset) less than a span after \(previous.uncompressedOffset)") }
                guard compressedOffset > previous.compressedOffset else { throw bad("compressed offset \(compressedOffset) not after \(previous.compressedOffset)") }
            } else {
                guard uncompressedOffset == 0, compressedOffset == 0 else { throw bad("the first span starts at \(uncompressedOffset)/\(compressedOffset), not 0") }
            }
            guard uncompressedOffset < uncompressedSize, compressedOffset < compressedSize else {
                throw bad("offsets \(uncompressedOffset)/\(compressedOffset) past the layer's sizes")
            }
            let maximumWindow: Int
            switch codec {
            case .gzip:
                guard bitCount < 8 else { throw bad("bit count \(bitCount)") }
                guard bitCount == 0 || compressedOffset > 0 else { throw bad("leftover bits before byte 0") }
                guard !isMemberStart || (bitCount == 0 && windowLength == 0) else { throw bad("a member start with bits or a window") }
                maximumWindow = SpanWindow.gzipMaximum
            case .appleLZ4:
                guard bitCount == 0, !isMemberStart else { throw bad("LZ4 checkpoints have no bits and no members") }
                maximumWindow = SpanWindow.lz4Maximum
            }
            guard windowLength <= maximumWindow, UInt64(windowLength) <= uncompressedOffset else { throw bad("window of \(windowLength) bytes") }
            guard (windowLength == 0) == (compressedWindowLength == 0), compressedWindowLength <= windowLength + windowLength / 8 + 64 else {
                throw bad("compressed window of \(compressedWindowLength) bytes for \(windowLength)")
            }
            let window = try reader.bytes(compressedWindowLength)
            spans.append(SpanEntry(checkpoint: PackedCheckpoint(stream: codec.stream, uncompressedOffset: uncompressedOffset, compressedOffset: compressedOffset,
                                                                bitCount: bitCount, isMemberStart: isMemberStart,
                                                                windowLength: windowLength, compressedWindow: window),
                                   digest: spanDigest))
        }
        // One digest per spanSize-aligned frame of the disk bytes, after the checkpoints.
        let frames = Int((frameLength + UInt64(spanSize) - 1) / UInt64(spanSize))
        guard frames * 32 <= reader.remaining else {
            throw .malformed(reason: "\(frames) frame digests of layer \(digest) do not fit in \(reader.remaining) bytes", offset: reader.position)
        }
        var frameDigests: [Digest] = []
        frameDigests.reserveCapacity(frames)
        for _ in 0..<frames { frameDigests.append(Digest(sha256Bytes: try reader.bytes(32))) }
        return LayerSpans(layerDigest: digest, compressedSize: compressedSize, uncompressedSize: uncompressedSize, codec: codec, spanSize: spanSize,
                          spans: spans, frameDigests: frameDigests, frameOrigin: frameOrigin, frameLength: frameLength)
    }
}

private struct Reader {
    let bytes: [UInt8]
    var position = 0

    var remaining: Int { bytes.count - position }

    mutating func bytes(_ count: Int) throws(SpanIndexError) -> [UInt8] {
        guard count >= 0, count <= remaining else { throw .malformed(reason: "ends after \(bytes.count) bytes, inside a record", offset: position) }
        defer { position += count }
        return Array(bytes[position..<position + count])
    }

    mutating func u8() throws(SpanIndexError) -> UInt8 { try bytes(1)[0] }

    mutating func u32() throws(SpanIndexError) -> UInt32 {
        try bytes(4).reversed().reduce(0) { $0 << 8 | UInt32($1) }
    }

    mutating func u64() throws(SpanIndexError) -> UInt64 {
        try bytes(8).reversed().reduce(0) { $0 << 8 | UInt64($1) }
    }
}

extension [UInt8] {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: 0, to: T.bitWidth, by: 8) { append(UInt8(truncatingIfNeeded: value >> shift)) }
    }
}
