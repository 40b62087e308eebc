import Codec
import OCI

/// Fetches bytes `range` of a blob, unverified (the blob's digest is checked when it is read
/// whole). ImageLayouts does no I/O itself: the caller wires this to a registry client.
public typealias BlobRangeLoader = (_ descriptor: Descriptor, _ range: Range<Int64>) throws -> [UInt8]

/// How the disk file's bytes are to be read by a hypervisor; names the file mount and pull write.
public enum DiskFileFormat: String, Sendable, Codable {
    case raw
    case qcow2

    public var fileName: String {
        switch self {
        case .raw: "disk.img"
        case .qcow2: "disk.qcow2"
        }
    }

    /// qcow2's magic, `QFI\xfb`, at the start of every qcow2 file.
    public static let qcow2Magic: [UInt8] = [0x51, 0x46, 0x49, 0xFB]
}

/// KubeVirt containerDisks (`quay.io/containerdisks/…`, `…-container-disk-demo`): an ordinary
/// container image (OCI or Docker config, tar or tar+gzip layers) with the VM disk, raw or qcow2,
/// as a file under `/disk/` (the containerdisks project's tooling writes `disk/disk.img` whether
/// it is qcow2 or raw, owned 107:107; Dockerfiles `ADD` a `<name>.qcow2`).
///
/// Where this enters the model: no third disk implementation. The disk is one `Segment` whose
/// blob is the layer holding it and whose codec (`gzipTar`, `tar`) adds a tar stage to
/// `SegmentDecoder`: the layer is decoded as it streams, headers and padding are skipped, and
/// only the disk member's content (sparse maps applied) comes out, at its offset in the disk.
/// `LayerDisk` (mount), `LayerPuller` (pull), `StreamingDiskSource` (convert) and the verifier
/// read it as they read a lume or tart layer.
///
/// Trust: a containerDisk records no digest of the disk itself, so the layer's (compressed)
/// digest from the manifest is the trust anchor, checked over the whole blob before a mount
/// serves any byte of it or a pull calls the disk complete. The disk's size and name are not
/// in the manifest: they come from the member's tar header, found here by reading the start of
/// the layers (ranged requests, decoded from the start: a few KiB for KubeVirt's images, whose
/// layer begins with `disk/` and the disk's header). Those bytes are not verified yet; the tar
/// stage reads the header again from the verified stream and fails unless it names the same
/// member with the same size and first bytes (which chose qcow2 or raw).
public enum ContainerDiskFormat {
    public static let gzipLayerTypes: Set<String> = [
        MediaType.ociLayerGzip.rawValue,
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
    public static let tarLayerTypes: Set<String> = [
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
    ]
    static let configTypes: Set<String> = [MediaType.ociConfig.rawValue, "application/vnd.docker.container.image.v1+json"]

    /// What `convert --format containerdisk` writes, as the containerdisks project's tooling does.
    public static let directoryMode: UInt32 = 0o555
    public static let fileMode: UInt32 = 0o444
    public static let owner: UInt32 = 107

    /// Compressed bytes of one layer read to find the disk's header before giving up: a
    /// containerDisk's disk is normally the layer's first file, so a few KiB suffice.
    public static let maximumScanBytes: Int64 = 64 * 1024 * 1024

    /// A container image: a container config and only tar layers (perhaps a containerDisk; only
    /// reading the layers tells).
    public static func isContainerImage(_ manifest: Manifest) -> Bool {
        guard configTypes.contains(manifest.config.mediaType.base), !manifest.layers.isEmpty else { return false }
        return manifest.layers.allSatisfy { layer in
            let type = layer.mediaType.base
            return gzipLayerTypes.contains(type) || tarLayerTypes.contains(type) || type.hasPrefix("application/vnd.oci.image.layer.v1.tar+")
        }
    }

    /// The disk file a path names (`disk/<name>`, normalised), or nil for any other path.
    /// Only files directly under `/disk/` count, as KubeVirt looks for the disk there.
    public static func diskPath(_ path: String) -> String? {
        var rest = Substring(path)
        while true {
            if rest.hasPrefix("/") { rest = rest.dropFirst() } else if rest.hasPrefix("./") { rest = rest.dropFirst(2) } else { break }
        }
        guard rest.hasPrefix("disk/") else { return nil }
        var name = rest.dropFirst(5)
        while name.hasSuffix("/") { name = name.dropLast() }
        guard !name.isEmpty, !name.contains("/"), name != ".", name != ".." else { return nil }
        return "disk/" + name
    }

    public static func read(_ manifest: Manifest, loadRange: BlobRangeLoader?) throws(ImageLayoutError) -> VMImage {
        guard let loadRange else {
            throw .badLayer(layer: "layer 0 (\(manifest.layers.first?.digest.description ?? "none"))",
                            reason: "a containerDisk's disk is found by reading its layers, and this reader was given no access to them")
        }
        var found: Found?
        for (position, layer) in manifest.layers.enumerated() {
            let name = layerName(position, layer)
            guard let codec = codec(of: layer) else {
                throw .badLayer(layer: name, reason: "media type \(layer.mediaType.rawValue) is not supported (imgfs reads tar and tar+gzip container layers)")
            }
            guard let disk = try scan(layer, name: name, codec: codec, load: loadRange) else { continue }
            if let first = found {
                throw .badLayer(layer: name, reason: "holds \(disk.member.path), and \(first.layerName) holds \(first.member.path): "
                                + "exactly one file under /disk/ must be the disk")
            }
            found = Found(position: position, layer: layer, layerName: name, codec: codec, member: disk.member, head: disk.head)
        }
        guard let found else { throw .unrecognised(reason: ForeignArtifact.describe(manifest, scannedForDisk: true)) }
        guard found.member.size <= FormatsLimits.maximumDiskSize else { throw .diskTooLarge(found.member.size) }
        // The magic decides (it is what qemu's probe would see); the name only when the file is shorter.
        let format: DiskFileFormat = found.head.count >= 4
            ? (found.head.prefix(4).elementsEqual(DiskFileFormat.qcow2Magic) ? .qcow2 : .raw)
            : (found.member.path.lowercased().hasSuffix(".qcow2") ? .qcow2 : .raw)
        let segment = Segment(layerIndex: found.position, blob: found.layer, codec: found.codec, diskOffset: 0, length: found.member.size,
                              uncompressedDigest: nil, tarMember: found.member.path, tarMemberHead: Array(found.head.prefix(4)))
        return VMImage(kind: .containerDisk, manifest: manifest, layout: try DiskLayout(diskSize: found.member.size, segments: [segment]),
                       nvram: nil, vmConfig: nil, diskFormat: format)
    }

    static func codec(of layer: Descriptor) -> SegmentCodec? {
        let type = layer.mediaType.base
        if gzipLayerTypes.contains(type) { return .gzipTar }
        if tarLayerTypes.contains(type) { return .tar }
        return nil
    }

    struct Found {
        var position: Int
        var layer: Descriptor
        var layerName: String
        var codec: SegmentCodec
        var member: TarMember
        var head: [UInt8]
    }

    private struct Enough: Error {}

    /// Reads `layer` from its start until its first disk member's header and first bytes, or to
    /// its end when it has none; a second disk member before that point is refused.
    static func scan(_ layer: Descriptor, name: String, codec: SegmentCodec, load: BlobRangeLoader) throws(ImageLayoutError) -> (member: TarMember, head: [UInt8])? {
        guard layer.size >= 0 else { throw .badLayer(layer: name, reason: "negative size \(layer.size)") }
        let reader = TarStreamReader()
        let gzip: GzipStreamDecoder?
        do { gzip = codec == .gzipTar ? try GzipStreamDecoder(outputBufferSize: 256 * 1024) : nil } catch {
            throw .badLayer(layer: name, reason: "\(error)")
        }
        var member: TarMember?
        var inDisk = false
        var head = [UInt8]()
        let events: (TarStreamReader.Event) throws -> Void = { event in
            switch event {
            case .member(let next):
                guard let path = diskPath(next.path) else { return }
                try checkDiskMember(next, path: path, layer: name)
                guard next.kind == .regular else { return }
                var normalised = next
                normalised.path = path
                member = normalised
                inDisk = true
                if next.size == 0 { throw Enough() }
            case .data(let offset, let bytes) where inDisk:
                // A sparse file that starts with a hole starts with zeros.
                if UInt64(head.count) < min(4, offset) { head += [UInt8](repeating: 0, count: Int(min(4, offset)) - head.count) }
                head += bytes.prefix(4 - head.count)
                if head.count >= 4 { throw Enough() }
            case .memberEnd where inDisk:
                throw Enough()
            default: return
            }
        }
        var offset: Int64 = 0
        var request: Int64 = 64 * 1024
        while offset < layer.size {
            guard offset < maximumScanBytes else {
                throw .badLayer(layer: name, reason: "no file under /disk/ in its first \(maximumScanBytes) bytes: imgfs looks for a containerDisk's "
                                + "disk among the first files of its layers")
            }
            let range = offset..<min(layer.size, offset + request)
            let bytes: [UInt8]
            do { bytes = try load(layer, range) } catch { throw .badLayer(layer: name, reason: "could not be read: \(error)") }
            guard Int64(bytes.count) == Int64(range.count) else {
                throw .badLayer(layer: name, reason: "the registry returned \(bytes.count) bytes for range \(range.lowerBound)..<\(range.upperBound)")
            }
            do {
                try bytes.withUnsafeBytes { raw in
                    if let gzip {
                        try gzip.decode(raw) { decoded in try reader.feed(decoded, handler: events) }
                    } else {
                        try reader.feed(raw, handler: events)
                    }
                }
            } catch {
                if isEnough(error), let member { return (member, head) }
                throw scanError(error, layer: name)
            }
            offset = range.upperBound
            request = min(request * 4, 4 * 1024 * 1024)
        }
        do {
            try gzip?.finish()
            try reader.finish()
        } catch {
            throw scanError(error, layer: name)
        }
        return member.map { ($0, head) }
    }

    /// A file under `/disk/` that cannot be the disk, or hides it, is refused rather than guessed about.
    static func checkDiskMember(_ member: TarMember, path: String, layer: String) throws(ImageLayoutError) {
        let file = path.dropFirst(5)
        if file.hasPrefix(".wh.") {
            throw .badLayer(layer: layer, reason: "whiteout \(path): a layer that deletes files under /disk/ is not supported")
        }
        switch member.kind {
        case .regular, .directory: return
        default:
            throw .badLayer(layer: layer, reason: "\(path) is not a regular file (\(member.kind)); a containerDisk's disk must be one")
        }
    }

    private static func isEnough(_ error: any Error) -> Bool {
        if error is Enough { return true }
        if case CodecError.consumer(let inner) = error { return isEnough(inner) }
        return false
    }

    private static func scanError(_ error: any Error, layer: String) -> ImageLayoutError {
        switch error {
        case let error as ImageLayoutError: return error
        case let error as TarError: return .badLayer(layer: layer, reason: "\(error)")
        case CodecError.consumer(let inner): return scanError(inner, layer: layer)
        case let error as CodecError: return .badLayer(layer: layer, reason: "corrupt gzip: \(error)")
        default: return .badLayer(layer: layer, reason: "\(error)")
        }
    }
}
