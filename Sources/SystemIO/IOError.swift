import Glibc

/// A failed system call on a file: which call, which file, where, and errno.
public struct IOError: Error, Equatable, CustomStringConvertible {
    public var operation: String
    public var path: String
    public var offset: UInt64?
    public var errno: Int32

    public init(operation: String, path: String, offset: UInt64? = nil, errno: Int32) {
        self.operation = operation
        self.path = path
        self.offset = offset
        self.errno = errno
    }

    public var description: String {
        "\(path): \(operation)\(offset.map { " at offset \($0)" } ?? "") failed: \(String(cString: strerror(errno)))"
    }
}
