import Glibc
import SystemIO

/// What `imgfs push SOURCE` uploads: a VM directory (`disk.img`, optional `nvram.bin` and
/// `config.json`) or a single disk image file.
public struct PushSource: Sendable {
    public var diskPath: String
    public var nvramPath: String?
    public var vmConfigPath: String?

    public init(diskPath: String, nvramPath: String? = nil, vmConfigPath: String? = nil) {
        self.diskPath = diskPath
        self.nvramPath = nvramPath
        self.vmConfigPath = vmConfigPath
    }

    /// Resolves a path the user typed. A directory must hold `disk.img`.
    public static func resolve(_ path: String) throws(PushError) -> PushSource {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT { throw .sourceMissing(path: path) }
            throw .io(path: path, operation: "stat", offset: nil, errno: errno)
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            let disk = path + "/disk.img"
            guard access(disk, F_OK) == 0 else {
                throw .sourceNotUsable(path: path, reason: "directory has no disk.img (a VM directory holds disk.img, and optionally nvram.bin and config.json)")
            }
            func optional(_ name: String) -> String? {
                let file = path + "/" + name
                return access(file, F_OK) == 0 ? file : nil
            }
            return PushSource(diskPath: disk, nvramPath: optional("nvram.bin"), vmConfigPath: optional("config.json"))
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw .sourceNotUsable(path: path, reason: "not a regular file or VM directory")
        }
        return PushSource(diskPath: path)
    }
}

/// Where the push pipeline reads a disk from: a local file (`SourceFile`) or a stream decoded
/// from another image (`imgfs convert`).
///
/// The pipeline calls `dataExtents()` once, then `read(into:at:)` from one thread with offsets
/// that never decrease, only for frames that overlap an extent (bytes outside the extents are
/// zeros), then `finish()` before it publishes anything: a streaming source throws there if
/// any byte it delivered failed verification afterwards. A source that `canReadAgain` may also
/// be read, from a second thread, at offsets it has already passed (a push over a base image
/// reads the frames it deferred again).
public protocol DiskSource: Sendable {
    var size: UInt64 { get }
    var canReadAgain: Bool { get }
    func dataExtents() throws(PushError) -> [Range<UInt64>]
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(PushError)
    func finish() throws(PushError)
}

extension DiskSource {
    public var canReadAgain: Bool { false }
}

/// A read-only source file with sparse-aware reads. Safe to read from several threads (pread).
final class SourceFile: DiskSource {
    let path: String
    let size: UInt64
    var canReadAgain: Bool { true }
    private let fd: Int32

    // Glibc exports these only under _GNU_SOURCE; the values are Linux ABI.
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    init(path: String) throws(PushError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { throw .sourceMissing(path: path) }
            throw .io(path: path, operation: "open", offset: nil, errno: errno)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let code = errno
            close(fd)
            throw .io(path: path, operation: "stat", offset: nil, errno: code)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw .sourceNotUsable(path: path, reason: "not a regular file")
        }
        self.fd = fd
        self.path = path
        self.size = UInt64(info.st_size)
    }

    deinit { close(fd) }

    /// The file's data extents, from SEEK_DATA/SEEK_HOLE. A filesystem without that support
    /// reports the whole file as data, which is still correct (zero frames are then found by scanning).
    func dataExtents() throws(PushError) -> [Range<UInt64>] {
        var extents = [Range<UInt64>]()
        var position: off_t = 0
        let end = off_t(size)
        while position < end {
            let dataStart = lseek(fd, position, Self.seekData)
            if dataStart < 0 {
                if errno == ENXIO { break }
                if errno == EINVAL { return size > 0 ? [0..<size] : [] }
                throw .io(path: path, operation: "lseek(SEEK_DATA)", offset: UInt64(position), errno: errno)
            }
            var holeStart = lseek(fd, dataStart, Self.seekHole)
            if holeStart < 0 { holeStart = end }
            extents.append(UInt64(dataStart)..<UInt64(min(holeStart, end)))
            position = holeStart
        }
        return extents
    }

    /// Reads exactly `buffer.count` bytes at `offset` (the caller keeps reads inside the file).
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(PushError) {
        let n: Int
        do { n = try FileIO.readFully(fd, into: buffer, at: offset, path: path) } catch { throw PushError(error) }
        if n < buffer.count {
            throw .sourceNotUsable(path: path, reason: "file shrank while being read (end of file at offset \(offset + UInt64(n)))")
        }
    }

    func finish() throws(PushError) {}

    /// The whole file, for the small nvram and config layers.
    static func readAll(_ path: String, limit: Int64) throws(PushError) -> [UInt8] {
        let file = try SourceFile(path: path)
        guard file.size <= UInt64(limit) else {
            throw .sourceNotUsable(path: path, reason: "\(file.size) bytes is larger than the \(limit)-byte limit for this file")
        }
        var bytes = [UInt8](repeating: 0, count: Int(file.size))
        try bytes.withMutableBytes { (buffer) throws(PushError) in try file.read(into: buffer, at: 0) }
        return bytes
    }
}

extension Array where Element == Range<UInt64> {
    /// Whether any extent overlaps `range`. Extents are sorted and disjoint; `hint` walks forward
    /// with sequential callers so the whole scan stays linear.
    func overlaps(_ range: Range<UInt64>, hint: inout Int) -> Bool {
        while hint < count && self[hint].upperBound <= range.lowerBound { hint += 1 }
        return hint < count && self[hint].lowerBound < range.upperBound
    }
}
