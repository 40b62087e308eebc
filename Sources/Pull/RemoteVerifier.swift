import Fetch
import ImageLayouts
import ImgfsFormat
import Logging
import OCI
import PieceFetch
import Verity

/// What `imgfs verify --remote` checked.
public struct RemoteVerifyReport: Sendable, Codable {
    public var manifestDigest: String
    public var format: String
    /// Blobs whose bytes were hashed and matched their digests (config, index, disk layers, small files).
    public var blobs: Int
    /// imgfs frames decompressed and matched against the index (holes not counted).
    public var frames: Int
    /// The disk's fs-verity digest computed from the verified frames (imgfs images), which matched the manifest's.
    public var fsverityDigest: String?
    public var bytesDownloaded: Int64
}

/// Checks an image in the registry end to end without writing a disk: the manifest and every blob
/// against their digests, every imgfs frame against the index, and the disk's fs-verity digest
/// against the manifest; lume and tart layers are decoded and checked against their annotations.
///
/// imgfs frames are fetched in disk order (`RangeRequest.inDiskOrder`, requests of up to `maxRequestBytes`),
/// so the fs-verity digest is computed as they stream; each chunk layer's digest is computed from
/// the same bytes while the requests cover it in order, and only what they skip (a deduplicated
/// frame's member read earlier, gaps) is fetched a second time to finish the layer's hash.
public struct RemoteVerifier {
    let client: RegistryClient
    let repository: String
    let logger: Logger
    public var maxRequestBytes: Int64 = 16 * 1024 * 1024
    /// The entry to check when the reference names an image index.
    public var platform: Platform = .host

    public init(client: RegistryClient, repository: String, logger: Logger) {
        self.client = client
        self.repository = repository
        self.logger = logger
    }

    public func verify(reference: String) throws(PullError) -> RemoteVerifyReport {
        let (image, manifestDigest) = try ImagePuller.open(client: client, repository: repository, reference: reference, platform: platform)
        var report = RemoteVerifyReport(manifestDigest: manifestDigest.description, format: image.kind.rawValue, blobs: 0, frames: 0,
                                        fsverityDigest: nil, bytesDownloaded: 0)
        // The config (and for imgfs the index) were fetched and checked by `open`; the small files here.
        var small: [Descriptor] = [image.manifest.config]
        if let nvram = image.nvram { small.append(nvram) }
        if let config = image.vmConfig, config.digest != image.manifest.config.digest { small.append(config) }
        if let imgfs = image.imgfs {
            small.append(imgfs.image.indexDescriptor)
            if let profile = imgfs.image.bootProfile { small.append(profile) }
        }
        for descriptor in small {
            let limit = max(descriptor.size, 0)
            do { _ = try client.blob(repository, digest: descriptor.digest, maxSize: limit) } catch { throw .registry(error) }
            report.blobs += 1
            report.bytesDownloaded += limit
        }
        if let imgfs = image.imgfs {
            try verifyFrames(imgfs, report: &report)
        } else {
            try verifyLayers(image.layout, report: &report)
        }
        return report
    }

    // MARK: - imgfs

    /// Hashes one chunk layer from the range requests that cover it in order.
    final class LayerHash {
        let hasher = SHA256Hasher()
        var hashedUpTo: Int64 = 0

        func note(_ range: Range<Int64>, _ bytes: [UInt8]) {
            guard range.lowerBound <= hashedUpTo, range.upperBound > hashedUpTo else { return }
            let skip = Int(hashedUpTo - range.lowerBound)
            bytes.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0[skip...])) }
            hashedUpTo = range.upperBound
        }
    }

    func verifyFrames(_ imgfs: VMImage.ImgfsSource, report: inout RemoteVerifyReport) throws(PullError) {
        let index = imgfs.index
        let geometry = index.geometry
        let layerHashes = index.layers.map { _ in LayerHash() }
        let fsverity = FSVerityHasher()

        var next = 0  // the first frame not in the fs-verity digest yet; holes are zeros, stored nowhere
        func zeros(upTo frame: Int) {
            while next < frame { fsverity.updateZeros(count: UInt64(geometry.length(ofFrame: next))); next += 1 }
        }
        try RangeRequest.inDiskOrder(index, maxBytes: maxRequestBytes, fetch: { (request) throws(PullError) in
            var bytes: [UInt8] = []
            bytes.reserveCapacity(request.range.count)
            let limit = request.range.count
            do throws(FetchError) {
                try client.blob(repository, digest: request.blob, range: request.range) { chunk in bytes.append(contentsOf: chunk.prefix(limit - bytes.count)) }
            } catch {
                throw .registry(error)
            }
            report.bytesDownloaded += Int64(bytes.count)
            if bytes.count == limit { layerHashes[request.layer].note(request.range, bytes) }
            return bytes
        }, failed: { frame, error in .frame(layer: error.blob, frame: frame, reason: error.reason) }) { (frame) throws(PullError) in
            zeros(upTo: frame.index)
            frame.bytes.withUnsafeBytes { fsverity.update($0) }
            next += 1
            report.frames += 1
        }
        zeros(upTo: index.frames.count)

        // Finish each chunk layer's hash with what the frame requests did not cover in order.
        for (number, layer) in index.layers.enumerated() {
            let hash = layerHashes[number]
            if hash.hashedUpTo < layer.compressedSize {
                let rest = hash.hashedUpTo..<layer.compressedSize
                do {
                    try client.blob(repository, digest: layer.digest, range: rest) { chunk in
                        hash.hasher.update(chunk)
                        report.bytesDownloaded += Int64(chunk.count)
                    }
                } catch {
                    throw .registry(error)
                }
            }
            let actual = hash.hasher.finalize()
            guard actual == layer.digest else {
                throw .registry(FetchError(.digestMismatch(expected: layer.digest, actual: actual), operation: .getBlob,
                                           registry: client.registry, repository: repository, digest: layer.digest))
            }
            report.blobs += 1
        }

        let actual = fsverity.finalize()
        let expected = imgfs.image.fsverityDigest
        guard actual == expected else { throw .fsverityMismatch(expected: expected, actual: actual) }
        report.fsverityDigest = actual.description
    }

    // MARK: - lume and tart

    func verifyLayers(_ layout: DiskLayout, report: inout RemoteVerifyReport) throws(PullError) {
        for unit in try LayerPuller.units(layout) {
            guard let first = unit.segments.first else { continue }
            var received: Int64 = 0
            do {
                try LayerStream.decode(first, chunks: { feed in
                    try client.blob(repository, digest: first.blob.digest, range: nil) { buffer in
                        received += Int64(buffer.count)
                        try feed(buffer)
                    }
                }) { _, _ in }
            } catch {
                throw LayerPuller.pullError(error, segment: first)
            }
            report.bytesDownloaded += received
            report.blobs += 1
        }
    }
}
