import Codec
import Verity

/// Where every frame of a disk lives: which chunk layer, which compressed byte range,
/// and the SHA-256 its uncompressed bytes must have. The layout on the wire is
/// specified in docs/FORMAT.md ("The frame index"); `encode()` and `init(decoding:)`
/// are its only writer and reader.
public struct FrameIndex: Sendable, Equatable {
    public static let currentVersion: UInt32 = 1

    public var geometry: DiskGeometry
    public var layout: Layout
    /// The distinct chunk layer blobs frames are stored in; `FrameEntry.layer` indexes this list.
    public var layers: [LayerRef]
    /// One entry per frame, in disk order.
    public var frames: [FrameEntry]
    /// Where decoding can start inside a foreign layer's compressed stream, for frames whose
    /// `Location.start` names one. Empty for imgfs images, whose frames are whole gzip members;
    /// filled when a span index makes a lume or tart layer readable frame by frame, so that those
    /// images are served by the same disk, cache and fetch path as imgfs frames.
    public var checkpoints: [PackedCheckpoint] = []

    public enum Layout: String, Sendable, Codable {
        /// All-zero frames are not stored; frames are grouped into chunk layers.
        case multiLayer = "multi-layer"
        /// One layer holding every frame, zeros included, so it gunzips to the whole disk.
        case singleLayer = "single-layer"
    }

    public struct LayerRef: Sendable, Hashable {
        public var digest: Digest
        public var compressedSize: Int64
        public init(digest: Digest, compressedSize: Int64) {
            self.digest = digest
            self.compressedSize = compressedSize
        }
    }

    public struct FrameEntry: Sendable, Hashable {
        /// SHA-256 of the frame's uncompressed bytes (for a hole: of that many zeros).
        public var digest: Digest
        /// True when every byte of the frame is zero; readers serve zeros without fetching.
        public var isHole: Bool
        /// The stored member, or nil when the frame is not stored (holes of multi-layer images).
        public var location: Location?

        public init(digest: Digest, isHole: Bool, location: Location?) {
            self.digest = digest
            self.isHole = isHole
            self.location = location
        }
    }

    public struct Location: Sendable, Hashable {
        /// Index into `layers`.
        public var layer: Int
        /// Offset of the frame's gzip member in the layer blob.
        public var compressedOffset: UInt64
        /// Length of the gzip member.
        public var compressedLength: UInt32
        /// How the bytes at `compressedRange` decode to the frame.
        public var start: Start

        public init(layer: Int, compressedOffset: UInt64, compressedLength: UInt32, start: Start = .member) {
            self.layer = layer
            self.compressedOffset = compressedOffset
            self.compressedLength = compressedLength
            self.start = start
        }

        public var compressedRange: Range<Int64> {
            Int64(compressedOffset)..<Int64(compressedOffset) + Int64(compressedLength)
        }
    }

    /// Where decoding of a frame's stored bytes starts.
    public enum Start: Sendable, Hashable {
        /// The bytes are one whole gzip member that decodes to exactly the frame (imgfs).
        case member
        /// The bytes start at `checkpoints[checkpoint]` inside a gzip or Apple LZ4 stream and
        /// decode to `skip` bytes before the frame, then the frame (a lume or tart layer indexed
        /// by a span index). Only
        /// ever built in memory: `encode()` writes imgfs indexes, which have no checkpoints.
        case checkpoint(Int, skip: UInt32)
    }

    public init(geometry: DiskGeometry, layout: Layout, layers: [LayerRef], frames: [FrameEntry], checkpoints: [PackedCheckpoint] = []) {
        self.geometry = geometry
        self.layout = layout
        self.layers = layers
        self.frames = frames
        self.checkpoints = checkpoints
    }

    /// The largest gzip member a frame of `length` bytes may have: deflate's stored-block
    /// overhead (5 bytes per 64 KiB) plus the gzip header and trailer, with slack.
    public static func maximumCompressedLength(forFrameLength length: Int) -> Int {
        length + (length / 65535 + 1) * 5 + 1024
    }
}
