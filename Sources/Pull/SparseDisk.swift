import Glibc

/// glibc's `fallocate`, looked up at run time: Swift's Glibc module is built without
/// _GNU_SOURCE, which hides the declaration (the Cache module does the same).
private let glibcFallocate: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32)? = {
    guard let symbol = dlsym(nil, "fallocate") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
}()

/// The `disk.img.partial` a pull writes into: created at its final size as one hole, written
/// with pwrite from several threads, all-zero blocks never written so holes stay holes.
final class SparseDisk: Sendable {
    let path: String
    let size: UInt64
    private let fd: Int32
    static let blockSize = 4096

    init(path: String, size: UInt64, fresh: Bool) throws(PullError) {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0o644)
        guard fd >= 0 else { throw .io(path: path, operation: "open", offset: nil, errno: errno) }
        guard ftruncate(fd, off_t(size)) == 0 else {
            let code = errno
            close(fd)
            throw .io(path: path, operation: "truncate to \(size) bytes", offset: nil, errno: code)
        }
        self.fd = fd
        self.path = path
        self.size = size
    }

    deinit { close(fd) }

    /// Makes `range` a hole again, so a region a previous run wrote only partly (or wrongly)
    /// reads as zeros before it is rewritten. Falls back to writing zeros where punching is not
    /// supported.
    func clear(_ range: Range<UInt64>) throws(PullError) {
        guard !range.isEmpty else { return }
        let punchHole: Int32 = 0x02, keepSize: Int32 = 0x01
        if let fallocate = glibcFallocate {
            if fallocate(fd, punchHole | keepSize, off_t(range.lowerBound), off_t(range.count)) == 0 { return }
        } else {
            errno = EOPNOTSUPP
        }
        guard errno == EOPNOTSUPP else { throw .io(path: path, operation: "punch hole", offset: range.lowerBound, errno: errno) }
        let zeros = [UInt8](repeating: 0, count: 1 << 20)
        var offset = range.lowerBound
        while offset < range.upperBound {
            let n = Int(min(UInt64(zeros.count), range.upperBound - offset))
            try zeros.withRawBytes { (raw) throws(PullError) in try writeAll(UnsafeRawBufferPointer(rebasing: raw[0..<n]), at: offset) }
            offset += UInt64(n)
        }
    }

    /// Writes `bytes` at `offset`, skipping every all-zero piece between 4 KiB boundaries of the
    /// disk: the file started as a hole, so skipped zeros read back as zeros and allocate nothing.
    func writeSkippingZeros(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(PullError) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        var position = 0
        var runStart: Int? = nil
        while position < bytes.count {
            let absolute = offset + UInt64(position)
            let next = min(bytes.count, position + Self.blockSize - Int(absolute % UInt64(Self.blockSize)))
            let zero = Self.isZero(UnsafeRawBufferPointer(start: base + position, count: next - position))
            if zero, let start = runStart {
                try writeAll(UnsafeRawBufferPointer(start: base + start, count: position - start), at: offset + UInt64(start))
                runStart = nil
            } else if !zero, runStart == nil {
                runStart = position
            }
            position = next
        }
        if let start = runStart {
            try writeAll(UnsafeRawBufferPointer(start: base + start, count: bytes.count - start), at: offset + UInt64(start))
        }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(PullError) {
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write", offset: offset + UInt64(done), errno: errno)
            }
            done += n
        }
    }

    /// Makes what was written durable before the journal says so.
    func sync() throws(PullError) {
        guard fdatasync(fd) == 0 else { throw .io(path: path, operation: "fdatasync", offset: nil, errno: errno) }
    }

    /// Reads exactly `buffer.count` bytes (for frames a previous run placed; not used on the hot path).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(PullError) {
        guard let base = buffer.baseAddress else { return }
        var done = 0
        while done < buffer.count {
            let n = pread(fd, base + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read", offset: offset + UInt64(done), errno: errno)
            }
            if n == 0 { throw .io(path: path, operation: "read (short file)", offset: offset + UInt64(done), errno: EIO) }
            done += n
        }
    }

    static func isZero(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard let base = bytes.baseAddress else { return true }
        let words = bytes.count / 8
        var accumulator: UInt64 = 0
        var i = 0
        while i < words {
            accumulator |= base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)
            i += 1
            if i & 63 == 0 && accumulator != 0 { return false }
        }
        if accumulator != 0 { return false }
        for j in (words * 8)..<bytes.count where bytes[j] != 0 { return false }
        return true
    }
}
