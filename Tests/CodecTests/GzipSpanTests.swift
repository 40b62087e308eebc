import Testing
import TestSupport
@testable import Codec

@Suite struct GzipSpanTests {
    /// An ext4-like sparse image: mostly zeros, with scattered random blocks and runs of
    /// text-like metadata, so deflate blocks of very different sizes occur.
    static func sparseDisk(_ size: Int) -> [UInt8] {
        var disk = [UInt8](repeating: 0, count: size)
        // Seeded: zlib writes long zero runs as blocks of up to 4 MiB, so how many checkpoints a
        // stream gets depends on where the runs fall; the same layout every run.
        var generator = SplitMix64(seed: 0x1313)
        var offset = 0
        while offset < size {
            let run = Int.random(in: 4096...(256 * 1024), using: &generator)
            let kind = Int.random(in: 0..<3, using: &generator)
            let end = min(size, offset + run)
            if kind == 1 { disk.replaceSubrange(offset..<end, with: TestData.random(end - offset)) }
            if kind == 2 { disk.replaceSubrange(offset..<end, with: TestData.compressible(end - offset)) }
            offset = end + Int.random(in: 0...(512 * 1024), using: &generator)
        }
        return disk
    }

    /// gzip members of `memberSize` input bytes each, as lume and imgfs frames write them.
    static func members(_ data: [UInt8], memberSize: Int) throws -> [UInt8] {
        let encoder = try GzipStreamEncoder(level: 6)
        var out = [UInt8]()
        var offset = 0
        repeat {
            let end = min(data.count, offset + memberSize)
            encoder.reset()
            out += try data[offset..<end].withUnsafeBytes { bytes in try encoder.encodeMember(bytes) }
            offset = end
        } while offset < data.count
        return out
    }

    static func checkpoints(_ stream: [UInt8], spanSize: Int, pieces: [Int] = [65_537, 1, 300_001]) throws -> (points: [SpanCheckpoint], output: [UInt8]) {
        let builder = try GzipCheckpointBuilder(spanSize: spanSize, outputBufferSize: 100_000)
        var points: [SpanCheckpoint] = []
        var output: [UInt8] = []
        var offset = 0
        var i = 0
        while offset < stream.count {
            let n = min(pieces[i % pieces.count], stream.count - offset)
            try stream[offset..<offset + n].withUnsafeBytes { bytes in
                try builder.decode(bytes, output: { output.append(contentsOf: $0) }, checkpoint: { point in
                    // Everything before the point has been delivered already.
                    #expect(UInt64(output.count) == point.uncompressedOffset)
                    points.append(point)
                })
            }
            offset += n
            i += 1
        }
        try builder.finish()
        #expect(builder.compressedSize == UInt64(stream.count))
        return (points, output)
    }

    /// Decodes span `index` from exactly the compressed bytes between its checkpoint and the next.
    static func span(_ index: Int, of points: [SpanCheckpoint], stream: [UInt8], total: Int) throws -> [UInt8] {
        let point = points[index]
        let end = index + 1 < points.count ? points[index + 1].uncompressedOffset : UInt64(total)
        let compressedEnd = index + 1 < points.count ? Int(points[index + 1].compressedOffset) : stream.count
        let range = Array(stream[Int(point.compressedStart)..<compressedEnd])
        return try GzipSpanDecoder().decode(from: point, compressed: range, length: Int(end - point.uncompressedOffset))
    }

    static func streams(_ data: [UInt8]) throws -> [(String, [UInt8])] {
        [
            ("one member (gzip -6)", try runTool("/usr/bin/gzip", ["-c", "-6"], input: data)),
            ("one member (gzip -1)", try runTool("/usr/bin/gzip", ["-c", "-1"], input: data)),
            ("members of 700 KiB", try members(data, memberSize: 700 * 1024)),
            ("members of 64 KiB", try members(data, memberSize: 64 * 1024)),
        ]
    }

    @Test(arguments: ["sparse", "random", "text"])
    func everySpanDecodesFromItsCheckpoint(kind: String) throws {
        let size = 6 << 20
        let data = switch kind {
        case "sparse": Self.sparseDisk(size)
        case "random": TestData.random(size)
        default: TestData.compressible(size)
        }
        for (name, stream) in try Self.streams(data) {
            let spanSize = 256 * 1024
            let (points, output) = try Self.checkpoints(stream, spanSize: spanSize)
            #expect(output == data, "\(name)")
            #expect(points.first?.uncompressedOffset == 0 && points.first?.isMemberStart == true)
            // Zero runs make blocks (and so spans) long: at least a few checkpoints, not one per span.
            #expect(points.count >= 3, "\(name): \(points.count) checkpoints")
            for (a, b) in zip(points, points.dropFirst()) {
                #expect(b.uncompressedOffset - a.uncompressedOffset >= UInt64(spanSize))
                #expect(b.compressedOffset > a.compressedOffset)
                #expect(b.window.count <= SpanWindow.gzipMaximum)
            }
            var rebuilt: [UInt8] = []
            for index in points.indices {
                rebuilt += try Self.span(index, of: points, stream: stream, total: data.count)
            }
            #expect(rebuilt == data, "\(name): spans decoded from checkpoints differ")
            #expect(points.contains { $0.bitCount != 0 } || name.contains("64 KiB") || kind == "random", "\(name): no checkpoint mid-byte")
        }
    }

    @Test func randomOffsetsReadFromTheirSpan() throws {
        let data = Self.sparseDisk(5 << 20)
        let stream = try Self.members(data, memberSize: 1_300_000)
        let (points, _) = try Self.checkpoints(stream, spanSize: 128 * 1024)
        for _ in 0..<40 {
            let offset = UInt64.random(in: 0..<UInt64(data.count))
            let index = points.lastIndex { $0.uncompressedOffset <= offset }!
            let point = points[index]
            // The range may run past the span's end: the decoder stops when the span is full.
            let range = Array(stream[Int(point.compressedStart)...])
            let length = min(4096, data.count - Int(offset))
            let head = try GzipSpanDecoder().decode(from: point, compressed: range, length: Int(offset - point.uncompressedOffset) + length)
            #expect(Array(head.suffix(length)) == Array(data[Int(offset)..<Int(offset) + length]))
        }
    }

    @Test func hostileCheckpointsGiveTypedErrors() throws {
        let data = TestData.compressible(2 << 20)
        let stream = try runTool("/usr/bin/gzip", ["-c"], input: data)
        let (points, _) = try Self.checkpoints(stream, spanSize: 256 * 1024)
        let point = try #require(points.dropFirst().first { $0.bitCount != 0 })
        let range = Array(stream[Int(point.compressedStart)...])
        let decoder = try GzipSpanDecoder()
        func expectInvalid(_ bad: SpanCheckpoint) {
            #expect(throws: CodecError.self) { try decoder.decode(from: bad, compressed: range, length: 1000) }
        }
        expectInvalid(SpanCheckpoint(uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset, bitCount: 9, window: point.window, isMemberStart: false))
        expectInvalid(SpanCheckpoint(uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset, bitCount: 1, window: [UInt8](repeating: 0, count: 40_000), isMemberStart: false))
        expectInvalid(SpanCheckpoint(uncompressedOffset: 0, compressedOffset: 0, bitCount: 3, window: [], isMemberStart: false))
        expectInvalid(SpanCheckpoint(uncompressedOffset: 0, compressedOffset: 5, bitCount: 0, window: [1], isMemberStart: true))
        // A range cut short is a typed truncation, not a short span.
        let short = Array(range.prefix(100))
        #expect(throws: CodecError.self) { try decoder.decode(from: point, compressed: short, length: 200_000) }
        // Checkpoints at the wrong bit offset or with a wrong window decode to an error or to
        // wrong bytes (which the span's SHA-256 catches), never a crash or a hang.
        for shift in 1...7 {
            let moved = SpanCheckpoint(uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset, bitCount: UInt8((Int(point.bitCount) + shift) % 8), window: point.window, isMemberStart: false)
            if let bytes = try? decoder.decode(from: moved, compressed: range, length: 100_000) {
                #expect(bytes != Array(data[Int(point.uncompressedOffset)..<Int(point.uncompressedOffset) + 100_000]) || moved.bitCount == point.bitCount)
            }
        }
        // The decoder is reusable after failures.
        let good = try decoder.decode(from: point, compressed: range, length: 100_000)
        #expect(good == Array(data[Int(point.uncompressedOffset)..<Int(point.uncompressedOffset) + 100_000]))
    }
}
