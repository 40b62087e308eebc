import Testing
@testable import Codec

@Suite struct GzipStreamTests {
    /// Decodes `stream` fed in pieces of cycling sizes.
    static func decode(_ stream: [UInt8], pieces: [Int] = [1 << 20], outputBufferSize: Int = 1 << 20) throws(CodecError) -> [UInt8] {
        let decoder = try GzipStreamDecoder(outputBufferSize: outputBufferSize)
        var out = [UInt8]()
        var offset = 0
        var i = 0
        while offset < stream.count {
            let n = min(pieces[i % pieces.count], stream.count - offset)
            try decoder.decode(Array(stream[offset..<offset + n])) { out.append(contentsOf: $0) }
            offset += n
            i += 1
        }
        try decoder.finish()
        return out
    }

    @Test(arguments: TestData.sizes)
    func encoderRoundTrip(size: Int) throws {
        let encoder = try GzipStreamEncoder(level: 6, outputBufferSize: 4096)
        for (kind, data) in TestData.all(size: size) {
            let member = try data.withUnsafeBytes { bytes throws(CodecError) in try encoder.encodeMember(bytes) }
            #expect(try Self.decode(member, pieces: [1, 4095, 7000], outputBufferSize: 4096) == data, "\(kind) \(size)")
            #expect(try GzipFrameDecompressor().decompress(member, expectedSize: size) == data)
        }
    }

    @Test func decodesSystemGzipOutput() throws {
        let data = TestData.compressible(3 << 20) + TestData.random(100_000)
        let stream = try runTool("/usr/bin/gzip", ["-c"], input: data)
        #expect(try Self.decode(stream) == data)
        #expect(try Self.decode(stream, pieces: [1, 17, 65536]) == data)
    }

    @Test func decodesConcatenatedMembers() throws {
        let compressor = try GzipFrameCompressor()
        let frames = [TestData.compressible(1 << 20), TestData.random((1 << 20) + 3), [], [UInt8](repeating: 0, count: 64 * 1024)]
        var layer = [UInt8]()
        for frame in frames { layer += try compressor.compress(frame) }
        let expected = frames.flatMap { $0 }
        #expect(try Self.decode(layer) == expected)
        #expect(try Self.decode(layer, pieces: [1, 7, 4096, 18]) == expected)
        // A member boundary falling exactly on a piece boundary.
        let first = try compressor.compress(frames[0]).count
        #expect(try Self.decode(layer, pieces: [first, 1 << 30]) == expected)
    }

    @Test func truncatedStreamFailsAtFinish() throws {
        let member = try GzipFrameCompressor().compress(TestData.compressible(100_000))
        let layer = member + member
        for cut in [1, member.count - 1, member.count + 5, layer.count - 1] {
            let decoder = try GzipStreamDecoder()
            try decoder.decode(Array(layer.prefix(cut))) { _ in }
            #expect(throws: CodecError.self, "cut at \(cut)") { try decoder.finish() }
        }
        let empty = try GzipStreamDecoder()
        #expect(throws: CodecError.self) { try empty.finish() }
    }

    @Test func corruptStreamFails() throws {
        var member = try GzipFrameCompressor().compress(TestData.compressible(100_000))
        member[member.count - 6] ^= 1  // CRC
        #expect(throws: CodecError.self) { try Self.decode(member) }
        let garbage = try GzipFrameCompressor().compress([1, 2, 3]) + [0x42]
        #expect(throws: CodecError.self) { try Self.decode(garbage) }
    }

    @Test func consumerErrorStopsDecoding() throws {
        struct Stop: Error {}
        let member = try GzipFrameCompressor().compress(TestData.compressible(100_000))
        let decoder = try GzipStreamDecoder()
        do {
            try decoder.decode(member) { _ in throw Stop() }
            Issue.record("consumer error swallowed")
        } catch {
            guard case .consumer(let cause) = error, cause is Stop else {
                Issue.record("unexpected \(error)")
                return
            }
        }
    }
}
