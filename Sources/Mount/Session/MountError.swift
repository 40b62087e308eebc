import Cache
import Codec
import ImageLayouts
import FuseFS
import Glibc
import SystemIO
import ImgfsFormat
import Verity

/// Why a mount, or one read of a mounted disk, failed: which image, blob, frame or file, and why.
/// The command line renders it once (`description`); a failed FUSE request carries it whole to
/// FuseFS's reply, which logs it once and answers the errno it picks from `causeErrno`.
public enum MountError: Error, CustomStringConvertible {
    /// The registry answered or could not be reached (`SourceError` says which).
    case source(operation: String, SourceError)
    /// The registry is unreachable and nothing usable is cached for `reference`.
    case offline(reference: String, cause: SourceError)
    /// A write to a read-only disk.
    case readOnly
    /// The manifest or index is not a usable imgfs image.
    case format(FormatError)
    /// A manifest's bytes do not hash to the digest it was asked for.
    case manifestDigestMismatch(expected: Digest, actual: Digest)
    /// The manifest or image index does not lead to an image manifest (bad JSON, no entry for the platform).
    case manifest(ManifestError)
    /// The local cache failed.
    case cache(CacheError)
    /// The local metadata store failed.
    case io(operation: String, path: String, errno: Int32)
    /// An image of another format (lume, tart), served layer by layer, could not be read.
    case foreign(ForeignImageError)
    /// A frame's member could not be decompressed to its exact length.
    case corruptFrame(blob: Digest, frame: Int, reason: String)
    /// A frame's bytes did not match the index (after `attempts` tries).
    case verification(blob: Digest, frame: Int, expected: Digest, actual: Digest?, attempts: Int)
    /// A range of a layer could not be fetched.
    case fetch(blob: Digest, frame: Int, range: Range<Int64>, SourceError)
    /// A read gave up waiting for a frame that another reader is fetching.
    case timedOut(frame: Int, seconds: Double)
    /// The disk is shutting down.
    case stopped
    /// Background work left a frame to the other mount of the image on this host that is
    /// fetching it (a reader that joined that work claims the frame itself); never reaches a reader.
    case claimedByAnotherMount(frame: Int)
    /// A bad command-line value (mountpoint, cache directory, size).
    case invalidArgument(String)

    public var description: String {
        switch self {
        case .readOnly: "the disk is read-only (mount with --writable for a copy-on-write disk)"
        case .source(let operation, let error): "\(operation): \(error)"
        case .offline(let reference, let cause):
            "\(reference): the registry is unreachable (\(cause)) and the image is not in the local cache"
        case .format(let error): "\(error)"
        case .manifestDigestMismatch(let expected, let actual):
            "manifest digest mismatch: asked for \(expected), the bytes received hash to \(actual)"
        case .manifest(let error): "\(error)"
        case .cache(let error): "cache: \(error)"
        case .io(let operation, let path, let code): "\(operation) \(path): \(String(cString: strerror(code)))"
        case .foreign(let error): "\(error)"
        case .corruptFrame(let blob, let frame, let reason): "frame \(frame) of blob \(blob) is corrupt: \(reason)"
        case .verification(let blob, let frame, let expected, let actual, let attempts):
            "frame \(frame) of blob \(blob) failed verification \(attempts) time(s): expected \(expected), got \(actual.map { "\($0)" } ?? "bytes of the wrong length")"
        case .fetch(let blob, let frame, let range, let error):
            "fetching frame \(frame) (bytes \(range.lowerBound)..<\(range.upperBound) of blob \(blob)): \(error)"
        case .timedOut(let frame, let seconds): "frame \(frame) did not arrive within \(Int(seconds)) s"
        case .stopped: "the mount is shutting down"
        case .claimedByAnotherMount(let frame): "frame \(frame) is being fetched by another mount of this image on this host"
        case .invalidArgument(let message): message
        }
    }
}

extension MountError: BackendFailure {
    /// The errno of the local system call at the root of the failure (the cache, the written
    /// disk's layer), so a full file system reaches the writer as ENOSPC rather than EIO.
    public var causeErrno: Int32? {
        switch self {
        case .io(_, _, let code): code
        case .cache(.system(_, _, let code)): code
        case .cache(.layer(_, let error)): error.errno
        case .foreign(let error): error.causeErrno
        case .readOnly: EROFS
        default: nil
        }
    }
}

extension MountError {
    /// A failed SystemIO call, keeping its errno.
    init(_ error: IOError) { self = .io(operation: error.operation, path: error.path, errno: error.errno) }
}
