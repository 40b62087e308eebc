#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One regular file in the flat root directory that a ``FuseMount`` serves.
public struct FileEntry: Sendable, Equatable {
    /// The file's name in the root directory: no `/`, not `.` or `..`, at most 255 bytes.
    public var name: String
    /// The file's logical size in bytes.
    public var size: UInt64
    /// Whether writes reach the backend. Other files answer `EROFS` to any write.
    public var writable: Bool
    /// Permission bits (`0o444`, `0o644`, ...); the file-type bits are added by FuseFS.
    public var mode: UInt32
    /// Modification time, seconds since the epoch.
    public var modificationTime: Int64
    /// Immutable files never change while mounted: the kernel may keep their pages cached
    /// across opens and cache their attributes for a long time.
    public var immutable: Bool

    public init(
        name: String,
        size: UInt64,
        writable: Bool = false,
        mode: UInt32? = nil,
        modificationTime: Int64 = 0,
        immutable: Bool? = nil
    ) {
        self.name = name
        self.size = size
        self.writable = writable
        self.mode = mode ?? (writable ? 0o644 : 0o444)
        self.modificationTime = modificationTime
        self.immutable = immutable ?? !writable
    }
}

/// A run of a file's bytes that lies, verbatim, in a local file the backend keeps open while
/// mounted: FuseFS can then splice it to the kernel (page cache to `/dev/fuse`) instead of
/// copying it through a buffer.
public struct LocalExtent: Sendable, Equatable {
    /// An open descriptor, valid until the mount ends. FuseFS only reads from it (`pread`, `splice`).
    public var descriptor: Int32
    /// Where the run starts in that descriptor's file.
    public var offset: UInt64

    public init(descriptor: Int32, offset: UInt64) {
        self.descriptor = descriptor
        self.offset = offset
    }
}

/// One run of a read that FuseFS answers without the backend's `read`: bytes that lie verbatim in
/// a local file, or zeros (a hole the backend knows is all zeros), which FuseFS hands the kernel as
/// the shared zero page rather than filling and copying a buffer.
public enum LocalPiece: Sendable, Equatable {
    case file(LocalExtent, count: Int)
    case zeros(count: Int)

    public var count: Int {
        switch self {
        case .file(_, let count), .zeros(let count): count
        }
    }
}

/// Which boundary an `lseek(SEEK_DATA)` / `lseek(SEEK_HOLE)` asks for.
public enum SeekWhence: Sendable, Equatable {
    case data
    case hole
}

/// A backend's own failure, carried whole to the reply: FuseFS logs it once, with the request
/// it failed, and answers the errno ``FileSystemError/errno`` chooses from ``causeErrno``.
public protocol BackendFailure: Error, CustomStringConvertible {
    /// The errno at the root of the failure when it is one: what a local system call returned
    /// (ENOSPC from a full cache file system), or EROFS for a write to a read-only disk. nil when
    /// the cause is not an errno (a fetch, a verification, a timeout).
    var causeErrno: Int32? { get }
}

/// What a backend reports when it cannot serve a request. FuseFS turns it into an errno in
/// exactly one place (``FileSystemError/errno``) and logs it.
public enum FileSystemError: Error, Sendable {
    /// The backend failed; its error says why, and its ``BackendFailure/causeErrno`` what the
    /// kernel is told.
    case failed(any BackendFailure)
    /// FuseFS could not produce the bytes (a backend that broke its contract): `EIO`.
    case io(String)
    /// `ENOENT`.
    case notFound
    /// `EROFS`.
    case readOnly
    /// `EINVAL`, with a reason for the log.
    case invalid(String)
    /// Any other errno, with a reason for the log.
    case posix(Int32, String)
}

/// The data behind a mount. FuseFS owns the directory, inodes, attributes and permission
/// checks; the backend only moves bytes.
///
/// Every method may be called concurrently from many libfuse worker threads; none is ever
/// called on the main actor.
public protocol FileSystemBackend: Sendable {
    /// The root directory. Read once at mount to fix names and inode numbers
    /// (inode = index + 2); afterwards only the sizes of non-immutable entries may change.
    func entries() -> [FileEntry]

    /// Reads into `buffer` from `offset` of file `file` (an index into ``entries()``).
    /// Returns the number of bytes produced: `buffer.count` unless the read reaches the end
    /// of the file.
    func read(file: Int, offset: UInt64, into buffer: UnsafeMutableRawBufferPointer) throws(FileSystemError) -> Int

    /// Where all of `[offset, offset + count)` of an immutable `file` lies verbatim in a local
    /// file, or nil to have FuseFS call ``read(file:offset:into:)``. Only bytes `read` would serve
    /// may be named (for an image: verified frames). `count` never reaches past the end of the
    /// file. Called on every read of an immutable file, so it must be cheap. The default is nil.
    func localExtent(file: Int, offset: UInt64, count: Int) -> LocalExtent?

    /// All of `[offset, offset + count)` of an immutable `file` as runs of local-file bytes and
    /// zeros, in order, their counts summing to `count`; or nil to have FuseFS call
    /// ``read(file:offset:into:)``. The same rules as ``localExtent(file:offset:count:)``; a run
    /// of zeros only where `read` would return zeros. The default is that one extent, if any.
    func localPieces(file: Int, offset: UInt64, count: Int) -> [LocalPiece]?

    /// The kernel readahead (bytes) for an open of `file` now, or nil for the mount's
    /// (`FuseMountOptions.maxReadahead`). The kernel fixes a file's readahead when it is opened,
    /// so this is asked on every open. The default is nil.
    func readahead(forOpening file: Int) -> Int?

    /// `SEEK_DATA` / `SEEK_HOLE`: the first data (or hole) offset at or after `offset`,
    /// or `nil` when there is none (`ENXIO`). The end of the file counts as a hole.
    func seek(file: Int, offset: UInt64, whence: SeekWhence) throws(FileSystemError) -> UInt64?

    /// Writes `data` at `offset`. Only called for writable entries. Returns bytes written.
    func write(file: Int, offset: UInt64, data: UnsafeRawBufferPointer) throws(FileSystemError) -> Int

    /// Makes earlier writes to `file` durable (`fsync`, and `flush` on close).
    func flush(file: Int) throws(FileSystemError)

    /// Changes the size of a writable file (`truncate`, `O_TRUNC`).
    /// The default refuses with `EPERM`.
    func truncate(file: Int, size: UInt64) throws(FileSystemError)
}

extension FileSystemBackend {
    public func localExtent(file: Int, offset: UInt64, count: Int) -> LocalExtent? { nil }

    public func readahead(forOpening file: Int) -> Int? { nil }

    public func localPieces(file: Int, offset: UInt64, count: Int) -> [LocalPiece]? {
        localExtent(file: file, offset: offset, count: count).map { [.file($0, count: count)] }
    }

    public func write(file: Int, offset: UInt64, data: UnsafeRawBufferPointer) throws(FileSystemError) -> Int {
        throw .readOnly
    }

    public func flush(file: Int) throws(FileSystemError) {}

    public func truncate(file: Int, size: UInt64) throws(FileSystemError) {
        throw .posix(EPERM, "this file system does not resize files")
    }
}
