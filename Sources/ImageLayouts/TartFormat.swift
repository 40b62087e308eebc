import FoundationEssentials
import OCI
import Verity

/// tart's format (cirruslabs/tart `Sources/tart/OCI/Manifest.swift`, `Layerizer/DiskV2.swift`).
///
/// Layers in tart's push order: `application/vnd.cirruslabs.tart.config.v1` (the VM's
/// config.json), `application/vnd.cirruslabs.tart.disk.v2` pieces (512 MiB of disk each, each
/// compressed on its own with Apple framed LZ4, annotated `org.cirruslabs.tart.uncompressed-size`
/// and `-content-digest`), `application/vnd.cirruslabs.tart.nvram.v1`. The manifest's config is a
/// stub OCI config (`{"architecture":…,"os":…}`) and its annotations carry
/// `org.cirruslabs.tart.uncompressed-disk-size` and `org.cirruslabs.tart.upload-time`.
public enum TartFormat {
    public static let mediaTypePrefix = "application/vnd.cirruslabs.tart."
    public static let configMediaType: MediaType = "application/vnd.cirruslabs.tart.config.v1"
    public static let diskMediaType: MediaType = "application/vnd.cirruslabs.tart.disk.v2"
    public static let diskV1MediaType: MediaType = "application/vnd.cirruslabs.tart.disk.v1"
    public static let nvramMediaType: MediaType = "application/vnd.cirruslabs.tart.nvram.v1"
    public static let diskSizeAnnotation = "org.cirruslabs.tart.uncompressed-disk-size"
    public static let uploadTimeAnnotation = "org.cirruslabs.tart.upload-time"
    public static let uncompressedSizeAnnotation = "org.cirruslabs.tart.uncompressed-size"
    public static let uncompressedDigestAnnotation = "org.cirruslabs.tart.uncompressed-content-digest"
    /// tart's `layerLimitBytes`.
    public static let pieceSize: UInt64 = 512 * 1024 * 1024

    public static func read(_ manifest: Manifest) throws(ImageLayoutError) -> VMImage {
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
            case configMediaType.rawValue:
                try place(layer, name, what: "config", in: &vmConfig)
            case nvramMediaType.rawValue:
                try place(layer, name, what: "nvram", in: &nvram)
            case diskV1MediaType.rawValue:
                throw .badLayer(layer: name, reason: "tart disk v1 layers (one LZ4 stream cut across layers) are not supported; re-push with tart ≥ 1.0")
            default:
                throw .unknownMediaType(layer: name, mediaType: layer.mediaType.rawValue)
            }
        }
        guard !segments.isEmpty else { throw .missingLayer("disk layer (\(diskMediaType))") }
        let size = try decimal(manifest.annotations, diskSizeAnnotation, where: "manifest") ?? offset
        guard offset <= size else {
            throw .badAnnotation(layer: "manifest", key: diskSizeAnnotation, value: "\(size) (the disk layers hold \(offset) bytes)")
        }
        return VMImage(kind: .tart, manifest: manifest, layout: try DiskLayout(diskSize: size, segments: segments), nvram: nvram, vmConfig: vmConfig)
    }

    /// One disk piece, for `manifest(...)`.
    public struct Piece: Sendable {
        public var blob: Digest
        public var compressedSize: Int64
        public var uncompressedSize: UInt64
        public var uncompressedDigest: Digest

        public init(blob: Digest, compressedSize: Int64, uncompressedSize: UInt64, uncompressedDigest: Digest) {
            self.blob = blob
            self.compressedSize = compressedSize
            self.uncompressedSize = uncompressedSize
            self.uncompressedDigest = uncompressedDigest
        }
    }

    /// The stub OCI config tart writes "for Docker Hub compatibility", from the VM config's
    /// `arch` and `os` (tart's defaults: arm64, darwin).
    public static func ociConfigBlob(vmConfig: [UInt8]?) -> [UInt8] {
        struct VMConfig: Decodable { var arch: String?; var os: String? }
        let parsed = vmConfig.flatMap { try? JSONDecoder().decode(VMConfig.self, from: Data($0)) }
        struct Stub: Encodable { var architecture: String; var os: String }
        return ManifestEncoding.encode(Stub(architecture: parsed?.arch ?? "arm64", os: parsed?.os ?? "darwin"))
    }

    /// A tart manifest in tart's layer order: config, disk pieces, nvram.
    public static func manifest(ociConfig: Descriptor, vmConfig: Descriptor?, pieces: [Piece], nvram: Descriptor?, diskSize: UInt64, annotations: [String: String]) -> Manifest {
        var layers = [Descriptor]()
        if let vmConfig { layers.append(Descriptor(mediaType: configMediaType, digest: vmConfig.digest, size: vmConfig.size)) }
        layers += pieces.map { piece in
            Descriptor(mediaType: diskMediaType, digest: piece.blob, size: piece.compressedSize, annotations: [
                uncompressedSizeAnnotation: String(piece.uncompressedSize),
                uncompressedDigestAnnotation: piece.uncompressedDigest.description,
            ])
        }
        if let nvram { layers.append(Descriptor(mediaType: nvramMediaType, digest: nvram.digest, size: nvram.size)) }
        var all = annotations
        all[diskSizeAnnotation] = String(diskSize)
        return Manifest(config: Descriptor(mediaType: .ociConfig, digest: ociConfig.digest, size: ociConfig.size), layers: layers, annotations: all)
    }
}
