import Foundation
import Testing
import TestSupport
import Codec
import Verity
@testable import SpanIndex

@Suite struct SpanIndexTests {
    static func randomBytes(_ count: Int, using generator: inout some RandomNumberGenerator) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    /// Mostly zeros with random and repetitive runs, like a sparse ext4 image. Seeded: how many
    /// checkpoints a stream gets depends on where the zero runs fall (zlib writes them as blocks of
    /// up to 4 MiB), so the tests that count spans see the same layout every run.
    static func sparseDisk(_ size: Int) -> [UInt8] {
        var generator = SplitMix64(seed: 0x5EED)
        var disk = [UInt8](repeating: 0, count: size)
        var offset = 0
        var toggle = 0
        while offset < size {
            let end = min(size, offset + Int.random(in: 4096...200_000, using: &generator))
            toggle += 1
            if toggle % 3 == 1 { disk.replaceSubrange(offset..<end, with: randomBytes(end - offset, using: &generator)) }
            if toggle % 3 == 2 { for i in offset..<end { disk[i] = UInt8(truncatingIfNeeded: (i / 7) % 13) } }
            offset = end + Int.random(in: 0...400_000, using: &generator)
        }
        return disk
    }

    static func gzipMembers(_ data: [UInt8], memberSize: Int) throws -> [UInt8] {
        let encoder = try GzipStreamEncoder(level: 6)
        var out = [UInt8]()
        var offset = 0
        while offset < data.count {
            let end = min(data.count, offset + memberSize)
            encoder.reset()
            out += try data[offset..<end].withUnsafeBytes { bytes in try encoder.encodeMember(bytes) }
            offset = end
        }
        return out
    }

    static func build(_ blob: [UInt8], codec: SpanCodec, spanSize: Int = 64 * 1024, uncompressed: [UInt8]? = nil, digest: Digest? = nil) throws -> LayerSpans {
        let digest = digest ?? SHA256Hasher.digest(blob)
        let builder = try LayerSpanBuilder(layer: digest, compressedSize: UInt64(blob.count), codec: codec, spanSize: spanSize,
                                           uncompressedSize: uncompressed.map { UInt64($0.count) },
                                           uncompressedDigest: uncompressed.map { SHA256Hasher.digest($0) })
        var offset = 0
        while offset < blob.count {
            let end = min(blob.count, offset + 77_777)
            try builder.feed(Array(blob[offset..<end]))
            offset = end
        }
        return try builder.finish()
    }

    static func fixtures() throws -> [(String, SpanCodec, [UInt8], [UInt8])] {
        let disk = sparseDisk(3 << 20)
        return [
            ("gzip members", .gzip, disk, try gzipMembers(disk, memberSize: 900_000)),
            ("apple lz4 chained", .appleLZ4, disk, try AppleLZ4Encoder(blockSize: 64 * 1024, chained: true).encode(disk)),
        ]
    }

    @Test func everySpanDecodesFromItsRangeAndVerifies() throws {
        for (name, codec, disk, blob) in try Self.fixtures() {
            let layer = try Self.build(blob, codec: codec, uncompressed: disk)
            #expect(layer.uncompressedSize == UInt64(disk.count))
            // Runs of zeros make deflate blocks of up to 4 MiB, and checkpoints sit between blocks.
            #expect(layer.spanCount > 4, "\(name)")
            let index = SpanIndex(layers: [layer])
            let decoded = try SpanIndex(decoding: index.encoded())
            #expect(decoded == index, "\(name): encoding round trip")
            let entry = try #require(decoded.layer(layer.layerDigest))
            for span in 0..<entry.spanCount {
                let range = entry.compressedRange(ofSpan: span)
                let verified = try entry.decodeSpan(span, compressed: Array(blob[Int(range.lowerBound)..<Int(range.upperBound)]))
                let expected = entry.uncompressedRange(ofSpan: span)
                #expect(verified.uncompressedOffset == expected.lowerBound)
                #expect(verified.bytes == Array(disk[Int(expected.lowerBound)..<Int(expected.upperBound)]), "\(name) span \(span)")
            }
            for _ in 0..<20 {
                let offset = UInt64.random(in: 0..<UInt64(disk.count))
                let span = try #require(entry.span(containing: offset))
                #expect(entry.uncompressedRange(ofSpan: span).contains(offset))
            }
            #expect(entry.span(containing: UInt64(disk.count)) == nil)
        }
    }

    @Test func aTamperedBlobFailsOnlyItsSpan() throws {
        for (name, codec, disk, blob) in try Self.fixtures() {
            let layer = try Self.build(blob, codec: codec, uncompressed: disk)
            let victim = layer.spanCount / 2
            let victimRange = layer.compressedRange(ofSpan: victim)
            var tampered = blob
            let position = Int(victimRange.lowerBound) + Int(victimRange.count) / 2
            tampered[position] ^= 0x5a
            var failures: [Int] = []
            for span in 0..<layer.spanCount {
                let range = layer.compressedRange(ofSpan: span)
                do {
                    _ = try layer.decodeSpan(span, compressed: Array(tampered[Int(range.lowerBound)..<Int(range.upperBound)]))
                } catch {
                    failures.append(span)
                }
            }
            if failures.isEmpty {
                // The flip hit bytes the output does not depend on (a gzip header's MTIME, a
                // member trailer a span skips, padding bits): harmless, as the span digests
                // show. Then the stream still decodes to the same disk.
                var decoded: [UInt8] = []
                let decoder = try GzipStreamDecoder()
                if codec == .gzip { try decoder.decode(tampered) { decoded.append(contentsOf: $0) } } else {
                    try AppleLZ4Decoder().decode(tampered) { decoded.append(contentsOf: $0) }
                }
                #expect(decoded == disk, "\(name): no span failed, yet the tampered layer decodes differently")
            } else {
                #expect(failures == [victim], "\(name): \(failures)")
            }
            // Building from the tampered blob fails on the layer digest.
            #expect(throws: SpanIndexError.self) { try Self.build(tampered, codec: codec, digest: layer.layerDigest) }
        }
    }

    @Test func aTamperedIndexIsCaughtByVerification() throws {
        let (_, codec, disk, blob) = try Self.fixtures()[0]
        let layer = try Self.build(blob, codec: codec, uncompressed: disk)
        var forged = layer
        forged.spans[3].digest = SHA256Hasher.digest([1, 2, 3])
        let range = forged.compressedRange(ofSpan: 3)
        #expect(throws: SpanIndexError.self) { try forged.decodeSpan(3, compressed: Array(blob[Int(range.lowerBound)..<Int(range.upperBound)])) }
        let rebuilt = try Self.build(blob, codec: codec)
        #expect(layer.firstDifference(from: rebuilt) == nil)
        let difference = try #require(forged.firstDifference(from: rebuilt))
        guard case .indexDisagrees(let digest, let span, _) = difference else { Issue.record("\(difference)"); return }
        #expect(digest == layer.layerDigest && span == 3)
        #expect(difference.description.contains("span 3"))
        var moved = layer
        moved.spans[2].checkpoint.compressedOffset += 1
        #expect(moved.firstDifference(from: rebuilt) != nil)
    }

    @Test func hostileIndexesGiveTypedErrors() throws {
        let (_, codec, _, blob) = try Self.fixtures()[0]
        let encoded = SpanIndex(layers: [try Self.build(blob, codec: codec)]).encoded()
        for cut in stride(from: 0, to: encoded.count, by: max(1, encoded.count / 200)) {
            #expect(throws: SpanIndexError.self) { try SpanIndex(decoding: Array(encoded.prefix(cut))) }
        }
        #expect(throws: SpanIndexError.self) { try SpanIndex(decoding: encoded + [0]) }
        var decodedOrRefused = 0
        for _ in 0..<2000 {
            var mutated = encoded
            let position = Int.random(in: 0..<min(mutated.count, 2000))
            mutated[position] = UInt8.random(in: 0...255)
            if let index = try? SpanIndex(decoding: mutated) {
                // Reserved fields are ignored, so compare what was decoded, re-decoded.
                let again = try SpanIndex(decoding: index.encoded())
                #expect(again == index)
            }
            decodedOrRefused += 1
        }
        #expect(decodedOrRefused == 2000)
    }

    @Test func spanSizeIsBounded() {
        #expect(throws: SpanIndexError.self) { try LayerSpanBuilder(layer: SHA256Hasher.digest([]), compressedSize: 0, codec: .gzip, spanSize: 1000) }
    }
}
