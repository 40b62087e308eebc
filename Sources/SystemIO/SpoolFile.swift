import Glibc
import Synchronization

/// A blob on its way to a registry: appended once by its producer, then read (repeatably, with
/// pread, since an upload may be retried) by an uploader. An unlinked temporary file, so memory
/// stays bounded by the number of blobs in flight, not their size, and a crash leaves nothing.
public final class SpoolFile: Sendable {
    private let fd: Int32
    /// Appended to by the producer only; atomic so the uploader needs no ordering of its own.
    private let appended = Atomic<Int64>(0)
    public var size: Int64 { appended.load(ordering: .acquiring) }
    public let directory: String

    public init(directory: String, prefix: String = "imgfs-spool") throws(IOError) {
        var template = Array((directory + "/" + prefix + "-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { $0.baseAddress.map { mkstemp($0) } ?? -1 }
        guard fd >= 0 else { throw IOError(operation: "create spool file", path: directory, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let path = template.withUnsafeBufferPointer { buffer in
            String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        unlink(path)
        self.fd = fd
        self.directory = directory
    }

    deinit { close(fd) }

    public func append(_ bytes: UnsafeRawBufferPointer) throws(IOError) {
        try FileIO.writeFully(fd, bytes, at: UInt64(size), path: directory, operation: "write spool file")
        appended.add(Int64(bytes.count), ordering: .releasing)
    }

    public func append(_ bytes: [UInt8]) throws(IOError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(IOError) in try append(raw) } }.get()
    }

    /// Reads up to `buffer.count` bytes at `offset`; 0 at the end.
    public func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(IOError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        let size = self.size
        guard offset < size else { return 0 }
        return try FileIO.retryingEINTR("read spool file", path: directory, offset: UInt64(offset)) {
            pread(fd, base, min(buffer.count, Int(size - offset)), off_t(offset))
        }
    }
}
