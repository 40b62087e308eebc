import Glibc
import Synchronization
import SystemIO

/// The persistent bitmap of a copy-on-write layer: which 4 KiB blocks of the disk have been
/// written (and so live in the layer's data file, not in the image).
///
/// File layout (`blocks.bitmap`, little-endian): magic `IMGFSCOW` (8 bytes), version u32 = 1,
/// block size u32, disk size u64, zeros up to byte 4096, then one bit per block (block *b* is
/// bit `b % 8` of byte `4096 + b / 8`).
///
/// In memory the bits are set as soon as a block's data has been written to the data file (so
/// reads see it); on disk only by `persist`, which the owner calls after `fdatasync` of the
/// data file, so that a bit on disk always means durable data.
final class WrittenBlockMap: Sendable {
    static let magic = Array("IMGFSCOW".utf8)
    static let version: UInt32 = 1
    static let headerSize: UInt64 = 4096
    /// Bitmap bytes written back per dirty page: 4096 bytes = 32768 blocks = 128 MiB of disk.
    static let pageBytes = 4096

    let path: String
    let blockCount: Int
    private let fd: Int32
    private struct State {
        var words: [UInt64]
        /// Bitmap pages changed in memory since the last `persist`.
        var dirtyPages: Set<Int>
    }
    private let state: Mutex<State>

    /// Opens the bitmap at `path`, creating it for a new layer; an existing one must describe
    /// the same disk.
    init(path: String, diskSize: UInt64, blockSize: Int) throws(MountError) {
        let blockCount = Int((diskSize + UInt64(blockSize) - 1) / UInt64(blockSize))
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw MountError.io(operation: "open", path: path, errno: errno) }
        var words = [UInt64](repeating: 0, count: (blockCount + 63) / 64)
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let code = errno
            close(fd)
            throw MountError.io(operation: "fstat", path: path, errno: code)
        }
        do throws(MountError) {
            if st.st_size == 0 {
                var header = [UInt8](repeating: 0, count: Int(Self.headerSize))
                header.replaceSubrange(0..<8, with: Self.magic)
                put32(&header, 8, Self.version)
                put32(&header, 12, UInt32(blockSize))
                put64(&header, 16, diskSize)
                try header.withUnsafeBytes { b in Result { () throws(MountError) in try writeAll(fd, b, at: 0, path: path) } }.get()
                // An all-zero bitmap (no block written) makes the file the right size without data.
                guard ftruncate(fd, off_t(Self.headerSize) + off_t(words.count * 8)) == 0 else {
                    throw MountError.io(operation: "ftruncate", path: path, errno: errno)
                }
                guard fsync(fd) == 0 else { throw MountError.io(operation: "fsync", path: path, errno: errno) }
            } else {
                var header = [UInt8](repeating: 0, count: 24)
                try header.withUnsafeMutableBytes { b in Result { () throws(MountError) in try readAll(fd, b, at: 0, path: path) } }.get()
                guard Array(header[0..<8]) == Self.magic, get32(header, 8) == Self.version else {
                    throw MountError.invalidArgument("\(path) is not an imgfs copy-on-write bitmap (version 1)")
                }
                guard get32(header, 12) == UInt32(blockSize), get64(header, 16) == diskSize else {
                    throw MountError.invalidArgument("\(path) belongs to a disk of \(get64(header, 16)) bytes with \(get32(header, 12))-byte blocks, not this image's \(diskSize) bytes; use another --writable-dir")
                }
                try words.withUnsafeMutableBytes { b in Result { () throws(MountError) in try readAll(fd, b, at: Self.headerSize, path: path) } }.get()
                // Bits past the last block are never set by this code; clear them in case.
                if blockCount % 64 != 0, let last = words.indices.last {
                    words[last] &= (UInt64(1) << UInt64(blockCount % 64)) - 1
                }
                for i in words.indices { words[i] = UInt64(littleEndian: words[i]) }
            }
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.path = path
        self.blockCount = blockCount
        self.state = Mutex(State(words: words, dirtyPages: []))
    }

    deinit { close(fd) }

    func contains(_ block: Int) -> Bool {
        state.withLock { $0.words[block / 64] & (UInt64(1) << UInt64(block % 64)) != 0 }
    }

    /// The written flags of `blocks`, read under one lock acquisition.
    func flags(_ blocks: Range<Int>) -> [Bool] {
        state.withLock { s in blocks.map { s.words[$0 / 64] & (UInt64(1) << UInt64($0 % 64)) != 0 } }
    }

    func insert(_ blocks: Range<Int>) {
        guard !blocks.isEmpty else { return }
        state.withLock { s in
            for block in blocks {
                s.words[block / 64] |= UInt64(1) << UInt64(block % 64)
            }
            for page in (blocks.lowerBound / 8 / Self.pageBytes)...((blocks.upperBound - 1) / 8 / Self.pageBytes) {
                s.dirtyPages.insert(page)
            }
        }
    }

    var count: Int { state.withLock { $0.words.reduce(0) { $0 + $1.nonzeroBitCount } } }

    /// The first written block at or after `block`, or nil.
    func firstSet(from block: Int) -> Int? {
        guard block < blockCount else { return nil }
        return state.withLock { s in
            var word = block / 64
            var bits = s.words[word] & (~UInt64(0) << UInt64(block % 64))
            while true {
                if bits != 0 { return word * 64 + bits.trailingZeroBitCount }
                word += 1
                guard word < s.words.count else { return nil }
                bits = s.words[word]
            }
        }
    }

    /// The first unwritten block at or after `block` (`blockCount` if none).
    func firstClear(from block: Int) -> Int {
        guard block < blockCount else { return blockCount }
        return state.withLock { s in
            var word = block / 64
            var bits = ~s.words[word] & (~UInt64(0) << UInt64(block % 64))
            while true {
                if bits != 0 { return min(blockCount, word * 64 + bits.trailingZeroBitCount) }
                word += 1
                guard word < s.words.count else { return blockCount }
                bits = ~s.words[word]
            }
        }
    }

    /// A copy of the in-memory bits and the pages to write back; taken before the data file is
    /// synced, so that every bit in it belongs to data that sync makes durable.
    func snapshotForPersist() -> (words: [UInt64], pages: [Int]) {
        state.withLock { s in
            defer { s.dirtyPages.removeAll() }
            return (s.words, s.dirtyPages.sorted())
        }
    }

    /// Writes the snapshot's dirty pages and syncs the bitmap file. Pages that fail are marked
    /// dirty again, so a later flush retries them.
    func persist(_ snapshot: (words: [UInt64], pages: [Int])) throws(MountError) {
        guard !snapshot.pages.isEmpty else { return }
        let bytes = snapshot.words.flatMap { word in (0..<8).map { UInt8(truncatingIfNeeded: word >> UInt64(8 * $0)) } }
        do throws(MountError) {
            for page in snapshot.pages {
                let start = page * Self.pageBytes
                let end = min(bytes.count, start + Self.pageBytes)
                guard start < end else { continue }
                try bytes.withUnsafeBytes { b in
                    Result { () throws(MountError) in
                        try writeAll(fd, UnsafeRawBufferPointer(rebasing: b[start..<end]), at: Self.headerSize + UInt64(start), path: path)
                    }
                }.get()
            }
            guard fdatasync(fd) == 0 else { throw MountError.io(operation: "fdatasync", path: path, errno: errno) }
        } catch {
            markDirty(snapshot.pages)
            throw error
        }
    }

    func markDirty(_ pages: [Int]) {
        state.withLock { s in s.dirtyPages.formUnion(pages) }
    }

    /// Every written block, as sorted disjoint ranges (for push and status).
    func writtenRuns() -> [Range<Int>] {
        var runs: [Range<Int>] = []
        var block = 0
        while let start = firstSet(from: block) {
            let end = firstClear(from: start)
            runs.append(start..<end)
            block = end
        }
        return runs
    }
}

// MARK: - Little helpers shared by the copy-on-write files

func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: UInt64, path: String) throws(MountError) {
    do { try FileIO.writeFully(fd, buffer, at: offset, path: path, operation: "pwrite") } catch {
        throw MountError.io(operation: error.operation, path: path, errno: error.errno)
    }
}

/// Reads exactly `buffer.count` bytes; bytes past the end of the file read as zeros (sparse).
func readAll(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String) throws(MountError) {
    let done: Int
    do { done = try FileIO.readFully(fd, into: buffer, at: offset, path: path) } catch {
        throw MountError.io(operation: "pread", path: path, errno: error.errno)
    }
    UnsafeMutableRawBufferPointer(rebasing: buffer[done...]).initializeMemory(as: UInt8.self, repeating: 0)
}

private func put32(_ b: inout [UInt8], _ at: Int, _ v: UInt32) { for i in 0..<4 { b[at + i] = UInt8(truncatingIfNeeded: v >> UInt32(8 * i)) } }
private func put64(_ b: inout [UInt8], _ at: Int, _ v: UInt64) { for i in 0..<8 { b[at + i] = UInt8(truncatingIfNeeded: v >> UInt64(8 * i)) } }
private func get32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(UInt32(0)) { $0 | UInt32(b[at + $1]) << UInt32(8 * $1) } }
private func get64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(UInt64(0)) { $0 | UInt64(b[at + $1]) << UInt64(8 * $1) } }
