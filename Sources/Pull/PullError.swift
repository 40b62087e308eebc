import SystemIO
import Fetch
import ImageLayouts
import Glibc
import ImgfsFormat
import Logging
import Threading
import Verity

/// Why a pull failed, naming the layer, digest, file or offset at fault. Rendered once by the command line.
public enum PullError: Error, CustomStringConvertible {
    case registry(FetchError)
    case manifest(ManifestError)
    case layout(ImageLayoutError)
    case layer(SegmentError)
    case frame(layer: Digest, frame: Int, reason: String)
    case io(path: String, operation: String, offset: UInt64?, errno: Int32)
    case destinationNotUsable(path: String, reason: String)
    case fsverityMismatch(expected: Digest, actual: Digest)
    case verityUnsupported(path: String, errno: Int32)
    case invalidOption(String)

    init(_ error: IOError) {
        self = .io(path: error.path, operation: error.operation, offset: error.offset, errno: error.errno)
    }

    public var description: String {
        switch self {
        case .registry(let error): "\(error)"
        case .manifest(let error): "\(error)"
        case .layout(let error): "\(error)"
        case .layer(let error): "\(error)"
        case .frame(let layer, let frame, let reason): "layer \(layer), frame \(frame): \(reason)"
        case .io(let path, let operation, let offset, let code):
            "\(path): \(operation)\(offset.map { " at offset \($0)" } ?? "") failed: \(String(cString: strerror(code)))"
        case .destinationNotUsable(let path, let reason): "\(path): \(reason)"
        case .fsverityMismatch(let expected, let actual):
            "the pulled disk's fs-verity digest is \(actual), the manifest says \(expected); disk.img was not created"
        case .verityUnsupported(let path, let code):
            "\(path): cannot enable fs-verity (\(String(cString: strerror(code)))): the filesystem does not support it or lacks the verity feature (ext4: tune2fs -O verity; the pulled disk.img is complete and verified)"
        case .invalidOption(let message): message
        }
    }
}

extension PullError {
    /// The pull's side of the one retry policy (`BoundedRetry`, as many attempts as a verified
    /// fetch of an object or a mounted frame): a frame run or a layer whose bytes arrive damaged is
    /// fetched again; the last attempt's error is the one reported.
    static func retryingDamage(_ what: @autoclosure () -> String, logger: Logger, _ attempt: () throws(PullError) -> Void) throws(PullError) {
        try BoundedRetry(attempts: RegistryClient.verifiedFetchAttempts).run(isRetryable: \.isDamage, failed: { error, tries, willRetry in
            if willRetry { logger.info("damaged bytes; fetching them again", metadata: ["what": "\(what())", "attempt": "\(tries)", "error": "\(error)"]) }
        }) { (_) throws(PullError) in try attempt() }
    }

    /// Bytes damaged on the way (a frame or layer that does not verify, a body that breaks the
    /// protocol); dropped connections and 5xx were retried by the client already, per request.
    var isDamage: Bool {
        switch self {
        case .frame, .layer: true
        case .registry(let fetch):
            switch fetch.kind {
            case .digestMismatch, .invalidResponse: true
            default: false
            }
        default: false
        }
    }
}
