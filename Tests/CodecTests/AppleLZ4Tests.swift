import Testing
@testable import Codec

@Suite struct AppleLZ4Tests {
    static func decode(_ stream: [UInt8], pieces: [Int] = [1 << 30]) throws(CodecError) -> [UInt8] {
        let decoder = AppleLZ4Decoder()
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

    /// Magic of each block in `stream`, walking the headers.
    static func blockKinds(_ stream: [UInt8]) -> [String] {
        var kinds = [String]()
        var i = 0
        func le32(_ at: Int) -> Int { Int(stream[at]) | Int(stream[at + 1]) << 8 | Int(stream[at + 2]) << 16 | Int(stream[at + 3]) << 24 }
        while i + 4 <= stream.count {
            let magic = String(decoding: stream[i..<i + 4], as: UTF8.self)
            kinds.append(magic)
            switch magic {
            case "bv41": i += 12 + le32(i + 8)
            case "bv4-": i += 8 + le32(i + 4)
            default: return kinds
            }
        }
        return kinds
    }

    @Test(arguments: TestData.sizes)
    func roundTrip(size: Int) throws {
        for chained in [false, true] {
            let encoder = try AppleLZ4Encoder(blockSize: 64 * 1024, chained: chained)
            for (kind, data) in TestData.all(size: size) {
                let stream = try encoder.encode(data)
                #expect(try Self.decode(stream) == data, "\(kind) \(size) chained \(chained)")
            }
        }
    }

    @Test func bothBlockKindsAndEveryAwkwardSplit() throws {
        let data = TestData.compressible(256) + TestData.random(512) + [UInt8](repeating: 0, count: 300) + TestData.random(50)
        let stream = try AppleLZ4Encoder(blockSize: 256).encode(data)
        let kinds = Self.blockKinds(stream)
        #expect(kinds.contains("bv41") && kinds.contains("bv4-") && kinds.last == "bv4$")
        #expect(try Self.decode(stream) == data)
        // Every split point into two feeds: inside magics, sizes and payloads.
        for split in 0...stream.count {
            let decoder = AppleLZ4Decoder()
            var out = [UInt8]()
            try decoder.decode(Array(stream[..<split])) { out.append(contentsOf: $0) }
            try decoder.decode(Array(stream[split...])) { out.append(contentsOf: $0) }
            try decoder.finish()
            #expect(out == data, "split at \(split)")
        }
        #expect(try Self.decode(stream, pieces: [1]) == data)
        #expect(try Self.decode(stream, pieces: [3, 5, 11, 4099]) == data)
    }

    /// Chained blocks reach into the previous block's output: a decoder without the
    /// dictionary would fail here.
    @Test func secondBlockReferencesFirst() throws {
        let pattern = TestData.random(32 * 1024)
        let data = pattern + pattern + pattern + pattern
        let stream = try AppleLZ4Encoder(blockSize: 32 * 1024, chained: true).encode(data)
        #expect(Self.blockKinds(stream) == ["bv4-", "bv41", "bv41", "bv41", "bv4$"])
        #expect(stream.count < data.count / 2)
        #expect(try Self.decode(stream) == data)
        #expect(try Self.decode(stream, pieces: [1, 4096, 13]) == data)

        let independent = try AppleLZ4Encoder(blockSize: 32 * 1024).encode(data)
        #expect(Self.blockKinds(independent) == ["bv4-", "bv4-", "bv4-", "bv4-", "bv4$"])
    }

    @Test func badMagicFails() {
        #expect(throws: CodecError.self) { try Self.decode(Array("bv42".utf8)) }
        #expect(throws: CodecError.self) { try Self.decode(Array("xyz".utf8) + [0]) }
    }

    @Test func truncationFails() throws {
        let stream = try AppleLZ4Encoder(blockSize: 4096).encode(TestData.compressible(10_000))
        #expect(throws: CodecError.self) { try AppleLZ4Encoder(blockSize: 255) }
        for cut in [0, 2, 4, 7, 11, 12, 40, stream.count - 4, stream.count - 1] {
            #expect(throws: CodecError.self, "cut at \(cut)") { try Self.decode(Array(stream.prefix(cut))) }
        }
    }

    @Test func dataAfterEndFails() throws {
        let stream = try AppleLZ4Encoder().encode(TestData.compressible(1000))
        #expect(throws: CodecError.self) { try Self.decode(stream + [0]) }
        #expect(throws: CodecError.self) { try Self.decode(stream + stream) }
        // Also when the extra byte arrives in a later feed.
        let decoder = AppleLZ4Decoder()
        try decoder.decode(stream) { _ in }
        #expect(throws: CodecError.self) { try decoder.decode([0x62]) { _ in } }
    }

    @Test func sizeMismatchFails() throws {
        let data = TestData.compressible(10_000)
        var stream = try AppleLZ4Encoder(blockSize: 64 * 1024).encode(data)
        #expect(Array(stream[0..<4]) == Array("bv41".utf8))
        stream[4] &+= 1  // declared decoded size one more than the block holds
        #expect(throws: CodecError.self) { try Self.decode(stream) }

        var corrupt = try AppleLZ4Encoder(blockSize: 64 * 1024).encode(data)
        corrupt[8] &+= 1  // encoded size: the block swallows the end marker's first byte
        #expect(throws: CodecError.self) { try Self.decode(corrupt) }
    }

    @Test func oversizedBlockIsRejectedBeforeAllocating() {
        let header = Array("bv4-".utf8) + [0xff, 0xff, 0xff, 0x7f]
        let decoder = AppleLZ4Decoder(maximumBlockSize: 1 << 20)
        #expect(throws: CodecError.self) { try decoder.decode(header) { _ in } }
    }
}
