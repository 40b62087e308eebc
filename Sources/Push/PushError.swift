import Fetch
import ImgfsFormat
import Codec
import Glibc
import SystemIO

/// Why a push failed, with the file, offset or blob at fault. Rendered once by the command line.
public enum PushError: Error, CustomStringConvertible {
    case sourceMissing(path: String)
    case sourceNotUsable(path: String, reason: String)
    case io(path: String, operation: String, offset: UInt64?, errno: Int32)
    case registry(FetchError)
    case compression(frame: Int, CodecError)
    case format(FormatError)
    case invalidOption(String)
    /// A push found its source unusable: what is wrong with it.
    case source(String)
    /// A streaming source (convert) failed: its own error (a `FetchError`, a `SegmentError`, a
    /// frame that failed its check), kept whole and rendered as is.
    case sourceFailed(any Error)

    init(_ error: IOError) {
        self = .io(path: error.path, operation: error.operation, offset: error.offset, errno: error.errno)
    }

    public var description: String {
        switch self {
        case .sourceMissing(let path): "\(path): no such file or directory"
        case .sourceNotUsable(let path, let reason): "\(path): \(reason)"
        case .io(let path, let operation, let offset, let code):
            "\(path): \(operation)\(offset.map { " at offset \($0)" } ?? "") failed: \(String(cString: strerror(code)))"
        case .registry(let error): "\(error)"
        case .compression(let frame, let error): "compressing frame \(frame): \(error)"
        case .format(let error): "\(error)"
        case .invalidOption(let message): message
        case .source(let message): message
        case .sourceFailed(let error): "\(error)"
        }
    }
}
