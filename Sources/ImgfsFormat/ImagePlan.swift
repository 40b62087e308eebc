import OCI
import Verity

/// The geometry a writer uses for a disk, checked before a byte of the disk is read against
/// every limit a reader enforces (docs/FORMAT.md, "Limits"): the frame index and the manifest
/// of the image it would write must stay within them, whatever the disk's contents.
///
/// When the caller lets it (the user gave no `--frame-size` or `--chunk-size`), the plan
/// doubles the frame size until the index fits and the chunk size until the manifest fits, and
/// says so in `adjustments`; otherwise it throws an error that names the size that would work.
public struct ImagePlan: Sendable, Equatable {
    public var geometry: DiskGeometry
    /// The chunk size the config records: the chunk size of a multi-layer image, the disk size
    /// of a single-layer one.
    public var chunkSize: UInt64
    public var layout: FrameIndex.Layout
    /// The largest index and manifest the image can have (all chunks stored, longest numbers).
    public var largestIndexSize: Int64
    public var largestManifestSize: Int64
    /// One sentence per size the plan changed from what was asked, for the user.
    public var adjustments: [String]

    public init(diskSize: UInt64, frameSize: Int, chunkSize: UInt64, layout: FrameIndex.Layout,
                adjustFrameSize: Bool, adjustChunkSize: Bool) throws(FormatError) {
        var frame = frameSize
        var chunk = chunkSize
        var adjustments: [String] = []
        while true {
            let geometry = try DiskGeometry(diskSize: diskSize, frameSize: frame)
            if layout == .multiLayer {
                if adjustChunkSize, chunk < UInt64(frame) { chunk = UInt64(frame) }
                guard chunk >= UInt64(frame), chunk % UInt64(frame) == 0 else {
                    throw .badConfig(field: "disk.chunkSize", value: String(chunk), reason: "it must be a positive multiple of the frame size \(frame)")
                }
            }
            let index = Self.largestIndexSize(geometry, chunkSize: chunk, layout: layout)
            if index > FormatLimits.maximumIndexSize {
                if adjustFrameSize, frame < DiskGeometry.maximumFrameSize {
                    frame *= 2
                    continue
                }
                let fitting = Self.smallestFittingFrameSize(diskSize: diskSize, chunkSize: chunk, layout: layout)
                throw .exceedsReaderLimit(
                    "the frame index of a \(diskSize)-byte disk at \(frame)-byte frames would be up to \(index) bytes, " +
                    "more than the \(FormatLimits.maximumIndexSize) bytes readers accept; " +
                    (fitting.map { "use --frame-size \(Self.sizeText(UInt64($0))) or larger" } ?? "no frame size fits; the disk is too large"))
            }
            let manifest = Self.largestManifestSize(geometry, chunkSize: chunk, layout: layout)
            if manifest > FormatLimits.maximumManifestSize {
                if adjustChunkSize, layout == .multiLayer, chunk < diskSize {
                    chunk *= 2
                    continue
                }
                let fitting = Self.smallestFittingChunkSize(geometry, from: chunk)
                throw .exceedsReaderLimit(
                    "the manifest of a \(diskSize)-byte disk in \(chunk)-byte chunks would be up to \(manifest) bytes, " +
                    "more than the \(FormatLimits.maximumManifestSize) bytes readers accept; " +
                    (fitting.map { "use --chunk-size \(Self.sizeText($0)) or larger" } ?? "no chunk size fits"))
            }
            if frame != frameSize {
                adjustments.append("frame size \(Self.sizeText(UInt64(frame))) instead of \(Self.sizeText(UInt64(frameSize))): at the smaller size " +
                                   "the frame index of this \(Self.sizeText(diskSize)) disk would pass the \(Self.sizeText(UInt64(FormatLimits.maximumIndexSize))) readers accept")
            }
            if chunk != chunkSize {
                adjustments.append("chunk size \(Self.sizeText(chunk)) instead of \(Self.sizeText(chunkSize)): " +
                                   (chunkSize < UInt64(frame) ? "a chunk holds at least one frame"
                                    : "with smaller chunks the manifest of this disk would pass the \(Self.sizeText(UInt64(FormatLimits.maximumManifestSize))) readers accept"))
            }
            self.geometry = geometry
            self.chunkSize = layout == .singleLayer ? diskSize : chunk
            self.layout = layout
            self.largestIndexSize = index
            self.largestManifestSize = manifest
            self.adjustments = adjustments
            return
        }
    }

    /// `64 + 40 × layers + 56 × frames` with every chunk stored in a layer of its own.
    static func largestIndexSize(_ geometry: DiskGeometry, chunkSize: UInt64, layout: FrameIndex.Layout) -> Int64 {
        let layers = chunkCount(geometry, chunkSize: chunkSize, layout: layout)
        return Int64(FrameIndex.headerSize) + Int64(FrameIndex.layerRecordSize) * Int64(layers)
            + Int64(FrameIndex.frameRecordSize) * Int64(geometry.frameCount)
    }

    static func chunkCount(_ geometry: DiskGeometry, chunkSize: UInt64, layout: FrameIndex.Layout) -> UInt64 {
        guard geometry.diskSize > 0 else { return 0 }
        switch layout {
        case .singleLayer: return 1
        case .multiLayer: return geometry.diskSize / chunkSize + (geometry.diskSize % chunkSize == 0 ? 0 : 1)
        }
    }

    /// The encoded manifest with every chunk stored, each descriptor at its longest (largest
    /// numbers), plus nvram, config.json and a boot profile: an upper bound of what push writes.
    static func largestManifestSize(_ geometry: DiskGeometry, chunkSize: UInt64, layout: FrameIndex.Layout) -> Int64 {
        let chunks = chunkCount(geometry, chunkSize: chunkSize, layout: layout)
        let digest = SHA256Hasher.digest([UInt8]())
        let config = ImageConfig(disk: .init(size: geometry.diskSize, frameSize: geometry.frameSize, chunkSize: chunkSize, layout: layout),
                                 files: ["disk.img", "nvram.bin", "config.json"])
        let small = Descriptor(mediaType: .imgfsNVRAM, digest: digest, size: Int64(FormatLimits.maximumSmallBlobSize))
        let profile = ImgfsImage.titled(.imgfsBootProfile, digest: digest, size: Int64(FormatLimits.maximumSmallBlobSize), title: "boot-profile")
        let longest = ChunkLayer(number: Int(max(chunks, 1) - 1), digest: digest, compressedSize: Int64.max,
                                 diskOffset: geometry.diskSize, diskLength: geometry.diskSize,
                                 uncompressedSize: UInt64(Int64.max), uncompressedDigest: digest)
        let empty = ImgfsImage.makeManifest(config: config, fsverityDigest: digest, configDescriptor: small, index: small, chunks: [],
                                            nvram: small, vmConfig: small, bootProfile: profile)
        let one = ImgfsImage.makeManifest(config: config, fsverityDigest: digest, configDescriptor: small, index: small, chunks: [longest],
                                          nvram: small, vmConfig: small, bootProfile: profile)
        let base = Int64(ManifestEncoding.encode(empty).count)
        let perChunk = Int64(ManifestEncoding.encode(one).count) - base
        return base + perChunk * Int64(chunks)
    }

    static func smallestFittingFrameSize(diskSize: UInt64, chunkSize: UInt64, layout: FrameIndex.Layout) -> Int? {
        var frame = DiskGeometry.minimumFrameSize
        while frame <= DiskGeometry.maximumFrameSize {
            if let geometry = try? DiskGeometry(diskSize: diskSize, frameSize: frame),
               largestIndexSize(geometry, chunkSize: max(chunkSize, UInt64(frame)), layout: layout) <= FormatLimits.maximumIndexSize {
                return frame
            }
            frame *= 2
        }
        return nil
    }

    static func smallestFittingChunkSize(_ geometry: DiskGeometry, from chunkSize: UInt64) -> UInt64? {
        var chunk = chunkSize
        while chunk < geometry.diskSize * 2 {
            chunk *= 2
            if largestManifestSize(geometry, chunkSize: chunk, layout: .multiLayer) <= FormatLimits.maximumManifestSize { return chunk }
        }
        return nil
    }

    /// 4194304 → "4M", as `--frame-size` and `--chunk-size` read it.
    static func sizeText(_ bytes: UInt64) -> String {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] where bytes >= 1 << shift && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(unit)"
        }
        return String(bytes)
    }
}
