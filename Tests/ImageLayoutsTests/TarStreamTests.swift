import Foundation
import Testing
@testable import ImageLayouts

/// Issue 13: the tar reader under containerDisks, on archives GNU tar writes (ustar, GNU,
/// PAX, the three sparse formats) and on hostile headers.
struct TarStreamTests {
    struct Read: Equatable {
        var members: [String] = []
        /// Each member's content, holes filled with zeros.
        var files: [String: [UInt8]] = [:]
    }

    /// Reads `archive` fed in pieces of `piece` bytes.
    static func read(_ archive: [UInt8], piece: Int = 7) throws -> Read {
        let reader = TarStreamReader()
        var result = Read()
        var current: TarMember?
        var content = [UInt8]()
        var start = 0
        while start < archive.count {
            let end = min(archive.count, start + piece)
            try archive[start..<end].withUnsafeBytes { raw in
                try reader.feed(raw) { event in
                    switch event {
                    case .member(let member):
                        current = member
                        content = []
                        result.members.append(member.path)
                    case .data(let offset, let bytes):
                        if UInt64(content.count) < offset { content += [UInt8](repeating: 0, count: Int(offset) - content.count) }
                        #expect(UInt64(content.count) == offset, "data in order")
                        content += bytes
                    case .memberEnd(let member):
                        #expect(member.path == current?.path)
                        if UInt64(content.count) < member.size { content += [UInt8](repeating: 0, count: Int(member.size) - content.count) }
                        result.files[member.path] = content
                    }
                }
            }
            start = end
        }
        try reader.finish()
        return result
    }

    static func member(_ path: String, _ data: [UInt8], type: TarWriter.EntryType = .regular) -> [UInt8] {
        TarWriter.header(path: path, type: type, size: UInt64(data.count), mode: 0o440, uid: 107, gid: 107)
            + data + [UInt8](repeating: 0, count: Int(TarWriter.padding(UInt64(data.count))))
    }

    static func pattern(_ count: Int, seed: UInt8 = 1) -> [UInt8] { (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) } }

    @Test func writerOutputReadsBackWhateverThePieceSize() throws {
        let disk = Self.pattern(5000)
        let archive = Self.member("disk/", [], type: .directory) + Self.member("disk/disk.img", disk) + TarWriter.endOfArchive
        for piece in [1, 511, 512, 513, 100_000] {
            let read = try Self.read(archive, piece: piece)
            #expect(read.members == ["disk/", "disk/disk.img"])
            #expect(read.files["disk/disk.img"] == disk)
        }
    }

    @Test func longPathsAndLargeSizesGoThroughPAX() throws {
        let long = "disk/" + String(repeating: "n", count: 150) + ".img"
        let header = TarWriter.header(path: long, type: .regular, size: 1 << 34, mode: 0o440, uid: 107, gid: 107)
        // The header alone: the member's data would be 16 GiB, so the stream ends inside it.
        let reader = TarStreamReader()
        var seen: TarMember?
        try header.withUnsafeBytes { try reader.feed($0) { if case .member(let m) = $0 { seen = m } } }
        #expect(seen?.path == long)
        #expect(seen?.size == 1 << 34)
        #expect(throws: TarError.truncated(offset: UInt64(header.count), member: long)) { try reader.finish() }
    }

    // MARK: - GNU tar's own archives

    static func gnuTar(_ arguments: [String], files: [(String, [UInt8], sparse: Bool)]) throws -> [UInt8]? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/tar") else { return nil }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("imgfs-tar-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("disk"), withIntermediateDirectories: true)
        for (name, bytes, sparse) in files {
            let url = directory.appendingPathComponent(name)
            FileManager.default.createFile(atPath: url.path, contents: nil)
            let handle = try FileHandle(forWritingTo: url)
            if sparse {
                // Data at 0, a hole, data at 1 MiB, and a hole to the end: a real sparse file.
                try handle.write(contentsOf: bytes)
                try handle.seek(toOffset: 1 << 20)
                try handle.write(contentsOf: bytes)
                try handle.truncate(atOffset: 3 << 20)
            } else {
                try handle.write(contentsOf: bytes)
            }
            try handle.close()
        }
        let output = directory.appendingPathComponent("out.tar")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/tar")
        process.arguments = ["-C", directory.path, "-cf", output.path] + arguments + files.map(\.0)
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        return [UInt8](try Data(contentsOf: output))
    }

    static func expectedSparse(_ bytes: [UInt8]) -> [UInt8] {
        var file = [UInt8](repeating: 0, count: 3 << 20)
        file.replaceSubrange(0..<bytes.count, with: bytes)
        file.replaceSubrange((1 << 20)..<((1 << 20) + bytes.count), with: bytes)
        return file
    }

    @Test(arguments: [
        ["--format=gnu"], ["--format=ustar"], ["--format=posix"],
        ["--format=gnu", "--sparse"], ["--format=posix", "--sparse", "--sparse-version=1.0"], ["--format=posix", "--sparse", "--sparse-version=0.1"],
        ["--format=posix", "--sparse", "--sparse-version=0.0"], ["--format=posix", "--sparse"],
    ])
    func gnuTarArchivesReadAsTheirFiles(arguments: [String]) throws {
        let data = Self.pattern(70_000, seed: 9)
        let sparse = arguments.contains("--sparse")
        let longName = "disk/" + String(repeating: "x", count: arguments.contains("--format=ustar") ? 60 : 120) + ".qcow2"
        guard let archive = try Self.gnuTar(arguments, files: [("disk/disk.img", data, sparse), (longName, Array("qcow".utf8), false)]) else { return }
        let read = try Self.read(archive, piece: 4099)
        #expect(read.members.contains("disk/disk.img"), "\(read.members)")
        #expect(read.files["disk/disk.img"] == (sparse ? Self.expectedSparse(data) : data))
        #expect(read.files[longName] == Array("qcow".utf8))
    }

    // MARK: - Hostile headers

    static func withChecksum(_ block: [UInt8]) -> [UInt8] {
        var h = block
        for i in 148..<156 { h[i] = UInt8(ascii: " ") }
        let sum = h.reduce(0) { $0 + Int($1) }
        let text = Array(String(format: "%06o", sum).utf8) + [0, UInt8(ascii: " ")]
        h.replaceSubrange(148..<156, with: text)
        return h
    }

    static func header(_ path: String, size: UInt64, edit: (inout [UInt8]) -> Void = { _ in }) -> [UInt8] {
        var h = Array(TarWriter.header(path: path, type: .regular, size: size, mode: 0o644, uid: 0, gid: 0).suffix(512))
        edit(&h)
        return withChecksum(h)
    }

    static func pax(_ records: String, then path: String = "disk/disk.img", size: UInt64 = 0) -> [UInt8] {
        let data = Array(records.utf8)
        let x = header("pax", size: UInt64(data.count)) { $0[156] = UInt8(ascii: "x") }
        return x + data + [UInt8](repeating: 0, count: Int(TarWriter.padding(UInt64(data.count)))) + header(path, size: size)
    }

    static func failure(_ archive: [UInt8]) -> String? {
        do { _ = try read(archive, piece: 512); return nil } catch { return "\(error)" }
    }

    @Test func badChecksumIsRefused() {
        var archive = Self.member("disk/disk.img", [1, 2, 3]) + TarWriter.endOfArchive
        archive[10] ^= 0x20
        #expect(Self.failure(archive)?.contains("checksum") == true)
    }

    @Test func numbersThatOverflowOrAreNegativeAreRefused() {
        let negative = Self.header("disk/disk.img", size: 0) { h in h.replaceSubrange(124..<136, with: [0xFF] + [UInt8](repeating: 0xFF, count: 11)) }
        #expect(Self.failure(negative + TarWriter.endOfArchive)?.contains("base-256") == true)
        let huge = Self.header("disk/disk.img", size: 0) { h in h.replaceSubrange(124..<136, with: [0x80, 1] + [UInt8](repeating: 0, count: 10)) }
        #expect(Self.failure(huge + TarWriter.endOfArchive)?.contains("overflows") == true)
        let notOctal = Self.header("disk/disk.img", size: 0) { h in h.replaceSubrange(124..<136, with: Array("0000000009\0 ".utf8)) }
        #expect(Self.failure(notOctal + TarWriter.endOfArchive)?.contains("octal") == true)
    }

    @Test func malformedPAXRecordsAreRefused() {
        for records in ["99 path=x\n", "5 path=x\n", "x path=x\n", "12 =novalue\n", "13 path=abc\nX", "12 size=-1\n", "30 size=99999999999999999999999\n"] {
            let archive = Self.pax(records) + TarWriter.endOfArchive
            #expect(Self.failure(archive) != nil, "\(records.debugDescription)")
        }
        // A well-formed one applies.
        let good = Self.pax(TarWriter.record("path", "disk/a.b")) + TarWriter.endOfArchive
        #expect((try? Self.read(good))?.members == ["disk/a.b"])
    }

    @Test func aPAXSizeLargerThanTheStreamIsATruncation() {
        let archive = Self.pax("20 size=99999999999\n") + [UInt8](repeating: 7, count: 1024)
        #expect(Self.failure(archive)?.contains("ends at offset") == true)
    }

    @Test func oversizedExtensionHeadersAreRefusedBeforeTheyAreRead() {
        let archive = Self.header("././@LongLink", size: 1 << 30) { $0[156] = UInt8(ascii: "L") }
        #expect(Self.failure(archive)?.contains("extension header") == true)
    }

    @Test func truncationsAreReportedWithTheMember() {
        let full = Self.member("disk/disk.img", Self.pattern(2000)) + TarWriter.endOfArchive
        #expect(Self.failure(Array(full.prefix(300))) != nil, "inside a header")
        #expect(Self.failure(Array(full.prefix(1000)))?.contains("disk/disk.img") == true, "inside the data")
        #expect(Self.failure(Array(full.prefix(512 + 2000 + 10))) != nil, "inside the padding")
        #expect(Self.failure(Array(full.prefix(512 + 2048))) == nil, "at a header boundary, as Go's reader accepts")
    }

    @Test func aLoneZeroBlockFollowedByAHeaderIsRefusedAndTrailingBytesAreIgnored() {
        let member = Self.member("disk/disk.img", [1])
        #expect(Self.failure([UInt8](repeating: 0, count: 512) + member) != nil)
        #expect(Self.failure(member + TarWriter.endOfArchive + [1, 2, 3]) == nil)
    }

    @Test func hostileSparseMapsAreRefused() {
        func sparse10(_ map: String, realSize: UInt64, stored: Int) -> [UInt8] {
            var mapBlock = Array(map.utf8)
            mapBlock += [UInt8](repeating: 0, count: Int(TarWriter.padding(UInt64(mapBlock.count))))
            let body = mapBlock + [UInt8](repeating: 5, count: stored)
            let records = "22 GNU.sparse.major=1\n22 GNU.sparse.minor=0\n" + TarWriter.record("GNU.sparse.name", "disk/disk.img")
                + TarWriter.record("GNU.sparse.realsize", String(realSize))
            return Self.pax(records, then: "GNUSparseFile.0/disk.img", size: UInt64(body.count)) + body
                + [UInt8](repeating: 0, count: Int(TarWriter.padding(UInt64(body.count)))) + TarWriter.endOfArchive
        }
        // Sound: two extents, the file ends in a hole.
        let good = try? Self.read(sparse10("2\n0\n10\n100\n5\n", realSize: 200, stored: 15))
        #expect(good?.files["disk/disk.img"].map { Array($0[0..<10]) + Array($0[100..<105]) } == [UInt8](repeating: 5, count: 15))
        #expect(good?.files["disk/disk.img"]?.count == 200)
        #expect(Self.failure(sparse10("2\n100\n5\n0\n10\n", realSize: 200, stored: 15))?.contains("out of order") == true)
        #expect(Self.failure(sparse10("2\n0\n10\n5\n10\n", realSize: 200, stored: 20))?.contains("overlaps") == true)
        #expect(Self.failure(sparse10("1\n190\n20\n", realSize: 200, stored: 20)) != nil, "past the end of the file")
        #expect(Self.failure(sparse10("1\n0\n10\n", realSize: 200, stored: 15))?.contains("hold 10 bytes") == true)
        #expect(Self.failure(sparse10("1\n18446744073709551615\n2\n", realSize: 200, stored: 2)) != nil, "offset + length overflows")
        #expect(Self.failure(sparse10("99999999999\n", realSize: 200, stored: 0)) != nil, "too many extents")
        #expect(Self.failure(sparse10("1\n0\nx\n", realSize: 200, stored: 0)) != nil, "not a number")
        #expect(Self.failure(sparse10("3\n0\n1\n", realSize: 200, stored: 0)) != nil, "a map longer than the member")
    }
}
