import Foundation
import Testing
import Verity

@Suite struct FSVerityHasherTests {
    /// Known fs-verity digest of an empty file (root hash all zeros), from `fsverity digest`.
    @Test func emptyFileHasFixedDigest() throws {
        let hasher = FSVerityHasher()
        let expected = try Digest(parsing: "sha256:3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95")
        #expect(hasher.finalize() == expected)
    }

    @Test(.enabled(if: FSVerityTool.shouldRun), arguments: [0, 1, 4096, 4097, (1 << 20) + 1])
    func randomFileMatchesTool(size: Int) throws {
        let scratch = try ScratchDirectory()
        let file = scratch.file("random-\(size)")
        let bytes = randomBytes(size)
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let expected = try FSVerityTool.digest(ofFileAt: file)

        let hasher = FSVerityHasher()
        hasher.update(bytes)
        #expect(hasher.finalize() == expected)
        #expect(try FSVerity.digest(ofFileAt: file) == expected)
        #expect(Self.digestInPieces(bytes, pieces: [1, 4095, 7000]) == expected)
    }

    /// Sizes around each level boundary of the tree: 128 hashes fill one tree block.
    @Test(.enabled(if: FSVerityTool.shouldRun), arguments: [
        128 * 4096, 128 * 4096 + 1, 129 * 4096, 128 * 128 * 4096, 128 * 128 * 4096 + 4096, 128 * 128 * 4096 + 4097,
    ])
    func treeBoundariesMatchTool(size: Int) throws {
        let scratch = try ScratchDirectory()
        let file = scratch.file("boundary-\(size)")
        var bytes = [UInt8](repeating: 0, count: size)
        for i in stride(from: 0, to: size, by: 4093) { bytes[i] = UInt8(truncatingIfNeeded: i / 4093 + 1) }
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let expected = try FSVerityTool.digest(ofFileAt: file)
        #expect(Self.digestInPieces(bytes, pieces: [1, 4095, 7000, 1 << 20]) == expected)
        #expect(Self.digestUsingZeros(bytes, pieces: [1, 4095, 7000, 1 << 20]) == expected)
    }

    @Test(.enabled(if: FSVerityTool.shouldRun))
    func sparseFileMatchesTool() throws {
        let scratch = try ScratchDirectory()
        let file = scratch.file("sparse")
        let size: UInt64 = 64 << 20
        let islands: [(offset: UInt64, count: Int)] = [
            (0, 10), ((5 << 20) + 17, 100 * 1024), (33 << 20, 8192), ((40 << 20) - 1, 2), (size - 3, 3),
        ]
        guard let handle = FileHandle(forWritingAtPath: try Self.create(file)) else {
            Issue.record("cannot open \(file)")
            return
        }
        try handle.truncate(atOffset: size)
        var whole = [UInt8](repeating: 0, count: Int(size))
        for island in islands {
            let bytes = randomBytes(island.count)
            try handle.seek(toOffset: island.offset)
            try handle.write(contentsOf: bytes)
            whole.replaceSubrange(Int(island.offset)..<Int(island.offset) + island.count, with: bytes)
        }
        try handle.close()

        let expected = try FSVerityTool.digest(ofFileAt: file)
        #expect(try FSVerity.digest(ofFileAt: file) == expected)
        #expect(Self.digestUsingZeros(whole, pieces: [7000, 4095, 1, 1 << 20]) == expected)
    }

    /// Large runs of zeros exercise the repeated-hash shortcut across several tree levels.
    @Test(.enabled(if: FSVerityTool.shouldRun), arguments: [UInt64(300 << 20) + 5, UInt64(1 << 30)])
    func longHoleMatchesTool(size: UInt64) throws {
        let scratch = try ScratchDirectory()
        let file = scratch.file("hole")
        guard let handle = FileHandle(forWritingAtPath: try Self.create(file)) else {
            Issue.record("cannot open \(file)")
            return
        }
        try handle.truncate(atOffset: size)
        try handle.seek(toOffset: 12345)
        try handle.write(contentsOf: [1, 2, 3])
        try handle.close()

        let expected = try FSVerityTool.digest(ofFileAt: file)
        #expect(try FSVerity.digest(ofFileAt: file) == expected)
        let hasher = FSVerityHasher()
        hasher.updateZeros(count: 12345)
        hasher.update([UInt8]([1, 2, 3]))
        hasher.updateZeros(count: size - 12348)
        #expect(hasher.finalize() == expected)
    }

    /// `updateZeros` must equal feeding real zeros, for every alignment and level boundary.
    @Test(arguments: [
        0, 1, 4095, 4096, 4097, 128 * 4096, 128 * 4096 + 1, 129 * 4096 - 1, 128 * 128 * 4096, 128 * 128 * 4096 + 1,
    ])
    func updateZerosEqualsZeroBytes(count: Int) {
        for prefix in [0, 1, 5000, 4096 * 127] {
            let head = randomBytes(prefix)
            let viaZeros = FSVerityHasher()
            viaZeros.update(head)
            viaZeros.updateZeros(count: UInt64(count))
            viaZeros.update([UInt8]([7]))

            let viaBytes = FSVerityHasher()
            viaBytes.update(head)
            viaBytes.update([UInt8](repeating: 0, count: count))
            viaBytes.update([UInt8]([7]))
            #expect(viaZeros.finalize() == viaBytes.finalize(), "prefix \(prefix), zeros \(count)")
        }
    }

    /// An 8 GiB hole must cost almost nothing: the shortcut, not hashing 8 GiB.
    @Test(.timeLimit(.minutes(1)))
    func eightGiBOfZerosIsCheap() {
        let start = ContinuousClock.now
        let hasher = FSVerityHasher()
        hasher.updateZeros(count: 8 << 30)
        _ = hasher.finalize()
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test func missingFileIsTypedError() {
        #expect(throws: VerityError.open(path: "/nonexistent/imgfs", errno: ENOENT)) {
            try FSVerity.digest(ofFileAt: "/nonexistent/imgfs")
        }
    }

    // MARK: - Helpers

    static func create(_ file: String) throws -> String {
        guard FileManager.default.createFile(atPath: file, contents: nil) else {
            throw FSVerityTool.Failure(description: "cannot create \(file)")
        }
        return file
    }

    /// Feeds `bytes` in pieces of cycling sizes, to exercise the partial-block buffering.
    static func digestInPieces(_ bytes: [UInt8], pieces: [Int]) -> Digest {
        let hasher = FSVerityHasher()
        var offset = 0
        var i = 0
        while offset < bytes.count {
            let n = min(pieces[i % pieces.count], bytes.count - offset)
            hasher.update(bytes[offset..<offset + n])
            offset += n
            i += 1
        }
        return hasher.finalize()
    }

    /// Like `digestInPieces`, but pieces that are all zeros go through `updateZeros`.
    static func digestUsingZeros(_ bytes: [UInt8], pieces: [Int]) -> Digest {
        let hasher = FSVerityHasher()
        var offset = 0
        var i = 0
        while offset < bytes.count {
            let n = min(pieces[i % pieces.count], bytes.count - offset)
            let piece = bytes[offset..<offset + n]
            if piece.allSatisfy({ $0 == 0 }) {
                hasher.updateZeros(count: UInt64(n))
            } else {
                hasher.update(piece)
            }
            offset += n
            i += 1
        }
        return hasher.finalize()
    }
}
