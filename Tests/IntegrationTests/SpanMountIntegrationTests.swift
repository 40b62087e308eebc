import Fetch
import Foundation
import SpanIndex
import SpanIndexing
import Testing
import Verity

/// Issue 13's mount "Must show" for span indexes, against the real registry, real FUSE mounts
/// and the real binary: after `imgfs index`, a cold mount of a lume OCI or tart image reads
/// frame by frame (a 4 KiB read moves at most two spans' compressed bytes, not the layer), serves
/// the source's exact bytes, and says "spans" in its status; a byte changed in a layer blob fails
/// the reads of that span with EIO while other spans read; without an index the mount says it
/// serves whole layers.
@Suite(.serialized, .enabled(if: MountSupport.canMount || TestEnvironment.isCI, "needs /dev/fuse and fusermount3"))
struct SpanMountIntegrationTests {
    static let partSize = 2 * 1024 * 1024
    static let parts = 8

    /// Pushes a disk of its own (blobs are shared between repositories, and one test breaks one)
    /// as `format`, indexes it with 64 KiB spans, and returns the source, reference, layer
    /// digests and the span index as a client finds it.
    func indexedImage(_ format: PeerFormat, scratch: String, name: String) throws -> (source: String, reference: String, repository: String, layers: [String], index: SpanIndex) {
        let registry = try TestRegistry.shared()
        let source = try PeerImageFixtures.makeDisk(in: scratch, partSize: Self.partSize, parts: Self.parts, seed: UInt64.random(in: 1000...UInt64(Int64.max)))
        let repository = TestEnvironment.repository(name)
        let layers = try PeerImageFixtures(registry: registry).push(format, disk: source, repository: repository, tag: "v1", partSize: Self.partSize)
        let reference = "\(registry.address)/\(repository):v1"
        let result = try imgfs(["index", "--quiet", "--span-size", "64K", reference], timeout: 600)
        try #require(result.status == 0, "\(result)")
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        let manifest = try client.manifest(repository, reference: "v1")
        let found = try #require(try SpanIndexArtifact.find(client: client, repository: repository, subject: manifest.digest))
        return (source, reference, repository, layers, found.index)
    }

    @Test(arguments: [PeerFormat.lumeChunked, .tart])
    func aColdMountReadsSpansNotLayers(_ format: PeerFormat) throws {
        let scratch = try TestEnvironment.scratchDirectory("span-mount-\(format)")
        defer { TestEnvironment.remove(scratch) }
        let image = try indexedImage(format, scratch: scratch, name: "span-mount-\(format.rawValue)")
        let log = RegistryLog(try TestRegistry.shared())
        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }

        // A 4 KiB read in the middle of part 5: at most two spans' compressed bytes of its layer.
        let part = 5
        let layer = try #require(image.index.layer(try Digest(parsing: image.layers[part])))
        let offset = UInt64(part * Self.partSize + Self.partSize / 2 + 4096)
        let mark = log.mark()
        #expect(try MountSupport.read(mount.disk, offset: offset, count: 4096) == (try MountSupport.read(image.source, offset: offset, count: 4096)))
        let moved = log.requests(since: mark, repository: image.repository).filter(\.isBlob).reduce(0) { $0 + $1.bytes }
        let twoSpans = (0..<max(1, layer.spanCount - 1)).map { span in
            layer.compressedRange(ofSpan: span).count + (span + 1 < layer.spanCount ? layer.compressedRange(ofSpan: span + 1).count : 0)
        }.max() ?? 0
        #expect(moved > 0)
        #expect(moved <= twoSpans + 1, "a 4 KiB read moved \(moved) bytes; two spans are at most \(twoSpans)")
        #expect(UInt64(moved) < layer.compressedSize / 4, "a 4 KiB read moved \(moved) of the layer's \(layer.compressedSize) bytes")

        // The whole disk, frame by frame, is the source.
        try shell("cmp \(image.source) \(mount.disk)", timeout: 600)
        let status = try mount.settledStatus()
        #expect(status.readUnit == "spans")
        #expect(status.spanIndex != nil)
        #expect(status.statistics.verificationFailures == 0)
        #expect(status.statistics.readErrors == 0)
        let text = try imgfs(["status"]).stdout
        #expect(text.contains("(span index)"), "\(text)")
    }

    @Test func aTamperedSpanGivesEIOAndOtherSpansRead() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("span-tamper")
        defer { TestEnvironment.remove(scratch) }
        let image = try indexedImage(.lumeChunked, scratch: scratch, name: "span-tamper")
        // Break one byte in the middle of part 6's layer, after the index was built.
        let part = 6
        let layer = try #require(image.index.layer(try Digest(parsing: image.layers[part])))
        let path = try MountSupport.blobDataPath(registry, image.layers[part])
        let at = Int(layer.compressedSize / 2)
        try shell("printf 'XXXXXXXX' | dd of=\(path) bs=1 seek=\(at) conv=notrunc status=none")
        let span = try #require(layer.spans.indices.first { layer.compressedRange(ofSpan: $0).contains(UInt64(at)) })
        let broken = layer.uncompressedRange(ofSpan: span)

        let mount = try MountedImage(image.reference, scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        // Reads of the broken span's bytes fail with EIO (the frames whose piece holds the byte).
        var failures = 0
        var offset = UInt64(part * Self.partSize) + broken.lowerBound / 4096 * 4096
        while offset < UInt64(part * Self.partSize) + broken.upperBound {
            do { _ = try MountSupport.read(mount.disk, offset: offset, count: 4096) } catch let error as ReadFailed {
                #expect(error.errno == EIO, "\(error)")
                failures += 1
            }
            offset += 4096
        }
        #expect(failures >= 1, "no read of span \(span) failed")
        // Other spans of the same layer, and other layers, read byte for byte.
        for other in [UInt64(part * Self.partSize) + 4096, UInt64(part * Self.partSize + Self.partSize - 8192), UInt64(2 * Self.partSize + 4096)]
        where !(UInt64(part * Self.partSize) + broken.lowerBound - 65536..<UInt64(part * Self.partSize) + broken.upperBound + 65536).contains(other) {
            #expect(try MountSupport.read(mount.disk, offset: other, count: 4096) == (try MountSupport.read(image.source, offset: other, count: 4096)), "offset \(other)")
        }
        let status = try mount.settledStatus()
        #expect(status.statistics.verificationFailures >= 1)
        let logText = (try? String(contentsOfFile: mount.logFile, encoding: .utf8)) ?? ""
        #expect(logText.contains(image.layers[part]), "the log names the blob")
    }

    @Test func withoutAnIndexTheMountSaysItServesWholeLayers() throws {
        let registry = try TestRegistry.shared()
        let scratch = try TestEnvironment.scratchDirectory("span-none")
        defer { TestEnvironment.remove(scratch) }
        let source = try PeerImageFixtures.makeDisk(in: scratch, partSize: Self.partSize, parts: Self.parts, seed: 4242)
        let repository = TestEnvironment.repository("span-none")
        try PeerImageFixtures(registry: registry).push(.lumeChunked, disk: source, repository: repository, tag: "v1", partSize: Self.partSize)
        let mount = try MountedImage("\(registry.address)/\(repository):v1", scratch: scratch, extra: ["--no-prefetch"])
        defer { mount.unmount() }
        #expect(try MountSupport.read(mount.disk, offset: 4096, count: 4096) == (try MountSupport.read(source, offset: 4096, count: 4096)))
        let status = try mount.settledStatus()
        #expect(status.readUnit == "layers")
        let logText = (try? String(contentsOfFile: mount.logFile, encoding: .utf8)) ?? ""
        #expect(logText.contains("no span index"), "the log says so")
        #expect(try imgfs(["status"]).stdout.contains("whole layers"))
    }
}
