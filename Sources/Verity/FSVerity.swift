#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The fs-verity digest of files on disk.
public enum FSVerity {
    /// Bytes read per `pread`: large enough to amortise the syscall, small enough to keep
    /// memory flat whatever the file size.
    static let readSize = 1 << 20

    // Glibc exposes SEEK_DATA/SEEK_HOLE only under _GNU_SOURCE, which Swift's Glibc module
    // is not built with; the values are fixed ABI.
    #if os(Linux)
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4
    #else
    private static let seekData: Int32 = SEEK_DATA
    private static let seekHole: Int32 = SEEK_HOLE
    #endif

    /// The fs-verity digest of the file at `path`, as `fsverity digest` prints it.
    ///
    /// Holes are found with `SEEK_DATA`/`SEEK_HOLE` and fed as zeros without reading them,
    /// so an 8 GiB sparse disk costs only its allocated data.
    public static func digest(ofFileAt path: String) throws(VerityError) -> Digest {
        let fd = retryingEINTR { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw .open(path: path, errno: errno) }
        defer { close(fd) }

        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .stat(path: path, errno: errno) }
        let size = UInt64(info.st_size)

        let hasher = FSVerityHasher()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: readSize, alignment: 4096)
        defer { buffer.deallocate() }

        var offset: UInt64 = 0
        while offset < size {
            let dataStart = lseek(fd, off_t(offset), seekData)
            if dataStart < 0 {
                let e = errno
                // ENXIO: no data past `offset`, the rest is one hole.
                if e == ENXIO { break }
                // EINVAL: the file system cannot tell holes apart; read everything.
                if e != EINVAL { throw .seek(path: path, offset: offset, errno: e) }
                try readRange(fd, path: path, from: offset, to: size, into: buffer, hasher: hasher)
                offset = size
                break
            }
            let start = min(UInt64(dataStart), size)
            let holeStart = lseek(fd, off_t(start), seekHole)
            guard holeStart >= 0 else { throw .seek(path: path, offset: start, errno: errno) }
            let end = min(UInt64(holeStart), size)
            hasher.updateZeros(count: start - offset)
            try readRange(fd, path: path, from: start, to: end, into: buffer, hasher: hasher)
            offset = end
        }
        hasher.updateZeros(count: size - offset)
        return hasher.finalize()
    }

    private static func readRange(
        _ fd: Int32, path: String, from start: UInt64, to end: UInt64,
        into buffer: UnsafeMutableRawBufferPointer, hasher: FSVerityHasher
    ) throws(VerityError) {
        var offset = start
        while offset < end {
            let want = Int(min(UInt64(buffer.count), end - offset))
            let got = retryingEINTR { pread(fd, buffer.baseAddress, want, off_t(offset)) }
            if got < 0 { throw .read(path: path, offset: offset, errno: errno) }
            if got == 0 { throw .shortRead(path: path, offset: offset, expectedSize: end) }
            hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<got]))
            offset += UInt64(got)
        }
    }

    private static func retryingEINTR<T: FixedWidthInteger>(_ call: () -> T) -> T {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }
}
