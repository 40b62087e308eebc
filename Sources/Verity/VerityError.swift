#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file could not be digested: the path, the operation, the offset and the errno.
public enum VerityError: Error, Equatable, CustomStringConvertible {
    case open(path: String, errno: Int32)
    case stat(path: String, errno: Int32)
    case seek(path: String, offset: UInt64, errno: Int32)
    case read(path: String, offset: UInt64, errno: Int32)
    /// The file ended before the size `fstat` reported: it shrank while being read.
    case shortRead(path: String, offset: UInt64, expectedSize: UInt64)

    public var description: String {
        switch self {
        case .open(let path, let e): "cannot open '\(path)': \(Self.message(e))"
        case .stat(let path, let e): "cannot stat '\(path)': \(Self.message(e))"
        case .seek(let path, let offset, let e): "cannot seek in '\(path)' at offset \(offset): \(Self.message(e))"
        case .read(let path, let offset, let e): "cannot read '\(path)' at offset \(offset): \(Self.message(e))"
        case .shortRead(let path, let offset, let size): "'\(path)' ended at offset \(offset) although its size was \(size) bytes; was it modified while being digested?"
        }
    }

    private static func message(_ e: Int32) -> String {
        guard let text = strerror(e) else { return "errno \(e)" }
        return "\(String(cString: text)) (errno \(e))"
    }
}
