import Glibc

/// Turns on fs-verity for a finished file: the kernel then checks every read against the Merkle
/// tree, and `fsverity measure` reports the digest the manifest carries.
enum VerityEnabler {
    /// `struct fsverity_enable_arg` from linux/fsverity.h (128 bytes).
    private struct EnableArgument {
        var version: UInt32 = 1
        var hashAlgorithm: UInt32 = 1      // FS_VERITY_HASH_ALG_SHA256
        var blockSize: UInt32 = 4096
        var saltSize: UInt32 = 0
        var saltPointer: UInt64 = 0
        var signatureSize: UInt32 = 0
        var reserved1: UInt32 = 0
        var signaturePointer: UInt64 = 0
        var reserved2: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    }

    /// `_IOW('f', 133, struct fsverity_enable_arg)`.
    private static let enableRequest: UInt = 0x4080_6685

    static func enable(path: String) throws(PullError) {
        // The kernel refuses while any writable descriptor is open; ours are all closed by now.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, operation: "open", offset: nil, errno: errno) }
        defer { close(fd) }
        var argument = EnableArgument()
        let status = withUnsafeMutablePointer(to: &argument) { ioctl(fd, enableRequest, $0) }
        if status == 0 { return }
        let code = errno
        if code == EEXIST { return }  // already enabled (a re-run)
        if code == EOPNOTSUPP || code == ENOTTY || code == EINVAL { throw .verityUnsupported(path: path, errno: code) }
        throw .io(path: path, operation: "enable fs-verity", offset: nil, errno: code)
    }
}
