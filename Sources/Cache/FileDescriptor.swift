import Glibc

// Linux <linux/falloc.h> values; stable kernel ABI. Glibc exposes them only with _GNU_SOURCE.
let fallocPunchHole: Int32 = 0x02
let fallocKeepSize: Int32 = 0x01

/// glibc's `fallocate`, looked up at run time. Swift's Glibc module is built without
/// _GNU_SOURCE, which hides the declaration, and this target has no C shim of its own;
/// `dlsym` gives the real symbol with the C calling convention.
private let glibcFallocate: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32)? = {
    guard let symbol = dlsym(nil, "fallocate") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
}()

/// A thin, typed wrapper over a raw file descriptor, in the style of swift-system.
///
/// Every syscall goes through `retryingEINTR`, which retries EINTR, turns any other errno
/// into a `CacheError` that names the file, and stops the program on EBADF and EFAULT,
/// because those mean a bug in imgfs, not a problem with the disk.
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
        var done = 0
        while done < buffer.count {
            let n = try retryingEINTR("pread", path) {
                pread(rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            if n == 0 {
                // End of file: the rest is what a sparse file would have there.
                (buffer.baseAddress! + done).initializeMemory(as: UInt8.self, repeating: 0, count: buffer.count - done)
                return
            }
            done += n
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
        var done = 0
        while done < buffer.count {
            let n = try retryingEINTR("pwrite", path) {
                pwrite(rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            }
            done += n
        }
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
        guard length > 0 else { return }
        guard let fallocate = glibcFallocate else {
            throw .system(operation: "fallocate(PUNCH_HOLE)", path: path, errno: ENOSYS)
        }
        _ = try retryingEINTR("fallocate(PUNCH_HOLE)", path) {
            fallocate(rawValue, fallocPunchHole | fallocKeepSize, off_t(offset), off_t(length))
        }
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
            default: try throwErrno("flock", path, e)
            }
        }
    }

    /// fsync on a directory: makes creates, renames and unlinks inside it durable.
    static func syncDirectory(_ path: String) throws(CacheError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { fd.close() }
        try fd.sync()
    }
}

/// Runs `body` until it does not fail with EINTR; -1 with errno becomes a `CacheError`.
@inline(__always)
func retryingEINTR<T: FixedWidthInteger>(_ operation: String, _ path: String, _ body: () -> T) throws(CacheError) -> T {
    while true {
        let result = body()
        if result != -1 { return result }
        let e = errno
        if e == EINTR { continue }
        try throwErrno(operation, path, e)
    }
}

func throwErrno(_ operation: String, _ path: String, _ e: Int32) throws(CacheError) -> Never {
    if e == EBADF || e == EFAULT {
        // A closed or foreign descriptor, or a bad pointer: the program is wrong, not the disk.
        preconditionFailure("\(operation) \(path): \(String(cString: strerror(e))): a bug in imgfs")
    }
    throw .system(operation: operation, path: path, errno: e)
}

/// `mkdir -p`: creates `path` and missing parents; an existing directory is fine.
func makeDirectories(_ path: String) throws(CacheError) {
    var prefix = path.hasPrefix("/") ? "" : "."
    for component in path.split(separator: "/") {
        prefix += "/" + component
        if mkdir(prefix, 0o755) != 0 {
            let e = errno
            if e == EEXIST { continue }
            try throwErrno("mkdir", prefix, e)
        }
    }
}

func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

/// The names in a directory, without "." and ".."; an absent directory has none.
func directoryEntries(_ path: String) throws(CacheError) -> [String] {
    guard let dir = opendir(path) else {
        let e = errno
        if e == ENOENT { return [] }
        try throwErrno("opendir", path, e)
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// Writes `bytes` to `path` through a temporary file and a rename, so readers see the old
/// or the new content, never a mix; `durable` adds the fsyncs that make it survive power loss.
func writeFileAtomically(_ path: String, _ bytes: [UInt8], durable: Bool) throws(CacheError) {
    let temporary = path + ".tmp"
    let fd = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
    do {
        try fd.write(bytes, at: 0)
        if durable { try fd.sync() }
    } catch {
        fd.close()
        throw error
    }
    fd.close()
    _ = try retryingEINTR("rename", temporary) { rename(temporary, path) }
}

/// Seconds since the epoch, from the real-time clock.
func currentTime() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
