import Glibc
import SystemIO

/// The few file operations the metadata store and status files need, each retrying EINTR and
/// turning errno into a `MountError` that names the path.
enum LocalFiles {
    /// The whole file, or nil if it does not exist or is larger than `limit`.
    static func read(_ path: String, limit: Int) throws(MountError) -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw .io(operation: "open", path: path, errno: errno)
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(operation: "fstat", path: path, errno: errno) }
        guard st.st_size <= limit else { return nil }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let read = bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(IOError) in try FileIO.readFully(fd, into: buffer, at: 0, path: path) }
        }
        switch read {
        case .success(let done): return Array(bytes[0..<done])
        case .failure(let error): throw .io(operation: "read", path: path, errno: error.errno)
        }
    }

    /// Writes a temporary file beside `path` and renames it over `path`, so readers see the old
    /// file or the new one, never half of one. `durable` adds the fsyncs a crash needs.
    static func writeAtomically(_ path: String, _ bytes: [UInt8], durable: Bool) throws(MountError) {
        let temporary = path + ".tmp.\(getpid()).\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(operation: "create", path: temporary, errno: errno) }
        var failure: MountError?
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                failure = .io(operation: "write", path: temporary, errno: errno)
                break
            }
            done += n
        }
        if failure == nil, durable, fsync(fd) != 0 { failure = .io(operation: "fsync", path: temporary, errno: errno) }
        close(fd)
        if failure == nil, rename(temporary, path) != 0 { failure = .io(operation: "rename", path: path, errno: errno) }
        if let failure {
            unlink(temporary)
            throw failure
        }
        if durable { syncDirectory(of: path) }
    }

    static func syncDirectory(of path: String) {
        let directory = parent(path)
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// `mkdir -p`.
    static func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(MountError) {
        var current = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            current += "/" + component
            if mkdir(current, mode) != 0 && errno != EEXIST {
                throw .io(operation: "mkdir", path: current, errno: errno)
            }
        }
    }

    static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
}
