/// How a logical disk is cut into frames: fixed-size frames, the last one possibly shorter.
public struct DiskGeometry: Hashable, Sendable {
    /// Uncompressed size of the whole logical disk, in bytes.
    public let diskSize: UInt64
    /// Uncompressed size of every frame but possibly the last; a power of two ≥ 64 KiB.
    public let frameSize: Int

    public static let minimumFrameSize = 64 * 1024
    public static let maximumFrameSize = 64 * 1024 * 1024
    /// The frame size `imgfs push` starts from when not told one (`defaultFrameSize(diskSize:)`).
    public static let defaultFrameSize = 256 * 1024
    /// The frame index a default frame size keeps within: a mount fetches the whole index before
    /// its first read, 56 bytes a frame of logical disk, holes included.
    public static let defaultIndexBudget = 4 * 1024 * 1024

    /// The frame size `imgfs push` uses when not told one: 256 KiB, doubled up to 1 MiB while
    /// the frame index would pass `defaultIndexBudget` (256 KiB up to 18 GiB of disk, 512 KiB up
    /// to 37 GiB, then 1 MiB). A boot reads scattered pieces of its disk and every frame it
    /// touches moves whole: a Debian 12 boot's touched frames come to 20.8 MB compressed at
    /// 256 KiB and 37.0 MB at 1 MiB, for an image 0.3% larger; but the index a mount fetches
    /// first grows with the logical disk, so large disks keep larger frames (docs/FORMAT.md,
    /// BENCHMARKS.md "Slow link: frame size"). `ImagePlan` may still raise it for huge disks.
    public static func defaultFrameSize(diskSize: UInt64) -> Int {
        var frame = defaultFrameSize
        while frame < 1024 * 1024, (diskSize / UInt64(frame)) * UInt64(FrameIndex.frameRecordSize) > UInt64(defaultIndexBudget) {
            frame *= 2
        }
        return frame
    }

    public init(diskSize: UInt64, frameSize: Int) throws(FormatError) {
        guard frameSize >= Self.minimumFrameSize, frameSize <= Self.maximumFrameSize, frameSize & (frameSize - 1) == 0 else {
            throw .invalidFrameSize(frameSize)
        }
        guard diskSize <= FormatLimits.maximumDiskSize else { throw .diskTooLarge(diskSize) }
        self.diskSize = diskSize
        self.frameSize = frameSize
    }

    public var frameCount: Int { Int((diskSize + UInt64(frameSize) - 1) / UInt64(frameSize)) }

    /// The disk offset at which frame `index` starts.
    public func offset(ofFrame index: Int) -> UInt64 { UInt64(index) * UInt64(frameSize) }

    /// The uncompressed length of frame `index` (the last frame may be short).
    public func length(ofFrame index: Int) -> Int {
        let start = offset(ofFrame: index)
        return Int(min(UInt64(frameSize), diskSize - start))
    }

    /// The frame that holds disk offset `offset` (which must be below `diskSize`).
    public func frame(containing offset: UInt64) -> Int { Int(offset / UInt64(frameSize)) }

    /// The frames that cover `[offset, offset + length)`, clipped to the disk.
    public func frames(covering offset: UInt64, length: Int) -> Range<Int> {
        guard length > 0, offset < diskSize else { return 0..<0 }
        let end = min(diskSize, offset + UInt64(length))
        return frame(containing: offset)..<(frame(containing: end - 1) + 1)
    }
}

/// Hard limits a reader enforces before trusting any size it reads from an image
/// (docs/FORMAT.md, "Limits"). Writers check them too (`ImagePlan`), so that every image
/// `imgfs push` uploads is one that `pull` and `mount` accept.
public enum FormatLimits {
    /// 16 TiB: larger than any VM disk imgfs is meant for, small enough that frame counts fit in memory.
    public static let maximumDiskSize: UInt64 = 1 << 44
    /// The frame index. At 56 bytes a frame it holds about 4.79 million frames: 292 GiB of disk
    /// at 64 KiB frames, 4.6 TiB at 1 MiB, 18 TiB at 4 MiB; so a 16 TiB disk needs frames of
    /// 4 MiB or more, and `ImagePlan` raises the frame size when the user gave none.
    public static let maximumIndexSize: Int64 = 256 * 1024 * 1024
    /// The manifest, as the OCI distribution spec suggests and registries commonly enforce. With
    /// about 420 bytes a chunk descriptor it holds about 9,900 chunk layers: 4.8 TiB of disk at
    /// 512 MiB chunks, so larger disks need larger chunks.
    public static let maximumManifestSize: Int64 = 4 * 1024 * 1024
    /// The config blob (a few hundred bytes of JSON in practice).
    public static let maximumConfigSize: Int64 = 1024 * 1024
    /// nvram.bin, config.json and the boot profile, read whole into memory.
    public static let maximumSmallBlobSize: Int64 = 64 * 1024 * 1024
}
