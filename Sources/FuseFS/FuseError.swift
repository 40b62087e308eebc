#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Why a mount could not be made, served or removed, and where.
public struct FuseError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        /// The mount point does not exist.
        case mountpointMissing
        /// The mount point exists but is not a directory.
        case notADirectory
        /// Something (possibly a dead FUSE daemon) is already mounted there.
        case alreadyMounted
        /// The caller may not mount (or unmount) there.
        case permissionDenied(String)
        /// The mount options were rejected before reaching the kernel.
        case invalidOptions(String)
        /// `fuse_session_new` failed.
        case sessionCreationFailed(String)
        /// `fuse_session_mount` failed; libfuse's last message.
        case mountFailed(String)
        /// The session loop ended with an error (a negated errno from libfuse).
        case loopFailed(errno: Int32)
        /// `run()` was called twice.
        case alreadyRunning
        /// Nothing is mounted there.
        case notMounted
        /// The file system is in use and a non-lazy unmount was asked for.
        case busy
        /// `umount2` or `fusermount3 -u` failed for another reason.
        case unmountFailed(String)
        /// Handing the `/dev/fuse` descriptor between the holder and a serving process failed.
        case handoverFailed(String)
        /// The descriptor holder of the mount is gone: the mount keeps its current serving
        /// process but no longer survives that process's exit.
        case holderGone(pid: Int32)
    }

    public var mountpoint: String
    public var reason: Reason

    public init(mountpoint: String, reason: Reason) {
        self.mountpoint = mountpoint
        self.reason = reason
    }

    public var description: String {
        let what: String
        switch reason {
        case .mountpointMissing: what = "the mount point does not exist"
        case .notADirectory: what = "the mount point is not a directory"
        case .alreadyMounted: what = "something is already mounted there (unmount it with `fusermount3 -u`)"
        case .permissionDenied(let detail): what = "permission denied: \(detail)"
        case .invalidOptions(let detail): what = "invalid mount options: \(detail)"
        case .sessionCreationFailed(let detail): what = "could not create the FUSE session: \(detail)"
        case .mountFailed(let detail): what = "mount failed: \(detail)"
        case .loopFailed(let code): what = "the FUSE session failed: \(describeErrno(code))"
        case .alreadyRunning: what = "the session is already running or has finished"
        case .notMounted: what = "nothing is mounted there"
        case .busy: what = "the file system is busy"
        case .unmountFailed(let detail): what = "unmount failed: \(detail)"
        case .handoverFailed(let detail): what = "descriptor handover failed: \(detail)"
        case .holderGone(let pid): what = "its descriptor holder (pid \(pid)) is gone, so a crash or upgrade of the serving process would end the mount; `imgfs umount` it and mount again"
        }
        return "\(mountpoint): \(what)"
    }
}

extension FileSystemError {
    /// The one place a backend error becomes an errno.
    var errno: Int32 {
        switch self {
        case .failed(let failure):
            switch failure.causeErrno {
            // Out of space is for the writer to act on: qemu pauses the VM on ENOSPC (its default
            // werror=enospc), and a guest sees a full disk rather than a broken one. A local
            // file system gone read-only is reported as what it is.
            case let code? where code == ENOSPC || code == EDQUOT || code == EROFS: code
            // Everything else (the registry, a verification, a timeout, another local error) is a
            // disk that could not produce or keep the bytes. A timeout too: ETIMEDOUT means
            // nothing to a guest's block layer or to qemu, which treat EIO as a failed sector.
            default: EIO
            }
        case .io: EIO
        case .notFound: ENOENT
        case .readOnly: EROFS
        case .invalid: EINVAL
        case .posix(let code, _): code > 0 ? code : EIO
        }
    }
}

extension FileSystemError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .failed(let failure): "\(failure)"
        case .io(let message): "I/O error: \(message)"
        case .notFound: "not found"
        case .readOnly: "read-only file"
        case .invalid(let message): "invalid request: \(message)"
        case .posix(let code, let message): "\(describeErrno(code)): \(message)"
        }
    }
}

/// `strerror` text for an errno, e.g. "Input/output error (5)".
func describeErrno(_ code: Int32) -> String {
    // glibc's strerror returns static strings for known errnos (thread-safe since 2.32).
    guard let text = strerror(code) else { return "errno \(code)" }
    return "\(String(cString: text)) (\(code))"
}

/// Repeats a system call while it fails with EINTR; returns its first other result, errno intact.
func retryingEINTR<T: BinaryInteger>(_ call: () -> T) -> T {
    while true {
        let result = call()
        if result >= 0 || errno != EINTR { return result }
    }
}
