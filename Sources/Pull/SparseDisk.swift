import Glibc
import SystemIO

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
        do { return try FileIO.punchHole(fd, offset: range.lowerBound, length: UInt64(range.count), path: path) } catch {
            guard error.errno == EOPNOTSUPP || error.errno == ENOSYS else { throw PullError(error) }
        }
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
