import Testing
@testable import Codec

@Suite struct GzipFrameTests {
    @Test(arguments: TestData.sizes)
    func roundTrip(size: Int) throws {
        let compressor = try GzipFrameCompressor(level: 6)
        let decompressor = try GzipFrameDecompressor()
        for (kind, data) in TestData.all(size: size) {
            let member = try compressor.compress(data)
            #expect(member.prefix(2) == [0x1f, 0x8b], "\(kind)")
            #expect(try decompressor.decompress(member, expectedSize: size) == data, "\(kind) \(size)")
        }
    }

    @Test(arguments: [1, 9, 12])
    func levels(level: Int) throws {
        let data = TestData.compressible(100_000)
        let member = try GzipFrameCompressor(level: level).compress(data)
        #expect(member.count < data.count / 2)
        #expect(try GzipFrameDecompressor().decompress(member, expectedSize: data.count) == data)
    }

    @Test(arguments: [0, 13, -1])
    func rejectsBadLevel(level: Int) {
        #expect(throws: CodecError.self) { try GzipFrameCompressor(level: level) }
    }

    @Test func concatenatedMembersDecodeWithSystemGunzip() throws {
        let compressor = try GzipFrameCompressor()
        let frames = [TestData.compressible(1 << 20), TestData.random(64 * 1024), [UInt8](repeating: 0, count: 1 << 20), TestData.compressible(3)]
        var layer = [UInt8]()
        for frame in frames { layer += try compressor.compress(frame) }
        let decoded = try runTool("/usr/bin/gzip", ["-dc"], input: layer)
        #expect(decoded == frames.flatMap { $0 })
    }

    @Test func flippedByteFails() throws {
        let data = TestData.compressible(200_000)
        let member = try GzipFrameCompressor().compress(data)
        let decompressor = try GzipFrameDecompressor()
        // Header, deflate body, CRC and ISIZE: each must be caught.
        for position in [3, 20, member.count / 2, member.count - 6, member.count - 2] {
            var corrupt = member
            corrupt[position] ^= 0x55
            #expect(throws: CodecError.self, "byte \(position)") {
                try decompressor.decompress(corrupt, expectedSize: data.count)
            }
        }
    }

    @Test func truncatedFails() throws {
        let data = TestData.random(70_000)
        let member = try GzipFrameCompressor().compress(data)
        let decompressor = try GzipFrameDecompressor()
        for cut in [0, 1, 10, member.count / 2, member.count - 1] {
            #expect(throws: CodecError.self, "cut at \(cut)") {
                try decompressor.decompress(Array(member.prefix(cut)), expectedSize: data.count)
            }
        }
    }

    @Test func trailingByteFails() throws {
        let data = TestData.compressible(10_000)
        let member = try GzipFrameCompressor().compress(data) + [0]
        do {
            _ = try GzipFrameDecompressor().decompress(member, expectedSize: data.count)
            Issue.record("trailing byte accepted")
        } catch {
            guard case .trailingData(let size, let end) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(size == member.count && end == member.count - 1)
        }
    }

    @Test func wrongExpectedSizeFails() throws {
        let data = TestData.compressible(10_000)
        let member = try GzipFrameCompressor().compress(data)
        let decompressor = try GzipFrameDecompressor()
        #expect(throws: CodecError.self) { try decompressor.decompress(member, expectedSize: data.count - 1) }
        #expect(throws: CodecError.self) { try decompressor.decompress(member, expectedSize: data.count + 1) }
    }

    @Test func errorsDescribeSizes() {
        let text = CodecError.memberSizeMismatch(memberSize: 10, expectedSize: 1 << 20, actualSize: 5).description
        #expect(text.contains("1048576") && text.contains("10 bytes"))
    }
}
