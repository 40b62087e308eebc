import ImageLayouts
import ImgfsFormat
import OCI
import Verity

/// An image served frame by frame, with everything a mount needs before it serves its first
/// read: the manifest, the decoded and validated frame index, and the small files. An imgfs
/// image, or a lume or tart image through its span index (`spanIndex`).
public struct ResolvedImage: Sendable {
    public var locator: Reference
    /// The digest of the image manifest itself (inside an image index, the entry chosen).
    public var manifestDigest: Digest
    public var index: FrameIndex
    /// The frame index blob's digest (for a span-indexed image, the span index blob's): the
    /// cache entry's key.
    public var indexDigest: Digest
    public var nvram: [UInt8]?
    public var vmConfig: [UInt8]?
    /// Frame numbers to prefetch first, from the image's boot profile layer (if any).
    public var bootProfile: [Int]
    /// True when the registry could not be reached and the manifest came from the local store.
    public var offline: Bool
    /// The span index artifact a lume or tart image is read through; nil for an imgfs image.
    public var spanIndex: Digest? = nil
    /// How a containerDisk read through its span index names its disk (qcow2 or raw).
    public var diskFormat: DiskFileFormat = .raw
    /// The frame index's transfer, when this resolution fetched it from the registry.
    public var indexTransfer: TransferSample? = nil
}

/// An image of another format (lume OCI, lume legacy, tart) with everything a mount needs: the
/// validated disk layout, and the small files, verified against their digests.
public struct ResolvedSegmentImage: Sendable {
    public var locator: Reference
    public var manifestDigest: Digest
    public var kind: ImageKind
    public var layout: DiskLayout
    /// raw, or qcow2 for a containerDisk holding one: names the disk file.
    public var diskFormat: DiskFileFormat = .raw
    public var nvram: [UInt8]?
    public var vmConfig: [UInt8]?
    /// True when the registry could not be reached and the manifest came from the local store.
    public var offline: Bool
}

/// What a reference resolves to: an imgfs image (served frame by frame) or another format's
/// (served layer by layer).
public enum ResolvedMountImage: Sendable {
    case imgfs(ResolvedImage)
    case segments(ResolvedSegmentImage)
}
