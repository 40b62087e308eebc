import Testing
@testable import Codec

@Suite struct AppleLZ4SpanTests {
    static func checkpoints(_ stream: [UInt8], spanSize: Int) throws -> (points: [SpanCheckpoint], output: [UInt8]) {
        let builder = try AppleLZ4CheckpointBuilder(spanSize: spanSize)
        var points: [SpanCheckpoint] = []
        var output: [UInt8] = []
        var offset = 0
        let pieces = [70_001, 3, 500_000]
        var i = 0
        while offset < stream.count {
            let n = min(pieces[i % pieces.count], stream.count - offset)
            try stream[offset..<offset + n].withUnsafeBytes { bytes in
                try builder.decode(bytes, output: { output.append(contentsOf: $0) }, checkpoint: { point in
                    #expect(UInt64(output.count) == point.uncompressedOffset)
                    points.append(point)
                })
            }
            offset += n
            i += 1
        }
        try builder.finish()
        return (points, output)
    }

    @Test(arguments: [false, true])
    func everySpanDecodesFromItsCheckpoint(chained: Bool) throws {
        let data = GzipSpanTests.sparseDisk(5 << 20)
        let stream = try AppleLZ4Encoder(blockSize: 64 * 1024, chained: chained).encode(data)
        let (points, output) = try Self.checkpoints(stream, spanSize: 300 * 1024)
        #expect(output == data)
        #expect(points.count > 4)
        #expect(points.first?.uncompressedOffset == 0)
        var rebuilt: [UInt8] = []
        for (index, point) in points.enumerated() {
            let end = index + 1 < points.count ? Int(points[index + 1].uncompressedOffset) : data.count
            let compressedEnd = index + 1 < points.count ? Int(points[index + 1].compressedOffset) : stream.count
            rebuilt += try AppleLZ4SpanDecoder.decode(from: point, compressed: Array(stream[Int(point.compressedOffset)..<compressedEnd]), length: end - Int(point.uncompressedOffset))
        }
        #expect(rebuilt == data)
    }

    @Test func chainedBlocksNeedTheirWindow() throws {
        let data = TestData.compressible(2 << 20)
        let stream = try AppleLZ4Encoder(blockSize: 64 * 1024, chained: true).encode(data)
        let (points, _) = try Self.checkpoints(stream, spanSize: 256 * 1024)
        let point = points[2]
        let bare = SpanCheckpoint(uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset, bitCount: 0, window: [], isMemberStart: false)
        // Without the history a chained block's back-reference is out of range: an error, not wrong bytes.
        #expect(throws: CodecError.self) {
            try AppleLZ4SpanDecoder.decode(from: bare, compressed: Array(stream[Int(point.compressedOffset)...]), length: 256 * 1024)
        }
    }

    @Test func hostileCheckpointsGiveTypedErrors() throws {
        let data = TestData.compressible(1 << 20)
        let stream = try AppleLZ4Encoder(blockSize: 64 * 1024, chained: true).encode(data)
        let (points, _) = try Self.checkpoints(stream, spanSize: 128 * 1024)
        let point = points[1]
        let range = Array(stream[Int(point.compressedOffset)...])
        for bad in [
            SpanCheckpoint(uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset, bitCount: 2, window: point.window, isMemberStart: false),
            SpanCheckpoint(uncompressedOffset: point.uncompressedOffset, compressedOffset: point.compressedOffset, bitCount: 0, window: [UInt8](repeating: 1, count: 70_000), isMemberStart: false),
        ] {
            #expect(throws: CodecError.self) { try AppleLZ4SpanDecoder.decode(from: bad, compressed: range, length: 1000) }
        }
        // Not at a block boundary: a bad magic.
        #expect(throws: CodecError.self) { try AppleLZ4SpanDecoder.decode(from: point, compressed: Array(range.dropFirst(5)), length: 1000) }
        #expect(throws: CodecError.self) { try AppleLZ4SpanDecoder.decode(from: point, compressed: Array(range.prefix(5000)), length: 200_000) }
    }
}
