import Codec
import Fetch
import FoundationEssentials
import ImageLayouts
import Logging
import OCI
import Push
import SystemIO
import Verity

/// Writes a disk as a KubeVirt containerDisk (`--format containerdisk`): an ordinary OCI image
/// whose one tar+gzip layer holds `disk/` and the disk as `disk/disk.img` (raw) or
/// `disk/disk.qcow2`, owned 107:107 (KubeVirt's qemu user) with modes 0555/0444, as the
/// containerdisks project's tooling builds them; the config's `rootfs.diff_ids` is the digest of the uncompressed
/// tar, which runtimes check when they unpack the layer. The layer is compressed into an
/// unlinked spool file and uploaded once whole (a blob's digest must be known before its
/// upload ends), so disk space is bounded by the compressed disk.
struct ContainerDiskWriter {
    let client: RegistryClient
    let repository: String
    let diskFormat: DiskFileFormat
    /// The image config's `architecture`; containerDisks are Linux images whatever the guest.
    let architecture: String
    let compressionLevel: Int
    let spoolDirectory: String
    let progress: PushProgress
    let logger: Logger

    func write(disk: any DiskSource, tag: String, annotations: [String: String]) throws(ConvertError) -> Digest {
        let spool: SpoolFile
        do { spool = try SpoolFile(directory: spoolDirectory, prefix: "imgfs-containerdisk") } catch {
            throw .io(path: error.path, operation: error.operation, errno: error.errno)
        }
        let compressedHasher = SHA256Hasher(), tarHasher = SHA256Hasher()
        let append: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            compressedHasher.update(bytes)
            try spool.append(bytes)
        }
        let fileName = "disk/" + (diskFormat == .qcow2 ? "disk.qcow2" : "disk.img")
        let pieceSize = 1 << 20
        var buffer = [UInt8](repeating: 0, count: pieceSize)
        do {
            let gzip = try GzipStreamEncoder(level: min(max(compressionLevel, GzipStreamEncoder.levels.lowerBound), GzipStreamEncoder.levels.upperBound))
            let tar: ([UInt8]) throws -> Void = { bytes in
                tarHasher.update(bytes)
                try gzip.encode(bytes, output: append)
            }
            try tar(TarWriter.header(path: "disk/", type: .directory, size: 0, mode: ContainerDiskFormat.directoryMode,
                                     uid: ContainerDiskFormat.owner, gid: ContainerDiskFormat.owner, userName: "qemu", groupName: "qemu"))
            try tar(TarWriter.header(path: fileName, type: .regular, size: disk.size, mode: ContainerDiskFormat.fileMode,
                                     uid: ContainerDiskFormat.owner, gid: ContainerDiskFormat.owner, userName: "qemu", groupName: "qemu"))
            var done: UInt64 = 0
            while done < disk.size {
                let n = Int(min(UInt64(pieceSize), disk.size - done))
                try buffer.withUnsafeMutableBytes { raw in
                    try disk.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<n]), at: done)
                }
                try buffer.withUnsafeBytes { raw in
                    let piece = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                    tarHasher.update(piece)
                    try gzip.encode(piece, output: append)
                }
                done += UInt64(n)
                progress.diskBytesDone.add(Int64(n), ordering: .relaxed)
            }
            try tar([UInt8](repeating: 0, count: Int(TarWriter.padding(disk.size))) + TarWriter.endOfArchive)
            try gzip.finish(output: append)
        } catch let error as PushError {
            throw .push(error)
        } catch let error as IOError {
            throw .io(path: error.path, operation: error.operation, errno: error.errno)
        } catch {
            throw .encode(offset: 0, "\(error)")
        }
        // Every source layer verified before anything names the new image.
        do { try disk.finish() } catch { throw .push(error) }
        let layerDigest = compressedHasher.finalize()
        let diffID = tarHasher.finalize()
        do {
            if try client.blobSize(repository, digest: layerDigest) != spool.size {
                try client.uploadBlob(repository, digest: layerDigest, size: spool.size, body: .reader(size: spool.size) { at, buffer in
                    try spool.read(at: at, into: buffer)
                })
                progress.uploadedBytes.add(spool.size, ordering: .relaxed)
            }
        } catch {
            throw .registry(error)
        }
        let config = Self.configBlob(architecture: architecture, diffID: diffID)
        let configDigest = SHA256Hasher.digest(config)
        do {
            if try client.blobSize(repository, digest: configDigest) != Int64(config.count) {
                try client.uploadBlob(repository, digest: configDigest, size: Int64(config.count), body: .bytes(config))
            }
        } catch {
            throw .registry(error)
        }
        let manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: configDigest, size: Int64(config.count)),
                                layers: [Descriptor(mediaType: .ociLayerGzip, digest: layerDigest, size: spool.size)],
                                annotations: annotations.isEmpty ? nil : annotations)
        do {
            return try client.putManifest(repository, reference: tag, bytes: ManifestEncoding.encode(manifest), mediaType: .ociManifest)
        } catch {
            throw .registry(error)
        }
    }

    /// An OCI image config: platform, and the one layer's diff ID.
    static func configBlob(architecture: String, diffID: Digest) -> [UInt8] {
        struct RootFS: Encodable {
            var type = "layers"
            var diff_ids: [String]
        }
        struct Config: Encodable {
            var architecture: String
            var os = "linux"
            var rootfs: RootFS
        }
        return ManifestEncoding.encode(Config(architecture: architecture, rootfs: RootFS(diff_ids: [diffID.description])))
    }

    /// The architecture a source image's config names (OCI configs, tart's stub and lume's VM
    /// config all have one of these keys), in OCI's spelling; amd64 when it names none.
    static func architecture(ofConfig bytes: [UInt8]?) -> String {
        struct Probe: Decodable {
            var architecture: String?
            var arch: String?
        }
        guard let bytes, let probe = try? JSONDecoder().decode(Probe.self, from: Data(bytes)) else { return "amd64" }
        switch (probe.architecture ?? probe.arch ?? "").lowercased() {
        case "arm64", "aarch64": return "arm64"
        case "amd64", "x86_64", "x86-64": return "amd64"
        case let other where !other.isEmpty && other.allSatisfy({ $0.isLetter || $0.isNumber }): return other
        default: return "amd64"
        }
    }
}
