import Codec
import Fetch
import Foundation
import OCI
import TestSupport
import Verity

/// Writes lume OCI (chunked and single-layer), lume legacy and tart images of a local disk to the
/// test registry, following the layouts issue 5 gives and the peers' own code writes (see the
/// readers in Sources/ImageLayouts). Independent of imgfs's own writers, so a shared mistake cannot
/// make both sides agree.
enum PeerFormat: String, CaseIterable, Sendable, CustomStringConvertible {
    case lumeChunked = "lume-oci-chunked"
    case lumeSingle = "lume-oci-single"
    case lumeLegacy = "lume-legacy"
    case tart

    var description: String { rawValue }
}

struct PeerImageFixtures {
    static let vmConfig = Array(#"{"arch":"arm64","cpuCount":2,"diskSize":0,"memorySize":2147483648,"os":"linux"}"#.utf8)
    static let nvram = Array((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) })

    let registry: TestRegistry
    let client: RegistryClient

    init(registry: TestRegistry) {
        self.registry = registry
        self.client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
    }

    /// Pushes `disk` as `format` to `repository:tag`, cut in parts of `partSize` bytes.
    /// Returns the digests of the disk blobs, in disk order (shared digests repeated).
    @discardableResult
    func push(_ format: PeerFormat, disk path: String, repository: String, tag: String, partSize: Int) throws -> [String] {
        let disk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let parts = format == .lumeSingle ? [disk[...]] : stride(from: 0, to: disk.count, by: partSize).map { disk[$0..<min(disk.count, $0 + partSize)] }
        var uploaded = Set<Digest>()
        func upload(_ bytes: [UInt8]) throws -> Descriptor {
            let digest = SHA256Hasher.digest(bytes)
            if uploaded.insert(digest).inserted {
                try client.uploadBlob(repository, digest: digest, size: Int64(bytes.count), body: .bytes(bytes))
            }
            return Descriptor(mediaType: .octetStream, digest: digest, size: Int64(bytes.count))
        }
        let size = String(disk.count)
        var layers = [Descriptor]()
        var diskDigests = [String]()
        var offset = 0
        let manifest: Manifest
        switch format {
        case .lumeChunked, .lumeSingle:
            for (number, part) in parts.enumerated() {
                let bytes = Array(part)
                let blob = try upload(try bytes.withUnsafeBytes { try GzipStreamEncoder(level: 6).encodeMember($0) })
                var annotations = [
                    "org.trycua.lume.content.uncompressed-size": String(part.count),
                    "org.trycua.lume.content.uncompressed-digest": SHA256Hasher.digest(Array(part)).description,
                    "org.opencontainers.image.title": "disk.img.part.\(number)",
                ]
                if format == .lumeChunked {
                    annotations["org.trycua.lume.part.number"] = String(number)
                    annotations["org.trycua.lume.part.total"] = String(parts.count)
                    annotations["org.trycua.lume.part.offset"] = String(offset)
                } else {
                    annotations = ["org.trycua.lume.content.uncompressed-size": String(part.count), "org.opencontainers.image.title": "disk.img"]
                }
                layers.append(Descriptor(mediaType: "application/vnd.trycua.lume.disk.v1", digest: blob.digest, size: blob.size, annotations: annotations))
                diskDigests.append(blob.digest.description)
                offset += part.count
            }
            let nvram = try upload(Self.nvram)
            layers.append(Descriptor(mediaType: "application/vnd.trycua.lume.nvram.v1", digest: nvram.digest, size: nvram.size, annotations: ["org.opencontainers.image.title": "nvram.bin"]))
            let config = try upload(Self.vmConfig)
            manifest = Manifest(config: Descriptor(mediaType: "application/vnd.trycua.lume.config.v1+json", digest: config.digest, size: config.size),
                                layers: layers, annotations: ["org.trycua.lume.total-uncompressed-size": size, "org.trycua.lume.cpu-count": "2"])
        case .lumeLegacy, .tart:
            // Chained 64 KiB blocks: later blocks copy from earlier ones (the decoder's dictionary),
            // and incompressible data becomes raw `bv4-` blocks.
            let encoder = try AppleLZ4Encoder(blockSize: 64 * 1024, chained: true)
            for part in parts {
                let blob = try upload(try encoder.encode(Array(part)))
                let digest = SHA256Hasher.digest(Array(part)).description
                let annotations = format == .tart
                    ? ["org.cirruslabs.tart.uncompressed-size": String(part.count), "org.cirruslabs.tart.uncompressed-content-digest": digest]
                    : ["org.trycua.lume.uncompressed-size": String(part.count), "org.trycua.lume.uncompressed-content-digest": digest]
                let type: MediaType = format == .tart ? "application/vnd.cirruslabs.tart.disk.v2" : "application/octet-stream+lz4"
                layers.append(Descriptor(mediaType: type, digest: blob.digest, size: blob.size, annotations: annotations))
                diskDigests.append(blob.digest.description)
            }
            let nvram = try upload(Self.nvram)
            let config = try upload(Self.vmConfig)
            if format == .tart {
                let stub = try upload(Array(#"{"architecture":"arm64","os":"linux"}"#.utf8))
                layers.insert(Descriptor(mediaType: "application/vnd.cirruslabs.tart.config.v1", digest: config.digest, size: config.size), at: 0)
                layers.append(Descriptor(mediaType: "application/vnd.cirruslabs.tart.nvram.v1", digest: nvram.digest, size: nvram.size))
                manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: stub.digest, size: stub.size), layers: layers,
                                    annotations: ["org.cirruslabs.tart.uncompressed-disk-size": size, "org.cirruslabs.tart.upload-time": "2025-01-01T00:00:00Z"])
            } else {
                // The legacy disk size lives in the OCI config blob's annotations.
                let ociConfig = try upload(Array(#"{"annotations":{"com.trycua.lume.disk.uncompressed_size":"\#(size)"},"architecture":"arm64","os":"darwin"}"#.utf8))
                layers.append(Descriptor(mediaType: .ociConfig, digest: config.digest, size: config.size, annotations: ["org.opencontainers.image.title": "config.json"]))
                layers.append(Descriptor(mediaType: .octetStream, digest: nvram.digest, size: nvram.size, annotations: ["org.opencontainers.image.title": "nvram.bin"]))
                manifest = Manifest(config: Descriptor(mediaType: .ociConfig, digest: ociConfig.digest, size: ociConfig.size), layers: layers)
            }
        }
        try client.putManifest(repository, reference: tag, bytes: ManifestEncoding.encode(manifest), mediaType: .ociManifest)
        return diskDigests
    }

    /// A sparse source disk in `directory`: `parts` parts of `partSize` bytes plus a short tail.
    /// Parts 1 and 2 are identical and parts 3 and 4 all zero (shared digests in lume chunked
    /// images), part 5 holds incompressible random data (raw `bv4-` blocks in LZ4), the rest
    /// islands of text and random bytes between holes. `seed` makes disks differ between tests
    /// that must not share blobs (the corruption test edits blobs in the registry's storage).
    static func makeDisk(in directory: String, partSize: Int, parts: Int, seed: UInt64) throws -> String {
        precondition(parts >= 7)
        let path = directory + "/source-\(seed).img"
        let size = partSize * parts + 12 * 1024
        var generator = SplitMix64(seed: seed)
        FileManager.default.createFile(atPath: path, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.truncate(atOffset: UInt64(size))
        func write(_ bytes: [UInt8], at offset: Int) throws {
            try handle.seek(toOffset: UInt64(offset))
            try handle.write(contentsOf: bytes)
        }
        func random(_ count: Int) -> [UInt8] {
            var bytes = [UInt8](repeating: 0, count: (count + 7) / 8 * 8)
            bytes.withUnsafeMutableBytes { raw in
                for i in 0..<raw.count / 8 { raw.storeBytes(of: generator.next(), toByteOffset: i * 8, as: UInt64.self) }
            }
            return Array(bytes.prefix(count))
        }
        func islands(in part: Int) throws -> [(Int, [UInt8])] {
            var written = [(Int, [UInt8])]()
            for island in 0..<6 {
                let offset = part * partSize + Int(generator.next() % UInt64(partSize - 256 * 1024)) / 4096 * 4096 + 17
                let text = Array(String(repeating: "seed \(seed) part \(part) island \(island) ", count: 2000).utf8)
                let bytes = island % 2 == 0 ? text : random(40_000)
                try write(bytes, at: offset)
                written.append((offset - part * partSize, bytes))
            }
            return written
        }
        let first = try islands(in: 1)
        for (offset, bytes) in first { try write(bytes, at: 2 * partSize + offset) }
        try write(random(partSize / 2), at: 5 * partSize + 4096)
        try write(random(partSize / 2), at: 0)
        for part in 6..<parts { _ = try islands(in: part) }
        try write(random(5000), at: size - 6000)
        return path
    }
}
