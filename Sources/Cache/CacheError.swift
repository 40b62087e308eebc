import Glibc
import SystemIO
import Verity

/// A cache operation failed: which syscall, on which file, which frame, and why.
public enum CacheError: Error, Equatable, CustomStringConvertible {
    /// A syscall failed; `errno` is the value it left behind.
    case system(operation: String, path: String, errno: Int32)
    /// A file of the whole-layer store (`SegmentStore`) failed, for the named layer.
    case layer(String, IOError)
    /// A tag or repository name that cannot be a path under the metadata store.
    case badReferenceName(reference: String, part: String)
    /// `read` was asked for a frame whose bit is clear: a bug in the caller, who must check `contains` first.
    case frameNotPresent(frame: Int, path: String)
    /// A cached frame's bytes do not hash to its digest; it has been dropped from the cache.
    case corruptFrame(frame: Int, path: String, expected: Digest, actual: Digest)
    /// A frame number outside `0..<frameCount`.
    case frameOutOfRange(frame: Int, frameCount: Int)
    /// A verified frame whose length does not match the entry's geometry (a frame of another image).
    case frameLengthMismatch(frame: Int, expected: Int, actual: Int)
    /// An offset inside a frame past the frame's end.
    case offsetOutOfRange(frame: Int, offset: Int, frameLength: Int)
    /// The caller's frame digest list does not have one digest per frame.
    case digestCountMismatch(expected: Int, actual: Int)
    /// The entry is invalid but another process has it open, so it cannot be reset now.
    case entryInUse(path: String, reason: String)
    /// The cache entry was used after `close()`.
    case closed(path: String)
    /// The cache's file system cannot hold a file the size of the disk (EFBIG: ext4 stops
    /// just short of 16 TiB with 4 KiB blocks).
    case fileTooLargeForFileSystem(path: String, size: UInt64)

    /// A failed SystemIO call, keeping its errno.
    public init(_ error: IOError) {
        self = .system(operation: error.operation, path: error.path, errno: error.errno)
    }

    public var description: String {
        switch self {
        case .system(let operation, let path, let errno):
            "\(operation) \(path): \(String(cString: strerror(errno))) (errno \(errno))"
        case .layer(let layer, let error): "caching \(layer): \(error)"
        case .badReferenceName(let reference, let part): "cannot record reference \(reference) in the cache: bad name '\(part)'"
        case .frameNotPresent(let frame, let path):
            "frame \(frame) is not in the cache \(path)"
        case .corruptFrame(let frame, let path, let expected, let actual):
            "frame \(frame) in the cache \(path) hashes to \(actual), not \(expected); it was dropped from the cache"
        case .frameOutOfRange(let frame, let frameCount):
            "frame \(frame) is out of range: the disk has \(frameCount) frames"
        case .frameLengthMismatch(let frame, let expected, let actual):
            "frame \(frame) has \(actual) bytes, the disk geometry needs \(expected)"
        case .offsetOutOfRange(let frame, let offset, let frameLength):
            "offset \(offset) is past the end of frame \(frame) (\(frameLength) bytes)"
        case .digestCountMismatch(let expected, let actual):
            "\(actual) frame digests given, the disk geometry has \(expected) frames"
        case .entryInUse(let path, let reason):
            "cache entry \(path) is invalid (\(reason)) and in use by another process; unmount it and retry"
        case .closed(let path):
            "cache entry \(path) was used after close"
        case .fileTooLargeForFileSystem(let path, let size):
            "the file system of the cache cannot hold \(path) at the disk's size of \(size) bytes (\(size >> 30) GiB; " +
            "ext4 files end below 16 TiB with 4 KiB blocks): put --cache-dir on a file system with larger files (XFS, btrfs)"
        }
    }
}
