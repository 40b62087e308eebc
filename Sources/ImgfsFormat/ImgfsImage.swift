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
    /// The `dev.imgfs.chunk.number` of each of `chunkDescriptors`, as checked here.
    public let chunkNumbers: [UInt64]
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
        guard manifest.config.size >= 0, manifest.config.size <= FormatLimits.maximumConfigSize, Int64(configBytes.count) <= FormatLimits.maximumConfigSize else {
            throw .notAnImgfsImage(reason: "config blob of \(max(manifest.config.size, Int64(configBytes.count))) bytes is outside the \(FormatLimits.maximumConfigSize)-byte limit")
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
                if number < chunkCount {
                    // Where the chunk lies is implied by its number; the annotations must agree.
                    let offset = number * config.disk.chunkSize
                    let length = min(config.disk.chunkSize, config.disk.size - offset)
                    for (key, expected) in [(ImgfsAnnotation.chunkOffset, offset), (ImgfsAnnotation.chunkLength, length)] {
                        let value = try Self.integerAnnotation(layer, key)
                        guard value == expected else {
                            throw .badAnnotation(key: key, value: "\(value) (chunk \(number) of this geometry has \(expected))")
                        }
                    }
                }
                chunks.append((number, layer))
            case .imgfsNVRAM:
                nvram = try Self.single(layer, "nvram", replacing: nvram)
            case .imgfsVMConfig:
                vmConfig = try Self.single(layer, "config.json", replacing: vmConfig)
            case .imgfsBootProfile:
                profile = try Self.single(layer, "boot profile", replacing: profile)
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
        self.chunkNumbers = chunks.map(\.number)
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
        // A frame of chunk c is stored in chunk c's layer, and a chunk has a layer exactly when
        // it stores a frame: so an edit re-uploads one chunk, and no layer is along for the ride.
        var chunkLayers = [UInt64: Digest]()
        for (number, descriptor) in zip(chunkNumbers, chunkDescriptors) { chunkLayers[number] = descriptor.digest }
        let framesPerChunk = index.layout == .singleLayer ? max(index.frames.count, 1) : Int(config.disk.chunkSize / UInt64(geometry.frameSize))
        var storing = Set<UInt64>()
        for (i, frame) in index.frames.enumerated() {
            guard let location = frame.location else { continue }
            let chunk = UInt64(i / framesPerChunk)
            storing.insert(chunk)
            guard let expected = chunkLayers[chunk] else {
                throw .notAnImgfsImage(reason: "frame \(i) is stored, but chunk \(chunk) has no layer in the manifest")
            }
            guard index.layers[location.layer].digest == expected else {
                throw .notAnImgfsImage(reason: "frame \(i) of chunk \(chunk) is stored in \(index.layers[location.layer].digest), not in chunk \(chunk)'s layer \(expected)")
            }
        }
        if let unused = chunkLayers.keys.sorted().first(where: { !storing.contains($0) }) {
            throw .notAnImgfsImage(reason: "chunk \(unused) has a layer in the manifest but stores no frame")
        }
    }

    private static func integerAnnotation(_ layer: Descriptor, _ key: String) throws(FormatError) -> UInt64 {
        guard let text = layer.annotations?[key] else {
            throw .notAnImgfsImage(reason: "layer \(layer.digest) has no \(key) annotation")
        }
        // Canonical decimal only: UInt64("+1") parses, and "01" and "1" must not be two numbers.
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
              text == "0" || !text.hasPrefix("0"),
              let value = UInt64(text) else { throw .badAnnotation(key: key, value: text) }
        return value
    }

    /// nvram, config.json and the boot profile: at most one layer each, at most 64 MiB.
    private static func single(_ layer: Descriptor, _ name: String, replacing existing: Descriptor?) throws(FormatError) -> Descriptor {
        guard existing == nil else { throw .notAnImgfsImage(reason: "the manifest has two \(name) layers") }
        guard layer.size <= FormatLimits.maximumSmallBlobSize else {
            throw .notAnImgfsImage(reason: "\(name) layer of \(layer.size) bytes is larger than the \(FormatLimits.maximumSmallBlobSize)-byte limit")
        }
        return layer
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
