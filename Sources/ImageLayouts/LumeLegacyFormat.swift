import FoundationEssentials
import OCI
import Verity

/// lume's legacy format (before 0.3): the disk as `application/octet-stream+lz4` parts (Apple
/// framed LZ4) concatenated in manifest order, `config.json` as an
/// `application/vnd.oci.image.config.v1+json` layer, `nvram.bin` as `application/octet-stream`.
///
/// Each part carries `org.trycua.lume.uncompressed-size` (needed to place the next part without
/// decoding this one) and may carry `org.trycua.lume.uncompressed-content-digest`. The disk size
/// is the config blob's annotation `com.trycua.lume.disk.uncompressed_size` or the manifest's
/// `org.trycua.lume.uncompressed-disk-size`; bytes past the last part are zeros.
public enum LumeLegacyFormat {
    public static let diskMediaType: MediaType = "application/octet-stream+lz4"
    public static let uncompressedSizeAnnotation = "org.trycua.lume.uncompressed-size"
    public static let uncompressedDigestAnnotation = "org.trycua.lume.uncompressed-content-digest"
    public static let diskSizeAnnotation = "org.trycua.lume.uncompressed-disk-size"
    public static let configDiskSizeAnnotation = "com.trycua.lume.disk.uncompressed_size"

    public static func read(_ manifest: Manifest, load: BlobLoader) throws(ImageLayoutError) -> VMImage {
        var segments = [Segment]()
        var nvram: Descriptor?
        var vmConfig: Descriptor?
        var offset: UInt64 = 0
        for (position, layer) in manifest.layers.enumerated() {
            let name = layerName(position, layer)
            switch layer.mediaType.base {
            case diskMediaType.rawValue:
                try appendSequentialLZ4Piece(layer, position: position, name: name, sizeKey: uncompressedSizeAnnotation,
                                             digestKey: uncompressedDigestAnnotation, to: &segments, offset: &offset)
            case MediaType.ociConfig.rawValue:
                try place(layer, name, what: "config.json", in: &vmConfig)
            case MediaType.octetStream.rawValue:
                try place(layer, name, what: "nvram", in: &nvram)
            default:
                throw .unknownMediaType(layer: name, mediaType: layer.mediaType.rawValue)
            }
        }
        guard !segments.isEmpty else { throw .missingLayer("disk part (\(diskMediaType))") }
        var diskSize = try decimal(manifest.annotations, diskSizeAnnotation, where: "manifest")
        if diskSize == nil, manifest.config.size > 0, manifest.config.mediaType == .ociConfig {
            diskSize = try configDiskSize(manifest.config, load: load)
        }
        let size = diskSize ?? offset
        guard offset <= size else {
            throw .badAnnotation(layer: "manifest", key: diskSizeAnnotation, value: "\(size) (the parts hold \(offset) bytes)")
        }
        return VMImage(kind: .lumeLegacy, manifest: manifest, layout: try DiskLayout(diskSize: size, segments: segments), nvram: nvram, vmConfig: vmConfig)
    }

    /// The disk size from the OCI config blob's annotations, if it has one.
    static func configDiskSize(_ config: Descriptor, load: BlobLoader) throws(ImageLayoutError) -> UInt64? {
        let bytes = try loadBlob(load, config, limit: FormatsLimits.maximumConfigSize, what: "OCI config blob")
        struct Config: Decodable { var annotations: [String: String]? }
        guard let parsed = try? JSONDecoder().decode(Config.self, from: Data(bytes)) else {
            throw .badLayer(layer: "OCI config blob (\(config.digest))", reason: "is not JSON")
        }
        return try decimal(parsed.annotations, configDiskSizeAnnotation, where: "OCI config blob (\(config.digest))")
    }
}
