import Glibc
import SystemIO

/// A thin, typed wrapper over a raw file descriptor, in the style of swift-system.
///
/// Every syscall goes through SystemIO (`FileIO.retryingEINTR`: EINTR retried, EBADF and EFAULT
/// fatal; reads and writes through `FileIO.readFully`/`writeFully`), and its `IOError` becomes a
/// `CacheError` that keeps the errno.
struct FileDescriptor: Sendable {
    let rawValue: Int32
    let path: String

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(CacheError) -> FileDescriptor {
        let fd = try retryingEINTR("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(rawValue: fd, path: path)
    }

    func close() {
        // Linux releases the descriptor even when close reports EINTR; never retry it.
        _ = Glibc.close(rawValue)
    }

    /// Reads exactly `buffer.count` bytes at `offset`; bytes past end of file read as zeros.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(CacheError) {
        let done = try systemIO { () throws(IOError) in try FileIO.readFully(rawValue, into: buffer, at: offset, path: path) }
        // Short only at end of file: the rest is what a sparse file would have there.
        if done < buffer.count {
            (buffer.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
        }
    }

    func read(count: Int, at offset: UInt64) throws(CacheError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        guard count > 0 else { return bytes }
        let result = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(CacheError) in try read(into: buffer, at: offset) }
        }
        try result.get()
        return bytes
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(CacheError) {
        try systemIO { () throws(IOError) in try FileIO.writeFully(rawValue, buffer, at: offset, path: path, operation: "pwrite") }
    }

    func write(_ bytes: some Collection<UInt8>, at offset: UInt64) throws(CacheError) {
        let array = Array(bytes)
        guard !array.isEmpty else { return }
        try array.withUnsafeBytes { buffer in
            Result { () throws(CacheError) in try write(buffer, at: offset) }
        }.get()
    }

    func dataSync() throws(CacheError) {
        _ = try retryingEINTR("fdatasync", path) { fdatasync(rawValue) }
    }

    func sync() throws(CacheError) {
        _ = try retryingEINTR("fsync", path) { fsync(rawValue) }
    }

    func truncate(to size: UInt64) throws(CacheError) {
        _ = try retryingEINTR("ftruncate", path) { ftruncate(rawValue, off_t(size)) }
    }

    /// Deallocates `[offset, offset + length)`, keeping the file size: the range reads as zeros
    /// and `SEEK_HOLE` reports it.
    func punchHole(offset: UInt64, length: UInt64) throws(CacheError) {
        do { try FileIO.punchHole(rawValue, offset: offset, length: length, path: path) } catch { throw CacheError(error) }
    }

    func status() throws(CacheError) -> stat {
        var st = stat()
        _ = try retryingEINTR("fstat", path) { fstat(rawValue, &st) }
        return st
    }

    /// Blocks until the lock is granted.
    func lock(_ operation: Int32) throws(CacheError) {
        _ = try retryingEINTR("flock", path) { flock(rawValue, operation) }
    }

    /// Non-blocking: false when another open file description holds a conflicting lock.
    func tryLock(_ operation: Int32) throws(CacheError) -> Bool {
        while true {
            if flock(rawValue, operation | LOCK_NB) == 0 { return true }
            let e = errno
            switch e {
            case EINTR: continue
            case EWOULDBLOCK: return false
            default: throw CacheError(IOError(operation: "flock", path: path, errno: e))
            }
        }
    }
}

/// Runs `body` until it does not fail with EINTR; -1 with errno becomes a `CacheError`.
@inline(__always)
func retryingEINTR<T: FixedWidthInteger>(_ operation: String, _ path: String, _ body: () -> T) throws(CacheError) -> T {
    try systemIO { () throws(IOError) in try FileIO.retryingEINTR(operation, path: path, body) }
}

/// Runs a SystemIO call; its `IOError` becomes a `CacheError` that keeps the errno.
func systemIO<T>(_ body: () throws(IOError) -> T) throws(CacheError) -> T {
    do { return try body() } catch { throw CacheError(error) }
}

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// Seconds since the epoch, from the real-time clock.
func currentTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
