import Codec
import Fetch
import Foundation
import OCI
import SpanIndex
import SpanIndexing
import Testing
import Verity

/// Issue 13's span-index "Must show" against the real registry and the real binary: `imgfs index`
/// of a lume OCI and a tart image pushes an artifact found again through the referrers tag
/// fallback (the test registry has no referrers API); random spans fetched by range and decoded
/// from their checkpoints equal the disk; a byte changed in a layer blob fails that span alone;
/// a span index with a changed digest fails `imgfs index --verify` naming the layer and span.
@Suite(.serialized)
struct SpanIndexIntegrationTests {
    static let partSize = 2 * 1024 * 1024
    static let parts = 8

    static let sharedDisk = Result<String, any Error> {
        let directory = try TestEnvironment.scratchDirectory("span-source")
        return try PeerImageFixtures.makeDisk(in: directory, partSize: partSize, parts: parts, seed: 1313)
    }

    struct Summary: Decodable {
        var manifestDigest: String
        var indexDigest: String
        var foundThrough: String?
        var layers: [Layer]
        struct Layer: Decodable { var digest: String; var spans: Int; var uncompressedSize: UInt64 }
    }

    func index(_ arguments: [String]) throws -> (CommandResult, Summary?) {
        let result = try imgfs(["index", "--json", "--quiet"] + arguments, timeout: 600)
        let summary = result.status == 0 ? try JSONDecoder().decode(Summary.self, from: Data(result.stdout.utf8)) : nil
        return (result, summary)
    }

    @Test(arguments: [PeerFormat.lumeSingle, .tart])
    func spansDecodeFromTheRegistryAndTamperingIsCaught(_ format: PeerFormat) throws {
        let registry = try TestRegistry.shared()
        let source = try Self.sharedDisk.get()
        let disk = try [UInt8](Data(contentsOf: URL(fileURLWithPath: source)))
        let repository = TestEnvironment.repository("span-\(format.rawValue)")
        let reference = "\(registry.address)/\(repository):v1"
        let layerDigests = try PeerImageFixtures(registry: registry).push(format, disk: source, repository: repository, tag: "v1", partSize: Self.partSize)

        let (result, pushed) = try index(["--span-size", "64K", reference])
        let summary = try #require(pushed, "\(result)")
        #expect(summary.foundThrough == "fallback-tag")
        #expect(summary.layers.count == Set(layerDigests).count)
        #expect(summary.layers.allSatisfy { $0.spans > 1 || $0.uncompressedSize <= 64 * 1024 }, "\(summary.layers.map { "\($0.spans) spans of \($0.uncompressedSize)" })")

        // Found again as a client would: the registry lacks the referrers API, so through the tag.
        let client = RegistryClient(registry: registry.address, credentials: StaticCredentials([:]))
        let subject = try Digest(parsing: summary.manifestDigest)
        let (referrers, from) = try client.referrers(repository, subject: subject, artifactType: SpanIndexArtifact.artifactType)
        #expect(from == .fallbackTag)
        #expect(referrers.map(\.digest.description) == [summary.indexDigest])
        let found = try #require(try SpanIndexArtifact.find(client: client, repository: repository, subject: subject))
        #expect(found.manifestDigest.description == summary.indexDigest)

        // Random spans: a ranged fetch of exactly the span's compressed bytes decodes to the disk.
        var diskOffset = 0
        var checked = 0
        for digest in layerDigests {
            let entry = try #require(found.index.layer(try Digest(parsing: digest)))
            defer { diskOffset += Int(entry.uncompressedSize) }
            for span in (0..<entry.spanCount).shuffled().prefix(4) {
                let range = entry.compressedRange(ofSpan: span)
                var bytes: [UInt8] = []
                try client.blob(repository, digest: entry.layerDigest, range: Int64(range.lowerBound)..<Int64(range.upperBound)) { bytes.append(contentsOf: $0) }
                let verified = try entry.decodeSpan(span, compressed: bytes)
                let uncompressed = entry.uncompressedRange(ofSpan: span)
                #expect(verified.bytes == Array(disk[diskOffset + Int(uncompressed.lowerBound)..<diskOffset + Int(uncompressed.upperBound)]))
                checked += 1
            }
        }
        #expect(checked >= 4)

        let (verified, _) = try index(["--verify", reference])
        #expect(verified.status == 0, "\(verified)")

        // A span index with one span digest changed: pushed as the newest referrer, it is what
        // readers find; --verify fails naming the layer and the span.
        var forged = found.index
        forged.layers[0].spans[1].digest = SHA256Hasher.digest(Array("forged".utf8))
        let fetched = try client.manifest(repository, reference: summary.manifestDigest)
        let forgedPush = try SpanIndexArtifact.push(forged, client: client, repository: repository,
                                                    subject: Descriptor(mediaType: fetched.mediaType, digest: subject, size: Int64(fetched.bytes.count)))
        let (failed, _) = try index(["--verify", reference])
        #expect(failed.status != 0)
        #expect(failed.stderr.contains(forged.layers[0].layerDigest.description) && failed.stderr.contains("span 1"), "\(failed)")
        // Pinned to the honest one, it passes; pinned to the forged one, it fails.
        #expect(try index(["--verify", "--index", summary.indexDigest, reference]).0.status == 0)
        #expect(try index(["--verify", "--index", forgedPush.manifestDigest.description, reference]).0.status != 0)

        // A byte changed in a layer blob in the registry: that span fails, the others still read.
        let entry = found.index.layers[0]
        let victim = entry.spanCount / 2
        let victimRange = entry.compressedRange(ofSpan: victim)
        let path = try MountSupport.blobDataPath(registry, entry.layerDigest.description)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        defer { try? original.write(to: URL(fileURLWithPath: path)) }
        var tampered = original
        // The deflate or LZ4 data just after the checkpoint: a block header or the first sequence.
        let position = Int(victimRange.lowerBound) + min(20, Int(victimRange.count) / 2)
        tampered[position] ^= 0xA5
        try tampered.write(to: URL(fileURLWithPath: path))
        var failures: [Int] = []
        for span in 0..<entry.spanCount {
            let range = entry.compressedRange(ofSpan: span)
            var bytes: [UInt8] = []
            try client.blob(repository, digest: entry.layerDigest, range: Int64(range.lowerBound)..<Int64(range.upperBound)) { bytes.append(contentsOf: $0) }
            do { _ = try entry.decodeSpan(span, compressed: bytes) } catch { failures.append(span) }
        }
        #expect(failures == [victim], "spans failing after one byte changed in span \(victim): \(failures)")
        // And --verify (a full read) fails on the layer digest.
        let (full, _) = try index(["--verify", "--index", summary.indexDigest, reference])
        #expect(full.status != 0 && full.stderr.contains(entry.layerDigest.description), "\(full)")
    }
}
