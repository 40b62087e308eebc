import Codec
import ImgfsFormat
import OCI
import Verity

/// Where a foreign image enters the one disk model: a `DiskLayout` (lume OCI's gzip parts, tart's
/// Apple LZ4 pieces, a containerDisk's tar+gzip layer) plus
/// the checkpoints and frame digests a span index records for each layer become a `FrameIndex`
/// whose frames start at checkpoints inside the layers (`FrameIndex.Start.checkpoint`), so the
/// image is served by `FrameDisk` with the same cache, prefetch, status and failure handling as
/// imgfs frames. Without a span index the layout is served whole layer by whole layer.
///
/// Frames are aligned to the disk, not to the checkpoints: frame i is disk bytes
/// `[i * frameSize, (i + 1) * frameSize)`, its digest is recorded by the span index, and its
/// piece is the compressed bytes from the last checkpoint at or before its first byte to the
/// first checkpoint at or after its end. With checkpoints at least `frameSize` apart that is at
/// most two checkpoint intervals of the layer, whatever the frame.
public enum SpanIndexedLayout {
    /// What a span index says about one layer blob.
    public struct LayerSpans: Sendable, Equatable {
        public var blob: Digest
        /// In stream order; the first at uncompressed offset 0.
        public var checkpoints: [PackedCheckpoint]
        /// SHA-256 of each `frameSize` stretch of the disk bytes (the last may be short).
        public var frameDigests: [Digest]
        /// Where the disk's first byte is in the decoded layer: 0 for lume and tart, the disk
        /// file's data offset in a containerDisk's tar stream.
        public var frameOrigin: UInt64

        public init(blob: Digest, checkpoints: [PackedCheckpoint], frameDigests: [Digest], frameOrigin: UInt64 = 0) {
            self.blob = blob
            self.checkpoints = checkpoints
            self.frameDigests = frameDigests
            self.frameOrigin = frameOrigin
        }
    }

    /// Why a layout cannot be read frame by frame with these spans: the mount then falls back to
    /// whole layers.
    public struct Unsuitable: Error, Equatable, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// The frame index of `layout` read through `spans` (one entry per distinct gzip layer blob).
    public static func frameIndex(_ layout: DiskLayout, frameSize: Int, spans: [LayerSpans]) throws(Unsuitable) -> FrameIndex {
        let geometry: DiskGeometry
        do { geometry = try DiskGeometry(diskSize: layout.diskSize, frameSize: frameSize) } catch {
            throw Unsuitable(description: "frame size \(frameSize): \(error)")
        }
        let byBlob = Dictionary(spans.map { ($0.blob, $0) }, uniquingKeysWith: { first, _ in first })
        var layers: [FrameIndex.LayerRef] = []
        var layerOf: [Digest: Int] = [:]
        for segment in layout.segments where segment.length > 0 {
            guard [.gzip, .appleLZ4, .gzipTar].contains(segment.codec) else {
                throw Unsuitable(description: "\(segment.name) is \(segment.codec.rawValue), not gzip or Apple LZ4")
            }
            guard let layer = byBlob[segment.blob.digest] else {
                throw Unsuitable(description: "the span index has no entry for \(segment.name)")
            }
            guard segment.diskOffset % UInt64(frameSize) == 0,
                  segment.length % UInt64(frameSize) == 0 || segment.diskRange.upperBound == layout.diskSize else {
                throw Unsuitable(description: "\(segment.name) at disk offset \(segment.diskOffset) is not aligned to \(frameSize)-byte frames")
            }
            let frames = Int((segment.length + UInt64(frameSize) - 1) / UInt64(frameSize))
            guard layer.frameDigests.count == frames else {
                throw Unsuitable(description: "the span index has \(layer.frameDigests.count) frame digests for \(segment.name), which holds \(frames)")
            }
            try check(layer.checkpoints, of: segment)
            if layerOf[segment.blob.digest] == nil {
                layerOf[segment.blob.digest] = layers.count
                layers.append(FrameIndex.LayerRef(digest: segment.blob.digest, compressedSize: segment.blob.size))
            }
        }

        var checkpoints: [PackedCheckpoint] = []
        var firstCheckpoint: [Digest: Int] = [:]
        for layer in spans where layerOf[layer.blob] != nil && firstCheckpoint[layer.blob] == nil {
            firstCheckpoint[layer.blob] = checkpoints.count
            checkpoints.append(contentsOf: layer.checkpoints)
        }

        var zeroDigests: [Int: Digest] = [:]
        var frames: [FrameIndex.FrameEntry] = []
        frames.reserveCapacity(geometry.frameCount)
        for frame in 0..<geometry.frameCount {
            let start = geometry.offset(ofFrame: frame), length = geometry.length(ofFrame: frame)
            let zeros = zeroDigests[length] ?? SHA256Hasher.digest([UInt8](repeating: 0, count: length))
            zeroDigests[length] = zeros
            guard let segment = layout.segment(containing: start), let layer = byBlob[segment.blob.digest] else {
                frames.append(FrameIndex.FrameEntry(digest: zeros, isHole: true, location: nil))
                continue
            }
            let within = start - segment.diskOffset
            let digest = layer.frameDigests[Int(within / UInt64(frameSize))]
            let stream = layer.frameOrigin + within
            // A frame of zeros costs nothing to serve: no fetch, no cache space.
            guard digest != zeros else {
                frames.append(FrameIndex.FrameEntry(digest: zeros, isHole: true, location: nil))
                continue
            }
            let points = layer.checkpoints
            let from = lastIndex(in: points, atOrBefore: stream)
            let end = stream + UInt64(length)
            let to = points[(from + 1)...].first { $0.uncompressedOffset >= end }
            let compressedEnd = to?.compressedOffset ?? UInt64(segment.blob.size)
            let begin = points[from].compressedStart
            guard compressedEnd > begin, compressedEnd - begin <= UInt64(UInt32.max) else {
                throw Unsuitable(description: "frame \(frame) of \(segment.name) spans compressed bytes \(begin)..<\(compressedEnd)")
            }
            let location = FrameIndex.Location(
                layer: layerOf[segment.blob.digest]!, compressedOffset: begin, compressedLength: UInt32(compressedEnd - begin),
                start: .checkpoint(firstCheckpoint[segment.blob.digest]! + from, skip: UInt32(stream - points[from].uncompressedOffset)))
            frames.append(FrameIndex.FrameEntry(digest: digest, isHole: false, location: location))
        }
        return FrameIndex(geometry: geometry, layout: .multiLayer, layers: layers, frames: frames, checkpoints: checkpoints)
    }

    /// Checkpoints must start the stream, rise strictly, stay inside the blob, and leave no gap
    /// wider than a frame's `skip` can express.
    static func check(_ points: [PackedCheckpoint], of segment: Segment) throws(Unsuitable) {
        guard let first = points.first, first.uncompressedOffset == 0, first.compressedOffset == 0 else {
            throw Unsuitable(description: "the span index's first checkpoint of \(segment.name) is not at the start of the layer")
        }
        var previous = first
        for point in points.dropFirst() {
            guard point.uncompressedOffset > previous.uncompressedOffset, point.compressedOffset > previous.compressedOffset,
                  point.compressedOffset <= UInt64(segment.blob.size),
                  point.uncompressedOffset - previous.uncompressedOffset <= UInt64(UInt32.max) / 2 else {
                throw Unsuitable(description: "the span index's checkpoints of \(segment.name) are out of order or outside the layer")
            }
            previous = point
        }
    }

    static func lastIndex(in points: [PackedCheckpoint], atOrBefore offset: UInt64) -> Int {
        var low = 0, high = points.count
        while low < high {
            let mid = (low + high) / 2
            if points[mid].uncompressedOffset <= offset { low = mid + 1 } else { high = mid }
        }
        return max(0, low - 1)
    }
}
