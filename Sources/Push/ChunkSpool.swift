import Glibc
import Verity

/// A chunk layer's compressed bytes on their way to the registry: written once by the
/// assembler, then read by an uploader. An unlinked temporary file, so memory stays bounded
/// by the number of chunks in flight, not by their size, and nothing is left behind on a crash.
final class ChunkSpool: @unchecked Sendable {
    // `size` is written only by the assembler before the spool is handed to an uploader
    // through a queue (which orders the accesses); afterwards the spool is read-only.
    private let fd: Int32
    private(set) var size: Int64 = 0
    let directory: String

    init(directory: String) throws(PushError) {
        var template = Array((directory + "/imgfs-push-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { $0.baseAddress.map { mkstemp($0) } ?? -1 }
        guard fd >= 0 else { throw .io(path: directory, operation: "create spool file", offset: nil, errno: errno) }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        let path = String(cString: template)
        unlink(path)
        self.fd = fd
        self.directory = directory
    }

    deinit { close(fd) }

    func append(_ bytes: [UInt8]) throws(PushError) {
        let failure: (offset: Int, errno: Int32)? = bytes.withUnsafeBytes { buffer in
            guard let base = buffer.baseAddress else { return nil }
            var done = 0
            while done < buffer.count {
                let n = pwrite(fd, base + done, buffer.count - done, off_t(size) + off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    return (done, errno)
                }
                done += n
            }
            return nil
        }
        if let failure {
            throw .io(path: directory, operation: "write spool file", offset: UInt64(size) + UInt64(failure.offset), errno: failure.errno)
        }
        size += Int64(bytes.count)
    }

    /// Reads up to `buffer.count` bytes at `offset`; for the uploader's body callback.
    func read(at offset: Int64, into buffer: UnsafeMutableRawBufferPointer) throws(PushError) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        while true {
            let n = pread(fd, base, min(buffer.count, Int(size - offset)), off_t(offset))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: directory, operation: "read spool file", offset: UInt64(offset), errno: errno)
            }
            return n
        }
    }
}
