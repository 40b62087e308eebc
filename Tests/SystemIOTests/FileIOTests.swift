import Glibc
import SystemIO
import Testing

/// A fresh directory under /tmp, removed with everything in it at the end of the test.
private final class Scratch {
    let path: String

    init() throws {
        var template = Array("/tmp/imgfs-systemio-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw IOError(operation: "mkdtemp", path: "/tmp", errno: errno)
        }
        path = String(cString: made)
    }

    deinit { _ = system("rm -rf '\(path)'") }
}

@Suite struct FileIOTests {
    @Test func writeAtomicallyReplacesTheFileWithTheModeAndLeavesNoTemporary() throws {
        let scratch = try Scratch()
        let path = scratch.path + "/config.json"
        try FileIO.writeAtomically(Array("old".utf8), to: path, durable: false)
        try FileIO.writeAtomically(Array("new content".utf8), to: path, mode: 0o600, durable: true)
        #expect(try FileIO.readFile(path, limit: 100) == Array("new content".utf8))
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        #expect(try FileIO.directoryEntries(scratch.path) == ["config.json"])
    }

    @Test func writeAtomicallyIntoAMissingDirectoryFailsWithErrnoAndThePath() throws {
        let scratch = try Scratch()
        let error = #expect(throws: IOError.self) {
            try FileIO.writeAtomically([1, 2, 3], to: scratch.path + "/absent/file", durable: true)
        }
        #expect(error?.errno == ENOENT)
        #expect(error?.path.hasPrefix(scratch.path + "/absent/file") == true)
    }

    @Test func makeDirectoriesCreatesEveryLevelAndAcceptsExistingOnes() throws {
        let scratch = try Scratch()
        let deep = scratch.path + "/a/b/c"
        try FileIO.makeDirectories(deep, mode: 0o700)
        try FileIO.makeDirectories(deep)
        var info = stat()
        #expect(stat(deep, &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFDIR)
        #expect(info.st_mode & 0o777 == 0o700)
        #expect(FileIO.parent(of: deep) == scratch.path + "/a/b")
        #expect(FileIO.parent(of: "/top") == "/")
        #expect(FileIO.parent(of: "relative") == ".")
    }

    @Test func makeDirectoriesThroughAFileFailsWithENOTDIR() throws {
        let scratch = try Scratch()
        try FileIO.writeAtomically([0], to: scratch.path + "/file", durable: false)
        let error = #expect(throws: IOError.self) { try FileIO.makeDirectories(scratch.path + "/file/below") }
        #expect(error?.errno == ENOTDIR)
        #expect(error?.operation == "mkdir")
    }

    @Test func punchHoleZeroesTheRangeAndKeepsTheSize() throws {
        let scratch = try Scratch()
        let path = scratch.path + "/data"
        let bytes = [UInt8](repeating: 0xAB, count: 64 * 1024)
        try FileIO.writeAtomically(bytes, to: path, durable: false)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        #expect(fd >= 0)
        defer { close(fd) }
        let punched = Result { () throws(IOError) in try FileIO.punchHole(fd, offset: 16 * 1024, length: 16 * 1024, path: path) }
        // /tmp on a file system without holes: nothing to check.
        if case .failure(let error) = punched, error.errno == EOPNOTSUPP { return }
        try punched.get()
        let read = try #require(try FileIO.readFile(path, limit: 1 << 20))
        #expect(read.count == bytes.count)
        #expect(read[0..<(16 * 1024)].allSatisfy { $0 == 0xAB })
        #expect(read[(16 * 1024)..<(32 * 1024)].allSatisfy { $0 == 0 })
        #expect(read[(32 * 1024)...].allSatisfy { $0 == 0xAB })
    }

    @Test func readFileIsNilWhenAbsentOrOverTheLimit() throws {
        let scratch = try Scratch()
        #expect(try FileIO.readFile(scratch.path + "/absent", limit: 10) == nil)
        try FileIO.writeAtomically([UInt8](repeating: 1, count: 11), to: scratch.path + "/big", durable: false)
        #expect(try FileIO.readFile(scratch.path + "/big", limit: 10) == nil)
        #expect(try FileIO.readFile(scratch.path + "/big", limit: 11)?.count == 11)
    }

    @Test func retryingEINTRTurnsMinusOneIntoAnIOErrorWithErrno() {
        let error = #expect(throws: IOError.self) {
            try FileIO.retryingEINTR("open", path: "/nonexistent/imgfs", offset: 7) { open("/nonexistent/imgfs", O_RDONLY) }
        }
        #expect(error == IOError(operation: "open", path: "/nonexistent/imgfs", offset: 7, errno: ENOENT))
    }
}
