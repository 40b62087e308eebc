import OCI
import Verity

/// An imgfs image as its manifest and config describe it, checked for consistency.
/// The frame index is fetched separately (`indexDescriptor`) and checked with `validate(_:)`.
public struct ImgfsImage: Sendable {
    public let manifest: Manifest
    public let config: ImageConfig
    public let indexDescriptor: Descriptor
    /// Chunk layers in chunk-number order (a blob may appear more than once).
    public let chunkDescriptors: [Descriptor]
    public let nvram: Descriptor?
    public let vmConfig: Descriptor?
    public let bootProfile: Descriptor?
    public let geometry: DiskGeometry
    /// fs-verity digest of the whole logical disk.img, from the manifest annotation.
    public let fsverityDigest: Digest

    /// True when the manifest looks like an imgfs image (its config has the imgfs media type).
    public static func isImgfs(_ manifest: Manifest) -> Bool {
        manifest.config.mediaType == .imgfsConfig
    }

    public init(manifest: Manifest, configBytes: [UInt8]) throws(FormatError) {
        guard Self.isImgfs(manifest) else {
            throw .notAnImgfsImage(reason: "config media type is \(manifest.config.mediaType), not \(MediaType.imgfsConfig)")
        }
        let config = try ImageConfig(decoding: configBytes)
        let geometry = try DiskGeometry(diskSize: config.disk.size, frameSize: config.disk.frameSize)

        var index: Descriptor?
        let chunkCount = try Self.chunkCount(config.disk, geometry)
        var chunks = [(number: UInt64, descriptor: Descriptor)]()
        var nvram: Descriptor?
        var vmConfig: Descriptor?
        var profile: Descriptor?
        for layer in manifest.layers {
            guard layer.size >= 0 else { throw .notAnImgfsImage(reason: "layer \(layer.digest) has a negative size \(layer.size)") }
            switch layer.mediaType {
            case .imgfsIndex:
                guard index == nil else { throw .notAnImgfsImage(reason: "the manifest has two frame index layers") }
                guard layer.size <= FormatLimits.maximumIndexSize else { throw .indexTooLarge(layer.size) }
                index = layer
            case .imgfsChunk:
                let number = try Self.integerAnnotation(layer, ImgfsAnnotation.chunkNumber)
                chunks.append((number, layer))
            case .imgfsNVRAM:
                guard layer.size <= FormatLimits.maximumSmallBlobSize else { throw .notAnImgfsImage(reason: "nvram layer of \(layer.size) bytes is too large") }
                nvram = layer
            case .imgfsVMConfig:
                guard layer.size <= FormatLimits.maximumSmallBlobSize else { throw .notAnImgfsImage(reason: "config.json layer of \(layer.size) bytes is too large") }
                vmConfig = layer
            case .imgfsBootProfile:
                guard layer.size <= FormatLimits.maximumIndexSize else { throw .notAnImgfsImage(reason: "boot profile of \(layer.size) bytes is too large") }
                profile = layer
            default:
                // Unknown layers are ignored so that later format additions stay readable;
                // docs/FORMAT.md says readers must do so.
                continue
            }
        }
        guard let index else { throw .missingLayer(MediaType.imgfsIndex.rawValue) }
        guard let verityText = manifest.annotations?[ImgfsAnnotation.fsverityDigest] else {
            throw .notAnImgfsImage(reason: "the manifest has no \(ImgfsAnnotation.fsverityDigest) annotation")
        }
        guard let fsverityDigest = try? Digest(parsing: verityText) else {
            throw .badAnnotation(key: ImgfsAnnotation.fsverityDigest, value: verityText)
        }
        chunks.sort { $0.number < $1.number }
        for (previous, next) in zip(chunks, chunks.dropFirst()) where previous.number == next.number {
            throw .badAnnotation(key: ImgfsAnnotation.chunkNumber, value: "\(next.number) (used by two layers)")
        }
        if let last = chunks.last, last.number >= max(chunkCount, 1) {
            throw .badAnnotation(key: ImgfsAnnotation.chunkNumber, value: "\(last.number) (the disk has \(chunkCount) chunks)")
        }
        self.manifest = manifest
        self.config = config
        self.indexDescriptor = index
        self.chunkDescriptors = chunks.map(\.descriptor)
        self.nvram = nvram
        self.vmConfig = vmConfig
        self.bootProfile = profile
        self.geometry = geometry
        self.fsverityDigest = fsverityDigest
    }


    /// Checks that a decoded frame index belongs to this image: same geometry and layout, and every
    /// layer it names is a chunk layer of the manifest with the same size.
    public func validate(_ index: FrameIndex) throws(FormatError) {
        guard index.geometry == geometry else {
            throw .notAnImgfsImage(reason: "frame index geometry (\(index.geometry.diskSize) bytes, \(index.geometry.frameSize)-byte frames) differs from the config's (\(config.disk.size), \(config.disk.frameSize))")
        }
        guard index.layout == config.disk.layout else {
            throw .notAnImgfsImage(reason: "frame index layout \(index.layout.rawValue) differs from the config's \(config.disk.layout.rawValue)")
        }
        var sizes = [Digest: Int64]()
        for chunk in chunkDescriptors { sizes[chunk.digest] = chunk.size }
        for layer in index.layers {
            guard let size = sizes[layer.digest] else { throw .layerMissingFromManifest(layer.digest) }
            guard size == layer.compressedSize else {
                throw .notAnImgfsImage(reason: "layer \(layer.digest) is \(size) bytes in the manifest but \(layer.compressedSize) in the frame index")
            }
        }
    }

    private static func integerAnnotation(_ layer: Descriptor, _ key: String) throws(FormatError) -> UInt64 {
        guard let text = layer.annotations?[key] else {
            throw .notAnImgfsImage(reason: "layer \(layer.digest) has no \(key) annotation")
        }
        // Decimal digits only: UInt64("+1") parses, and a number is not a place for signs.
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              let value = UInt64(text) else { throw .badAnnotation(key: key, value: text) }
        return value
    }

    /// `ceil(size / chunkSize)`, after checking that the chunk size is one a writer can make:
    /// a positive multiple of the frame size (multi-layer), or the disk size (single-layer; 0
    /// for an empty disk). Computed without `size + chunkSize - 1`, which a hostile config
    /// could overflow.
    static func chunkCount(_ disk: ImageConfig.Disk, _ geometry: DiskGeometry) throws(FormatError) -> UInt64 {
        let chunkSize = disk.chunkSize
        if disk.size == 0 { return 0 }
        guard chunkSize > 0 else {
            throw .badConfig(field: "disk.chunkSize", value: "0", reason: "a disk of \(disk.size) bytes needs a positive chunk size")
        }
        switch disk.layout {
        case .singleLayer:
            guard chunkSize == disk.size else {
                throw .badConfig(field: "disk.chunkSize", value: String(chunkSize), reason: "a single-layer image has one chunk of the disk size \(disk.size)")
            }
        case .multiLayer:
            guard chunkSize % UInt64(geometry.frameSize) == 0 else {
                throw .badConfig(field: "disk.chunkSize", value: String(chunkSize), reason: "it must be a multiple of the frame size \(geometry.frameSize)")
            }
        }
        return disk.size / chunkSize + (disk.size % chunkSize == 0 ? 0 : 1)
    }
}
