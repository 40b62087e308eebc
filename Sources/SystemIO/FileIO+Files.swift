import Glibc

// Linux <linux/falloc.h> values; stable kernel ABI. Glibc exposes them only with _GNU_SOURCE.
private let fallocPunchHole: Int32 = 0x02
private let fallocKeepSize: Int32 = 0x01

/// glibc's `fallocate`, looked up at run time: Swift's Glibc module is built without
/// _GNU_SOURCE, which hides the declaration, and a C shim for one function is not worth a target.
private let glibcFallocate: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32)? = {
    guard let symbol = dlsym(nil, "fallocate") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32, off_t, off_t) -> Int32).self)
}()

/// Whole-file and directory operations, in the style of swift-system: every syscall goes
/// through `retryingEINTR`, and a failure is an `IOError` naming the call and the file.
extension FileIO {
    /// Runs `body` until it does not fail with EINTR; -1 with errno becomes an `IOError`.
    /// EBADF and EFAULT stop the program: a closed descriptor or a bad pointer is a bug in
    /// imgfs, not a problem with the disk.
    @inline(__always)
    public static func retryingEINTR<T: FixedWidthInteger>(_ operation: String, path: String, offset: UInt64? = nil,
                                                           _ body: () -> T) throws(IOError) -> T {
        while true {
            let result = body()
            if result != -1 { return result }
            let code = errno
            if code == EINTR { continue }
            precondition(code != EBADF && code != EFAULT, "\(operation) \(path): \(String(cString: strerror(code))): a bug in imgfs")
            throw IOError(operation: operation, path: path, offset: offset, errno: code)
        }
    }

    /// The whole file, or nil if it does not exist or is larger than `limit`.
    public static func readFile(_ path: String, limit: Int) throws(IOError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw IOError(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var st = stat()
        _ = try retryingEINTR("fstat", path: path) { fstat(fd, &st) }
        guard st.st_size <= limit else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let done = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(IOError) in try readFully(fd, into: buffer, at: 0, path: path) }
        }.get()
        return Array(bytes[0..<done])
    }

    /// `mkdir -p`: creates `path` and its missing parents with `mode`; an existing directory is fine.
    public static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(IOError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw IOError(operation: "mkdir", path: current, errno: errno)
            }
        }
    }

    /// The directory `path` is in.
    public static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// The names in a directory, without "." and ".."; an absent directory has none.
    public static func directoryEntries(_ path: String) throws(IOError) -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw IOError(operation: "opendir", path: path, errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// fsync on a directory: makes creates, renames and unlinks inside it durable.
    public static func syncDirectory(_ path: String) throws(IOError) {
        let fd = try retryingEINTR("open", path: path) { open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { close(fd) }
        _ = try retryingEINTR("fsync", path: path) { fsync(fd) }
    }

    /// Writes `bytes` to a temporary file beside `path` (unique, so concurrent writers do not
    /// share one) and renames it over `path`, so readers see the old file or the new one, never
    /// half of one. `durable` adds the fsyncs of the file and its directory that a crash needs.
    public static func writeAtomically(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644, durable: Bool) throws(IOError) {
        let temporary = path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = try retryingEINTR("create", path: temporary) { open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode) }
        do throws(IOError) {
            try Result { () throws(IOError) in
                defer { close(fd) }
                try bytes.withUnsafeBytes { raw in Result { () throws(IOError) in try writeFully(fd, raw, at: 0, path: temporary) } }.get()
                if durable { _ = try retryingEINTR("fsync", path: temporary) { fsync(fd) } }
            }.get()
            _ = try retryingEINTR("rename", path: path) { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
        if durable { try syncDirectory(parent(of: path)) }
    }

    /// Deallocates `[offset, offset + length)` of `fd`, keeping the file size: the range reads as
    /// zeros and `SEEK_HOLE` reports it. ENOSYS when the C library has no `fallocate`.
    public static func punchHole(_ fd: Int32, offset: UInt64, length: UInt64, path: String) throws(IOError) {
        guard length > 0 else { return }
        guard let fallocate = glibcFallocate else {
            throw IOError(operation: "fallocate(PUNCH_HOLE)", path: path, offset: offset, errno: ENOSYS)
        }
        _ = try retryingEINTR("fallocate(PUNCH_HOLE)", path: path, offset: offset) {
            fallocate(fd, fallocPunchHole | fallocKeepSize, off_t(offset), off_t(length))
        }
    }
}
