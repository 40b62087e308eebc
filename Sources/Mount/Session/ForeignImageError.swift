import ImageLayouts
import Glibc
import Verity

/// Why an image of another format (lume OCI, lume legacy, tart), served at whole-layer
/// granularity by `LayerDisk`, or one read of it, failed. Always names the layer and its blob.
public enum ForeignImageError: Error, CustomStringConvertible {
    /// The manifest is not a readable lume or tart image (bad annotations, overlapping layers…).
    case layout(ImageLayoutError)
    /// The layer's bytes did not match its manifest (compressed digest, decoded length or
    /// uncompressed digest) or did not decode, on the last of `attempts` tries.
    case verification(SegmentError, attempts: Int)
    /// A range of the layer's blob could not be fetched.
    case fetch(layer: String, blob: Digest, range: Range<Int64>, SourceError)
    /// A read gave up waiting for its layer to be fetched and verified (the fetch goes on).
    case timedOut(layer: String, blob: Digest, seconds: Double)
    /// The layer cache on local disk failed.
    case cacheIO(layer: String, operation: String, path: String, errno: Int32)

    public var description: String {
        switch self {
        case .layout(let error): "\(error)"
        case .verification(let error, let attempts): "\(error) (after \(attempts) attempt(s))"
        case .fetch(let layer, let blob, let range, let error):
            "fetching \(layer), bytes \(range.lowerBound)..<\(range.upperBound) of blob \(blob): \(error)"
        case .timedOut(let layer, _, let seconds): "\(layer) did not arrive within \(Int(seconds)) s"
        case .cacheIO(let layer, let operation, let path, let code):
            "caching \(layer): \(operation) \(path): \(String(cString: strerror(code)))"
        }
    }

    /// The blob at fault, when there is one (for logs).
    public var blob: Digest? {
        switch self {
        case .layout: nil
        case .verification(let error, _): error.digest
        case .fetch(_, let blob, _, _), .timedOut(_, let blob, _): blob
        case .cacheIO: nil
        }
    }

    /// The errno of the failed local system call, when the layer cache failed.
    public var causeErrno: Int32? {
        if case .cacheIO(_, _, _, let code) = self { return code }
        return nil
    }
}
