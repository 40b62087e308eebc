import Glibc
import SystemIO

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

    /// Writes `bytes` at `offset`, skipping all-zero 4 KiB pieces so that holes stay holes.
    func writeSkippingZeros(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(PullError) {
        do { try FileIO.writeSkippingZeros(fd, bytes, at: offset, path: path) } catch { throw PullError(error) }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: UInt64) throws(PullError) {
        do { try FileIO.writeFully(fd, bytes, at: offset, path: path) } catch { throw PullError(error) }
    }

    /// Makes what was written durable before the journal says so.
    func sync() throws(PullError) {
        guard fdatasync(fd) == 0 else { throw .io(path: path, operation: "fdatasync", offset: nil, errno: errno) }
    }

    /// Reads exactly `buffer.count` bytes (for frames a previous run placed; not used on the hot path).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(PullError) {
        let n: Int
        do { n = try FileIO.readFully(fd, into: buffer, at: offset, path: path) } catch { throw PullError(error) }
        if n < buffer.count { throw .io(path: path, operation: "read (short file)", offset: offset + UInt64(n), errno: EIO) }
    }
}
