import Cache
import Codec
import Foundation
import ImgfsFormat
import Logging
import Mount
import OCI
import Synchronization
import Verity

/// An imgfs image built in memory: disk bytes → frames → gzip members → chunk layers, plus the
/// frame index, config and manifest, exactly as docs/FORMAT.md lays them out.
struct TestImage {
    var disk: [UInt8]
    var index: FrameIndex
    var indexBytes: [UInt8]
    var indexDigest: Digest
    var layers: [Digest: [UInt8]]
    var manifestBytes: [UInt8]
    var configBytes: [UInt8]

    static let frameSize = 64 * 1024

    /// `frames` frames of `frameSize`; `holes` are all zeros; `chunkFrames` frames per chunk layer.
    /// Frame contents depend on `seed` and the frame number, so two images with the same seed
    /// share every frame but those `differing`.
    static func make(frames: Int, holes: Set<Int> = [], chunkFrames: Int = 8, seed: UInt8 = 1, differing: Set<Int> = []) throws -> TestImage {
        let frameSize = Self.frameSize
        var disk = [UInt8](repeating: 0, count: frames * frameSize)
        for frame in 0..<frames where !holes.contains(frame) {
            var state = UInt32(frame) &* 2_654_435_761 &+ UInt32(seed) &+ (differing.contains(frame) ? 77 : 0)
            for i in 0..<frameSize {
                state = state &* 1_103_515_245 &+ 12345
                // Half the bytes repeat, so members are smaller than frames but not trivial.
                disk[frame * frameSize + i] = i % 2 == 0 ? UInt8(truncatingIfNeeded: state >> 16) : UInt8(frame & 0xff)
            }
        }
        let geometry = try DiskGeometry(diskSize: UInt64(disk.count), frameSize: frameSize)
        let compressor = try GzipFrameCompressor(level: 1)
        var layerBlobs: [[UInt8]] = []
        var layerChunks: [Int] = []
        var entries: [FrameIndex.FrameEntry] = []
        var current: [UInt8] = []
        var currentHasFrames = false
        for frame in 0..<frames {
            let bytes = Array(disk[frame * frameSize..<(frame + 1) * frameSize])
            let digest = SHA256Hasher.digest(bytes)
            if frame % chunkFrames == 0, frame > 0, currentHasFrames {
                layerBlobs.append(current)
                layerChunks.append((frame - 1) / chunkFrames)
                current = []
                currentHasFrames = false
            }
            if holes.contains(frame) {
                entries.append(.init(digest: digest, isHole: true, location: nil))
                continue
            }
            let member = try compressor.compress(bytes)
            entries.append(.init(digest: digest, isHole: false,
                                 location: .init(layer: layerBlobs.count, compressedOffset: UInt64(current.count), compressedLength: UInt32(member.count))))
            current += member
            currentHasFrames = true
        }
        if currentHasFrames {
            layerBlobs.append(current)
            layerChunks.append((frames - 1) / chunkFrames)
        }
        let refs = layerBlobs.map { FrameIndex.LayerRef(digest: SHA256Hasher.digest($0), compressedSize: Int64($0.count)) }
        let index = FrameIndex(geometry: geometry, layout: .multiLayer, layers: refs, frames: entries)
        let indexBytes = index.encode()
        let indexDigest = SHA256Hasher.digest(indexBytes)

        let config = ImageConfig(disk: .init(size: geometry.diskSize, frameSize: frameSize, chunkSize: UInt64(chunkFrames * frameSize), layout: .multiLayer))
        let configBytes = config.encoded()
        let chunks = refs.enumerated().map { i, ref in
            let offset = UInt64(layerChunks[i] * chunkFrames * frameSize)
            return ChunkLayer(number: layerChunks[i], digest: ref.digest, compressedSize: ref.compressedSize, diskOffset: offset,
                              diskLength: min(UInt64(chunkFrames * frameSize), geometry.diskSize - offset),
                              uncompressedSize: 0, uncompressedDigest: ref.digest)
        }
        let manifest = ImgfsImage.makeManifest(
            config: config, fsverityDigest: SHA256Hasher.digest([UInt8]()),
            configDescriptor: Descriptor(mediaType: .imgfsConfig, digest: SHA256Hasher.digest(configBytes), size: Int64(configBytes.count)),
            index: Descriptor(mediaType: .imgfsIndex, digest: indexDigest, size: Int64(indexBytes.count)),
            chunks: chunks, nvram: nil, vmConfig: nil, bootProfile: nil)
        var blobs: [Digest: [UInt8]] = [:]
        for (ref, blob) in zip(refs, layerBlobs) { blobs[ref.digest] = blob }
        return TestImage(disk: disk, index: index, indexBytes: indexBytes, indexDigest: indexDigest, layers: blobs,
                         manifestBytes: ManifestEncoding.encode(manifest), configBytes: configBytes)
    }

    func frame(_ i: Int) -> ArraySlice<UInt8> { disk[i * Self.frameSize..<(i + 1) * Self.frameSize] }
}

/// A registry in memory behind `BlobSource`: counts requests, can corrupt a blob, go offline,
/// or hold range requests until released (to pile readers onto one fetch).
final class FakeRegistry: BlobSource, @unchecked Sendable {
    struct RangeCall: Equatable {
        var digest: Digest
        var range: Range<Int64>
    }

    private let lock = NSLock()
    private var blobs: [Digest: [UInt8]] = [:]
    private var manifests: [String: [UInt8]] = [:]
    private var corrupted: Set<Digest> = []
    private var corruptedByMirror: Set<Digest> = []
    private var _upstreamOnlyCalls = 0
    private var _rangeCalls: [RangeCall] = []
    private var _rangeDeadlines: [Double] = []
    private var _blobCalls: [Digest] = []
    private var _manifestCalls = 0
    private var offline = false
    /// Seconds each range request takes.
    var rangeDelay: Double = 0

    func add(_ image: TestImage, tag: String) {
        lock.withLock {
            for (digest, blob) in image.layers { blobs[digest] = blob }
            blobs[image.indexDigest] = image.indexBytes
            blobs[SHA256Hasher.digest(image.configBytes)] = image.configBytes
            manifests[tag] = image.manifestBytes
            manifests[SHA256Hasher.digest(image.manifestBytes).description] = image.manifestBytes
        }
    }

    /// A manifest or image index by `tag` and by its digest.
    func addManifest(_ bytes: [UInt8], tag: String) {
        lock.withLock {
            manifests[tag] = bytes
            manifests[SHA256Hasher.digest(bytes).description] = bytes
        }
    }

    /// From now on, range requests of this blob return bytes with one flipped bit per member.
    func corrupt(_ digest: Digest) { lock.withLock { _ = corrupted.insert(digest) } }
    func setOffline(_ value: Bool) { lock.withLock { offline = value } }
    /// Range requests of this blob that may use a mirror get bytes with flipped bits (a mirror
    /// serving wrong bytes); those asked of upstream only are correct.
    func corruptInMirror(_ digest: Digest) { lock.withLock { _ = corruptedByMirror.insert(digest) } }
    var upstreamOnlyCalls: Int { lock.withLock { _upstreamOnlyCalls } }

    var rangeCalls: [RangeCall] { lock.withLock { _rangeCalls } }
    /// The deadline each range request was given, in order.
    var rangeDeadlines: [Double] { lock.withLock { _rangeDeadlines } }
    var blobCalls: [Digest] { lock.withLock { _blobCalls } }
    var manifestCalls: Int { lock.withLock { _manifestCalls } }
    func resetCounts() { lock.withLock { _rangeCalls = []; _rangeDeadlines = []; _blobCalls = []; _manifestCalls = 0 } }

    func manifest(_ reference: String) throws(SourceError) -> SourceManifest {
        let result: [UInt8]? = lock.withLock {
            _manifestCalls += 1
            return offline ? nil : manifests[reference]
        }
        if isOffline { throw SourceError(.unreachable, "connection refused") }
        guard let result else { throw SourceError(.notFound, "manifest unknown: \(reference)") }
        return SourceManifest(bytes: result, mediaType: MediaType.ociManifest.rawValue)
    }

    func blob(_ digest: Digest, maxSize: Int64) throws(SourceError) -> [UInt8] {
        let blob = lock.withLock { () -> [UInt8]? in
            _blobCalls.append(digest)
            return blobs[digest]
        }
        if isOffline { throw SourceError(.unreachable, "connection refused") }
        guard let blob else { throw SourceError(.notFound, "blob unknown: \(digest)") }
        return blob
    }

    func blob(_ digest: Digest, range: Range<Int64>, mirrors: Bool, deadline: Double, priority: FetchPriority) throws(SourceError) -> [UInt8] {
        let (blob, isCorrupt) = lock.withLock { () -> ([UInt8]?, Bool) in
            _rangeCalls.append(RangeCall(digest: digest, range: range))
            _rangeDeadlines.append(deadline)
            if !mirrors { _upstreamOnlyCalls += 1 }
            return (blobs[digest], corrupted.contains(digest) || (mirrors && corruptedByMirror.contains(digest)))
        }
        if rangeDelay > 0 { usleep(UInt32(rangeDelay * 1e6)) }
        if isOffline { throw SourceError(.unreachable, "connection refused") }
        guard let blob else { throw SourceError(.notFound, "blob unknown: \(digest)") }
        guard range.lowerBound >= 0, range.upperBound <= Int64(blob.count) else { throw SourceError(.other, "range not satisfiable") }
        var bytes = Array(blob[Int(range.lowerBound)..<Int(range.upperBound)])
        if isCorrupt {
            // Past the 10-byte gzip header, so the member still parses but its content is wrong.
            for i in stride(from: 20, to: bytes.count, by: 4096) { bytes[i] ^= 0x40 }
        }
        return bytes
    }

    private var isOffline: Bool { lock.withLock { offline } }
}

/// A fresh cache directory per test, removed at the end.
final class TemporaryDirectory {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "imgfs-mounttests-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

let testLogger: Logger = {
    var logger = Logger(label: "mount-tests") { _ in SwiftLogNoOpLogHandler() }
    logger.logLevel = .critical
    return logger
}()

/// Resolves and opens `tag` from `registry` with a cache under `root`.
func openSession(_ registry: FakeRegistry, root: String, tag: String = "v1", options: DiskOptions? = nil, prefetch: Bool = false) throws -> FrameSession {
    let store = MetadataStore(root: root, logger: testLogger)
    let resolver = ImageResolver(source: registry, store: store, logger: testLogger)
    let resolved = try resolver.resolve(Reference(registry: "fake:5000", repository: "vm/test", tag: tag, digest: nil))
    var configuration = MountConfiguration(cacheRoot: root)
    configuration.prefetch = prefetch
    var disk = options ?? DiskOptions()
    if options == nil { disk.readaheadThreads = 0 }
    configuration.disk = disk
    return try FrameSession(resolved: resolved, source: registry, configuration: configuration, logger: testLogger)
}

extension FrameDisk {
    /// Reads `count` bytes at `offset` into a new array.
    func bytes(at offset: UInt64, count: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: count)
        let n = try out.withUnsafeMutableBytes { buffer throws(MountError) in try read(at: offset, into: buffer) }
        return Array(out[0..<n])
    }
}
