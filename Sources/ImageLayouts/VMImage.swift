import ImgfsFormat
import OCI
import Verity

/// The VM image formats imgfs reads.
public enum ImageKind: String, Sendable, Codable, CaseIterable {
    case imgfs
    /// lume ≥ 0.3: `application/vnd.trycua.lume.*`, gzip disk parts (or one gzip disk layer).
    case lumeOCI = "lume-oci"
    /// lume before 0.3: `application/octet-stream+lz4` disk parts in manifest order.
    case lumeLegacy = "lume-legacy"
    /// tart: `application/vnd.cirruslabs.tart.*`, LZ4 disk layers of 512 MiB each.
    case tart
    /// KubeVirt containerDisk: a container image with the disk (raw or qcow2) under `/disk/`.
    case containerDisk = "containerdisk"
}

/// Fetches a (small) blob whole, verified against its descriptor's digest, refusing more than
/// `limit` bytes. ImageLayouts does no I/O itself: the caller wires this to a registry client.
public typealias BlobLoader = (_ descriptor: Descriptor, _ limit: Int64) throws -> [UInt8]

/// A VM image as any of the formats describes it: the logical disk, and where nvram.bin and
/// config.json come from.
public struct VMImage: Sendable {
    public let kind: ImageKind
    public let manifest: Manifest
    public let layout: DiskLayout
    /// The nvram.bin layer, if any.
    public let nvram: Descriptor?
    /// The blob that is the VM's config.json, if any (for lume OCI images, the manifest's config blob).
    public let vmConfig: Descriptor?
    /// For imgfs images: the parsed image and its validated frame index.
    public let imgfs: ImgfsSource?
    /// How the disk's bytes are read (qcow2 only for containerDisks that hold one).
    public let diskFormat: DiskFileFormat

    public struct ImgfsSource: Sendable {
        public let image: ImgfsImage
        public let index: FrameIndex
    }

    init(kind: ImageKind, manifest: Manifest, layout: DiskLayout, nvram: Descriptor?, vmConfig: Descriptor?, imgfs: ImgfsSource? = nil,
         diskFormat: DiskFileFormat = .raw) {
        self.diskFormat = diskFormat
        self.kind = kind
        self.manifest = manifest
        self.layout = layout
        self.nvram = nvram
        self.vmConfig = vmConfig
        self.imgfs = imgfs
    }

    /// The fs-verity digest of the whole disk, when the format records one (imgfs only).
    public var fsverityDigest: Digest? { imgfs?.image.fsverityDigest }

    /// Manifest annotations that describe the VM rather than the encoding (peers' metadata such
    /// as lume's cpu count or tart's upload time), carried over by `convert`.
    public var metadataAnnotations: [String: String] {
        let encodingKeys: Set<String> = [
            TartFormat.diskSizeAnnotation, LumeOCIFormat.totalSizeAnnotation, LumeLegacyFormat.diskSizeAnnotation,
            ImgfsAnnotation.formatVersion, ImgfsAnnotation.diskSize, ImgfsAnnotation.frameSize,
            ImgfsAnnotation.layout, ImgfsAnnotation.fsverityDigest,
        ]
        return (manifest.annotations ?? [:]).filter { !encodingKeys.contains($0.key) }
    }
}

/// Recognises a manifest's format and reads it with the matching reader.
public enum VMImageReader {
    public static func kind(of manifest: Manifest) -> ImageKind? {
        if ImgfsImage.isImgfs(manifest) { return .imgfs }
        let types = Set(manifest.layers.map(\.mediaType.base))
        if manifest.config.mediaType.base == LumeOCIFormat.configMediaType.rawValue
            || types.contains(LumeOCIFormat.diskMediaType.rawValue) { return .lumeOCI }
        if types.contains(where: { $0.hasPrefix(TartFormat.mediaTypePrefix) }) { return .tart }
        if types.contains(LumeLegacyFormat.diskMediaType.rawValue) { return .lumeLegacy }
        if ContainerDiskFormat.isContainerImage(manifest) && ForeignArtifact.classify(manifest) == .containerImage { return .containerDisk }
        return nil
    }

    /// Reads and validates `manifest`; `load` fetches the config blob or frame index when the
    /// format needs them, `loadRange` the start of a containerDisk's layers.
    public static func read(_ manifest: Manifest, load: BlobLoader, loadRange: BlobRangeLoader? = nil) throws(ImageLayoutError) -> VMImage {
        guard manifest.layers.count <= FormatsLimits.maximumLayers else { throw .tooManyLayers(manifest.layers.count) }
        switch kind(of: manifest) {
        case .imgfs: return try ImgfsFormatReader.read(manifest, load: load)
        case .lumeOCI: return try LumeOCIFormat.read(manifest)
        case .lumeLegacy: return try LumeLegacyFormat.read(manifest, load: load)
        case .tart: return try TartFormat.read(manifest)
        case .containerDisk: return try ContainerDiskFormat.read(manifest, loadRange: loadRange)
        case nil:
            throw .unrecognised(reason: ForeignArtifact.describe(manifest))
        }
    }
}

/// Runs a loader, turning its error into a layout error that names what was being loaded.
func loadBlob(_ load: BlobLoader, _ descriptor: Descriptor, limit: Int64, what: String) throws(ImageLayoutError) -> [UInt8] {
    do {
        return try load(descriptor, limit)
    } catch {
        throw .badLayer(layer: "\(what) (\(descriptor.digest))", reason: "could not be read: \(error)")
    }
}
