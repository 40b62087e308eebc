import OCI
import Verity

/// How a layer's bytes are compressed.
public enum SegmentCodec: String, Sendable, Hashable, Codable {
    /// One gzip stream (possibly several members), as lume's OCI format writes its disk layers.
    case gzip
    /// Apple's framed LZ4 (`bv41`/`bv4-`/`bv4$` blocks), as tart and lume's legacy format write.
    case appleLZ4
    /// Stored as is.
    case none
    /// An imgfs chunk layer: gzip members located by the frame index (read frame by frame).
    case imgfsFrames
    /// A gzip'd tar stream (a container layer): the segment is one member's content
    /// (`Segment.tarMember`), found by parsing headers as the stream decodes (KubeVirt containerDisks).
    case gzipTar = "gzip-tar"
    /// An uncompressed tar stream, read as `gzipTar` without the gzip.
    case tar
}

/// One stretch of the logical disk and the layer blob that holds it.
///
/// Format-neutral: a whole-layer reader fetches `blob`, checks its digest (and `uncompressedDigest`
/// when given), decodes it with `codec` and finds exactly `length` bytes for disk bytes
/// `diskOffset ..< diskOffset + length`.
public struct Segment: Sendable, Hashable {
    /// Position of the layer in the manifest's `layers`, for messages.
    public var layerIndex: Int
    /// The layer's descriptor: digest and compressed size of the blob.
    public var blob: Descriptor
    public var codec: SegmentCodec
    public var diskOffset: UInt64
    /// Uncompressed bytes: what the blob decodes to.
    public var length: UInt64
    /// SHA-256 of the decoded bytes, when the format records it.
    public var uncompressedDigest: Digest?
    /// For the tar codecs: the path of the member whose content the segment is.
    public var tarMember: String?
    /// For the tar codecs: the member's first bytes (up to 4) as read when the image was opened,
    /// which named the disk file (qcow2 or raw); the verified stream must start with them.
    public var tarMemberHead: [UInt8]?

    public init(layerIndex: Int, blob: Descriptor, codec: SegmentCodec, diskOffset: UInt64, length: UInt64, uncompressedDigest: Digest?,
                tarMember: String? = nil, tarMemberHead: [UInt8]? = nil) {
        self.tarMember = tarMember
        self.tarMemberHead = tarMemberHead
        self.layerIndex = layerIndex
        self.blob = blob
        self.codec = codec
        self.diskOffset = diskOffset
        self.length = length
        self.uncompressedDigest = uncompressedDigest
    }

    public var diskRange: Range<UInt64> { diskOffset..<diskOffset + length }

    /// "layer 3 (sha256:…)", how errors name it.
    public var name: String { "layer \(layerIndex) (\(blob.digest))" }
}

/// The logical disk of an image, format-neutrally: its size and the segments that hold data,
/// sorted by disk offset and not overlapping. Disk bytes in no segment are zeros.
public struct DiskLayout: Sendable, Hashable {
    public var diskSize: UInt64
    public var segments: [Segment]

    /// Checks the invariants every reader relies on: segments inside the disk, sorted, disjoint.
    public init(diskSize: UInt64, segments: [Segment]) throws(ImageLayoutError) {
        guard diskSize <= FormatsLimits.maximumDiskSize else { throw .diskTooLarge(diskSize) }
        let sorted = segments.sorted { $0.diskOffset < $1.diskOffset }
        var end: UInt64 = 0
        var previous: Segment?
        for segment in sorted {
            guard segment.blob.size >= 0 else { throw .badLayer(layer: segment.name, reason: "negative size \(segment.blob.size)") }
            let (segmentEnd, overflow) = segment.diskOffset.addingReportingOverflow(segment.length)
            guard !overflow, segmentEnd <= diskSize else {
                throw .badLayer(layer: segment.name, reason: "covers disk bytes \(segment.diskOffset)+\(segment.length), past the disk size \(diskSize)")
            }
            if let previous, segment.diskOffset < end {
                throw .overlap(layer: segment.name, other: previous.name, offset: segment.diskOffset)
            }
            end = segmentEnd
            previous = segment
        }
        self.diskSize = diskSize
        self.segments = sorted
    }

    /// The segment holding disk byte `offset`, or nil when it lies in a hole (reads as zero).
    public func segment(containing offset: UInt64) -> Segment? {
        var low = 0, high = segments.count
        while low < high {
            let mid = (low + high) / 2
            if segments[mid].diskRange.upperBound <= offset { low = mid + 1 } else { high = mid }
        }
        guard low < segments.count, segments[low].diskRange.contains(offset) else { return nil }
        return segments[low]
    }

    /// The segments that overlap `range`, in disk order.
    public func segments(overlapping range: Range<UInt64>) -> ArraySlice<Segment> {
        var low = 0, high = segments.count
        while low < high {
            let mid = (low + high) / 2
            if segments[mid].diskRange.upperBound <= range.lowerBound { low = mid + 1 } else { high = mid }
        }
        var end = low
        while end < segments.count && segments[end].diskOffset < range.upperBound { end += 1 }
        return segments[low..<end]
    }

    /// Disk bytes covered by segments (an upper bound on the data a pull writes).
    public var storedBytes: UInt64 { segments.reduce(0) { $0 + $1.length } }
}

/// Limits the readers enforce before trusting sizes from a manifest.
public enum FormatsLimits {
    /// 16 TiB, as for imgfs images (docs/FORMAT.md).
    public static let maximumDiskSize: UInt64 = 1 << 44
    /// nvram.bin and config.json are read whole into memory.
    public static let maximumSmallBlobSize: Int64 = 64 * 1024 * 1024
    /// The OCI config blob of a peer image (JSON).
    public static let maximumConfigSize: Int64 = 4 * 1024 * 1024
    /// Layers in one manifest: a 16 TiB disk in 512 MiB parts is 32768.
    public static let maximumLayers = 65536
}
