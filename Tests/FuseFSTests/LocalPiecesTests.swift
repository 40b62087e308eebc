import Foundation
import Synchronization
import Testing
@testable import FuseFS

/// A backend that answers every read of disk.img with `localPieces`: the islands of
/// `InMemoryBackend.disk` from a local file that holds them at the same offsets, and zeros
/// between them. The local file has 0xEE where disk.img has holes, so a zero a reader sees came
/// from FuseFS's zeros, never from that file.
final class PiecesBackend: FileSystemBackend {
    let inner = InMemoryBackend()
    let descriptor: Int32
    let path: String
    let piecesCalls = Atomic<Int>(0)

    init() throws {
        var template = Array("/tmp/fusefs-pieces-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw POSIXFailure(call: "mkstemp", code: errno) }
        descriptor = fd
        path = String(cString: template)
        var bytes = [UInt8](repeating: 0xEE, count: Int(InMemoryBackend.diskSize))
        for island in InMemoryBackend.islands {
            bytes.replaceSubrange(Int(island.lowerBound)..<Int(island.upperBound), with: InMemoryBackend.disk[Int(island.lowerBound)..<Int(island.upperBound)])
        }
        let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        guard written == bytes.count else { throw POSIXFailure(call: "pwrite", code: errno) }
    }

    deinit {
        close(descriptor)
        unlink(path)
    }

    func entries() -> [FileEntry] { inner.entries() }

    func read(file: Int, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FileSystemError) -> Int {
        try inner.read(file: file, offset: offset, into: buffer)
    }

    func seek(file: Int, offset: UInt64, whence: SeekWhence) throws(FileSystemError) -> UInt64? {
        try inner.seek(file: file, offset: offset, whence: whence)
    }

    func localPieces(file: Int, offset: UInt64, count: Int) -> [LocalPiece]? {
        guard file == InMemoryBackend.File.disk.rawValue else { return nil }
        piecesCalls.add(1, ordering: .relaxed)
        var pieces: [LocalPiece] = []
        var position = offset
        let end = offset + UInt64(count)
        while position < end {
            if let island = InMemoryBackend.islands.first(where: { $0.contains(position) }) {
                let runEnd = min(end, island.upperBound)
                pieces.append(.file(LocalExtent(descriptor: descriptor, offset: position), count: Int(runEnd - position)))
                position = runEnd
            } else {
                let runEnd = min(end, InMemoryBackend.islands.first(where: { $0.lowerBound > position })?.lowerBound ?? end)
                pieces.append(.zeros(count: Int(runEnd - position)))
                position = runEnd
            }
        }
        return pieces
    }
}

@Suite("Replies of local pieces and zeros over a real FUSE mount", .enabled(if: MountHarness.enabled, "needs /dev/fuse (set CI=true to fail instead of skip)"))
struct LocalPiecesTests {
    /// The kernel was given the `max_read` FuseFS planned for (`SplicePipe`), and reads of that
    /// size come back whole and right.
    @Test func theKernelReadsWhatAPipeCanSplice() throws {
        let backend = try PiecesBackend()
        let options = FuseMountOptions()
        try MountHarness.withMount(backend, options: options) { running in
            let mounts = try String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)
            let line = try #require(mounts.split(separator: "\n").first { $0.split(separator: " ").dropFirst().first.map(String.init) == running.directory })
            #expect(line.contains("max_read=\(options.kernelMaxRead)"))
            let fd = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            defer { close(fd) }
            let count = options.kernelMaxRead * 3
            let offset: UInt64 = (1 << 20) - 4096
            let bytes = try POSIX.pread(fd, offset: offset, count: count)
            #expect(bytes == Array(InMemoryBackend.disk[Int(offset)..<Int(offset) + count]))
        }
    }

    /// Spliced (the default: zeros from the memfd) and copied through a buffer (no splicing, as
    /// where memfd is missing): the same bytes, and `read` is never asked.
    @Test(arguments: [true, false])
    func holesAndDataComeFromPiecesWithTheRightBytes(splice: Bool) throws {
        let backend = try PiecesBackend()
        var options = FuseMountOptions()
        options.spliceReplies = splice
        try MountHarness.withMount(backend, options: options) { running in
            let fd = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            defer { close(fd) }
            // All hole (between the islands at 1 MiB and 10 MiB).
            let holeOffset: UInt64 = 3 << 20
            let hole = try POSIX.pread(fd, offset: holeOffset, count: 4 << 20)
            #expect(hole == [UInt8](repeating: 0, count: 4 << 20))
            // Hole, data, hole: across the island at 10..<12 MiB.
            let spanOffset: UInt64 = (9 << 20) + 12345
            let span = try POSIX.pread(fd, offset: spanOffset, count: 4 << 20)
            #expect(span == InMemoryBackend.expected(.disk, offset: spanOffset, count: 4 << 20))
            // The whole file, and small reads that are copied rather than spliced.
            let whole = try POSIX.pread(fd, offset: 0, count: Int(InMemoryBackend.diskSize))
            #expect(whole == InMemoryBackend.disk)
            #expect(backend.inner.readCalls.load(ordering: .relaxed) == 0)
            #expect(backend.piecesCalls.load(ordering: .relaxed) > 0)
        }
        // A fresh mount (empty page cache) for reads that are not page-aligned at the start.
        try MountHarness.withMount(backend, options: options) { running in
            let fd = try POSIX.open(running.directory + "/disk.img", O_RDONLY)
            defer { close(fd) }
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<50 {
                let offset = UInt64.random(in: 0..<InMemoryBackend.diskSize, using: &generator)
                let count = Int.random(in: 1...(3 << 20), using: &generator)
                #expect(try POSIX.pread(fd, offset: offset, count: count) == InMemoryBackend.expected(.disk, offset: offset, count: count))
            }
        }
    }

    @Test func zeroPagesReadAsZerosAndRefuseToBeMissized() throws {
        let zeros = try #require(ZeroPages(size: 1 << 20))
        var bytes = [UInt8](repeating: 0xEE, count: 1 << 20)
        let n = bytes.withUnsafeMutableBytes { pread(zeros.descriptor, $0.baseAddress, $0.count, 0) }
        #expect(n == 1 << 20)
        #expect(bytes == [UInt8](repeating: 0, count: 1 << 20))
        #expect(ZeroPages(size: -1) == nil)
    }
}

@Suite("What libfuse's splice pipe carries")
struct SplicePipeTests {
    let page = SplicePipe.page

    /// A process that cannot grow pipes past the default 1 MiB limit asks the kernel for reads
    /// that leave room for the header and libfuse's slack, so that they are spliced.
    @Test func readsShrinkToFitAPipeThatCannotGrow() {
        let read = SplicePipe.largestSplicedRead(upTo: 1 << 20, capacity: 1 << 20)
        #expect(read < 1 << 20)
        #expect(read % page == 0)
        #expect(SplicePipe.fits(count: read, buffers: SplicePipe.plannedBuffers, capacity: 1 << 20))
        #expect(!SplicePipe.fits(count: read + page, buffers: SplicePipe.plannedBuffers, capacity: 1 << 20))
        #expect(!SplicePipe.fits(count: 1 << 20, buffers: 1, capacity: 1 << 20))
    }

    @Test func readsStayWholeWhereThePipeCanHoldThem() {
        #expect(SplicePipe.largestSplicedRead(upTo: 1 << 20, capacity: 2 << 20) == 1 << 20)
        #expect(SplicePipe.fits(count: 1 << 20, buffers: 4, capacity: 2 << 20))
    }

    /// What this process found: either pipes grow (root with CAP_SYS_RESOURCE), or the kernel is
    /// given reads no larger than a pipe of `pipe-max-size` splices.
    @Test func theProbedCapacityBoundsTheKernelsReads() {
        let options = FuseMountOptions()
        #expect(SplicePipe.capacity >= 64 << 10)
        #expect(SplicePipe.fits(count: options.kernelMaxRead, buffers: SplicePipe.plannedBuffers))
        var unspliced = options
        unspliced.spliceReplies = false
        #expect(unspliced.kernelMaxRead == unspliced.maxRead)
    }
}
