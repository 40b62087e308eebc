import OCI
import Verity

/// lume's OCI format (lume ≥ 0.3, trycua/cua `libs/lume`, `OCIMediaType`/`OCIAnnotation`).
///
/// - manifest `config`: `application/vnd.trycua.lume.config.v1+json`; its blob is the VM's config.
/// - `application/vnd.trycua.lume.nvram.v1`: nvram.bin, uncompressed.
/// - `application/vnd.trycua.lume.disk.v1`: gzip. Chunked images carry `part.number` (0-based),
///   `part.total`, `part.offset`, `content.uncompressed-size` and `-digest` per part, and the
///   manifest `total-uncompressed-size`; the parts must tile the disk (lume's own pull refuses
///   gaps). Several parts may share one blob. A single-layer image has one disk layer without
///   part annotations.
public enum LumeOCIFormat {
    public static let configMediaType: MediaType = "application/vnd.trycua.lume.config.v1+json"
    public static let diskMediaType: MediaType = "application/vnd.trycua.lume.disk.v1"
    public static let nvramMediaType: MediaType = "application/vnd.trycua.lume.nvram.v1"

    public static let partNumberAnnotation = "org.trycua.lume.part.number"
    public static let partTotalAnnotation = "org.trycua.lume.part.total"
    public static let partOffsetAnnotation = "org.trycua.lume.part.offset"
    public static let uncompressedSizeAnnotation = "org.trycua.lume.content.uncompressed-size"
    public static let uncompressedDigestAnnotation = "org.trycua.lume.content.uncompressed-digest"
    public static let totalSizeAnnotation = "org.trycua.lume.total-uncompressed-size"

    /// lume's part size when it pushes chunked (512 MiB), which `--format lume` follows.
    public static let defaultPartSize: UInt64 = 512 * 1024 * 1024

    public static func read(_ manifest: Manifest) throws(ImageLayoutError) -> VMImage {
        var disks = [(position: Int, layer: Descriptor)]()
        var nvram: Descriptor?
        for (position, layer) in manifest.layers.enumerated() {
            let name = layerName(position, layer)
            switch layer.mediaType.base {
            case diskMediaType.rawValue: disks.append((position, layer))
            case nvramMediaType.rawValue:
                try place(layer, name, what: "nvram", in: &nvram)
            default: throw .unknownMediaType(layer: name, mediaType: layer.mediaType.rawValue)
            }
        }
        guard !disks.isEmpty else { throw .missingLayer("disk layer (\(diskMediaType))") }
        let manifestName = "manifest"
        let total = try decimal(manifest.annotations, totalSizeAnnotation, where: manifestName)
        let vmConfig: Descriptor? = manifest.config.mediaType.base == configMediaType.rawValue ? manifest.config : nil
        if let config = vmConfig { try checkSmall(config, "config blob (\(config.digest))") }

        if disks.count == 1, disks[0].layer.annotations?[partNumberAnnotation] == nil {
            let (position, layer) = disks[0]
            let name = layerName(position, layer)
            let partSize = try decimal(layer.annotations, uncompressedSizeAnnotation, where: name)
            guard let size = total ?? partSize else {
                throw .missingAnnotation(layer: name, key: "\(uncompressedSizeAnnotation) (or the manifest's \(totalSizeAnnotation))")
            }
            if let total, let partSize, total != partSize {
                throw .badAnnotation(layer: name, key: uncompressedSizeAnnotation, value: "\(partSize) (the manifest says the disk is \(total) bytes)")
            }
            let digest = try digestAnnotation(layer.annotations, uncompressedDigestAnnotation, where: name)
            let segment = Segment(layerIndex: position, blob: layer, codec: .gzip, diskOffset: 0, length: size, uncompressedDigest: digest)
            return VMImage(kind: .lumeOCI, manifest: manifest, layout: try DiskLayout(diskSize: size, segments: [segment]), nvram: nvram, vmConfig: vmConfig)
        }

        var segments = [Segment]()
        var numbers = Set<UInt64>()
        for (position, layer) in disks {
            let name = layerName(position, layer)
            let number = try requiredDecimal(layer.annotations, partNumberAnnotation, where: name)
            let partTotal = try requiredDecimal(layer.annotations, partTotalAnnotation, where: name)
            guard partTotal == UInt64(disks.count) else {
                throw .badAnnotation(layer: name, key: partTotalAnnotation, value: "\(partTotal) (the manifest has \(disks.count) disk parts)")
            }
            guard number < partTotal, numbers.insert(number).inserted else {
                throw .badAnnotation(layer: name, key: partNumberAnnotation, value: "\(number) (repeated or not below \(partTotal))")
            }
            let offset = try requiredDecimal(layer.annotations, partOffsetAnnotation, where: name)
            let size = try requiredDecimal(layer.annotations, uncompressedSizeAnnotation, where: name)
            // Checked before any `diskRange` is formed: offset + size is the registry's arithmetic.
            let (end, overflow) = offset.addingReportingOverflow(size)
            guard !overflow, end <= FormatsLimits.maximumDiskSize else {
                throw .badAnnotation(layer: name, key: partOffsetAnnotation,
                                     value: "\(offset) (with \(size) bytes the part ends past the \(FormatsLimits.maximumDiskSize)-byte disk limit)")
            }
            let digest = try digestAnnotation(layer.annotations, uncompressedDigestAnnotation, where: name)
            segments.append(Segment(layerIndex: position, blob: layer, codec: .gzip, diskOffset: offset, length: size, uncompressedDigest: digest))
        }
        let end = segments.map(\.diskRange.upperBound).max() ?? 0
        let diskSize = total ?? end
        let layout = try DiskLayout(diskSize: diskSize, segments: segments)
        // Parts tile the disk: a gap is a lost part, which lume's pull would silently turn into zeros.
        var covered: UInt64 = 0
        for segment in layout.segments {
            guard segment.diskOffset == covered else {
                throw .badLayer(layer: segment.name, reason: "disk bytes \(covered)..<\(segment.diskOffset) are in no disk part")
            }
            covered = segment.diskRange.upperBound
        }
        guard covered == diskSize else {
            throw .badAnnotation(layer: manifestName, key: totalSizeAnnotation, value: "\(diskSize) (the parts cover \(covered) bytes)")
        }
        return VMImage(kind: .lumeOCI, manifest: manifest, layout: layout, nvram: nvram, vmConfig: vmConfig)
    }

    /// One part of a chunked lume image, for `manifest(...)`.
    public struct Part: Sendable {
        public var number: Int
        public var blob: Digest
        public var compressedSize: Int64
        public var diskOffset: UInt64
        public var uncompressedSize: UInt64
        public var uncompressedDigest: Digest

        public init(number: Int, blob: Digest, compressedSize: Int64, diskOffset: UInt64, uncompressedSize: UInt64, uncompressedDigest: Digest) {
            self.number = number
            self.blob = blob
            self.compressedSize = compressedSize
            self.diskOffset = diskOffset
            self.uncompressedSize = uncompressedSize
            self.uncompressedDigest = uncompressedDigest
        }
    }

    /// A chunked lume manifest: parts in order (titled `disk.img.part.N` as lume does), then nvram.
    /// `config` is the VM config blob, stored under lume's config media type.
    public static func manifest(config: Descriptor, parts: [Part], nvram: Descriptor?, diskSize: UInt64, annotations: [String: String]) -> Manifest {
        var layers = parts.sorted { $0.number < $1.number }.map { part in
            Descriptor(mediaType: diskMediaType, digest: part.blob, size: part.compressedSize, annotations: [
                partNumberAnnotation: String(part.number),
                partTotalAnnotation: String(parts.count),
                partOffsetAnnotation: String(part.diskOffset),
                uncompressedSizeAnnotation: String(part.uncompressedSize),
                uncompressedDigestAnnotation: part.uncompressedDigest.description,
                AnnotationKey.title: "disk.img.part.\(part.number)",
            ])
        }
        if let nvram {
            layers.append(Descriptor(mediaType: nvramMediaType, digest: nvram.digest, size: nvram.size, annotations: [AnnotationKey.title: "nvram.bin"]))
        }
        var all = annotations
        all[totalSizeAnnotation] = String(diskSize)
        return Manifest(config: Descriptor(mediaType: configMediaType, digest: config.digest, size: config.size), layers: layers, annotations: all)
    }
}
