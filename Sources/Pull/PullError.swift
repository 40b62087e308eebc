import SystemIO
import Fetch
import Formats
import Glibc
import ImageFormat
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
