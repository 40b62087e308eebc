import Codec
import Fetch
import ImageLayouts
import Glibc
import SystemIO
import Logging
import OCI
import Push
import Synchronization
import Verity

/// Writes a disk in a peer's format (`--format lume|tart`) so no user is locked in: the disk is
/// read in order and cut into parts (lume: 512 MiB gzip parts; tart: 512 MiB Apple-LZ4 pieces,
/// as each peer's own push does), each part compressed into an unlinked spool file and uploaded
/// before the next one is read, so disk space is bounded by one part, not the disk.
struct PeerImageWriter {
    enum Target: String, Sendable { case lume, tart }

    let client: RegistryClient
    let repository: String
    let target: Target
    let partSize: UInt64
    let spoolDirectory: String
    let progress: PushProgress
    let logger: Logger

    struct Part {
        var digest: Digest
        var size: Int64
        var uncompressedSize: UInt64
        var uncompressedDigest: Digest
    }

    func write(disk: any DiskSource, nvram: [UInt8]?, vmConfig: [UInt8]?, tag: String, annotations: [String: String]) throws(ConvertError) -> Digest {
        var parts = [Part]()
        var offset: UInt64 = 0
        while offset < disk.size {
            let length = min(partSize, disk.size - offset)
            parts.append(try writePart(disk: disk, offset: offset, length: length))
            offset += length
        }
        do { try disk.finish() } catch { throw .push(error) }
        let nvramDescriptor = try nvram.map { (bytes) throws(ConvertError) in try upload(bytes) }
        let configBytes = vmConfig ?? Array("{}".utf8)
        let manifest: Manifest
        switch target {
        case .lume:
            let config = try upload(configBytes)
            var at: UInt64 = 0
            let lumeParts = parts.enumerated().map { number, part in
                defer { at += part.uncompressedSize }
                return LumeOCIFormat.Part(number: number, blob: part.digest, compressedSize: part.size, diskOffset: at,
                                          uncompressedSize: part.uncompressedSize, uncompressedDigest: part.uncompressedDigest)
            }
            manifest = LumeOCIFormat.manifest(config: config, parts: lumeParts, nvram: nvramDescriptor, diskSize: disk.size, annotations: annotations)
        case .tart:
            let vmConfigDescriptor = try vmConfig.map { (bytes) throws(ConvertError) in try upload(bytes) }
            let stub = try upload(TartFormat.ociConfigBlob(vmConfig: vmConfig))
            let pieces = parts.map { TartFormat.Piece(blob: $0.digest, compressedSize: $0.size, uncompressedSize: $0.uncompressedSize, uncompressedDigest: $0.uncompressedDigest) }
            manifest = TartFormat.manifest(ociConfig: stub, vmConfig: vmConfigDescriptor, pieces: pieces, nvram: nvramDescriptor, diskSize: disk.size, annotations: annotations)
        }
        do {
            return try client.putManifest(repository, reference: tag, bytes: ManifestEncoding.encode(manifest), mediaType: .ociManifest)
        } catch {
            throw .registry(error)
        }
    }

    /// Reads, compresses, hashes and uploads one part.
    private func writePart(disk: any DiskSource, offset: UInt64, length: UInt64) throws(ConvertError) -> Part {
        let spool: SpoolFile
        do { spool = try SpoolFile(directory: spoolDirectory, prefix: "imgfs-convert") } catch { throw .io(path: error.path, operation: error.operation, errno: error.errno) }
        let compressedHasher = SHA256Hasher(), uncompressedHasher = SHA256Hasher()
        let append: (UnsafeRawBufferPointer) throws -> Void = { bytes in
            compressedHasher.update(bytes)
            try spool.append(bytes)
        }
        let pieceSize = 1 << 20
        var buffer = [UInt8](repeating: 0, count: pieceSize)
        do {
            let gzip = target == .lume ? try GzipStreamEncoder(level: 6) : nil
            let lz4 = target == .tart ? try AppleLZ4Encoder(blockSize: pieceSize) : nil
            var done: UInt64 = 0
            while done < length {
                let n = Int(min(UInt64(pieceSize), length - done))
                try buffer.withUnsafeMutableBytes { raw in
                    try disk.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<n]), at: offset + done)
                }
                try buffer.withUnsafeBytes { raw in
                    let piece = UnsafeRawBufferPointer(rebasing: raw[0..<n])
                    uncompressedHasher.update(piece)
                    if let gzip {
                        try gzip.encode(piece, output: append)
                    } else if let lz4 {
                        // Each piece is encoded on its own; its `bv4$` is dropped so the part is one
                        // stream of blocks with one end marker, as Apple's decoder expects.
                        let blocks = try lz4.encode(piece)
                        try blocks.withUnsafeBytes { try append(UnsafeRawBufferPointer(rebasing: $0.dropLast(4))) }
                    }
                }
                done += UInt64(n)
                progress.diskBytesDone.add(Int64(n), ordering: .relaxed)
            }
            try gzip?.finish(output: append)
            if lz4 != nil { try Array("bv4$".utf8).withUnsafeBytes { try append($0) } }
        } catch let error as PushError {
            throw .push(error)
        } catch let error as ConvertError {
            throw error
        } catch let error as IOError {
            throw .io(path: error.path, operation: error.operation, errno: error.errno)
        } catch {
            throw .encode(offset: offset, "\(error)")
        }
        let digest = compressedHasher.finalize()
        let part = Part(digest: digest, size: spool.size, uncompressedSize: length, uncompressedDigest: uncompressedHasher.finalize())
        do {
            if try client.blobSize(repository, digest: digest) == part.size {
                logger.debug("part already present", metadata: ["digest": "\(digest)"])
            } else {
                try client.uploadBlob(repository, digest: digest, size: part.size, body: .reader(size: part.size) { at, buffer in
                    try spool.read(at: at, into: buffer)
                })
                progress.uploadedBytes.add(part.size, ordering: .relaxed)
            }
        } catch {
            throw .registry(error)
        }
        return part
    }

    private func upload(_ bytes: [UInt8]) throws(ConvertError) -> Descriptor {
        let digest = SHA256Hasher.digest(bytes)
        do {
            if try client.blobSize(repository, digest: digest) != Int64(bytes.count) {
                try client.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
            }
        } catch {
            throw .registry(error)
        }
        return Descriptor(mediaType: .octetStream, digest: digest, size: Int64(bytes.count))
    }
}
