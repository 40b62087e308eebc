import Codec
import Fetch
import Formats
import ImageFormat
import Logging
import OCI
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
/// imgfs frames are fetched in disk order (coalesced range requests of up to `maxRequestBytes`),
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
        let decompressor: GzipFrameDecompressor
        do { decompressor = try GzipFrameDecompressor() } catch { throw .frame(layer: index.layers.first?.digest ?? SHA256Hasher.digest([UInt8]()), frame: -1, reason: "\(error)") }

        var frame = 0
        while frame < index.frames.count {
            // A run of frames in disk order whose members follow each other in one layer (holes in
            // between are zeros, stored nowhere), one range request for all of them.
            var run: [Int] = []
            var layer = -1
            var range: Range<Int64> = 0..<0
            var next = frame
            while next < index.frames.count {
                let entry = index.frames[next]
                guard let location = entry.location else {
                    if !entry.isHole { throw .frame(layer: index.layers.first?.digest ?? SHA256Hasher.digest([UInt8]()), frame: next, reason: "the frame is neither stored nor a hole") }
                    run.append(next)
                    next += 1
                    continue
                }
                let start = Int64(location.compressedOffset), end = start + Int64(location.compressedLength)
                if layer < 0 {
                    layer = location.layer
                    range = start..<end
                } else if location.layer != layer || start != range.upperBound || end - range.lowerBound > maxRequestBytes {
                    break
                } else {
                    range = range.lowerBound..<end
                }
                run.append(next)
                next += 1
            }
            var bytes: [UInt8] = []
            if layer >= 0 {
                let digest = index.layers[layer].digest
                bytes.reserveCapacity(range.count)
                let limit = range.count
                do {
                    try client.blob(repository, digest: digest, range: range) { chunk in bytes.append(contentsOf: chunk.prefix(limit - bytes.count)) }
                } catch {
                    throw .registry(error)
                }
                guard bytes.count == range.count else {
                    throw .frame(layer: digest, frame: run.first ?? frame, reason: "the registry sent \(bytes.count) bytes for a range of \(range.count)")
                }
                report.bytesDownloaded += Int64(bytes.count)
                layerHashes[layer].note(range, bytes)
            }
            for f in run {
                let length = geometry.length(ofFrame: f)
                let entry = index.frames[f]
                guard let location = entry.location else {
                    fsverity.updateZeros(count: UInt64(length))
                    continue
                }
                let digest = index.layers[location.layer].digest
                let start = Int(Int64(location.compressedOffset) - range.lowerBound)
                let decoded: [UInt8]
                do {
                    decoded = try bytes.withUnsafeBytes { raw throws(CodecError) in
                        try decompressor.decompress(UnsafeRawBufferPointer(rebasing: raw[start..<start + Int(location.compressedLength)]), expectedSize: length)
                    }
                } catch {
                    throw .frame(layer: digest, frame: f, reason: "\(error)")
                }
                let verified: VerifiedFrame
                do { verified = try VerifiedFrame.verify(frame: f, bytes: decoded, expectedLength: length, expectedDigest: entry.digest) } catch {
                    throw .frame(layer: digest, frame: f, reason: error.description)
                }
                verified.bytes.withUnsafeBytes { fsverity.update($0) }
                report.frames += 1
            }
            frame = next
        }

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
            let decoder: SegmentDecoder
            do { decoder = try SegmentDecoder(segment: first) } catch { throw .layer(error) }
            var received: Int64 = 0
            do {
                try client.blob(repository, digest: first.blob.digest, range: nil) { buffer in
                    received += Int64(buffer.count)
                    try decoder.feed(buffer) { _, _ in }
                }
                try decoder.finish()
            } catch {
                throw LayerPuller.pullError(error, segment: first)
            }
            report.bytesDownloaded += received
            report.blobs += 1
        }
    }
}
