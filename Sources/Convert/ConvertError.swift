import Fetch
import ImageLayouts
import Glibc
import Push

/// Why a conversion failed; rendered once by the command line.
public enum ConvertError: Error, CustomStringConvertible {
    case registry(FetchError)
    case source(String)
    case push(PushError)
    case encode(offset: UInt64, String)
    case io(path: String, operation: String, errno: Int32)
    case invalidOption(String)

    public var description: String {
        switch self {
        case .registry(let error): "\(error)"
        case .source(let message): message
        case .push(let error): "\(error)"
        case .encode(let offset, let message): "compressing the part at disk offset \(offset): \(message)"
        case .io(let path, let operation, let code): "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case .invalidOption(let message): message
        }
    }
}
